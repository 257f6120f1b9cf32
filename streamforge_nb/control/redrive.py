"""Redrive: dead letters sent back to their data topic, checked first by the sink's own rules.

A dead letter chosen by `where` (and changed by `fix`, when given) is run through exactly the
checks the sink applies (`platform.checks.decode_and_check` for candles,
`platform.markers.decode_exchange_empty` for exchange-empty markers) against the queue's
series and range before anything is sent, so a redrive never offers the sink a candle it
would refuse. What passes is republished with its Kafka key and a `redriven-from` header
(`<dlq>:<partition>:<offset>`); a sink then stores it, and since every write is an upsert by
`_key`, redriving twice changes nothing. What still fails leaves a window no fix can save: the
result lists the windows a backfill would load (`Workflow(...).backfill` loads missing gaps).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from streamforge_nb.control.dlq import dead_letter_frame, scan_dead_letters
from streamforge_nb.exceptions import InvalidName, MessageError, kafka_errors
from streamforge_nb.platform.checks import ERA_START_MS, decode_and_check
from streamforge_nb.platform.intervals import INTERVALS, close_time
from streamforge_nb.platform.markers import EXCHANGE_EMPTY, RECORD_HEADER, decode_exchange_empty
from streamforge_nb.platform.names import data_topic, dlq_topic, parse_queue_id, parse_time_range
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from streamforge_nb.store.candles import CandleStore

__all__ = ["REDRIVEN_FROM", "Redrive", "queue_series", "queue_span", "redrive"]

REDRIVEN_FROM = "redriven-from"
"""Header of a redriven message: the dead letter it came from, `<dlq>:<partition>:<offset>`."""
_KEEP_HEADERS = ("source_topic", "source_partition", "source_offset")
Where = str | Callable[["pd.DataFrame"], Any] | None


@dataclass
class Redrive:
    """What a redrive did, or with `dry_run` would do."""

    plan: pd.DataFrame
    """One row per chosen dead letter: where it is in the DLQ, its series and open time,
    `action` (`redrive`: passes the sink's checks; `refused`: does not, `why` says why;
    `skipped`: the fix returned None) and `sent`."""
    backfill: pd.DataFrame
    """Windows (symbol, interval, start, end, time_range) no fix saved that a backfill would
    load: refused dead letters of the queue's series inside its range, still missing in the
    store when one is given."""
    dry_run: bool
    gaps_before: pd.DataFrame | None = None
    """`CandleStore.gaps()` over the affected range at the redrive (None without a store)."""
    _gaps: Callable[[], pd.DataFrame] | None = field(default=None, repr=False)

    @property
    def sent(self) -> int:
        """How many messages were republished."""
        return int(self.plan["sent"].sum())

    def gaps_after(self) -> pd.DataFrame | None:
        """Return the store's gaps over the affected range now (after a sink stored them)."""
        return None if self._gaps is None else self._gaps()

    def summary(self) -> str:
        """One line: how many were chosen, redriven (or would be), refused, windows left."""
        counts = self.plan["action"].value_counts().to_dict()
        verb = "would redrive" if self.dry_run else "redrove"
        return (
            f"{len(self.plan)} dead letters chosen: {verb} {counts.get('redrive', 0)}, "
            f"{counts.get('refused', 0)} refused by the sink's checks, "
            f"{counts.get('skipped', 0)} skipped; {len(self.backfill)} window(s) to backfill"
        )

    def __repr__(self) -> str:
        return f"Redrive({'dry run' if self.dry_run else 'applied'}: {self.summary()})"


