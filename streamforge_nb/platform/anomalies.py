"""Oddities real exchanges serve: found, counted and reported, never a reason to drop a candle.

Binance's own klines hold candles that break the textbook shape (the public archives have
every kind below; see tests/data/binance_real_klines.csv): a candle cut short by a maintenance
window closes early (BTCUSDT 1h 2017-12-18 12:00 closes at 12:29:13.419), one closes a
millisecond late or on a whole second, a placeholder closes before it opens, and in December
2017 BTCUSDT 1m opens 20.799 s past the minute for 20,400 rows. Each is what the exchange
served, so the sink stores it exactly and says what it saw, and `CandleStore.quality()` finds
the same things in what was stored. One rule table, here, for both.

| kind | the candle |
|---|---|
| `close_time` | `close_time` is not the interval's last ms (short, late, before the open) |
| `off_grid` | `open_time` is not on the interval's grid (weeks open on Mondays, months on 1st) |
| `ohlc` | `open` or `close` lies outside `low .. high` |
| `zero_volume` | no volume traded (the exchange's placeholder for a quiet or halted period) |
| `flat` | `open == high == low == close` |

`CandleStore.quality()` finds two more, which need the candles around one (the sink sees a
batch, not a series, so it does not count them): `jump` and `stale` (`platform.neighbours`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamforge_nb.platform.intervals import WEEK_OFFSET_MS, interval_ms

__all__ = ["ANOMALIES", "anomaly_masks", "expected_close_ms", "grid_floor_ms"]

ANOMALIES: dict[str, str] = {
    "close_time": "close_time is not the last ms of the interval",
    "off_grid": "open_time is not on the interval's grid",
    "ohlc": "open or close outside low .. high",
    "zero_volume": "no volume traded",
    "flat": "open, high, low and close are equal",
}
"""Anomaly kinds and what each means, in the order findings are listed."""

_Array = np.ndarray[Any, Any]


def grid_floor_ms(open_ms: _Array, interval: str) -> _Array:
    """Return the grid slot (its open time, ms) each open time falls in: itself when on grid.

    Binance's grid: fixed lengths from the epoch, weeks from Monday 1970-01-05, months from
    the 1st. An off-grid candle counts for the slot it opens in, so a gap finder sees no hole
    where the exchange served a shifted candle.
    """
    times = np.asarray(open_ms, dtype=np.int64)
    step = interval_ms(interval)
    if step is None:
        return times.astype("M8[ms]").astype("M8[M]").astype("M8[ms]").astype(np.int64)
    offset = WEEK_OFFSET_MS if interval == "1w" else 0
    return times - (times - offset) % step


def expected_close_ms(open_ms: _Array, interval: str) -> _Array:
    """Return the textbook close time of candles opening at `open_ms`: their last ms."""
    times = np.asarray(open_ms, dtype=np.int64)
    step = interval_ms(interval)
    if step is None:
        month = times.astype("M8[ms]").astype("M8[M]")
        return np.asarray((month + 1).astype("M8[ms]").astype(np.int64) - 1)
    return times + (step - 1)


def anomaly_masks(
    interval: str,
    open_ms: _Array,
    close_ms: _Array,
    open_: _Array,
    high: _Array,
    low: _Array,
    close: _Array,
    volume: _Array,
) -> dict[str, _Array]:
    """Return, per anomaly kind, a boolean array: True where the candle has it.

    Prices and volumes as float64 (NaN compares False, so a missing value is no finding).
    """
    opens = np.asarray(open_ms, dtype=np.int64)
    slot = grid_floor_ms(opens, interval)
    on_grid = slot == opens
    o, h, lo, c, v = (np.asarray(a, dtype=np.float64) for a in (open_, high, low, close, volume))
    with np.errstate(invalid="ignore"):
        inside = (lo <= o) & (o <= h) & (lo <= c) & (c <= h)
        return {
            # Against the candle's own open: a shifted candle of full length is only off grid.
            "close_time": np.asarray(close_ms, np.int64) != expected_close_ms(opens, interval),
            "off_grid": ~on_grid,
            "ohlc": ~inside & ~np.isnan(o + h + lo + c),
            "zero_volume": v == 0,
            "flat": (o == h) & (h == lo) & (lo == c),
        }
