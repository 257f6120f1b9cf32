"""Cancel a queue for sure: `stop`, a grace for `interrupted`, then delete its Jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from streamforge_nb.control.telemetry import ProducerState
from streamforge_nb.exceptions import StreamForgeError
from streamforge_nb.kafka.send import send_event
from streamforge_nb.platform.contract import Interrupted, StopCommand

if TYPE_CHECKING:
    import pandas as pd

    from streamforge_nb.control.queue import Queue

__all__ = ["cancel"]

log = logging.getLogger("streamforge_nb.control.queue")


def _chosen(name: str, target: str | None) -> bool:
    """Tell whether a producer id or target name belongs to `target` (None: all)."""
    return target is None or name.partition("__")[0] == target


def _delete_jobs(launcher: Any, queue_id: str, jobs: Iterable[Any], grace: float) -> list[str]:
    """Delete some Jobs of a queue (a launcher that can only delete per queue: all)."""
    delete_job = getattr(launcher, "delete_job", None)
    if delete_job is None:
        return list(launcher.delete(queue_id, grace=grace))
    return [delete_job(job.name, grace=grace) for job in jobs]


_NOTHING = ProducerState("", "", 0, 0.0)


def cancel(
    queue: Queue, grace: float = 30.0, *, kill_grace: float = 10.0, target: str | None = None
) -> pd.DataFrame:
    """Stop the queue for sure: `stop`, up to `grace` s for `interrupted`, then delete.

    Sends `stop` (as `stop()` does); waits up to `grace` s for every producer to end;
    then deletes the queue's Jobs through its launcher (reattached from queue state if
    need be), so a Job that never started (Pending, pulling, hung) goes too; a Job's
    process gets `kill_grace` s between SIGTERM and SIGKILL. A producer still running
    when its Job is deleted is recorded on `queue-events` as `interrupted` with the
    message "deleted by cancel ...", so every reader (any process, `Queue.list()`, the
    panels) sees the same end.

    Returns `status()` with a `cancel` column per producer: `stopped` (it answered
    `interrupted` within the grace), `deleted` (its Job was deleted first), or its own
    earlier end (`finished`, `error`, `failed`, `interrupted`).
    """
    import pandas as pd

    queue._telemetry.follow()
    queue._telemetry.caught_up.wait(10)
    launcher = queue._reattach()
    before = {p: s.status for p, s in queue.producers().items() if s.terminal}
    sent = time.time()
    try:
        queue._send(StopCommand(queue_id=queue.queue_id, target=target, timestamp=sent))
    except StreamForgeError as exc:  # deleting is still possible
        log.warning("could not send stop to %s: %s", queue.queue_id, exc)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        states = queue.producers()
        live = [s for p, s in states.items() if not s.terminal and _chosen(p, target)]
        running = [
            j for j in queue._job_views(fresh=True)
            if j.state in ("active", "pending") and _chosen(j.target, target)
        ]  # fmt: skip
        if not live and not running:
            break
        time.sleep(0.2)
    states = queue.producers()
    outcome = {p: before.get(p) or states[p].status for p in states}
    deleted: list[str] = []
    # What the workers themselves said: a Job that only the launcher calls failed (a Pod
    # that never started) is still deleted "by cancel", and recorded so.
    told = queue._telemetry.states()
    if launcher is not None:
        jobs = {j.name: j for j in queue._job_views(fresh=True)}
        chosen = [j for j in jobs.values() if _chosen(j.target, target)]
        if target is None:
            deleted = launcher.delete(queue.queue_id, grace=kill_grace)
        elif chosen:  # one target: only its Jobs (a launcher deletes per queue)
            deleted = _delete_jobs(launcher, queue.queue_id, chosen, kill_grace)
        for name in deleted:
            job = jobs.get(name)
            if job is None:
                continue
            producer = job.producer or job.target
            state = states.get(producer)
            own = told.get(producer)
            if own is None or not own.terminal:
                outcome[producer] = "deleted"
                event = Interrupted(
                    queue_id=queue.queue_id,
                    producer=producer,
                    records_written=state.records_written if state else 0,
                    message=f"deleted by cancel: no `interrupted` within the {grace:g} s "
                    f"grace (was {_was(state, own)})",
                )
                try:
                    send_event(queue.settings, event)
                except StreamForgeError as exc:
                    log.warning("could not record the deletion of %s: %s", producer, exc)
        queue._jobs_cache = None
    for producer in queue.producers():
        if producer not in outcome:
            continue
        if outcome[producer] == "interrupted" and producer not in before:
            outcome[producer] = "stopped"
    # The deletions' own events: wait (briefly) until this handle has read them.
    settle = time.monotonic() + 10
    while time.monotonic() < settle and any(
        v == "deleted" and not queue.producers().get(p, _NOTHING).terminal
        for p, v in outcome.items()
    ):
        time.sleep(0.1)
    frame = queue.status()
    frame["cancel"] = pd.Series(outcome, dtype=object).reindex(frame.index)
    return frame


def _was(state: Any, own: Any) -> str:
    """What a deleted producer was: its status, and the launcher's reason if it never spoke."""
    if state is None:
        return "without telemetry"
    told = f": {state.message}" if own is None and state.message else ""
    return f"{state.status}{told}"
