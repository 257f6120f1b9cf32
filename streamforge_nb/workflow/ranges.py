"""The ranges a queue may load: ends by the last closed candle, starts in the exchange's era,
holds at most `max_candles_per_queue` candles; `<start>:now` ends at the last closed candle."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.intervals import WEEK_OFFSET_MS, check_interval, interval_ms
from streamforge_nb.platform.names import TimeRange, parse_time_range

__all__ = ["EXCHANGE_START", "check_time_range", "last_closed_end"]

# Binance's first klines (BTCUSDT, ETHBTC, ...) open on 2017-07-14. When a symbol itself was
# listed is unknown offline, so no range may start before the exchange's era.
EXCHANGE_START = datetime(2017, 7, 14, tzinfo=UTC)
_UNTIL_NOW = re.compile(r"(?P<start>.+?)[:/]now", re.IGNORECASE)


def last_closed_end(interval: str, now: datetime) -> datetime:
    """The end (exclusive) of the last closed `interval` candle at `now`: the open one's start."""
    step = interval_ms(interval)
    if step is None:  # 1M: months open on the 1st
        return datetime(now.year, now.month, 1, tzinfo=UTC)
    now_ms = int(now.timestamp() * 1000)
    offset = WEEK_OFFSET_MS if interval == "1w" else 0
    return datetime.fromtimestamp((now_ms - (now_ms - offset) % step) / 1000, UTC)


def check_time_range(
    text: str, interval: str, *, max_candles: int, now: datetime | None = None
) -> TimeRange:
    """Parse a workflow's range and refuse what no queue should load, naming the rule.

    `<start>:now` ends at the last closed candle. A range must end by then, start on or
    after `EXCHANGE_START` and hold at most `max_candles` candles of `interval`.
    """
    check_interval(interval)
    now = now or datetime.now(UTC)
    closed = last_closed_end(interval, now)
    until_now = _UNTIL_NOW.fullmatch(text.strip()) if isinstance(text, str) else None
    if until_now:
        start = until_now["start"].strip()
        span = parse_time_range(f"{start}/{closed.isoformat()}")
    else:
        span = parse_time_range(text)
    if span.start >= closed:
        raise InvalidName(
            f"time range {text!r} starts {span.start:%Y-%m-%d %H:%M:%S} UTC, after the last "
            f"closed {interval} candle (it ends {closed:%Y-%m-%d %H:%M:%S} UTC): nothing to load"
        )
    if span.end > closed:
        raise InvalidName(
            f"time range {text!r} ends {span.end:%Y-%m-%d %H:%M:%S} UTC, after the last closed "
            f"{interval} candle (it ends {closed:%Y-%m-%d %H:%M:%S} UTC): a range must end by "
            f"then; '{span.start:%Y-%m-%d}:now' loads until it"
        )
    if span.start < EXCHANGE_START:
        raise InvalidName(
            f"time range {text!r} starts {span.start:%Y-%m-%d}, before the exchange's first "
            f"candles ({EXCHANGE_START:%Y-%m-%d}): start on or after it"
        )
    step = interval_ms(interval) or 28 * 86_400_000  # 1M: at most one a 28 days
    count = -(-(span.end_ms - span.start_ms) // step)
    if count > max_candles:
        pieces = -(-count // max_candles)
        raise InvalidName(
            f"time range {text!r} is {count:,} {interval} candles, more than the "
            f"{max_candles:,} one queue may load (STREAMFORGE_MAX_CANDLES_PER_QUEUE): "
            f"split it into {pieces} or more ranges, one queue each"
        )
    return span
