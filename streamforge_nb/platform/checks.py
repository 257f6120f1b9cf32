"""The sink's candle checks: many messages at once, column-wise by Arrow.

Messages are decoded by `platform.candle_decode` (re-exported here: `decode_candles`), then
checked against the queue; per-message work happens only around the bad messages, so each
reject still gets its own reason.

Two kinds of finding, never mixed: a refusal (`check_candles`) says the message is not a
candle of this queue (another series, a key that lies, outside the queue's range, not a
number) and sends it to the DLQ; an anomaly (`candle_anomalies`, rules in
`platform.anomalies`) is something real exchanges serve, so the candle is stored exactly as
sent and the oddity reported. A candle the exchange really served must never be refused:
a refusal leaves a hole that `backfill` would fetch, and refuse, for ever.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from streamforge_nb.platform.anomalies import anomaly_masks
from streamforge_nb.platform.candle_decode import (
    _candle_table_from_rows,
    _keys_name_open_times,
    decode_candles,
    decode_canonical_keys_unchecked,
)
from streamforge_nb.platform.contract import DECIMAL_FIELDS
from streamforge_nb.platform.intervals import INTERVALS, longest_ms

__all__ = [
    "ERA_START_MS",
    "candle_anomalies",
    "check_candles",
    "decode_and_check",
    "decode_candles",
]

_SYMBOL_RE = re.compile(r"[A-Z0-9]{2,20}")


ERA_START_MS = 1_483_228_800_000
"""2017-01-01T00:00:00Z: no Binance candle opens earlier (the exchange opened in July 2017)."""
_OPEN_END = 2**62  # a span ending past this has no end (a range from the queue id's day)
_PRICE_FIELDS = ("open", "high", "low", "close")
_VOLUME_FIELDS = tuple(f for f in DECIMAL_FIELDS if f not in _PRICE_FIELDS)


def check_candles(
    table: Any,
    keys: Sequence[bytes | None] | None,
    symbol: str | None,
    interval: str | None,
    now_ms: int | None = None,
    *,
    span: tuple[int, int] | None = None,
) -> tuple[Any, list[tuple[int, str]]]:
    """Refuse what is not a candle of this queue: (table of the rest, [(row, why)]).

    Refusals only: `_key` is not `SYMBOL_INTERVAL_open_time` of the queue's series (`symbol`
    and `interval`; None: each row's own, which must then be a valid symbol and interval), the
    Kafka key differs from `_key` (`keys` None: not checked), the open time is outside the
    exchange's era (2017 .. now + one interval) or the queue's `span` (ms, end exclusive),
    a price is not a finite number > 0, a volume or the trade count is negative or not a
    number. What real exchanges serve (an odd close time, an open time off the grid, open or
    close outside low .. high, zero volume) is kept: `candle_anomalies` tells it.
    Column-wise (Arrow and numpy); Python only for bad rows. The table returned has the
    decimal fields as float64, the store's type: cast once here, for the checks, the anomaly
    count and the store alike.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    # Arrow values made from their bytes: pyarrow converting a Python value imports pandas.
    from streamforge_nb.platform.arrow_values import FALSE, binary_array, from_numpy, to_numpy

    source = table  # the decimal strings as sent: a refusal quotes them
    for name in DECIMAL_FIELDS:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.cast(table[name], pa.float64()))
    rows = table.num_rows
    if rows == 0:
        return table, []
    now = int(time.time() * 1000) if now_ms is None else now_ms
    failed: dict[int, list[str]] = {}

    def flag(ok: Any, why: Any) -> None:
        bad = np.flatnonzero(~np.asarray(ok, dtype=bool))
        for row in bad.tolist():
            failed.setdefault(row, []).append(why(row))

    key_col = table["_key"]
    key_list: list[str] | None = None

    def key_of(row: int) -> str:
        nonlocal key_list
        if key_list is None:
            key_list = key_col.to_pylist()
        return _clip(key_list[row])

    open_ms = to_numpy(table["open_time"])
    series = _series_masks(table, symbol, interval, flag, key_of)
    if keys is not None:
        kafka = binary_array(keys)
        same = pc.fill_null(pc.equal(kafka, pc.cast(key_col, pa.binary())), FALSE)
        flag(
            to_numpy(same),
            lambda r: f"Kafka key {_clip(keys[r])} differs from _key {key_of(r)!r}",
        )
    # Times: the exchange's era, per series (one, on a queue's topic); the queue's range.
    for (_sym, iv), mask in series.items():
        latest = now + longest_ms(iv)
        era = (open_ms >= ERA_START_MS) & (open_ms <= latest)
        flag(
            era | ~mask,
            lambda r, latest=latest: (
                f"open_time {open_ms[r]} ({_when(int(open_ms[r]))}) is outside the exchange's "
                f"era (2017-01-01 .. now + one interval, {_when(latest)})"
            ),
        )
    if span is not None:
        first, end = span
        until = f".. {_when(end)}" if end < _OPEN_END else "on"
        flag(
            (open_ms >= first) & (open_ms < end),
            lambda r: (
                f"open_time {open_ms[r]} ({_when(int(open_ms[r]))}) is outside the queue's "
                f"range {_when(first)} {until}"
            ),
        )
    # Values: numbers, prices > 0, volumes and trades >= 0 (absurd otherwise).
    values = {name: to_numpy(table[name]) for name in DECIMAL_FIELDS}
    with np.errstate(invalid="ignore"):
        for name in _PRICE_FIELDS:
            v = values[name]
            flag(np.isfinite(v) & (v > 0), lambda r, n=name: _value_why(source, n, r, "> 0"))
        for name in _VOLUME_FIELDS:
            v = values[name]
            flag(np.isfinite(v) & (v >= 0), lambda r, n=name: _value_why(source, n, r, ">= 0"))
        trades = to_numpy(table["number_of_trades"])
        flag(trades >= 0, lambda r: f"number_of_trades {trades[r]} is negative")
    if not failed:
        return table, []
    bad = sorted(failed)
    keep = np.ones(rows, dtype=bool)
    keep[bad] = False
    reasons = [(row, f"invalid candle {key_of(row)!r}: " + "; ".join(failed[row])) for row in bad]
    return table.filter(from_numpy(keep)), reasons


