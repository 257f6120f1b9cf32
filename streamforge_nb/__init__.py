"""streamforge-nb: a Jupyter-first analytics and control library for StreamForge.

Everything a notebook needs comes from here, imported on first use:

    from streamforge_nb import Workflow, Batch, Queue, CandleStore, LaunchPanel, Settings
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb import plugins as _plugins  # noqa: F401 (registers the built-in parts)
from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.control.follower import PongReply as PongReply
    from streamforge_nb.control.queue import Queue as Queue
    from streamforge_nb.control.telemetry import ProducerState as ProducerState
    from streamforge_nb.control.worker import Worker as Worker
    from streamforge_nb.exceptions import ApiProblem as ApiProblem
    from streamforge_nb.exceptions import ArchiveError as ArchiveError
    from streamforge_nb.exceptions import AuthenticationFailed as AuthenticationFailed
    from streamforge_nb.exceptions import BrokerError as BrokerError
    from streamforge_nb.exceptions import BrokerUnavailable as BrokerUnavailable
    from streamforge_nb.exceptions import ConfigError as ConfigError
    from streamforge_nb.exceptions import DashboardError as DashboardError
    from streamforge_nb.exceptions import DummyFailure as DummyFailure
    from streamforge_nb.exceptions import ExchangeBanned as ExchangeBanned
    from streamforge_nb.exceptions import ExchangeError as ExchangeError
    from streamforge_nb.exceptions import ExchangeUnavailable as ExchangeUnavailable
    from streamforge_nb.exceptions import InputProblem as InputProblem
    from streamforge_nb.exceptions import InvalidName as InvalidName
    from streamforge_nb.exceptions import KubeTestError as KubeTestError
    from streamforge_nb.exceptions import LocalBrokerError as LocalBrokerError
    from streamforge_nb.exceptions import MessageError as MessageError
    from streamforge_nb.exceptions import MissingOption as MissingOption
    from streamforge_nb.exceptions import NotAllowed as NotAllowed
    from streamforge_nb.exceptions import NotAuthorized as NotAuthorized
    from streamforge_nb.exceptions import NotReady as NotReady
    from streamforge_nb.exceptions import ProcessExited as ProcessExited
    from streamforge_nb.exceptions import QueueExists as QueueExists
    from streamforge_nb.exceptions import QueueTimeout as QueueTimeout
    from streamforge_nb.exceptions import StartTimeout as StartTimeout
    from streamforge_nb.exceptions import StopRequested as StopRequested
    from streamforge_nb.exceptions import StoreAuthError as StoreAuthError
    from streamforge_nb.exceptions import StoreCapabilityError as StoreCapabilityError
    from streamforge_nb.exceptions import StoreCertificateError as StoreCertificateError
    from streamforge_nb.exceptions import StoreError as StoreError
    from streamforge_nb.exceptions import StoreUnavailable as StoreUnavailable
    from streamforge_nb.exceptions import StreamForgeError as StreamForgeError
    from streamforge_nb.exceptions import UnknownSymbol as UnknownSymbol
    from streamforge_nb.local.broker import BrokerStatus as BrokerStatus
    from streamforge_nb.local.broker import LocalBroker as LocalBroker
    from streamforge_nb.settings import Settings as Settings
    from streamforge_nb.store.candles import CandleStore as CandleStore
    from streamforge_nb.ui.launch_panel import LaunchPanel as LaunchPanel
    from streamforge_nb.ui.panel import QueuePanel as QueuePanel
    from streamforge_nb.workflow.batch import Batch as Batch
    from streamforge_nb.workflow.kubernetes import KubernetesLauncher as KubernetesLauncher
    from streamforge_nb.workflow.launchers import Launcher as Launcher
    from streamforge_nb.workflow.plan import Workflow as Workflow
    from streamforge_nb.workflow.processes import LocalLauncher as LocalLauncher
    from streamforge_nb.workflow.steps import Plan as Plan

__version__ = "0.1.0"

_ERRORS = (
    "ApiProblem", "ArchiveError", "AuthenticationFailed", "BrokerError", "BrokerUnavailable",
    "ConfigError", "DashboardError", "DummyFailure", "ExchangeBanned", "ExchangeError",
    "ExchangeUnavailable", "InputProblem", "InvalidName", "KubeTestError", "LocalBrokerError",
    "MessageError", "MissingOption", "NotAllowed", "NotAuthorized", "NotReady", "ProcessExited",
    "QueueExists", "QueueTimeout", "StartTimeout", "StopRequested", "StoreAuthError",
    "StoreCapabilityError", "StoreCertificateError", "StoreError", "StoreUnavailable",
    "StreamForgeError", "UnknownSymbol",
)  # fmt: skip

_EXPORTS = {
    **dict.fromkeys(_ERRORS, "streamforge_nb.exceptions"),
    "Batch": "streamforge_nb.workflow.batch",
    "BrokerStatus": "streamforge_nb.local.broker",
    "CandleStore": "streamforge_nb.store.candles",
    "KubernetesLauncher": "streamforge_nb.workflow.kubernetes",
    "LaunchPanel": "streamforge_nb.ui.launch_panel",
    "Launcher": "streamforge_nb.workflow.launchers",
    "LocalBroker": "streamforge_nb.local.broker",
    "LocalLauncher": "streamforge_nb.workflow.processes",
    "Plan": "streamforge_nb.workflow.steps",
    "PongReply": "streamforge_nb.control.follower",
    "ProducerState": "streamforge_nb.control.telemetry",
    "Queue": "streamforge_nb.control.queue",
    "QueuePanel": "streamforge_nb.ui.panel",
    "Settings": "streamforge_nb.settings",
    "Worker": "streamforge_nb.control.worker",
    "Workflow": "streamforge_nb.workflow.plan",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [*_EXPORTS, "__version__"]
