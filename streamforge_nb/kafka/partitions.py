"""Where a queue's messages live on the service topics, and how to read only those.

`queue-control` and `queue-events` are partitioned and keyed by queue id, so one queue's whole
life is in one partition: the one Kafka's default partitioner (murmur2 of the key, modulo the
topic's REAL partition count) gives its id. Every send of the library names that partition
explicitly, so what a librdkafka or Java producer keyed by queue id writes and what we write
agree, whatever the producer's own partitioner. Readers start at the queue's start time
(`offsets_for_times`), never at offset 0, so their cost does not grow with the topic's history.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from streamforge_nb.kafka.clients import topic_partitions
from streamforge_nb.settings import Settings

__all__ = [
    "START_SLACK_S",
    "offsets_at",
    "partition_count",
    "partition_for",
    "queue_partition",
    "queue_start_time",
]

# Read a little before a queue's recorded start, for clock skew between the host that saved
# the queue-state record (before any start command was sent) and the workers' hosts, whose
# clocks stamp the records `offsets_for_times` searches.
START_SLACK_S = 5.0


def partition_for(key: str | bytes, count: int) -> int:
    """Return the partition Kafka's default partitioner picks for `key` among `count`."""
    if count < 1:
        raise ValueError(f"a topic has at least one partition, got {count}")
    data = key.encode() if isinstance(key, str) else key
    return int(murmur2(data) & 0x7FFFFFFF) % count


def partition_count(consumer: KafkaConsumer, topic: str, settings: Settings) -> int:
    """Return how many partitions `topic` has (raise if it is missing or refused by ACL)."""
    return len(topic_partitions(consumer, topic, settings))


def queue_partition(
    consumer: KafkaConsumer, topic: str, queue_id: str, settings: Settings
) -> TopicPartition:
    """Return the partition of `topic` that holds `queue_id`'s keyed messages."""
    return TopicPartition(
        topic, partition_for(queue_id, partition_count(consumer, topic, settings))
    )


def offsets_at(
    consumer: KafkaConsumer, partitions: Iterable[TopicPartition], since: float | None
) -> dict[TopicPartition, int]:
    """Return, per partition, the first offset at or after `since` (Unix s; None: beginning).

    A partition with nothing that recent gets its end offset: there is no history to read.
    """
    parts = list(partitions)
    if since is None:
        return dict(consumer.beginning_offsets(parts))
    found: dict[TopicPartition, Any] = consumer.offsets_for_times(
        {tp: max(0, int(since * 1000)) for tp in parts}
    )
    missing = [tp for tp in parts if found.get(tp) is None]
    offsets = {tp: found[tp].offset for tp in parts if found.get(tp) is not None}
    if missing:
        offsets.update(consumer.end_offsets(missing))
    return offsets


def queue_start_time(queue_id: str, *, now: float | None = None) -> float | None:
    """Return the earliest time a queue named `queue_id` can have sent anything, if the name says.

    Platform queue ids carry a day (`wf-btcusdt-api_candles_1m-20240801-abc123`): a load is
    launched at the earliest the day before the data's day. A day in the future or an id
    without a day gives None (unknown: callers read the queue's partition from its start).
    """
    from datetime import UTC, datetime

    from streamforge_nb.exceptions import InvalidName
    from streamforge_nb.platform.names import parse_queue_id

    try:
        day = parse_queue_id(queue_id).day
    except (InvalidName, TypeError):
        return None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() - 86_400.0
    current = time.time() if now is None else now
    return start if start <= current else None
