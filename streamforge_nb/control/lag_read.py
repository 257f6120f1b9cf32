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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import orjson

from streamforge_nb.control.lag import (
    LAG_COLUMNS,
    WINDOW,
    _decode_batch,
    _loading_rows,
    _typed,
)
from streamforge_nb.control.lag_runs import RUN_MAX as RUN_MAX  # the runs' length, named above
from streamforge_nb.control.lag_runs import Runs, arriving
from streamforge_nb.exceptions import InvalidName, map_confluent_error
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_POINTS", "read_queues_lag", "window_time"]

DEFAULT_POINTS = 200
"""Buckets a long window is read in (a chart's width; the newest samples come in full)."""
FULL_PER_POINT = 64
"""A window of at most `points` x this many messages is read in full: sampling would not
read much less."""
_TAIL_FIRST = 256
_READERS = 4
# Connect to the brokers at once: with librdkafka's sparse connections a new reader's first
# metadata request waited ~50 ms for one (a few readers are made per read).
_EAGER = {"enable.sparse.connections": False}
# A reader that seeks every few messages must not fetch megabytes ahead of each seek.
# Nor wait librdkafka's default second to fetch again once its queue holds enough; nor, read
# to a partition's end, have the broker hold its next fetch (one at a time) 100 ms for more.
_SEEKING = {**_EAGER, "fetch.max.bytes": 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024,
            "queued.min.messages": 200, "fetch.queue.backoff.ms": 5,
            "fetch.wait.max.ms": 10}  # fmt: skip