def redrive(
    settings: Settings,
    queue_id: str,
    *,
    where: Where = None,
    fix: Callable[[Any], Any] | None = None,
    dry_run: bool = True,
    store: CandleStore | str | None = None,
    span: tuple[int, int] | None = None,
    series: tuple[str | None, str | None] = (None, None),
    limit: int | None = None,
) -> Redrive:
    """Check the dead letters `where` chooses (after `fix`) and republish those that pass.

    `where`: None (all), a `DataFrame.query` string or a callable taking the dead-letters
    frame and returning a boolean mask. `fix(value)` gets the value parsed as JSON (the raw
    bytes when it is not JSON) and returns the new value (a JSON-able object or bytes), a
    (key, value) pair to change the Kafka key too, or None to leave the dead letter out.
    `series` and `span`: the queue's (the sink's own).
    """
    if where is not None and not isinstance(where, str) and not callable(where):
        raise InvalidName(f"where must be a query string or a callable, got {where!r}")
    if fix is not None and not callable(fix):
        raise InvalidName(f"fix must be a callable, got {fix!r}")
    topic = data_topic(queue_id)
    dlq = dlq_topic(topic)
    frame = dead_letter_frame([d.row for d in scan_dead_letters(settings, dlq, limit=limit)])
    chosen = _choose(frame, where)
    wanted = set(zip(chosen["dlq_partition"], chosen["dlq_offset"], strict=True))
    letters = {}
    if wanted:
        for letter in scan_dead_letters(settings, dlq, limit=limit):
            where_at = (letter.row["dlq_partition"], letter.row["dlq_offset"])
            if where_at in wanted:
                letters[where_at] = letter
    symbol, interval = series
    plan = chosen[["dlq_partition", "dlq_offset", "key", "symbol", "interval", "open_time"]]
    plan = plan.assign(reason_class=chosen["reason_class"], action="", why="", sent=False)
    outgoing = _check(plan, letters, fix, (dlq, symbol, interval), span)
    gaps_of = _gaps_of(store, settings, plan, series)
    before = gaps_of() if gaps_of is not None else None
    if outgoing and not dry_run:
        _send(settings, topic, dlq, outgoing)
        plan.loc[[row for row, _ in outgoing], "sent"] = True
    windows = _backfill(plan, symbol, interval, span, before)
    return Redrive(plan.reset_index(drop=True), windows, dry_run, before, gaps_of)


# What a `where` string may hold: comparisons of columns with literals, joined by and/or/not,
# and the few column methods that select (no `@` variables, no other calls: pandas' query
# would run `col.to_csv(...)` or reach the caller's locals, and a query string may come from
# a command line).
_QUERY_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.BitAnd,
    ast.BitOr, ast.BinOp, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple, ast.Call,
    ast.Attribute, ast.keyword,
)  # fmt: skip
_QUERY_METHODS = {"contains", "startswith", "endswith", "isin", "isna", "notna", "str"}


def check_query(where: str, columns: Any) -> str:
    """Return `where` if it only compares and selects columns, else raise `InvalidName`."""
    try:
        tree = ast.parse(where, mode="eval")
    except SyntaxError as exc:
        raise InvalidName(f"where {where!r} is not a query: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _QUERY_NODES):
            raise InvalidName(f"where {where!r}: {type(node).__name__} is not allowed")
        if isinstance(node, ast.Attribute) and node.attr not in _QUERY_METHODS:
            raise InvalidName(f"where {where!r}: .{node.attr} is not allowed")
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Attribute):
            raise InvalidName(f"where {where!r}: only column methods may be called")
        if isinstance(node, ast.Name) and node.id not in columns:
            known = ", ".join(map(str, columns))
            raise InvalidName(f"where {where!r}: no column {node.id!r} (columns: {known})")
    if "@" in where:
        raise InvalidName(f"where {where!r}: @variables are not allowed")
    return where


def _choose(frame: pd.DataFrame, where: Where) -> pd.DataFrame:
    if where is None:
        return frame
    if isinstance(where, str):
        check_query(where, frame.columns)
    try:
        if isinstance(where, str):
            return frame.query(where)
        return frame[where(frame)]
    except Exception as exc:  # pandas says what is wrong in a query in many shapes
        raise InvalidName(f"where {where!r} does not select dead letters: {exc}") from None


