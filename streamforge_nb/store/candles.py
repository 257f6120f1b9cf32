"""One candle store API over two backends: embedded Parquet files or the platform's ArangoDB.

    store = CandleStore.open()                           # local_home()/store, embedded
    store = CandleStore.open("/data/project/candles")    # a plain path: embedded
    store = CandleStore.open("arango://arango.stf:8529") # ArangoDB (user/password: Settings)
    store.write(candles)                                 # Candle objects or a frame; idempotent
    df = store.load("BTCUSDT", "1m", "2024-08-01", "2024-08-02")
    store                                                # in a notebook: what it holds

Every frame in and out has one layout (`frames.empty_frame()`). Ranges are half-open,
`[start, end)`. The store reaches its backend only through the registry (`base`): the URL's
scheme picks a factory, which imports the backend module on first use. This module does the
checking, conversion and de-duplication once, so a backend only ever sees valid, sorted
frames without duplicate open times.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from streamforge_nb.exceptions import InvalidName, MessageError, QueueExists
from streamforge_nb.platform.contract import Candle
from streamforge_nb.settings import Settings, local_home
from streamforge_nb.store.base import CandleBackend, backend_for, merge_ranges
from streamforge_nb.store.display import _redact
from streamforge_nb.store.frames import (
    COLUMNS,
    MAX_MS,
    candles_to_frame,
    check_series,
    empty_frame,
    frame_from_arrays,
    normalize_frame,
    range_ms,
    series_of_key,
    utc_index,
)
from streamforge_nb.store.market_api import MarketQueries

if TYPE_CHECKING:
    import pandas as pd

    from streamforge_nb.store.update import SeriesUpdate, Updated

__all__ = ["CandleStore"]

_log = logging.getLogger(__name__)

_SERIES_PATTERN = r"^(?P<series>[A-Za-z0-9]+_[0-9]+[smhdwM])_[0-9]+$"
_HTML_SERIES = 20
"""Series shown by `CandleStore._repr_html_`; the rest are counted."""


class CandleStore(MarketQueries):
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
        return cls(backend_for(str(url), settings or Settings.from_env()))

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
        import pandas as pd

        if isinstance(candles, pd.DataFrame):
            if (symbol is None or interval is None) and "_key" in candles.columns:
                if len(candles) == 0:
                    return 0
                sym, iv = series_of_key(str(candles["_key"].iloc[0]))
                symbol, interval = symbol or sym, interval or iv
            if symbol is None or interval is None:
                raise MessageError("writing a frame needs symbol and interval (or a _key column)")
            sym, iv = check_series(symbol, interval)
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
            groups.setdefault(series_of_key(str(key)), []).append(candle)
        written = 0
        for (sym, iv), rows in groups.items():
            if (symbol and sym != symbol.upper()) or (interval and iv != interval):
                raise MessageError(f"candle series {sym} {iv} differs from {symbol} {interval}")
            frame = candles_to_frame(rows, sym, iv)
            written += self._write(*check_series(sym, iv), normalize_frame(frame))
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
            sym, iv = check_series(*series_of_key(f"{name}_0"))
            write_arrow = getattr(self._backend, "write_arrow", None)
            if write_arrow is not None:  # the embedded store takes Arrow as is: no pandas
                written += write_arrow(sym, iv, part)
                continue
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

    def load(
        self,
        symbols: str | Iterable[str],
        intervals: str | Iterable[str],
        start: Any = None,
        end: Any = None,
        *,
        fields: Iterable[str] | None = None,
        how: str | None = None,
        missing: str = "drop",
        backend: str = "pandas",
        manifest: bool = False,
    ) -> Any:
        """Return candles with `start <= open time < end` (None: unbounded), sorted by time.

        One symbol and one interval (plain strings): the series' candle frame, indexed by
        open time. A list of symbols or a pattern (`"*USDT"`), several intervals, or `how`:
        a market frame, long (`symbol`, `interval`, `open_time`, fields) or wide ((field,
        symbol) columns on one interval's grid); `missing` marks holes ("drop", "nan",
        "ffill"), `fields` reads only those columns, `backend` "pandas", "arrow" or "polars"
        (see `store.market`). `start`/`end`: datetimes (naive means UTC), ISO strings,
        dates or Unix ms. `manifest=True`: return `(result, Manifest)`, what was read
        (see `store.manifest`; `stamp` and `verify` take it).

        Columns and dtypes (pandas): `open_time` (the index of one series, else a column)
        datetime64[ms, UTC]; open, high, low, close, volume, quote_asset_volume,
        taker_buy_base_asset_volume, taker_buy_quote_asset_volume float64; close_time
        datetime64[ms, UTC]; number_of_trades int64 (float64 where `missing` adds nulls);
        long frames add `symbol`, `interval` (categoricals) and, with `missing` "nan" or
        "ffill", `status` (categorical) and `filled` (bool). Lower-case names, as pandas-ta,
        TA-Lib's abstract API and vectorbt look them up.
        """
        from streamforge_nb.store import market

        fields_ = market.check_fields(fields)
        market.check_choice("how", how or "long", market.HOWS)
        market.check_choice("missing", missing, market.MISSING)
        market.check_choice("backend", backend, market.BACKENDS)
        single = isinstance(symbols, str) and not market.is_pattern(symbols)
        single = single and isinstance(intervals, str) and how is None
        plain = fields is None and missing == "drop" and backend == "pandas" and not manifest
        if single and plain:
            sym, iv = check_series(symbols, intervals)  # type: ignore[arg-type]
            start_ms, end_ms = range_ms(start, end)
            if start_ms == end_ms:
                return empty_frame()
            return self._backend.read(sym, iv, start_ms, end_ms)
        series = market.resolve_series(self._backend, symbols, intervals)
        span = range_ms(start, end)
        kept: list[Any] | None = [] if manifest else None
        # A long pandas frame is built as the files' tables are let go (store.market).
        long_frame = backend == "pandas" and not single and (how or "long") == "long"
        result = market.load_market(
            self._backend, series, span, (start is not None, end is not None),
            fields=fields_, how=how or "long", missing=missing, keep=kept, pandas=long_frame,
        )  # fmt: skip
        if single and backend == "pandas":  # one series with options: indexed by open time
            out = result.to_pandas().drop(columns=["symbol", "interval"]).set_index("open_time")
        else:
            out = result if long_frame else market.to_backend(result, backend)
        if kept is None:
            return out
        from streamforge_nb.store.manifest import Manifest

        return out, Manifest.of_tables(self.url, span, fields_, series, kept)

    def gaps(self, symbol: str, interval: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Return missing candles as ranges: start, end (exclusive), missing (count), kind.

        `kind` is `exchange_empty` where the exchange confirmed it has no candles (recorded
        by the loader, see `exchange_empty`), else `missing`; a gap partly inside such a
        window is split. Without `start`/`end` only holes between the first and last stored
        candle count; an `end` past the last closed candle counts up to it (a candle not
        closed yet is not missing).
        """
        from streamforge_nb.store.analysis import find_gaps
        from streamforge_nb.store.update import closed_until

        frame = self.load(symbol, interval, start, end)
        start_ms, end_ms = range_ms(start, end)
        times = np.asarray(frame.index.as_unit("ms").asi8, dtype=np.int64)
        if start is None:
            start_ms = int(times[0]) if len(times) else end_ms
        if end is None:
            end_ms = int(times[-1]) + 1 if len(times) else start_ms
        else:
            end_ms = closed_until(interval, start_ms, end_ms)
        empty = self._empty_ms(symbol, interval, start_ms, end_ms) if end_ms > start_ms else []
        return find_gaps(times, interval, start_ms, end_ms, empty)

    def write_exchange_empty(
        self, symbol: str, interval: str, ranges: Iterable[tuple[Any, Any]]
    ) -> int:
        """Record windows `[start, end)` the exchange confirmed empty; return how many.

        The loader finds them (no kline inside the symbol's life) and the sink records them;
        `gaps()` then calls them `exchange_empty`. Idempotent; times as for `load`.
        """
        sym, iv = check_series(symbol, interval)
        if not isinstance(ranges, Iterable) or isinstance(ranges, str | bytes):
            raise InvalidName(f"ranges must be (start, end) pairs, got {ranges!r}")
        pairs = list(ranges)
        for pair in pairs:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise InvalidName(f"ranges must be (start, end) pairs, got the item {pair!r}")
        spans = [range_ms(start, end) for start, end in pairs]
        if any(a == b for a, b in spans):
            raise InvalidName(f"an exchange-empty range of {sym} {iv} is empty (end is exclusive)")
        merged = merge_ranges(spans)
        return self._backend.write_exchange_empty(sym, iv, merged) if merged else 0

    def exchange_empty(
        self, symbol: str, interval: str, start: Any = None, end: Any = None
    ) -> pd.DataFrame:
        """Return recorded exchange-empty windows within `[start, end)`: start, end (UTC)."""
        import pandas as pd

        sym, iv = check_series(symbol, interval)
        start_ms, end_ms = range_ms(start, end)
        spans = np.asarray(self._empty_ms(sym, iv, start_ms, end_ms), dtype=np.int64)
        spans = spans.reshape(-1, 2)
        return pd.DataFrame(
            {"start": utc_index(spans[:, 0], None), "end": utc_index(spans[:, 1], None)}
        )

    def _empty_ms(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Any]:
        """The backend's ranges overlapping `[start_ms, end_ms)`: merged, clipped to it."""
        sym, iv = check_series(symbol, interval)
        found = merge_ranges(self._backend.exchange_empty(sym, iv, start_ms, end_ms))
        clipped = ((max(a, start_ms), min(b, end_ms)) for a, b in found)
        return [(a, b) for a, b in clipped if a < b]

    def update(
        self,
        symbols: str | Iterable[str],
        intervals: str | Iterable[str],
        *,
        since: Any = None,
        now: datetime | None = None,
        **options: Any,
    ) -> Updated:
        """Load every series from its last stored candle (exclusive) to the last closed one.

        One candle Workflow (loader and sink into this store) per symbol x interval that needs
        anything; a series already up to date launches nothing and says so in the result's
        `series` notes (and the log). A series with nothing stored starts at `since`, else is
        skipped. `options`: the Workflow's keywords (`base_url`, `settings`, `source`, ...)
        go to each Workflow, the rest (`launcher`, launcher options) to its `launch`. Every
        Workflow is made (and so validated) before the first launch. Returns the queues.
        """
        # The workflow layer launches the loads (`workflow.update`); the store plans them.
        from streamforge_nb.registry import UPDATERS

        updated: Updated = UPDATERS.get("candles")(
            self, symbols, intervals, since=since, now=now, **options
        )
        return updated

    def plan_update(
        self,
        symbols: str | Iterable[str],
        intervals: str | Iterable[str],
        *,
        since: Any = None,
        now: datetime | None = None,
    ) -> list[SeriesUpdate]:
        """Return what `update` would load per symbol x interval, launching nothing."""
        from streamforge_nb.store.update import plan_updates

        when = now or datetime.now(UTC)
        names = [symbols] if isinstance(symbols, str) else list(symbols)
        ivs = [intervals] if isinstance(intervals, str) else list(intervals)
        coverage = self.coverage()
        empty = {
            (sym, iv): self._empty_ms(sym, iv, int(last.value // 10**6), MAX_MS)
            for sym, iv, last in zip(
                coverage["symbol"], coverage["interval"], coverage["last"], strict=True
            )
            if sym in {n.upper() for n in names} and iv in ivs
        }
        series = plan_updates(coverage, names, ivs, when, since, empty)
        for s in series:
            _log.info("update %s %s: %s", s.symbol, s.interval, s.note)
        return series

    def save_queue_state(self, record: Mapping[str, Any]) -> None:
        """Insert or replace one queue's state record (the platform's `queue_state`)."""
        self._backend.save_queue_state(record)

    def create_queue_state(self, record: Mapping[str, Any]) -> None:
        """Insert a new queue's state record, unless its queue id has one (compare-and-set).

        Of launches racing on one queue id exactly one gets here first; the others get
        `QueueExists` naming that first launch (when, by which launcher).
        """
        existing = self._backend.create_queue_state(record)
        if existing is not None:
            raise QueueExists(str(record["queue_id"]), existing)

    def queue_states(self) -> list[dict[str, Any]]:
        """Return every stored queue state record."""
        return self._backend.queue_states()

    def queue_state(self, queue_id: str) -> dict[str, Any] | None:
        """Return the state record of `queue_id` (a queue's or a batch's), or None."""
        return next((r for r in self.queue_states() if r.get("queue_id") == queue_id), None)

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
        return f"CandleStore({_redact(repr(self._backend))})"

    def _repr_html_(self, limit: int = _HTML_SERIES) -> str:
        """The backend, where it points and the first `limit` series stored, for notebooks."""
        from streamforge_nb.store.display import store_html

        return store_html(self, limit)
