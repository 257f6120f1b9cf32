"""Binance's kline intervals: the one table of names, lengths and the grid candles open on.

Every part of the package that needs an interval's length or its open times asks here:
the exchange client pages by it, the store partitions and finds gaps by it, the sink checks
candles against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from streamforge_nb.exceptions import InvalidName

__all__ = [
    "DAY_MS",
    "INTERVALS",
    "WEEK_OFFSET_MS",
    "check_interval",
    "close_time",
    "interval_ms",
    "longest_ms",
    "open_times",
]

INTERVALS: tuple[str, ...] = (
    "1s", "1m", "3m", "5m", "15m", "30m",
    "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1M",
)  # fmt: skip
"""Binance kline intervals; `1M` is a month, `1m` a minute."""

DAY_MS = 86_400_000
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}
# 1970-01-05 was a Monday, and Binance's weeks open on Mondays (1970-01-01 was a Thursday).
WEEK_OFFSET_MS = 4 * DAY_MS


def check_interval(interval: str) -> str:
    """Return `interval` if it is a Binance kline interval, else raise `InvalidName`."""
    if not isinstance(interval, str):
        raise InvalidName(f"interval must be a string, got {type(interval).__name__}")
    if interval not in INTERVALS:
        raise InvalidName(f"invalid interval {interval!r}: expected one of {', '.join(INTERVALS)}")
    return interval


def interval_ms(interval: str) -> int | None:
    """Return the length of `interval` in ms; None for `1M` (calendar months vary)."""
    if check_interval(interval) == "1M":
        return None
    return int(interval[:-1]) * _UNIT_MS[interval[-1]]


def longest_ms(interval: str) -> int:
    """Return the longest a candle of `interval` can be, in ms (`1M`: 31 days)."""
    return interval_ms(interval) or 31 * DAY_MS


def open_times(interval: str, start_ms: int, end_ms: int) -> Iterator[int]:
    """Yield the open times of `interval` klines in `[start_ms, end_ms)`, ascending (UTC)."""
    if interval == "1M":
        day = datetime.fromtimestamp(max(start_ms, 0) / 1000, UTC).date()
        t = _month_ms(day.year, day.month)
        while t < end_ms:
            if t >= start_ms:
                yield t
            t = close_time("1M", t) + 1
        return
    step = longest_ms(interval)
    offset = WEEK_OFFSET_MS if interval == "1w" else 0
    # Round start_ms up onto the interval's grid.
    yield from range(offset - ((offset - start_ms) // step) * step, end_ms, step)


def close_time(interval: str, open_ms: int) -> int:
    """Return the close time of the `interval` kline opening at `open_ms` (its last ms)."""
    if interval == "1M":
        day = datetime.fromtimestamp(open_ms / 1000, UTC).date()
        return _month_ms(day.year + day.month // 12, day.month % 12 + 1) - 1
    return open_ms + longest_ms(interval) - 1


def _month_ms(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * 1000
