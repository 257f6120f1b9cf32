"""The short runs of a sampled lag read (`control.lag_read`): each bucket's first messages.

A reader takes each of its partitions through its buckets one seek at a time, so a run
never waits for another partition's. (Finding the next buckets' offsets in a thread of
their own while the runs read gained nothing measurable: the read is bound by the CPU.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from streamforge_nb.exceptions import BrokerUnavailable

RUN_MAX = 200
"""Messages a bucket's run reads at most per partition (a queue that stopped reporting while
others on its partition go on costs this much per bucket)."""
STALL_S = 30.0
"""Seconds without a message before a read with partitions left gives up."""
_TAKE = 20
"""Messages a run's reader takes at a time: a seek at a run's end drops what librdkafka still
holds of its partition, but not what it has handed over (about 95% of 500 were)."""


class Runs:
    """Short runs of one reader, each partition going on to its next run at its run's end.

    Not one assignment per bucket: each waited for every partition's run before the next
    began. A partition's next run starts by a seek (librdkafka drops what it fetched
    before), so a reader keeps all its partitions fetching. Its partitions are left paused.
    """

    def __init__(self, consumer: Any, topic: str, owners: dict[int, set[bytes]]) -> None:
        self.consumer = consumer
        self.topic = topic
        self.owners = owners
        self.found: dict[int, list[list[tuple[bytes | None, bytes]]]] = {p: [] for p in owners}
        """Each partition's runs: the asked queues' (key, value) read in each."""

    def read(self, bounds: list[dict[int, int]]) -> None:
        """Read each bucket's runs: each partition's from `bounds[i]` until each owner was
        seen, `RUN_MAX` offsets or `bounds[i + 1]`."""
        from confluent_kafka import TopicPartition

        count = len(bounds) - 1
        bucket = dict.fromkeys(self.owners, -1)
        runs: dict[int, tuple[int, int]] = {}  # each partition's run now: start, stop
        raws: dict[int, list[tuple[bytes | None, bytes]]] = {p: [] for p in self.owners}
        seen: dict[int, set[bytes]] = {p: set() for p in self.owners}
        after: dict[int, int] = {}  # a message before this was read already

        def move(p: int) -> bool:
            """Go on to p's next run with offsets in it; False: p has none left."""
            while (i := bucket[p] + 1) < count:
                bucket[p] = i
                start, stop = bounds[i][p], bounds[i + 1][p]
                if start < stop:
                    runs[p], after[p] = (start, stop), start
                    return True
            runs.pop(p, None)
            return False

        def done(p: int) -> None:
            self.found[p].append(raws[p])
            raws[p], seen[p] = [], set()
            if move(p):
                self.consumer.seek(TopicPartition(self.topic, p, after[p]))
            else:
                self.consumer.pause([TopicPartition(self.topic, p)])

        for p in self.owners:
            move(p)
        if not runs:
            return
        self.consumer.assign([TopicPartition(self.topic, p, after[p]) for p in runs])

        def reading() -> dict[int, int]:
            return {p: stop for p, (_, stop) in runs.items()}

        for message in arriving(self.consumer, self.topic, _TAKE, reading, done):
            p, offset = message.partition(), message.offset()
            if p not in runs or offset < after[p]:
                continue  # fetched before its seek (a run's later messages, read again)
            start, stop = runs[p]
            if offset >= stop:
                done(p)
                continue
            after[p] = offset + 1
            key, raw = message.key(), message.value()
            if raw and b'"lag"' in raw and (key is None or key in self.owners[p]):
                raws[p].append((key, raw))
                if key is not None:
                    seen[p].add(key)
            if offset + 1 >= stop or offset + 1 - start >= RUN_MAX or seen[p] >= self.owners[p]:
                done(p)


def arriving(
    consumer: Any,
    topic: str,
    take: int,
    reading: Callable[[], dict[int, int]],
    ended: Callable[[int], None],
) -> Iterator[Any]:
    """Yield the messages `consumer` hands over, `take` at a time, while `reading()` names
    partitions still read (each with the offset its read ends at); `ended(p)`: partition p's
    position passed that end while nothing came (its last offsets held no message, as a
    transaction marker).

    Not `kafka.reader.EndReader`: its `consume` waits for a full batch, 50 ms a run, and a
    sampled read makes hundreds of short runs. This waits for the first message only.
    """
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    # A reader joins no group: the group's ACL (librdkafka looks up the coordinator of the id
    # it must have) is not needed to read; a partition's end is no error.
    harmless = (KafkaError._PARTITION_EOF, KafkaError.GROUP_AUTHORIZATION_FAILED)
    quiet = time.monotonic()
    while stops := reading():
        messages = consumer.consume(1, timeout=0.05)
        if messages:
            quiet = time.monotonic()
            messages += consumer.consume(take, timeout=0)
        else:
            for at in consumer.position([TopicPartition(topic, p) for p in stops]):
                if at.offset >= stops[at.partition]:
                    ended(at.partition)
            if reading() and time.monotonic() - quiet > STALL_S:
                raise BrokerUnavailable(
                    f"reading {topic}: nothing came for {STALL_S:g} s with partitions "
                    f"{sorted(reading())} not read to their end"
                )
        for message in messages:
            error = message.error()
            if error is None:
                yield message
            elif error.code() not in harmless:
                raise KafkaException(error)
