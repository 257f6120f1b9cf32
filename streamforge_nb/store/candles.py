"""One candle store API over two backends: embedded Parquet files or the platform's ArangoDB.

    store = CandleStore.open()                           # local_home()/store, embedded
    store = CandleStore.open("/data/project/candles")    # a plain path: embedded
    store = CandleStore.open("arango://arango.stf:8529") # ArangoDB (user/password: Settings)
    store.write(candles)                                 # Candle objects or a frame; idempotent
    df = store.load("BTCUSDT", "1m", "2024-08-01", "2024-08-02")

Every frame in and out has one layout (`empty_frame()`): a UTC `DatetimeIndex` named
`open_time` (millisecond resolution, as the platform counts), float64 prices and volumes,
int64 `number_of_trades`, UTC `close_time`. Ranges are half-open, `[start, end)`.

Backends implement the four methods of `CandleBackend` and register a URL scheme with
`register_backend`; this module does the checking, conversion and de-duplication once, so a
backend only ever sees valid, sorted frames without duplicate open times.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from streamforge_nb.exceptions import ConfigError, InvalidName, MessageError
from streamforge_nb.platform.contract import Candle
from streamforge_nb.platform.names import check_interval, check_symbol
from streamforge_nb.settings import Settings, local_home

__all__ = [
    "COLUMNS",
    "FLOAT_COLUMNS",
    "MAX_MS",
    "BackendFactory",
    "CandleBackend",
    "CandleStore",
    "candles_to_frame",
    "empty_coverage",
    "empty_frame",
    "frame_from_arrays",
    "normalize_frame",
    "register_backend",
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

_UTC_MS = pd.DatetimeTZDtype("ms", "UTC")
_CANDLE_FIELDS = ("key", "open_time", *COLUMNS)
_MAPPING_FIELDS = ("_key", "open_time", *COLUMNS)
_SERIES_PATTERN = r"^(?P<series>[A-Za-z0-9]+_[0-9]+[smhdwM])_[0-9]+$"
_KEY_RE = re.compile(r"(?P<symbol>[A-Za-z0-9]+)_(?P<interval>[0-9]+[smhdwM])_[0-9]+")


# --- frames -----------------------------------------------------------------------------------


def utc_index(ms: np.ndarray[Any, Any], name: str | None = "open_time") -> pd.DatetimeIndex:
    """Return Unix ms as a UTC `DatetimeIndex` of millisecond resolution."""
    times = np.asarray(ms, dtype=np.int64).view("M8[ms]")
    return pd.DatetimeIndex(times, name=name).tz_localize(UTC)


def frame_from_arrays(
    open_time_ms: np.ndarray[Any, Any], columns: Mapping[str, Any]
) -> pd.DataFrame:
    """Build a candle frame from int64 ms open times and per-column arrays, without copies."""
    data: dict[str, Any] = {}
    for name in COLUMNS:
        values = columns[name]
        if name == "close_time":
            data[name] = utc_index(np.asarray(values), None)
        elif name == "number_of_trades":
            data[name] = np.asarray(values, dtype=np.int64)
        else:
            data[name] = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(data, index=utc_index(open_time_ms), copy=False)


def empty_frame() -> pd.DataFrame:
    """Return a candle frame with no rows and the canonical dtypes."""
    empty = np.empty(0, dtype=np.int64)
    return frame_from_arrays(empty, dict.fromkeys(COLUMNS, empty))


def empty_coverage() -> pd.DataFrame:
    """Return a coverage frame with no rows: symbol, interval, first, last, rows."""
    times = pd.Series([], dtype=_UTC_MS)
    return pd.DataFrame(
        {
            "symbol": pd.Series([], dtype=str),
            "interval": pd.Series([], dtype=str),
            "first": times,
            "last": times.copy(),
            "rows": pd.Series([], dtype=np.int64),
        }
    )


def _series_of(key: str) -> tuple[str, str]:
    m = _KEY_RE.fullmatch(key)
    if m is None:
        raise MessageError(f"invalid candle _key {key!r}: expected SYMBOL_interval_opentime")
    return m["symbol"], m["interval"]


def _upper_series(key: str) -> tuple[str, str]:
    symbol, interval = _series_of(key)
    return symbol.upper(), interval


def _check_series(symbol: str, interval: str) -> tuple[str, str]:
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
    sym, iv = _series_of(keys[0]) if symbol is None or interval is None else (symbol, interval)
    sym, iv = _check_series(symbol or sym, interval or iv)
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


def to_ms(value: Any, what: str = "time") -> int:
    """Return Unix ms for a datetime/date/Timestamp (naive means UTC), ISO string or ms int."""
    if isinstance(value, bool):
        raise InvalidName(f"{what} must be a time, got {value!r}")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        # pandas would read a float as nanoseconds; here every number is milliseconds.
        if not np.isfinite(value):
            raise InvalidName(f"{what} {value!r} is not a time")
        return int(value)
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
    return int(ts.as_unit("ms").asm8.astype(np.int64))


def _range_ms(start: Any, end: Any) -> tuple[int, int]:
    start_ms = 0 if start is None else to_ms(start, "start")
    end_ms = MAX_MS if end is None else to_ms(end, "end")
    if end_ms < start_ms:
        raise InvalidName(
            f"time range {start!r}..{end!r} ends before it starts "
            "(ranges are [start, end), end exclusive)"
        )
    return start_ms, end_ms


# --- backends ---------------------------------------------------------------------------------


class CandleBackend(ABC):
    """Where candles live. Gets checked arguments and sorted, duplicate-free frames only."""

    url: str = ""
    """Where the backend points, without credentials."""

    @abstractmethod
    def write_frame(self, symbol: str, interval: str, frame: pd.DataFrame) -> int:
        """Store `frame` (replacing candles of the same open time); return rows written."""

    @abstractmethod
    def read(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Return candles with `start_ms <= open time < end_ms`, sorted, canonical layout."""

    @abstractmethod
    def coverage(self) -> pd.DataFrame:
        """Return one row per stored series: symbol, interval, first, last, rows."""

    @abstractmethod
    def save_queue_state(self, record: Mapping[str, Any]) -> None:
        """Insert or replace one queue's state (`record["queue_id"]` is its identity)."""

    @abstractmethod
    def queue_states(self) -> list[dict[str, Any]]:
        """Return every stored queue state."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and handles."""


