"""The package's own implementations, registered where the lower layers look them up.

A lower layer finds what an upper layer provides by name, never by importing it: the store's
base its backends (`register_backend`), the control plane its launchers (`LAUNCHERS`), a Queue
and a Batch their panels (`PANELS`), `CandleStore.update` its Workflows (`UPDATERS`), and
`Workflow.candles` a Batch for lists (`BATCHES`). The package imports this module first
thing, so the built-in names are there whatever a program imports. Each factory imports its
module when first called: python-arango, the kubernetes client and ipywidgets load only when
used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamforge_nb.control.launchers import register_launcher
from streamforge_nb.exceptions import ConfigError
from streamforge_nb.registry import BATCHES, PANELS, UPDATERS
from streamforge_nb.store.base import register_backend

if TYPE_CHECKING:
    from streamforge_nb.control.launchers import Launcher
    from streamforge_nb.settings import Settings
    from streamforge_nb.store.base import CandleBackend

__all__: list[str] = []


# -- store backends ----------------------------------------------------------------------------
def _local_store(url: str, settings: Settings) -> CandleBackend:
    from streamforge_nb.store.local import LocalBackend

    return LocalBackend(Path(url.removeprefix("local://")) if "://" in url else Path(url))


def _arango_store(url: str, settings: Settings) -> CandleBackend:
    from streamforge_nb.store.arango import ArangoBackend

    return ArangoBackend(url, settings)


# -- launchers -----------------------------------------------------------------------------------
def _local_launcher(**options: Any) -> Launcher:
    from streamforge_nb.workflow.processes import LocalLauncher

    return LocalLauncher(**options)


def _kubernetes_launcher(**options: Any) -> Launcher:
    from streamforge_nb.workflow.launchers import NODE_HOST_PATHS_ENV

    host_paths = os.environ.get(NODE_HOST_PATHS_ENV)
    if host_paths is not None:
        # In the local hub's single-user Pods: Jobs shaped for the local node.
        from streamforge_nb.local.cluster.node import NodeLauncher

        paths = json.loads(host_paths)
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ConfigError(f"{NODE_HOST_PATHS_ENV} must be a JSON list of paths")
        return NodeLauncher(host_paths=[Path(p) for p in paths], **options)
    from streamforge_nb.workflow.kubernetes import KubernetesLauncher

    return KubernetesLauncher(**options)


# -- panels --------------------------------------------------------------------------------------
def _queue_panel(queue: Any, **options: Any) -> Any:
    from streamforge_nb.ui.panel import QueuePanel

    return QueuePanel(queue, **options)


def _batch_panel(batch: Any, **options: Any) -> Any:
    from streamforge_nb.ui.batch_panel import BatchPanel

    return BatchPanel(batch, **options)


# -- the store's update ---------------------------------------------------------------------------
def _update_candles(store: Any, *args: Any, **options: Any) -> Any:
    from streamforge_nb.workflow.update import update_candles

    return update_candles(store, *args, **options)


def _candles_batch(*args: Any, **options: Any) -> Any:
    from streamforge_nb.workflow.batch import Batch

    return Batch.candles(*args, **options)


for _scheme, _factory in (
    ("local", _local_store),
    ("arango", _arango_store),
    ("arangos", _arango_store),
    ("http", _arango_store),
    ("https", _arango_store),
):
    register_backend(_scheme, _factory)
register_launcher("local", _local_launcher)
register_launcher("kubernetes", _kubernetes_launcher)
PANELS.register("queue", _queue_panel)
PANELS.register("batch", _batch_panel)
UPDATERS.register("candles", _update_candles)
BATCHES.register("candles", _candles_batch)
