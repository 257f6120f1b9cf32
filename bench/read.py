"""Time the embedded candle store: a year of 1m candles read back, and bulk writes.

    python3 bench/read.py [--rows 525600] [--runs 5] [--batch 10000]

Writes one year of generated 1m candles (525,600 rows) into a temporary embedded store in
batches of `--batch` (as a sink does), then times `CandleStore.load()` of the whole year
(median of `--runs`) against `pandas.read_parquet` of the same rows from one file written in
this run: the anchor, what reading Parquet costs on this machine at best. Also prints write
throughput, the cost of a batch as its partition fills (1m: months; 1s: days, the largest
partitions), and the conversion of Candle objects to a frame. Target: load <= 0.3 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streamforge_nb.platform.contract import Candle
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.frames import candles_to_frame, frame_from_arrays

START_MS = 1_672_531_200_000  # 2023-01-01 00:00 UTC
TARGET_S = 0.3


def candles(rows: int, step_ms: int, start_ms: int = START_MS, seed: int = 1) -> pd.DataFrame:
    """Return `rows` generated candles: a random walk, prices in cents as Binance sends them."""
    rng = np.random.default_rng(seed)
    open_ms = start_ms + np.arange(rows, dtype=np.int64) * step_ms
    close = np.round(16_500 + np.cumsum(rng.normal(0, 5, rows)), 2)
    open_ = np.round(np.concatenate([[close[0]], close[:-1]]), 2)
    volume = np.round(rng.gamma(2, 50, rows), 5)
    columns: dict[str, Any] = {
        "open": open_,
        "high": np.maximum(open_, close) + 1.25,
        "low": np.minimum(open_, close) - 1.25,
        "close": close,
        "volume": volume,
        "close_time": open_ms + step_ms - 1,
        "quote_asset_volume": np.round(volume * close, 4),
        "number_of_trades": rng.integers(10, 5000, rows),
        "taker_buy_base_asset_volume": np.round(volume / 2, 5),
        "taker_buy_quote_asset_volume": np.round(volume * close / 2, 4),
    }
    return frame_from_arrays(open_ms, columns)


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Return the median wall time of `runs` calls of `fn`."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def write_batches(
    store: CandleStore, frame: pd.DataFrame, symbol: str, interval: str, batch: int, unit: str
) -> tuple[float, list[tuple[int, float]]]:
    """Write `frame` in batches; return total seconds and (rows already in partition, s)."""
    part = frame.index.as_unit("ms").asi8.view("M8[ms]").astype(f"M8[{unit}]")
    filled: dict[Any, int] = {}
    costs = []
    total = 0.0
    for lo in range(0, len(frame), batch):
        chunk = frame.iloc[lo : lo + batch]
        key = part[lo]  # the partition the batch starts in
        began = time.perf_counter()
        store.write(chunk, symbol, interval)
        spent = time.perf_counter() - began
        total += spent
        costs.append((filled.get(key, 0), spent))
        for k, n in zip(*np.unique(part[lo : lo + batch], return_counts=True), strict=True):
            filled[k] = filled.get(k, 0) + int(n)
    return total, costs


def print_growth(costs: list[tuple[int, float]], bucket: int) -> None:
    """Print the median batch cost by how full its partition already was."""
    groups: dict[int, list[float]] = {}
    for before, spent in costs:
        groups.setdefault(before // bucket * bucket, []).append(spent)
    for start in sorted(groups):
        ms = statistics.median(groups[start]) * 1000
        print(f"    partition had {start:>6}-{start + bucket - 1:<6} rows: {ms:6.1f} ms/batch")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=525_600, help="1m candles (a year)")
    parser.add_argument("--runs", type=int, default=5, help="timed reads (median)")
    parser.add_argument("--batch", type=int, default=10_000, help="candles per write")
    args = parser.parse_args(argv)

    year = candles(args.rows, 60_000)
    end_ms = START_MS + args.rows * 60_000
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp:
        store = CandleStore.open(Path(tmp) / "store")

        print(f"write: {args.rows} 1m candles in batches of {args.batch} (monthly partitions)")
        total, costs = write_batches(store, year, "BTCUSDT", "1m", args.batch, "M")
        print(f"  {args.rows / total:,.0f} rows/s, {total:.2f} s in {len(costs)} batches")
        print_growth(costs, 10_000)

        day = candles(86_400, 1_000, seed=2)
        print(f"write: one day of 1s candles (86,400 rows, one partition), batches of {args.batch}")
        total, costs = write_batches(store, day, "BTCUSDT", "1s", args.batch, "D")
        print(f"  {len(day) / total:,.0f} rows/s")
        print_growth(costs, 20_000)

        models = [
            Candle.model_validate(row)
            for row in _as_messages(year.iloc[: args.batch], "BTCUSDT", "1m")
        ]
        convert = median_time(lambda: candles_to_frame(models), args.runs)
        rewrite = median_time(lambda: store.write(models), args.runs)
        print(f"  {args.batch} Candle objects -> frame: {convert * 1000:.1f} ms;")
        print(f"  store.write() of them again (replace, idempotent): {rewrite * 1000:.1f} ms")

        loaded = store.load("BTCUSDT", "1m", START_MS, end_ms)
        assert len(loaded) == args.rows, (len(loaded), args.rows)
        load = median_time(lambda: store.load("BTCUSDT", "1m", START_MS, end_ms), args.runs)

        anchor_path = Path(tmp) / "anchor.parquet"
        year.to_parquet(anchor_path)
        anchor = median_time(lambda: pd.read_parquet(anchor_path), args.runs)

        print(f"read: {args.rows} rows, median of {args.runs}")
        print(f"  CandleStore.load()            {load:.3f} s")
        print(f"  pandas.read_parquet (anchor)  {anchor:.3f} s")
        print(f"  ratio load/anchor             {load / anchor:.2f}")
        verdict = "meets" if load <= TARGET_S else "MISSES"
        print(f"  target <= {TARGET_S} s: {verdict}")
    return 0 if load <= TARGET_S else 1


def _as_messages(frame: pd.DataFrame, symbol: str, interval: str) -> list[dict[str, Any]]:
    """Return `frame` as data-topic messages: decimal strings, ms integers, `_key`."""
    out = []
    for t, row in zip(frame.index.as_unit("ms").asi8, frame.itertuples(index=False), strict=True):
        msg: dict[str, Any] = {"_key": f"{symbol}_{interval}_{t}", "open_time": int(t)}
        for name, value in row._asdict().items():
            if name == "close_time":
                msg[name] = int(value.value // 1_000_000)
            elif name == "number_of_trades":
                msg[name] = int(value)
            else:
                msg[name] = repr(float(value))
        out.append(msg)
    return out


if __name__ == "__main__":
    sys.exit(main())
