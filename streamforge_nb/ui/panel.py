"""`QueuePanel`: an ipywidgets control panel for one `Queue` (what `Queue.panel()` shows).

Ping (round trip and a sparkline of the last ones), Stop behind a confirmation, one row per
producer, a sparkline of the sinks' lag, and a bounded live event log; a second tab reads the
dead letters and redrives them (`ui.operate.DeadLetterTab`).

Threads, by ipywidgets 8's rules: clicks run in the kernel thread and only start an action;
the Kafka round trip of Ping or Stop runs in a short-lived action thread, so the kernel stays
responsive, and `QueuePanel.wait()` blocks until that action is done (notebook code and tests
use it). Events arrive from the queue's follower thread and a refresh thread re-renders the
producer table every `refresh_s` so ages advance. Background threads only assign widget
`.value`s. `close()`, or closing `.widget`, unsubscribes, joins those threads and closes the
widgets.
"""

from __future__ import annotations

import html
import math
import threading
import time
from collections import deque
from typing import Any

import ipywidgets as widgets

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.telemetry import (
    ProducerState,
    printable,
    safe_count,
    safe_timestamp,
)
from streamforge_nb.exceptions import QueueTimeout, StreamForgeError
from streamforge_nb.platform.contract import BaseEvent
from streamforge_nb.ui.actions import PanelActions
from streamforge_nb.ui.operate import DeadLetterTab, LagHistory, bars

__all__ = ["QueuePanel"]

_STATUS_COLOURS = {
    "started": "#2e7d32",
    "loading": "#2e7d32",
    "alive": "#2e7d32",
    "finished": "#1565c0",
    "finished_with_dead_letters": "#ef6c00",
    "interrupted": "#ef6c00",
    "error": "#c62828",
}


