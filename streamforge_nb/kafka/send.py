"""Sends on the service topics, each waiting for the broker's answer (bounded).

Every control-plane send goes through `send_checked`: it names the queue's partition (murmur2
of the queue id over the topic's real partition count, see `partitions`), waits for the
broker's acknowledgement, and turns a refusal into the library's error naming its cause
(`NotAuthorized: user-streamforge-viewer may not write queue-control`).

The ping path (a Queue's commands and live end, a worker's control listener and pongs) runs
on librdkafka (`CommandSender`, `live_reader`): kafka-python's pure-Python protocol handling
costs about a millisecond per hop, as much as the broker's round trip (bench/ping.py). Its
refusals are mapped here too (`rd_refusal`, through `refusal`), so they read the same.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka import errors as kerr

from streamforge_nb.exceptions import (
    BrokerError,
    BrokerUnavailable,
    StreamForgeError,
    is_passing_kafka_error,
    kafka_error_of,
    map_confluent_error,
    map_kafka_error,
    map_topic_error,
)
from streamforge_nb.kafka import clients
from streamforge_nb.kafka.clients import make_producer
from streamforge_nb.kafka.partitions import partition_for
from streamforge_nb.platform.contract import BaseCommand, BaseEvent, encode, message_key
from streamforge_nb.settings import Settings

__all__ = [
    "SEND_TIMEOUT_S",
    "CommandSender",
    "SendResult",
    "live_reader",
    "rd_connect",
    "rd_refusal",
    "refusal",
    "send_checked",
    "send_command",
    "send_event",
]

log = logging.getLogger("streamforge_nb.kafka")

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


# librdkafka for the ping path: request and reply are each one small message, and
# kafka-python's pure-Python protocol handling costs about as much as the broker's round trip
# (bench/ping.py; issue 20). Nagle off: a lone small request must not wait for an ACK.
LOW_LATENCY_PRODUCER = {"linger.ms": 0, "acks": 1, "enable.idempotence": False,
                        "socket.nagle.disable": True}  # fmt: skip
LOW_LATENCY_CONSUMER = {"fetch.wait.max.ms": 100, "fetch.min.bytes": 1,
                        "socket.nagle.disable": True, "enable.partition.eof": False}  # fmt: skip


def rd_refusal(
    error: Any, settings: Settings, topic: str, what: str, *, operation: str = "write"
) -> StreamForgeError:
    """Return the library's error for a librdkafka `KafkaError` about `topic`.

    A broker's error code is Kafka's protocol code, the one kafka-python's error classes
    carry: mapped by `refusal` (a write) or `map_topic_error` (a read), so both clients'
    refusals read the same.
    """
    from confluent_kafka import KafkaError, KafkaException

    def same(exc: BaseException) -> StreamForgeError:
        if operation == "write":
            return refusal(exc, settings, topic, what)
        where = settings.kafka_bootstrap_servers
        user = settings.kafka_user
        return map_topic_error(exc, user=user, topic=topic, operation=operation, where=where)

    code = error.code()
    if code >= 0:
        return same(kerr.for_code(code)(error.str()))
    if code in (KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION):
        return same(kerr.UnknownTopicOrPartitionError(error.str()))
    if code in (KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT):
        where = settings.kafka_bootstrap_servers
        return BrokerUnavailable(f"{what}: the broker at {where} did not answer ({error.str()})")
    mapped: StreamForgeError = map_confluent_error(
        KafkaException(error), what=what, settings=settings
    )
    return mapped


def rd_connect(
    settings: Settings,
    topic: str,
    what: str,
    build: Callable[[dict[str, Any]], Any],
    *,
    operation: str = "write",
) -> tuple[Any, int]:
    """Build a librdkafka client with `build(config)`; return it and `topic`'s partition count.

    Fails fast and names the cause as kafka-python's clients do (`kafka.clients`): a dead
    broker at the TCP probe; a refused login or certificate from what librdkafka reported
    while it retried; an ACL refusal or a missing topic from the topic's metadata.
    """
    from confluent_kafka import KafkaError, KafkaException

    with clients._connecting(what, settings):
        pass  # the TCP probe: a dead broker fails at once, not after librdkafka's retries
    errors: list[Any] = []
    config = {
        **clients._librdkafka_config(settings),
        "error_cb": errors.append,
        "logger": logging.getLogger("streamforge_nb.librdkafka"),
    }
    client = build(config)
    try:
        deadline = time.monotonic() + clients._CONNECT_TIMEOUT_MS / 1000
        while True:
            try:
                metadata = client.list_topics(topic, timeout=0.5)
                break
            except KafkaException as exc:
                # A refused login or certificate is fatal at once, as Kafka's own clients
                # make it; errors reach error_cb only when a poll serves them.
                client.poll(0)
                refused = [e for e in errors if "SSL" in e.str() or "SASL" in e.str()]
                if not refused and time.monotonic() < deadline:
                    continue
                cause = refused[0] if refused else exc.args[0]
                raise map_confluent_error(
                    KafkaException(cause), what=what, settings=settings
                ) from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            error = found.error if found is not None and found.error is not None else None
            if error is None:
                error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, topic)
            raise rd_refusal(error, settings, topic, what, operation=operation)
    except BaseException:
        _close(client)
        raise
    return client, len(found.partitions)


def _unknown_partition(exc: BaseException) -> bool:
    from confluent_kafka import KafkaError

    error = kafka_error_of(exc)
    return error is not None and error.code() == KafkaError._UNKNOWN_PARTITION


def _close(client: Any) -> None:
    if hasattr(client, "assign"):  # a consumer; a producer has nothing to close
        client.close()


def live_reader(
    settings: Settings, topic: str, *, partition_of: str | None = None
) -> tuple[Any, dict[int, int]]:
    """Return a librdkafka consumer of `topic` at its end, and the end offset per partition.

    Every partition, or only `partition_of` a queue id's. No group: assigned at the end
    offsets asked for here, so a message sent once this returns is never missed.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    what = f"reading {topic}"
    config = {"group.id": f"streamforge-live-{uuid.uuid4().hex[:12]}",
              "enable.auto.commit": False, "enable.auto.offset.store": False,
              **LOW_LATENCY_CONSUMER}  # fmt: skip
    consumer, count = rd_connect(
        settings, topic, what, lambda base: Consumer({**base, **config}), operation="read"
    )
    numbers = range(count) if partition_of is None else [partition_for(partition_of, count)]
    # A broker restarting under load can take longer than one send's timeout to come back.
    deadline = time.monotonic() + 3 * SEND_TIMEOUT_S
    try:
        while True:
            try:
                # Timestamp -1 asks for each partition's latest offset.
                ends = consumer.offsets_for_times(
                    [TopicPartition(topic, p, -1) for p in numbers], timeout=SEND_TIMEOUT_S
                )
                break
            except KafkaException as exc:
                # A new topic's leaders are still being elected, or the broker went down
                # between the metadata and this lookup: librdkafka then forgets the partitions
                # it was just told of ("Local: Unknown partition"; a sink starting during a
                # broker restart exited 1 on it). Ask again, as kafka-python does.
                if not (is_passing_kafka_error(exc) or _unknown_partition(exc)) or (
                    time.monotonic() > deadline
                ):
                    raise
                time.sleep(0.1)
        consumer.assign(ends)
    except KafkaException as exc:
        consumer.close()
        raise map_confluent_error(exc, what=what, settings=settings) from None
    except BaseException:
        consumer.close()
        raise
    return consumer, {tp.partition: tp.offset for tp in ends}


