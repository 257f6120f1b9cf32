"""Lag samples over a long window, read at a resolution: buckets by time, the newest in full.

A week of a sink reporting every 2 s is 300k reports per queue, in queue-events partitions
that many queues share: far more than a chart or a judgement needs, and seconds to read.
`read_queues_lag` reads every asked queue's partition ONCE (queues hash to partitions; rows
are told apart by key) and, when the window holds more than `points` x `FULL_PER_POINT`
messages, reads it sampled:

- the window is cut into `points` buckets of equal time; the broker's offsets-for-times
  lookup finds each bucket's first offset, and a short run from there (until every asked
  queue of the partition was seen, `RUN_MAX` messages or the next bucket) keeps the first
  sample of each group and partition (a group that reports rarely among many busy ones may
  have none in a bucket);
- the newest samples are read in full, backwards from the end in growing steps, until each
  asked queue of a partition has `lag.WINDOW` samples of each of its groups and partitions
  (what `judge_lag` looks at) or the read reaches the last bucket. A queue whose sinks
  stopped reporting before the last bucket keeps one sample per bucket to its end: judge it
  with the live read (`lag_status()`'s default), which says where its group is now.

The frame says what it holds in `frame.attrs["resolution"]`: `sampled`, `points`,
`bucket_s` and `full_since` (rows from then on are every sample read; before it, one per
bucket), so a sampled series never passes for a complete one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import orjson

from streamforge_nb.control.lag import (
    LAG_COLUMNS,
    WINDOW,
    _add_samples,
    _decode_batch,
    _typed,
)
from streamforge_nb.exceptions import BrokerUnavailable, InvalidName, map_confluent_error
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_POINTS", "read_queues_lag", "window_time"]

DEFAULT_POINTS = 200
"""Buckets a long window is read in (a chart's width; the newest samples come in full)."""
FULL_PER_POINT = 64
"""A window of at most `points` x this many messages is read in full: sampling would not
read much less."""
RUN_MAX = 200
"""Messages a bucket's run reads at most per partition (a queue that stopped reporting while
others on its partition go on costs this much per bucket)."""
_TAIL_FIRST = 256
_STALL_S = 30.0
_READERS = 4
# A reader that seeks every few messages must not fetch megabytes ahead of each seek.
# Nor wait librdkafka's default second to fetch again once its queue holds enough.
_SEEKING = {"fetch.max.bytes": 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024,
            "queued.min.messages": 200, "fetch.queue.backoff.ms": 5}  # fmt: skip
_EVERY = {"sampled": False, "points": None, "bucket_s": None, "full_since": None}
"""The resolution of a frame that holds every sample."""


def read_queues_lag(
    settings: Settings,
    queue_ids: Sequence[str],
    *,
    since: float | None = None,
    until: float | None = None,
    points: int | None = DEFAULT_POINTS,
    live: bool = False,
) -> pd.DataFrame:
    """Return the lag samples of `queue_ids` from `since` to `until` (Unix s; None: each
    queue's start, now): a `queue_id` column, then `LAG_COLUMNS`.

    At most `points` buckets over a long window plus the newest samples in full (module
    docstring; `points=None`: every sample). The resolution is in `frame.attrs["resolution"]`.
    `live`: each queue's groups' committed vs end offsets now after their samples (`source`
    `live`; a queue without samples: its group `<queue>-sink`).
    """
    from confluent_kafka import KafkaException

    from streamforge_nb.kafka.clients import make_assigned_reader
    from streamforge_nb.kafka.partitions import partition_for, queue_start_time
    from streamforge_nb.kafka.reader import end_offsets, offsets_since, topic_numbers

    if points is not None and (type(points) is not int or points < 2):
        raise InvalidName(f"points must be a whole number of buckets >= 2, got {points!r}")
    if since is not None and until is not None and until <= since:
        raise InvalidName(f"until ({until}) must be after since ({since})")
    topic = settings.queue_events_topic
    if not queue_ids:
        empty = _typed({name: [] for name in ("queue_id", *LAG_COLUMNS)})
        empty.attrs["resolution"] = dict(_EVERY)
        return empty
    consumer = make_assigned_reader(settings, topic, **_SEEKING)
    try:
        numbers = topic_numbers(consumer, settings, topic)
        owners: dict[int, set[str]] = {}
        for queue_id in queue_ids:
            owners.setdefault(partition_for(queue_id, len(numbers)), set()).add(queue_id)
        ends = end_offsets(consumer, topic, sorted(owners))
        if until is not None:
            ends = offsets_since(consumer, topic, int(until * 1000), ends)
        if since is None:
            known = [queue_start_time(q) for q in queue_ids]
            since = None if None in known else min(k for k in known if k is not None)
        if since is None:  # an id that names no day: its partition from the beginning
            starts = end_offsets(consumer, topic, sorted(owners), first=True)
        else:
            from streamforge_nb.kafka.partitions import START_SLACK_S

            starts = offsets_since(consumer, topic, int((since - START_SLACK_S) * 1000), ends)
        read = _Read(settings, consumer, topic, owners)
        held = sum(max(0, ends[p] - starts[p]) for p in owners)
        if points is None or held <= points * FULL_PER_POINT:
            read.consumer = make_assigned_reader(settings, topic)  # fetching far ahead
            try:
                read.run(starts, ends)
            finally:
                read.consumer.close()
            resolution = dict(_EVERY)
        else:
            resolution = read.sampled(starts, ends, points, until)
    except KafkaException as exc:
        raise map_confluent_error(exc, what=f"reading {topic}", settings=settings) from None
    finally:
        consumer.close()  # no group joined: nothing for the close to wait on
    rows = [row for p in sorted(read.rows) for row in read.rows[p]]
    columns = ("queue_id", *LAG_COLUMNS)
    by_column = zip(*rows, strict=True) if rows else ((),) * len(columns)
    frame = _typed({name: list(v) for name, v in zip(columns, by_column, strict=True)})
    frame.attrs["resolution"] = resolution
    return _add_live(settings, frame, queue_ids) if live else frame


def _add_live(settings: Settings, frame: pd.DataFrame, queue_ids: Sequence[str]) -> pd.DataFrame:
    """`frame` with each queue's live rows: its groups' committed vs end offsets now."""
    import pandas as pd

    from streamforge_nb.control.lag import live_lag
    from streamforge_nb.platform.names import data_topic

    def one(queue_id: str) -> pd.DataFrame:
        groups = sorted(set(frame.loc[frame["queue_id"] == queue_id, "group"]))
        now = live_lag(settings, data_topic(queue_id), groups or [f"{queue_id}-sink"])
        return now.assign(queue_id=queue_id)[list(frame.columns)]

    # A request or two per queue, mostly waiting: a few queues at a time.
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="lag-live") as pool:
        found = [f for f in pool.map(one, queue_ids) if not f.empty]
    if not found:
        return frame
    both = pd.concat([frame, *found] if len(frame) else found, ignore_index=True)
    order = ["queue_id", "group", "partition", "time"]  # a live row after its samples
    both = both.sort_values(order, kind="stable").reset_index(drop=True)
    both.attrs["resolution"] = frame.attrs.get("resolution")
    return both


