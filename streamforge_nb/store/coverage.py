"""Coverage at a glance: per series and period, how many candles were expected, are stored,
are missing, or lie in windows the exchange confirmed empty.

    cov = store.coverage(symbols="*USDT", intervals=["1m", "1h"], by="month")
    cov.plot()                         # a heatmap: series x period, share stored

Counts come from statistics, not candles: each partition file's footer gives its rows and
its first and last open time. Only a partition that a period cuts (a year file of `1d`
candles per month, a month file cut by `start`/`end`, or `by="day"`) has its `open_time`
column read, never the other fields. Expected candles are the exchange's grid slots in
`[start, end)` up to the last closed candle (one not closed yet is not missing), or without
bounds between the series' first and last stored candle (as `gaps()` counts).
`missing = expected - stored - exchange_empty`, never below 0 (an off-grid candle the
exchange served counts as stored).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.intervals import INTERVALS, WEEK_OFFSET_MS, interval_ms
from streamforge_nb.store.base import merge_ranges
from streamforge_nb.store.footers import Part, local_parts
from streamforge_nb.store.query import all_exchange_empty
from streamforge_nb.store.update import closed_until

if TYPE_CHECKING:
    from streamforge_nb.store.base import CandleBackend

__all__ = ["BY", "CoverageFrame", "coverage_by", "grid_count"]

BY = {"day": "D", "month": "M", "year": "Y"}
_COLUMNS = ("expected", "stored", "missing", "exchange_empty")


def grid_count(interval: str, start_ms: int, end_ms: int) -> int:
    """Return how many of the exchange's `interval` open times lie in `[start_ms, end_ms)`."""
    return int(grid_counts(interval, np.array([start_ms]), np.array([end_ms]))[0])


