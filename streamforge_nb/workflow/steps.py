"""What a launch will do, as data: a `Plan` of `Step`s (names, `start` command, Job)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from streamforge_nb.platform.contract import StartCommand
from streamforge_nb.platform.names import TimeRange

__all__ = ["Plan", "Step"]


@dataclass(frozen=True)
class Step:
    """One target of the workflow: its names, `start` command and Job."""

    target: str
    producer_id: str
    job_name: str
    notebook: str
    output: str
    start: StartCommand
    job: dict[str, Any]


def _step_key(step: Step) -> str:
    return step.output.rsplit("/", 1)[-1].removesuffix(".ipynb")


@dataclass(frozen=True)
class Plan:
    """Everything a launch will do, computed without touching anything."""

    queue_id: str
    symbol: str
    interval: str
    type: str
    time_range: TimeRange
    data_topic: str
    collection: str | None
    namespace: str
    steps: tuple[Step, ...]
    parameters: dict[str, Any] = field(default_factory=dict)

    def names(self) -> dict[str, Any]:
        """Return every platform name of the plan."""
        return {
            "queue_id": self.queue_id, "data_topic": self.data_topic,
            "collection": self.collection,
            # Keyed by target; several sinks by their notebook's name (arango-candles-2).
            "producer_ids": {_step_key(s): s.producer_id for s in self.steps},
            "job_names": {_step_key(s): s.job_name for s in self.steps},
        }  # fmt: skip

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(s.target)}</td><td><code>{html.escape(s.producer_id)}</code>"
            f"</td><td><code>{html.escape(s.job_name)}</code></td>"
            f"<td>{html.escape(s.notebook)}</td><td>{html.escape(s.output)}</td></tr>"
            for s in self.steps
        )
        return (
            f"<b>Workflow</b> <code>{html.escape(self.queue_id)}</code><br>"
            f"{html.escape(self.symbol)} {html.escape(self.interval)} {self.time_range} &rarr; "
            f"topic <code>{html.escape(self.data_topic)}</code>, collection "
            f"<code>{html.escape(self.collection or '-')}</code>, namespace "
            f"<code>{html.escape(self.namespace)}</code>"
            "<table><tr><th>target</th><th>producer</th><th>Job</th><th>notebook</th>"
            f"<th>output</th></tr>{rows}</table>"
        )
