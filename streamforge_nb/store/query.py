"""Queries the embedded store runs: DuckDB over the Parquet partitions, in place.

    store.sql("SELECT symbol, count(*) FROM candles WHERE interval = '1m' GROUP BY symbol")
    store.resample_many("*USDT", "1m", "1d", "2024-01-01", "2025-01-01")   # daily OHLCV

Views: `candles` (symbol, interval, open_time, the candle fields; symbol and interval come
from the file layout `candles/<SYMBOL>/<interval>/<period>.parquet`, `1mo` read as `1M`) and
`exchange_empty` (symbol, interval, start, end: windows the exchange confirmed empty).
Times are TIMESTAMPTZ in UTC. DuckDB aggregates while it scans, so memory follows the result,
not the input; `open_time` filters skip row groups by their statistics. `resample_many` runs
DuckDB only where a partition is several files; otherwise `store.resample` aggregates the
decoded tables a load keeps, series by series, with the same results.

Reading while a sink writes: DuckDB opens the files without a database and takes no lock, and
every partition is replaced whole (`os.replace` of a fully written temporary), so a query sees
each month either before a write or after it, never half of one (tests/test_market.py runs
queries in a loop against a writer). A query spanning partitions is consistent per partition,
as a `load` is; the temporaries (`.<name>.tmp`) never match `*.parquet`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import warnings
from contextlib import closing
from typing import TYPE_CHECKING, Any

import pandas as pd

from streamforge_nb.exceptions import ConfigError, InvalidName, StoreError, store_errors
from streamforge_nb.platform.intervals import WEEK_OFFSET_MS, check_interval, interval_ms
from streamforge_nb.store.frames import COLUMNS

if TYPE_CHECKING:
    from streamforge_nb.store.local import LocalBackend

__all__ = ["all_exchange_empty", "connect", "resample_many", "resample_sql", "run_sql"]

_LAST_DATETIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_SERIES = r"/([^/]+)/([^/]+)/[^/]+\.parquet$"
_PERIOD = re.compile(r"[0-9]{4}(-[0-9]{2}){0,2}")  # a partition's period in its file names
_INTERVAL = "CASE {d} WHEN '1mo' THEN '1M' ELSE {d} END"
_TYPES = {"close_time": "TIMESTAMPTZ", "number_of_trades": "BIGINT"}
# How each candle field aggregates into a longer candle (as `analysis.resample`).
_AGG = {
    "open": "arg_min(open, open_time)",
    "high": "max(high)",
    "low": "min(low)",
    "close": "arg_max(close, open_time)",
    "volume": "sum(volume)",
    "close_time": "max(close_time)",
    "quote_asset_volume": "sum(quote_asset_volume)",
    "number_of_trades": "sum(number_of_trades)::BIGINT",
    "taker_buy_base_asset_volume": "sum(taker_buy_base_asset_volume)",
    "taker_buy_quote_asset_volume": "sum(taker_buy_quote_asset_volume)",
}


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:  # a dependency; only a broken install lacks it
        raise ConfigError("store queries need duckdb: pip install duckdb") from None
    return duckdb


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _series_columns(source: str, newest: bool = False) -> str:
    """The select list adding `symbol` and `interval` from a file name to the candle fields.

    `newest`: some partition is several files (`_file_order` ranks them by age), so a
    candle stored in more than one is taken once, from the newest file holding it."""
    sym = f"regexp_extract(filename, {_quote(_SERIES)}, 1)"
    directory = f"regexp_extract(filename, {_quote(_SERIES)}, 2)"
    fields = ", ".join(("open_time", *COLUMNS))
    select = f"SELECT {sym} AS symbol, {_INTERVAL.format(d=directory)} AS interval, {fields}"
    if not newest:
        return f"{select} FROM {source}"
    return (
        f"SELECT symbol, interval, {fields} FROM ({select}, coalesce(o.age, 0) AS _age "
        f"FROM {source} LEFT JOIN _file_order o USING (filename)) "
        "QUALIFY row_number() OVER (PARTITION BY symbol, interval, open_time "
        "ORDER BY _age DESC) = 1"
    )


def _file_order(con: Any, files: list[str]) -> bool:
    """Register `_file_order` (filename, age: newer is larger) for partitions of several
    files; return whether there are any. Age is modification time, then name: a write
    replaces or adds a file, so the newest holds the latest version of a candle."""
    by_partition: dict[tuple[str, str], list[str]] = {}
    for path in files:
        by_partition.setdefault(_partition_of(path), []).append(path)
    several = [p for group in by_partition.values() if len(group) > 1 for p in group]
    stamps = []
    for path in several:
        with contextlib.suppress(FileNotFoundError):  # replaced meanwhile: read as the old one
            stamps.append((os.stat(path).st_mtime_ns, path))
    order = pd.DataFrame(
        {"filename": [p for _, p in sorted(stamps)], "age": range(1, len(stamps) + 1)}
    )
    con.register("_file_order", order.astype({"filename": str, "age": "int64"}))
    return bool(several)


def _partition_of(path: str) -> tuple[str, str]:
    """(directory, period) of a partition file: `2024-08.parquet` and `2024-08.3.parquet`
    are one partition."""
    directory, name = os.path.split(path)
    found = _PERIOD.match(name)
    return directory, found[0] if found else name


def _empty_candles() -> str:
    types = ", ".join(f"NULL::{_TYPES.get(c, 'DOUBLE')} AS {c}" for c in COLUMNS)
    return (
        f"SELECT NULL::VARCHAR AS symbol, NULL::VARCHAR AS interval, "
        f"NULL::TIMESTAMPTZ AS open_time, {types} WHERE false"
    )


def connect(backend: LocalBackend) -> Any:
    """Return an in-memory DuckDB connection with the views `candles` and `exchange_empty`."""
    duckdb = _duckdb()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    base = backend.root / "candles"
    files = [str(p) for p in base.glob("*/*/[0-9]*.parquet")]
    if files:
        source = f"read_parquet({_quote(str(base / '*' / '*' / '*.parquet'))}, filename=true)"
        con.execute(f"CREATE VIEW candles AS {_series_columns(source, _file_order(con, files))}")
    else:
        con.execute(f"CREATE VIEW candles AS {_empty_candles()}")
    rows = exchange_empty_rows(backend)
    frame = pd.DataFrame(rows, columns=["symbol", "interval", "start_ms", "end_ms"])
    con.register("_exchange_empty_ms", frame.astype({"start_ms": "int64", "end_ms": "int64"}))
    con.execute(
        "CREATE VIEW exchange_empty AS SELECT symbol, interval, "
        "make_timestamp(start_ms * 1000)::TIMESTAMPTZ AS start, "
        'make_timestamp(end_ms * 1000)::TIMESTAMPTZ AS "end" FROM _exchange_empty_ms'
    )
    # A query reads the store and nothing else: no other file, no COPY out of it, no network
    # or extension install, and the rule itself locked (a query string is text a user typed).
    for setting in (
        f"allowed_directories = [{_quote(str(backend.root) + '/')}]",
        "enable_external_access = false",
        "autoinstall_known_extensions = false",
        "autoload_known_extensions = false",
        "lock_configuration = true",
    ):
        con.execute(f"SET {setting}")
    return con


def exchange_empty_rows(backend: LocalBackend) -> list[tuple[str, str, int, int]]:
    """Return every recorded exchange-empty window: symbol, interval, start ms, end ms."""
    path = backend.root / "exchange_empty.sqlite"
    if not path.exists():
        return []
    # Read-only: a query never creates or changes the store's databases.
    with (
        store_errors("cannot read exchange-empty ranges", str(path)),
        closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db,
    ):
        rows: list[tuple[str, str, int, int]] = db.execute(
            "SELECT symbol, interval, start_ms, end_ms FROM exchange_empty "
            "ORDER BY symbol, interval, start_ms"
        ).fetchall()
    return rows


def all_exchange_empty(backend: LocalBackend) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Every recorded exchange-empty window of the embedded store, per series, read once."""
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for sym, iv, a, b in exchange_empty_rows(backend):
        out.setdefault((sym, iv), []).append((int(a), int(b)))
    return out


