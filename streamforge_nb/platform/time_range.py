"""Parse and check the half-open UTC time ranges queues load: `2024-08-01:2024-08-02`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from streamforge_nb.exceptions import InvalidName

__all__ = ["TimeRange", "parse_time_range"]

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class TimeRange:
    """A half-open UTC time range [start, end): `2024-08-01:2024-08-02` is one day."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for field in ("start", "end"):
            value = getattr(self, field)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise InvalidName(
                    f"time range {field} must be a timezone-aware datetime: {value!r}"
                )
            # Frozen: normalise to UTC through object.__setattr__.
            object.__setattr__(self, field, value.astimezone(UTC))
        if self.end < self.start:
            raise InvalidName(f"time range {self} ends before it starts")
        if self.end == self.start:
            raise InvalidName(f"time range {self} is empty (the end is exclusive)")

    @property
    def start_ms(self) -> int:
        """Start as Unix milliseconds (Binance `startTime`)."""
        return (self.start - _EPOCH) // _MS

    @property
    def end_ms(self) -> int:
        """End as Unix milliseconds, exclusive (Binance's `endTime` is inclusive: pass end_ms-1)."""
        return (self.end - _EPOCH) // _MS

    @property
    def day(self) -> date:
        """The UTC day the range starts on (the day in queue ids and collection names)."""
        return self.start.date()

    def __str__(self) -> str:
        if _is_midnight(self.start) and _is_midnight(self.end):
            return f"{self.start:%Y-%m-%d}:{self.end:%Y-%m-%d}"
        return f"{_iso(self.start)}/{_iso(self.end)}"


def parse_time_range(text: str) -> TimeRange:
    """Parse `2024-08-01:2024-08-02` or `<ISO datetime>/<ISO datetime>` (naive means UTC)."""
    if not isinstance(text, str):
        raise InvalidName(f"time range must be a string, got {type(text).__name__}")
    sides = _split_range(text.strip())
    if sides is None:
        raise InvalidName(
            f"invalid time range {text!r}: expected 'YYYY-MM-DD:YYYY-MM-DD' or "
            "'<ISO datetime>/<ISO datetime>'"
        )
    start, end = (_parse_instant(side, text) for side in sides)
    return TimeRange(start, end)


def _split_range(text: str) -> tuple[str, str] | None:
    if "/" in text:
        left, _, right = text.partition("/")
        return (left, right) if "/" not in right else None
    # ISO times contain ':' too; the separator is the ':' followed by a date.
    for i, ch in enumerate(text):
        if ch == ":" and _DATE_RE.match(text, i + 1):
            return text[:i], text[i + 1 :]
    return None


def _parse_instant(side: str, text: str) -> datetime:
    side = side.strip()
    try:
        if _DATE_RE.fullmatch(side):
            return datetime.combine(date.fromisoformat(side), datetime.min.time(), UTC)
        if not _DATE_RE.match(side):
            raise ValueError(side)
        value = datetime.fromisoformat(side)
    except ValueError:
        raise InvalidName(
            f"invalid time range {text!r}: {side!r} is not a date (YYYY-MM-DD) "
            "or an ISO 8601 datetime"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_midnight(value: datetime) -> bool:
    return value.time() == datetime.min.time()


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
