"""`BatchPanel`: an ipywidgets view of a `Batch` (what `Batch.panel()` shows).

One row per queue (status, records, rate, error), a summary line, Stop behind a
confirmation (stops launching and sends `stop` to every running queue), and, for a queue
picked from the list, its own `QueuePanel` and a candlestick chart of what the store holds.

Threads as in `ui.panel`: clicks only start an action; Stop and the chart's store read run in
a short-lived action thread (`wait()` blocks until it is done); a refresh thread re-reads
`Batch.status()` every `refresh_s`. Background threads only assign widget values.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from streamforge_nb.control.telemetry import printable
from streamforge_nb.ui.actions import PanelActions
from streamforge_nb.ui.panel import _STATUS_COLOURS

if TYPE_CHECKING:
    import pandas as pd

    from streamforge_nb.workflow.batch import Batch

__all__ = ["BatchPanel"]

_MOST_ROWS = 200  # a big batch shows its unfinished queues first, then this many in all


class _BatchBox(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no type hints
    """The panel's top-level VBox: closing it closes the whole panel."""

    def __init__(self, panel: BatchPanel, children: list[Any]) -> None:
        super().__init__(children)
        self._panel = panel

    def close(self) -> None:
        self._panel.close()


class BatchPanel(PanelActions):
    """Watch and stop a batch's queues; open any queue's panel and chart. Display `.widget`."""

    def __init__(self, batch: Batch, *, refresh_s: float = 2.0, stop_timeout: float = 30.0):
        self.batch = batch
        self.refresh_s = refresh_s
        self.stop_timeout = stop_timeout
        self.frame: pd.DataFrame | None = None
        self._init_actions(batch.batch_id)
        self._queue_panels: list[Any] = []

        plan = batch.plan()
        self.title = widgets.HTML(
            f"<b>Batch</b> <code>{html.escape(batch.batch_id)}</code>: {len(plan.shards):,} "
            f"queues, {plan.candles:,} candles at most"
        )
        self.summary = widgets.Label("")
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger")
        self.confirm_button = widgets.Button(description="Confirm stop", button_style="danger")
        self.cancel_button = widgets.Button(description="Cancel")
        self.confirm_box = widgets.HBox(
            [self.confirm_button, self.cancel_button], layout=widgets.Layout(display="none")
        )
        self.message = widgets.Label("")
        self.table = widgets.HTML("<i>reading queue state…</i>")
        self.picker = widgets.Dropdown(
            options=[s.queue_id for s in plan.shards], description="Queue",
            layout=widgets.Layout(width="34em"),
        )  # fmt: skip
        self.panel_button = widgets.Button(description="Queue panel", icon="tasks")
        self.chart_button = widgets.Button(description="Chart", icon="line-chart")
        self.lag_button = widgets.Button(description="Lag", icon="hourglass-half")
        self.lag_view = widgets.HTML("")
        self.detail = widgets.VBox([])
        self.chart = widgets.Output(layout=widgets.Layout(min_height="20px"))
        self._parts = [
            self.title, self.summary, widgets.HBox([self.stop_button, self.confirm_box]),
            self.message, self.table, widgets.HBox([self.lag_button]), self.lag_view,
            widgets.HBox([self.picker, self.panel_button, self.chart_button]),
            self.detail, self.chart,
        ]  # fmt: skip
        self.widget = _BatchBox(self, self._parts)

        self.stop_button.on_click(lambda _b: self._confirming(True))
        self.cancel_button.on_click(lambda _b: self._confirming(False))
        self.confirm_button.on_click(lambda _b: self._confirm_stop())
        self.panel_button.on_click(lambda _b: self.show_queue(self.picker.value))
        self.chart_button.on_click(lambda _b: self._start("chart", self._chart))
        self.lag_button.on_click(lambda _b: self._start("lag", self._lag))
        self._refresher = threading.Thread(
            target=self._refresh_loop, name=f"panel-{batch.batch_id}-refresh", daemon=True
        )
        self._refresher.start()

    def __repr__(self) -> str:
        return f"BatchPanel({self.batch.batch_id!r})"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- actions -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the batch's status and re-render the table and summary."""
        frame = self.batch.status()
        counts = frame["status"].value_counts().to_dict()
        text = (
            f"{int(frame['records_written'].sum()):,} of {int(frame['candles'].sum()):,} "
            "candles; "
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + ("; launching" if self.batch.launching else "")
        )
        table = _table(frame)
        with self._lock:
            if self._closed.is_set():
                return
            self.frame = frame
            self.summary.value = text
            self.table.value = table

    def show_queue(self, queue_id: str) -> Any:
        """Show (and return) the `QueuePanel` widget of one of the batch's queues."""
        widget = self.batch.queue(queue_id).panel()
        with self._lock:
            self._queue_panels.append(widget)
            if not self._closed.is_set():
                self.detail.children = (widget,)
        return widget

    def _set_busy(self, busy: bool, message: str | None = None) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self.stop_button.disabled = self.chart_button.disabled = busy
            self.lag_button.disabled = busy
            if message is not None:
                self.message.value = message

    def _failed(self, name: str, exc: Exception) -> None:
        self._say(f"{name} failed: {type(exc).__name__}: {exc}")

    def _confirming(self, show: bool) -> None:
        self.confirm_box.layout.display = None if show else "none"
        self.stop_button.disabled = show

    def _confirm_stop(self) -> None:
        self._confirming(False)
        self._start("stop", self._stop)

    def _stop(self) -> None:
        results = self.batch.stop(timeout=self.stop_timeout)
        self._say(f"launching stopped; stop sent to {len(results)} running queue(s)")
        self.refresh()

    def _chart(self) -> None:
        from streamforge_nb.store.analysis import plot, resample
        from streamforge_nb.store.candles import CandleStore
        from streamforge_nb.ui.launch_panel import chart_bundle

        shard = next(s for s in self.batch.plan().shards if s.queue_id == self.picker.value)
        plan = next(w.plan() for w in self.batch.workflows if w.plan().queue_id == shard.queue_id)
        with CandleStore.open(self.batch.store_url, settings=self.batch.settings) as store:
            frame = store.load(plan.symbol, plan.interval, plan.time_range.start,
                               plan.time_range.end)  # fmt: skip
        if not len(frame):
            self._say(f"nothing stored yet for {shard.queue_id}")
            return
        shown = resample(frame, "15min") if plan.interval in ("1s", "1m") else frame
        figure = plot(shown, title=f"{plan.symbol} {plan.interval}: {len(frame):,} candles")
        with self._lock:
            if not self._closed.is_set():
                self.chart.outputs = (chart_bundle(figure, f"{len(frame)} candles"),)
        self._say(f"{len(frame):,} candles of {shard.queue_id}")

    def _lag(self) -> None:
        """Show each queue's lag sparkline and its groups' judgement (`Batch.lag_status`)."""
        from streamforge_nb.control.lag import judge_queues
        from streamforge_nb.ui.operate import lag_sparklines

        frame = self.batch.lag(live=True)
        lines = lag_sparklines(frame, by="queue_id")
        judged = judge_queues(frame)
        rows = "".join(
            f"<tr><td><code>{html.escape(str(row['queue_id']))}</code></td>"
            f"<td>{html.escape(row['status'])}</td>"
            f"<td style='font-family:monospace'>"
            f"{html.escape(lines.get(str(row['queue_id']), ''))}</td>"
            f"<td>{html.escape(str(row['why']))}</td></tr>"
            for _group, row in judged.iterrows()
        )
        text = ("<table><tr><th>queue</th><th>lag</th><th>over time</th><th>why</th></tr>"
                f"{rows}</table>") if rows else "<i>no lag sample yet</i>"  # fmt: skip
        with self._lock:
            if not self._closed.is_set():
                self.lag_view.value = text
        self._say(f"lag of {len(judged)} sink group(s)")

    def _say(self, text: str) -> None:
        with self._lock:
            if not self._closed.is_set():
                self.message.value = text

    def _refresh_loop(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception as exc:  # shown, not raised: a thread has no one to raise to
                self._say(f"refresh failed: {type(exc).__name__}: {exc}")
            if self._closed.wait(self.refresh_s):
                return

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """End the refresh, close the queue panels it opened and its widgets (idempotent)."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        for thread in (self._refresher, self._action):
            if thread is not None and thread is not threading.current_thread():
                thread.join(self.stop_timeout + 15)
        for widget in self._queue_panels:
            widget.close()
        for part in self._parts:
            for child in getattr(part, "children", ()):
                child.close()
            part.close()
        widgets.VBox.close(self.widget)


def _table(frame: pd.DataFrame) -> str:
    """Render the batch's status, unfinished queues first."""
    columns = [("queue", "left"), ("symbol", "left"), ("interval", "left"),
               ("range", "left"), ("status", "left"), ("records", "right"),
               ("rate/s", "right"), ("error", "left")]  # fmt: skip
    head = "".join(f"<th style='text-align:{a};padding:0 8px'>{h}</th>" for h, a in columns)
    order = frame.assign(_done=frame["status"].isin(["finished", "waiting"]))
    shown = order.sort_values("_done", kind="stable").head(_MOST_ROWS)
    cell = "<td style='padding:0 8px'>{}</td>"
    right = "<td style='padding:0 8px;text-align:right'>{}</td>"
    rows = "".join(
        "<tr>"
        + cell.format(f"<code>{html.escape(str(qid))}</code>")
        + cell.format(html.escape(str(row.symbol)))
        + cell.format(html.escape(str(row.interval)))
        + cell.format(html.escape(str(row.time_range)))
        + f"<td style='padding:0 8px;color:{_STATUS_COLOURS.get(str(row.status), 'inherit')}'>"
        + f"{html.escape(str(row.status))}</td>"
        + right.format(f"{int(row.records_written):,}")
        + right.format(f"{float(row.rate):,.0f}")
        + cell.format(html.escape(printable(str(row.error or ""), 200)))
        + "</tr>"
        for qid, row in shown.iterrows()
    )
    more = len(frame) - len(shown)
    tail = f"<tr><td colspan=8><i>… {more:,} more</i></td></tr>" if more > 0 else ""
    return f"<table><tr>{head}</tr>{rows}{tail}</table>"
