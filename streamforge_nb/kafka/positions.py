"""Where a kafka-python consumer reads next, each wait bounded; a read to the end that ends.

kafka-python's `position()` waits without end by default: it may await an offset reset or
a leader-epoch validation the broker never answers. Its fetcher has also been seen to stop
fetching a partition the consumer still holds (`control.follower` renews such a consumer).
A loop "poll until every position reaches the end" then never returns. So a call's
positions are waited for at most `POSITION_MS` in all, and `read_to_end` raises
`BrokerUnavailable`, naming the partitions and how far each got, once no position moved
for `STALL_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streamforge_nb.exceptions import BrokerUnavailable

__all__ = ["POSITION_MS", "STALL_S", "positions", "read_to_end", "resolved"]

POSITION_MS = 2_000
"""Milliseconds a position is waited for; one not known by then counts as no progress."""
STALL_S = 20.0
"""Seconds a read to the end may see no position move before it gives up with the reason."""
_POLL_MS = 200


def positions(
    consumer: KafkaConsumer,
    partitions: Sequence[TopicPartition],
    known: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Where `consumer` reads each of `partitions` next, waiting at most `POSITION_MS` in
    all; one not known by then is where it was last seen (`known`: those positions)."""
    until = time.monotonic() + POSITION_MS / 1000
    found = {}
    for tp in partitions:
        at = consumer.position(tp, timeout_ms=_left_ms(until))
        found[tp] = known[tp] if at is None else at
    return found


def resolved(consumer: KafkaConsumer, partitions: Sequence[TopicPartition], what: str) -> None:
    """Have `consumer` resolve each position now (after a seek to the end: what is sent
    from then on is read); raise `BrokerUnavailable` if the broker does not tell it
    within `STALL_S` in all."""
    until = time.monotonic() + STALL_S
    for tp in partitions:
        if consumer.position(tp, timeout_ms=_left_ms(until)) is None:
            raise BrokerUnavailable(
                f"{what}: the broker gave no offset of partition {tp.partition} in {STALL_S:g} s"
            )


def _left_ms(until: float) -> int:
    # One deadline for all partitions: a position call resets every partition that needs
    # it at once, so a broker that answers none costs the bound once, not once a partition.
    return max(0, int((until - time.monotonic()) * 1000))


def read_to_end(
    consumer: KafkaConsumer,
    end: Mapping[TopicPartition, int],
    handle: Callable[[list[Any]], None],
    *,
    what: str,
    deadline: float | None = None,
    max_records: int = 10_000,
    stall_s: float | None = None,
) -> list[TopicPartition]:
    """Poll `consumer` (assigned and placed) and hand each batch of records to `handle`
    until each partition of `end` is read up to its offset there, or `deadline`
    (`time.monotonic()`) passes; return the partitions not read to their end (none: done).
    Raise `BrokerUnavailable` (`what`: the read, for the message) if no position moved for
    `stall_s` (default `STALL_S`)."""
    stall = STALL_S if stall_s is None else stall_s
    partitions = sorted(end, key=lambda tp: (tp.topic, tp.partition))  # a message in order
    seen = positions(consumer, partitions, dict.fromkeys(partitions, -1))
    remaining = [tp for tp in partitions if seen[tp] < end[tp]]
    since = time.monotonic()
    while remaining and (deadline is None or time.monotonic() < deadline):
        for batch in consumer.poll(timeout_ms=_POLL_MS, max_records=max_records).values():
            handle(batch)
        now = positions(consumer, remaining, seen)
        if any(now[tp] != seen[tp] for tp in remaining):
            seen.update(now)
            since = time.monotonic()
        elif time.monotonic() - since > stall:
            short = ", ".join(f"{tp.partition}: {seen[tp]} of {end[tp]}" for tp in remaining)
            raise BrokerUnavailable(f"{what} made no progress for {stall:g} s (partition {short})")
        remaining = [tp for tp in remaining if seen[tp] < end[tp]]
    return remaining