# A bucket's reader: a partition's next batch is fetched once its queue is empty (a run
# seldom needs more than one; a seek drops the rest), and 1 ms after a fetch found it not
# empty: the 5 ms back-off held each run's fetch after its seek (50 runs: 0.33 -> 0.12 s);
# at 0 ms librdkafka's broker thread spun while the queue held a message (twice the CPU).
_RUNS = {**_SEEKING, "queued.min.messages": 1, "fetch.queue.backoff.ms": 1}
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
            read.consumer = make_assigned_reader(settings, topic, **_EAGER)  # fetching far ahead
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

    def run(self, starts: dict[int, int], stops: dict[int, int]) -> dict[int, int | None]:
        """Read each partition from `starts` to `stops`; return each first message's time (ms)."""
        todo = {p: s for p, s in starts.items() if s < stops.get(p, 0)}
        first: dict[int, int | None] = dict.fromkeys(starts)
        if not todo:
            return first
        from confluent_kafka import TopicPartition

        raws: dict[int, list[tuple[bytes | None, bytes]]] = {p: [] for p in todo}
        left = set(todo)
        self.consumer.assign([TopicPartition(self.topic, p, o) for p, o in todo.items()])

        def reading() -> dict[int, int]:
            return {p: stops[p] for p in left}

        for message in arriving(self.consumer, self.topic, 500, reading, left.discard):
            if not left:
                break  # the rest of a fetched batch: past every run's end
            p, offset = message.partition(), message.offset()
            if p not in left or not todo[p] <= offset < stops[p]:
                continue  # fetched for an earlier run, or past this one
            if offset + 1 >= stops[p]:
                left.discard(p)
            stamp = message.timestamp()[1]
            if first[p] is None and stamp >= 0:  # -1: the message has no time
                first[p] = stamp
            key, raw = message.key(), message.value()
            if raw and b'"lag"' in raw and (key is None or key in self.owners[p]):
                raws[p].append((key, raw))
        for p, found in raws.items():
            self.rows[p].extend(self._rows(found))
        return first

    def _rows(
        self, raws: list[tuple[bytes | None, bytes]], docs: list[Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """The asked queues' sample rows in `raws` (key, value; `docs`: their values decoded),
        the queue id first: a report counts for the queue it names, and only on a message
        keyed by that queue (or unkeyed)."""
        rows: list[tuple[Any, ...]] = []
        for (key, _), doc in zip(raws, _decode_each(raws) if docs is None else docs, strict=True):
            named = doc.get("queue_id") if type(doc) is dict else None
            if type(named) is str and named in self.ids and key in (None, named.encode()):
                rows.extend([(named, *row) for row in _loading_rows(doc)])
        return rows

    def sampled(
        self, starts: dict[int, int], ends: dict[int, int], points: int, until: float | None
    ) -> dict[str, Any]:
        """Read the window in `points` buckets and the newest samples in full; return the
        resolution read."""
        from concurrent.futures import Future

        from streamforge_nb.kafka.reader import offsets_since

        # Buckets but the last by a few readers at once: a connection each, as the broker
        # answers one connection's requests in turn. They connect while this reader finds the
        # window's first time; the last bucket ends where the tail begins, so it comes after.
        plan: Future[list[int]] = Future()
        cuts = [k * (points - 1) // _READERS for k in range(_READERS + 1)]
        parts = [range(a, b) for a, b in pairwise(cuts) if b > a]
        with ThreadPoolExecutor(len(parts), thread_name_prefix="lag-buckets") as pool:
            jobs = [pool.submit(self._buckets, part, plan, starts, ends) for part in parts]
            try:
                found = self.run(starts, {p: min(ends[p], o + 1) for p, o in starts.items()})
                for p in self.rows:  # only its time: bucket 0 reads that message again
                    self.rows[p].clear()
                known = [t for t in found.values() if t is not None]
                low = min(known) / 1000 if known else time.time()
                high = max(low + points, time.time() if until is None else until)
                width = (high - low) / points
                at = [int((low + i * width) * 1000) for i in range(points)]
                plan.set_result(at)
                last = offsets_since(self.consumer, self.topic, at[-1], ends)
                firsts = self._tail(dict(ends), {p: max(starts[p], last[p]) for p in ends})
                runs = Runs(self.consumer, self.topic, self.owners)
                runs.read([last, self.tail_starts])
                kept = [self._firsts(runs.found)]
            finally:
                plan.cancel()  # a reader still waiting for the plan: this one failed
            kept += [job.result() for job in jobs]
        for each in kept:
            for p, rows in each.items():
                self.rows[p].extend(rows)
        full_since = max((t for t in firsts.values() if t is not None), default=None)
        return {
            "sampled": True, "points": points, "bucket_s": width,
            "full_since": None if full_since is None else full_since / 1000,
        }  # fmt: skip

    def _buckets(
        self, part: range, plan: Any, starts: dict[int, int], ends: dict[int, int]
    ) -> dict[int, list[tuple[Any, ...]]]:
        """Read the buckets `part` (their times from `plan`) with a reader of its own; return
        each partition's rows (decoded here, while the other readers wait on the broker)."""
        from streamforge_nb.kafka.clients import make_assigned_reader
        from streamforge_nb.kafka.reader import offsets_since

        consumer = make_assigned_reader(self.settings, self.topic, **_RUNS)
        try:
            at = plan.result()
            # One lookup per bucket: a request asking one partition twice answers once.
            bounds = [
                starts if i == 0 else offsets_since(consumer, self.topic, at[i], ends)
                for i in [*part, part.stop]
            ]
            runs = Runs(consumer, self.topic, self.owners)
            runs.read(bounds)
        finally:
            consumer.close()
        return self._firsts(runs.found)

    def _firsts(
        self, found: dict[int, list[list[tuple[bytes | None, bytes]]]]
    ) -> dict[int, list[tuple[Any, ...]]]:
        """The first sample of each group and partition in each run of each partition in
        `found` (its runs' key and value of each message), all decoded at once."""
        runs = [run for each in found.values() for run in each]
        docs = iter(_decode_each([raw for run in runs for raw in run]))
        rows: dict[int, list[tuple[Any, ...]]] = {}
        for p, each in found.items():
            rows[p] = []
            for run in each:
                kept: dict[tuple[Any, ...], tuple[Any, ...]] = {}
                for row in sorted(self._rows(run, [next(docs) for _ in run]), key=_time):
                    kept.setdefault((row[2], row[4]), row)
                rows[p].extend(kept.values())
        return rows

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


def _time(row: tuple[Any, ...]) -> Any:
    return row[1]


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
