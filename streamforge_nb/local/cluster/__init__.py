"""A real single-node Kubernetes on this machine: etcd, the API server, controllers,
scheduler, kubelet and containerd, for tests and for laptops (`streamforge-nb local cluster`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.local.cluster.api import LocalApiServer as LocalApiServer
    from streamforge_nb.local.cluster.apiserver import KubeBinaries as KubeBinaries
    from streamforge_nb.local.cluster.apiserver import KubeTestError as KubeTestError
    from streamforge_nb.local.cluster.apiserver import find_kube_binaries as find_kube_binaries
    from streamforge_nb.local.cluster.apiserver import kube_cache_dir as kube_cache_dir
    from streamforge_nb.local.cluster.apiserver import local_apiserver as local_apiserver
    from streamforge_nb.local.cluster.hostfs import HOST_PATHS as HOST_PATHS
    from streamforge_nb.local.cluster.hostfs import HostState as HostState
    from streamforge_nb.local.cluster.hostfs import cgroup_dirs as cgroup_dirs
    from streamforge_nb.local.cluster.hostfs import host_snapshot as host_snapshot
    from streamforge_nb.local.cluster.hostfs import mount_points as mount_points
    from streamforge_nb.local.cluster.hostfs import oci_archive as oci_archive
    from streamforge_nb.local.cluster.node import CGROUP_ROOT as CGROUP_ROOT
    from streamforge_nb.local.cluster.node import NODE_NAME as NODE_NAME
    from streamforge_nb.local.cluster.node import PAUSE_IMAGE as PAUSE_IMAGE
    from streamforge_nb.local.cluster.node import LocalNode as LocalNode
    from streamforge_nb.local.cluster.node import NodeLauncher as NodeLauncher
    from streamforge_nb.local.cluster.node import find_node_binaries as find_node_binaries
    from streamforge_nb.local.cluster.node import local_node as local_node
    from streamforge_nb.local.cluster.node import node_unavailable as node_unavailable
    from streamforge_nb.local.cluster.parts import CNI_BIN as CNI_BIN
    from streamforge_nb.local.cluster.parts import RUNC as RUNC
    from streamforge_nb.local.cluster.parts import WORKER_LABEL as WORKER_LABEL
    from streamforge_nb.local.cluster.parts import kubelet_client_pki as kubelet_client_pki
    from streamforge_nb.local.cluster.parts import start_containerd as start_containerd
    from streamforge_nb.local.cluster.parts import start_controllers as start_controllers
    from streamforge_nb.local.cluster.parts import start_kubelet as start_kubelet
    from streamforge_nb.local.cluster.service import cluster_dir as cluster_dir
    from streamforge_nb.local.cluster.service import cluster_down as cluster_down
    from streamforge_nb.local.cluster.service import cluster_status as cluster_status
    from streamforge_nb.local.cluster.service import cluster_up as cluster_up

_EXPORTS = {
    "CGROUP_ROOT": "streamforge_nb.local.cluster.node",
    "CNI_BIN": "streamforge_nb.local.cluster.parts",
    "HOST_PATHS": "streamforge_nb.local.cluster.hostfs",
    "HostState": "streamforge_nb.local.cluster.hostfs",
    "KubeBinaries": "streamforge_nb.local.cluster.apiserver",
    "KubeTestError": "streamforge_nb.local.cluster.apiserver",
    "LocalApiServer": "streamforge_nb.local.cluster.api",
    "LocalNode": "streamforge_nb.local.cluster.node",
    "NODE_NAME": "streamforge_nb.local.cluster.node",
    "NodeLauncher": "streamforge_nb.local.cluster.node",
    "PAUSE_IMAGE": "streamforge_nb.local.cluster.node",
    "RUNC": "streamforge_nb.local.cluster.parts",
    "WORKER_LABEL": "streamforge_nb.local.cluster.parts",
    "cgroup_dirs": "streamforge_nb.local.cluster.hostfs",
    "cluster_dir": "streamforge_nb.local.cluster.service",
    "cluster_down": "streamforge_nb.local.cluster.service",
    "cluster_status": "streamforge_nb.local.cluster.service",
    "cluster_up": "streamforge_nb.local.cluster.service",
    "find_kube_binaries": "streamforge_nb.local.cluster.apiserver",
    "find_node_binaries": "streamforge_nb.local.cluster.node",
    "host_snapshot": "streamforge_nb.local.cluster.hostfs",
    "kube_cache_dir": "streamforge_nb.local.cluster.apiserver",
    "kubelet_client_pki": "streamforge_nb.local.cluster.parts",
    "local_apiserver": "streamforge_nb.local.cluster.apiserver",
    "local_node": "streamforge_nb.local.cluster.node",
    "mount_points": "streamforge_nb.local.cluster.hostfs",
    "node_unavailable": "streamforge_nb.local.cluster.node",
    "oci_archive": "streamforge_nb.local.cluster.hostfs",
    "start_containerd": "streamforge_nb.local.cluster.parts",
    "start_controllers": "streamforge_nb.local.cluster.parts",
    "start_kubelet": "streamforge_nb.local.cluster.parts",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
