"""streamforge-nb: a Jupyter-first analytics and control library for StreamForge."""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "AuthenticationFailed",
    "BrokerError",
    "BrokerStatus",
    "BrokerUnavailable",
    "ConfigError",
    "InvalidName",
    "LocalBroker",
    "LocalBrokerError",
    "MessageError",
    "NotAuthorized",
    "Settings",
    "StreamForgeError",
    "__version__",
]
