"""Coverage at a glance: per series and period, how many candles were expected, are stored,
are missing, or lie in windows the exchange confirmed empty.

    store.coverage(symbols="*USDT", intervals=["1m", "1h"], by="month")
    analysis.plot_coverage(frame)      # a heatmap: series x period, share stored

Counts come from statistics, not candles: each partition file's footer gives its rows and
its first and last open time. Only a partition that a period cuts (a year file of `1d`
candles per month, a month file cut by `start`/`end`, or `by="day"`) has its `open_time`
column read, never the other fields. Expected candles are the exchange's grid slots in
`[start, end)`, or without bounds between the series' first and last stored candle (as
`gaps()` counts). `missing = expected - stored - exchange_empty`, never below 0 (an
off-grid candle the exchange served counts as stored).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.intervals import INTERVALS, WEEK_OFFSET_MS, interval_ms
from streamforge_nb.store.base import merge_ranges

if TYPE_CHECKING:
    from streamforge_nb.store.base import CandleBackend

__all__ = ["BY", "coverage_by", "grid_count"]

BY = {"day": "D", "month": "M", "year": "Y"}
_COLUMNS = ("expected", "stored", "missing", "exchange_empty")


def grid_count(interval: str, start_ms: int, end_ms: int) -> int:
    """Return how many of the exchange's `interval` open times lie in `[start_ms, end_ms)`."""
    if end_ms <= start_ms:
        return 0
    step = interval_ms(interval)
    if step is None:  # calendar months: count month starts
        months = np.array([start_ms - 1, end_ms - 1], dtype="M8[ms]").astype("M8[M]")
        return int((months[1] - months[0]).astype(np.int64))
    offset = WEEK_OFFSET_MS if interval == "1w" else 0

    def ceil_slot(ms: int) -> int:
        return -((offset - ms) // step)

    return ceil_slot(end_ms) - ceil_slot(start_ms)


def _periods(unit: str, start_ms: int, end_ms: int) -> np.ndarray[Any, Any]:
    """Return the period edges (ms) covering `[start_ms, end_ms)`, clipped to it."""
    first = np.datetime64(start_ms, "ms").astype(f"M8[{unit}]")
    last = np.datetime64(end_ms - 1, "ms").astype(f"M8[{unit}]")
    edges = np.arange(first, last + 2).astype("M8[ms]").astype(np.int64)
    return np.clip(edges, start_ms, end_ms)


def _stored_per_period(
    backend: CandleBackend, symbol: str, interval: str, edges: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Rows stored per period `[edges[i], edges[i+1])`: footers, or open times where cut."""
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    lo_all, hi_all = int(edges[0]), int(edges[-1])
    for lo, hi, rows, first, last in backend.partition_rows(symbol, interval):
        if last < lo_all or first >= hi_all:
            continue
        # The periods holding the partition's first and last candle: one period and wholly
        # inside the range means the footer's count is that period's count.
        at = np.searchsorted(edges, [max(first, lo_all), min(last, hi_all - 1)], side="right") - 1
        if at[0] == at[1] and first >= lo_all and last < hi_all:
            counts[at[0]] += rows
            continue
        table = backend.read_table(symbol, interval, max(lo, lo_all), min(hi, hi_all), [])
        times = np.asarray(table.column("open_time").cast("int64").to_numpy(), dtype=np.int64)
        counts += np.bincount(
            np.searchsorted(edges, times, side="right") - 1, minlength=len(counts)
        )[: len(counts)]
    return counts


def coverage_by(
    backend: CandleBackend,
    series: list[tuple[str, str]],
    by: str,
    span: tuple[int, int],
    bounded: tuple[bool, bool],
) -> pd.DataFrame:
    """One row per series and period: symbol, interval, period, expected, stored, missing,
    exchange_empty (see the module docstring)."""
    unit = BY.get(by)
    if unit is None:
        raise InvalidName(f"by must be one of {', '.join(map(repr, BY))}, got {by!r}")
    rows: list[tuple[Any, ...]] = []
    for symbol, interval in series:
        parts = backend.partition_rows(symbol, interval)
        lo, hi = span
        if not bounded[0]:
            lo = min((p[3] for p in parts), default=hi)
        if not bounded[1]:
            hi = max((p[4] + 1 for p in parts), default=lo)
        if hi <= lo:
            continue
        edges = _periods(unit, lo, hi)
        stored = _stored_per_period(backend, symbol, interval, edges)
        empty = merge_ranges(backend.exchange_empty(symbol, interval, lo, hi))
        for i in range(len(edges) - 1):
            a, b = int(edges[i]), int(edges[i + 1])
            expected = grid_count(interval, a, b)
            gone = sum(grid_count(interval, max(a, x), min(b, y)) for x, y in empty)
            missing = max(expected - int(stored[i]) - gone, 0)
            period = np.datetime64(a, "ms").astype(f"M8[{unit}]").astype("M8[ms]")
            rows.append((symbol, interval, period, expected, int(stored[i]), missing, gone))
    return _frame(rows)


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    columns = list(zip(*rows, strict=True)) if rows else [()] * 7
    order = {iv: i for i, iv in enumerate(INTERVALS)}
    frame = pd.DataFrame(
        {
            "symbol": pd.Series(columns[0], dtype=object),
            "interval": pd.Series(columns[1], dtype=object),
            "period": pd.DatetimeIndex(np.asarray(columns[2], dtype="M8[ms]")).tz_localize("UTC"),
            **{
                name: np.asarray(values, dtype=np.int64)
                for name, values in zip(_COLUMNS, columns[3:], strict=True)
            },
        }
    )
    key = frame["interval"].map(order)
    return (
        frame.assign(_o=key)
        .sort_values(["symbol", "_o", "period"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )
