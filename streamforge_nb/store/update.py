"""What `CandleStore.update` loads: per series, from the last stored candle to now.

    plans = plan_updates(store.coverage(), ["BTCUSDT"], ["1m", "1h"], now)
    [p.time_range for p in plans if p.needed]   # what one queue per series would load

Pure (no store, exchange or broker): the ranges come from the store's coverage and the clock
alone, so a batch launcher can take the same plans instead of one Workflow per series.
A range starts at the open time after the last stored candle (exclusive of it) and ends at
the last closed candle at `now`, as `Workflow`'s `<start>:now` does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from streamforge_nb.platform.intervals import close_time, longest_ms, open_times
from streamforge_nb.store.base import merge_ranges
from streamforge_nb.store.frames import check_series, to_ms

__all__ = [
    "SeriesUpdate", "Updated", "closed_end_ms", "closed_until", "plan_updates", "split_options",
]  # fmt: skip

log = logging.getLogger(__name__)


def closed_end_ms(interval: str, now_ms: int) -> int:
    """Return the end (exclusive) of the last closed `interval` candle at `now_ms`."""
    # The open time of the candle still open at now_ms: the last one opening by then.
    return list(open_times(interval, now_ms - longest_ms(interval) + 1, now_ms + 1))[-1]


def closed_until(interval: str, start_ms: int, end_ms: int) -> int:
    """Return `end_ms`, or the end of the last `interval` candle closed by now if sooner (not
    before `start_ms`): what coverage and gaps may count as expected, since a candle not
    closed yet is not missing."""
    return min(end_ms, max(closed_end_ms(interval, time.time_ns() // 10**6), start_ms))


def _first_open(interval: str, ms: int) -> int:
    return next(open_times(interval, ms, ms + longest_ms(interval) + 1))


def _iso(ms: int) -> str:
    return str(pd.Timestamp(ms, unit="ms", tz="UTC").isoformat())


@dataclass(frozen=True)
class SeriesUpdate:
    """One series' update: the range to load (`start_ms`..`end_ms`) or why there is none."""

    symbol: str
    interval: str
    start_ms: int | None
    end_ms: int | None
    note: str

    @property
    def needed(self) -> bool:
        """Whether there is anything to load."""
        return self.start_ms is not None and self.end_ms is not None and self.start_ms < self.end_ms

    @property
    def time_range(self) -> str:
        """The range as a Workflow takes it (ISO start/end); empty when nothing is needed."""
        if self.start_ms is None or self.end_ms is None or not self.needed:
            return ""
        return f"{_iso(self.start_ms)}/{_iso(self.end_ms)}"


def plan_updates(
    coverage: pd.DataFrame,
    symbols: Iterable[str],
    intervals: Iterable[str],
    now: datetime,
    since: Any = None,
    exchange_empty: Mapping[tuple[str, str], Iterable[tuple[int, int]]] | None = None,
) -> list[SeriesUpdate]:
    """Return one `SeriesUpdate` per symbol x interval, in that order.

    `coverage` is `CandleStore.coverage()`. A series with nothing stored starts at `since`
    (a time as `CandleStore.load` takes it) or, without it, is reported and not loaded.
    `exchange_empty` maps a series to its recorded exchange-empty ms ranges: a start inside
    one moves to its end (the exchange already said it has nothing there).
    """
    lasts = pd.DatetimeIndex(coverage["last"]).as_unit("ms").asi8.tolist()
    last = {
        (str(sym), str(iv)): int(t)
        for sym, iv, t in zip(coverage["symbol"], coverage["interval"], lasts, strict=True)
    }
    now_ms = to_ms(now, "now")
    since_ms = None if since is None else to_ms(since, "since")
    out = []
    for symbol in symbols:
        for interval in intervals:
            sym, iv = check_series(symbol, interval)
            end = closed_end_ms(iv, now_ms)
            if (sym, iv) in last:
                start = close_time(iv, last[(sym, iv)]) + 1
                origin = f"the last stored candle opens {_iso(last[(sym, iv)])}"
            elif since_ms is not None:
                start = _first_open(iv, since_ms)
                origin = "nothing stored yet: from since"
            else:
                note = "nothing stored: pass since=... (or load a first range) to start it"
                out.append(SeriesUpdate(sym, iv, None, None, note))
                continue
            for a, b in merge_ranges((exchange_empty or {}).get((sym, iv), ())):
                if a <= start < b:
                    start = b
                    origin += f", then exchange-empty until {_iso(b)}"
            if start >= end:
                note = f"up to date: {origin}; the last closed candle ends {_iso(end)}"
                out.append(SeriesUpdate(sym, iv, start, end, note))
            else:
                note = f"load {_iso(start)} to {_iso(end)} ({origin})"
                out.append(SeriesUpdate(sym, iv, start, end, note))
    return out


class Updated(list[Any]):
    """The queues `CandleStore.update` launched (a list), with what it decided per series.

    The items are `Queue`s; the store does not name the type, the control layer being above it.
    """

    def __init__(self, queues: Iterable[Any], series: Iterable[SeriesUpdate]) -> None:
        super().__init__(queues)
        self.series = list(series)
        """Every series asked for, launched or not, with its note."""

    def summary(self) -> pd.DataFrame:
        """Return one row per series: symbol, interval, time_range, note."""
        rows = [(s.symbol, s.interval, s.time_range, s.note) for s in self.series]
        return pd.DataFrame(rows, columns=["symbol", "interval", "time_range", "note"])

    def __repr__(self) -> str:
        notes = "; ".join(f"{s.symbol} {s.interval}: {s.note}" for s in self.series)
        return f"Updated({len(self)} queue(s) launched; {notes})"

    def _repr_html_(self) -> str:
        table: str = self.summary().to_html(index=False, escape=True)
        return f"<b>update</b>: {len(self)} queue(s) launched{table}"


def split_options(
    options: Mapping[str, Any], workflow_keywords: Iterable[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split `update`'s options into the Workflow's and the launcher's."""
    names = set(workflow_keywords)
    workflow = {k: v for k, v in options.items() if k in names}
    launch = {k: v for k, v in options.items() if k not in names}
    return workflow, launch