BackendFactory = Callable[[str, Settings], CandleBackend]
"""Builds a backend from the store URL and the settings (credentials live in the settings)."""

_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Make `CandleStore.open` build URLs `<scheme>://...` with `factory(url, settings)`."""
    _BACKENDS[scheme.lower()] = factory


def _local(url: str, settings: Settings) -> CandleBackend:
    from streamforge_nb.store.local import LocalBackend  # here: store_local imports this module

    return LocalBackend(Path(url.removeprefix("local://")) if "://" in url else Path(url))


def _arango(url: str, settings: Settings) -> CandleBackend:
    from streamforge_nb.store.arango import (
        ArangoBackend,  # here: python-arango loads only when used
    )

    return ArangoBackend(url, settings)


for _scheme, _factory in (
    ("local", _local),
    ("arango", _arango),
    ("arangos", _arango),
    ("http", _arango),
    ("https", _arango),
):
    register_backend(_scheme, _factory)


# --- the facade -------------------------------------------------------------------------------


class CandleStore:
    """Candles of every symbol and interval, in one backend; notebooks and sinks share it."""

    def __init__(self, backend: CandleBackend) -> None:
        self._backend = backend

    @classmethod
    def open(cls, url: str | Path | None = None, settings: Settings | None = None) -> Self:
        """Open a store: a path or `local://` embedded; `arango://`, `http(s)://` ArangoDB.

        Without a URL: `settings.arango_url` when settings are given and name one, else the
        embedded store at `local_home()/store`.
        """
        if url is None and settings is not None and settings.arango_url:
            url = settings.arango_url
        if url is None:
            url = local_home() / "store"
        text = str(url)
        scheme = text.split("://", 1)[0].lower() if "://" in text else "local"
        factory = _BACKENDS.get(scheme)
        if factory is None:
            known = ", ".join(sorted(_BACKENDS))
            raise ConfigError(f"no candle store backend for scheme {scheme!r} (known: {known})")
        return cls(factory(text, settings or Settings.from_env()))

    @property
    def backend(self) -> CandleBackend:
        """The backend this store talks to."""
        return self._backend

    @property
    def url(self) -> str:
        """Where the store points, without credentials."""
        return self._backend.url

    def write(
        self,
        candles: Iterable[Candle | Mapping[str, Any]] | pd.DataFrame,
        symbol: str | None = None,
        interval: str | None = None,
    ) -> int:
        """Store candles or a candle frame; return rows written. Idempotent: last one wins.

        A frame needs `symbol` and `interval`, or a `_key` column to derive them from.
        Durable on return: a sink may commit its Kafka offsets afterwards.
        """
        if isinstance(candles, pd.DataFrame):
            if (symbol is None or interval is None) and "_key" in candles.columns:
                if len(candles) == 0:
                    return 0
                sym, iv = _series_of(str(candles["_key"].iloc[0]))
                symbol, interval = symbol or sym, interval or iv
            if symbol is None or interval is None:
                raise MessageError("writing a frame needs symbol and interval (or a _key column)")
            sym, iv = _check_series(symbol, interval)
            if "_key" in candles.columns:
                parts = candles["_key"].astype(str).str.split("_")
                odd = (parts.str[0].str.upper() != sym) | (parts.str[1] != iv)
                if odd.any():
                    key = candles["_key"][odd.to_numpy()].iloc[0]
                    raise MessageError(f"candle {key!r} is not of series {sym} {iv}")
            return self._write(sym, iv, normalize_frame(candles))
        groups: dict[tuple[str, str], list[Candle | Mapping[str, Any]]] = {}
        for candle in candles:
            key = candle.key if isinstance(candle, Candle) else candle.get("_key", "")
            groups.setdefault(_series_of(str(key)), []).append(candle)
        written = 0
        for (sym, iv), rows in groups.items():
            if (symbol and sym != symbol.upper()) or (interval and iv != interval):
                raise MessageError(f"candle series {sym} {iv} differs from {symbol} {interval}")
            frame = candles_to_frame(rows, sym, iv)
            written += self._write(*_check_series(sym, iv), normalize_frame(frame))
        return written

    def write_table(self, table: Any) -> int:
        """Store a pyarrow table of decoded candles (`contract.decode_candles`); return rows.

        The sink's path: decimal strings become float64 in Arrow, column by column, with no
        Python object per candle.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        if table.num_rows == 0:
            return 0
        series = pc.struct_field(pc.extract_regex(table["_key"], _SERIES_PATTERN), "series")
        names = pc.unique(series).to_pylist()
        written = 0
        for name in names:
            part = table if len(names) == 1 else table.filter(pc.equal(series, name))
            sym, iv = _check_series(*_series_of(f"{name}_0"))
            columns = {
                col: (
                    part[col].to_numpy()
                    if col in ("close_time", "number_of_trades")
                    else pc.cast(part[col], pa.float64()).to_numpy()
                )
                for col in COLUMNS
            }
            frame = frame_from_arrays(part["open_time"].to_numpy(), columns)
            written += self._write(sym, iv, normalize_frame(frame))
        return written

    def _write(self, symbol: str, interval: str, frame: pd.DataFrame) -> int:
        return self._backend.write_frame(symbol, interval, frame) if len(frame) else 0

    def load(self, symbol: str, interval: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Return candles with `start <= open time < end` (None: unbounded), sorted by time.

        `start`/`end`: datetimes (naive means UTC), ISO strings, dates or Unix ms.
        """
        sym, iv = _check_series(symbol, interval)
        start_ms, end_ms = _range_ms(start, end)
        if start_ms == end_ms:
            return empty_frame()
        return self._backend.read(sym, iv, start_ms, end_ms)

    def gaps(self, symbol: str, interval: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Return missing candles as ranges: start, end (exclusive), missing (count).

        Without `start`/`end` only holes between the first and last stored candle count.
        """
        from streamforge_nb.store.analysis import find_gaps

        frame = self.load(symbol, interval, start, end)
        start_ms, end_ms = _range_ms(start, end)
        times = np.asarray(frame.index.as_unit("ms").asi8, dtype=np.int64)
        if start is None:
            start_ms = int(times[0]) if len(times) else end_ms
        if end is None:
            end_ms = int(times[-1]) + 1 if len(times) else start_ms
        return find_gaps(times, interval, start_ms, end_ms)

    def save_queue_state(self, record: Mapping[str, Any]) -> None:
        """Insert or replace one queue's state record (the platform's `queue_state`)."""
        self._backend.save_queue_state(record)

    def queue_states(self) -> list[dict[str, Any]]:
        """Return every stored queue state record."""
        return self._backend.queue_states()

    def coverage(self) -> pd.DataFrame:
        """Return one row per stored series: symbol, interval, first, last, rows."""
        return self._backend.coverage()

    # The analysis helpers take a frame from `load()`, as the platform's notebooks use them.
    @staticmethod
    def resample(df: pd.DataFrame, rule: str) -> pd.DataFrame:
        """Aggregate a candle frame to `rule` ("1h", "1d", a Binance interval...)."""
        from streamforge_nb.store.analysis import resample

        return resample(df, rule)

    @staticmethod
    def plot(df: pd.DataFrame, title: str | None = None) -> Any:
        """Return a plotly figure: candlesticks over a volume panel, UTC axis."""
        from streamforge_nb.store.analysis import plot

        return plot(df, title=title)

    @staticmethod
    def volume_volatility(df: pd.DataFrame, window: str = "1d") -> pd.DataFrame:
        """Relate traded volume to volatility per `window` (see `analysis.volume_volatility`)."""
        from streamforge_nb.store.analysis import volume_volatility

        return volume_volatility(df, window=window)

    def close(self) -> None:
        """Release the backend's connections and handles."""
        self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CandleStore({self._backend!r})"
