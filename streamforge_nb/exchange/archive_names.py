"""Where Binance's kline archives are: their paths, URLs and what a file name says.

    data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-08.zip        whole months
    data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-08-01.zip       single days

Reading them is `exchange.archives`; fetching and verifying one is `exchange.archive_fetch`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.intervals import check_interval
from streamforge_nb.platform.names import TimeRange, check_symbol, parse_time_range

__all__ = [
    "ARCHIVE_BASE_URL",
    "ArchiveName",
    "archive_interval",
    "archive_path",
    "archive_paths",
    "archive_url",
    "parse_archive_name",
]

ARCHIVE_BASE_URL = "https://data.binance.vision"

# Binance publishes no daily files for these intervals: their candles live in monthly files.
_MONTHLY_ONLY = frozenset({"3d", "1w", "1M"})
_NAME_RE = re.compile(
    r"(?P<symbol>[A-Z0-9]+)-(?P<interval>[0-9a-z]+)-(?P<period>\d{4}-\d{2}(?:-\d{2})?)\.zip"
)
_ONE_DAY = timedelta(days=1)


def archive_interval(interval: str) -> str:
    """Return `interval` as spelled in archive paths (`1M`, a month, is `1mo` there)."""
    return "1mo" if check_interval(interval) == "1M" else interval


def archive_path(symbol: str, interval: str, day: date, *, monthly: bool) -> str:
    """Return the relative path of the monthly (or daily) archive holding `day`."""
    sym, iv = check_symbol(symbol), archive_interval(interval)
    kind, stamp = ("monthly", f"{day:%Y-%m}") if monthly else ("daily", f"{day:%Y-%m-%d}")
    return f"data/spot/{kind}/klines/{sym}/{iv}/{sym}-{iv}-{stamp}.zip"


class ArchiveName(NamedTuple):
    """What an archive's file name says: symbol, interval (Binance spelling) and period."""

    symbol: str
    interval: str
    first_day: date
    monthly: bool

    @property
    def start_ms(self) -> int:
        """Start of the period, Unix ms."""
        return _ms(self.first_day)

    @property
    def end_ms(self) -> int:
        """End of the period (exclusive), Unix ms."""
        return _ms(_next_month(self.first_day) if self.monthly else self.first_day + _ONE_DAY)

    @property
    def path(self) -> str:
        """The archive's relative path, as `archive_path` makes it."""
        return archive_path(self.symbol, self.interval, self.first_day, monthly=self.monthly)


def parse_archive_name(name: str) -> ArchiveName | None:
    """Parse `<SYM>-<iv>-YYYY-MM[-DD].zip` (a file name or a path ending in one), else None."""
    m = _NAME_RE.fullmatch(name.rsplit("/", 1)[-1])
    if m is None:
        return None
    interval = "1M" if m["interval"] == "1mo" else m["interval"]
    monthly = len(m["period"]) == 7
    try:
        first = date.fromisoformat(m["period"] + ("-01" if monthly else ""))
        return ArchiveName(check_symbol(m["symbol"]), check_interval(interval), first, monthly)
    except (ValueError, InvalidName):
        return None


def archive_paths(symbol: str, interval: str, time_range: TimeRange | str) -> list[str]:
    """Return the archives covering `time_range`: monthly files for whole months, else daily.

    Days only partly in the range are included whole: filter rows by open time afterwards.
    Intervals 3d, 1w and 1M are published in monthly files only.
    """
    tr = parse_time_range(time_range) if isinstance(time_range, str) else time_range
    check_symbol(symbol)
    check_interval(interval)
    first = tr.start.date()
    last = (tr.end - timedelta(microseconds=1)).date()
    paths: list[str] = []
    month = first.replace(day=1)
    while month <= last:
        following = _next_month(month)
        month_start = datetime.combine(month, datetime.min.time(), UTC)
        month_end = datetime.combine(following, datetime.min.time(), UTC)
        whole = tr.start <= month_start and month_end <= tr.end
        if whole or interval in _MONTHLY_ONLY:
            paths.append(archive_path(symbol, interval, month, monthly=True))
        else:
            day = max(first, month)
            while day < following and day <= last:
                paths.append(archive_path(symbol, interval, day, monthly=False))
                day += timedelta(days=1)
        month = following
    return paths


def archive_url(path: str, base_url: str = ARCHIVE_BASE_URL) -> str:
    """Return the URL of archive `path` (from `archive_paths`) under `base_url`."""
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}"


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _ms(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), UTC).timestamp()) * 1000
