"""`LaunchPanel`: launch a candle workflow from widgets and watch it, with a live chart.

Inputs for symbol, interval and time range, and a Launch button. Invalid input shows an
inline error and launches nothing (the Workflow validates before any side effect). After a
launch: a progress bar of candles stored, the queue's `QueuePanel` (per-producer status,
Ping and Stop), and a candlestick chart re-read from the store while the sink writes.

The chart is an `Output` widget whose `outputs` are replaced whole with a plotly mime bundle:
it renders offline (the plotly extension Voila and JupyterLab serve locally), and assigning a
trait is allowed from a thread, where `with out:` or `clear_output()` is not (ipywidgets 8).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import threading
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.telemetry import ended
from streamforge_nb.exceptions import StreamForgeError
from streamforge_nb.platform.intervals import INTERVALS, interval_ms
from streamforge_nb.settings import Settings
from streamforge_nb.store.analysis import plot, resample
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.workflow.plan import Workflow

__all__ = ["LaunchPanel", "chart_bundle"]


def chart_bundle(figure: Any, text: str) -> dict[str, Any]:
    """Return a display-data output holding `figure` as plotly's mime type."""
    return {
        "output_type": "display_data",
        "data": {
            "application/vnd.plotly.v1+json": json.loads(figure.to_json()),
            "text/plain": text,
        },
        "metadata": {},
    }


class LaunchPanel:
    """Launch `Workflow.candles(...)` from a form, then watch the queue it started."""

    def __init__(
        self,
        *,
        symbol: str = "BTCUSDT",
        interval: str = "1m",
        time_range: str | None = None,
        source: str = "api",
        base_url: str | None = None,
        archives: Sequence[str] = (),
        store: str | None = None,
        launcher: str = "local",
        settings: Settings | None = None,
        refresh_s: float = 2.0,
        **launcher_options: Any,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.store_url = store or self.settings.arango_url
        self.workflow_options: dict[str, Any] = {
            "source": source, "base_url": base_url, "archives": list(archives),
            "store": self.store_url, "settings": self.settings,
        }  # fmt: skip
        self.launcher, self.launcher_options = launcher, launcher_options
        self.refresh_s = refresh_s
        self.queue: Queue | None = None
        self.workflow: Workflow | None = None
        self._closed = threading.Event()
        self._refresher: threading.Thread | None = None

        today = dt.datetime.now(dt.UTC).date()
        self.symbol = widgets.Text(value=symbol, description="Symbol")
        self.interval = widgets.Dropdown(
            options=list(INTERVALS), value=interval, description="Interval"
        )
        self.time_range = widgets.Text(
            value=time_range or f"{today - dt.timedelta(days=1)}:{today}",
            description="Range (UTC)",
        )
        self.launch_button = widgets.Button(
            description="Launch", icon="play", button_style="primary"
        )
        self.error = widgets.HTML("")
        self.progress = widgets.IntProgress(
            value=0, min=0, max=1, description="Stored", layout=widgets.Layout(display="none")
        )
        self.progress_label = widgets.Label("")
        self.queue_box = widgets.VBox([])
        self.chart = widgets.Output(layout=widgets.Layout(min_height="40px"))
        self.launch_button.on_click(lambda _button: self.launch())
        self.widget = widgets.VBox([
            widgets.HBox([self.symbol, self.interval, self.time_range, self.launch_button]),
            self.error,
            widgets.HBox([self.progress, self.progress_label]),
            self.queue_box,
            self.chart,
        ])  # fmt: skip

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def launch(self) -> Queue | None:
        """Validate the form, launch the workflow and start watching it; None on bad input."""
        if self.queue is not None:
            self._show_error("already launched: close this panel and open a new one")
            return None
        try:
            workflow = Workflow.candles(
                self.symbol.value.strip().upper(),
                self.interval.value,
                self.time_range.value.strip(),
                **self.workflow_options,
            )
        except StreamForgeError as exc:
            self._show_error(str(exc))
            return None
        self._show_error("")
        self.launch_button.disabled = True
        self.workflow = workflow
        self.queue = workflow.launch(self.launcher, **self.launcher_options)
        plan = workflow.plan()
        step = interval_ms(plan.interval) or 1
        self.progress.max = max(1, (plan.time_range.end_ms - plan.time_range.start_ms) // step)
        self.progress.layout.display = None
        self.queue_box.children = [self.queue.panel()]  # closed with the queue
        self._refresher = threading.Thread(
            target=self._refresh_loop, daemon=True, name=f"launch-panel-{plan.queue_id}"
        )
        self._refresher.start()
        return self.queue

    def _show_error(self, message: str) -> None:
        self.error.value = (
            f"<span style='color:#c62828'>&#9888; {html.escape(message)}</span>" if message else ""
        )

    def refresh(self) -> bool:
        """Re-read progress and the chart from the store; return whether the queue is done."""
        if self.queue is None or self.workflow is None:
            return False
        plan = self.workflow.plan()
        states = self.queue.producers()
        sink = [s for p, s in states.items() if p.startswith("arango-candles__")]
        written = sink[0].records_written if sink else 0
        self.progress.value = min(written, self.progress.max)
        status = ", ".join(f"{p.split('__')[0]}: {s.status}" for p, s in sorted(states.items()))
        self.progress_label.value = f"{written:,} candles stored; {status}"
        with CandleStore.open(self.store_url, settings=self.settings) as store:
            frame = store.load(
                plan.symbol, plan.interval, plan.time_range.start, plan.time_range.end
            )
        if len(frame):
            shown = resample(frame, "15min") if plan.interval in ("1s", "1m") else frame
            figure = plot(shown, title=f"{plan.symbol} {plan.interval}: {len(frame):,} candles")
            self.chart.outputs = (chart_bundle(figure, f"{len(frame)} candles"),)
        return ended(states, [s.target for s in plan.steps])

    def _refresh_loop(self) -> None:
        while not self._closed.wait(self.refresh_s):
            try:
                if self.refresh():
                    return
            except Exception as exc:  # shown, not raised: a thread has no one to raise to
                self._show_error(f"refresh failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Stop refreshing, close the queue (and its panel) and the widgets."""
        self._closed.set()
        if self._refresher is not None:
            self._refresher.join(timeout=10)
        if self.queue is not None:
            self.queue.close()
        self.widget.close()
