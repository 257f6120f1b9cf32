"""Frames from `CandleStore.load()` go as they are into TA-Lib and vectorbt (the `analysis`
extra), with the column names and dtypes `load()` documents.

Real Parquet files under tmp_path; GENERATED candles (`testing.CandleGenerator`, not market
data). pandas-ta is not tested: its PyPI releases need Python >= 3.12 (this package: 3.11).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_market import AUG1, MIN, generated  # tests/ is on sys.path (rootdir, no package)

from streamforge_nb.store.candles import CandleStore

FLOATS = ("open", "high", "low", "close", "volume", "quote_asset_volume",
          "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume")  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    store = CandleStore.open(tmp_path / "store")
    for sym in ("BTCUSDT", "ETHUSDT"):
        store.write(generated(sym, "1m", AUG1, AUG1 + 300 * MIN), sym, "1m")
    return store


def test_load_gives_the_documented_names_and_dtypes(store: CandleStore) -> None:
    one = store.load("BTCUSDT", "1m")
    assert one.index.name == "open_time" and str(one.index.dtype) == "datetime64[ms, UTC]"
    assert {c: str(one[c].dtype) for c in one.columns} == {
        **dict.fromkeys(FLOATS, "float64"),
        "close_time": "datetime64[ms, UTC]",
        "number_of_trades": "int64",
    }
    long = store.load(["BTCUSDT", "ETHUSDT"], "1m", missing="nan")
    assert [str(long[c].dtype) for c in ("symbol", "interval", "status", "filled")] == [
        "category", "category", "category", "bool",
    ]  # fmt: skip
    assert str(long["open_time"].dtype) == "datetime64[ms, UTC]"


def test_talib_reads_a_loaded_frame_as_it_is(store: CandleStore) -> None:
    talib = pytest.importorskip("talib", reason="TA-Lib is in the `analysis` extra")
    from talib import abstract

    frame = store.load("BTCUSDT", "1m")
    # The abstract API looks up lower-case open/high/low/close/volume columns by name.
    atr = abstract.ATR(frame, timeperiod=14)
    assert isinstance(atr, pd.Series) and atr.index.equals(frame.index)
    assert atr.iloc[:14].isna().all() and atr.iloc[14:].notna().all()
    rsi = talib.RSI(frame["close"], timeperiod=14)
    expected = talib.RSI(frame["close"].to_numpy(), timeperiod=14)
    np.testing.assert_allclose(rsi.to_numpy(), expected, equal_nan=True)


def test_vectorbt_backtests_a_wide_frame_as_it_is(store: CandleStore) -> None:
    vbt = pytest.importorskip("vectorbt", reason="vectorbt is in the `analysis` extra")

    closes = store.load(["BTCUSDT", "ETHUSDT"], "1m", how="wide", fields=["close"])["close"]
    fast, slow = vbt.MA.run(closes, 10), vbt.MA.run(closes, 30)
    portfolio = vbt.Portfolio.from_signals(
        closes, fast.ma_crossed_above(slow), fast.ma_crossed_below(slow), freq="1min"
    )
    returns = portfolio.total_return()
    assert list(returns.index.get_level_values("symbol")) == ["BTCUSDT", "ETHUSDT"]
    assert np.isfinite(returns.to_numpy()).all()
    assert portfolio.wrapper.index.equals(closes.index)