class _PanelBox(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no type hints
    """The panel's top-level VBox: closing it closes the whole panel."""

    def __init__(self, panel: QueuePanel, children: list[Any]) -> None:
        super().__init__(children)
        # `Queue.panel()` hands out only this box, so it must be enough to end the threads.
        self._panel = panel

    def close(self) -> None:
        self._panel.close()


class QueuePanel(PanelActions):
    """Ping, stop and watch one queue from a notebook; display `.widget`."""

    def __init__(
        self,
        queue: Queue,
        *,
        history: int = 20,
        log_lines: int = 50,
        ping_timeout: float = 5.0,
        stop_timeout: float = 30.0,
        refresh_s: float = 1.0,
    ) -> None:
        self.queue = queue
        self.ping_timeout = ping_timeout
        self.stop_timeout = stop_timeout
        self.refresh_s = refresh_s
        self.last_rtt_ms: float | None = None
        self.round_trips_ms: deque[float] = deque(maxlen=history)
        self.acknowledged: list[str] = []
        self._log: deque[str] = deque(maxlen=log_lines)
        self.lag = LagHistory(history)
        self._init_actions(queue.queue_id)

        self.ping_button = widgets.Button(description="Ping", icon="exchange")
        self.rtt_label = widgets.Label("no ping yet")
        self.history_label = widgets.Label("")
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger")
        self.confirm_button = widgets.Button(description="Confirm stop", button_style="danger")
        self.cancel_button = widgets.Button(description="Cancel")
        self.confirm_box = widgets.HBox(
            [self.confirm_button, self.cancel_button], layout=widgets.Layout(display="none")
        )
        self.status_label = widgets.Label("")
        self.lag_label = widgets.Label(self.lag.text())
        self.table = widgets.HTML(_table([], time.time()))
        self.log = widgets.Textarea(
            "", disabled=True, layout=widgets.Layout(width="100%", height="12em")
        )
        title = widgets.HTML(f"<b>Queue</b> <code>{html.escape(queue.queue_id)}</code>")
        rows = [
            widgets.HBox([self.ping_button, self.rtt_label, self.history_label]),
            widgets.HBox([self.stop_button, self.confirm_box]),
        ]
        self.dlq = DeadLetterTab(queue, self)
        self.tabs = widgets.Tab(
            [widgets.VBox([*rows, self.lag_label, self.table, self.log]), self.dlq.box],
            titles=("Queue", "Dead letters"),
        )
        self._parts = [title, self.status_label, self.tabs]
        self.widget = _PanelBox(self, self._parts)

        self.ping_button.on_click(lambda _b: self._start("ping", self._ping))
        self.stop_button.on_click(lambda _b: self._ask_confirmation(True))
        self.cancel_button.on_click(lambda _b: self._ask_confirmation(False))
        self.confirm_button.on_click(lambda _b: self._confirm_stop())

        try:
            # Subscribing starts the queue's follower here, in the caller's thread, before the
            # refresh thread exists: Queue starts its follower without a lock.
            queue.subscribe(self._on_event)
        except BaseException:
            self.close()
            raise
        self._refresher = threading.Thread(
            target=self._refresh_loop, name=f"panel-{queue.queue_id}-refresh", daemon=True
        )
        self._refresher.start()

    def __repr__(self) -> str:
        return f"QueuePanel({self.queue.queue_id!r})"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # Displaying the panel itself shows its widget, as `Queue.panel()` would.
        return self.widget._repr_mimebundle_(**kwargs)

    # -- actions -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-render the producer table from the queue's current state."""
        self._render(self.queue.producers())

    def _failed(self, name: str, exc: Exception) -> None:
        if isinstance(exc, QueueTimeout):
            self._say(str(exc), rtt="timeout" if name == "ping" else None)
        else:
            self._say(f"{name} failed: {type(exc).__name__}: {exc}")

    def _ping(self) -> None:
        replies = self.queue.ping(timeout=self.ping_timeout)
        best = min(replies, key=lambda r: r.round_trip_s)
        ms = best.round_trip_s * 1000
        with self._lock:
            self.last_rtt_ms = ms
            self.round_trips_ms.append(ms)
            spark = _sparkline(list(self.round_trips_ms))
        self._say(f"pong from {best.producer} in {ms:.1f} ms", rtt=f"{ms:.1f} ms", spark=spark)

    def _ask_confirmation(self, show: bool) -> None:
        self.confirm_box.layout.display = None if show else "none"
        self.stop_button.disabled = show or not self._idle.is_set()

    def _confirm_stop(self) -> None:
        self._ask_confirmation(False)
        self._start("stop", self._stop)

    def _stop(self) -> None:
        """Stop; after `stop_timeout` without `interrupted`, cancel (delete the queue's Jobs)
        when its launcher is known."""
        try:
            acked = self.queue.stop(timeout=self.stop_timeout)
        except QueueTimeout:
            if self.queue._reattach() is None:
                raise
            frame = self.queue.cancel(grace=0)
            gone = sorted(p for p, how in frame["cancel"].items() if how == "deleted")
            self.acknowledged = sorted(p for p, how in frame["cancel"].items() if how == "stopped")
            self._say(
                f"no `interrupted` within {self.stop_timeout:g} s: cancelled; Jobs deleted for "
                + (", ".join(gone) or "nobody")
            )
            self.refresh()
            return
        self.acknowledged = acked
        self._say("stop acknowledged by " + ", ".join(acked))
        self.refresh()

    # -- widget updates (any thread) ---------------------------------------------------------
    def _say(self, message: str, *, rtt: str | None = None, spark: str | None = None) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self.status_label.value = message
            if rtt is not None:
                self.rtt_label.value = rtt
            if spark is not None:
                self.history_label.value = spark

    def _set_busy(self, busy: bool, message: str | None = None) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self.ping_button.disabled = busy
            self.stop_button.disabled = busy
            self.dlq.set_busy(busy)
            if message is not None:
                self.status_label.value = message

    def _render(self, states: dict[str, ProducerState]) -> None:
        text = _table(list(states.values()), time.time())
        with self._lock:
            if not self._closed.is_set():
                self.table.value = text

    def _on_event(self, event: BaseEvent) -> None:
        try:
            line = _log_line(event)
        except Exception:  # never: but an odd event must not end the follower's listener
            line = "(an event that cannot be shown)"
        with self._lock:
            if self._closed.is_set():
                return
            self._log.appendleft(line)  # newest first: the box does not scroll by itself
            self.log.value = "\n".join(self._log)
            if self.lag.add(event):
                self.lag_label.value = self.lag.text()
        self.refresh()

    def _refresh_loop(self) -> None:
        while not self._closed.wait(self.refresh_s):
            if self.queue.closed:
                self._say(f"no more updates: {self.queue!r} is closed")
                return
            try:
                self.refresh()
            except StreamForgeError as exc:  # the queue closed between the check and here
                self._say(f"no more updates: {exc}")
                return

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Unsubscribe, end the panel's threads and close its widgets (idempotent)."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        self.queue.unsubscribe(self._on_event)
        # The refresher waits on _closed, so it ends at once; a Ping or Stop cannot be
        # interrupted, but it ends by its own timeout.
        _join(getattr(self, "_refresher", None), None)
        _join(self._action, max(self.ping_timeout, self.stop_timeout) + 5)
        for part in _descendants(self._parts):
            for owned in (part, getattr(part, "layout", None), getattr(part, "style", None)):
                if owned is not None:
                    owned.close()
        widgets.VBox.close(self.widget)
        self.widget.layout.close()


def _join(thread: threading.Thread | None, timeout: float | None) -> None:
    # ipywidgets closes widgets from __del__, so close() may run on a garbage-collecting
    # thread, even one of ours: that one is ending anyway and cannot join itself.
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)


