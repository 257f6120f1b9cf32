"""Time market analysis on the embedded store against its anchors (issue 21, "Measure").

    python3 bench/analytics.py [--cache DIR] [--symbols 50] [--runs 5] [--market 200]
                               [--arctic-python PY|auto|none]

Data: GENERATED candles (`testing.CandleGenerator`, not market data) written once through
`CandleStore` under `--cache` (default ~/.cache/streamforge-nb/bench-analytics) and reused:
one symbol x a year of 1m (2023), `--symbols` symbols x January 2023 of 1m, and for the
coverage matrix `--matrix` symbols x 4 intervals (1m, 5m, 1h, 1d) with one day a month.

Cases (median of `--runs`; every figure is printed with its ratio to the anchor; nothing is
asserted): a year of 1m read (anchor `pandas.read_parquet` of the same rows in one file),
one day and one month of it; the symbols x a month long and wide (anchors: a loop of
single-series loads plus concat, `pyarrow.dataset` of the same files); resample a year of
1m to 1h (anchor: pandas on the frame in memory, and load + resample) and the symbols x a
month to 1h; the coverage matrix by month (footer cache cold and warm); with `--market N`
daily OHLCV of N symbols x a year of 1m (copies of one generated year) in a child process,
its peak RSS reported. ArcticDB (LMDB) anchors run in an interpreter with `arcticdb` (its
pandas<3 pin cannot share this venv): by default a venv this script makes once under
`--cache` (`pip install arcticdb`); it loads the same Parquet rows into a library once and
times read, date_range, read_batch + concat and QueryBuilder resample.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from streamforge_nb.store import footers, layouts, planned_read, scan
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.frames import COLUMNS, frame_from_arrays
from streamforge_nb.testing import CandleGenerator

YEAR = 1_672_531_200_000  # 2023-01-01 00:00 UTC
FEB = 1_675_209_600_000  # 2023-02-01
NEXT_YEAR = 1_704_067_200_000  # 2024-01-01
DAY = 86_400_000
GEN = CandleGenerator(seed=2024)
ARCTIC = Path(__file__).with_name("analytics_arctic.py")
CASES = ("read", "market", "write", "resample", "coverage")


def generated(symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
    """GENERATED candles of one series as a canonical frame."""
    rows = list(zip(*GEN.rows(symbol, interval, start_ms, end_ms), strict=True))
    ints = ("close_time", "number_of_trades")
    columns = {
        name: np.asarray(values, dtype=np.int64 if name in ints else np.float64)
        for name, values in zip(COLUMNS, rows[1:11], strict=True)
    }
    return frame_from_arrays(np.asarray(rows[0], dtype=np.int64), columns)


def write_days(store: CandleStore, symbol: str, interval: str, start_ms: int, end_ms: int) -> None:
    for day in range(start_ms, end_ms, 31 * DAY):
        store.write(generated(symbol, interval, day, min(day + 31 * DAY, end_ms)), symbol, interval)


def prepare(cache: Path, symbols: int, matrix: int) -> CandleStore:
    """Generate the data once; a marker per part makes later runs skip it."""
    store = CandleStore.open(cache / "store")
    parts: list[tuple[str, Callable[[], None]]] = [
        ("year", lambda: write_days(store, "SYM000USDT", "1m", YEAR, NEXT_YEAR)),
        *(
            (f"month{i}", lambda i=i: write_days(store, f"SYM{i:03d}USDT", "1m", YEAR, FEB))
            for i in range(1, symbols)
        ),
        *((f"matrix{i}", lambda i=i: _matrix_series(store, i)) for i in range(matrix)),
    ]
    for name, make in parts:
        marker = cache / "made" / name
        if not marker.exists():
            started = time.perf_counter()
            make()
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            print(f"  generated {name} in {time.perf_counter() - started:.1f} s", flush=True)
    return store


def _matrix_series(store: CandleStore, i: int) -> None:
    symbol = f"MAT{i:03d}USDT"
    for month in pd.date_range("2023-01-01", periods=12, freq="MS", tz="UTC"):
        ms = int(month.value // 10**6)
        for interval in ("1m", "5m", "1h", "1d"):
            store.write(generated(symbol, interval, ms, ms + DAY), symbol, interval)


class Timing(float):
    """The median of some runs (the float), with their fastest and slowest."""

    lo: float
    hi: float

    @classmethod
    def of(cls, times: list[float]) -> Timing:
        out = cls(statistics.median(times))
        out.lo, out.hi = min(times), max(times)
        return out

    def spread(self) -> str:
        return f"{self.lo * 1000:.1f}/{self * 1000:.1f}/{self.hi * 1000:.1f} ms"


def median_time(
    fn: Callable[[], object], runs: int, clock: Callable[[], float] = time.perf_counter
) -> Timing:
    """Time `runs` calls of `fn`: their median, fastest and slowest wall time (or `clock`'s:
    `time.process_time` for CPU seconds, which other processes on the machine change less)."""
    times = []
    for _ in range(runs):
        began = clock()
        fn()
        times.append(clock() - began)
    return Timing.of(times)


def cleared(fn: Callable[[], object], shapes: bool = False) -> Callable[[], object]:
    """`fn` after dropping the decoded tables `store.scan` keeps: a first read's cost (and
    with `shapes`, the files' layouts `store.layouts` keeps as well)."""

    def first() -> object:
        scan.clear()
        if shapes:
            layouts.clear()
        return fn()

    return first


