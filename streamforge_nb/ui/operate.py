"""What the panels show of a queue's operation: lag as a sparkline, and its dead letters.

`LagHistory` keeps the lag samples the sinks put in their progress reports as the panel's
follower sees them (no request of its own); `lag_sparklines` draws the same from a
`Queue.lag()` / `Batch.lag()` frame. `DeadLetterTab` is the queue panel's DLQ tab: the count
and the reasons (`Queue.dead_letters()`), a redrive's dry-run preview, and the redrive itself
behind a confirmation (`Queue.redrive()`), each run by the panel's action thread.
"""

from __future__ import annotations

import html
from collections import deque
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from streamforge_nb.control.telemetry import printable
from streamforge_nb.platform.contract import BaseEvent

if TYPE_CHECKING:
    import pandas as pd

    from streamforge_nb.control.queue import Queue
    from streamforge_nb.ui.actions import PanelActions

__all__ = ["DeadLetterTab", "LagHistory", "bars", "lag_sparklines"]

_SPARKS = "▁▂▃▄▅▆▇█"


def bars(values: list[float]) -> str:
    """Return one bar per value, scaled to the values' range (`▁▃█`)."""
    if not values:
        return ""
    low, span = min(values), (max(values) - min(values)) or 1.0
    return "".join(_SPARKS[round((v - low) / span * (len(_SPARKS) - 1))] for v in values)


def _lag_text(values: list[int]) -> str:
    return f"lag {bars([float(v) for v in values])}  {values[-1]:,} messages behind"


class LagHistory:
    """The total lag (messages behind, over every group and partition) after each sample."""

    def __init__(self, length: int = 30) -> None:
        self.totals: deque[int] = deque(maxlen=length)
        self._latest: dict[tuple[str, int], int] = {}

    def add(self, event: BaseEvent) -> bool:
        """Take a sink's lag sample from `event`; tell whether it carried one."""
        samples, group = getattr(event, "lag", None), getattr(event, "group", None)
        if not samples or not isinstance(group, str):
            return False
        for sample in samples:
            self._latest[(group, sample.partition)] = int(sample.messages)
        self.totals.append(sum(self._latest.values()))
        return True

    def text(self) -> str:
        """Return the sparkline line, e.g. `lag ▁▃█  1,200 messages behind`."""
        return _lag_text(list(self.totals)) if self.totals else "lag: no sample yet"


def lag_sparklines(frame: pd.DataFrame, *, by: str = "group", length: int = 30) -> dict[str, str]:
    """Return a sparkline of messages behind per `by` value of a lag frame (its last samples;
    each sample time the sum over partitions, a partition counting its latest value)."""
    lines = {}
    for name, part in frame[frame["source"] == "telemetry"].groupby(by, sort=True):
        wide = part.pivot_table(index="time", columns=["group", "partition"],
                                values="messages_behind", aggfunc="last")  # fmt: skip
        totals = wide.ffill().fillna(0).sum(axis=1).astype(int).tail(length).tolist()
        lines[str(name)] = _lag_text(totals)
    return lines


