"""Exchange-empty markers: data-topic records that say the exchange has no kline in a window.

The loader publishes one per window the exchange confirmed empty (a maintenance window inside
the symbol's life), with header `streamforge-record: exchange-empty`, on the same topic as the
candles, so it reaches the store through the same sink, commit and replay rules; the sink
records it and `CandleStore.gaps()` labels the window `exchange_empty`, not `missing`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import orjson

from streamforge_nb.exceptions import MessageError
from streamforge_nb.platform.checks import _SYMBOL_RE, ERA_START_MS, _clip, _when
from streamforge_nb.platform.intervals import INTERVALS, WEEK_OFFSET_MS, interval_ms, longest_ms

__all__ = [
    "EXCHANGE_EMPTY",
    "RECORD_HEADER",
    "decode_exchange_empty",
    "encode_exchange_empty",
    "is_marker",
    "marker_key",
]

RECORD_HEADER = "streamforge-record"
"""Kafka header naming a data-topic record that is not a candle (absent: a candle)."""
EXCHANGE_EMPTY = b"exchange-empty"
"""`RECORD_HEADER` value of a marker: the exchange has no kline in `[start_ms, end_ms)`."""
_MARKER_FIELDS = ("_key", "symbol", "interval", "start_ms", "end_ms")


def marker_key(symbol: str, interval: str, start_ms: int, end_ms: int) -> str:
    """Return the `_key` (and Kafka key) of an exchange-empty marker: its identity."""
    return f"{symbol}_{interval}_empty_{start_ms}_{end_ms}"


def encode_exchange_empty(
    symbol: str, interval: str, start_ms: int, end_ms: int
) -> tuple[bytes, bytes]:
    """Return (Kafka key, value) of a marker; send it with header `RECORD_HEADER`."""
    key = marker_key(symbol, interval, start_ms, end_ms)
    value = {"_key": key, "symbol": symbol, "interval": interval}
    return key.encode(), orjson.dumps({**value, "start_ms": start_ms, "end_ms": end_ms})


def is_marker(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> bool:
    """Tell whether a record's headers (pairs, or a mapping) mark an exchange-empty marker."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    return any(k == RECORD_HEADER and v == EXCHANGE_EMPTY for k, v in pairs)


def decode_exchange_empty(
    value: bytes,
    key: bytes | None,
    symbol: str | None,
    interval: str | None,
    now_ms: int | None = None,
) -> tuple[str, str, int, int]:
    """Check a marker against the contract and its queue; return (symbol, interval, start, end).

    Rules: a JSON object with exactly `_key`, `symbol`, `interval`, `start_ms`, `end_ms`; the
    series is the queue's (when known); `start_ms < end_ms`, both on the interval's grid,
    inside 2017 .. now + one interval; `_key` is `marker_key(...)` and equals the Kafka key.
    Raises `MessageError` naming the first broken rule.
    """
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"invalid exchange-empty marker: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) != set(_MARKER_FIELDS):
        got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise MessageError(
            f"invalid exchange-empty marker: expected fields {list(_MARKER_FIELDS)}, got "
            f"{_clip(got, 200)}"
        )
    sym, iv, start, end = doc["symbol"], doc["interval"], doc["start_ms"], doc["end_ms"]
    if not isinstance(sym, str) or not _SYMBOL_RE.fullmatch(sym) or iv not in INTERVALS:
        raise MessageError(
            f"invalid exchange-empty marker: no valid series {_clip(sym)} {_clip(iv)}"
        )
    if (symbol is not None and sym != symbol) or (interval is not None and iv != interval):
        raise MessageError(
            f"invalid exchange-empty marker: series {sym} {iv} is not the queue's "
            f"{symbol} {interval}"
        )
    for name, ms in (("start_ms", start), ("end_ms", end)):
        if type(ms) is not int:
            raise MessageError(f"invalid exchange-empty marker: {name} {_clip(ms)} is no integer")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    latest = now + longest_ms(iv)
    if not ERA_START_MS <= start < end <= latest:
        raise MessageError(
            f"invalid exchange-empty marker: [{start}, {end}) is not a non-empty range "
            f"inside the exchange's era ({_when(ERA_START_MS)} .. {_when(latest)})"
        )
    for name, ms in (("start_ms", start), ("end_ms", end)):
        if not _on_grid(ms, iv):
            raise MessageError(
                f"invalid exchange-empty marker: {name} {ms} ({_when(ms)}) is not on the {iv} grid"
            )
    expected = marker_key(sym, iv, start, end)
    if doc["_key"] != expected:
        raise MessageError(
            f"invalid exchange-empty marker: _key {_clip(doc['_key'])} is not {expected!r}"
        )
    if key is not None and key != expected.encode():
        raise MessageError(
            f"invalid exchange-empty marker: Kafka key {_clip(key)} differs from _key {expected!r}"
        )
    return sym, iv, start, end


def _on_grid(ms: int, interval: str) -> bool:
    step = interval_ms(interval)
    if step is None:
        month = datetime.fromtimestamp(ms / 1000, UTC)
        return ms % 1000 == 0 and month == datetime(month.year, month.month, 1, tzinfo=UTC)
    return (ms - (WEEK_OFFSET_MS if interval == "1w" else 0)) % step == 0
