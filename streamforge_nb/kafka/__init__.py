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
    from streamforge_nb.kafka.partitions import (
        START_SLACK_S,
        offsets_at,
        partition_count,
        partition_for,
        queue_partition,
        queue_start_time,
    )
    from streamforge_nb.kafka.send import (
        SEND_TIMEOUT_S,
        SendResult,
        refusal,
        send_checked,
        send_command,
        send_event,
    )

_EXPORTS = {
    "SEND_TIMEOUT_S": "streamforge_nb.kafka.send",
    "START_SLACK_S": "streamforge_nb.kafka.partitions",
    "SendResult": "streamforge_nb.kafka.send",
    "check_connection": "streamforge_nb.kafka.clients",
    "make_admin": "streamforge_nb.kafka.clients",
    "make_assigned_consumer": "streamforge_nb.kafka.clients",
    "make_bulk_consumer": "streamforge_nb.kafka.clients",
    "make_consumer": "streamforge_nb.kafka.clients",
    "make_producer": "streamforge_nb.kafka.clients",
    "offsets_at": "streamforge_nb.kafka.partitions",
    "partition_count": "streamforge_nb.kafka.partitions",
    "partition_for": "streamforge_nb.kafka.partitions",
    "queue_partition": "streamforge_nb.kafka.partitions",
    "queue_start_time": "streamforge_nb.kafka.partitions",
    "refusal": "streamforge_nb.kafka.send",
    "send_checked": "streamforge_nb.kafka.send",
    "send_command": "streamforge_nb.kafka.send",
    "send_event": "streamforge_nb.kafka.send",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [
    "SEND_TIMEOUT_S",
    "START_SLACK_S",
    "SendResult",
    "check_connection",
    "make_admin",
    "make_assigned_consumer",
    "make_bulk_consumer",
    "make_consumer",
    "make_producer",
    "offsets_at",
    "partition_count",
    "partition_for",
    "queue_partition",
    "queue_start_time",
    "refusal",
    "send_checked",
    "send_command",
    "send_event",
]

