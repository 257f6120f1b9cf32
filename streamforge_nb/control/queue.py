"""`Queue`: the handle a notebook holds on a queue id.

Commands (ping, stop, cancel) go to the queue's partition of `queue-control`; telemetry comes
from a `Follower` (control/follower.py), which never reads `queue-events` from offset 0 when
the queue's start is known, so opening a Queue, pinging, `status()`, `events()` and `wait()`
cost the same with 1k or 1M events of other queues on the topic. The launcher that started
the queue's Jobs (given, or reattached from queue state) adds what telemetry cannot say: a
Job that died without a word. `close()` (or leaving a `with` block) ends the threads.

The methods are grouped by concern: the commands and the handle's life here, the telemetry
in `QueueTelemetry` (control/queue_telemetry.py), the Jobs in `QueueJobs`
(control/queue_jobs.py), dead letters, redrive, lag and messages in `QueueOperations`
(control/queue_ops.py).
"""

from __future__ import annotations

import builtins
import html
import threading
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from streamforge_nb.control.follower import Follower, PongReply
from streamforge_nb.control.queue_ops import QueueOperations
from streamforge_nb.control.queue_telemetry import DEFAULT_WAIT_S, QueueTelemetry
from streamforge_nb.control.telemetry import JobView, safe_timestamp
from streamforge_nb.exceptions import QueueTimeout
from streamforge_nb.kafka.send import CommandSender, SendResult
from streamforge_nb.platform.contract import PingCommand, StopCommand
from streamforge_nb.platform.names import check_queue_handle_id
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_WAIT_S", "Queue", "check_queue_handle_id"]


