"""Helpers for tests, ours and users': a real local Kafka broker per test session.

from streamforge_nb.testing import local_broker

with local_broker(tmp_path) as broker:
    settings = broker.settings()           # PLAINTEXT, anonymous super user
    platform = broker.settings("user-streamforge")  # SASL_SSL + SCRAM, ACLs enforced
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streamforge_nb.exceptions import BrokerError, kafka_errors
from streamforge_nb.kafka.clients import (
    make_admin,
    make_assigned_consumer,
    make_consumer,
    make_producer,
)
from streamforge_nb.kafka.positions import read_to_end
from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.platform.contract import PingCommand, decode_command, encode, message_key
from streamforge_nb.settings import Settings

__all__ = ["local_broker", "read_topic", "round_trips", "topic_exists", "unique_name"]


@contextmanager
def local_broker(home: Path, *, timeout: float = 120.0) -> Iterator[LocalBroker]:
    """Start a broker on free ports in `home` (keeping what an earlier one stored); stop it on exit.

    A broker that does not start raises `LocalBrokerError` carrying the broker's log tail.
    """
    broker = LocalBroker(home)
    try:
        broker.up(port=0, timeout=timeout)
        yield broker
    finally:
        broker.down()


def unique_name(prefix: str = "wf-test") -> str:
    """Return a topic or queue name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def read_topic(settings: Settings, topic: str, *, timeout: float = 30.0) -> list[Any]:
    """Return every record of `topic` from the start to its current end (kafka-python records)."""
    consumer = make_consumer(settings, enable_auto_commit=False)
    try:
        numbers = consumer.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        left = read_to_end(
            consumer, end, records.extend, what="reading " + topic, deadline=deadline,
            max_records=50_000,
        )  # fmt: skip
        if left:
            raise TimeoutError(f"reading {topic} took over {timeout:g} s")
        return records
    finally:
        consumer.close()


def topic_exists(settings: Settings, topic: str) -> bool:
    """Tell whether `topic` exists on the broker."""
    admin = make_admin(settings)
    try:
        return topic in admin.list_topics()
    finally:
        admin.close()


def round_trips(settings: Settings, count: int, timeout: float = 10.0) -> list[float]:
    """Produce `count` ping commands and time each until a consumer reads it back."""
    topic = settings.queue_control_topic
    consumer, _ = make_assigned_consumer(settings, topic, start="end")
    producer = make_producer(settings, linger_ms=0)
    queue_id = f"wf-roundtrip-{uuid.uuid4().hex[:6]}"
    rtts = []
    try:
        with kafka_errors("round trip through " + topic, settings.kafka_bootstrap_servers):
            for _ in range(count):
                ping = PingCommand(
                    queue_id=queue_id, correlation_id=uuid.uuid4().hex, timestamp=time.time()
                )
                started = time.perf_counter()
                producer.send(topic, key=message_key(ping), value=encode(ping))
                producer.flush()
                rtts.append(_read_back(consumer, ping.correlation_id, started, timeout))
    finally:
        producer.close()
        consumer.close()
    return rtts


def _read_back(
    consumer: KafkaConsumer, correlation_id: str, started: float, timeout: float
) -> float:
    deadline = started + timeout
    while time.perf_counter() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            for record in records:
                command = decode_command(record.value)
                if getattr(command, "correlation_id", None) == correlation_id:
                    return time.perf_counter() - started
    raise BrokerError(f"the message did not come back within {timeout:.0f} s")
