"""Candle analysis for notebooks: resampling, gaps, charts, volume against volatility.

Every function takes a candle frame as `CandleStore.load` returns it (UTC `DatetimeIndex`
named `open_time`, float64 prices and volumes) and never changes it. Rules and windows are
Binance intervals (`1m`, `1h`, `1d`, `1w`, `1M`...) or any pandas offset alias.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import numpy as np
import pandas as pd

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.anomalies import (
    ANOMALIES,
    anomaly_masks,
    expected_close_ms,
    grid_floor_ms,
)
from streamforge_nb.platform.intervals import INTERVALS, WEEK_OFFSET_MS, interval_ms

__all__ = [
    "find_anomalies",
    "find_gaps",
    "plot",
    "plot_coverage",
    "plot_volume_volatility",
    "resample",
    "volume_volatility",
]


# Binance interval -> pandas rule. Weeks start on Monday; months on the 1st (calendar).
_RULES = {iv: f"{iv[:-1]}{'min' if iv[-1] == 'm' else iv[-1]}" for iv in INTERVALS}
_RULES.update({"1d": "1D", "3d": "3D", "1w": "W-MON", "1M": "MS"})

# How each column aggregates when candles merge into longer ones.
_AGG = {
    "open": "first",
    "high": "max",
    "low": "min",
    "close": "last",
    "volume": "sum",
    "close_time": "last",
    "quote_asset_volume": "sum",
    "number_of_trades": "sum",
    "taker_buy_base_asset_volume": "sum",
    "taker_buy_quote_asset_volume": "sum",
}


def _aggregate(obj: pd.DataFrame | pd.Series, rule: str, how: Any) -> Any:
    """Resample `obj` to `rule` in UTC bins and aggregate with `how`."""
    pandas_rule = _RULES.get(rule, rule)
    # Left-closed, left-labelled bins, as candles are labelled by their open time; fixed
    # lengths count from the epoch, so bins do not move with the frame's first row.
    kwargs: dict[str, Any] = {"closed": "left", "label": "left"}
    if pandas_rule not in ("W-MON", "MS"):
        kwargs["origin"] = "epoch"
    index = pd.DatetimeIndex(obj.index)
    # Naive UTC: pandas ignores `origin` for day multiples on tz-aware indexes.
    naive = obj.set_axis(index.tz_convert(UTC).tz_localize(None) if index.tz else index)
    try:
        out = naive.resample(pandas_rule, **kwargs).agg(how)
    except (ValueError, TypeError) as exc:
        raise InvalidName(f"invalid resample rule {rule!r}: {exc}") from None
    out.index = pd.DatetimeIndex(out.index).tz_localize(UTC)
    return out


def resample(df: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Aggregate candles to `rule`: open first, high max, low min, close last, volumes sum.

    Bins without candles are dropped (a gap stays a gap); columns other than the candle
    fields are dropped too.
    """
    agg = {col: how for col, how in _AGG.items() if col in df.columns}
    if not agg:
        raise InvalidName(f"resample needs candle columns ({', '.join(_AGG)})")
    out = _aggregate(df[list(agg)], rule, agg)
    counts = _aggregate(df[next(iter(agg))], rule, "count")
    out = out[counts.to_numpy() > 0]
    if "number_of_trades" in out.columns:
        out["number_of_trades"] = out["number_of_trades"].astype(np.int64)
    out.index.name = "open_time"
    return out


