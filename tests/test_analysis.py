"""Candle analysis on small frames whose answers are worked out by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.intervals import interval_ms
from streamforge_nb.store.analysis import (
    find_gaps,
    plot,
    plot_volume_volatility,
    resample,
    volume_volatility,
)
from streamforge_nb.store.base import merge_ranges
from streamforge_nb.store.frames import frame_from_arrays

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
AUG1 = 1_722_470_400_000  # 2024-08-01 00:00 UTC, a Thursday


def frame(open_ms: list[int], step: int = MIN, **columns: list[float]) -> pd.DataFrame:
    """A candle frame: given columns, the rest derived so every column is present."""
    t = np.asarray(open_ms, dtype=np.int64)
    n = len(t)
    close = np.asarray(columns.get("close", np.arange(n) + 2.0), dtype=float)
    open_ = np.asarray(columns.get("open", close - 1), dtype=float)
    volume = np.asarray(columns.get("volume", np.arange(n) + 1.0), dtype=float)
    data = {
        "open": open_,
        "high": np.asarray(columns.get("high", np.maximum(open_, close) + 1), dtype=float),
        "low": np.asarray(columns.get("low", np.minimum(open_, close) - 1), dtype=float),
        "close": close,
        "volume": volume,
        "close_time": t + step - 1,
        "quote_asset_volume": volume * 10,
        "number_of_trades": np.arange(n) + 1,
        "taker_buy_base_asset_volume": volume / 2,
        "taker_buy_quote_asset_volume": volume * 5,
    }
    return frame_from_arrays(t, data)


def utc(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def test_resample_aggregates_ohlcv_by_the_rules() -> None:
    df = frame(
        [AUG1 + i * MIN for i in range(6)],
        open=[1, 2, 3, 4, 5, 6],
        high=[10, 20, 15, 12, 30, 11],
        low=[0.5, 1, 0.25, 2, 3, 1.5],
        close=[2, 3, 4, 5, 6, 7],
        volume=[1, 2, 3, 4, 5, 6],
    )
    out = resample(df, "3m")
    assert out.index.tolist() == [utc(AUG1), utc(AUG1 + 3 * MIN)]
    assert out.index.name == "open_time"
    assert out["open"].tolist() == [1, 4]
    assert out["high"].tolist() == [20, 30]
    assert out["low"].tolist() == [0.25, 1.5]
    assert out["close"].tolist() == [4, 7]
    assert out["volume"].tolist() == [6, 15]
    assert out["quote_asset_volume"].tolist() == [60, 150]
    assert out["number_of_trades"].tolist() == [6, 15]
    assert out["number_of_trades"].dtype == np.int64
    assert out["taker_buy_base_asset_volume"].tolist() == [3, 7.5]
    assert out["close_time"].tolist() == [utc(AUG1 + 3 * MIN - 1), utc(AUG1 + 6 * MIN - 1)]


def test_resample_drops_empty_bins_and_knows_weeks_and_months() -> None:
    t = [AUG1 + i * MIN for i in (0, 1, 2, 6, 7, 8)]
    assert resample(frame(t), "3m").index.tolist() == [utc(AUG1), utc(AUG1 + 6 * MIN)]
    days = frame([AUG1 + i * DAY for i in range(40)], step=DAY)
    weekly = resample(days, "1w")
    # Binance weeks open on Monday: Thursday Aug 1 falls in the week of Monday Jul 29.
    assert weekly.index[0] == pd.Timestamp("2024-07-29", tz="UTC")
    assert weekly["open"].iloc[0] == days["open"].iloc[0]
    assert (weekly.index.day_of_week == 0).all()
    monthly = resample(days, "1M")
    assert monthly.index.tolist() == [
        pd.Timestamp("2024-08-01", tz="UTC"),
        pd.Timestamp("2024-09-01", tz="UTC"),
    ]
    assert monthly["volume"].tolist() == [sum(range(1, 32)), sum(range(32, 41))]
    with pytest.raises(InvalidName, match="resample rule"):
        resample(days, "fortnightly")
    # Multi-day bins count from the epoch, not from the frame's first day.
    three = resample(days, "3d")
    assert all(ts.value // 10**6 // DAY % 3 == 0 for ts in three.index)


def test_plot_draws_candles_over_volume_on_a_shared_utc_axis() -> None:
    df = frame([AUG1 + i * HOUR for i in range(5)], step=HOUR)
    berlin = df.tz_convert("Europe/Berlin")  # shown in UTC whatever the frame's zone
    fig = plot(berlin, title="BTCUSDT 1h")
    assert isinstance(fig, go.Figure)
    candles, volume = fig.data
    assert isinstance(candles, go.Candlestick) and isinstance(volume, go.Bar)
    assert (candles.xaxis, candles.yaxis) == ("x", "y")
    assert (volume.xaxis, volume.yaxis) == ("x2", "y2")  # the second row
    assert fig.layout.yaxis2.domain[1] < fig.layout.yaxis.domain[0]  # volume below
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"
    expected = df.index.tz_convert(None)
    assert pd.DatetimeIndex(candles.x).equals(expected)
    assert pd.DatetimeIndex(volume.x).equals(expected)
    assert "UTC" in fig.layout.xaxis2.title.text
    assert list(candles.open) == df["open"].tolist()
    assert list(volume.y) == df["volume"].tolist()
    assert fig.layout.title.text == "BTCUSDT 1h"
    assert fig.layout.xaxis.rangeslider.visible is False


def test_volume_volatility_on_a_known_frame() -> None:
    # Four days of 6h candles; day k alternates log returns +s, -s; one lone candle on day 5.
    s = [0.01, 0.02, 0.03, 0.04]
    per_candle_volume = [1.0, 2.0, 3.0, 5.0]
    t, open_, close, volume = [], [], [], []
    for day, (sk, vk) in enumerate(zip(s, per_candle_volume, strict=True)):
        for j in range(4):
            t.append(AUG1 + day * DAY + j * 6 * HOUR)
            open_.append(100.0)
            close.append(100.0 * math.exp(sk if j % 2 == 0 else -sk))
            volume.append(vk)
    t.append(AUG1 + 4 * DAY)
    open_.append(100.0)
    close.append(101.0)
    volume.append(50.0)
    df = frame(t, step=6 * HOUR, open=open_, close=close, volume=volume)
    out = volume_volatility(df, window="1d")
    assert out.index.tolist() == [utc(AUG1 + d * DAY) for d in range(5)]
    assert out["candles"].tolist() == [4, 4, 4, 4, 1]
    assert out["volume"].tolist() == [4.0, 8.0, 12.0, 20.0, 50.0]
    assert out["trades"].tolist() == [10, 26, 42, 58, 17]
    assert out["quote_volume"].tolist() == [40.0, 80.0, 120.0, 200.0, 500.0]
    # ddof=1 standard deviation of [s, -s, s, -s] is s * sqrt(4/3).
    np.testing.assert_allclose(out["volatility"].iloc[:4], [x * math.sqrt(4 / 3) for x in s])
    assert math.isnan(out["volatility"].iloc[4])  # one candle: no volatility, not in the stats
    vol = np.array([4.0, 8.0, 12.0, 20.0])
    sig = np.array(s) * math.sqrt(4 / 3)
    assert out.attrs["pearson"] == pytest.approx(np.corrcoef(vol, sig)[0, 1])
    assert out.attrs["spearman"] == pytest.approx(1.0)
    fig = plot_volume_volatility(out)
    assert isinstance(fig.data[0], go.Scatter) and len(fig.data[0].x) == 5
    assert "spearman 1.00" in fig.layout.title.text


def test_volume_volatility_without_enough_windows_has_no_correlation() -> None:
    out = volume_volatility(frame([AUG1 + i * MIN for i in range(10)]), window="1h")
    assert len(out) == 1 and math.isnan(out.attrs["pearson"])


def test_find_gaps_fixed_weekly_and_monthly_grids() -> None:
    t = np.array([AUG1 + i * MIN for i in (0, 1, 4, 5)])
    gaps = find_gaps(t, "1m", AUG1, AUG1 + 8 * MIN)
    assert list(gaps.itertuples(index=False, name=None)) == [
        (utc(AUG1 + 2 * MIN), utc(AUG1 + 4 * MIN), 2, "missing"),
        (utc(AUG1 + 6 * MIN), utc(AUG1 + 8 * MIN), 2, "missing"),
    ]
    assert str(gaps["start"].dtype) == "datetime64[ms, UTC]"
    # A start between grid points begins at the next open time.
    assert find_gaps(t, "1m", AUG1 + 1, AUG1 + 2 * MIN).empty
    # No candles at all: weeks open on Mondays (Jul 29, Aug 5 2024).
    weeks = find_gaps(np.array([], dtype=np.int64), "1w", AUG1, AUG1 + 14 * DAY)
    assert list(weeks.itertuples(index=False, name=None)) == [
        (pd.Timestamp("2024-08-05", tz="UTC"), pd.Timestamp("2024-08-19", tz="UTC"), 2, "missing")
    ]
    months = find_gaps(np.array([AUG1]), "1M", AUG1, AUG1 + 100 * DAY)
    assert months["missing"].tolist() == [3] and months["end"].iloc[0] == pd.Timestamp(
        "2024-12-01", tz="UTC"
    )
    assert interval_ms("1h") == HOUR and interval_ms("1M") is None


def test_find_gaps_splits_gaps_at_exchange_empty_ranges() -> None:
    t = np.array([AUG1 + i * MIN for i in (0, 10, 11, 20)])
    empty = [(AUG1 + 3 * MIN, AUG1 + 5 * MIN), (AUG1 + 5 * MIN, AUG1 + 7 * MIN),  # touching
             (AUG1 + 12 * MIN + 30_000, AUG1 + 30 * MIN)]  # fmt: skip
    gaps = find_gaps(t, "1m", AUG1, AUG1 + 22 * MIN, empty)
    rows = [
        ((s.value // 10**6 - AUG1) // MIN, (e.value // 10**6 - AUG1) // MIN, n, k)
        for s, e, n, k in gaps.itertuples(index=False, name=None)
    ]
    assert rows == [
        (1, 3, 2, "missing"),
        (3, 7, 4, "exchange_empty"),  # two touching ranges: one piece
        (7, 10, 3, "missing"),
        (12, 13, 1, "missing"),  # 12:00 opens before the empty range (12:30) starts
        (13, 20, 7, "exchange_empty"),
        (21, 22, 1, "exchange_empty"),
    ]
    assert gaps["missing"].sum() == 22 - len(t)
    # Months: an empty range over April splits a Feb..May gap.
    months = find_gaps(
        np.array([AUG1]), "1M", AUG1, AUG1 + 100 * DAY, [(AUG1 + 31 * DAY, AUG1 + 61 * DAY)]
    )
    assert months["kind"].tolist() == ["exchange_empty", "missing"]
    assert months["missing"].tolist() == [1, 2]


ranges = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda p: (min(p), max(p))), max_size=8
)


@given(ranges)
def test_merge_ranges_keeps_exactly_the_covered_points(spans: list[tuple[int, int]]) -> None:
    merged = merge_ranges(spans)
    covered = {t for a, b in spans for t in range(a, b)}
    assert {t for a, b in merged for t in range(a, b)} == covered
    # Sorted, non-empty, neither overlapping nor touching: the one canonical form.
    assert all(a < b for a, b in merged)
    assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(merged))
    assert merge_ranges(merged) == merged == merge_ranges(reversed(spans))


@given(st.sets(st.integers(0, 59), max_size=40), ranges)
def test_split_gaps_cover_the_same_candles_labelled_by_the_ranges(
    present: set[int], spans: list[tuple[int, int]]
) -> None:
    times = np.array(sorted(AUG1 + t * MIN for t in present), dtype=np.int64)
    empty = [(AUG1 + a * MIN, AUG1 + b * MIN) for a, b in merge_ranges(spans)]
    gaps = find_gaps(times, "1m", AUG1, AUG1 + 60 * MIN, empty)
    inside = {t for a, b in merge_ranges(spans) for t in range(a, b)}
    kinds: dict[int, str] = {}
    for start, end, count, kind in gaps.itertuples(index=False, name=None):
        slots = range((start.value // 10**6 - AUG1) // MIN, (end.value // 10**6 - AUG1) // MIN)
        assert count == len(slots) > 0
        kinds.update(dict.fromkeys(slots, kind))
    assert set(kinds) == set(range(60)) - present
    assert all((kinds[t] == "exchange_empty") == (t in inside) for t in kinds)