def _descendants(parts: list[Any]) -> list[Any]:
    found = []
    for part in parts:
        found.append(part)
        found.extend(_descendants(list(getattr(part, "children", ()))))
    return found


def _sparkline(values: list[float]) -> str:
    """Return `▁▃█ 1.2 3.4 9.9 ms`: one bar per round trip, scaled to the window's range."""
    if not values:
        return ""
    return f"{bars(values)}  " + " ".join(f"{v:.1f}" for v in values) + " ms"


def _log_line(event: BaseEvent) -> str:
    """Return the event log's line for `event`, with control characters escaped."""
    seen = safe_timestamp(event.timestamp)
    clock = time.strftime("%H:%M:%S", time.localtime(seen)) if seen is not None else "??:??:??"
    line = f"{clock} {printable(event.producer, 100)} {printable(event.status, 20)}"
    records = safe_count(event.records_written)
    if records:
        line += f" ({records:,} records)"
    if event.message:
        line += f": {printable(event.message)}"
    return line


def _age(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _table(states: list[ProducerState], now: float) -> str:
    head = "".join(
        f"<th style='text-align:{a};padding:0 8px'>{h}</th>"
        for h, a in [("producer", "left"), ("status", "left"), ("records", "right"),
                     ("last event", "left"), ("message", "left")]
    )  # fmt: skip
    rows = "".join(
        f"<tr><td style='padding:0 8px'><code>{html.escape(s.producer)}</code></td>"
        f"<td style='padding:0 8px;color:{_STATUS_COLOURS.get(s.status, 'inherit')}'>"
        f"{html.escape(s.status)}</td>"
        f"<td style='padding:0 8px;text-align:right'>{safe_count(s.records_written):,}</td>"
        f"<td style='padding:0 8px'>{_age(now - s.last_seen)}</td>"
        f"<td style='padding:0 8px'>{html.escape(printable(s.message or ''))}</td></tr>"
        for s in sorted(states, key=lambda s: s.producer)
    )
    rows = rows or "<tr><td colspan=5 style='padding:0 8px'><i>no telemetry yet</i></td></tr>"
    return f"<table><tr>{head}</tr>{rows}</table>"