def show(case: str, seconds: Timing, anchors: dict[str, float]) -> None:
    """Print a case's min/median/max and its ratio (of medians) to each anchor's median."""

    def spread(t: float) -> str:
        return t.spread() if isinstance(t, Timing) else f"{t * 1000:.1f} ms"

    ratios = ", ".join(f"{seconds / t:.2f}x {name} ({spread(t)})" for name, t in anchors.items())
    print(f"{case:<46} {spread(seconds):>24}   {ratios}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache/streamforge-nb/bench-analytics"
    )
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--matrix", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--arctic-python", default=os.environ.get("ARCTIC_PYTHON", "auto"),
                        help="an interpreter with arcticdb; 'auto' (default): a venv made "
                        "once under --cache; 'none': skip the ArcticDB anchors")  # fmt: skip
    parser.add_argument("--market", type=int, default=0,
                        help="symbols x a year of 1m for the daily-OHLCV case (200 in the "
                        "issue; 0 skips it: it copies 26 MB per symbol under --cache)")  # fmt: skip
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated cases to run (default all: {','.join(CASES)}); "
                        "the ArcticDB anchors of the others are skipped too")  # fmt: skip
    args = parser.parse_args(argv)
    cases = set(args.cases.split(","))
    if cases - set(CASES):
        parser.error(f"unknown case(s) {sorted(cases - set(CASES))}: choose from {CASES}")
    if args.arctic_python == "auto":
        args.arctic_python = arctic_python(args.cache)
    elif args.arctic_python == "none":
        args.arctic_python = ""
    print(f"data under {args.cache} (GENERATED candles, made once)", flush=True)
    store = prepare(args.cache, args.symbols, args.matrix)
    root = store.backend.root  # type: ignore[attr-defined]
    runs = args.runs
    arctic = _arctic(args, root) if args.arctic_python else {}
    if not arctic:
        print("ArcticDB anchors: skipped (no --arctic-python with arcticdb)")

    year = store.load("SYM000USDT", "1m")
    names = [f"SYM{i:03d}USDT" for i in range(args.symbols)]
    if "read" in cases:
        year_case(args, store, root, year, arctic)
    if "market" in cases:
        market_load_case(store, root, names, runs, arctic)
    if "write" in cases:
        write_case(args.cache, root, runs, arctic)
    if "resample" in cases:
        resample_case(store, year, names, runs, arctic)
    if "coverage" in cases:
        coverage_case(store, args.matrix, runs)
    # 5. A market: `--market` symbols x a year of 1m, daily OHLCV of all, in a child process
    # (its peak RSS is the figure).
    if args.market:
        market_case(args.cache, store, args.market)
    return 0


