"""`Queue`: the handle a notebook holds on a queue id.

One background thread per Queue follows `queue-events` for this queue: it folds telemetry into
one row per producer, and hands pongs to the pings waiting for them. It starts on first use,
never blocks the kernel, and `close()` (or leaving a `with` block) ends it.
"""

from __future__ import annotations

import builtins
import html
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamforge_nb.control.telemetry import ProducerState, ended, fold
from streamforge_nb.exceptions import MessageError, QueueTimeout, StreamForgeError, kafka_errors
from streamforge_nb.kafka.clients import make_assigned_consumer, make_producer
from streamforge_nb.platform.contract import (
    BaseEvent,
    PingCommand,
    Pong,
    StopCommand,
    decode_event,
    encode,
    message_key,
)
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PongReply", "Queue"]

log = logging.getLogger(__name__)
_POLL_MS = 100



@dataclass(frozen=True)
class PongReply:
    """A pong matched to its ping, with the round trip measured by the sender."""

    producer: str
    round_trip_s: float
    pong: Pong


class _PingWaiter:
    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.sent_at = 0.0
        self.replies: list[PongReply] = []
        self.done = threading.Event()


class Queue:
    """Ping, stop, watch and wait for the workers of one queue."""

    def __init__(
        self, queue_id: str, settings: Settings | None = None, *, launcher: Any = None
    ) -> None:
        self.queue_id = queue_id
        self.settings = settings or Settings.from_env()
        # The launcher that started this queue's Jobs (a `launchers.Launcher`), if known.
        self.launcher = launcher
        self._lock = threading.Lock()
        self._states: dict[str, ProducerState] = {}
        self._waiters: dict[str, _PingWaiter] = {}
        self._listeners: builtins.list[Callable[[BaseEvent], None]] = []
        self._producer: KafkaProducer | None = None
        self._consumer: KafkaConsumer | None = None
        self._thread: threading.Thread | None = None
        self._caught_up = threading.Event()
        self._closing = threading.Event()
        self._follow_lock = threading.Lock()
        self._panels: builtins.list[Any] = []

    def __repr__(self) -> str:
        return f"Queue({self.queue_id!r}, {self.settings.describe()})"

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
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
        return frame.set_index("queue_id").sort_values("created_at")

    def jobs(self) -> pd.DataFrame:
        """Return the queue's Jobs as its launcher sees them (name, target, state)."""
        import pandas as pd

        statuses = self._launcher().list(self.queue_id)
        return pd.DataFrame(
            [vars(s) for s in statuses], columns=["name", "queue_id", "target", "state", "detail"]
        ).set_index("name")

    def logs(self, target: str | None = None) -> str:
        """Return the output of the queue's Jobs (one target's, or all of them)."""
        runner = self._launcher()
        return "\n".join(
            runner.logs(job.name)
            for job in runner.list(self.queue_id)
            if target is None or job.target == target
        )

    def _jobs_running(self) -> bool:
        if self.launcher is None:
            return False
        return any(j.state in ("active", "pending") for j in self.launcher.list(self.queue_id))

    def _launcher(self) -> Any:
        if self.launcher is None:
            raise StreamForgeError(
                f"{self!r} does not know its launcher; pass launcher= (e.g. LocalLauncher())"
            )
        return self.launcher

    # -- commands ----------------------------------------------------------------------------
    def ping(
        self, target: str | None = None, *, timeout: float = 5.0, expect: int = 1
    ) -> builtins.list[PongReply]:
        """Send a ping; return the pongs matched to it once `expect` came (or at `timeout`)."""
        self._follow()
        ping = PingCommand.new(self.queue_id, target)
        waiter = _PingWaiter(expect)
        with self._lock:
            self._waiters[ping.correlation_id] = waiter
        try:
            waiter.sent_at = time.perf_counter()
            self._send(ping)
            waiter.done.wait(timeout)
        finally:
            with self._lock:
                self._waiters.pop(ping.correlation_id, None)
        if not waiter.replies:
            who = f" (target {target})" if target else ""
            raise QueueTimeout(
                f"no pong from queue {self.queue_id}{who} within {timeout:g} s: "
                "is a worker serving it?"
            )
        return list(waiter.replies)

    def stop(self, target: str | None = None, *, timeout: float = 30.0) -> builtins.list[str]:
        """Send stop; return the producers that acknowledged with `interrupted`."""
        self._follow()
        sent = time.time()
        self._send(StopCommand(queue_id=self.queue_id, target=target, timestamp=sent))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                states = dict(self._states)
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

    def _send(self, command: PingCommand | StopCommand) -> None:
        if self._producer is None:
            self._producer = make_producer(
                self.settings, linger_ms=0, acks=1, enable_idempotence=False
            )
        with kafka_errors(f"sending {command.command}", self.settings.kafka_bootstrap_servers):
            self._producer.send(
                self.settings.queue_control_topic, key=message_key(command), value=encode(command)
            )
            self._producer.flush(timeout=10)

    # -- telemetry ---------------------------------------------------------------------------
    def events(self, follow: bool = False, *, timeout: float | None = None) -> Iterator[BaseEvent]:
        """Yield this queue's events from the start; with `follow`, keep waiting for more."""
        consumer, partitions = self._events_consumer()
        end = consumer.end_offsets(partitions)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while deadline is None or time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=_POLL_MS).values():
                    for record in records:
                        event = self._decode(record.value)
                        if event is not None:
                            yield event
                if not follow and all(consumer.position(tp) >= end[tp] for tp in partitions):
                    return
        finally:
            consumer.close()

    def status(self, *, timeout: float = 10.0) -> pd.DataFrame:
        """Return one row per producer: status, records written, last seen and its age."""
        import pandas as pd

        self._follow()
        self._caught_up.wait(timeout)
        now = time.time()
        rows = [
            {
                "producer": s.producer,
                "status": s.status,
                "records_written": s.records_written,
                "last_seen": pd.Timestamp(s.last_seen, unit="s", tz="UTC"),
                "age_s": round(now - s.last_seen, 1),
                "message": s.message,
            }
            for s in self.producers().values()
        ]
        columns = ["producer", "status", "records_written", "last_seen", "age_s", "message"]
        return pd.DataFrame(rows, columns=columns).set_index("producer")

    def producers(self) -> dict[str, ProducerState]:
        """Return the current state of every producer seen (a snapshot)."""
        self._follow()
        with self._lock:
            return dict(self._states)

    def wait(
        self, timeout: float | None = None, *, targets: Iterable[str] = (), progress: bool = True
    ) -> pd.DataFrame:
        """Block until every producer finished, failed or was interrupted; return status().

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
                bar.set_postfix_str(", ".join(f"{p}: {s.status}" for p, s in states.items()))
                # With a launcher, also wait for the Jobs to exit: their executed notebooks
                # are saved after the worker's last event.
                if ended(states, targets) and not self._jobs_running():
                    return self.status()
                if deadline is not None and time.monotonic() > deadline:
                    raise QueueTimeout(
                        f"queue {self.queue_id} still running after {timeout:g} s: "
                        + (", ".join(f"{p} {s.status}" for p, s in states.items()) or "no events")
                    )
                time.sleep(0.2)
        finally:
            bar.close()

    def subscribe(self, callback: Callable[[BaseEvent], None]) -> None:
        """Call `callback(event)` from the follower thread for every event of this queue."""
        with self._lock:
            self._listeners.append(callback)
        self._follow()

    def unsubscribe(self, callback: Callable[[BaseEvent], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    # -- the follower thread -----------------------------------------------------------------
    def _events_consumer(self) -> tuple[KafkaConsumer, builtins.list[TopicPartition]]:
        return make_assigned_consumer(self.settings, self.settings.queue_events_topic)

    @property
    def closed(self) -> bool:
        """Tell whether `close()` was called."""
        return self._closing.is_set()

    def _follow(self) -> None:
        with self._follow_lock:  # two threads asking at once must not start two followers
            if self._closing.is_set():
                raise StreamForgeError(f"{self!r} is closed")
            if self._thread is None:
                self._start_follower()

    def _start_follower(self) -> None:
        self._consumer, partitions = self._events_consumer()
        end = self._consumer.end_offsets(partitions)
        self._thread = threading.Thread(
            target=self._run_follower,
            args=(self._consumer, partitions, end),
            name=f"queue-{self.queue_id}",
            daemon=True,
        )
        self._thread.start()

    def _run_follower(
        self,
        consumer: KafkaConsumer,
        partitions: builtins.list[TopicPartition],
        end: dict[TopicPartition, int],
    ) -> None:
        while not self._closing.is_set():
            try:
                batches = consumer.poll(timeout_ms=_POLL_MS)
                received = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        event = self._decode(record.value)
                        if event is not None:
                            self._apply(event, received)
                if not self._caught_up.is_set() and all(
                    consumer.position(tp) >= end[tp] for tp in partitions
                ):
                    self._caught_up.set()
            except Exception:
                if self._closing.is_set():
                    return
                log.exception("following %s failed; retrying", self.queue_id)
                time.sleep(0.5)

    def _decode(self, raw: bytes) -> BaseEvent | None:
        try:
            event: BaseEvent = decode_event(raw)
        except MessageError as exc:
            log.warning("skipping malformed telemetry: %s", exc)
            return None
        return event if event.queue_id == self.queue_id else None

    def _apply(self, event: BaseEvent, received: float) -> None:
        with self._lock:
            self._states = fold(self._states, event)
            listeners = list(self._listeners)
            waiter = self._waiters.get(event.correlation_id) if isinstance(event, Pong) else None
            if waiter is not None and isinstance(event, Pong):
                waiter.replies.append(PongReply(event.producer, received - waiter.sent_at, event))
                if len(waiter.replies) >= waiter.expect:
                    waiter.done.set()
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("queue listener failed")

    # -- lifecycle and display ---------------------------------------------------------------
    def close(self) -> None:
        """Close the panels, end the follower thread and release the Kafka clients."""
        for panel in self._panels:
            panel.close()
        self._panels.clear()
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.close(timeout=5)
        self._thread = self._consumer = self._producer = None

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
        from streamforge_nb.ui.panel import QueuePanel

        panel = QueuePanel(self, **options)
        self._panels.append(panel)
        return panel.widget
