"""`Queue`: the handle a notebook holds on a queue id.

A Queue follows `queue-events` for its queue with two consumers, started on first use:

- the live one, positioned at the end of every partition FIRST, hands each pong to the ping
  waiting for it the moment it arrives, whatever the topic's history;
- the history one, in its own thread, reads only what precedes that end since the queue's
  start: the queue's own partition (murmur2 of the queue id over the real partition count)
  from the queue's start time (`since`, or the day in the queue id; `offsets_for_times`),
  and, when `since` is known, the other partitions from it too (events of services that do
  not key by queue id). Live events wait behind the history so the fold stays in order.

Neither ever reads from offset 0 when a start is known, so opening a Queue, pinging,
`status()`, `events()` and `wait()` cost the same with 1k or 1M events of other queues on the
topic. `close()` (or leaving a `with` block) ends both threads.
"""

from __future__ import annotations

import builtins
import html
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from streamforge_nb.control.telemetry import (
    MALFORMED,
    JobView,
    ProducerState,
    ended,
    fold,
    merge_jobs,
    safe_timestamp,
)
from streamforge_nb.exceptions import MessageError, QueueTimeout, StreamForgeError, kafka_errors
from streamforge_nb.kafka.clients import make_consumer, make_producer
from streamforge_nb.kafka.partitions import (
    START_SLACK_S,
    offsets_at,
    partition_for,
    queue_start_time,
)
from streamforge_nb.kafka.send import SendResult, refusal, send_checked
from streamforge_nb.platform.contract import (
    BaseEvent,
    Interrupted,
    PingCommand,
    Pong,
    StopCommand,
    decode_event,
)
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_WAIT_S", "PongReply", "Queue"]

log = logging.getLogger(__name__)
DEFAULT_WAIT_S = 3600.0
"""`Queue.wait()`'s default timeout: it always ends, even when nothing can tell it to."""
_JOBS_TTL_S = 1.0  # how long the launcher's answer is reused (the API server is not polled)
_POLL_MS = 100
_CONSUMER = {"enable_auto_commit": False, "fetch_max_wait_ms": 100}
# History readers fetch in small responses: kafka-python parses a response in the network
# thread every client of the process shares, and a big one delays the live consumers' pongs.
_HISTORY = {"max_partition_fetch_bytes": 256 * 1024, "fetch_max_bytes": 1024 * 1024}


@dataclass(frozen=True)
class _ReadPlan:
    """Which offsets of queue-events hold a queue's history: [start, end) per partition."""

    partitions: builtins.list[TopicPartition]
    start: dict[TopicPartition, int]
    end: dict[TopicPartition, int]

    @property
    def remaining(self) -> builtins.list[TopicPartition]:
        return [tp for tp in self.partitions if self.start[tp] < self.end[tp]]


def _in_order(events: builtins.list[BaseEvent], plan: _ReadPlan) -> builtins.list[BaseEvent]:
    """Return `events` in time order when read from several partitions (else as read)."""
    if len(plan.remaining) > 1:
        return sorted(events, key=lambda e: e.timestamp)
    return events


