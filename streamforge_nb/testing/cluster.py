"""The real Kubernetes pieces for tests: an API server alone, or a whole node.

They live in `streamforge_nb.local.cluster` (a laptop's `streamforge-nb local cluster` runs
the same node); this module is where tests, ours and users', pick them up.
"""

from __future__ import annotations

from streamforge_nb.local.cluster.api import LocalApiServer
from streamforge_nb.local.cluster.apiserver import find_kube_binaries, local_apiserver
from streamforge_nb.local.cluster.node import LocalNode, local_node, node_unavailable

__all__ = [
    "LocalApiServer",
    "LocalNode",
    "find_kube_binaries",
    "local_apiserver",
    "local_node",
    "node_unavailable",
]
