"""Consumer lag over time: the samples sinks put in their telemetry, a live read, a judgement.

A sink adds its lag per partition to every progress report (`loading` events: `group` and
`lag`, see `platform.contract.PartitionLag`), so the history is in queue-events already: it
costs no request while the sink runs and outlives it. `lag_frame` reads it back, `live_lag`
adds what the broker says now (committed vs end offsets of each group), and `judge_lag` gives
each group one word, Burrow's way: over a window of samples, not from one.

`control.lag_read` reads the samples back from queue-events for `Queue.lag()` and
`Batch.lag()`: each partition once for all its queues, a long window at a resolution
(buckets found by the broker's time index, the newest samples in full); a batch's candidates
are decoded by one `orjson.loads`, and only the fields a sample uses are checked against the
contract's bounds here (a full model per event cost more than the read itself: a week of a
sink's reports is 300k events).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from streamforge_nb.control.telemetry import MALFORMED
from streamforge_nb.exceptions import kafka_errors
from streamforge_nb.platform.contract import (
    MAX_COUNT,
    MAX_ID_CHARS,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    BaseEvent,
)
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "JUDGEMENT_COLUMNS", "LAG_COLUMNS", "judge_lag", "judge_queues", "lag_frame", "live_lag",
]  # fmt: skip

LAG_COLUMNS = (
    "time", "group", "producer", "partition", "committed", "end", "messages_behind",
    "seconds_behind", "source",
)  # fmt: skip
JUDGEMENT_COLUMNS = ("status", "messages_behind", "seconds_behind", "last_sample", "why")
WINDOW = 10
"""Samples per partition a judgement looks at (the latest ones)."""
STALE_S = 120.0
"""A partition behind whose committed offset has not moved for this long is stalled."""
_ORDER = {"ok": 0, "lagging": 1, "stalled": 2, "rewinding": 3}


def lag_frame(events: Iterable[BaseEvent]) -> pd.DataFrame:
    """Return the lag samples in `events` (sinks' `loading` events), one row per partition."""
    columns: dict[str, list[Any]] = {name: [] for name in LAG_COLUMNS}
    for event in events:
        samples = getattr(event, "lag", None)
        group = getattr(event, "group", None)
        if not samples or not isinstance(samples, list) or not isinstance(group, str):
            continue
        for sample in samples:
            try:
                row = (sample.partition, sample.committed, sample.end, sample.messages)
                seconds = sample.seconds
            except AttributeError:  # an older or foreign sender's shape: not a sample
                continue
            for name, value in zip(
                ("partition", "committed", "end", "messages_behind"), row, strict=True
            ):
                columns[name].append(value)
            columns["seconds_behind"].append(seconds)
            columns["time"].append(event.timestamp)
            columns["group"].append(group)
            columns["producer"].append(event.producer)
            columns["source"].append("telemetry")
    return _typed(columns)


def _decode_batch(raws: list[bytes]) -> list[Any]:
    """The JSON documents of `raws`: one decode for the batch, one each if any is malformed."""
    if not raws:
        return []
    try:
        docs: list[Any] = orjson.loads(b"[" + b",".join(raws) + b"]")
        if len(docs) == len(raws):  # a value like `1,2` would split in two
            return docs
    except orjson.JSONDecodeError:
        pass
    docs = []
    for raw in raws:
        try:
            docs.append(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            MALFORMED.note(f"queue-events: not JSON ({exc})")
    return docs


def _loading_rows(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a `loading` document's lag samples (none without samples; a malformed
    one is counted)."""
    if doc.get("status") != "loading" or doc.get("lag") is None or doc.get("group") is None:
        return []  # no sample (lag_frame skips those too)
    found = _sample_rows(doc)
    if found is None:
        MALFORMED.note(
            f"queue-events: a loading event of {doc.get('queue_id')} with a malformed lag"
        )
        return []
    return found


def _sample_rows(doc: dict[str, Any]) -> list[tuple[Any, ...]] | None:
    """The rows of one `loading` event's samples, None if a field is out of the contract.

    The checks of `platform.contract.Loading` and `PartitionLag` for the fields a row takes
    (strict types: a bool is no number, a count no float; the bounds leave out NaN and
    infinity). Inline: a week of reports is hundreds of thousands of documents.
    """
    fields: tuple[Any, ...] = (
        doc.get("timestamp"), doc.get("group"), doc.get("producer"), doc.get("lag"),
    )  # fmt: skip
    stamp, group, producer, samples = fields
    if not (type(stamp) in _NUMBER and MIN_TIMESTAMP <= stamp <= MAX_TIMESTAMP):
        return None
    if not (type(group) is str and len(group) <= MAX_ID_CHARS):
        return None
    if not (type(producer) is str and 0 < len(producer) <= MAX_ID_CHARS):
        return None
    if type(samples) is not list or len(samples) > 10_000:
        return None
    rows = []
    for sample in samples:
        if type(sample) is not dict:
            return None
        numbers: tuple[Any, ...] = (
            sample.get("partition"), sample.get("committed"), sample.get("end"),
            sample.get("messages"), sample.get("seconds"),
        )  # fmt: skip
        partition, committed, end, messages, seconds = numbers
        if not (type(partition) is int and 0 <= partition < 2**31):
            return None
        if not (
            type(committed) is int and 0 <= committed <= MAX_COUNT
            and type(end) is int and 0 <= end <= MAX_COUNT
            and type(messages) is int and 0 <= messages <= MAX_COUNT
        ):  # fmt: skip
            return None
        if seconds is not None and not (type(seconds) in _NUMBER and 0 <= seconds <= MAX_TIMESTAMP):
            return None
        rows.append((stamp, group, producer, partition, committed, end, messages, seconds,
                     "telemetry"))  # fmt: skip
    return rows


_NUMBER = (int, float)
"""The exact types of a JSON number (a bool is an int's subclass, never a number here)."""


def _typed(columns: dict[str, list[Any]]) -> pd.DataFrame:
    """A lag frame of `columns` (with a `queue_id` column first if it has one), sorted."""
    import pandas as pd

    first = ["queue_id"] if "queue_id" in columns else []
    frame = pd.DataFrame(columns, columns=[*first, *LAG_COLUMNS])
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    for name in ("partition", "committed", "end", "messages_behind"):
        frame[name] = frame[name].astype("Int64")
    frame["seconds_behind"] = frame["seconds_behind"].astype("float64")
    order = [*first, "group", "partition", "time"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def live_lag(settings: Settings, topic: str, groups: Iterable[str]) -> pd.DataFrame:
    """Return each group's committed vs end offset of `topic` now (source `live`).

    A group that committed nothing on `topic`, or a topic deleted after its sink finished,
    gives no row. Seconds behind are not known from offsets alone (NaN).
    """
    from kafka import TopicPartition

    from streamforge_nb.kafka.clients import make_admin, make_consumer

    columns: dict[str, list[Any]] = {name: [] for name in LAG_COLUMNS}
    where = settings.kafka_bootstrap_servers
    admin = make_admin(settings)
    try:
        names = list(groups)
        with kafka_errors(f"reading the offsets of {', '.join(names)}", where):
            answer = admin.list_group_offsets(dict.fromkeys(names))
        committed = {
            group: {
                tp.partition: meta.offset
                for tp, meta in (answer.get(group) or {}).items()
                if tp.topic == topic and meta.offset >= 0
            }
            for group in names
        }
    finally:
        admin.close()
    partitions = sorted({p for by_partition in committed.values() for p in by_partition})
    if not partitions:
        return _typed(columns)
    consumer = make_consumer(settings, enable_auto_commit=False)
    try:
        with kafka_errors(f"reading the end of {topic}", where):
            ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        consumer.close()
    now = time.time()
    for group, by_partition in committed.items():
        for partition, offset in sorted(by_partition.items()):
            end = ends.get(TopicPartition(topic, partition))
            if end is None:
                continue
            values = (now, group, None, partition, offset, end, max(0, end - offset), None)
            for name, value in zip(LAG_COLUMNS, (*values, "live"), strict=True):
                columns[name].append(value)
    return _typed(columns)


def judge_lag(
    frame: pd.DataFrame,
    *,
    window: int = WINDOW,
    stale_s: float = STALE_S,
    now: float | None = None,
) -> pd.DataFrame:
    """Judge each group of a `lag_frame` (with live rows, if any): one row per group.

    The rule, per partition over its latest `window` samples (oldest first), the group
    taking its worst partition's word (rewinding > stalled > lagging > ok):

    - rewinding: the committed offset went down between two samples (a reset or a new group
      reading again: the store sees upserts of what it has);
    - stalled: behind at the latest sample, and the committed offset has not moved for more
      than `stale_s` (from the first sample carrying it until now: a sink reports every few
      seconds while it stores, and a live read shows the group's commit now);
    - lagging: behind at the latest sample and more behind than at the window's first;
    - ok: caught up, or catching up (behind no more than at the window's first).
    """
    import numpy as np
    import pandas as pd

    current = time.time() if now is None else now
    rows = {}
    for group, part in frame.groupby("group", sort=True):
        word, why = "ok", "caught up"
        behind = seconds = 0.0
        last = part["time"].max()
        for partition, samples in part.groupby("partition", sort=True):
            recent = samples.sort_values("time", kind="stable").tail(window)
            committed = recent["committed"].to_numpy(dtype=np.int64)
            lags = recent["messages_behind"].to_numpy(dtype=np.int64)
            behind += float(lags[-1])
            seconds = max(seconds, float(np.nan_to_num(recent["seconds_behind"].iloc[-1])))
            times = recent["time"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
            found = _partition_word(times, committed, lags, current, stale_s)
            if found is not None and _ORDER[found[0]] > _ORDER[word]:
                word, why = found[0], f"partition {partition}: {found[1]}"
            elif found is None and word == "ok" and lags[-1] > 0:
                why = "catching up"
        rows[group] = (word, int(behind), seconds, last, why)
    result = pd.DataFrame.from_dict(rows, orient="index", columns=list(JUDGEMENT_COLUMNS))
    result.index.name = "group"
    return result


def judge_queues(frame: pd.DataFrame, **options: Any) -> pd.DataFrame:
    """`judge_lag` of a frame with a `queue_id` column (`Batch.lag()`): each group's row
    starts with its queue."""
    judged = judge_lag(frame, **options)
    owner = frame.drop_duplicates("group").set_index("group")["queue_id"]
    judged.insert(0, "queue_id", owner.reindex(judged.index))
    return judged


def _partition_word(
    times: Any, committed: Any, lags: Any, now: float, stale_s: float
) -> tuple[str, str] | None:
    """The rule of `judge_lag` for one partition (samples oldest first); None: ok."""
    import numpy as np

    if len(committed) > 1 and bool((np.diff(committed) < 0).any()):
        return "rewinding", "the committed offset went back"
    if lags[-1] <= 0:
        return None
    since = times[int(np.argmax(committed == committed[-1]))]  # first sample at this offset
    if now - since > stale_s:
        return "stalled", (
            f"{lags[-1]} behind and the committed offset has not moved for {now - since:.0f} s"
        )
    if len(lags) > 1 and lags[-1] > lags[0]:
        grew = lags[-1] - lags[0]
        return "lagging", f"{lags[-1]} behind, {grew} more than {len(lags)} samples ago"
    return None