def _slots(times: np.ndarray[Any, Any], interval: str) -> tuple[np.ndarray[Any, Any], Any]:
    """Map ms open times to slot numbers; return (slots, slot -> ms function).

    A candle off the grid (Binance served 20,400 shifted minutes in December 2017) counts for
    the slot it opens in: the exchange has nothing else for it, so it is no hole to backfill.
    """
    step = interval_ms(interval)
    if step is None:  # months: slot = months since 1970-01
        slots = times.view("M8[ms]").astype("M8[M]").astype(np.int64)

        def month_ms(s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            return np.asarray(s, dtype=np.int64).astype("M8[M]").astype("M8[ms]").astype(np.int64)

        return slots, month_ms
    phase = WEEK_OFFSET_MS if interval == "1w" else 0
    # The exchange's grid; a frame made by hand on another phase keeps its own.
    if len(times) and not ((times - phase) % step == 0).any():
        phase = int(times[0] % step)
    slots = (times - phase) // step

    def fixed_ms(s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(s, dtype=np.int64) * step + phase

    return slots, fixed_ms


def _first_slot_at_or_after(ms: int, interval: str, to_ms: Any) -> int:
    step = interval_ms(interval)
    if step is None:
        month = int(np.datetime64(ms, "ms").astype("M8[M]").astype(np.int64))
        return month if int(to_ms(np.array([month]))[0]) >= ms else month + 1
    phase = int(to_ms(np.array([0]))[0])
    return -((phase - ms) // step)  # ceil((ms - phase) / step)


def find_gaps(
    times_ms: np.ndarray[Any, Any],
    interval: str,
    start_ms: int,
    end_ms: int,
    exchange_empty: Sequence[tuple[int, int]] = (),
) -> pd.DataFrame:
    """Return the missing candles in `[start_ms, end_ms)` as ranges.

    Columns: `start` (first missing open time), `end` (exclusive: the open time after the
    last missing one), `missing` (candles), `kind`: `exchange_empty` for candles opening inside
    one of the `exchange_empty` ms ranges (the exchange confirmed it has none), else `missing`;
    a gap partly inside such a range is split. The grid is the interval's length (calendar
    months for `1M`), in phase with the stored candles (Monday for `1w` when none are).
    """
    times = np.asarray(times_ms, dtype=np.int64)
    times = times[(times >= start_ms) & (times < end_ms)]
    slots, to_ms = _slots(times, interval)
    first = _first_slot_at_or_after(start_ms, interval, to_ms)
    stop = _first_slot_at_or_after(end_ms, interval, to_ms)  # exclusive
    present = np.unique(slots)
    bounds = np.concatenate([[first - 1], present, [max(stop, first)]])
    holes = np.flatnonzero(np.diff(bounds) > 1)
    gap_start = bounds[holes] + 1
    gap_end = bounds[holes + 1]
    kinds = np.full(len(gap_start), MISSING, dtype=object)
    if len(exchange_empty) and len(gap_start):

        def slot(ms: int) -> int:
            return _first_slot_at_or_after(ms, interval, to_ms)

        empty = [(slot(a), slot(b)) for a, b in exchange_empty]
        gap_start, gap_end, kinds = _split(gap_start, gap_end, [e for e in empty if e[1] > e[0]])
    return pd.DataFrame(
        {
            "start": _utc(to_ms(gap_start)),
            "end": _utc(to_ms(gap_end)),
            "missing": (gap_end - gap_start).astype(np.int64),
            "kind": pd.Series(kinds, dtype=object),
        }
    )


MISSING = "missing"
EXCHANGE_EMPTY = "exchange_empty"


_PRICES_AND_VOLUME = ("open", "high", "low", "close", "volume")


def find_anomalies(df: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Return one row per anomaly of the candles in `df` (see `platform.anomalies`).

    Columns: `open_time`, `kind`, `detail` (what makes it odd), ordered by time then kind.
    Findings never change the data: each candle is what the exchange served.
    """
    columns = ["open_time", "kind", "detail"]
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    opens = pd.DatetimeIndex(df.index).as_unit("ms").asi8
    closes = pd.DatetimeIndex(df["close_time"]).as_unit("ms").asi8
    o, h, lo, c, v = (df[f].to_numpy(np.float64) for f in _PRICES_AND_VOLUME)
    masks = anomaly_masks(interval, opens, closes, o, h, lo, c, v)
    rows = []
    for kind, mask in masks.items():
        for i in np.flatnonzero(mask).tolist():
            rows.append((int(opens[i]), kind, _detail(kind, interval, opens[i], closes[i], df, i)))
    rows.sort(key=lambda row: (row[0], list(ANOMALIES).index(row[1])))
    return pd.DataFrame(
        {
            "open_time": _utc(np.asarray([r[0] for r in rows], dtype=np.int64)),
            "kind": pd.Series([r[1] for r in rows], dtype=object),
            "detail": pd.Series([r[2] for r in rows], dtype=object),
        }
    )


def _detail(kind: str, interval: str, open_ms: int, close_ms: int, df: pd.DataFrame, i: int) -> str:
    if kind == "close_time":
        expected = int(expected_close_ms(np.array([open_ms]), interval)[0])
        return f"closes at {_iso(close_ms)}, {(close_ms - expected) / 1000:+.3f} s from {interval}"
    if kind == "off_grid":
        slot = int(grid_floor_ms(np.array([open_ms]), interval)[0])
        return f"opens {(open_ms - slot) / 1000:.3f} s into the {interval} slot at {_iso(slot)}"
    row = df.iloc[i]
    if kind == "ohlc":
        low, high = row["low"], row["high"]
        return f"open {row['open']} close {row['close']} outside low {low} .. high {high}"
    if kind == "flat":
        return f"every price {row['close']}"
    return str(ANOMALIES[kind])


def _iso(ms: int) -> str:
    return str(pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat())


def _split(
    starts: np.ndarray[Any, Any], ends: np.ndarray[Any, Any], empty: list[tuple[int, int]]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Cut slot ranges `[starts, ends)` at the edges of `empty` (disjoint); label each piece."""
    empty = sorted(empty)
    cuts = sorted({edge for pair in empty for edge in pair})
    firsts = [a for a, _ in empty]
    pieces: list[tuple[int, int, str]] = []
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        inner = cuts[bisect.bisect_right(cuts, lo) : bisect.bisect_left(cuts, hi)]
        for a, b in itertools.pairwise([lo, *inner, hi]):
            # No edge inside [a, b): it lies wholly inside an empty range or wholly outside.
            k = bisect.bisect_right(firsts, a) - 1
            kind = EXCHANGE_EMPTY if k >= 0 and b <= empty[k][1] else MISSING
            if pieces and pieces[-1][2] == kind and pieces[-1][1] == a:
                pieces[-1] = (pieces[-1][0], b, kind)  # touching empty ranges: one piece
            else:
                pieces.append((a, b, kind))
    return (
        np.asarray([p[0] for p in pieces], dtype=np.int64),
        np.asarray([p[1] for p in pieces], dtype=np.int64),
        np.asarray([p[2] for p in pieces], dtype=object),
    )


def _utc(ms: np.ndarray[Any, Any]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(ms, dtype=np.int64).view("M8[ms]")).tz_localize("UTC")


def plot(df: pd.DataFrame, title: str | None = None) -> Any:
    """Return a plotly Figure: candlesticks above, volume bars below, one shared UTC time axis.

    Resample long ranges first (`resample(df, "1h")`): a browser draws ~100k candles at most.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    # plotly draws wall-clock times and drops offsets: hand it naive UTC and say so.
    x = pd.DatetimeIndex(df.index).tz_convert("UTC").tz_localize(None)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.75, 0.25]
    )
    fig.add_trace(
        go.Candlestick(
            x=x,
            open=df["open"],
            high=df["high"],
            low=df["low"],
            close=df["close"],
            name="price",
        ),
        row=1,
        col=1,
    )
    rising = (df["close"] >= df["open"]).to_numpy()
    colors = np.where(rising, "#26a69a", "#ef5350")
    fig.add_trace(go.Bar(x=x, y=df["volume"], marker_color=colors, name="volume"), row=2, col=1)
    fig.update_layout(title=title, showlegend=False, xaxis_rangeslider_visible=False)
    fig.update_xaxes(type="date")
    fig.update_xaxes(title_text="open time (UTC)", row=2, col=1)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="volume", row=2, col=1)
    return fig


def volume_volatility(df: pd.DataFrame, window: str = "1d") -> pd.DataFrame:
    """Relate traded volume to price volatility, one row per `window` (default a day).

    Per window: `volatility` is the standard deviation (ddof 1, not annualised) of the
    candles' log returns ln(close/open) (within-candle, so a gap between candles adds no
    spurious jump); `volume`, `quote_volume` and `trades` are sums; `candles` counts them.
    Windows with fewer than two candles have no volatility (NaN).
    `result.attrs` holds `pearson` and `spearman`: the correlation of volume and volatility
    over the windows that have both (NaN with fewer than three).
    """
    log_ret = np.log(df["close"] / df["open"])
    parts = {
        "volatility": _aggregate(log_ret, window, "std"),  # ddof=1
        "volume": _aggregate(df["volume"], window, "sum"),
        "candles": _aggregate(df["close"], window, "count"),
    }
    if "quote_asset_volume" in df.columns:
        parts["quote_volume"] = _aggregate(df["quote_asset_volume"], window, "sum")
    if "number_of_trades" in df.columns:
        parts["trades"] = _aggregate(df["number_of_trades"], window, "sum").astype(np.int64)
    out = pd.DataFrame(parts)
    out = out[out["candles"] > 0]
    out.index.name = "open_time"
    both = out[["volume", "volatility"]].dropna()
    enough = len(both) >= 3
    ranks = both.rank()  # Spearman is Pearson on ranks; pandas would need scipy for it
    for method, data in (("pearson", both), ("spearman", ranks)):
        value = data["volume"].corr(data["volatility"]) if enough else np.nan
        out.attrs[method] = float(value)
    out.attrs["window"] = window
    return out


def plot_volume_volatility(result: pd.DataFrame, title: str | None = None) -> Any:
    """Return a scatter of volume against volatility per window, correlations in the title."""
    import plotly.graph_objects as go

    x = pd.DatetimeIndex(result.index).tz_convert("UTC").tz_localize(None)
    fig = go.Figure(
        go.Scatter(
            x=result["volume"],
            y=result["volatility"],
            mode="markers",
            text=[f"{t:%Y-%m-%d %H:%M} UTC" for t in x],
            name="windows",
        )
    )
    pearson, spearman = result.attrs.get("pearson"), result.attrs.get("spearman")
    heading = title or f"volume vs volatility per {result.attrs.get('window', 'window')}"
    if pearson is not None:
        heading += f" (pearson {pearson:.2f}, spearman {spearman:.2f})"
    fig.update_layout(title=heading, xaxis_title="volume", yaxis_title="volatility (log returns)")
    return fig


def plot_coverage(frame: pd.DataFrame, title: str | None = None) -> Any:
    """Return a plotly heatmap of `coverage(by=...)`: a row per series, a column per period.

    A cell's colour is the share of expected candles stored (exchange-empty ones count as
    complete: the exchange has none); hovering shows expected, stored, missing and
    exchange-empty counts. Red cells are what a backfill would fetch.
    """
    import plotly.graph_objects as go

    needed = {"symbol", "interval", "period", "expected", "stored", "missing", "exchange_empty"}
    if not needed <= set(frame.columns):
        raise InvalidName("plot_coverage needs a frame from store.coverage(by=...)")
    rows = list(dict.fromkeys(zip(frame["symbol"], frame["interval"], strict=True)))
    periods = sorted(frame["period"].unique())
    row_at = {r: i for i, r in enumerate(rows)}
    col_at = {p: i for i, p in enumerate(periods)}
    share = np.full((len(rows), len(periods)), np.nan)
    text = np.full((len(rows), len(periods)), "", dtype=object)
    for sym, iv, period, expected, stored, missing, empty in frame[
        ["symbol", "interval", "period", "expected", "stored", "missing", "exchange_empty"]
    ].itertuples(index=False, name=None):
        i, j = row_at[(sym, iv)], col_at[period]
        share[i, j] = 1.0 - missing / expected if expected else np.nan
        text[i, j] = f"expected {expected:,}<br>stored {stored:,}<br>missing {missing:,}" + (
            f"<br>exchange-empty {empty:,}"
        )
    x = pd.DatetimeIndex(periods).tz_convert("UTC").tz_localize(None)
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=x,
            y=[f"{sym} {iv}" for sym, iv in rows],
            text=text,
            hovertemplate="%{y} %{x}<br>%{text}<extra></extra>",
            zmin=0,
            zmax=1,
            colorscale=[[0, "#ef5350"], [0.999, "#fff59d"], [1, "#26a69a"]],
            colorbar={"title": "stored"},
        )
    )
    fig.update_layout(title=title or "coverage (share of expected candles stored)")
    fig.update_xaxes(title_text="period (UTC)")
    fig.update_yaxes(autorange="reversed")
    return fig
