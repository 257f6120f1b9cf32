"""Sends on the service topics, each waiting for the broker's answer (bounded).

Every control-plane send goes through `send_checked`: it names the queue's partition (murmur2
of the queue id over the topic's real partition count, see `partitions`), waits for the
broker's acknowledgement, and turns a refusal into the library's error naming its cause
(`NotAuthorized: user-streamforge-viewer may not write queue-control`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaProducer
from kafka import errors as kerr

from streamforge_nb.exceptions import (
    BrokerError,
    BrokerUnavailable,
    StreamForgeError,
    map_kafka_error,
    map_topic_error,
)
from streamforge_nb.kafka.clients import make_producer
from streamforge_nb.kafka.partitions import partition_for
from streamforge_nb.platform.contract import BaseCommand, BaseEvent, encode, message_key
from streamforge_nb.settings import Settings

__all__ = [
    "SEND_TIMEOUT_S",
    "SendResult",
    "refusal",
    "send_checked",
    "send_command",
    "send_event",
]

# How long a control-plane send waits for the broker's answer.
SEND_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SendResult:
    """Where the broker stored a sent message."""

    topic: str
    partition: int
    offset: int


def send_event(settings: Settings, event: BaseEvent) -> SendResult:
    """Send one telemetry event from outside a Worker (e.g. a Job runner's last word)."""
    return _send_once(settings, settings.queue_events_topic, event)


def send_command(settings: Settings, command: BaseCommand) -> SendResult:
    """Send one command on queue-control (start, stop or ping)."""
    return _send_once(settings, settings.queue_control_topic, command)


def _send_once(settings: Settings, topic: str, message: BaseEvent | BaseCommand) -> SendResult:
    producer = make_producer(settings, acks=1, enable_idempotence=False)
    try:
        result = send_checked(producer, settings, topic, message)
        assert result is not None  # waited for
        return result
    finally:
        producer.close(timeout=5)


def send_checked(
    producer: KafkaProducer,
    settings: Settings,
    topic: str,
    message: BaseEvent | BaseCommand,
    *,
    timeout: float = SEND_TIMEOUT_S,
    wait: bool = True,
) -> SendResult | None:
    """Send `message` to its queue's partition of `topic`; wait for the broker's answer.

    Raises `NotAuthorized` (ACLs), `BrokerError` (unknown topic, message too large, other
    refusals) or `BrokerUnavailable` (no answer within `timeout`), each naming the user and
    the topic. With `wait=False` (a pong: the sender measures the trip) only the partition
    lookup is checked and None is returned.
    """
    what = f"sending {_kind(message)} to {topic}"
    try:
        partitions = producer.partitions_for(topic)
        if not partitions:
            raise kerr.UnknownTopicOrPartitionError(topic)
        partition = partition_for(message_key(message), len(partitions))
        future = producer.send(
            topic, key=message_key(message), value=encode(message), partition=partition
        )
        if not wait:
            return None
        meta = future.get(timeout=timeout)
    except kerr.KafkaError as exc:
        raise refusal(exc, settings, topic, what) from exc
    return SendResult(topic, meta.partition, meta.offset)


def refusal(exc: BaseException, settings: Settings, topic: str, what: str) -> StreamForgeError:
    """Return the library's error for a send to `topic` the broker refused or never answered."""
    user = settings.kafka_user or "ANONYMOUS"
    where = settings.kafka_bootstrap_servers
    if isinstance(
        exc,
        kerr.TopicAuthorizationFailedError
        | kerr.ClusterAuthorizationFailedError
        | kerr.UnknownTopicOrPartitionError,
    ):
        hint = "the platform user has Write on the service topics"
        return map_topic_error(
            exc, user=user, topic=topic, operation="write", where=where, hint=hint
        )
    if isinstance(exc, kerr.MessageSizeTooLargeError | kerr.RecordListTooLargeError):
        return BrokerError(f"{what}: the message is too large for {topic} ({exc})")
    if isinstance(exc, kerr.KafkaTimeoutError):
        # kafka-python reports an unknown topic as a metadata timeout.
        if "metadata" in str(exc).lower():
            return BrokerError(
                f"{what}: no metadata for topic {topic} at {where}: it does not exist, or "
                f"{user} may not describe it"
            )
        return BrokerUnavailable(f"{what}: the broker at {where} did not answer ({exc})")
    return map_kafka_error(exc, what=what, bootstrap=where)


def _kind(message: BaseEvent | BaseCommand) -> str:
    return f"{message.command} command" if isinstance(message, BaseCommand) else message.status