def _epoch(value: float | datetime | Any | None) -> float | None:
    """Return `value` (Unix seconds, a datetime or a pandas Timestamp) as Unix seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    raise TypeError(f"since must be Unix seconds or a datetime, got {value!r}")



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
        self.queue_id = queue_id
        self.since = _epoch(since)
        self._needle = queue_id.encode()
        self.settings = settings or Settings.from_env()
        # The launcher that started this queue's Jobs (a `launchers.Launcher`), if known.
        self.launcher = launcher
        self.store = store
        self._looked_up = launcher is not None
        self._reattach_lock = threading.Lock()
        self._jobs_cache: tuple[float, builtins.list[JobView]] | None = None
        self._lock = threading.Lock()
        self._states: dict[str, ProducerState] = {}
        self._waiters: dict[str, _PingWaiter] = {}
        self._listeners: builtins.list[Callable[[BaseEvent], None]] = []
        self._producer: KafkaProducer | None = None
        self._consumer: KafkaConsumer | None = None
        self._thread: threading.Thread | None = None
        self._history_thread: threading.Thread | None = None
        self._live_start: dict[TopicPartition, int] = {}
        self._pending: builtins.list[BaseEvent] | None = []  # live events behind the history
        self._caught_up = threading.Event()
        self._closing = threading.Event()
        self._follow_lock = threading.Lock()
        self._producer_lock = threading.Lock()
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
            # A record saved before the contract bounded timestamps may hold any number.
            frame[column] = pd.to_datetime(
                frame[column].map(safe_timestamp), unit="s", utc=True, errors="coerce"
            )
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
        return any(j.state in ("active", "pending") for j in self._job_views())

    def _job_views(self, *, fresh: bool = False) -> builtins.list[Any]:
        # launchers.JobStatus, a telemetry.JobView with a name
        """The launcher's Jobs of this queue ([] without one), reused for a second."""
        launcher = self._reattach()
        if launcher is None:
            return []
        now = time.monotonic()
        cached = self._jobs_cache
        if cached is not None and not fresh and now - cached[0] < _JOBS_TTL_S:
            return cached[1]
        try:
            jobs = builtins.list(launcher.list(self.queue_id))
        except StreamForgeError as exc:  # telemetry alone, rather than no status
            log.warning("could not list the Jobs of %s: %s", self.queue_id, exc)
            jobs = cached[1] if cached is not None else []
        self._jobs_cache = (now, jobs)
        return jobs

    def _reattach(self) -> Any:
        """Return the launcher, reattaching the one queue state records (once); or None."""
        with self._reattach_lock:
            if not self._looked_up:
                self._lookup()
                self._looked_up = True
        return self.launcher

    def _lookup(self) -> None:
        from streamforge_nb.store.candles import CandleStore
        from streamforge_nb.workflow.launchers import launcher_for

        try:
            with CandleStore.open(
                self.store or self.settings.arango_url, settings=self.settings
            ) as store:
                record = next(
                    (r for r in store.queue_states() if r.get("queue_id") == self.queue_id), None
                )
            if record is not None and record.get("launcher"):
                self.launcher = launcher_for(
                    record["launcher"], record.get("launcher_options") or {}
                )
                if self.since is None:
                    self.since = safe_timestamp(record.get("created_at"))
        except Exception as exc:  # no store, no kubeconfig: telemetry alone
            log.warning("could not reattach the launcher of %s: %s", self.queue_id, exc)

    def _launcher(self) -> Any:
        if self._reattach() is None:
            raise StreamForgeError(
                f"{self!r} does not know its launcher and its queue state records none; "
                "pass launcher= (e.g. LocalLauncher()) or store= (where it was launched)"
            )
        return self.launcher

    # -- commands ----------------------------------------------------------------------------
    def ping(
        self, target: str | None = None, *, timeout: float = 5.0, expect: int = 1
    ) -> builtins.list[PongReply]:
        """Send a ping; return the pongs matched to it once `expect` came (or at `timeout`).

        A ping needs only the live end of queue-events: it never waits for (or starts) the
        reading of the queue's history.
        """
        self._connect_while(lambda: self._follow(history=False))
        ping = PingCommand.new(self.queue_id, target)
        waiter = _PingWaiter(expect)
        with self._lock:
            self._waiters[ping.correlation_id] = waiter
        try:
            waiter.sent_at = time.perf_counter()
            sent = self._send(ping)
            waiter.done.wait(max(0.0, timeout - (time.perf_counter() - waiter.sent_at)))
        finally:
            with self._lock:
                self._waiters.pop(ping.correlation_id, None)
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

    def _make_producer(self) -> KafkaProducer:
        with self._producer_lock:
            if self._producer is None:
                self._producer = make_producer(
                    self.settings, linger_ms=0, acks=1, enable_idempotence=False
                )
                # Learn queue-control's partitions now, not on the first send; a refusal
                # (ACLs, unknown topic) is the one the send would name.
                topic = self.settings.queue_control_topic
                try:
                    self._producer.partitions_for(topic)
                except KafkaError as exc:
                    raise refusal(exc, self.settings, topic, f"sending to {topic}") from exc
            return self._producer

    def _send(self, command: PingCommand | StopCommand) -> SendResult:
        """Send `command` to the queue's partition of queue-control; wait for the broker."""
        producer = self._make_producer()
        result = send_checked(producer, self.settings, self.settings.queue_control_topic, command)
        assert result is not None  # waited for
        return result

    # -- telemetry ---------------------------------------------------------------------------
    def events(self, follow: bool = False, *, timeout: float | None = None) -> Iterator[BaseEvent]:
        """Yield this queue's events from its start; with `follow`, keep waiting for more."""
        consumer = make_consumer(self.settings, **_CONSUMER, **_HISTORY)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with kafka_errors("reading queue-events", self.settings.kafka_bootstrap_servers):
                plan = self._plan(consumer, None)
                consumer.assign(plan.partitions)
                for tp in plan.partitions:
                    consumer.seek(tp, plan.start[tp])
            # The history (up to the end offsets at open) is one queue's events: gather it and
            # yield it in time order, since partitions (unkeyed senders) interleave only by time.
            history: builtins.list[BaseEvent] = []
            in_history = True
            while deadline is None or time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=_POLL_MS, max_records=5000).values():
                    for record in records:
                        event = self._decode(record.value)
                        if event is None:
                            continue
                        if in_history:
                            history.append(event)
                        else:
                            yield event
                if in_history and all(
                    consumer.position(tp) >= plan.end[tp] for tp in plan.partitions
                ):
                    in_history = False
                    yield from _in_order(history, plan)
                    if not follow:
                        return
            if in_history:
                yield from _in_order(history, plan)
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
                "last_seen": pd.to_datetime(
                    safe_timestamp(s.last_seen), unit="s", utc=True, errors="coerce"
                ),
                "age_s": round(now - s.last_seen, 1),
                "message": s.message,
            }
            for s in self.producers().values()
        ]
        columns = ["producer", "status", "records_written", "last_seen", "age_s", "message"]
        return pd.DataFrame(rows, columns=columns).set_index("producer")

    def producers(self) -> dict[str, ProducerState]:
        """Return the current state of every producer (a snapshot): the telemetry merged
        with the launcher's Jobs (`telemetry.merge_jobs`), so a Job that ended without a
        terminal event shows its producer `failed` with the reason ("exit code 1 before any
        telemetry", "killed by SIGKILL after loading")."""
        self._follow()
        with self._lock:
            states = dict(self._states)
        return merge_jobs(states, self._job_views())

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

    def cancel(
        self, grace: float = 30.0, *, kill_grace: float = 10.0, target: str | None = None
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

        from streamforge_nb.kafka.send import send_event

        self._follow()
        self._caught_up.wait(10)
        launcher = self._reattach()
        before = {p: s.status for p, s in self.producers().items() if s.terminal}
        sent = time.time()
        try:
            self._send(StopCommand(queue_id=self.queue_id, target=target, timestamp=sent))
        except StreamForgeError as exc:  # deleting is still possible
            log.warning("could not send stop to %s: %s", self.queue_id, exc)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            states = self.producers()
            live = [s for p, s in states.items() if not s.terminal and _chosen(p, target)]
            running = [
                j for j in self._job_views(fresh=True)
                if j.state in ("active", "pending") and _chosen(j.target, target)
            ]  # fmt: skip
            if not live and not running:
                break
            time.sleep(0.2)
        states = self.producers()
        outcome = {p: before.get(p) or states[p].status for p in states}
        deleted: builtins.list[str] = []
        if launcher is not None:
            jobs = {j.name: j for j in self._job_views(fresh=True)}
            chosen = [j for j in jobs.values() if _chosen(j.target, target)]
            if target is None:
                deleted = launcher.delete(self.queue_id, grace=kill_grace)
            elif chosen:  # one target: only its Jobs (a launcher deletes per queue)
                deleted = _delete_jobs(launcher, self.queue_id, chosen, kill_grace)
            for name in deleted:
                job = jobs.get(name)
                if job is None:
                    continue
                producer = job.producer or job.target
                state = states.get(producer)
                if state is None or not state.terminal:
                    outcome[producer] = "deleted"
                    event = Interrupted(
                        queue_id=self.queue_id,
                        producer=producer,
                        records_written=state.records_written if state else 0,
                        message=f"deleted by cancel: no `interrupted` within the {grace:g} s "
                        f"grace (was {state.status if state else 'without telemetry'})",
                    )
                    try:
                        send_event(self.settings, event)
                    except StreamForgeError as exc:
                        log.warning("could not record the deletion of %s: %s", producer, exc)
            self._jobs_cache = None
        for producer in self.producers():
            if producer not in outcome:
                continue
            if outcome[producer] == "interrupted" and producer not in before:
                outcome[producer] = "stopped"
        # The deletions' own events: wait (briefly) until this handle has read them.
        settle = time.monotonic() + 10
        while time.monotonic() < settle and any(
            v == "deleted" and not self.producers().get(p, _NOTHING).terminal
            for p, v in outcome.items()
        ):
            time.sleep(0.1)
        frame = self.status()
        frame["cancel"] = pd.Series(outcome, dtype=object).reindex(frame.index)
        return frame

    def subscribe(self, callback: Callable[[BaseEvent], None]) -> None:
        """Call `callback(event)` from the follower thread for every event of this queue."""
        with self._lock:
            self._listeners.append(callback)
        self._follow()

    def unsubscribe(self, callback: Callable[[BaseEvent], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    # -- the follower threads ----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Tell whether `close()` was called."""
        return self._closing.is_set()

    def _follow(self, *, history: bool = True) -> None:
        """Start following the live end (once); with `history`, also read the history (once)."""
        with self._follow_lock:  # two threads asking at once must not start two followers
            if self._closing.is_set():
                raise StreamForgeError(f"{self!r} is closed")
            if self._thread is None:
                self._start_follower()
            if history and self._history_thread is None:
                self._history_thread = threading.Thread(
                    target=self._run_history, args=(self._live_start,),
                    name=f"queue-{self.queue_id}-history", daemon=True,
                )  # fmt: skip
                self._history_thread.start()

    def _plan(self, consumer: KafkaConsumer, end: dict[TopicPartition, int] | None) -> _ReadPlan:
        """Return where this queue's history is: its partition(s) from its start, up to `end`.

        `end` (default: the current end offsets) is where the live consumer starts, so
        history and live meet without a gap or an overlap.
        """
        topic = self.settings.queue_events_topic
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise StreamForgeError(f"topic {topic} does not exist (`streamforge-nb topics`)")
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        if end is None:
            end = dict(consumer.end_offsets(partitions))
        own = TopicPartition(topic, partition_for(self.queue_id, len(partitions)))
        if self.since is not None:
            # Every partition from the start: services that do not key by queue id count too.
            start = offsets_at(consumer, partitions, self.since - START_SLACK_S)
        else:
            start = dict(end)
            start.update(offsets_at(consumer, [own], queue_start_time(self.queue_id)))
        start = {tp: min(start[tp], end[tp]) for tp in partitions}
        return _ReadPlan(partitions, start, end)

    def _start_follower(self) -> None:
        consumer = make_consumer(self.settings, **_CONSUMER)
        try:
            with kafka_errors("following queue-events", self.settings.kafka_bootstrap_servers):
                topic = self.settings.queue_events_topic
                numbers = consumer.partitions_for_topic(topic)
                if not numbers:
                    raise StreamForgeError(
                        f"topic {topic} does not exist (`streamforge-nb topics`)"
                    )
                partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
                consumer.assign(partitions)
                # The live end first: a pong sent from now on is seen the moment it arrives.
                consumer.seek_to_end(*partitions)
                end = {tp: consumer.position(tp) for tp in partitions}
        except BaseException:
            consumer.close()
            raise
        self._consumer = consumer
        self._live_start = end
        self._thread = threading.Thread(
            target=self._run_live, args=(consumer,), name=f"queue-{self.queue_id}", daemon=True
        )
        self._thread.start()

    def _run_live(self, consumer: KafkaConsumer) -> None:
        while not self._closing.is_set():
            try:
                batches = consumer.poll(timeout_ms=_POLL_MS)
                received = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        event = self._decode(record.value)
                        if event is not None:
                            self._live(event, received)
            except Exception:
                if self._closing.is_set():
                    return
                log.exception("following %s failed; retrying", self.queue_id)
                time.sleep(0.5)

    def _run_history(self, end: dict[TopicPartition, int]) -> None:
        """Read the history up to where the live consumer started, then let live events in."""
        events: builtins.list[BaseEvent] = []
        plan = _ReadPlan([], {}, {})
        while not self._closing.is_set():
            consumer: KafkaConsumer | None = None
            try:
                events = []
                consumer = make_consumer(self.settings, **_CONSUMER, **_HISTORY)
                plan = self._plan(consumer, end)
                remaining = plan.remaining
                if remaining:
                    consumer.assign(remaining)
                    for tp in remaining:
                        consumer.seek(tp, plan.start[tp])
                while remaining and not self._closing.is_set():
                    for records in consumer.poll(timeout_ms=_POLL_MS, max_records=5000).values():
                        for record in records:
                            tp = TopicPartition(record.topic, record.partition)
                            if record.offset < plan.end[tp]:
                                event = self._decode(record.value)
                                if event is not None:
                                    events.append(event)
                    remaining = [tp for tp in remaining if consumer.position(tp) < plan.end[tp]]
                break
            except Exception:
                if self._closing.is_set():
                    return
                log.exception("reading the history of %s failed; retrying", self.queue_id)
                time.sleep(0.5)
            finally:
                if consumer is not None:
                    consumer.close()
        if self._closing.is_set():
            return
        events = _in_order(events, plan)
        with self._lock:
            pending = self._pending or []
            self._pending = None
        for event in [*events, *pending]:
            self._apply(event)
        self._caught_up.set()

    def _decode(self, raw: bytes | None) -> BaseEvent | None:
        # Most of the topic is other queues' telemetry: skip it without parsing it.
        if raw is None or self._needle not in raw:
            return None
        try:
            event: BaseEvent = decode_event(raw)
        except MessageError as exc:
            MALFORMED.note(exc)
            return None
        return event if event.queue_id == self.queue_id else None

    def _live(self, event: BaseEvent, received: float) -> None:
        """Match a pong at once; fold the event now, or after the history if it is not read."""
        with self._lock:
            if isinstance(event, Pong):
                waiter = self._waiters.get(event.correlation_id)
                if waiter is not None:
                    waiter.replies.append(
                        PongReply(event.producer, received - waiter.sent_at, event)
                    )
                    if len(waiter.replies) >= waiter.expect:
                        waiter.done.set()
            if self._pending is not None:
                self._pending.append(event)
                return
        self._apply(event)

    def _apply(self, event: BaseEvent) -> None:
        with self._lock:
            try:
                self._states = fold(self._states, event)
            except Exception:  # fold never raises on a decoded event; never lose the thread
                log.exception("could not fold an event of %s", self.queue_id)
            listeners = list(self._listeners)
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
        for thread in (self._thread, self._history_thread):
            if thread is not None:
                thread.join(timeout=5)
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.close(timeout=5)
        self._thread = self._history_thread = self._consumer = self._producer = None

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
