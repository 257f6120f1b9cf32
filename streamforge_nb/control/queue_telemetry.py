"""`QueueTelemetry`: what a queue's workers say, merged with what its Jobs show.

Telemetry comes from a `Follower` (control/follower.py), which never reads `queue-events`
from offset 0 when the queue's start is known; the launcher's Jobs (`QueueJobs`) add what
telemetry cannot say: a Job that died without a word. Mixed into `Queue` (control/queue.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from streamforge_nb.control.follower import Follower
from streamforge_nb.control.queue_jobs import QueueJobs
from streamforge_nb.control.state import final_states, settled
from streamforge_nb.control.telemetry import ProducerState, ended, merge_jobs, safe_timestamp
from streamforge_nb.exceptions import QueueTimeout
from streamforge_nb.platform.contract import BaseEvent

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_WAIT_S", "QueueTelemetry"]

# The Queue's logger, as before its telemetry had a module of its own.
log = logging.getLogger("streamforge_nb.control.queue")
DEFAULT_WAIT_S = 3600.0
"""`Queue.wait()`'s default timeout: it always ends, even when nothing can tell it to."""


def _postfix(state: ProducerState) -> str:
    waiting = f" ({state.message})" if state.status == "pending" and state.message else ""
    return f"{state.producer}: {state.status}{waiting}"


class QueueTelemetry(QueueJobs):
    """Events, status, producers and wait of one queue (mixed into `Queue`)."""

    _telemetry: Follower

    def events(self, follow: bool = False, *, timeout: float | None = None) -> Iterator[BaseEvent]:
        """Yield this queue's events from its start; with `follow`, keep waiting for more."""
        return self._telemetry.events(follow, timeout=timeout)

    def _follow(self) -> None:
        """Follow the telemetry; a queue whose state record kept its final states (it ended)
        starts from them, without reading what queue-events received since its start."""
        self._reattach(record=True)
        final = final_states(self._record)
        if final is not None:
            self._telemetry.settle(final)
        self._telemetry.follow()

    def _keep_final(self, states: dict[str, ProducerState]) -> None:
        """Save the producers' final states in the queue-state record once the queue ended,
        so a later status() need not read the history again (`state.settled`)."""
        from streamforge_nb.store.candles import CandleStore

        record = self._record
        if not states or record is None or final_states(record) is not None:
            return
        if not self._telemetry.caught_up.is_set():
            return  # the history is not all read: these may not be the final states
        updated = settled(record, states)
        if "producers" not in updated:
            return
        try:
            with CandleStore.open(
                self.store or self.settings.arango_url, settings=self.settings
            ) as store:
                store.save_queue_state(updated)
            self._record = updated
        except Exception as exc:  # the status stands; the next one reads the history again
            log.warning("could not save the final state of %s: %s", self.queue_id, exc)

    def status(self, *, timeout: float = 10.0) -> pd.DataFrame:
        """Return one row per producer: status, records written, last seen and its age, and
        the messages refused to the DLQ and candles stored with an anomaly (a sink's)."""
        import pandas as pd

        self._follow()
        self._telemetry.caught_up.wait(timeout)
        states = self.producers()
        self._keep_final(states)
        now = time.time()
        rows = [
            {
                "producer": s.producer,
                "status": s.status,
                "records_written": s.records_written,
                "last_seen": pd.to_datetime(
                    safe_timestamp(s.last_seen), unit="s", utc=True, errors="coerce"
                ),
                "age_s": round(now - s.last_seen, 1),
                "message": s.message,
                "dead_letters": s.dead_letters,
                "anomalies": s.anomalies,
            }
            for s in states.values()
        ]
        columns = [
            "producer", "status", "records_written", "last_seen", "age_s", "message",
            "dead_letters", "anomalies",
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=columns).set_index("producer")

    @property
    def history_read(self) -> bool:
        """Tell whether the queue's telemetry history has been read (its states are whole)."""
        return self._telemetry.caught_up.is_set()

    def producers(self, *, timeout: float = 0.0) -> dict[str, ProducerState]:
        """Return the current state of every producer (a snapshot): the telemetry merged
        with the launcher's Jobs (`telemetry.merge_jobs`), so a Job that ended without a
        terminal event shows its producer `failed` with the reason ("exit code 1 before any
        telemetry", "killed by SIGKILL after loading").

        `timeout`: seconds to wait for the history to be read first (`history_read`).
        Until it is read, an ended Job is not taken for a failure: its worker's last events
        may be in the part not read yet (a fresh `Queue` of a finished queue said `failed`).
        """
        self._follow()
        if timeout > 0:
            self._telemetry.caught_up.wait(timeout)
        jobs = self._job_views()
        if not self.history_read:
            jobs = [j for j in jobs if j.state in ("pending", "active")]
        return merge_jobs(self._telemetry.states(), jobs)

    def wait(
        self,
        timeout: float | None = DEFAULT_WAIT_S,
        *,
        targets: Iterable[str] = (),
        progress: bool = True,
    ) -> pd.DataFrame:
        """Block until every producer finished, failed or was interrupted; return status().

        Always ends: when the workers report their end; when the queue's Jobs end without a
        terminal event (the producer is then `failed` with the launcher's reason, a few
        seconds after the Job ended); or at `timeout` (default `DEFAULT_WAIT_S`, one hour;
        None waits for as long as it takes) with `QueueTimeout` naming every state.

        `targets` (e.g. `["loader-candles", "arango-candles"]`) names workers that must have
        reported before the queue counts as done: a fast first step must not end the wait
        before a slower one has even started.
        """
        from tqdm.auto import tqdm

        self._follow()
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = tqdm(desc=self.queue_id, unit=" records", disable=not progress)
        try:
            while True:
                states = self.producers()
                # Steps pass the same records along: the furthest one is the progress.
                bar.n = max((s.records_written for s in states.values()), default=0)
                # A Job still waiting says why (Unschedulable for 3 min, pulling...).
                bar.set_postfix_str(", ".join(map(_postfix, states.values())))
                # With a launcher, also wait for the Jobs to exit: their executed notebooks
                # are saved after the worker's last event.
                if ended(states, targets) and not self._jobs_running():
                    return self.status()
                if deadline is not None and time.monotonic() > deadline:
                    seen = ", ".join(f"{p} {s.status}" for p, s in states.items())
                    if not self._telemetry.caught_up.is_set():
                        seen = (seen + "; " if seen else "") + "its history is still being read"
                    raise QueueTimeout(
                        f"queue {self.queue_id} still running after {timeout:g} s: "
                        + (seen or "no events")
                    )
                time.sleep(0.2)
        finally:
            bar.close()

    def subscribe(self, callback: Callable[[BaseEvent], None]) -> None:
        """Call `callback(event)` from the follower thread for every event of this queue."""
        self._telemetry.subscribe(callback)

    def unsubscribe(self, callback: Callable[[BaseEvent], None]) -> None:
        self._telemetry.unsubscribe(callback)
