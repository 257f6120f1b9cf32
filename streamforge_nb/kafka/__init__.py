"""Kafka clients built from settings, and the sends the control plane and workers share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.kafka.clients import check_connection as check_connection
    from streamforge_nb.kafka.clients import make_admin as make_admin
    from streamforge_nb.kafka.clients import make_assigned_consumer as make_assigned_consumer
    from streamforge_nb.kafka.clients import make_bulk_consumer as make_bulk_consumer
    from streamforge_nb.kafka.clients import make_bulk_producer as make_bulk_producer
    from streamforge_nb.kafka.clients import make_consumer as make_consumer
    from streamforge_nb.kafka.clients import make_producer as make_producer
    from streamforge_nb.kafka.clients import topic_partitions as topic_partitions
    from streamforge_nb.kafka.partitions import START_SLACK_S as START_SLACK_S
    from streamforge_nb.kafka.partitions import offsets_at as offsets_at
    from streamforge_nb.kafka.partitions import partition_count as partition_count
    from streamforge_nb.kafka.partitions import partition_for as partition_for
    from streamforge_nb.kafka.partitions import queue_partition as queue_partition
    from streamforge_nb.kafka.partitions import queue_start_time as queue_start_time
    from streamforge_nb.kafka.send import SEND_TIMEOUT_S as SEND_TIMEOUT_S
    from streamforge_nb.kafka.send import SendResult as SendResult
    from streamforge_nb.kafka.send import refusal as refusal
    from streamforge_nb.kafka.send import send_checked as send_checked
    from streamforge_nb.kafka.send import send_command as send_command
    from streamforge_nb.kafka.send import send_event as send_event

_EXPORTS = {
    "SEND_TIMEOUT_S": "streamforge_nb.kafka.send",
    "START_SLACK_S": "streamforge_nb.kafka.partitions",
    "SendResult": "streamforge_nb.kafka.send",
    "check_connection": "streamforge_nb.kafka.clients",
    "make_admin": "streamforge_nb.kafka.clients",
    "make_assigned_consumer": "streamforge_nb.kafka.clients",
    "make_bulk_consumer": "streamforge_nb.kafka.clients",
    "make_bulk_producer": "streamforge_nb.kafka.clients",
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
    "topic_partitions": "streamforge_nb.kafka.clients",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
