"""streamforge-nb: a Jupyter-first analytics and control library for StreamForge.

Everything a notebook needs comes from here, imported on first use:

    from streamforge_nb import Workflow, Queue, CandleStore, LaunchPanel, Settings
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.control.queue import PongReply, Queue
    from streamforge_nb.control.telemetry import ProducerState
    from streamforge_nb.control.worker import Worker
    from streamforge_nb.exceptions import (
        ArchiveError,
        AuthenticationFailed,
        BrokerError,
        BrokerUnavailable,
        ConfigError,
        DashboardError,
        ExchangeBanned,
        ExchangeError,
        ExchangeUnavailable,
        InvalidName,
        KubeTestError,
        LocalBrokerError,
        MessageError,
        NotAuthorized,
        QueueTimeout,
        StopRequested,
        StoreAuthError,
        StoreError,
        StoreUnavailable,
        StreamForgeError,
        UnknownSymbol,
    )
    from streamforge_nb.local.broker import BrokerStatus, LocalBroker
    from streamforge_nb.settings import Settings
    from streamforge_nb.store.candles import CandleStore
    from streamforge_nb.ui.launch_panel import LaunchPanel
    from streamforge_nb.ui.panel import QueuePanel
    from streamforge_nb.workflow.launchers import KubernetesLauncher, Launcher, LocalLauncher
    from streamforge_nb.workflow.plan import Plan, Workflow

__version__ = "0.1.0"

_ERRORS = (
    "ArchiveError", "AuthenticationFailed", "BrokerError", "BrokerUnavailable", "ConfigError",
    "DashboardError", "ExchangeBanned", "ExchangeError", "ExchangeUnavailable", "InvalidName",
    "KubeTestError", "LocalBrokerError", "MessageError", "NotAuthorized", "QueueTimeout",
    "StopRequested", "StoreAuthError", "StoreError", "StoreUnavailable", "StreamForgeError",
    "UnknownSymbol",
)  # fmt: skip

_EXPORTS = {
    **dict.fromkeys(_ERRORS, "streamforge_nb.exceptions"),
    "BrokerStatus": "streamforge_nb.local.broker",
    "CandleStore": "streamforge_nb.store.candles",
    "KubernetesLauncher": "streamforge_nb.workflow.launchers",
    "LaunchPanel": "streamforge_nb.ui.launch_panel",
    "Launcher": "streamforge_nb.workflow.launchers",
    "LocalBroker": "streamforge_nb.local.broker",
    "LocalLauncher": "streamforge_nb.workflow.launchers",
    "Plan": "streamforge_nb.workflow.plan",
    "PongReply": "streamforge_nb.control.queue",
    "ProducerState": "streamforge_nb.control.telemetry",
    "Queue": "streamforge_nb.control.queue",
    "QueuePanel": "streamforge_nb.ui.panel",
    "Settings": "streamforge_nb.settings",
    "Worker": "streamforge_nb.control.worker",
    "Workflow": "streamforge_nb.workflow.plan",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [
    "ArchiveError",
    "AuthenticationFailed",
    "BrokerError",
    "BrokerStatus",
    "BrokerUnavailable",
    "CandleStore",
    "ConfigError",
    "DashboardError",
    "ExchangeBanned",
    "ExchangeError",
    "ExchangeUnavailable",
    "InvalidName",
    "KubeTestError",
    "KubernetesLauncher",
    "LaunchPanel",
    "Launcher",
    "LocalBroker",
    "LocalBrokerError",
    "LocalLauncher",
    "MessageError",
    "NotAuthorized",
    "Plan",
    "PongReply",
    "ProducerState",
    "Queue",
    "QueuePanel",
    "QueueTimeout",
    "Settings",
    "StopRequested",
    "StoreAuthError",
    "StoreError",
    "StoreUnavailable",
    "StreamForgeError",
    "UnknownSymbol",
    "Worker",
    "Workflow",
    "__version__",
]