def _epoch(value: float | datetime | Any | None) -> float | None:
    """Return `value` (Unix seconds, a datetime or a pandas Timestamp) as Unix seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    raise TypeError(f"since must be Unix seconds or a datetime, got {value!r}")


class Queue(QueueTelemetry, QueueOperations):
    """Ping, stop, watch and wait for the workers of one queue."""

    def __init__(
        self,
        queue_id: str,
        settings: Settings | None = None,
        *,
        launcher: Any = None,
        since: float | datetime | None = None,
        store: str | None = None,
    ) -> None:
        """`since`: when the queue started (its queue-state `created_at`), if known.

        With it, history is read from then on every partition; without it, from the day
        before the day in the queue id, on the queue's own partition only.

        `launcher`: the launcher that started the queue's Jobs. Without it, the one recorded
        in the queue's state (kind, namespace, context; in `store`, default the settings')
        is reattached on first need, so `jobs()`, `logs()`, `cancel()` and a status merged
        with the Jobs' own work in any process.
        """
        self.queue_id = check_queue_handle_id(queue_id)
        self.settings = settings or Settings.from_env()
        self._telemetry = Follower(queue_id, self.settings, _epoch(since))
        # The launcher that started this queue's Jobs (a `launchers.Launcher`), if known.
        self.launcher = launcher
        self.store = store
        self._looked_up = launcher is not None
        self._record_read = False
        self._record: dict[str, Any] | None = None  # its queue-state record, once looked up
        self._reattach_lock = threading.Lock()
        self._jobs_cache: tuple[float, builtins.list[JobView]] | None = None
        self._producer: CommandSender | None = None
        self._producer_lock = threading.Lock()
        self._panels: builtins.list[Any] = []

    def __repr__(self) -> str:
        return f"Queue({self.queue_id!r}, {self.settings.describe()})"

    @property
    def since(self) -> float | None:
        """When the queue started (Unix seconds), if known: where its history is read from."""
        return self._telemetry.since

    @since.setter
    def since(self, value: float | None) -> None:
        self._telemetry.since = value

    @property
    def closed(self) -> bool:
        """Tell whether `close()` was called."""
        return self._telemetry.closed

    @classmethod
    def list(cls, store: Any = None, settings: Settings | None = None) -> pd.DataFrame:
        """Return every launched queue (the platform's queue_state), refreshed from telemetry."""
        import pandas as pd

        from streamforge_nb.control.state import refresh
        from streamforge_nb.store.candles import CandleStore

        settings = settings or Settings.from_env()
        if store is None or isinstance(store, str):
            with CandleStore.open(store or settings.arango_url, settings=settings) as opened:
                records = refresh(opened, settings)
        else:
            records = refresh(store, settings)
        frame = pd.DataFrame(records)
        if frame.empty:
            return frame
        for column in ("created_at", "updated_at"):
            # A record saved before the contract bounded timestamps may hold any number.
            frame[column] = pd.to_datetime(
                frame[column].map(safe_timestamp), unit="s", utc=True, errors="coerce"
            )
        return frame.set_index("queue_id").sort_values("created_at")

    # -- commands ----------------------------------------------------------------------------
    def ping(
        self, target: str | None = None, *, timeout: float = 5.0, expect: int = 1
    ) -> builtins.list[PongReply]:
        """Send a ping; return the pongs matched to it once `expect` came (or at `timeout`).

        A ping needs only the live end of queue-events: it never waits for (or starts) the
        reading of the queue's history.
        """
        self._connect_while(lambda: self._telemetry.follow(history=False))
        ping = PingCommand.new(self.queue_id, target)
        waiter = self._telemetry.expect_pongs(ping.correlation_id, expect)
        try:
            waiter.sent_at = time.perf_counter()
            sent = self._send(ping)
            waiter.done.wait(max(0.0, timeout - (time.perf_counter() - waiter.sent_at)))
        finally:
            self._telemetry.forget_ping(ping.correlation_id)
        if not waiter.replies:
            who = f" (target {target})" if target else ""
            error = QueueTimeout(
                f"no pong from queue {self.queue_id}{who} within {timeout:g} s: "
                f"the ping was delivered ({sent.topic} partition {sent.partition}, "
                f"offset {sent.offset}); is a worker serving it?"
            )
            error.sent = sent  # type: ignore[attr-defined]  # the CLI's JSON says where
            raise error
        return list(waiter.replies)

    def stop(self, target: str | None = None, *, timeout: float = 30.0) -> builtins.list[str]:
        """Send stop; return the producers that acknowledged with `interrupted`."""
        self._telemetry.follow()
        sent = time.time()
        self._send(StopCommand(queue_id=self.queue_id, target=target, timestamp=sent))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # A stop naming a target concerns only its producers: the others keep running.
            states = {
                p: s
                for p, s in self._telemetry.states().items()
                if target is None or p.partition("__")[0] == target
            }
            acked = [
                s.producer
                for s in states.values()
                if s.status == "interrupted" and s.last_seen >= sent - 1
            ]
            live = [s for s in states.values() if not s.terminal]
            if acked and not live:
                return sorted(acked)
            time.sleep(0.05)
        if acked:
            return sorted(acked)
        raise QueueTimeout(
            f"no worker of queue {self.queue_id} acknowledged stop within {timeout:g} s"
        )

    def _connect_while(self, other: Callable[[], None]) -> None:
        """Connect the command producer while `other` runs (both wait on the broker)."""
        if self._producer is not None:
            other()
            return
        failure: builtins.list[BaseException] = []

        def connect() -> None:
            try:
                self._make_producer()
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=connect, name=f"queue-{self.queue_id}-connect")
        thread.start()
        try:
            other()
        finally:
            thread.join()
        if failure:
            raise failure[0]

    def _make_producer(self) -> CommandSender:
        # It learns queue-control's partitions now, not on the first send; a refusal (ACLs,
        # unknown topic) is the one the send would name.
        with self._producer_lock:
            if self._producer is None:
                self._producer = CommandSender(self.settings, self.settings.queue_control_topic)
            return self._producer

    def _send(self, command: PingCommand | StopCommand) -> SendResult:
        """Send `command` to the queue's partition of queue-control; wait for the broker."""
        return self._make_producer().send(command)

    # -- cancel and clean-up -----------------------------------------------------------------
    def cancel(
        self, grace: float = 30.0, *, kill_grace: float = 10.0, target: str | None = None
    ) -> pd.DataFrame:
        """Stop the queue for sure: `stop`, up to `grace` s for `interrupted`, then delete
        its Jobs (`control.cancel.cancel`); the result has a `cancel` column per producer."""
        from streamforge_nb.control.cancel import cancel

        return cancel(self, grace, kill_grace=kill_grace, target=target)

    def notebooks(self) -> pd.DataFrame:
        """Return where each target's executed notebook is, and whether it is saved."""
        from streamforge_nb.control.lifecycle import notebooks

        return notebooks(self)

    def notebook(self, target: str) -> Any:
        """Open `target`'s executed notebook (nbformat), wherever it was saved."""
        from streamforge_nb.control.lifecycle import open_notebook

        return open_notebook(self, target)

    def cleanup(self, *, force: bool = False) -> dict[str, str]:
        """Delete the data topic (and an empty DLQ) once the sink has committed its end."""
        from streamforge_nb.control.lifecycle import cleanup

        return cleanup(self, force=force)

    # -- lifecycle and display ---------------------------------------------------------------
    def close(self) -> None:
        """Close the panels, end the follower thread and release the Kafka clients."""
        for panel in self._panels:
            panel.close()
        self._panels.clear()
        self._telemetry.close()
        if self._producer is not None:
            self._producer.close(timeout=5)
        self._producer = None

    def __enter__(self) -> Queue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _repr_html_(self) -> str:
        rows = (
            "".join(
                f"<tr><td>{html.escape(s.producer)}</td><td>{html.escape(s.status)}</td>"
                f"<td style='text-align:right'>{s.records_written:,}</td>"
                f"<td>{time.time() - s.last_seen:.0f} s ago</td>"
                f"<td>{html.escape(s.message or '')}</td></tr>"
                for s in self.producers().values()
            )
            or "<tr><td colspan=5><i>no telemetry yet</i></td></tr>"
        )
        return (
            f"<b>Queue</b> <code>{html.escape(self.queue_id)}</code> "
            f"<small>{html.escape(self.settings.describe())}</small>"
            "<table><tr><th>producer</th><th>status</th><th>records</th><th>last event</th>"
            f"<th>message</th></tr>{rows}</table>"
        )

    def panel(self, **options: Any) -> Any:
        """Return an ipywidgets panel with Ping and Stop buttons and live telemetry.

        `options` go to `QueuePanel` (history, log_lines, ping_timeout, stop_timeout,
        refresh_s). Closing the queue closes its panels.
        """
        from streamforge_nb.registry import PANELS

        panel = PANELS.get("queue")(self, **options)
        self._panels.append(panel)
        return panel.widget
