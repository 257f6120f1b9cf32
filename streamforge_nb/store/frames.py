"""Candle frames: the one layout every frame in and out of the store has, and conversions.

Every frame has the layout of `empty_frame()`: a UTC `DatetimeIndex` named `open_time`
(millisecond resolution, as the platform counts), float64 prices and volumes, int64
`number_of_trades`, UTC `close_time`. Times in and out of the store are Unix milliseconds
(`to_ms` reads every spelling of a time); ranges are half-open, `[start, end)`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from functools import cache
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from streamforge_nb.exceptions import InvalidName, MessageError
from streamforge_nb.platform.contract import Candle
from streamforge_nb.platform.intervals import check_interval
from streamforge_nb.platform.names import check_symbol

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "FLOAT_COLUMNS",
    "MAX_MS",
    "candles_to_frame",
    "empty_coverage",
    "empty_frame",
    "frame_from_arrays",
    "normalize_frame",
    "to_ms",
    "utc_index",
]

FLOAT_COLUMNS: tuple[str, ...] = (
    "open", "high", "low", "close", "volume", "quote_asset_volume",
    "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume",
)  # fmt: skip
"""Binance sends these as decimal strings; frames hold them as float64."""

COLUMNS: tuple[str, ...] = (
    "open", "high", "low", "close", "volume", "close_time", "quote_asset_volume",
    "number_of_trades", "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume",
)  # fmt: skip
"""Columns of a candle frame, in the Candle's field order (the index is `open_time`)."""

MAX_MS = 2**53 - 1
"""Open end of a range: the largest millisecond count JSON numbers (ArangoDB) hold exactly."""

_CANDLE_FIELDS = ("key", "open_time", *COLUMNS)
_MAPPING_FIELDS = ("_key", "open_time", *COLUMNS)
_KEY_RE = re.compile(r"(?P<symbol>[A-Za-z0-9]+)_(?P<interval>[0-9]+[smhdwM])_[0-9]+")


@cache
def _utc_ms() -> pd.DatetimeTZDtype:
    # Built on first use: pandas is imported only by what makes frames (a sink never does).
    import pandas as pd

    return pd.DatetimeTZDtype("ms", "UTC")


def utc_index(ms: np.ndarray[Any, Any], name: str | None = "open_time") -> pd.DatetimeIndex:
    """Return Unix ms as a UTC `DatetimeIndex` of millisecond resolution."""
    import pandas as pd

    times = np.asarray(ms, dtype=np.int64).view("M8[ms]")
    # Naive times read as UTC in one copy (tz_localize after the constructor made two).
    return pd.DatetimeIndex(times, dtype=_utc_ms(), name=name)


def frame_from_arrays(
    open_time_ms: np.ndarray[Any, Any], columns: Mapping[str, Any]
) -> pd.DataFrame:
    """Build a candle frame from int64 ms open times and per-column arrays, without copies."""
    import pandas as pd

    data: dict[str, Any] = {}
    for name in COLUMNS:
        values = columns[name]
        if name == "close_time":
            data[name] = _utc(values, None)
        elif name == "number_of_trades":
            data[name] = np.asarray(values, dtype=np.int64)
        else:
            data[name] = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(data, index=_utc(open_time_ms, "open_time"), copy=False)


def _utc(values: Any, name: str | None) -> pd.DatetimeIndex:
    """Unix ms as a UTC index; one that already is one (Arrow made it) as it is."""
    import pandas as pd

    if isinstance(values, pd.DatetimeIndex) and values.dtype == _utc_ms():
        return values.rename(name)
    return utc_index(np.asarray(values), name)


def empty_frame() -> pd.DataFrame:
    """Return a candle frame with no rows and the canonical dtypes."""
    empty = np.empty(0, dtype=np.int64)
    return frame_from_arrays(empty, dict.fromkeys(COLUMNS, empty))


def empty_coverage() -> pd.DataFrame:
    """Return a coverage frame with no rows: symbol, interval, first, last, rows."""
    import pandas as pd

    times = pd.Series([], dtype=_utc_ms())
    return pd.DataFrame(
        {
            "symbol": pd.Series([], dtype=str),
            "interval": pd.Series([], dtype=str),
            "first": times,
            "last": times.copy(),
            "rows": pd.Series([], dtype=np.int64),
        }
    )


