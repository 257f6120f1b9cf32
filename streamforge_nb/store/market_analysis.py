"""Whole-market views for a notebook: findings of many series, returns and their correlation.

    table, summary = quality_table(store, symbols, "1h", "2024-08-01", "2024-09-01")
    returns = market_returns(store.load(symbols, "1h", start, end, how="wide", fields=["close"]))
    returns.corr()                               # pairwise over the times both have
    plot_correlation(returns.corr())

Holes stay holes: a return spans one interval only, so a missing candle leaves NaN returns
on both sides of it and the correlation uses the pairs both symbols have; nothing is filled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from streamforge_nb.exceptions import InvalidName

if TYPE_CHECKING:
    from streamforge_nb.store.candles import CandleStore

__all__ = ["market_returns", "plot_correlation", "quality_table"]


def quality_table(
    store: CandleStore, symbols: Any, interval: str, start: Any = None, end: Any = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return every finding of `store.quality` over `symbols` (names or a pattern), and a
    summary: one row per series, its `candles`, a count per kind and `findings`
    (`CandleStore.quality_summary` with its default thresholds)."""
    return store.quality_summary(symbols, interval, start, end)


def market_returns(wide: pd.DataFrame, field: str = "close") -> pd.DataFrame:
    """Log returns per symbol from a wide `load(..., how="wide")` frame (a column per
    symbol); a return next to a missing candle is NaN, never bridged over the hole."""
    if not isinstance(wide, pd.DataFrame) or not isinstance(wide.columns, pd.MultiIndex):
        raise InvalidName("market_returns needs a wide frame: store.load(..., how='wide')")
    if field not in wide.columns.get_level_values("field"):
        raise InvalidName(f"the wide frame has no {field!r} columns: add it to fields")
    prices = wide[field]
    # A return is between neighbouring slots of the grid: a row after a gap is not one.
    step = pd.Series(wide.index, index=wide.index).diff()
    usual = step.mode().iloc[0] if step.notna().any() else None
    ratio: pd.DataFrame = np.log(prices / prices.shift(1))
    if usual is not None:
        ratio[(step != usual).to_numpy()] = np.nan
    ratio.columns.name = "symbol"
    return ratio


def plot_correlation(corr: pd.DataFrame, title: str | None = None) -> Any:
    """Return a plotly heatmap of a symbols x symbols correlation matrix."""
    import plotly.graph_objects as go

    if not isinstance(corr, pd.DataFrame) or list(corr.index) != list(corr.columns):
        raise InvalidName("plot_correlation needs a square correlation frame (returns.corr())")
    fig = go.Figure(
        go.Heatmap(
            z=corr.to_numpy(), x=list(corr.columns), y=list(corr.index), zmin=-1, zmax=1,
            colorscale="RdBu", colorbar={"title": "corr"},
        )
    )  # fmt: skip
    fig.update_layout(title=title or "correlation of log returns")
    fig.update_yaxes(autorange="reversed")
    return fig
