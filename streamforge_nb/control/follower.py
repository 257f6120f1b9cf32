"""The telemetry follower behind a `Queue`: queue-events read live and, behind it, history.

Two consumers, started on first use: the live one (librdkafka, `kafka.send.live_reader`),
positioned at the end of every partition FIRST, hands each pong to the ping waiting for it
the moment it arrives, whatever the topic's history; the history one, in its own thread,
reads only what precedes that end since the queue's start: the queue's own partition
(murmur2 of the queue id over the real partition count) from the queue's start time
(`since`, or the day in the queue id; `offsets_for_times`), and, when `since` is known, the
other partitions from it too (events of services that do not key by queue id). Live events
wait behind the history so the fold stays in order. Neither ever reads from offset 0 when a
start is known.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streamforge_nb.control.telemetry import ProducerState, decode_telemetry, fold
from streamforge_nb.exceptions import BrokerUnavailable, StreamForgeError, kafka_errors
from streamforge_nb.kafka.clients import make_consumer, topic_partitions
from streamforge_nb.kafka.partitions import (
    START_SLACK_S,
    offsets_at,
    partition_for,
    queue_start_time,
)
from streamforge_nb.kafka.positions import positions as positions_of
from streamforge_nb.kafka.send import live_reader
from streamforge_nb.platform.contract import BaseEvent, Pong
from streamforge_nb.settings import Settings

__all__ = ["Follower", "PongReply"]

log = logging.getLogger("streamforge_nb.control.queue")
_POLL_MS = 100
_CONSUMER = {"enable_auto_commit": False, "fetch_max_wait_ms": 100}
# History readers fetch in small responses: kafka-python parses a response in the network
# thread every client of the process shares, and a big one delays the live consumers' pongs.
_HISTORY = {"max_partition_fetch_bytes": 256 * 1024, "fetch_max_bytes": 1024 * 1024}


@dataclass(frozen=True)
class _ReadPlan:
    """Which offsets of queue-events hold a queue's history: [start, end) per partition."""

    partitions: list[TopicPartition]
    start: dict[TopicPartition, int]
    end: dict[TopicPartition, int]

    @property
    def remaining(self) -> list[TopicPartition]:
        return [tp for tp in self.partitions if self.start[tp] < self.end[tp]]


HISTORY_STALL_S = 20.0
"""Seconds a history read may make no progress before its consumer is replaced."""
HISTORY_RENEWALS = 3


class _Stall:
    """Tell when a history read's positions stopped moving (raise after too many renewals)."""

    def __init__(self, plan: _ReadPlan) -> None:
        self.plan = plan
        self.seen: dict[TopicPartition, int] = {}
        self.since = time.monotonic()
        self.renewals = 0

    def stalled(self, positions: dict[TopicPartition, int]) -> bool:
        now = time.monotonic()
        if positions != self.seen:
            self.seen, self.since = dict(positions), now
            return False
        if now - self.since < HISTORY_STALL_S:
            return False
        self.renewals += 1
        short = ", ".join(
            f"{tp.partition}: {at} of {self.plan.end[tp]}"
            for tp, at in positions.items()
            if at < self.plan.end[tp]
        )
        if self.renewals > HISTORY_RENEWALS:
            raise BrokerUnavailable(
                f"reading the history of queue-events made no progress for "
                f"{HISTORY_STALL_S:g} s, {HISTORY_RENEWALS} times (partition {short})"
            )
        log.warning("history read stalled (partition %s); reading on with a new consumer", short)
        self.since = now
        return True


def _in_order(events: list[BaseEvent], plan: _ReadPlan) -> list[BaseEvent]:
    """Return `events` in time order when read from several partitions (else as read)."""
    if len(plan.remaining) > 1:
        return sorted(events, key=lambda e: e.timestamp)
    return events


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


