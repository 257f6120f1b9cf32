"""streamforge-nb: a Jupyter-first analytics and control library for StreamForge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .broker import BrokerStatus, LocalBroker
from .exceptions import (
    AuthenticationFailed,
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    InvalidName,
    LocalBrokerError,
    MessageError,
    NotAuthorized,
    StreamForgeError,
)
from .settings import Settings

if TYPE_CHECKING:
    from .launchers import KubernetesLauncher, LocalLauncher
    from .queue import Queue
    from .store import CandleStore
    from .workflow import Workflow

__version__ = "0.1.0"

# The notebook-facing objects pull in pandas, plotly and the Kafka clients: import them on
# first use so `streamforge-nb` commands that don't need them start fast.
_LAZY = {
    "CandleStore": ".store",
    "LocalLauncher": ".launchers",
    "KubernetesLauncher": ".launchers",
    "Queue": ".queue",
    "Workflow": ".workflow",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AuthenticationFailed",
    "BrokerError",
    "BrokerStatus",
    "BrokerUnavailable",
    "CandleStore",
    "ConfigError",
    "InvalidName",
    "KubernetesLauncher",
    "LocalBroker",
    "LocalBrokerError",
    "LocalLauncher",
    "MessageError",
    "NotAuthorized",
    "Queue",
    "Settings",
    "StreamForgeError",
    "Workflow",
    "__version__",
]