class CommandSender:
    """Sends commands on one service topic through librdkafka, each waiting for the broker."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from confluent_kafka import Producer

        self.settings = settings
        self.topic = topic
        what = f"connecting a producer to {topic}"
        self._producer, self._count = rd_connect(
            settings, topic, what, lambda config: Producer({**config, **LOW_LATENCY_PRODUCER})
        )

    def send(
        self, message: BaseEvent | BaseCommand, *, timeout: float = SEND_TIMEOUT_S
    ) -> SendResult:
        """Send `message` to its queue's partition; return where the broker stored it.

        Raises the errors `send_checked` does (`rd_refusal`), naming the user and the topic.
        """
        done = self.send_nowait(message)
        deadline = time.monotonic() + timeout
        while not done and (left := deadline - time.monotonic()) > 0:
            self._producer.poll(left)
        what = f"sending {_kind(message)} to {self.topic}"
        if not done:
            where = self.settings.kafka_bootstrap_servers
            raise BrokerUnavailable(
                f"{what}: the broker at {where} did not answer in {timeout:g} s"
            )
        error, sent = done[0]
        if error is not None:
            raise rd_refusal(error, self.settings, self.topic, what)
        log.debug("%s: stored at partition %d offset %d", what, sent.partition(), sent.offset())
        return SendResult(self.topic, sent.partition(), sent.offset())

    def send_nowait(self, message: BaseEvent | BaseCommand) -> list[tuple[Any, Any]]:
        """Hand `message` to librdkafka; return the list its delivery report lands in.

        For a pong: the sender measures the trip, and a refused one is only logged.
        """
        from confluent_kafka import KafkaException

        what = f"sending {_kind(message)} to {self.topic}"
        key = message_key(message)
        done: list[tuple[Any, Any]] = []
        try:
            self._producer.produce(
                self.topic, encode(message), key, partition=partition_for(key, self._count),
                on_delivery=lambda error, sent: done.append((error, sent)),
            )  # fmt: skip
        except (KafkaException, BufferError) as exc:
            raise BrokerError(f"{what}: {exc}") from None
        self._producer.poll(0)  # serve earlier delivery reports (a pong's are not awaited)
        return done

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is still queued (up to `timeout`), then let the producer go."""
        self._producer.flush(timeout)
