"""Read assigned partitions of a topic up to the ends known when the read began.

The one loop behind `Queue.dead_letters()` and `streamforge-nb messages`: a librdkafka
consumer that joins no group (`kafka.clients.make_assigned_reader`) reads each partition
from a start to an end offset, a partition is done at its end (or when the caller says so),
and a read that gets nothing for `stall_s` while partitions are short of their end raises
instead of waiting for ever.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from streamforge_nb.exceptions import BrokerUnavailable, InvalidName, acl_refusal
from streamforge_nb.settings import Settings

__all__ = ["EndReader", "end_offsets", "offsets_since", "topic_numbers"]

_WAIT_S = 0.05


def topic_numbers(consumer: Any, settings: Settings, topic: str) -> list[int]:
    """Return `topic`'s partition numbers; NotAuthorized if the ACLs hide it, else InvalidName
    if it does not exist."""
    from confluent_kafka import KafkaError

    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    error = None if metadata is None else metadata.error
    if error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        # ACLs hide whether it exists: a refusal, never "does not exist".
        raise acl_refusal(
            settings.kafka_user, "read", topic, where=settings.kafka_bootstrap_servers,
            cause="TOPIC_AUTHORIZATION_FAILED",
        )  # fmt: skip
    if metadata is None or error is not None or not metadata.partitions:
        raise InvalidName(f"topic {topic} does not exist or has no partitions")
    return sorted(metadata.partitions)


def end_offsets(
    consumer: Any, topic: str, numbers: list[int], *, first: bool = False
) -> dict[int, int]:
    """Return the end offset of each of `topic`'s partitions `numbers` (`first`: the first
    offset still kept), as the reader may read it (read_committed: the last stable offset).

    One ListOffsets request for them all (the times -1 and -2 are latest and earliest), not a
    watermark query per partition: a round trip each, 100 ms apiece on a busy broker.
    """
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

    at = OFFSET_BEGINNING if first else OFFSET_END
    found = consumer.offsets_for_times([TopicPartition(topic, p, at) for p in numbers], timeout=10)
    return {tp.partition: tp.offset for tp in found}


def offsets_since(
    consumer: Any, topic: str, since_ms: int, ends: Mapping[int, int]
) -> dict[int, int]:
    """Return the first offset at or after `since_ms` (Unix ms) of each partition in `ends`:
    the broker's offsets-for-times lookup, never a scan (nothing that recent: its end)."""
    from confluent_kafka import TopicPartition

    asked = [TopicPartition(topic, p, max(0, since_ms)) for p in ends]
    found = consumer.offsets_for_times(asked, timeout=10)
    return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}


class EndReader:
    """Yield a topic's messages from `starts` to `ends` (exclusive) per partition."""

    def __init__(
        self,
        consumer: Any,
        topic: str,
        starts: Mapping[int, int],
        ends: Mapping[int, int],
        *,
        batch: int = 500,
        stall_s: float = 30.0,
    ) -> None:
        from confluent_kafka import TopicPartition

        self.consumer = consumer
        self.topic = topic
        self.ends = dict(ends)
        self.batch = batch
        self.stall_s = stall_s
        # Offsets may be librdkafka's logical ones (OFFSET_BEGINNING is negative).
        self.left = {p for p in self.ends if self.ends[p] > 0 and starts[p] < self.ends[p]}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(self.left)])

    def done(self, partition: int) -> None:
        """Read no more of `partition` (the caller has what it wanted of it)."""
        self.left.discard(partition)

    def __iter__(self) -> Iterator[Any]:
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        quiet = time.monotonic()
        while self.left:
            # librdkafka waits the whole timeout for a batch it cannot fill: short, so the
            # last messages of a read (or a small one) are not held back.
            messages = self.consumer.consume(self.batch, timeout=_WAIT_S)
            if messages:
                quiet = time.monotonic()
            else:  # the end's last offsets may hold no message (a transaction marker)
                at = self.consumer.position([TopicPartition(self.topic, p) for p in self.left])
                for tp in at:
                    if tp.offset >= self.ends[tp.partition]:
                        self.left.discard(tp.partition)
                if self.left and time.monotonic() - quiet > self.stall_s:
                    raise BrokerUnavailable(
                        f"reading {self.topic}: nothing came for {self.stall_s:g} s with "
                        f"partitions {sorted(self.left)} not read to their end"
                    )
            for message in messages:
                error = message.error()
                if error is not None:
                    # A reader joins no group: the group's ACL (librdkafka looks up the
                    # coordinator of the id it must have) is not needed to read.
                    if error.code() in (
                        KafkaError._PARTITION_EOF, KafkaError.GROUP_AUTHORIZATION_FAILED,
                    ):  # fmt: skip
                        continue
                    raise KafkaException(error)
                p, offset = message.partition(), message.offset()
                if p not in self.left or offset >= self.ends[p]:
                    continue
                if offset + 1 >= self.ends[p]:
                    self.left.discard(p)
                yield message
