"""The thread behind `Batch.launch`: queues launched in order, at most N loader Jobs at once.

A slot is taken when a queue is launched and freed when its loader Job is neither pending
nor active, as the launcher lists it (so loaders started by another process, or before a
kernel restart, count too); its sinks finish on their own. Every wait ends: on `pause`, once
all are launched, or when the launcher has not answered for a minute.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from streamforge_nb.exceptions import QueueExists, StreamForgeError
from streamforge_nb.workflow.launchers import Launcher
from streamforge_nb.workflow.plan import Workflow

__all__ = ["launch_paced", "loader_running"]

log = logging.getLogger(__name__)
POLL_S = 0.5
LOADER = "loader-candles"


def launch_paced(
    workflows: Sequence[Workflow],
    launched: set[str],
    runner: Launcher,
    most: int,
    pause: threading.Event,
) -> bool:
    """Launch the `workflows` not in `launched` with `runner`, at most `most` loaders at
    once; return True once all are launched, False when `pause` was set first."""
    waiting = [wf for wf in workflows if wf.plan().queue_id not in launched]
    running = {q for q in launched if loader_running(runner, q, pause)}
    while waiting and not pause.is_set():
        running = {q for q in running if loader_running(runner, q, pause)}
        while waiting and len(running) < most and not pause.is_set():
            workflow = waiting.pop(0)
            try:
                workflow.launch(runner).close()
            except QueueExists as exc:  # another process (a reopened batch) was first
                log.info("%s", exc)
            running.add(workflow.plan().queue_id)
        if waiting:
            pause.wait(POLL_S)
    return not waiting


def loader_running(runner: Launcher, queue_id: str, pause: threading.Event) -> bool:
    """Tell whether the queue's loader Job is pending or active (while unknown: yes)."""
    for _attempt in range(60):
        try:
            jobs = runner.list(queue_id)
            return any(j.target == LOADER and j.state in ("pending", "active") for j in jobs)
        except StreamForgeError as exc:
            log.warning("could not list the Jobs of %s (%s); retrying", queue_id, exc)
            if pause.wait(1.0):
                return True
    raise StreamForgeError(f"the {runner.name} launcher did not answer for a minute")