class DeadLetterTab:
    """A queue's dead letters: read, preview a redrive, redrive after a confirmation."""

    def __init__(self, queue: Queue, panel: PanelActions) -> None:
        self.queue = queue
        self.panel = panel
        self.letters: pd.DataFrame | None = None
        self.preview: Any = None
        """The last dry run (`control.redrive.Redrive`); the redrive sends what it chose."""
        self.result: Any = None
        self.read_button = widgets.Button(description="Read DLQ", icon="refresh")
        self.count = widgets.Label("not read yet")
        self.reasons = widgets.HTML("")
        self.where = widgets.Text(
            "", placeholder="all, or e.g. reason_class == 'series'", description="Where",
            layout=widgets.Layout(width="34em"),
        )  # fmt: skip
        self.preview_button = widgets.Button(description="Preview redrive", icon="eye")
        self.redrive_button = widgets.Button(
            description="Redrive", icon="repeat", button_style="warning", disabled=True
        )
        self.confirm_button = widgets.Button(description="Confirm redrive", button_style="danger")
        self.cancel_button = widgets.Button(description="Cancel redrive")
        self.confirm_box = widgets.HBox(
            [self.confirm_button, self.cancel_button], layout=widgets.Layout(display="none")
        )
        self.plan = widgets.HTML("")
        self.box = widgets.VBox([
            widgets.HBox([self.read_button, self.count]), self.reasons,
            widgets.HBox([self.where, self.preview_button]),
            widgets.HBox([self.redrive_button, self.confirm_box]), self.plan,
        ])  # fmt: skip
        self.buttons = (self.read_button, self.preview_button)
        self.read_button.on_click(lambda _b: panel._start("read DLQ", self.read))
        self.preview_button.on_click(lambda _b: panel._start("preview", self.dry_run))
        self.redrive_button.on_click(lambda _b: self._confirming(True))
        self.cancel_button.on_click(lambda _b: self._confirming(False))
        self.confirm_button.on_click(lambda _b: self._confirmed())
        self.where.observe(lambda _change: self._forget_preview(), names="value")

    # -- actions (in the panel's action thread) ------------------------------------------------
    def read(self) -> None:
        """Read the DLQ: the count and one row per reason class and reason."""
        frame = self.queue.dead_letters()
        self.letters = frame
        if frame.empty:
            count, table = "no dead letters", ""
        else:
            counts = frame.groupby(["reason_class", "reason"], dropna=False).size()
            counts = counts.sort_values(ascending=False).head(20)
            count = f"{len(frame):,} dead letters"
            table = _reasons(counts)
        self._show(count=count, reasons=table)

    def dry_run(self) -> None:
        """Preview what a redrive of the chosen letters would send, refuse and leave."""
        preview = self.queue.redrive(where=self.where.value.strip() or None, dry_run=True)
        self.preview = preview
        self._show(plan=_plan(preview), redrive=bool(preview.plan["action"].eq("redrive").any()))

    def apply(self) -> None:
        """Redrive exactly the letters the last preview chose (none that came since)."""
        if self.preview is None:
            self._show(plan="<i>preview first</i>")
            return
        plan = self.preview.plan
        chosen = set(zip(plan["dlq_partition"], plan["dlq_offset"], strict=True))

        def previewed(frame: pd.DataFrame) -> Any:
            at = zip(frame["dlq_partition"], frame["dlq_offset"], strict=True)
            return [where in chosen for where in at]

        self.result = self.queue.redrive(where=previewed, dry_run=False)
        self.preview = None
        self._show(plan=_plan(self.result), redrive=False)
        self.read()

    # -- widget updates --------------------------------------------------------------------------
    def _confirming(self, show: bool) -> None:
        self.confirm_box.layout.display = None if show else "none"
        self.redrive_button.disabled = show or self.preview is None

    def _confirmed(self) -> None:
        self._confirming(False)
        self.panel._start("redrive", self.apply)

    def _forget_preview(self) -> None:
        # A preview is of one `where`: another one must be previewed before it is sent.
        self.preview = None
        self._confirming(False)
        self.redrive_button.disabled = True

    def _show(self, *, count: str | None = None, reasons: str | None = None,
              plan: str | None = None, redrive: bool | None = None) -> None:  # fmt: skip
        with self.panel._lock:
            if self.panel._closed.is_set():
                return
            if count is not None:
                self.count.value = count
            if reasons is not None:
                self.reasons.value = reasons
            if plan is not None:
                self.plan.value = plan
            if redrive is not None:
                self.redrive_button.disabled = not redrive

    def set_busy(self, busy: bool) -> None:
        """Disable the tab's buttons while any action of the panel runs."""
        for button in self.buttons:
            button.disabled = busy
        self.redrive_button.disabled = busy or self.preview is None


def _cell(value: Any) -> str:
    return f"<td style='padding:0 8px'>{html.escape(printable(str(value), 200))}</td>"


def _reasons(counts: pd.Series) -> str:
    rows = "".join(
        f"<tr>{_cell(reason_class)}{_cell(reason)}"
        f"<td style='padding:0 8px;text-align:right'>{n:,}</td></tr>"
        for (reason_class, reason), n in counts.items()
    )
    return f"<table><tr><th>class</th><th>reason</th><th>count</th></tr>{rows}</table>"


def _plan(result: Any) -> str:
    """The redrive's summary line and its plan, the first 20 rows."""
    shown = [c for c in ("dlq_offset", "symbol", "interval", "open_time", "action", "why", "sent")
             if c in result.plan.columns]  # fmt: skip
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    rows = "".join(
        "<tr>" + "".join(_cell(row[c]) for c in shown) + "</tr>"
        for _, row in result.plan.head(20).iterrows()
    )
    summary = html.escape(result.summary())
    return f"<b>{summary}</b><table><tr>{head}</tr>{rows}</table>"
