"""Six loader processes sharing one exchange weight limit: 429s and 418s, and the time taken.

The load of tests/test_weight_budget.py (6 processes, each its own `KlinesClient`, nothing
shared but the exchange's counter; a "minute" of 3 s allowing 150 weight), run `--runs` times
per clock skew. The claim the test once made on the real clock: no 429 and no 418 at all. The
anchor, from the same run: the least time the exchange allows for the weight served,
(ceil(total weight / limit) - 1) windows, since a window holds at most `limit`.

    .venv/bin/python bench/weight.py [--runs 3]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_weight_budget import SYMBOLS, TIME_SCALE, WEIGHT_LIMIT, run_loaders

from streamforge_nb.testing.exchange import ExchangeServer


def skewed(skew: float) -> float:
    """The exchange's clock, `skew` seconds off this machine's."""
    return time.time() + skew


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    window = 60 * TIME_SCALE
    print(f"{'skew':>6} {'run':>4} {'429s':>5} {'418s':>5} {'weight':>7} {'took':>8} "
          f"{'anchor':>8}  (anchor: the fewest windows the weight needs)")  # fmt: skip
    for skew in (0.0, -0.4):
        for run in range(1, args.runs + 1):
            with ExchangeServer(
                symbols=SYMBOLS,
                weight_limit=WEIGHT_LIMIT, time_scale=TIME_SCALE,
                clock=partial(skewed, skew),
            ) as server:  # fmt: skip
                started = time.perf_counter()
                run_loaders(server)
                took = time.perf_counter() - started
                floor = (math.ceil(server.total_weight / WEIGHT_LIMIT) - 1) * window
                print(f"{skew:>6.1f} {run:>4} {server.served(429):>5} {server.served(418):>5} "
                      f"{server.total_weight:>7} {took:>6.1f} s {floor:>6.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