def series_of_key(key: str) -> tuple[str, str]:
    """Return (symbol, interval) of a candle `_key` `SYMBOL_interval_opentime`, as spelled."""
    m = _KEY_RE.fullmatch(key)
    if m is None:
        raise MessageError(f"invalid candle _key {key!r}: expected SYMBOL_interval_opentime")
    return m["symbol"], m["interval"]


def _upper_series(key: str) -> tuple[str, str]:
    symbol, interval = series_of_key(key)
    return symbol.upper(), interval


def check_series(symbol: str, interval: str) -> tuple[str, str]:
    """Return the symbol upper-cased and the interval, both checked against the platform."""
    if not isinstance(symbol, str):
        raise InvalidName(f"symbol must be a string, got {type(symbol).__name__} {symbol!r}")
    return check_symbol(symbol.upper()), check_interval(interval)


def candles_to_frame(
    candles: Iterable[Candle | Mapping[str, Any]],
    symbol: str | None = None,
    interval: str | None = None,
) -> pd.DataFrame:
    """Convert candles (models or decoded JSON dicts) of one series to a canonical frame.

    Symbol and interval default to those in the first `_key`; a candle of another series is a
    `MessageError`. Duplicates are kept here (`write` keeps the last of each open time).
    """
    rows = list(candles)
    if not rows:
        return empty_frame()
    # One pass pulling all fields as tuples, then one C-level parse per column: ~10x faster
    # than building the frame row by row.
    by_attr, by_item = attrgetter(*_CANDLE_FIELDS), itemgetter(*_MAPPING_FIELDS)
    try:
        tuples = [by_attr(c) if isinstance(c, Candle) else by_item(c) for c in rows]
    except (KeyError, TypeError) as exc:
        raise MessageError(f"not a candle (missing field {exc})") from None
    keys, open_times, *values = zip(*tuples, strict=True)
    sym, iv = series_of_key(keys[0]) if symbol is None or interval is None else (symbol, interval)
    sym, iv = check_series(symbol or sym, interval or iv)
    prefix = f"{sym}_{iv}_"
    for key in keys:
        # Keys spell the symbol as Binance does (upper case); accept any case, not 1m for 1M.
        if not key.startswith(prefix) and _upper_series(key) != (sym, iv):
            raise MessageError(f"candle {key!r} is not of series {sym} {iv}")
    try:
        columns = dict(zip(COLUMNS, values, strict=True))
        return frame_from_arrays(np.asarray(open_times, dtype=np.int64), columns)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"invalid candle values for {sym} {iv}: {exc}") from None


def _times_ms(values: Any, what: str) -> np.ndarray[Any, Any]:
    """Return int64 ms for ms numbers or datetimes (naive means UTC)."""
    import pandas as pd

    if isinstance(values, pd.Series | pd.Index):
        # Datetime columns convert as a whole; to_numpy() would box every tz-aware value.
        if isinstance(values.dtype, pd.DatetimeTZDtype) or values.dtype.kind == "M":
            arr = np.empty(0, dtype="M8[ms]")
        else:
            arr = values.to_numpy()
    else:
        arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise MessageError(f"{what}: missing values")
        return arr.astype(np.int64, copy=False)
    try:
        idx = pd.DatetimeIndex(values)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"{what}: expected ms integers or datetimes ({exc})") from None
    if idx.hasnans:
        raise MessageError(f"{what}: missing values")
    idx = idx.tz_localize(UTC) if idx.tz is None else idx.tz_convert(UTC)
    return np.asarray(idx.as_unit("ms").asi8, dtype=np.int64)


def _numbers(arr: np.ndarray[Any, Any], dtype: type[np.generic]) -> np.ndarray[Any, Any]:
    if arr.dtype.kind in "iuf":
        return arr.astype(dtype, copy=False)
    # Decimal strings (object or pandas string arrays) parse element by element.
    return np.asarray(arr, dtype=object).astype(dtype)