def grid_counts(
    interval: str, starts: np.ndarray[Any, Any], ends: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """`grid_count` of each `[starts[i], ends[i])` at once (int64 ms arrays)."""
    starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    step = interval_ms(interval)
    if step is None:
        first = (starts - 1).astype("M8[ms]").astype("M8[M]").astype(np.int64)
        counts = (ends - 1).astype("M8[ms]").astype("M8[M]").astype(np.int64) - first
    else:
        offset = WEEK_OFFSET_MS if interval == "1w" else 0
        counts = ((offset - starts) // step) - ((offset - ends) // step)  # ceil(e) - ceil(s)
    return np.where(ends > starts, counts, 0)


def _periods(unit: str, start_ms: int, end_ms: int) -> np.ndarray[Any, Any]:
    """Return the period edges (ms) covering `[start_ms, end_ms)`, clipped to it."""
    first = np.datetime64(start_ms, "ms").astype(f"M8[{unit}]")
    last = np.datetime64(end_ms - 1, "ms").astype(f"M8[{unit}]")
    edges = np.arange(first, last + 2).astype("M8[ms]").astype(np.int64)
    return np.clip(edges, start_ms, end_ms)


def _generic_parts(backend: CandleBackend, symbol: str, interval: str) -> list[Part]:
    """A backend's partitions from `partition_rows`; open times through `read_table`."""

    def times(lo: int, hi: int) -> np.ndarray[Any, Any]:
        table = backend.read_table(symbol, interval, lo, hi, [])
        return np.asarray(table.column("open_time").cast("int64").to_numpy(), dtype=np.int64)

    return [
        Part(lo, hi, rows, first, last, partial(times, lo, hi))
        for lo, hi, rows, first, last in backend.partition_rows(symbol, interval)
    ]


def _stored_per_period(parts: list[Part], edges: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Rows stored per period `[edges[i], edges[i+1])`: footers, or open times where cut."""
    n = len(edges) - 1
    if not parts:
        return np.zeros(n, dtype=np.int64)
    lo_all, hi_all = int(edges[0]), int(edges[-1])
    first = np.array([p.first for p in parts], dtype=np.int64)
    last = np.array([p.last for p in parts], dtype=np.int64)
    rows = np.array([p.rows for p in parts], dtype=np.int64)
    inside = (last >= lo_all) & (first < hi_all)
    # The periods holding each partition's first and last candle: one period and wholly
    # inside the range means the footer's count is that period's count.
    at_first = np.searchsorted(edges, np.maximum(first, lo_all), side="right") - 1
    at_last = np.searchsorted(edges, np.minimum(last, hi_all - 1), side="right") - 1
    whole = inside & (at_first == at_last) & (first >= lo_all) & (last < hi_all)
    counts = np.bincount(at_first[whole], weights=rows[whole], minlength=n)[:n]
    counts = counts.astype(np.int64)
    for i in np.flatnonzero(inside & ~whole):
        times = parts[i].times()
        times = times[(times >= lo_all) & (times < hi_all)]
        counts += np.bincount(np.searchsorted(edges, times, side="right") - 1, minlength=n)[:n]
    return counts


def coverage_by(
    backend: CandleBackend,
    series: list[tuple[str, str]],
    by: str,
    span: tuple[int, int],
    bounded: tuple[bool, bool],
) -> CoverageFrame:
    """One row per series and period: symbol, interval, period, expected, stored, missing,
    exchange_empty (see the module docstring)."""
    unit = BY.get(by)
    if unit is None:
        raise InvalidName(f"by must be one of {', '.join(map(repr, BY))}, got {by!r}")
    columns: list[tuple[tuple[str, str, int], Any, tuple[Any, ...]]] = []
    local = _is_local(backend)
    recorded = all_exchange_empty(backend) if local and series else {}  # type: ignore[arg-type]
    every = (
        local_parts(backend, series)  # type: ignore[arg-type]
        if local
        else [_generic_parts(backend, sym, iv) for sym, iv in series]
    )
    for (symbol, interval), parts in zip(series, every, strict=True):
        lo, hi = span
        if not bounded[0]:
            lo = min((p.first for p in parts), default=hi)
        if not bounded[1]:
            hi = max((p.last + 1 for p in parts), default=lo)
        else:  # a candle not closed yet is not missing: the current month is not red
            hi = closed_until(interval, lo, hi)
        if hi <= lo:
            continue
        edges = _periods(unit, lo, hi)
        stored = _stored_per_period(parts, edges)
        if local:  # all of them read once, not a database opened per series
            found = [(a, b) for a, b in recorded.get((symbol, interval), []) if a < hi and b > lo]
        else:
            found = backend.exchange_empty(symbol, interval, lo, hi)
        empty = merge_ranges(found)
        starts, ends = edges[:-1], edges[1:]
        expected = grid_counts(interval, starts, ends)
        gone = np.zeros(len(starts), dtype=np.int64)
        for x, y in empty:
            gone += grid_counts(interval, np.maximum(starts, x), np.minimum(ends, y))
        periods = starts.astype("M8[ms]").astype(f"M8[{unit}]").astype("M8[ms]")
        found_rows = (expected, stored, np.maximum(expected - stored - gone, 0), gone)
        columns.append(((symbol, interval, len(starts)), periods, found_rows))
    return _frame(columns)


def _is_local(backend: CandleBackend) -> bool:
    from streamforge_nb.store.local import LocalBackend

    return isinstance(backend, LocalBackend) and type(backend).partition_rows is (
        LocalBackend.partition_rows
    )


def _frame(columns: list[tuple[tuple[str, str, int], Any, tuple[Any, ...]]]) -> CoverageFrame:
    order = {iv: i for i, iv in enumerate(INTERVALS)}
    sizes = [n for (_, _, n), _, _ in columns]

    def joined(i: int) -> np.ndarray[Any, Any]:
        return np.concatenate([c[2][i] for c in columns]).astype(np.int64, copy=False)

    periods = np.concatenate([c[1] for c in columns]) if columns else np.empty(0, "M8[ms]")
    frame = pd.DataFrame(
        {
            "symbol": pd.Series(np.repeat([c[0][0] for c in columns], sizes), dtype=object),
            "interval": pd.Series(np.repeat([c[0][1] for c in columns], sizes), dtype=object),
            "period": pd.DatetimeIndex(periods.astype("M8[ms]")).tz_localize("UTC"),
            **{
                name: joined(i) if columns else np.empty(0, np.int64)
                for i, name in enumerate(_COLUMNS)
            },
        }
    )
    key = frame["interval"].map(order)
    return CoverageFrame(
        frame.assign(_o=key)
        .sort_values(["symbol", "_o", "period"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


class CoverageFrame(pd.DataFrame):  # type: ignore[misc]  # pandas is untyped here
    """`coverage(by=...)`'s frame: a pandas DataFrame whose `plot()` draws the coverage
    heatmap (`analysis.plot_coverage`; `plot(title=...)` too). With pandas' arguments
    (`plot(kind="bar")`, `plot.bar()`) and on a frame without the coverage columns it is
    pandas' own plot. Filters and slices of it stay coverage frames."""

    @property
    def _constructor(self) -> type[CoverageFrame]:
        return CoverageFrame

    @property
    def plot(self) -> _CoveragePlot:
        return _CoveragePlot(self)


class _CoveragePlot:
    """`CoverageFrame.plot`: called bare, the heatmap; otherwise pandas' plot accessor."""

    def __init__(self, frame: CoverageFrame) -> None:
        self._frame = frame

    def __call__(self, *args: Any, title: str | None = None, **kwargs: Any) -> Any:
        from streamforge_nb.store.analysis import plot_coverage

        heatmap = {"symbol", "interval", "period", *_COLUMNS} <= set(self._frame.columns)
        if args or kwargs or not heatmap:
            if title is not None:
                kwargs["title"] = title
            return pd.DataFrame(self._frame).plot(*args, **kwargs)
        return plot_coverage(self._frame, title)

    def __getattr__(self, name: str) -> Any:
        return getattr(pd.DataFrame(self._frame).plot, name)