def _series_masks(
    table: Any, symbol: str | None, interval: str | None, flag: Any, key_of: Any
) -> dict[tuple[str, str], Any]:
    """Flag rows of another series; return {(symbol, interval): mask of its rows}."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from streamforge_nb.platform.arrow_values import FALSE, string_scalar, to_numpy

    key_col = table["_key"]

    def split_keys() -> tuple[Any, Any]:
        parts = pc.extract_regex(key_col, r"^(?P<symbol>[^_]*)_(?P<interval>[^_]*)_")
        return pc.struct_field(parts, "symbol"), pc.struct_field(parts, "interval")

    if symbol is not None and interval is not None:
        expected = pc.binary_join_element_wise(
            string_scalar(f"{symbol}_{interval}_"),
            pc.cast(table["open_time"], pa.string()),
            string_scalar(""),
        )
        same = to_numpy(pc.fill_null(pc.equal(key_col, expected), FALSE))
        split: list[tuple[Any, Any]] = []  # the keys taken apart, only if one is wrong

        def wrong_key(row: int) -> str:
            got = key_of(row)
            if not split:
                split.append(split_keys())
            row_symbols, row_intervals = split[0]
            sym, iv = row_symbols[row].as_py(), row_intervals[row].as_py()
            if sym != symbol:
                return f"symbol {_clip(sym)!r} in _key {got!r} is not the queue's {symbol}"
            if iv != interval:
                return f"interval {_clip(iv)!r} in _key {got!r} is not the queue's {interval}"
            return f"_key {got!r} is not {symbol}_{interval}_<open_time>"

        flag(same, wrong_key)
        return {(symbol, interval): same}
    series = {}
    row_symbols, row_intervals = split_keys()
    pairs = pc.binary_join_element_wise(row_symbols, row_intervals, string_scalar("_"))
    for name in pc.unique(pairs).to_pylist():
        sym, _, iv = (name or "").partition("_")
        if name is None:  # keys not in the pattern: equal to nothing, as null compares
            mask = np.zeros(len(pairs), dtype=bool)
        else:
            equal = pc.equal(pairs, string_scalar(name))
            mask = to_numpy(pc.fill_null(equal, FALSE))
        if _SYMBOL_RE.fullmatch(sym) and iv in INTERVALS:
            series[(sym, iv)] = mask
        else:
            flag(~mask, lambda r: f"_key {key_of(r)!r} names no valid symbol and interval")
    return series


def candle_anomalies(table: Any, interval: str | None = None) -> tuple[dict[str, int], int]:
    """Count the anomalies (see `platform.anomalies`) among checked candles.

    Return ({kind: candles with it}, candles with any). `interval`: the queue's; None reads
    each row's own from its `_key`. Kinds with none are left out: ({}, 0) means textbook
    candles.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from streamforge_nb.platform.arrow_values import string_scalar, to_numpy

    counts: dict[str, int] = {}
    odd = 0
    if table.num_rows == 0:
        return counts, odd
    if interval is not None:
        groups = {interval: table}
    else:
        ivs = pc.struct_field(pc.extract_regex(table["_key"], r"^[^_]*_(?P<iv>[^_]*)_"), "iv")
        # A null interval (a key out of its pattern) is in no group, as a null mask drops.
        groups = {
            iv: table.filter(pc.equal(ivs, string_scalar(iv)))
            for iv in pc.unique(ivs).to_pylist()
            if iv is not None
        }
    for iv, part in groups.items():
        if iv not in INTERVALS:
            continue
        # A no-op on `check_candles`' float64 columns; decimal strings (a table straight from
        # `decode_candles`) are cast here.
        prices = {
            name: to_numpy(pc.cast(part[name], pa.float64()))
            for name in ("open", "high", "low", "close", "volume")
        }
        masks = anomaly_masks(
            iv, to_numpy(part["open_time"]), to_numpy(part["close_time"]),
            prices["open"], prices["high"], prices["low"], prices["close"], prices["volume"],
        )  # fmt: skip
        for kind, mask in masks.items():
            found = int(np.count_nonzero(mask))
            if found:
                counts[kind] = counts.get(kind, 0) + found
        odd += int(np.count_nonzero(np.logical_or.reduce(list(masks.values()))))
    return counts, odd


def decode_and_check(
    values: Sequence[bytes],
    keys: Sequence[bytes | None] | None,
    symbol: str | None,
    interval: str | None,
    now_ms: int | None = None,
    *,
    span: tuple[int, int] | None = None,
) -> tuple[Any, list[tuple[int, str]]]:
    """Decode and check a sink's batch: (table of the sane candles, [(index, why)]).

    Every message is in exactly one of the two. Never raises on any input: an unexpected
    error in the column-wise path is retried message by message, and a message that still
    breaks something is rejected with that error as its reason.
    """
    try:
        return _decode_and_check(values, keys, symbol, interval, now_ms, span)
    except Exception:  # a bug here must not stall a sink: go message by message
        tables: list[Any] = []
        bad: list[tuple[int, str]] = []
        for index, value in enumerate(values):
            key = None if keys is None else [keys[index]]
            try:
                table, rejected = _decode_and_check([value], key, symbol, interval, now_ms, span)
            except Exception as exc:
                bad.append((index, _clip(f"invalid candle: cannot be checked ({exc!r})", 1000)))
                continue
            if rejected:
                bad.append((index, rejected[0][1]))
            else:
                tables.append(table)
        import pyarrow as pa

        if not tables:  # none sane: an empty table, typed as check_candles returns it
            tables.append(check_candles(_candle_table_from_rows([]), None, None, None)[0])
        return pa.concat_tables(tables), bad


def _decode_and_check(
    values: Sequence[bytes],
    keys: Sequence[bytes | None] | None,
    symbol: str | None,
    interval: str | None,
    now_ms: int | None,
    span: tuple[int, int] | None = None,
) -> tuple[Any, list[tuple[int, str]]]:
    if symbol is not None and interval is not None:
        # A key that is the queue's `SYMBOL_INTERVAL_<open_time>` ends with its open time,
        # all the decoder's own key check asks: a canonical batch found sound needs no
        # other (0.07 us a candle). With refusals, the decoder's check decides whose
        # reasons count: it passes, and they are what `decode_candles` then `check_candles`
        # would say; it fails, and the batch is read again the full way below.
        table = decode_canonical_keys_unchecked(values)
        if table is not None:
            checked, unsound = check_candles(table, keys, symbol, interval, now_ms, span=span)
            if not unsound or _keys_name_open_times(table):
                return checked, unsound
    table, bad = decode_candles(values)
    if bad:
        rejected = {index for index, _ in bad}
        rows = [i for i in range(len(values)) if i not in rejected]
    else:
        rows = list(range(len(values)))
    row_keys = None if keys is None else (keys if not bad else [keys[i] for i in rows])
    table, unsound = check_candles(table, row_keys, symbol, interval, now_ms, span=span)
    if unsound:
        bad = sorted(bad + [(rows[row], why) for row, why in unsound])
    return table, bad


def _value_why(table: Any, name: str, row: int, rule: str) -> str:
    return f"{name} {_clip(table[name][row].as_py())} is not a finite number {rule}"


def _when(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return "beyond any calendar"


def _clip(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