def year_case(
    args: argparse.Namespace, store: CandleStore, root: Path, year: pd.DataFrame,
    arctic: dict[str, float],
) -> None:  # fmt: skip
    """1. One symbol, a year of 1m: warm, first in this process, first in a new process."""
    runs = args.runs
    one_file = args.cache / "year.parquet"
    if not one_file.exists():
        year.to_parquet(one_file)
    t_load = median_time(lambda: store.load("SYM000USDT", "1m"), runs)
    t_first = median_time(cleared(lambda: store.load("SYM000USDT", "1m")), runs)
    t_pq = median_time(lambda: pd.read_parquet(one_file), runs)
    show(
        f"year of 1m ({len(year):,} rows): load",
        t_load,
        {"read_parquet": t_pq, **_a(arctic, "read")},
    )
    show("  first load (decoded tables dropped)", t_first,
         {"read_parquet": t_pq, **_a(arctic, "read")})  # fmt: skip
    c_first = median_time(cleared(lambda: store.load("SYM000USDT", "1m")), runs, time.process_time)
    show("  first load, CPU seconds (all threads)", c_first, _a(arctic, "read_cpu"))
    t_shapes = median_time(cleared(lambda: store.load("SYM000USDT", "1m"), shapes=True), runs)
    show("  first load, file layouts dropped too", t_shapes, _a(arctic, "read"))
    t_fresh, cpu = fresh_read(root, runs)
    show(f"  first load in a new process (CPU {cpu * 1000:.0f} ms)", t_fresh,
         {"read_parquet": t_pq, **_a(arctic, "read")})  # fmt: skip
    year_files = sorted((root / "candles/SYM000USDT/1m").glob("2*.parquet"))
    meta = pq.ParquetFile(year_files[0]).metadata
    codec = meta.row_group(0).column(1).compression
    trades = meta.row_group(0).column(meta.schema.names.index("number_of_trades")).encodings
    trades_as = "PLAIN" if "PLAIN" in trades else "/".join(e for e in trades if e != "RLE")
    year_bytes = sum(f.stat().st_size for f in year_files)
    print(f"  a year on disk: {year_bytes / 2**20:.1f} MiB in 12 files ({codec}, trades "
          f"{trades_as}: the files of the version that made --cache)", flush=True)  # fmt: skip
    if trades_as != "PLAIN":
        print(f"  (the store writes the trades PLAIN now: --cache {args.cache} holds an older "
              "format; a new --cache measures today's)", flush=True)  # fmt: skip
    mapped = planned_read.mapped_arrays(str(year_files[0]), scan.SCHEMA, planned_read.Scratch())
    if mapped is None or mapped["close"].flags.writeable:  # copied, not views of the map
        print(f"  (the store writes a column as one page now: --cache {args.cache} holds "
              "columns in pages, which a resample copies; a new --cache measures today's)",
              flush=True)  # fmt: skip
    for what, end in (("day", YEAR + DAY), ("month", FEB)):
        t = median_time(partial(store.load, "SYM000USDT", "1m", YEAR, end), runs)
        show(f"one {what} of it: load", t, _a(arctic, f"date_range_{what}"))


def market_load_case(
    store: CandleStore, root: Path, names: list[str], runs: int, arctic: dict[str, float]
) -> None:
    """2. The symbols x a month of 1m, long and wide."""
    n_rows = len(store.load(names, "1m", YEAR, FEB, fields=["close"]))

    def loop() -> pd.DataFrame:
        return pd.concat({s: store.load(s, "1m", YEAR, FEB) for s in names}, names=["symbol"])

    files = [str(root / "candles" / s / "1m" / "2023-01.parquet") for s in names]
    t_loop = median_time(loop, runs)
    t_ds = median_time(lambda: ds.dataset(files, format="parquet").to_table().to_pandas(), runs)
    anchors = {"loop of loads": t_loop, "pyarrow.dataset": t_ds, **_a(arctic, "read_batch")}
    t_long = median_time(lambda: store.load(names, "1m", YEAR, FEB), runs)
    show(f"{len(names)} symbols x a month ({n_rows:,} rows): long", t_long, anchors)
    t_arrow = median_time(lambda: store.load(names, "1m", YEAR, FEB, backend="arrow"), runs)
    show("  long, backend='arrow'", t_arrow, anchors)
    t_close = median_time(lambda: store.load(names, "1m", YEAR, FEB, fields=["close"]), runs)
    show("  long, fields=['close']", t_close, anchors)
    t_wide = median_time(lambda: store.load(names, "1m", YEAR, FEB, how="wide"), runs)
    show("  wide", t_wide, anchors)
    t_wide_c = median_time(
        lambda: store.load(names, "1m", YEAR, FEB, how="wide", fields=["close"]), runs
    )
    show("  wide, fields=['close']", t_wide_c, anchors)

    rss_case(root, names)