def fetch(relation: Any, backend: str) -> Any:
    """Return a DuckDB result as pandas (default), a pyarrow Table or a polars frame."""
    if backend == "arrow":
        # duckdb 1.x spells it fetch_arrow_table; 2.x only to_arrow_table, and warns that a
        # result of `execute` (which any statement a user types needs) is copied once.
        method = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Arrow output on a DB-API result", UserWarning)
            return method()
    if backend == "polars":
        try:
            return relation.pl()
        except ImportError:  # polars is optional
            raise ConfigError(
                "backend='polars' needs polars: pip install 'streamforge-nb[polars]'"
            ) from None
    return relation.df()


def run_sql(backend: LocalBackend, query: str, params: Any = None, result: str = "pandas") -> Any:
    """Run `query` over the store's views; return its rows in `result`'s type.

    A query DuckDB refuses (syntax, names, types) is an InvalidName; a file it cannot read
    a StoreError naming the store.
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidName(f"sql needs a query string, got {query!r}")
    duckdb = _duckdb()
    refused = (
        duckdb.PermissionException,  # a file outside the store, a setting, an extension
        duckdb.InvalidInputException,
        duckdb.ParserException,
        duckdb.BinderException,
        duckdb.CatalogException,
        duckdb.ConversionException,
        duckdb.NotImplementedException,
    )
    try:
        with closing(connect(backend)) as con:
            return fetch(con.execute(query, params), result)
    except refused as exc:
        raise InvalidName(f"query failed: {exc}") from None
    except duckdb.Error as exc:
        raise StoreError(f"cannot query the candle store at {backend.root}: {exc}") from None


def bucket_sql(rule: str) -> str:
    """A DuckDB expression: the open time of the `rule` candle holding `open_time`."""
    step = interval_ms(rule)
    if step is None:
        return "date_trunc('month', open_time)"
    offset = WEEK_OFFSET_MS if rule == "1w" else 0
    ms = "epoch_ms(open_time)"
    slot = f"{ms} - ((({ms} - {offset}) % {step}) + {step}) % {step}"
    return f"make_timestamp(({slot}) * 1000)::TIMESTAMPTZ"


def resample_sql(files: list[str], interval: str, rule: str, newest: bool = False) -> str:
    """The query aggregating `files` of `interval` candles to `rule`, per symbol (`newest`:
    as `_series_columns`)."""
    check_interval(interval)
    rule = check_interval(rule)
    if _length(rule) < _length(interval):
        raise InvalidName(f"cannot resample {interval} candles to the shorter {rule}")
    if files:
        source = f"read_parquet([{', '.join(map(_quote, files))}], filename=true)"
        source = f"({_series_columns(source, newest)})"
    else:
        source = f"({_empty_candles()})"
    aggs = ", ".join(f"{how} AS {name}" for name, how in _AGG.items())
    return (
        f"SELECT symbol, {bucket_sql(rule)} AS open_time, {aggs}, count(*) AS candles "
        f"FROM {source} WHERE open_time >= $start AND open_time < $end "
        "GROUP BY ALL ORDER BY symbol, open_time"
    )


def resample_many(
    backend: LocalBackend,
    series: list[tuple[str, str]],
    rule: str,
    span: tuple[int, int],
    result: str = "pandas",
) -> Any:
    """Aggregate the partitions of `series` (one interval) in `span` to `rule` in DuckDB."""
    interval = series[0][1]
    from streamforge_nb.store.footers import partition_paths

    # Every file of a partition (a partition may be several), not only `<period>.parquet`.
    files = [p for sym, iv in series for p in partition_paths(backend, sym, iv, *span)]
    # Python datetimes end in year 9999; the store's open end (MAX_MS) lies far beyond.
    start, end = (
        pd.Timestamp(min(ms, _LAST_DATETIME_MS), unit="ms", tz="UTC").to_pydatetime() for ms in span
    )
    bounds = {"start": start, "end": end}
    partitions = len({_partition_of(f) for f in files})
    if set(files) == {p for sym, iv in series for p in _plain_files(backend, sym, iv, span)}:
        # Each partition one file, as the sink writes them: a pass over the decoded tables
        # (`store.scan`, kept per file version) instead of DuckDB decoding every file again.
        from streamforge_nb.store.resample import resample

        return as_result(resample(backend, series, check_interval(rule), span), result)
    query = resample_sql(files, interval, rule, newest=partitions < len(files))
    return run_sql(backend, query, bounds, result)


def _plain_files(
    backend: LocalBackend, symbol: str, interval: str, span: tuple[int, int]
) -> list[str]:
    """The `<period>.parquet` files `LocalBackend.read` reads for `span` of one series."""
    parts = backend._partitions(symbol, interval)
    return [str(p) for lo, hi, p in parts if hi > span[0] and lo < span[1]]


def as_result(table: Any, result: str) -> Any:
    """Return an Arrow table as pandas (default), itself or a polars frame, as `fetch`."""
    if result == "arrow":
        return table
    if result == "polars":
        try:
            import polars as pl
        except ImportError:  # polars is optional
            raise ConfigError(
                "backend='polars' needs polars: pip install 'streamforge-nb[polars]'"
            ) from None
        return pl.from_arrow(table)
    return table.to_pandas()


def _length(interval: str) -> int:
    step = interval_ms(interval)
    return 28 * 86_400_000 if step is None else step