def normalize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` in the canonical layout, sorted, keeping the last row of each open time.

    Accepts the index or an `open_time` column as ms numbers or datetimes; decimal strings
    become float64; extra columns (`_key`, ...) are dropped.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise MessageError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise MessageError(f"candle frame lacks column(s) {', '.join(missing)}")
    source = frame["open_time"] if "open_time" in frame.columns else frame.index
    open_ms = _times_ms(source, "open_time")
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for name in COLUMNS:
        try:
            if name == "close_time":
                columns[name] = _times_ms(frame[name], name)
            else:
                dtype = np.int64 if name == "number_of_trades" else np.float64
                columns[name] = _numbers(frame[name].to_numpy(), dtype)
        except (TypeError, ValueError) as exc:
            raise MessageError(f"invalid candle frame column {name!r}: {exc}") from None
    # Unique over the reversed times keeps the LAST of duplicates: a later candle wins.
    if len(open_ms) and not np.all(np.diff(open_ms) > 0):
        _, first_in_rev = np.unique(open_ms[::-1], return_index=True)
        take = len(open_ms) - 1 - first_in_rev
        open_ms = open_ms[take]
        columns = {k: v[take] for k, v in columns.items()}
    return frame_from_arrays(open_ms, columns)


# ISO 8601 (RFC 3339 style): a date, optionally a time, optionally an offset or Z.
_ISO_8601 = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?)?",
    re.IGNORECASE,
)
# Unix milliseconds below 1e11 are 1970-01-01..1973-03-03, when no exchange had candles;
# from 1e9 on, such a number is plainly Unix seconds (2001-09-09 onwards) given by mistake.
_SECONDS_LOOKALIKE = (10**9, 10**11)


def to_ms(value: Any, what: str = "time") -> int:
    """Return Unix ms for a datetime/date/Timestamp (naive means UTC), ISO string or ms int.

    Strings must be ISO 8601 (`2024-03-01`, `2024-03-01T12:00:00Z`): `01/03/2024` is
    ambiguous and refused. Numbers are Unix milliseconds, as on the wire; one that is plainly
    Unix seconds is refused (pass `pd.Timestamp(s, unit="s")` or multiply by 1000).
    """
    if isinstance(value, bool):
        raise InvalidName(f"{what} must be a time, got {value!r}")
    if isinstance(value, int | np.integer | float | np.floating):
        # pandas would read a float as nanoseconds; here every number is milliseconds.
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float (10**400)
            number = math.inf
        if not math.isfinite(number):
            raise InvalidName(f"{what} {value!r} is not a time")
        _check_span(number, what, value)
        if _SECONDS_LOOKALIKE[0] <= abs(number) < _SECONDS_LOOKALIKE[1]:
            raise InvalidName(
                f"{what} {value!r} looks like Unix seconds; numbers are Unix milliseconds "
                f"(pass {int(value) * 1000} or pd.Timestamp({value!r}, unit='s'))"
            )
        return int(value)
    if isinstance(value, str) and not _ISO_8601.fullmatch(value.strip()):
        raise InvalidName(
            f"{what} {value!r} is not an ISO 8601 date or datetime "
            "(YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[Z|+HH:MM]); other spellings are ambiguous"
        )
    import pandas as pd  # not for numbers: a sink's times are ms ints

    given = value
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise InvalidName(
            f"{what} {value!r} is not a datetime, ISO 8601 string or Unix milliseconds"
        ) from None
    if ts is pd.NaT:
        raise InvalidName(f"{what} {value!r} is not a time")
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    # `.value` is always nanoseconds; the numpy scalar carries the unit asked for.
    ms = int(ts.as_unit("ms").asm8.astype(np.int64))
    _check_span(ms, what, given)
    return ms


def _check_span(ms: float, what: str, value: Any) -> None:
    """Refuse a time before Unix time 0 or past `MAX_MS`: no candle is there, and the
    backends count in int64 ms and JSON numbers (10**30 used to fail deep in numpy)."""
    if not 0 <= ms <= MAX_MS:
        raise InvalidName(
            f"{what} {value!r} is outside the times candles can have: Unix milliseconds "
            f"0 (1970-01-01) to {MAX_MS} (2**53 - 1)"
        )


def range_ms(start: Any, end: Any) -> tuple[int, int]:
    """Return `[start, end)` as Unix ms; None is unbounded (0, `MAX_MS`); reversed: error."""
    start_ms = 0 if start is None else to_ms(start, "start")
    end_ms = MAX_MS if end is None else to_ms(end, "end")
    if end_ms < start_ms:
        raise InvalidName(
            f"time range {start!r}..{end!r} ends before it starts "
            "(ranges are [start, end), end exclusive)"
        )
    return start_ms, end_ms