def resample_case(
    store: CandleStore, year: pd.DataFrame, names: list[str], runs: int, arctic: dict[str, float]
) -> None:
    """3. Resample to 1h: one symbol a year, the symbols a month."""
    t_many = median_time(lambda: store.resample_many("SYM000USDT", "1m", "1h"), runs)
    t_pandas = median_time(lambda: store.resample(year, "1h"), runs)
    t_both = median_time(lambda: store.resample(store.load("SYM000USDT", "1m"), "1h"), runs)
    show("resample a year 1m -> 1h: resample_many", t_many, {
        "pandas in memory": t_pandas, "load + pandas": t_both, **_a(arctic, "resample"),
    })  # fmt: skip
    t_many_first = median_time(cleared(lambda: store.resample_many("SYM000USDT", "1m", "1h")), runs)
    show("  first resample (decoded tables dropped)", t_many_first, _a(arctic, "resample"))
    c_many_first = median_time(
        cleared(lambda: store.resample_many("SYM000USDT", "1m", "1h")), runs, time.process_time
    )
    show("  first resample, CPU seconds (all threads)", c_many_first, _a(arctic, "resample_cpu"))
    t_many50 = median_time(lambda: store.resample_many(names, "1m", "1h", YEAR, FEB), runs)
    t_loop50 = median_time(
        lambda: [store.resample(store.load(s, "1m", YEAR, FEB), "1h") for s in names], runs
    )
    show(f"resample {len(names)} x a month -> 1h: resample_many", t_many50,
         {"loop load + pandas": t_loop50, **_a(arctic, "resample_batch")})  # fmt: skip
    t_many50_first = median_time(
        cleared(lambda: store.resample_many(names, "1m", "1h", YEAR, FEB)), runs
    )
    show("  first resample (decoded tables dropped)", t_many50_first,
         _a(arctic, "resample_batch"))  # fmt: skip


