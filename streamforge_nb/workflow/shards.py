"""How a batch splits a long range into queues (shards), and what it will ask the exchange.

The rule: a shard holds at most `SHARD_CANDLES` candles (1,000 requests of Binance's 1,000
klines, 2,000 request weight: a third of a minute of the 6,000 weight/min limit), never more
than one queue may load (`STREAMFORGE_MAX_CANDLES_PER_QUEUE`), and starts and ends on
calendar boundaries: whole years when a year of the interval fits, else whole months, else
whole days, else whole hours (groups of as many such units as fit; only the first and last
shard are cut to the range). So a year of 1m (527k candles) is one shard, 1s comes in shards of
11 days. When not even an hour fits (a tiny limit), shards are fixed candle counts.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from streamforge_nb.platform.intervals import interval_ms
from streamforge_nb.platform.names import TimeRange

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "KLINES_PER_REQUEST",
    "KLINES_WEIGHT",
    "SHARD_CANDLES",
    "WEIGHT_PER_MINUTE",
    "BatchPlan",
    "Shard",
    "candle_count",
    "shard_ranges",
]

KLINES_PER_REQUEST = 1000
"""Binance's most klines per `GET /api/v3/klines` (`limit`)."""
KLINES_WEIGHT = 2
"""The request weight of one klines request of up to 1,000 rows."""
WEIGHT_PER_MINUTE = 6000
"""Binance's request weight limit per IP and minute (`X-MBX-USED-WEIGHT-1M`)."""
SHARD_CANDLES = 1_000_000
"""Most candles per shard: 1,000 requests, 2,000 weight, 20 s of the whole limit."""

_DAY_MS = 86_400_000
_MONTH_MS = 28 * _DAY_MS  # the shortest month: a 1M candle count's upper bound
# Calendar units, longest first, with their longest length (a leap year, a 31-day month).
_UNITS = (("year", 366 * _DAY_MS), ("month", 31 * _DAY_MS), ("day", _DAY_MS), ("hour", 3_600_000))


def candle_count(interval: str, start: datetime, end: datetime) -> int:
    """Return the most `interval` candles that open in `[start, end)`."""
    step = interval_ms(interval) or _MONTH_MS
    span = int((end - start).total_seconds() * 1000)
    return -(-span // step)


def _floor(moment: datetime, unit: str) -> datetime:
    if unit == "year":
        return datetime(moment.year, 1, 1, tzinfo=UTC)
    if unit == "month":
        return datetime(moment.year, moment.month, 1, tzinfo=UTC)
    if unit == "day":
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def _add(moment: datetime, unit: str, count: int) -> datetime:
    if unit == "year":
        return moment.replace(year=moment.year + count)
    if unit == "month":
        months = moment.year * 12 + moment.month - 1 + count
        return moment.replace(year=months // 12, month=months % 12 + 1)
    return moment + (timedelta(days=count) if unit == "day" else timedelta(hours=count))


def shard_ranges(span: TimeRange, interval: str, limit: int) -> list[tuple[datetime, datetime]]:
    """Split `span` into shards of at most `limit` candles of `interval` (the module's rule)."""
    step = interval_ms(interval) or _MONTH_MS
    fitting = [(unit, -(-longest // step)) for unit, longest in _UNITS if longest <= step * limit]
    if not fitting:  # not even an hour fits: fixed counts of candles
        width = timedelta(milliseconds=step * limit)
        fixed, start = [], span.start
        while start < span.end:
            fixed.append((start, min(start + width, span.end)))
            start += width
        return fixed
    unit, per_unit = fitting[0]
    per_shard = limit // per_unit
    edges, cursor = [], _floor(span.start, unit)
    while cursor < span.end:
        following = _add(cursor, unit, per_shard)
        edges.append((max(cursor, span.start), min(following, span.end)))
        cursor = following
    return edges


@dataclass(frozen=True)
class Shard:
    """One queue of a batch: a symbol, an interval and a slice of the range."""

    queue_id: str
    symbol: str
    interval: str
    time_range: str
    short_id: str
    candles: int

    @property
    def requests(self) -> int:
        """Klines requests the loader makes (one per 1,000 candles; an empty range one)."""
        return max(1, -(-self.candles // KLINES_PER_REQUEST))


@dataclass(frozen=True)
class BatchPlan:
    """A whole batch, computed without touching anything: its queues and their cost."""

    batch_id: str
    symbols: tuple[str, ...]
    intervals: tuple[str, ...]
    time_range: str
    shards: tuple[Shard, ...]
    sinks: int = 1
    partitions: int = 1

    @property
    def candles(self) -> int:
        """The most candles the batch loads (fewer where a symbol was not listed yet)."""
        return sum(s.candles for s in self.shards)

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.shards)

    @property
    def weight(self) -> int:
        """The request weight the batch asks the exchange for (2 per klines request)."""
        return self.requests * KLINES_WEIGHT

    @property
    def seconds_at_limit(self) -> float:
        """The shortest time the exchange's weight limit allows for the whole batch."""
        return self.weight / WEIGHT_PER_MINUTE * 60

    def summary(self) -> dict[str, int | float]:
        """Return the batch's counts: queues, Jobs, candles, requests, weight, time."""
        return {
            "queues": len(self.shards), "jobs": len(self.shards) * (1 + self.sinks),
            "candles": self.candles, "requests": self.requests, "weight": self.weight,
            "seconds_at_limit": round(self.seconds_at_limit, 1),
        }  # fmt: skip

    def frame(self) -> pd.DataFrame:
        """Return one row per queue: symbol, interval, range, candles, requests, weight."""
        import pandas as pd

        rows = [
            {"queue_id": s.queue_id, "symbol": s.symbol, "interval": s.interval,
             "time_range": s.time_range, "candles": s.candles, "requests": s.requests,
             "weight": s.requests * KLINES_WEIGHT}
            for s in self.shards
        ]  # fmt: skip
        return pd.DataFrame(rows).set_index("queue_id")

    def _repr_html_(self) -> str:
        counts = self.summary()
        head = (
            f"<b>Batch</b> <code>{html.escape(self.batch_id)}</code>: "
            f"{len(self.symbols)} symbols &times; {len(self.intervals)} intervals, "
            f"{html.escape(self.time_range)}<br>{counts['queues']:,} queues "
            f"({counts['jobs']:,} Jobs), {self.candles:,} candles at most, "
            f"{self.requests:,} requests, weight {self.weight:,} "
            f"(&ge; {_duration(self.seconds_at_limit)} at {WEIGHT_PER_MINUTE:,} weight/min)"
        )
        return head + str(self.frame().head(50).to_html())


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
