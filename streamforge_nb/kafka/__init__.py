"""Kafka clients built from settings, and the sends the control plane and workers share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.kafka.clients import (
        check_connection,
        make_admin,
        make_assigned_consumer,
        make_bulk_consumer,
        make_consumer,
        make_producer,
    )
    from streamforge_nb.kafka.send import (
        send_command,
        send_event,
    )

_EXPORTS = {
    "check_connection": "streamforge_nb.kafka.clients",
    "make_admin": "streamforge_nb.kafka.clients",
    "make_assigned_consumer": "streamforge_nb.kafka.clients",
    "make_bulk_consumer": "streamforge_nb.kafka.clients",
    "make_consumer": "streamforge_nb.kafka.clients",
    "make_producer": "streamforge_nb.kafka.clients",
    "send_command": "streamforge_nb.kafka.send",
    "send_event": "streamforge_nb.kafka.send",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [
    "check_connection",
    "make_admin",
    "make_assigned_consumer",
    "make_bulk_consumer",
    "make_consumer",
    "make_producer",
    "send_command",
    "send_event",
]

