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

from kafka import TopicPartition

from .broker import LocalBroker
from .clients import make_admin, make_consumer
from .settings import Settings

__all__ = ["local_broker", "read_topic", "topic_exists", "unique_name"]


@contextmanager
def local_broker(home: Path, *, timeout: float = 120.0) -> Iterator[LocalBroker]:
    """Start a broker on free ports in `home`; stop it on exit.

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
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took over {timeout:g} s")
            for batch in consumer.poll(timeout_ms=200, max_records=50_000).values():
                records.extend(batch)
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