def _check(
    plan: pd.DataFrame,
    letters: dict[tuple[int, int], Any],
    fix: Callable[[Any], Any] | None,
    where: tuple[str, str | None, str | None],
    span: tuple[int, int] | None,
) -> list[tuple[Any, tuple[bytes | None, bytes, list[tuple[str, bytes]]]]]:
    """Fill `plan`'s action and why; return [(plan row, (key, value, headers))] to send.

    `where`: (the DLQ, the queue's symbol and interval).
    """
    dlq, symbol, interval = where
    candles: list[tuple[Any, bytes | None, bytes, list[tuple[str, bytes]]]] = []
    outgoing = []
    for row in plan.itertuples():
        letter = letters.get((row.dlq_partition, row.dlq_offset))
        if letter is None:  # gone meanwhile (retention): nothing to send
            plan.loc[row.Index, ["action", "why"]] = ["skipped", "no longer in the DLQ"]
            continue
        fixed = _fixed(letter.key, letter.value, fix)
        if fixed is None:
            plan.loc[row.Index, ["action", "why"]] = ["skipped", "the fix returned None"]
            continue
        key, value = fixed
        came = f"{dlq}:{row.dlq_partition}:{row.dlq_offset}".encode()
        headers = [(n, v) for n, v in letter.headers if n in _KEEP_HEADERS]
        headers.append((REDRIVEN_FROM, came))
        if row.reason_class == "marker":
            try:
                decode_exchange_empty(value, key, symbol, interval)
            except MessageError as exc:
                plan.loc[row.Index, ["action", "why"]] = ["refused", str(exc)]
                continue
            plan.loc[row.Index, "action"] = "redrive"
            marker = [(RECORD_HEADER, EXCHANGE_EMPTY), *headers]
            outgoing.append((row.Index, (key, value, marker)))
            continue
        candles.append((row.Index, key, value, headers))
    if candles:
        # The sink's own checks, on the batch as the sink would read it.
        _, bad = decode_and_check(
            [c[2] for c in candles], [c[1] for c in candles], symbol, interval, span=span
        )
        refused = dict(bad)
        for i, (index, key, value, headers) in enumerate(candles):
            if i in refused:
                plan.loc[index, ["action", "why"]] = ["refused", refused[i]]
            else:
                plan.loc[index, "action"] = "redrive"
                outgoing.append((index, (key, value, headers)))
    return outgoing


def _fixed(
    key: bytes | None, value: bytes, fix: Callable[[Any], Any] | None
) -> tuple[bytes | None, bytes] | None:
    """Return the (key, value) to check and send: `fix`'s answer encoded, or as they are.

    `fix` returns a value, or a (key, value) pair when the key must change too (a `_key`
    fixed must stay equal to the Kafka key, or the sink refuses it).
    """
    if fix is None:
        return key, value
    try:
        given: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        given = value
    out = fix(given)
    if isinstance(out, tuple) and len(out) == 2:
        key = out[0].encode() if isinstance(out[0], str) else out[0]
        if key is not None and not isinstance(key, bytes):
            raise InvalidName(f"fix returned a key that is not text or bytes: {out[0]!r}")
        out = out[1]
    if out is None:
        return None
    if isinstance(out, bytes):
        return key, out
    if isinstance(out, str):
        return key, out.encode()
    try:
        return key, orjson.dumps(out)
    except TypeError as exc:
        raise InvalidName(f"fix returned a value that is not JSON: {exc}") from None


