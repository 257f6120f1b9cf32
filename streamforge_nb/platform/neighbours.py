"""Oddities found against a candle's neighbours, and their default thresholds: what
`CandleStore.quality()` adds to a candle's own anomalies (`platform.anomalies`). The sink sees a
batch, not a series, so it does not count them. No imports: the CLI's `--help` reads the
defaults without loading numpy.

| kind | the candle |
|---|---|
| `jump` | its close, high or low moved over `JUMP_SIGMAS` robust sigmas from the close before |
| `stale` | its close starts a run of `STALE_CANDLES` or more candles with that same close |

How each is found: `store.quality`.
"""

from __future__ import annotations

__all__ = ["JUMP_SIGMAS", "NEIGHBOURS", "STALE_CANDLES"]

NEIGHBOURS: dict[str, str] = {
    "jump": "the close, high or low moved over jump_sigmas robust sigmas from the close before",
    "stale": "the close is the same for stale_candles candles or more in a row",
}
"""Kinds found against a candle's neighbours, listed after `platform.anomalies.ANOMALIES`."""

JUMP_SIGMAS = 8.0  # Gaussian returns pass 8 sigmas once in ~10**15; real, fat-tailed ones more
STALE_CANDLES = 30