class Follower:
    """Fold one queue's telemetry into producer states; match pongs to waiting pings."""

    def __init__(self, queue_id: str, settings: Settings, since: float | None) -> None:
        self.queue_id = queue_id
        self.settings = settings
        # When the queue started, if known (Unix seconds); may be learnt before following.
        self.since = since
        self._needle = queue_id.encode()
        self._lock = threading.Lock()
        self._states: dict[str, ProducerState] = {}
        self._waiters: dict[str, _PingWaiter] = {}
        self._listeners: list[Callable[[BaseEvent], None]] = []
        self._consumer: Any = None  # the live one (librdkafka)
        self._thread: threading.Thread | None = None
        self._history_thread: threading.Thread | None = None
        self._live_start: dict[TopicPartition, int] = {}
        self._pending: list[BaseEvent] | None = []  # live events behind the history
        self._settled = False  # the history is known (a queue's final states): never read
        self.history_records = 0
        """Records of queue-events the history thread has read (what status() cost)."""
        self.caught_up = threading.Event()
        self._closing = threading.Event()
        self._follow_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Follower({self.queue_id!r})"

    @property
    def closed(self) -> bool:
        """Tell whether `close()` was called."""
        return self._closing.is_set()

    def states(self) -> dict[str, ProducerState]:
        """Return a snapshot of the folded producer states."""
        with self._lock:
            return dict(self._states)

    def expect_pongs(self, correlation_id: str, expect: int) -> _PingWaiter:
        """Register a ping about to be sent; its pongs land in the returned waiter."""
        waiter = _PingWaiter(expect)
        with self._lock:
            self._waiters[correlation_id] = waiter
        return waiter

    def forget_ping(self, correlation_id: str) -> None:
        with self._lock:
            self._waiters.pop(correlation_id, None)

    def subscribe(self, callback: Callable[[BaseEvent], None]) -> None:
        """Call `callback(event)` from the follower thread for every event of this queue."""
        with self._lock:
            self._listeners.append(callback)
        self.follow()

    def unsubscribe(self, callback: Callable[[BaseEvent], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def follow(self, *, history: bool = True) -> None:
        """Start following the live end (once); with `history`, also read the history (once)."""
        with self._follow_lock:  # two threads asking at once must not start two followers
            if self._closing.is_set():
                raise StreamForgeError(f"{self!r} is closed")
            if self._thread is None:
                self._start_follower()
            if history and self._history_thread is None and not self._settled:
                self._history_thread = threading.Thread(
                    target=self._run_history, args=(self._live_start,),
                    name=f"queue-{self.queue_id}-history", daemon=True,
                )  # fmt: skip
                self._history_thread.start()

    def settle(self, states: dict[str, ProducerState]) -> bool:
        """Take `states`, the final ones of a queue that ended, as its whole history.

        Its history is then never read: what the topic received since the queue's start may
        be millions of other queues' events. Live events still fold on top. Return False
        (and change nothing) if the history is already being read.
        """
        with self._follow_lock:
            if self._history_thread is not None or self._settled:
                return False
            self._settled = True
            with self._lock:
                self._states = dict(states)
                pending = self._pending or []
                self._pending = None
        for event in pending:
            self._apply(event)
        self.caught_up.set()
        return True

    def plan(self, consumer: KafkaConsumer, end: dict[TopicPartition, int] | None) -> _ReadPlan:
        """Return where this queue's history is: its partition(s) from its start, up to `end`.

        `end` (default: the current end offsets) is where the live consumer starts, so
        history and live meet without a gap or an overlap.
        """
        topic = self.settings.queue_events_topic
        numbers = topic_partitions(consumer, topic, self.settings)
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
        # The live end first, through librdkafka: a pong is seen about a millisecond sooner
        # than through kafka-python (bench/ping.py), and one sent from now on is not missed.
        topic = self.settings.queue_events_topic
        consumer, ends = live_reader(self.settings, topic)
        self._consumer = consumer
        self._live_start = {TopicPartition(topic, p): end for p, end in ends.items()}
        self._thread = threading.Thread(
            target=self._run_live, args=(consumer,), name=f"queue-{self.queue_id}", daemon=True
        )
        self._thread.start()

    def _run_live(self, consumer: Any) -> None:
        while not self._closing.is_set():
            try:
                # A batch consume would wait for its timeout to fill the batch: a pong is
                # handed over as soon as the first message is there, the rest drained after.
                first = consumer.poll(_POLL_MS / 1000)
                received = time.perf_counter()
                if first is None:
                    continue
                for message in [first, *consumer.consume(500, 0)]:
                    if message.error() is not None:
                        continue  # librdkafka reconnects by itself; nothing was read
                    event = self._decode(message.value(), message.key())
                    if event is not None:
                        self._live(event, received)
            except Exception:
                if self._closing.is_set():
                    return
                log.exception("following %s failed; retrying", self.queue_id)
                time.sleep(0.5)

    def _run_history(self, end: dict[TopicPartition, int]) -> None:
        """Read the history up to where the live consumer started, then let live events in."""
        events: list[BaseEvent] = []
        plan = _ReadPlan([], {}, {})
        while not self._closing.is_set():
            consumer: KafkaConsumer | None = None
            try:
                events = []
                consumer = make_consumer(self.settings, **_CONSUMER, **_HISTORY)
                plan = self.plan(consumer, end)
                remaining = plan.remaining
                if remaining:
                    consumer.assign(remaining)
                    for tp in remaining:
                        consumer.seek(tp, plan.start[tp])
                stall = _Stall(plan)
                while remaining and not self._closing.is_set():
                    for records in consumer.poll(timeout_ms=_POLL_MS, max_records=5000).values():
                        self.history_records += len(records)
                        for record in records:
                            tp = TopicPartition(record.topic, record.partition)
                            if record.offset < plan.end[tp]:
                                event = self._decode(record.value, record.key)
                                if event is not None:
                                    events.append(event)
                    positions = positions_of(consumer, remaining, {**plan.start, **stall.seen})
                    remaining = [tp for tp in remaining if positions[tp] < plan.end[tp]]
                    if remaining and stall.stalled(positions):
                        # Read it again with a new consumer (below): nothing moved for a while.
                        raise BrokerUnavailable("the history read stalled")
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
        self.caught_up.set()

    def _decode(self, raw: bytes | None, key: bytes | None) -> BaseEvent | None:
        # Most of the topic is other queues' telemetry: skip it without parsing it (but what
        # is keyed by this queue is its own: a malformed record there is counted).
        if raw is None or (self._needle not in raw and key != self._needle):
            return None
        event = decode_telemetry(raw)
        return event if event is not None and event.queue_id == self.queue_id else None

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

    def events(self, follow: bool = False, *, timeout: float | None = None) -> Iterator[BaseEvent]:
        """Yield this queue's events from its start; with `follow`, keep waiting for more.

        Reading the history ends: a consumer whose position stops moving short of the end
        for `HISTORY_STALL_S` is replaced by a new one at the same offsets (a fetch session
        a broker stopped answering); after `HISTORY_RENEWALS` such stalls, BrokerUnavailable
        names the partitions and how far they got.
        """
        consumer = make_consumer(self.settings, **_CONSUMER, **_HISTORY)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with kafka_errors("reading queue-events", self.settings.kafka_bootstrap_servers):
                plan = self.plan(consumer, None)
                consumer.assign(plan.partitions)
                for tp in plan.partitions:
                    consumer.seek(tp, plan.start[tp])
            # The history (up to the end offsets at open) is one queue's events: gather it and
            # yield it in time order, since partitions (unkeyed senders) interleave only by time.
            history: list[BaseEvent] = []
            in_history = True
            stall = _Stall(plan)
            while deadline is None or time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=_POLL_MS, max_records=5000).values():
                    for record in records:
                        event = self._decode(record.value, record.key)
                        if event is None:
                            continue
                        if in_history:
                            history.append(event)
                        else:
                            yield event
                if not in_history:
                    continue
                positions = positions_of(consumer, plan.partitions, {**plan.start, **stall.seen})
                if all(positions[tp] >= plan.end[tp] for tp in plan.partitions):
                    in_history = False
                    yield from _in_order(history, plan)
                    if not follow:
                        return
                elif stall.stalled(positions):
                    consumer.close()
                    consumer = make_consumer(self.settings, **_CONSUMER, **_HISTORY)
                    consumer.assign(plan.partitions)
                    for tp, offset in positions.items():
                        consumer.seek(tp, offset)
            if in_history:
                yield from _in_order(history, plan)
        finally:
            consumer.close()

    def close(self) -> None:
        """End both threads and release the live consumer."""
        self._closing.set()
        for thread in (self._thread, self._history_thread):
            if thread is not None:
                thread.join(timeout=5)
        if self._consumer is not None:
            self._consumer.close()
        self._thread = self._history_thread = self._consumer = None
