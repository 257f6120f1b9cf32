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

from streamforge_nb.exceptions import BrokerUnavailable

__all__ = ["EndReader"]


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
            messages = self.consumer.consume(self.batch, timeout=0.5)
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
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                p, offset = message.partition(), message.offset()
                if p not in self.left or offset >= self.ends[p]:
                    continue
                if offset + 1 >= self.ends[p]:
                    self.left.discard(p)
                yield message
