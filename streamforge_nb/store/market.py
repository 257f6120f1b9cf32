"""Many series in one call: `CandleStore.load(symbols, intervals, ...)` for a whole market.

    store.load(["BTCUSDT", "ETHUSDT"], "1m", "2024-08-01", "2024-09-01")      # long (tidy)
    store.load("*USDT", "1h", "2024-01-01", "2025-01-01", fields=["close"], how="wide")

Long frames have one row per candle: `symbol`, `interval` (categoricals), `open_time` and the
fields. Wide frames (one interval) are indexed by open time with (field, symbol) columns.
Holes are never filled silently (`missing`):

- `"drop"` (default): stored candles only; a wide frame's rows are the times any symbol has.
- `"nan"`: one row per slot of the interval's grid in `[start, end)` (without bounds: from
  the first to the last candle loaded); holes hold nulls, `status` says `stored`, `missing`
  or `exchange_empty` (a window the exchange confirmed empty), `filled` is False.
- `"ffill"`: as `"nan"`, but a hole after a candle gets a flat candle at the last close
  (volumes and trades 0, the textbook close time) and `filled` True; `status` is kept.

Nulls make `number_of_trades` float64 and `close_time` NaT in pandas. Only `fields` (and
the open time) are read from the files. A long pandas frame (`"drop"`) is built a column at
a time as the embedded store's files are read (`scan.column_chunks`), none of them kept.
`backend`: `"pandas"`, `"arrow"` (a `pyarrow.Table`) or `"polars"` (needs the `polars`
extra); arrow and polars wide tables name columns `<field>_<SYMBOL>`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from streamforge_nb.exceptions import ConfigError, InvalidName
from streamforge_nb.platform.anomalies import expected_close_ms, grid_floor_ms
from streamforge_nb.platform.intervals import WEEK_OFFSET_MS, check_interval, interval_ms
from streamforge_nb.store.frames import COLUMNS, check_series, utc_index

if TYPE_CHECKING:
    from streamforge_nb.store.base import CandleBackend

__all__ = ["BACKENDS", "HOWS", "MISSING", "grid_ms", "load_market", "resolve_series", "to_backend"]

HOWS = ("long", "wide")
MISSING = ("drop", "nan", "ffill")
BACKENDS = ("pandas", "arrow", "polars")
STATUS = ("stored", "missing", "exchange_empty")
_PATTERN_CHARS = frozenset("*?[")
_PRICES = ("open", "high", "low", "close")
_MS_UTC = pa.timestamp("ms", tz="UTC")
_READERS = 4  # files read at once: pyarrow decodes without the GIL


def is_pattern(symbol: str) -> bool:
    """Whether `symbol` is a glob pattern (`*`, `?`, `[...]`) rather than one symbol."""
    return isinstance(symbol, str) and bool(_PATTERN_CHARS & set(symbol))


def grid_ms(interval: str, start_ms: int, end_ms: int) -> np.ndarray[Any, Any]:
    """Return the exchange's open times of `interval` in `[start_ms, end_ms)` (int64 ms)."""
    if end_ms <= start_ms:
        return np.empty(0, dtype=np.int64)
    step = interval_ms(interval)
    if step is None:
        months = np.arange(
            np.datetime64(start_ms, "ms").astype("M8[M]"),
            np.datetime64(end_ms - 1, "ms").astype("M8[M]") + 1,
        )
        times = months.astype("M8[ms]").astype(np.int64)
        return times[times >= start_ms]
    offset = WEEK_OFFSET_MS if interval == "1w" else 0
    first = offset - ((offset - start_ms) // step) * step
    return np.arange(first, end_ms, step, dtype=np.int64)


def check_fields(fields: Iterable[str] | None) -> list[str]:
    """Return the candle fields asked for (all without `fields`), checked."""
    if fields is None:
        return list(COLUMNS)
    names = [fields] if isinstance(fields, str) else list(fields)
    wrong = [f for f in names if f not in COLUMNS]
    if wrong or not names:
        raise InvalidName(
            f"unknown candle field(s) {wrong or names!r}; fields are {', '.join(COLUMNS)} "
            "(open_time is always there)"
        )
    return list(dict.fromkeys(names))


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """Return `value` if it is one of `choices`, else an InvalidName naming them."""
    if value not in choices:
        raise InvalidName(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _names(what: str, value: Any) -> list[str]:
    """`value` as a list of names: one string, or an iterable of strings (not bytes)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        items = list(value)
        if all(isinstance(item, str) for item in items):
            return items
    raise InvalidName(f"{what} must be a name, a pattern or a list of them, got {value!r}")


def resolve_series(
    backend: CandleBackend,
    symbols: str | Iterable[str],
    intervals: str | Iterable[str],
    stored: list[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    """Return (symbol, interval) pairs: plain symbols as given, patterns matched on the store.

    A pattern matches stored series only (of the intervals asked for); one matching nothing
    is an error, so a typo never reads as an empty market. `stored`: the store's series,
    when the caller has listed them already.
    """
    names, ivs = _names("symbols", symbols), _names("intervals", intervals)
    if not names or not ivs:
        raise InvalidName("load needs at least one symbol (or pattern) and one interval")
    ivs = list(dict.fromkeys(check_interval(iv) for iv in ivs))
    out: dict[tuple[str, str], None] = {}
    for name in names:
        if not is_pattern(name):
            sym = check_series(name, ivs[0])[0]
            out.update(dict.fromkeys((sym, iv) for iv in ivs))
            continue
        if stored is None:
            stored = backend.series()
        pattern = name.upper()
        hits = [
            (s, iv) for iv in ivs for s, i in stored if i == iv and fnmatch.fnmatchcase(s, pattern)
        ]
        if not hits:
            raise InvalidName(
                f"no stored series matches {name!r} in {', '.join(ivs)} "
                f"({len(stored)} series stored; see store.coverage())"
            )
        out.update(dict.fromkeys(sorted(hits, key=lambda h: (ivs.index(h[1]), h[0]))))
    return list(out)


def _fill_holes(
    table: pa.Table,
    interval: str,
    lo: int,
    hi: int,
    empty: Sequence[tuple[int, int]],
    missing: str,
) -> pa.Table:
    """Add a row per grid slot in `[lo, hi)` without a candle; `status`, `filled` columns."""
    times = np.asarray(table.column("open_time").cast(pa.int64()).to_numpy(), dtype=np.int64)
    grid = grid_ms(interval, lo, hi)
    holes = np.setdiff1d(grid, grid_floor_ms(times, interval), assume_unique=False)
    all_times = np.concatenate([times, holes])
    order = np.argsort(all_times, kind="stable")
    is_hole = np.concatenate([np.zeros(len(times), bool), np.ones(len(holes), bool)])[order]
    all_times = all_times[order]
    status = np.where(is_hole, 1, 0).astype(np.int8)
    for a, b in empty:
        status[is_hole & (all_times >= a) & (all_times < b)] = 2
    # The last stored candle at or before each row: a filled hole copies its close.
    last = np.maximum.accumulate(np.where(is_hole, -1, np.arange(len(all_times))))
    fill = is_hole & (last >= 0) if missing == "ffill" else np.zeros(len(all_times), bool)
    source = np.where(is_hole, -1, np.cumsum(~is_hole) - 1)  # row of `table`, -1 for a hole
    columns: dict[str, pa.Array] = {
        "open_time": pa.array(all_times, pa.int64()).cast(table.schema.field("open_time").type)
    }
    closes = table.column("close").to_numpy() if "close" in table.column_names else None
    if closes is None and missing == "ffill" and any(f in table.column_names for f in _PRICES):
        raise InvalidName("missing='ffill' fills prices from the close: add 'close' to fields")
    for name in table.column_names[1:]:
        col = table.column(name)
        typ = col.type
        raw = col.cast(pa.int64()).to_numpy() if name == "close_time" else col.to_numpy()
        values = np.zeros(len(all_times), dtype=raw.dtype)
        values[~is_hole] = raw
        if name in _PRICES and closes is not None:
            values[fill] = closes[source[last[fill]]]
        elif name == "close_time":
            values[fill] = expected_close_ms(all_times[fill], interval)
        arr = pa.array(values, pa.int64() if name == "close_time" else typ, mask=is_hole & ~fill)
        columns[name] = arr.cast(typ)
    columns["status"] = pa.DictionaryArray.from_arrays(pa.array(status), pa.array(STATUS))
    columns["filled"] = pa.array(fill)
    return pa.table(columns)


def load_market(
    backend: CandleBackend,
    series: list[tuple[str, str]],
    span: tuple[int, int],
    bounded: tuple[bool, bool],
    *,
    fields: list[str],
    how: str,
    missing: str,
    keep: list[pa.Table] | None = None,
    pandas: bool = False,
) -> pa.Table | pd.DataFrame:
    """Read `series` in `span`; return a long Arrow table (`pandas`: frame), or a wide frame.

    `keep`: a list that gets each series' stored rows as read (for a manifest)."""
    stream = getattr(backend, "column_chunks", None)  # the embedded store's
    if pandas and how == "long" and missing == "drop" and keep is None and stream is not None:
        return _long_frame(series, stream(series, span[0], span[1], fields))
    with ThreadPoolExecutor(min(_READERS, len(series))) as pool:
        tables = list(
            pool.map(lambda s: backend.read_table(s[0], s[1], span[0], span[1], fields), series)
        )
    if keep is not None:
        keep.extend(tables)
    if missing != "drop":
        tables = _with_holes(backend, series, tables, span, bounded, missing)
    if how == "wide":
        return _wide(series, tables)
    if pandas:
        return _long_frame(series, _table_columns(tables))
    return _long(series, tables)


def _with_holes(
    backend: CandleBackend,
    series: list[tuple[str, str]],
    tables: list[pa.Table],
    span: tuple[int, int],
    bounded: tuple[bool, bool],
    missing: str,
) -> list[pa.Table]:
    out = []
    for iv in dict.fromkeys(iv for _, iv in series):
        mine = [i for i, (_, v) in enumerate(series) if v == iv]
        times = [tables[i].column("open_time").cast(pa.int64()).to_numpy() for i in mine]
        loaded = np.concatenate(times) if times else np.empty(0, np.int64)
        # Unbounded ends: from the first to the last candle loaded of this interval.
        lo = span[0] if bounded[0] or not len(loaded) else int(loaded.min())
        hi = span[1] if bounded[1] or not len(loaded) else int(loaded.max()) + 1
        for i in mine:
            sym = series[i][0]
            empty = backend.exchange_empty(sym, iv, lo, hi) if hi > lo else []
            out.append((i, _fill_holes(tables[i], iv, lo, hi, empty, missing)))
    return [t for _, t in sorted(out, key=lambda p: p[0])]


def _long(series: list[tuple[str, str]], tables: list[pa.Table]) -> pa.Table:
    symbols = sorted({s for s, _ in series})
    intervals = list(dict.fromkeys(iv for _, iv in series))
    parts = []
    for (sym, iv), table in zip(series, tables, strict=True):
        n = table.num_rows
        sym_col = pa.DictionaryArray.from_arrays(
            pa.array(np.full(n, symbols.index(sym), np.int32)), pa.array(symbols)
        )
        iv_col = pa.DictionaryArray.from_arrays(
            pa.array(np.full(n, intervals.index(iv), np.int32)), pa.array(intervals)
        )
        parts.append(table.add_column(0, "interval", iv_col).add_column(0, "symbol", sym_col))
    return pa.concat_tables(parts)


def _table_columns(tables: list[pa.Table]) -> Iterator[tuple[pa.Field, list[list[pa.Array]]]]:
    """Yield each column of `tables` (one a series, one schema): per table, its chunks;
    each is dropped from `tables` before it is yielded, as `scan.column_chunks` yields."""
    for field in tables[0].schema if tables else []:
        per = [t.column(field.name).chunks for t in tables]
        tables[:] = [t.drop_columns([field.name]) for t in tables]
        yield field, per


def _long_frame(
    series: list[tuple[str, str]], columns: Iterator[tuple[pa.Field, list[list[pa.Array]]]]
) -> pd.DataFrame:
    """`_long(series, tables).to_pandas()` of the tables `columns` yields, a column at a time.

    Each column is copied once, and dropped before the next is read or decoded, which
    reuses its buffers: the decoded files and the frame never both exist whole (peak RSS
    was 2.2x the frame for 50 symbols x a month of 1m)."""
    from streamforge_nb.store.scan import concat_numpy

    symbols = sorted({s for s, _ in series})
    intervals = list(dict.fromkeys(iv for _, iv in series))
    data: dict[str, Any] = {}
    for field, per in columns:
        chunks = [c for cs in per for c in cs]
        if not data:  # open_time, first: the rows of each series
            sizes = [sum(len(c) for c in cs) for cs in per]
            for name, values, codes in (
                ("symbol", symbols, [symbols.index(s) for s, _ in series]),
                ("interval", intervals, [intervals.index(iv) for _, iv in series]),
            ):
                small = np.int8 if len(values) < 128 else np.int32  # pandas narrows the rest
                data[name] = pd.Categorical.from_codes(
                    np.repeat(np.asarray(codes, small), sizes), values
                )
        del per
        plain = chunks and not any(c.null_count for c in chunks)
        if plain and field.type in (pa.float64(), pa.int64()):
            data[field.name] = concat_numpy(chunks)
        elif plain and field.type == _MS_UTC:  # to_pandas kept a second copy about
            data[field.name] = utc_index(concat_numpy([c.view(pa.int64()) for c in chunks]), None)
        else:  # nulls, status, filled
            data[field.name] = pa.chunked_array(chunks, field.type).to_pandas()
        del chunks
    return pd.DataFrame(data, copy=False)


def _wide(series: list[tuple[str, str]], tables: list[pa.Table]) -> pd.DataFrame:
    if len({iv for _, iv in series}) > 1:
        raise InvalidName("how='wide' aligns one interval's grid: pass one interval")
    frames = {
        sym: table.to_pandas().set_index("open_time")
        for (sym, _), table in zip(series, tables, strict=True)
    }
    fields = tables[0].column_names[1:]
    # Outer join on the open time: a time one symbol lacks is a null for it.
    frame = pd.concat(frames, axis=1, names=["symbol", "field"], sort=True)
    frame = frame.swaplevel(axis=1)
    order = pd.MultiIndex.from_product([fields, list(frames)], names=["field", "symbol"])
    frame = frame.reindex(columns=order)
    frame.index = pd.DatetimeIndex(frame.index, name="open_time").as_unit("ms")
    return frame


def to_backend(result: pa.Table | pd.DataFrame, backend: str) -> Any:
    """Return a long Arrow table or a wide pandas frame in the asked `backend`'s type."""
    if isinstance(result, pd.DataFrame):  # wide
        if backend == "pandas":
            return result
        flat = result.copy(deep=False)
        flat.columns = [f"{field}_{sym}" for field, sym in result.columns]
        result = pa.Table.from_pandas(flat.reset_index(), preserve_index=False)
    if backend == "arrow":
        return result
    if backend == "polars":
        try:
            import polars as pl
        except ImportError:
            raise ConfigError(
                "backend='polars' needs polars: pip install 'streamforge-nb[polars]'"
            ) from None
        return pl.from_arrow(result)
    return result.to_pandas()
