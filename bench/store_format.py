"""Time the embedded store's file format against the format before, in one process.

    python3 bench/store_format.py [--runs 15] [--rounds 3] [--dir DIR]

Data: a year of GENERATED 1m candles (`testing.CandleGenerator`, not market data). Each
round writes it twice in 10k-candle batches through `LocalBackend.write_arrow` (the sink's
write: each batch rewrites its month partition, fsynced), once as the store writes today
(`_WRITE_OPTIONS`: floats and trades PLAIN, times delta-encoded) and once with the trades
delta-encoded (the format before), alternating which goes first; then times first loads of
each year (decoded tables dropped, file layouts kept, as `bench/analytics.py` does),
alternating too. Alternating in one process leaves out the drift between processes and
runs that moves this machine's figures by more than the formats differ. Prints per round
each format's median and today's / before's ratio, and the bytes of a year. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from streamforge_nb.store import local, scan
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.local import LocalBackend
from streamforge_nb.testing import CandleGenerator

YEAR = 1_672_531_200_000  # 2023-01-01 00:00 UTC
NEXT_YEAR = 1_704_067_200_000
SERIES = ("SYM000USDT", "1m")
TODAY: dict[str, Any] = dict(local._WRITE_OPTIONS)
BEFORE: dict[str, Any] = {
    **TODAY,
    "column_encoding": {**TODAY["column_encoding"], "number_of_trades": "DELTA_BINARY_PACKED"},
}
FORMATS = {"today": TODAY, "before": BEFORE}


def year_table() -> pa.Table:
    """A year of generated 1m candles as the sink hands them to the store."""
    rows = list(zip(*CandleGenerator(seed=2024).rows(*SERIES, YEAR, NEXT_YEAR), strict=True))
    arrays = [pa.array(values) for values in rows[:11]]  # open time, then COLUMNS' order
    return pa.Table.from_arrays(
        [a.cast(f.type) for a, f in zip(arrays, scan.SCHEMA, strict=True)], schema=scan.SCHEMA
    )


def write_year(root: Path, table: pa.Table, options: dict[str, Any]) -> float:
    """Write `table` in 10k batches into a new store at `root` with `options`; seconds."""
    shutil.rmtree(root, ignore_errors=True)
    local._WRITE_OPTIONS = options  # the module's format, read at each partition's write
    try:
        backend = LocalBackend(root)
        began = time.perf_counter()
        for lo in range(0, table.num_rows, 10_000):
            backend.write_arrow(*SERIES, table.slice(lo, 10_000))
        backend.close()
        return time.perf_counter() - began
    finally:
        local._WRITE_OPTIONS = TODAY


def first_load(store: CandleStore) -> float:
    scan.clear()  # the values are read from the files; the layouts stay, as in analytics.py
    began = time.perf_counter()
    store.load(*SERIES)
    return time.perf_counter() - began


def alternating(fns: Mapping[str, Callable[[], float]], runs: int, flip: bool) -> dict[str, float]:
    """The median of `runs` calls of each of `fns`, called in turns (reversed if `flip`)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)[::-1] if flip else list(fns)
    for _ in range(runs):
        for name in order:
            times[name].append(fns[name]())
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the stores are written")
    args = parser.parse_args(argv)
    base = Path(args.dir or tempfile.mkdtemp(prefix="sf-format-"))
    table = year_table()
    roots = {name: base / name for name in FORMATS}
    try:
        for round_ in range(args.rounds):
            flip = bool(round_ % 2)
            writes = {n: partial(write_year, roots[n], table, FORMATS[n]) for n in FORMATS}
            w = alternating(writes, args.runs, flip)
            stores = {name: CandleStore.open(roots[name]) for name in FORMATS}
            for store in stores.values():
                store.load(*SERIES)  # each file's layout found and kept
            loads = {name: partial(first_load, store) for name, store in stores.items()}
            r = alternating(loads, args.runs, flip)
            for store in stores.values():
                store.close()
            size = {n: sum(p.stat().st_size for p in roots[n].rglob("*.parquet")) for n in FORMATS}
            print(
                f"round {round_ + 1}: write a year of 1m in 10k batches "
                f"{w['today'] * 1e3:.0f} ms today, {w['before'] * 1e3:.0f} ms before "
                f"({w['today'] / w['before']:.2f}x); first load {r['today'] * 1e3:.1f} ms "
                f"against {r['before'] * 1e3:.1f} ({r['today'] / r['before']:.2f}x); a year "
                f"{size['today'] / 2**20:.1f} MiB against {size['before'] / 2**20:.1f}",
                flush=True,
            )
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