def _span_of(
    plan: pd.DataFrame, symbol: str | None, interval: str | None
) -> tuple[int, int] | None:
    """[first open, last close] (ms) of the plan's candles of the queue's series, if any."""
    if symbol is None or interval is None:
        return None
    mine = plan[(plan["symbol"] == symbol) & (plan["interval"] == interval)]["open_time"].dropna()
    if mine.empty:
        return None
    first = int(mine.min().value // 1_000_000)
    last = int(mine.max().value // 1_000_000)
    return first, close_time(interval, last) + 1


def _gaps_of(
    store: CandleStore | str | None,
    settings: Settings,
    plan: pd.DataFrame,
    series: tuple[str | None, str | None],
) -> Callable[[], pd.DataFrame] | None:
    """A reader of the store's gaps over the plan's range (None: no store or no range).

    A store given by URL is opened for each reading: the result may be kept for hours.
    """
    symbol, interval = series
    bounds = _span_of(plan, symbol, interval)
    if store is None or bounds is None or symbol is None or interval is None:
        return None
    sym, iv = symbol, interval

    def gaps() -> pd.DataFrame:
        if not isinstance(store, str):
            return store.gaps(sym, iv, bounds[0], bounds[1])
        from streamforge_nb.store.candles import CandleStore

        with CandleStore.open(store, settings=settings) as opened:
            return opened.gaps(sym, iv, bounds[0], bounds[1])

    return gaps


def _send(
    settings: Settings,
    topic: str,
    dlq: str,
    outgoing: list[tuple[Any, tuple[bytes | None, bytes, list[tuple[str, bytes]]]]],
) -> None:
    """Republish to the data topic (made as the sink makes it, if cleanup deleted it)."""
    from streamforge_nb.kafka.clients import make_admin, make_producer
    from streamforge_nb.platform.topics import ensure_queue_topics

    admin = make_admin(settings)
    try:
        ensure_queue_topics(admin, settings, topic)
    finally:
        admin.close()
    producer = make_producer(settings, acks="all")
    where = settings.kafka_bootstrap_servers
    try:
        with kafka_errors(f"redriving {dlq} to {topic}", where):
            sent = [
                producer.send(topic, key=key, value=value, headers=headers)
                for _, (key, value, headers) in outgoing
            ]
            producer.flush(timeout=30)
            for future in sent:
                future.get(timeout=30)
    finally:
        producer.close(timeout=10)


def _backfill(
    plan: pd.DataFrame,
    symbol: str | None,
    interval: str | None,
    span: tuple[int, int] | None,
    gaps: pd.DataFrame | None,
) -> pd.DataFrame:
    """The windows of refused dead letters of the queue's series a backfill would load."""
    import time

    import pandas as pd

    columns = ["symbol", "interval", "start", "end", "time_range"]
    refused = plan[(plan["action"] == "refused") & plan["open_time"].notna()]
    if symbol is not None:
        refused = refused[(refused["symbol"] == symbol) & (refused["interval"] == interval)]
    first, end = span if span is not None else (ERA_START_MS, 2**62)
    now_ms = int(time.time() * 1000)
    spans: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for row in refused.itertuples():
        open_ms = int(row.open_time.value // 1_000_000)
        if first <= open_ms < end and ERA_START_MS <= open_ms <= now_ms:
            spans.setdefault((row.symbol, row.interval), []).append(
                (open_ms, close_time(row.interval, open_ms) + 1)
            )
    rows = []
    for (sym, iv), pieces in spans.items():
        for a, b in _merge(sorted(pieces)):
            for start, stop in _still_missing(a, b, gaps if sym == symbol else None):
                rows.append((sym, iv, start, stop))
    frame = pd.DataFrame(rows, columns=columns[:4])
    for name in ("start", "end"):
        frame[name] = pd.to_datetime(frame[name], unit="ms", utc=True)
    frame["time_range"] = [
        f"{a.isoformat()}/{b.isoformat()}"
        for a, b in zip(frame["start"], frame["end"], strict=True)
    ]
    return frame[columns]


def _merge(pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in pieces:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _still_missing(a: int, b: int, gaps: pd.DataFrame | None) -> list[tuple[int, int]]:
    """`[a, b)` clipped to the store's `missing` gaps (all of it without a store)."""
    if gaps is None:
        return [(a, b)]
    found = []
    for gap in gaps[gaps["kind"] == "missing"].itertuples():
        start, end = int(gap.start.value // 1_000_000), int(gap.end.value // 1_000_000)
        lo, hi = max(a, start), min(b, end)
        if lo < hi:
            found.append((lo, hi))
    return found


# -- what a queue id implies (the sink checks the same) -------------------------------------
def queue_span(topic: str, queue_id: str, time_range: str | None) -> tuple[int, int] | None:
    """Return the open times (ms, end exclusive) the queue's candles may have, or None.

    The queue's TIME_RANGE when given; else from the start of the day in its queue id (a
    queue's id carries the day its range starts); None for a hand-made queue id.
    """
    if time_range:
        span = parse_time_range(time_range)
        return span.start_ms, span.end_ms
    qid = topic.removesuffix("-data") if topic.endswith("-data") else queue_id
    try:
        day = parse_queue_id(qid).day
    except InvalidName:
        return None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return int(start.timestamp()) * 1000, 2**63 - 1


def queue_series(topic: str, queue_id: str) -> tuple[str | None, str | None]:
    """Return (symbol, interval) of the queue owning `topic` (None, None: a hand-made queue)."""
    qid = topic.removesuffix("-data") if topic.endswith("-data") else queue_id
    try:
        parts = parse_queue_id(qid)
    except InvalidName:
        return None, None
    m = _CANDLES_TYPE.fullmatch(parts.type)
    if m is None or m["interval"] not in INTERVALS:
        return None, None
    return parts.symbol, m["interval"]


_CANDLES_TYPE = re.compile(r"[a-z][a-z0-9]*_candles_(?P<interval>[0-9A-Za-z]+)")
