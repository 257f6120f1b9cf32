"""candle_analysis.ipynb over a 20-symbol market, executed by papermill against a real
embedded store; and the market helpers it calls.

GENERATED candles (`testing.CandleGenerator`, not market data)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import papermill
import pytest
from test_market import AUG1, MIN, generated  # tests/ is on sys.path (rootdir, no package)

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.manifest import recorded
from streamforge_nb.store.market_analysis import market_returns, quality_table
from streamforge_nb.workflow.targets import notebook_path

HOUR = 60 * MIN
SYMBOLS = [f"S{i:02d}USDT" for i in range(20)]
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture
def market(tmp_path: Path) -> CandleStore:
    """20 symbols x 3 days of 1h; S03 lacks 5 hours, S07 has a zero-volume candle."""
    store = CandleStore.open(tmp_path / "store")
    for sym in SYMBOLS:
        frame = generated(sym, "1h", AUG1, AUG1 + 72 * HOUR)
        if sym == "S03USDT":
            frame = frame.drop(frame.index[30:35])
        if sym == "S07USDT":
            frame.iloc[10, frame.columns.get_loc("volume")] = 0.0
        store.write(frame, sym, "1h")
    return store


def test_quality_table_and_returns_keep_holes_as_holes(market: CandleStore) -> None:
    findings, summary = quality_table(market, "S0*", "1h", AUG1, AUG1 + 72 * HOUR)
    assert len(summary) == 10 and summary.set_index("symbol").loc["S07USDT", "findings"] >= 1
    assert "S07USDT" in set(findings["symbol"])
    wide = market.load(SYMBOLS, "1h", how="wide", fields=["close"])
    returns = market_returns(wide)
    assert list(returns.columns) == SYMBOLS and len(returns) == 72
    hole = returns["S03USDT"]
    # Hours 30..34 are missing: no return into them, none out of them (hour 35), none bridged.
    assert hole.iloc[30:36].isna().all() and hole.iloc[1:30].notna().all()
    assert returns["S04USDT"].iloc[1:].notna().all()
    with pytest.raises(InvalidName, match="wide frame"):
        market_returns(market.load("S04USDT", "1h"))


def plotly_array(value: Any) -> np.ndarray[Any, Any]:
    """A plotly JSON array: a list, or plotly 6's typed form (base64 `bdata`, dtype, shape)."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = [int(n) for n in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape).astype(float)
    return np.asarray(value, dtype=float)


def test_candle_analysis_notebook_analyses_a_20_symbol_market(
    market: CandleStore, tmp_path: Path
) -> None:
    output = tmp_path / "analysis.ipynb"
    papermill.execute_notebook(
        str(notebook_path("candle_analysis.ipynb")), str(output),
        parameters={
            "symbol": "S03USDT", "symbols": SYMBOLS, "interval": "1h",
            "start": "2024-08-01", "end": "2024-08-04", "store_url": market.url,
            "resample_rule": None, "coverage_by": "day",
        },
        kernel_name="python3", progress_bar=False, execution_timeout=300,
    )  # fmt: skip
    cells = nbformat.read(output, as_version=4).cells
    outputs = [o for c in cells if c.cell_type == "code" for o in c.outputs]
    texts = "".join(o.get("text", "") for o in outputs)
    assert "coverage of 20 series: 5 candles missing" in texts
    assert "in 20 series (the stored data is unchanged)" in texts
    assert "20 symbols x 72 returns" in texts
    charts = [o["data"][PLOTLY] for o in outputs if PLOTLY in o.get("data", {})]
    kinds = [c["data"][0]["type"] for c in charts]
    assert kinds.count("heatmap") == 2 and "candlestick" in kinds  # coverage, correlation
    correlation = charts[-1]["data"][0]
    z = plotly_array(correlation["z"])
    assert z.shape == (20, 20) and np.allclose(np.diag(z), 1.0)
    (manifest,) = recorded(output)
    assert len(manifest.series) == 20 and manifest.total_rows == 20 * 72 - 5
    assert market.verify(manifest).ok
