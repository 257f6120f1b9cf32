"""ArcticDB (LMDB) anchors for bench/analytics.py, run in an interpreter that has arcticdb.

    <python with arcticdb> bench/analytics_arctic.py STORE_ROOT ARCTIC_DIR SYMBOLS RUNS [CASES]

Loads the same Parquet rows the embedded store holds into an LMDB library once (naive UTC
index), then prints one JSON line of [min, median, max] seconds: read (and read_cpu, its
CPU seconds in all of this process's threads), date_range_day,
date_range_month, read_batch (+ concat), resample (QueryBuilder 1m -> 1h of the year; and
resample_cpu, its CPU seconds),
resample_batch (the symbols x January to 1h, read_batch with a QueryBuilder, + concat),
update (the year of 1m written as a first 10k batch, then `update` of each next 10k) and
update_cpu (the same, CPU seconds of this process). CASES (comma-separated, default all):
read, market, resample, write, as bench/analytics.py names them.

Durability of `update` here: the LMDB environment ArcticDB opens has no MDB_NOSYNC (its LMDB
URL takes only map_size; `LmdbStorage` opens with MDB_NOTLS), so each LMDB commit fdatasyncs
the data file and writes its meta page through an O_DSYNC handle; an update is about four
commits (strace: 86 fdatasync calls for a write and 19 updates). It is durable when it
returns, as the embedded store's write is.
Imports nothing of streamforge_nb: arcticdb pins pandas<3, which the project's venv does not have.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from arcticdb import Arctic, QueryBuilder

YEAR = pd.Timestamp("2023-01-01")
BATCH = 10_000


def series(root: Path, symbol: str) -> pd.DataFrame:
    files = sorted((root / "candles" / symbol / "1m").glob("[0-9]*.parquet"))
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files])
    frame = frame.set_index("open_time")
    frame.index = frame.index.tz_localize(None)
    frame["close_time"] = frame["close_time"].dt.tz_localize(None)
    return frame


def median(
    fn: Callable[[], object], runs: int, clock: Callable[[], float] = time.perf_counter
) -> list[float]:
    """Fastest, median and slowest seconds of `runs` calls of `fn` (wall, or `clock`)."""
    times = []
    for _ in range(runs):
        started = clock()
        fn()
        times.append(clock() - started)
    return [min(times), statistics.median(times), max(times)]


def main() -> int:
    root, arctic_dir, symbols, runs = (
        Path(sys.argv[1]),
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    cases = set((sys.argv[5] if len(sys.argv) > 5 else "read,market,resample,write").split(","))
    names = [f"SYM{i:03d}USDT" for i in range(symbols)]
    lib = Arctic(f"lmdb://{arctic_dir}?map_size=4GB").get_library("candles", create_if_missing=True)
    if set(names) - set(lib.list_symbols()):
        for name in names:
            lib.write(name, series(root, name))
    out: dict[str, list[float]] = {}
    if "read" in cases:
        out.update(reads(lib, runs))
    jan = (YEAR, pd.Timestamp("2023-01-31 23:59:59.999"))

    def batch() -> pd.DataFrame:
        got = lib.read_batch([lib_read(n, jan) for n in names])
        return pd.concat({r.symbol: r.data for r in got}, names=["symbol"])

    if "market" in cases:
        out["read_batch"] = median(batch, runs)
    agg = {
        "open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum",
        "quote_asset_volume": "sum", "number_of_trades": "sum",
        "taker_buy_base_asset_volume": "sum", "taker_buy_quote_asset_volume": "sum",
    }  # fmt: skip

    def resample() -> pd.DataFrame:
        q = QueryBuilder().resample("1h").agg(agg)
        return lib.read("SYM000USDT", query_builder=q).data

    def resample_batch() -> pd.DataFrame:
        q = QueryBuilder().resample("1h").agg(agg)
        got = lib.read_batch([lib_read(n, jan, q) for n in names])
        return pd.concat({r.symbol: r.data for r in got}, names=["symbol"])

    if "resample" in cases:
        out["resample"] = median(resample, runs)
        out["resample_cpu"] = median(resample, runs, clock=time.process_time)
        out["resample_batch"] = median(resample_batch, runs)

    def update() -> None:
        # The sink's write: 10k-candle batches, each merged into what is stored.
        if lib.has_symbol("WRITE"):
            lib.delete("WRITE")
        lib.write("WRITE", year.iloc[:BATCH])
        for lo in range(BATCH, len(year), BATCH):
            lib.update("WRITE", year.iloc[lo : lo + BATCH], upsert=True)

    if "write" in cases:
        year = series(root, "SYM000USDT")
        out["update"] = median(update, runs)
        out["update_cpu"] = median(update, runs, clock=time.process_time)
    print(json.dumps(out))
    return 0


def reads(lib: Any, runs: int) -> dict[str, list[float]]:
    """The year read whole (wall and CPU) and a day and a month of it by date_range."""
    return {
        "read": median(lambda: lib.read("SYM000USDT").data, runs),
        "read_cpu": median(lambda: lib.read("SYM000USDT").data, runs, clock=time.process_time),
        "date_range_day": median(
            lambda: (
                lib.read(
                    "SYM000USDT", date_range=(YEAR, YEAR + pd.Timedelta("1D") - pd.Timedelta("1ms"))
                ).data
            ),
            runs,
        ),
        "date_range_month": median(
            lambda: (
                lib.read(
                    "SYM000USDT", date_range=(YEAR, pd.Timestamp("2023-01-31 23:59:59.999"))
                ).data
            ),
            runs,
        ),
    }


def lib_read(
    name: str, date_range: tuple[pd.Timestamp, pd.Timestamp], query: QueryBuilder | None = None
) -> object:
    from arcticdb import ReadRequest

    return ReadRequest(name, date_range=date_range, query_builder=query)


if __name__ == "__main__":
    sys.exit(main())
