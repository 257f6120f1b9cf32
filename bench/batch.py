"""Batch loading at the exchange's weight limit: P parallel client processes against one budget.

Against the local exchange (`ExchangeServer`, GENERATED candles) with Binance's weight limit
enforced and scaled (`--time-scale`: a "minute" of `60 * scale` seconds, `--weight-limit` per
window, 429 then 418 bans like Binance), one run measures:

  parallel:   `--workers` processes, each with its own `KlinesClient` and nothing shared but a
              work list and the exchange's counter (like loader Jobs in Pods on one IP), fetch
              the load: by default 50 symbols x 1 year of 1h plus 5 symbols x 1 month of 1m;
  sequential: the same load one item at a time in one process (`--sequential-sample` of the
              items, evenly picked, extrapolated by requests when below 1, and said so).

The exchange answers each `/api/` request after `--latency` seconds: it stands for the round
trip to Binance, at the same proportion to the time the limit allows per request as in real life
(Binance: 6000 weight/min, 2 per klines request: 20 ms per request; a 100-200 ms round trip is
5-10x that). Without it, one local client alone would reach the limit and parallelism could not
matter. Prints wall time, the floor the limit allows (weight served / limit x window, with and
without the clients' exchangeInfo and time requests), the ratio, 429s and 418s served, the
sequential time and the speed-up. Goals (issue 14): within 1.3x of the floor, zero 429s, at least
4x faster than one at a time. Always exits 0.

    .venv/bin/python bench/batch.py [--workers 8] [--time-scale 0.1667] [--weight-limit 240]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import time
from datetime import UTC, datetime
from typing import Any

from streamforge_nb.exchange.binance import KLINES_PATH, KlinesClient
from streamforge_nb.platform.intervals import interval_ms
from streamforge_nb.testing.exchange import ExchangeServer

TARGET_FLOOR_RATIO = 1.3
TARGET_SPEEDUP = 4.0
KLINES_WEIGHT = 2

Item = tuple[str, str, int, int]


def ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def work_list(hourly: int, minutely: int, true_intervals: bool) -> list[Item]:
    """`minutely` symbols x 31 days of 1m, then `hourly` symbols x 1 year of 1h (8760 candles).

    Unless `true_intervals`, the year of 1h is asked as 8760 one-minute candles: the same pages,
    rows and weight, but the generator builds an hour from its 60 minutes (about 0.4 s of CPU
    per 1h page here), which would make the local server, not the limit, the bottleneck.
    """
    year = (ms("2023-01-01"), ms("2024-01-01"))
    if not true_intervals:
        year = (year[0], year[0] + 8760 * 60_000)
    month = (ms("2024-01-01"), ms("2024-02-01"))
    first = "1h" if true_intervals else "1m"
    # The longest items first, so that no process is left alone with one at the end.
    items = [(f"S{i:03d}USDT", "1m", *month) for i in range(minutely)]
    return items + [(f"S{i:03d}USDT", first, *year) for i in range(hourly)]


def worker(base_url: str, work: Any, done: Any, go: Any) -> None:
    """Fetch items from `work` until a None; put `(item, rows, right)` on `done` for each."""
    client = KlinesClient(base_url)
    go.wait()
    while (item := work.get(timeout=60)) is not None:
        symbol, interval, start, end = item
        rows = client.klines(symbol, interval, start, end)
        step = interval_ms(interval) or 0
        contiguous = all(b[0] - a[0] == step for a, b in itertools.pairwise(rows))
        done.put((item, len(rows), contiguous and rows[0][0] == start))
    client.close()


def run(base_url: str, items: list[Item], workers: int) -> tuple[float, bool]:
    """Fetch `items` with `workers` processes; return (seconds from the go, every row right)."""
    ctx = mp.get_context("spawn")
    work, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    for item in [*items, *[None] * workers]:  # one None per process: the list is done
        work.put(item)
    procs = [ctx.Process(target=worker, args=(base_url, work, done, go)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    time.sleep(3.0)  # let every process import and build its client before the clock starts
    started = time.perf_counter()
    go.set()
    right = True
    for _ in items:
        (_, interval, start, end), count, contiguous = done.get(timeout=3600)
        right &= contiguous and count == (end - start) // (interval_ms(interval) or 1)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join(timeout=60)
    return elapsed, right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--hourly", type=int, default=50, help="symbols x 1 year of 1h")
    parser.add_argument("--minutely", type=int, default=5, help="symbols x 1 month of 1m")
    parser.add_argument("--time-scale", type=float, default=1 / 6, help="1/6: 10 s windows")
    parser.add_argument("--weight-limit", type=int, default=240, help="per window")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per /api/ answer")
    parser.add_argument("--sequential-sample", type=float, default=0.2)
    parser.add_argument(
        "--true-intervals",
        action="store_true",
        help="ask 1h for the year (slow to generate here; see work_list)",
    )
    args = parser.parse_args()

    items = work_list(args.hourly, args.minutely, args.true_intervals)
    symbols = sorted({symbol for symbol, *_ in items})
    server = ExchangeServer(symbols, weight_limit=args.weight_limit,
                            time_scale=args.time_scale, latency=args.latency)  # fmt: skip
    with server:
        window = server.limiter.seconds
        year = "1 year of 1h" if args.true_intervals else "8760 1m candles (pages of 1 year of 1h)"
        print(f"load: {args.hourly} symbols x {year} + {args.minutely} symbols x 1 month "
              f"of 1m = {len(items)} items; limit {args.weight_limit} weight per {window} s "
              f"window; latency {args.latency:.2f} s per answer")  # fmt: skip

        parallel, right = run(server.base_url, items, args.workers)
        klines = sum(r.path == KLINES_PATH for r in server.requests)
        weight, limited, banned = server.total_weight, server.served(429), server.served(418)
        floor = weight / args.weight_limit * window
        klines_floor = klines * KLINES_WEIGHT / args.weight_limit * window
        print(f"parallel, {args.workers} processes: {parallel:.1f} s, {klines} klines requests, "
              f"{weight} weight ({weight - klines * KLINES_WEIGHT} of it exchangeInfo + time), "
              f"rows {'all right' if right else 'WRONG'}")  # fmt: skip
        print(f"  floor at the limit: {floor:.1f} s (klines alone {klines_floor:.1f} s); "
              f"ratio {parallel / floor:.2f}x (klines alone {parallel / klines_floor:.2f}x), "
              f"goal <= {TARGET_FLOOR_RATIO}x")  # fmt: skip
        print(f"  429s served: {limited}, 418s served: {banned} (goal: 0)")
        profile = " ".join(str(w) for _, w in sorted(server.limiter.per_window.items()))
        print(f"  weight per window: {profile}")

        step = max(1, round(1 / args.sequential_sample))
        sample = items[::step]
        server.clear_requests()
        sequential, right = run(server.base_url, sample, 1)
        sample_klines = sum(r.path == KLINES_PATH for r in server.requests)
        estimate = sequential * klines / sample_klines
        what = "measured" if step == 1 else (
            f"extrapolated from {len(sample)} of {len(items)} items "
            f"({sample_klines} of {klines} klines requests, {sequential:.1f} s)")  # fmt: skip
        print(f"sequential, 1 process: {estimate:.1f} s ({what}), rows "
              f"{'all right' if right else 'WRONG'}")  # fmt: skip
        print(f"  speed-up {estimate / parallel:.1f}x, goal >= {TARGET_SPEEDUP}x; 429s served "
              f"{server.served(429) - limited}, 418s {server.served(418) - banned}")  # fmt: skip


if __name__ == "__main__":
    main()
