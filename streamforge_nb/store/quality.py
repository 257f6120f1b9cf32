"""What looks wrong in stored candles, many series at once: one row per finding, a summary
per series. Findings never change the data: every candle stays what the exchange served.

Two kinds of finding:

- a candle's own (`platform.anomalies`, the rules the sink counts as it stores): odd close
  times, off-grid opens, open or close outside low .. high, zero volume, flat prices;
- against its neighbours (only here: they need the candles around it):

| kind | the candle |
|---|---|
| `jump` | its close, high or low moved over `jump_sigmas` robust sigmas from the close before |
| `stale` | its close starts a run of `stale_candles` or more candles with that same close |

A jump is a log return from the close before, between grid neighbours (never across a hole:
what happened in it is unknown), measured against the robust sigma (1.4826 x the median
absolute move) of the same price's moves in the `_WINDOW` candles around it, a block of
the series, counting the moves that moved (a stale run would shrink the scale, and the move
that ends it would look like a jump); a block where fewer than a quarter moved takes the
whole series' (a lone spike in a quiet block would be its own scale).
Highs count upward moves and lows downward ones: a wick to a price the market never traded
near (a bad tick inside high .. low, which `ohlc` cannot see) is a jump of its high or low.
A candle is one finding, for the price that moved the most sigmas. A bad tick in the close
is a jump out and a jump back, so it shows as two findings. A stale run also needs
grid neighbours: a hole ends it. A zero-volume candle's detail names its run (a halted
market is one run of them, each still a finding, as the sink counts them).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.anomalies import ANOMALIES
from streamforge_nb.platform.neighbours import NEIGHBOURS
from streamforge_nb.store.analysis import _iso, _slots, _utc, find_anomalies

__all__ = ["KINDS", "check_parameters", "empty_findings", "findings", "quality", "summary"]

KINDS: dict[str, str] = {**ANOMALIES, **NEIGHBOURS}
"""Every kind of finding, in the order findings of one candle are listed."""

_WINDOW = 60  # candles whose returns give a candle's sigma (a block of the series)
_MAD_SIGMA = 1.4826  # a normal distribution's sigma per median absolute deviation
_COLUMNS = ["symbol", "interval", "open_time", "kind", "detail"]
_UTC_MS = "datetime64[ms, UTC]"


def check_parameters(jump_sigmas: Any, stale_candles: Any) -> tuple[float, int]:
    """Return the thresholds as numbers, or say which one is not usable (before any read)."""
    if isinstance(jump_sigmas, bool) or not isinstance(jump_sigmas, numbers.Real):
        raise InvalidName(f"jump_sigmas must be a number of sigmas, got {jump_sigmas!r}")
    if not math.isfinite(jump_sigmas) or jump_sigmas <= 0:
        raise InvalidName(f"jump_sigmas must be a finite number above 0, got {jump_sigmas!r}")
    if isinstance(stale_candles, bool) or not isinstance(stale_candles, numbers.Integral):
        raise InvalidName(f"stale_candles must be a whole number of candles, got {stale_candles!r}")
    if stale_candles < 2:
        raise InvalidName(f"stale_candles must be 2 or more, got {stale_candles!r}")
    return float(jump_sigmas), int(stale_candles)


def findings(
    frame: pd.DataFrame, interval: str, jump_sigmas: float, stale_candles: int
) -> pd.DataFrame:
    """One row per finding in one series' candles (a `load` frame): open_time, kind,
    detail, by time then kind."""
    own = find_anomalies(frame, interval)
    if len(frame) < 2:
        return own
    opens = np.asarray(pd.DatetimeIndex(frame.index).as_unit("ms").asi8, dtype=np.int64)
    closes = frame["close"].to_numpy(np.float64)
    after = _neighbours(opens, interval)
    if len(own) and (own["kind"] == "zero_volume").any():
        own = _zero_volume_runs(own, opens, frame["volume"].to_numpy(np.float64), after)
    rows = [*_jumps(frame, opens, closes, after, jump_sigmas), *_stale(opens, closes, after,
                                                                       stale_candles)]  # fmt: skip
    if not rows:
        return own
    found = pd.DataFrame(
        {
            "open_time": _utc(np.array([r[0] for r in rows], np.int64)),
            "kind": pd.Series([r[1] for r in rows], dtype=object),
            "detail": pd.Series([r[2] for r in rows], dtype=object),
        }
    )
    both = pd.concat([own, found], ignore_index=True) if len(own) else found
    order = both["kind"].map(list(KINDS).index)
    return both.assign(_order=order).sort_values(["open_time", "_order"], kind="stable").drop(
        columns="_order").reset_index(drop=True)  # fmt: skip


def _zero_volume_runs(
    own: pd.DataFrame,
    opens: np.ndarray[Any, Any],
    volumes: np.ndarray[Any, Any],
    after: np.ndarray[Any, Any],
) -> pd.DataFrame:
    """`own` with each zero-volume candle's detail naming its run (grid neighbours, all with
    no volume): a halted market shows as one run, not as unrelated candles."""
    zero = volumes == 0
    begins = zero & ~(np.r_[False, zero[:-1]] & after)
    run = np.cumsum(begins) - 1
    lengths = np.bincount(run[zero])
    first = np.flatnonzero(begins)
    mask = (own["kind"] == "zero_volume").to_numpy()
    at = np.searchsorted(opens, pd.DatetimeIndex(own["open_time"][mask]).as_unit("ms").asi8)
    details = [
        f"no volume traded, 1 of {lengths[r]} in a row from {_iso(int(opens[first[r]]))}"
        if lengths[r] > 1
        else "no volume traded"
        for r in run[at].tolist()
    ]
    detail = own["detail"].to_numpy(dtype=object, copy=True)
    detail[mask] = details
    return own.assign(detail=detail)


def _neighbours(opens: np.ndarray[Any, Any], interval: str) -> np.ndarray[Any, Any]:
    """Whether each candle is the grid slot right after the one before (False for the first):
    slots as `gaps()` numbers them (an off-grid candle counts for the slot it opens in)."""
    slots, _ = _slots(opens, interval)
    return np.concatenate([[False], np.diff(slots) == 1])


def _jumps(
    frame: pd.DataFrame,
    opens: np.ndarray[Any, Any],
    closes: np.ndarray[Any, Any],
    after: np.ndarray[Any, Any],
    sigmas: float,
) -> Iterator[tuple[int, str, str]]:
    """Candles whose close, high or low moved more than `sigmas` robust sigmas from the
    close before: one finding a candle, for the price that moved the most sigmas."""
    before = np.r_[np.nan, closes[:-1]]
    prices = {"close": closes, "high": frame["high"].to_numpy(np.float64),
              "low": frame["low"].to_numpy(np.float64)}  # fmt: skip
    scores = []
    for name, price in prices.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = price / before
            usable = after & np.isfinite(ratio) & (ratio > 0)
            logs = np.log(np.where(usable, ratio, 1.0))
        # A wick is a move one way: a high above the close before, a low below it.
        moves = np.abs(logs) if name == "close" else (logs if name == "high" else -logs).clip(0)
        moves[~usable] = np.nan
        scores.append(moves / _scale(moves))
    score = np.vstack(scores)
    most = np.fmax.reduce(score, axis=0)  # NaN left out; NaN only for a candle with none
    for i in np.flatnonzero(most > sigmas).tolist():
        name = list(prices)[int(np.nanargmax(score[:, i]))]
        price = prices[name][i]
        change = (price / before[i] - 1) * 100
        yield (int(opens[i]), "jump", f"{name} {price} after close {before[i]}: "
               f"{change:+.2f}%, {most[i]:.1f} robust sigmas")  # fmt: skip


def _scale(moves: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each candle's robust sigma of `moves` (NaN: no return): 1.4826 x the median of the
    moves that moved in its block of `_WINDOW` candles (one median a block, not a rolling
    one: a year of 1m in ~10 ms, not ~120), or of the whole series' where fewer than a
    quarter of the block moved; NaN if nothing moved."""
    moved = moves > 0
    if not moved.any():
        return np.full(len(moves), np.nan)
    blocks = -(-len(moves) // _WINDOW)
    padded = np.full(blocks * _WINDOW, np.nan)
    padded[: len(moves)] = np.where(moved, moves, np.nan)  # a stale run is no scale
    # Each block's median of its moves, NaN left out (nanmedian's own way is ~6x slower):
    # sorted, NaN last, the middle of the ones there are.
    ordered = np.sort(padded.reshape(blocks, _WINDOW), axis=1)
    count = np.count_nonzero(~np.isnan(ordered), axis=1)
    rows = np.arange(blocks)
    middle = (ordered[rows, np.maximum(count - 1, 0) // 2] + ordered[rows, count // 2]) / 2
    local = middle * _MAD_SIGMA
    few = count < _WINDOW // 4  # a block that barely moved: its own spike would be its scale
    if few.any():  # the whole series' scale instead (~6 ms a year)
        local[few] = float(np.median(moves[moved])) * _MAD_SIGMA
    scale: np.ndarray[Any, Any] = np.repeat(local, _WINDOW)[: len(moves)]
    return scale


def _stale(
    opens: np.ndarray[Any, Any],
    closes: np.ndarray[Any, Any],
    after: np.ndarray[Any, Any],
    least: int,
) -> Iterator[tuple[int, str, str]]:
    same = np.r_[False, closes[1:] == closes[:-1]] & after
    # Runs of True in `same`: a run of k after candle i is k + 1 candles from i.
    edges = np.diff(np.r_[0, same.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        count = hi - lo + 1
        if count >= least:
            first, last = lo - 1, hi - 1
            yield (int(opens[first]), "stale", f"close {closes[first]} for {count} candles, "
                   f"to {_iso(int(opens[last]))}")  # fmt: skip


def quality(
    read: Callable[[str, str], pd.DataFrame],
    series: Iterable[tuple[str, str]],
    jump_sigmas: float,
    stale_candles: int,
) -> Iterator[tuple[str, str, int, pd.DataFrame]]:
    """Each series' candle count and findings, `read` (a series' frame) one series at a time:
    memory follows the largest series, not the market."""
    for sym, iv in series:
        frame = read(sym, iv)
        found = findings(frame, iv, jump_sigmas, stale_candles)
        found = found.assign(symbol=sym, interval=iv)[_COLUMNS]
        # No candles at all: find_anomalies' empty frame has untyped times.
        yield sym, iv, len(frame), found.astype({"open_time": _UTC_MS})


def summary(counted: list[tuple[str, str, int, pd.DataFrame]]) -> pd.DataFrame:
    """One row per series: symbol, interval, candles, a count per kind, findings (all kinds)."""
    rows = []
    for sym, iv, candles, found in counted:
        per_kind = found["kind"].value_counts()
        rows.append({"symbol": sym, "interval": iv, "candles": candles,
                     **{k: int(per_kind.get(k, 0)) for k in KINDS}})  # fmt: skip
    table = pd.DataFrame(rows, columns=["symbol", "interval", "candles", *KINDS])
    table = table.astype({k: np.int64 for k in ("candles", *KINDS)})
    table["findings"] = table[list(KINDS)].sum(axis=1).astype(np.int64)
    return table


def empty_findings() -> pd.DataFrame:
    """The findings table with no rows."""
    return pd.DataFrame(
        {
            "symbol": pd.Series(dtype=str),
            "interval": pd.Series(dtype=str),
            "open_time": pd.Series(dtype=_UTC_MS),
            "kind": pd.Series(dtype=object),
            "detail": pd.Series(dtype=object),
        }
    )
