"""GENERATED candles (not market data), deterministic and exactly aggregable.

THE DATA IS GENERATED, NOT MARKET DATA. Prices are a seeded random walk per symbol (a
Brownian bridge between daily anchor levels), volumes and trade counts are seeded noise. The
same `(seed, symbol, interval, open_time)` always gives the same kline, and coarser intervals
aggregate the finer ones exactly (a 5m candle is its five 1m candles merged).

    rows = CandleGenerator(seed=2024).rows("BTCUSDT", "1m", start_ms, end_ms)

`ExchangeServer` (in `exchange.py`) serves these over Binance's wire format.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from functools import lru_cache
from statistics import NormalDist
from typing import Any

from streamforge_nb.platform.intervals import close_time, longest_ms, open_times

__all__ = ["DEFAULT_SEED", "CandleGenerator"]

DEFAULT_SEED = 2024

_DAY = 86_400_000
_MINUTES = 1440
_E8 = 10**8  # Prices and amounts are ints in units of 1e-8, Binance's 8 decimals.
_NORMAL = NormalDist()
_BASE = {"BTCUSDT": (30_000.0, 600_000.0), "ETHUSDT": (2_000.0, 300_000.0)}

# A candle before formatting: open, high, low, close, volume, quote volume, trades,
# taker buy volume, taker buy quote volume; all ints (prices and amounts in 1e-8 units).
_Bar = tuple[int, int, int, int, int, int, int, int, int]


class CandleGenerator:
    """Produce deterministic GENERATED klines (not market data) for any symbol and interval."""

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        self.seed = seed

    def rows(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list[Any]]:
        """Return REST kline rows for the open times in `[start_ms, end_ms)`."""
        return [self.row(symbol, interval, t) for t in open_times(interval, start_ms, end_ms)]

    def row(self, symbol: str, interval: str, open_ms: int) -> list[Any]:
        """Return the kline opening at `open_ms`, as Binance's REST API sends it (12 fields)."""
        o, h, lo, c, v, q, n, tbv, tbq = self._bar(symbol, interval, open_ms)
        return [
            open_ms, _dec(o), _dec(h), _dec(lo), _dec(c), _dec(v),
            close_time(interval, open_ms), _dec(q), n, _dec(tbv), _dec(tbq), "0",
        ]  # fmt: skip

    def _bar(self, symbol: str, interval: str, open_ms: int) -> _Bar:
        day, rest = divmod(open_ms, _DAY)
        if interval == "1s":
            minute, ms = divmod(rest, 60_000)
            return _seconds(self.seed, symbol, day, minute)[ms // 1000]
        if longest_ms(interval) < _DAY:
            first = rest // 60_000
            return _merge(
                _minutes(self.seed, symbol, day)[first : first + longest_ms(interval) // 60_000]
            )
        last = (close_time(interval, open_ms) + 1) // _DAY
        return _merge([_day_bar(self.seed, symbol, d) for d in range(day, last)])


def _dec(units: int) -> str:
    return f"{units // _E8}.{units % _E8:08d}"


def _merge(bars: Sequence[_Bar]) -> _Bar:
    v = q = n = tbv = tbq = 0
    for bar in bars:
        v, q, n, tbv, tbq = v + bar[4], q + bar[5], n + bar[6], tbv + bar[7], tbq + bar[8]
    high, low = max(b[1] for b in bars), min(b[2] for b in bars)
    return bars[0][0], high, low, bars[-1][3], v, q, n, tbv, tbq


def _normal(rng: random.Random) -> float:
    # Only `random()` is guaranteed reproducible across Python versions, so build normals on it.
    return _NORMAL.inv_cdf(rng.random() or 0.5)


@lru_cache(maxsize=256)
def _profile(seed: int, symbol: str) -> tuple[float, int, float, tuple[float, ...]]:
    """Return a symbol's base price, tick (1e-8 units), quote volume per minute, phases."""
    rng = random.Random(f"{seed}/{symbol}")
    price, quote = _BASE.get(symbol, (10 ** (rng.random() * 4 - 1), 50_000.0))
    tick = 10 ** max(0, math.floor(math.log10(price)) + 2)
    return price, tick, quote, tuple(rng.random() * 2 * math.pi for _ in range(3))


def _anchor(seed: int, symbol: str, day: int) -> float:
    """Return the log price at the start of `day` (days since 1970): slow waves plus noise."""
    price, _, _, (p1, p2, p3) = _profile(seed, symbol)
    noise = _normal(random.Random(f"{seed}/{symbol}/anchor/{day}")) * 0.01
    waves = (
        0.35 * math.sin(2 * math.pi * day / 365.25 + p1)
        + 0.12 * math.sin(2 * math.pi * day / 61 + p2)
        + 0.04 * math.sin(2 * math.pi * day / 11 + p3)
    )
    return math.log(price) + waves + noise


@lru_cache(maxsize=64)
def _minutes(seed: int, symbol: str, day: int) -> list[_Bar]:
    """Return the 1440 one-minute bars of `day`: a Brownian bridge between two anchors."""
    _, tick, quote, _ = _profile(seed, symbol)
    rng = random.Random(f"{seed}/{symbol}/{day}")
    a0, a1 = _anchor(seed, symbol, day), _anchor(seed, symbol, day + 1)
    sigma = 0.0007
    walk = [0.0, *itertools.accumulate(_normal(rng) * sigma for _ in range(_MINUTES))]
    end = walk[-1]
    points = [
        max(
            tick, round(math.exp(a0 + (a1 - a0 - end) * i / _MINUTES + walk[i]) * _E8 / tick) * tick
        )
        for i in range(_MINUTES + 1)
    ]
    bars: list[_Bar] = []
    for m in range(_MINUTES):
        o, c = points[m], points[m + 1]
        spread = sigma * 0.6 * max(o, c) / tick
        h = max(o, c) + round(rng.random() * spread) * tick
        lo = max(tick, min(o, c) - round(rng.random() * spread) * tick)
        mid = (o + h + lo + c) // 4
        volume = round(quote * _E8 / mid * math.exp(0.5 * _normal(rng)) * _E8)
        quote_volume = volume * mid // _E8
        trades = max(1, round(quote_volume / _E8 / 250 * (0.7 + 0.6 * rng.random())))
        share = 0.35 + 0.3 * rng.random()
        bars.append(
            (o, h, lo, c, volume, quote_volume, trades, round(volume * share),
             round(quote_volume * share))
        )  # fmt: skip
    return bars


@lru_cache(maxsize=8192)
def _day_bar(seed: int, symbol: str, day: int) -> _Bar:
    return _merge(_minutes(seed, symbol, day))


@lru_cache(maxsize=256)
def _seconds(seed: int, symbol: str, day: int, minute: int) -> list[_Bar]:
    """Return the 60 one-second bars of a minute; they merge back into the minute exactly."""
    o, h, lo, c, *amounts = _minutes(seed, symbol, day)[minute]
    _, tick, _, _ = _profile(seed, symbol)
    rng = random.Random(f"{seed}/{symbol}/{day}/{minute}")
    walk = [0.0, *itertools.accumulate(_normal(rng) * (h - lo) / 16 for _ in range(60))]
    points = [
        min(h, max(lo, round((o + (c - o) * s / 60 + walk[s] - walk[-1] * s / 60) / tick) * tick))
        for s in range(61)
    ]
    points[0], points[60] = o, c
    highs = [max(points[s], points[s + 1]) for s in range(60)]
    lows = [min(points[s], points[s + 1]) for s in range(60)]
    # Let one second touch the minute's high and one its low, so the merge is exact.
    highs[max(range(60), key=highs.__getitem__)] = h
    lows[min(range(60), key=lows.__getitem__)] = lo
    weights = [rng.random() for _ in range(60)]
    total = sum(weights)
    splits = []
    for amount in amounts:
        parts = [int(amount * w / total) for w in weights]
        parts[-1] += amount - sum(parts)  # The remainder keeps sums exact.
        splits.append(parts)
    v, q, n, tbv, tbq = splits
    return [
        (points[s], highs[s], lows[s], points[s + 1], v[s], q[s], n[s], tbv[s], tbq[s])
        for s in range(60)
    ]