def window_time(value: str | float | datetime | None) -> float | None:
    """Return a window's end as Unix s: text as `events --since` takes it (2h, @<Unix ms>,
    ISO 8601), a datetime (naive: UTC), or Unix seconds."""
    from streamforge_nb.control.messages import parse_time

    if value is None:
        return None
    if isinstance(value, str):
        return parse_time(value) / 1000
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if type(value) in (int, float) and math.isfinite(value) and value >= 0:
        return float(value)
    raise InvalidName(f"a time must be 2h, @<Unix ms>, ISO, a datetime or Unix s, got {value!r}")


class _Read:
    """One reader over the asked queues' partitions of queue-events, gathering their rows."""

    def __init__(
        self, settings: Settings, consumer: Any, topic: str, owners: dict[int, set[str]]
    ) -> None:
        self.settings = settings
        self.asked = owners
        self.consumer = consumer
        self.topic = topic
        self.owners = {p: {q.encode() for q in qs} for p, qs in owners.items()}
        self.ids = {q for qs in owners.values() for q in qs}
        self.rows: dict[int, list[tuple[Any, ...]]] = {p: [] for p in owners}

    def run(
        self, starts: dict[int, int], stops: dict[int, int], *, bucket: bool = False
    ) -> dict[int, int | None]:
        """Read each partition from `starts` to `stops` (a `bucket`: also until each owner
        was seen or `RUN_MAX` messages were read); return each first message's time (ms)."""
        todo = {p: s for p, s in starts.items() if s < stops.get(p, 0)}
        first: dict[int, int | None] = dict.fromkeys(starts)
        if not todo:
            return first
        raws: dict[int, list[tuple[bytes | None, bytes]]] = {p: [] for p in todo}
        seen: dict[int, set[bytes]] = {p: set() for p in todo}
        left = set(todo)
        for message in self._messages(todo, stops, left):
            if not left:
                break  # the rest of a fetched batch: past every run's end
            p, offset = message.partition(), message.offset()
            if p not in left or not todo[p] <= offset < stops[p]:
                continue  # fetched for an earlier run, or past this one
            if offset + 1 >= stops[p] or (bucket and offset + 1 - todo[p] >= RUN_MAX):
                left.discard(p)
            stamp = message.timestamp()[1]
            if first[p] is None and stamp >= 0:  # -1: the message has no time
                first[p] = stamp
            key, raw = message.key(), message.value()
            if raw and b'"lag"' in raw and (key is None or key in self.owners[p]):
                raws[p].append((key, raw))
                if bucket and key is not None:
                    seen[p].add(key)
                    if seen[p] >= self.owners[p]:
                        left.discard(p)
        for p, found in raws.items():
            rows = self._rows(found)
            if bucket:  # the first sample of each group and partition
                rows.sort(key=lambda r: r[1])
                kept: dict[tuple[Any, ...], tuple[Any, ...]] = {}
                for row in rows:
                    kept.setdefault((row[2], row[4]), row)
                rows = list(kept.values())
            self.rows[p].extend(rows)
        return first

    def _messages(
        self, starts: dict[int, int], stops: dict[int, int], left: set[int]
    ) -> Iterator[Any]:
        """Yield messages from `starts` while `left` (the caller's) names partitions to read.

        Not `kafka.reader.EndReader`: its `consume` waits for a full batch, 50 ms a run, and a
        sampled read makes hundreds of short runs. This waits for the first message only.
        """
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        # A reader joins no group: the group's ACL (librdkafka looks up the coordinator of
        # the id it must have) is not needed to read; a partition's end is no error.
        harmless = (KafkaError._PARTITION_EOF, KafkaError.GROUP_AUTHORIZATION_FAILED)
        self.consumer.assign([TopicPartition(self.topic, p, o) for p, o in starts.items()])
        quiet = time.monotonic()
        while left:
            messages = self.consumer.consume(1, timeout=0.05)
            if messages:
                quiet = time.monotonic()
                messages += self.consumer.consume(500, timeout=0)
            else:  # the last offsets may hold no message (a transaction marker)
                at = self.consumer.position([TopicPartition(self.topic, p) for p in left])
                left.difference_update(t.partition for t in at if t.offset >= stops[t.partition])
                if left and time.monotonic() - quiet > _STALL_S:
                    raise BrokerUnavailable(
                        f"reading {self.topic}: nothing came for {_STALL_S:g} s with "
                        f"partitions {sorted(left)} not read to their end"
                    )
            for message in messages:
                error = message.error()
                if error is None:
                    yield message
                elif error.code() not in harmless:
                    raise KafkaException(error)

    def _rows(self, raws: list[tuple[bytes | None, bytes]]) -> list[tuple[Any, ...]]:
        """The asked queues' sample rows in `raws` (key, value), the queue id first: a report
        counts for the queue it names, and only on a message keyed by that queue (or unkeyed)."""
        mine: dict[str, list[Any]] = {}
        for (key, _), doc in zip(raws, _decode_each(raws), strict=True):
            named = doc.get("queue_id") if isinstance(doc, dict) else None
            if named in self.ids and (key is None or key == named.encode()):
                mine.setdefault(named, []).append(doc)
        rows: list[tuple[Any, ...]] = []
        for queue_id, docs in mine.items():
            found: list[tuple[Any, ...]] = []
            _add_samples(found, docs, queue_id)
            rows.extend((queue_id, *row) for row in found)
        return rows

    def sampled(
        self, starts: dict[int, int], ends: dict[int, int], points: int, until: float | None
    ) -> dict[str, Any]:
        """Read the window in `points` buckets and the newest samples in full; return the
        resolution read."""
        from streamforge_nb.kafka.reader import offsets_since

        found = self.run(starts, {p: min(ends[p], o + 1) for p, o in starts.items()})
        for p in self.rows:  # only its time: bucket 0 reads that message again
            self.rows[p].clear()
        known = [t for t in found.values() if t is not None]
        low = min(known) / 1000 if known else time.time()
        high = max(low + points, time.time() if until is None else until)
        width = (high - low) / points
        at = [int((low + i * width) * 1000) for i in range(points)]

        last = offsets_since(self.consumer, self.topic, at[-1], ends)
        firsts = self._tail(dict(ends), {p: max(starts[p], last[p]) for p in ends})
        full_since = max((t for t in firsts.values() if t is not None), default=None)

        def buckets(part: range) -> dict[int, list[tuple[Any, ...]]]:
            """Read the buckets `part` with a consumer of its own."""
            from streamforge_nb.kafka.clients import make_assigned_reader

            consumer = make_assigned_reader(self.settings, self.topic, **_SEEKING)
            try:
                read = _Read(self.settings, consumer, self.topic, self.asked)
                # One lookup per bucket: a request asking one partition twice answers once.
                bounds = [
                    starts if i == 0 else self.tail_starts if i == points
                    else offsets_since(consumer, self.topic, at[i], ends)
                    for i in [*part, part.stop]
                ]  # fmt: skip
                for j in range(len(part)):
                    stops = {p: min(bounds[j + 1][p], self.tail_starts[p]) for p in ends}
                    read.run(bounds[j], stops, bucket=True)
                return read.rows
            finally:
                consumer.close()

        # Hundreds of short runs, each mostly a round trip: a few readers at once.
        cuts = [k * points // _READERS for k in range(_READERS + 1)]
        parts = [range(a, b) for a, b in pairwise(cuts) if b > a]
        with ThreadPoolExecutor(_READERS, thread_name_prefix="lag-buckets") as pool:
            for rows in pool.map(buckets, parts):
                for p, kept in rows.items():
                    self.rows[p].extend(kept)
        return {
            "sampled": True, "points": points, "bucket_s": width,
            "full_since": None if full_since is None else full_since / 1000,
        }  # fmt: skip

    def _tail(self, ends: dict[int, int], limits: dict[int, int]) -> dict[int, int | None]:
        """Read backwards from `ends` in growing steps until each owner of a partition has
        `WINDOW` samples of each group and partition, or the read reaches `limits`; return
        the time (ms) of each partition's first message read."""
        self.tail_starts = dict(ends)
        firsts: dict[int, int | None] = dict.fromkeys(ends)
        need = {p for p in ends if ends[p] > limits[p]}
        step = _TAIL_FIRST
        while need:
            lows = {p: max(limits[p], self.tail_starts[p] - step) for p in need}
            found = self.run(lows, {p: self.tail_starts[p] for p in need})
            for p in need:
                firsts[p] = found[p] if found[p] is not None else firsts[p]
            self.tail_starts.update(lows)
            need = {p for p in need if lows[p] > limits[p] and not self._enough(p)}
            step *= 4
        return firsts

    def _enough(self, partition: int) -> bool:
        """Whether each owner of `partition` has `WINDOW` rows of each group and partition."""
        counts: dict[str, dict[tuple[Any, ...], int]] = {}
        for row in self.rows[partition]:
            by_key = counts.setdefault(row[0], {})
            by_key[row[2], row[4]] = by_key.get((row[2], row[4]), 0) + 1
        owners = {q.decode() for q in self.owners[partition]}
        return all(q in counts and min(counts[q].values()) >= WINDOW for q in owners)


def _decode_each(raws: list[tuple[bytes | None, bytes]]) -> list[Any]:
    """The JSON document of each value in `raws` (None where it is malformed)."""
    docs = _decode_batch([raw for _, raw in raws])
    if len(docs) == len(raws):
        return docs
    decoded: list[Any] = []  # one was malformed (counted): decode each again, keeping places
    for _, raw in raws:
        try:
            decoded.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            decoded.append(None)
    return decoded
