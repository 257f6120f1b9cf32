"""`CoveragePanel`: the store's coverage as a grid of cells; a cell's gaps and their backfill.

    panel = CoveragePanel(store, symbols="*USDT", intervals=["1m", "1h"])
    panel.widget                 # display it: one row per series, one cell per month

A cell is a button coloured by the share of expected candles stored (its tooltip gives the
counts). Clicking it lists the cell's gaps (`CandleStore.gaps`: missing and exchange-empty
windows) and, when some are missing, offers to backfill exactly those windows: Backfill shows
the plan (one candle `Workflow` per missing window, validated, nothing sent), and only
Confirm launches it. Windows the exchange confirmed empty are never asked again; a window
reaching past the last closed candle is cut there.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from streamforge_nb.exceptions import InvalidName, StreamForgeError

if TYPE_CHECKING:
    from streamforge_nb.control.queue import Queue
    from streamforge_nb.store.candles import CandleStore
    from streamforge_nb.workflow.plan import Workflow

__all__ = ["CoveragePanel"]

_CELL = widgets.Layout(width="46px", height="22px", padding="0", margin="1px")
_LABEL = widgets.Layout(width="140px")


def _colour(share: float) -> str:
    """Red (nothing stored) through yellow to green (all stored)."""
    if share >= 1.0:
        return "#2ca02c"
    red, green = (255, int(510 * share)) if share < 0.5 else (int(510 * (1 - share)), 200)
    return f"#{red:02x}{green:02x}40"


class CoveragePanel:
    """A coverage heatmap of cells; a cell's gaps, a backfill planned then confirmed."""

    def __init__(
        self,
        store: CandleStore,
        symbols: Any = None,
        intervals: Any = None,
        *,
        by: str = "month",
        start: Any = None,
        end: Any = None,
        launcher: Any = "local",
        launcher_options: dict[str, Any] | None = None,
        now: datetime | None = None,
        **workflow_options: Any,
    ) -> None:
        self.store = store
        self.coverage = store.coverage(symbols, intervals, by=by, start=start, end=end)
        self.by = by
        self.launcher = launcher
        self.launcher_options = dict(launcher_options or {})
        self.workflow_options = workflow_options
        self.now = now
        self.selected: tuple[str, str, pd.Timestamp] | None = None
        self.gaps = pd.DataFrame()
        self.planned: list[Workflow] = []
        self.queues: list[Queue] = []
        self.cells: dict[tuple[str, str, str], widgets.Button] = {}
        self.gaps_html = widgets.HTML()
        self.plan_html = widgets.HTML()
        self.backfill_button = widgets.Button(description="Backfill", disabled=True)
        self.confirm_button = widgets.Button(
            description="Confirm", button_style="danger", layout=widgets.Layout(display="none")
        )
        self.cancel_button = widgets.Button(
            description="Cancel", layout=widgets.Layout(display="none")
        )
        self.backfill_button.on_click(lambda _: self.plan_backfill())
        self.confirm_button.on_click(lambda _: self.confirm())
        self.cancel_button.on_click(lambda _: self.cancel())
        buttons = widgets.HBox([self.backfill_button, self.confirm_button, self.cancel_button])
        self.widget = widgets.VBox([self._grid(), self.gaps_html, buttons, self.plan_html])

    def _grid(self) -> widgets.Widget:
        frame = self.coverage
        periods = sorted(frame["period"].unique()) if len(frame) else []
        header = widgets.HBox(
            [widgets.Label("", layout=_LABEL)]
            + [widgets.Label(f"{p:%Y-%m}"[2:], layout=_CELL) for p in periods]
        )
        rows = [header]
        for (sym, iv), group in frame.groupby(["symbol", "interval"], sort=False):
            by_period = {p: r for p, r in zip(group["period"], group.itertuples(), strict=True)}
            cells: list[widgets.Widget] = [widgets.Label(f"{sym} {iv}", layout=_LABEL)]
            for period in periods:
                row = by_period.get(period)
                if row is None:
                    cells.append(widgets.Label("", layout=_CELL))
                    continue
                cells.append(self._cell(str(sym), str(iv), period, row))
            rows.append(widgets.HBox(cells))
        return widgets.VBox(rows)

    def _cell(self, symbol: str, interval: str, period: pd.Timestamp, row: Any) -> Any:
        share = row.stored / row.expected if row.expected else 1.0
        button = widgets.Button(
            description=f"{share:.0%}" if share < 1 else "",
            tooltip=(
                f"{symbol} {interval} {period:%Y-%m-%d}: expected {row.expected}, stored "
                f"{row.stored}, missing {row.missing}, exchange-empty {row.exchange_empty}"
            ),
            layout=_CELL,
        )
        button.style.button_color = _colour(share)
        button.on_click(lambda _: self.select(symbol, interval, period))
        self.cells[(symbol, interval, f"{period:%Y-%m-%d}")] = button
        return button

    def _period_end(self, period: pd.Timestamp) -> pd.Timestamp:
        offsets = {"day": pd.DateOffset(days=1), "year": pd.DateOffset(years=1)}
        return period + offsets.get(self.by, pd.DateOffset(months=1))

    def select(self, symbol: str, interval: str, period: pd.Timestamp) -> pd.DataFrame:
        """Show the gaps of one cell (what a click does); return them."""
        self.cancel()
        start, end = period, self._period_end(period)
        self.selected = (symbol, interval, period)
        self.gaps = self.store.gaps(symbol, interval, start, end)
        missing = self.gaps[self.gaps["kind"] == "missing"]
        rows = "".join(
            f"<tr><td>{g.start:%Y-%m-%d %H:%M}</td><td>{g.end:%Y-%m-%d %H:%M}</td>"
            f"<td>{g.missing}</td><td>{html.escape(str(g.kind))}</td></tr>"
            for g in self.gaps.itertuples()
        )
        self.gaps_html.value = (
            f"<b>{html.escape(symbol)} {interval} {period:%Y-%m-%d}</b>: "
            f"{len(self.gaps)} gap(s), {int(missing['missing'].sum())} candles missing"
            + (
                "<table><tr><th>start</th><th>end</th><th>candles</th><th>kind</th></tr>"
                f"{rows}</table>"
                if rows
                else ""
            )
        )
        self.backfill_button.disabled = missing.empty
        return self.gaps

    def plan_backfill(self) -> list[Workflow]:
        """Plan one candle Workflow per missing window of the selected cell; launch nothing.

        A window that cannot be planned (a range the platform refuses) is shown as such."""
        from streamforge_nb.workflow.plan import Workflow
        from streamforge_nb.workflow.ranges import last_closed_end

        if self.selected is None:
            raise InvalidName("select a coverage cell before planning its backfill")
        symbol, interval, _ = self.selected
        closed = pd.Timestamp(last_closed_end(interval, self.now or datetime.now(UTC)))
        planned, lines = [], []
        for gap in self.gaps[self.gaps["kind"] == "missing"].itertuples():
            end = min(gap.end, closed)
            if end <= gap.start:
                lines.append(f"{gap.start:%Y-%m-%d %H:%M}: not closed yet, skipped")
                continue
            span = f"{gap.start.isoformat()}/{end.isoformat()}"
            try:
                wf = Workflow.candles(
                    symbol, interval, span, store=self.store.url, now=self.now,
                    **self.workflow_options,
                )  # fmt: skip
            except StreamForgeError as exc:
                lines.append(f"{html.escape(span)}: refused: {html.escape(str(exc))}")
                continue
            planned.append(wf)
            lines.append(f"{html.escape(wf.plan().queue_id)}: {html.escape(span)}")
        self.planned = planned
        self.plan_html.value = (
            f"<b>Backfill plan</b> ({len(planned)} queue(s), nothing launched until Confirm):"
            "<br>" + "<br>".join(lines)
        )
        shown = widgets.Layout(display="") if planned else widgets.Layout(display="none")
        self.confirm_button.layout, self.cancel_button.layout = shown, widgets.Layout(display="")
        return planned

    def confirm(self) -> list[Queue]:
        """Launch the planned backfill (after `plan_backfill`); return the queues."""
        if not self.planned:
            raise InvalidName("no backfill planned: click Backfill first")
        planned, self.planned = self.planned, []
        launched = [wf.launch(self.launcher, **self.launcher_options) for wf in planned]
        self.queues.extend(launched)
        self.plan_html.value += "<br><b>launched</b>: " + ", ".join(
            html.escape(q.queue_id) for q in launched
        )
        self.confirm_button.layout = widgets.Layout(display="none")
        return launched

    def cancel(self) -> None:
        """Drop a planned backfill; nothing is launched."""
        self.planned = []
        self.plan_html.value = ""
        self.confirm_button.layout = widgets.Layout(display="none")
        self.cancel_button.layout = widgets.Layout(display="none")