def coverage_case(store: CandleStore, matrix: int, runs: int) -> None:
    """4. Coverage matrix by month: a cold footer cache (a new process), then warm."""
    mat = [f"MAT{i:03d}USDT" for i in range(matrix)]

    def cold() -> object:
        footers._CACHE.clear()
        return store.coverage("MAT*", by="month")

    t_cold = median_time(cold, max(1, runs // 2))
    t_cov = median_time(lambda: store.coverage("MAT*", by="month"), max(1, runs // 2))
    cov = store.coverage("MAT*", by="month")
    t_plain = median_time(store.coverage, max(1, runs // 2))
    show(f"coverage by month, {len(mat)} x 4 intervals ({len(cov):,} rows)", t_cov,
         {"cold footer cache": t_cold, "plain coverage()": t_plain})  # fmt: skip
    show("  cold footer cache", t_cold, {"plain coverage()": t_plain})


def rss_case(root: Path, names: list[str]) -> None:
    """Peak RSS of the symbols x a month long load in a new process, over what it returns."""
    code = (
        "import json, resource, sys\n"
        "from streamforge_nb.store.candles import CandleStore\n"
        "store = CandleStore.open(sys.argv[1])\n"
        "names = json.loads(sys.argv[2])\n"
        f"store.load(names[:1], '1m', {YEAR}, {YEAR} + 60000)  # imports done\n"
        "base = int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()\n"
        f"df = store.load(names, '1m', {YEAR}, {FEB})\n"
        # VmHWM, not ru_maxrss: Linux carries the forking bench's own peak over exec.
        "peak = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) * 1024\n"
        "print('RESULT', json.dumps([peak - base, int(df.memory_usage(deep=True).sum())]))\n"
    )
    for cache in ("512", "0"):
        env = {**os.environ, "STREAMFORGE_READ_CACHE_MB": cache}
        command = [sys.executable, "-c", code, str(root), json.dumps(names)]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=600, check=True, env=env
        )
        grew, size = json.loads(done.stdout.rsplit("RESULT ", 1)[1])
        print(f"  long, first load in a new process (read cache {cache} MB): peak RSS "
              f"+{grew / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB frame: "
              f"{grew / size:.2f}x (goal 1.5x)", flush=True)  # fmt: skip


def fresh_read(root: Path, runs: int) -> tuple[Timing, float]:
    """A year of 1m read first in a new process (imports done before): wall, median CPU s."""
    code = (
        "import json, sys, time\n"
        "from streamforge_nb.store.candles import CandleStore\n"
        "store = CandleStore.open(sys.argv[1])\n"
        f"store.load('SYM001USDT', '1m', {YEAR}, {YEAR} + 60000)  # imports done\n"
        "w, c = time.perf_counter(), time.process_time()\n"
        "store.load('SYM000USDT', '1m')\n"
        "print('RESULT', json.dumps([time.perf_counter() - w, time.process_time() - c]))\n"
    )
    walls, cpus = [], []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                              text=True, timeout=600, check=True)  # fmt: skip
        wall, cpu = json.loads(done.stdout.rsplit("RESULT ", 1)[1])
        walls.append(wall)
        cpus.append(cpu)
    return Timing.of(walls), statistics.median(cpus)


def write_case(cache: Path, root: Path, runs: int, arctic: dict[str, float]) -> None:
    """The sink's write: a year of 1m in 10k-candle batches through `write_arrow` (each lands
    in its month partition) into an empty store, then `close` (the last partitions
    compressed), against ArcticDB `update` of the same batches."""
    from streamforge_nb.store.local import LocalBackend

    files = sorted((root / "candles" / "SYM000USDT" / "1m").glob("2*.parquet"))
    year = pa.concat_tables([pq.read_table(f) for f in files])
    batches = [year.slice(lo, 10_000) for lo in range(0, year.num_rows, 10_000)]
    target = cache / "write-case"
    times, cpus = [], []
    for _ in range(runs):
        shutil.rmtree(target, ignore_errors=True)
        backend = LocalBackend(target)
        w, c = time.perf_counter(), time.process_time()
        for batch in batches:
            backend.write_arrow("SYM000USDT", "1m", batch)
        backend.close()
        times.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    shutil.rmtree(target, ignore_errors=True)
    took = Timing.of(times)
    rate = year.num_rows / took
    anchor = _a(arctic, "update")
    cpu = f", ArcticDB's {arctic['update_cpu']:.2f} s" if "update_cpu" in arctic else ""
    print(f"write a year of 1m in 10k batches: {rate / 1e6:.2f}M rows/s "
          f"(CPU {statistics.median(cpus):.2f} s{cpu})" + "".join(
              f", {year.num_rows / t / 1e6:.2f}M rows/s {k}: {t / took:.2f}x its rows/s"
              for k, t in anchor.items()), flush=True)  # fmt: skip
    show("  write: seconds", took, anchor)
    print("  both durable when a call returns: ours fsyncs each partition file a batch "
          "rewrites, then the directory once; ArcticDB's LMDB (no MDB_NOSYNC) fdatasyncs and "
          "writes its meta page O_DSYNC on each commit, ~4 commits an update",
          flush=True)  # fmt: skip


def market_case(cache: Path, store: CandleStore, symbols: int) -> None:
    """Daily OHLCV of `symbols` x a year of 1m: copies of SYM000USDT's year files (made once;
    the same GENERATED rows under each symbol), aggregated by resample_many in a child."""
    root: Path = store.backend.root  # type: ignore[attr-defined]
    source = root / "candles" / "SYM000USDT" / "1m"
    for i in range(symbols):
        target = root / "candles" / f"MKT{i:03d}USDT" / "1m"
        if not target.is_dir():
            target.mkdir(parents=True)
            for f in source.glob("[0-9]*.parquet"):
                shutil.copyfile(f, target / f.name)
    counted = "int(got['candles'].sum())"
    got = _market_child(root, "store.resample_many('MKT*', '1m', '1d')", counted)
    print(
        f"{symbols} symbols x a year of 1m ({got['n']:,} rows) -> daily OHLCV "
        f"({got['rows']:,} rows): {got['s']:.1f} s (goal 60 s: {got['s'] / 60:.2f}x), "
        f"peak RSS {got['rss'] / 2**30:.2f} GiB (goal 4 GiB: {got['rss'] / 2**32:.2f}x)",
        flush=True,
    )
    # No goal in the issue: what a quant's first question after a market load costs.
    got = _market_child(root, "store.quality_summary('MKT*', '1m')[1]", counted)
    print(
        f"  quality of the same ({got['rows']} series, {got['n']:,} candles: their own anomalies, "
        f"jumps, stale runs): {got['s']:.1f} s, peak RSS {got['rss'] / 2**30:.2f} GiB",
        flush=True,
    )


def _market_child(root: Path, call: str, count: str) -> dict[str, Any]:
    """Run `got = <call>` over the store at `root` in a fresh interpreter; return its time
    (s), rows, candles (`count` of `got`) and peak RSS (bytes)."""
    code = (
        "import json, sys, time\n"
        "from streamforge_nb.store.candles import CandleStore\n"
        "store = CandleStore.open(sys.argv[1])\n"
        "t = time.perf_counter()\n"
        f"got = {call}\n"
        "took = time.perf_counter() - t\n"
        "rss = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) * 1024\n"
        f"print('RESULT', json.dumps({{'s': took, 'rows': len(got), 'rss': rss, 'n': {count}}}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                          text=True, timeout=3600, check=True)  # fmt: skip
    # DuckDB may draw its progress bar on stdout: the figures follow the last marker.
    got: dict[str, Any] = json.loads(done.stdout.rsplit("RESULT ", 1)[1])
    return got


def _a(arctic: dict[str, float], key: str) -> dict[str, float]:
    return {f"ArcticDB {key}": arctic[key]} if key in arctic else {}


def arctic_python(cache: Path) -> str:
    """A venv of its own with arcticdb (it pins pandas<3, this venv has pandas 3), made once
    under `cache`; return its interpreter, or "" if it cannot be made here."""
    venv = cache / "arctic-venv"
    python = venv / "bin" / "python"
    if (
        not python.exists()
        or subprocess.run(
            [str(python), "-c", "import arcticdb, pyarrow"], capture_output=True, check=False
        ).returncode
    ):
        print(f"setting up ArcticDB in {venv} (pip install arcticdb pyarrow)", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        install = [str(python), "-m", "pip", "install", "-q", "arcticdb", "pyarrow"]
        for command in ([base, "-m", "venv", str(venv)], install):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"ArcticDB set-up failed: {done.stderr.strip()[-500:]}")
                return ""
    return str(python)


def _arctic(args: argparse.Namespace, root: Path) -> dict[str, float]:
    """Run the ArcticDB anchors in their own interpreter; return seconds per case."""
    done = subprocess.run(
        [args.arctic_python, str(ARCTIC), str(root), str(args.cache / "arctic"),
         str(args.symbols), str(args.runs), args.cases],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        print(f"ArcticDB anchors failed: {done.stderr.strip()[-500:]}")
        return {}
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    out: dict[str, float] = {}
    for key, (lo, med, hi) in result.items():
        timing = Timing(med)
        timing.lo, timing.hi = lo, hi
        out[key] = timing
    return out


if __name__ == "__main__":
    sys.exit(main())
