"""Telemetry folded into state: one row per producer, one status per queue.

The only definitions of what a producer's events add up to and of when a queue has ended;
`Queue`, queue state, the CLI and the panels all fold through here.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from streamforge_nb.exceptions import MessageError
from streamforge_nb.platform.contract import (
    MAX_COUNT,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    TERMINAL_STATUSES,
    BaseEvent,
    decode_event,
)

__all__ = [
    "ENDED_STATUSES",
    "FINISHED_WITH_DEAD_LETTERS",
    "MALFORMED",
    "SETTLE_S",
    "JobView",
    "MalformedCounter",
    "ProducerState",
    "decode_telemetry",
    "ended",
    "event_line",
    "fold",
    "merge_jobs",
    "printable",
    "queue_status",
    "rtt_summary",
    "safe_count",
    "safe_timestamp",
]

log = logging.getLogger(__name__)

FINISHED_WITH_DEAD_LETTERS = "finished_with_dead_letters"
"""A queue whose workers finished while a sink refused messages to its DLQ."""
ENDED_STATUSES: tuple[str, ...] = (*TERMINAL_STATUSES, "failed", FINISHED_WITH_DEAD_LETTERS)
"""Statuses nothing follows: a producer's terminal ones (the contract's, and `failed`: its
Job ended first) and a queue's (`finished_with_dead_letters`)."""
SETTLE_S = 3.0
"""How long after a Job ended its last events may still be on their way to a reader."""


@dataclass(frozen=True)
class ProducerState:
    """What the telemetry says of one producer (worker) of the queue."""

    producer: str
    status: str
    records_written: int
    last_seen: float
    message: str | None = None
    dead_letters: int = 0
    """Messages the producer sent to its DLQ (a sink's refusals)."""
    anomalies: int = 0
    """Candles stored with an anomaly the exchange served (see `platform.anomalies`)."""

    @property
    def terminal(self) -> bool:
        return self.status in ENDED_STATUSES


def fold(states: dict[str, ProducerState], event: BaseEvent) -> dict[str, ProducerState]:
    """Return `states` updated by one event (a pong refreshes liveness, not the status).

    Never raises: times and counts are clamped into the contract's bounds, so even a model
    built without validation cannot put a value no reader can show into the state.
    """
    previous = states.get(event.producer)
    seen = safe_timestamp(event.timestamp) or time.time()
    written = safe_count(event.records_written)
    if event.status == "pong":
        if previous is None:
            state = ProducerState(event.producer, "alive", written, seen)
        else:
            state = replace(previous, last_seen=max(previous.last_seen, seen))
    else:
        records = max(written, previous.records_written if previous else 0)
        message = event.message
        if event.status == "error" and previous is not None and previous.status == "error":
            # The first error is the worker's own reason; a later one (the Job runner's
            # generic "cell N failed ...") never overwrites it.
            message = previous.message or message
        dead = max(safe_count(event.dead_letters), previous.dead_letters if previous else 0)
        odd = max(safe_count(event.anomalies), previous.anomalies if previous else 0)
        state = ProducerState(event.producer, str(event.status), records, seen, message, dead, odd)
    return {**states, event.producer: state}


def safe_timestamp(value: Any) -> float | None:
    """Return `value` as Unix seconds if it is a number within the contract's window, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if math.isnan(number) or not MIN_TIMESTAMP <= number <= MAX_TIMESTAMP:
        return None
    return number


def safe_count(value: Any) -> int:
    """Return `value` as a count within 0..int64 max (anything else counts as 0)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), MAX_COUNT)


# C0 and C1 control characters, DEL, and the Unicode line/paragraph separators and bidi
# overrides: a terminal or log line must show them, not obey them.
_UNSAFE = {
    **{c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]},
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
    **{c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))},
}


def printable(text: Any, limit: int = 500) -> str:
    """Return `text` safe for a terminal: control characters escaped, at most `limit` chars."""
    value = text if isinstance(text, str) else str(text)
    escaped = value.translate(_UNSAFE)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "\u2026"


def event_line(event: BaseEvent, *, as_json: bool = False) -> str:
    """Return one printable line for `event` (what `streamforge-nb events` prints).

    Plain: `HH:MM:SS.mmm producer status records message`, every text field with its control
    characters escaped (`printable`), so a message can neither break the line nor drive the
    terminal. JSON: the event as sent; orjson escapes control characters inside strings.
    Never raises.
    """
    if as_json:
        try:
            return orjson.dumps(event.model_dump(mode="json", exclude_none=True)).decode()
        except (TypeError, ValueError, orjson.JSONEncodeError):
            fields = {"queue_id": event.queue_id, "producer": event.producer}
            fields = {k: printable(v) for k, v in {**fields, "status": event.status}.items()}
            return orjson.dumps({**fields, "unprintable": True}).decode()
    seen = safe_timestamp(event.timestamp)
    when = "??:??:??.???"
    if seen is not None:
        when = time.strftime("%H:%M:%S", time.gmtime(seen)) + f".{int(seen * 1000) % 1000:03d}"
    line = (
        f"{when} {printable(event.producer, 100):<28} {printable(event.status, 20):<11} "
        f"{safe_count(event.records_written):>10,} {printable(event.message or '')}"
    )
    return line.rstrip()


class MalformedCounter:
    """Count malformed telemetry; log one summary line per `every_s` at most.

    A busy platform's topic may hold thousands of malformed events of other queues for a week:
    logging each, in every process that reads the topic, would drown the logs. Every skipped
    message is in exactly one summary: those skipped inside a window are reported when it
    ends (a timer), or by `flush()`, not only if another one comes after it.
    """

    def __init__(self, every_s: float = 60.0, logger: logging.Logger = log) -> None:
        self.every_s = every_s
        self.logger = logger
        self.total = 0
        self._since_log = 0
        self._last_log = -math.inf
        self._latest = ""
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def note(self, error: BaseException | str) -> None:
        """Count one malformed message; log the summary now, or when the window ends."""
        now = time.monotonic()
        with self._lock:
            self.total += 1
            self._since_log += 1
            self._latest = printable(error, 300)
            wait = self._last_log + self.every_s - now
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._window_ended)
                    self._timer.daemon = True
                    self._timer.start()
                return
            report = self._take(now)
        self._log(*report)

    def flush(self) -> None:
        """Log the messages skipped since the last summary now, if any."""
        with self._lock:
            if not self._since_log:
                return
            report = self._take(time.monotonic())
        self._log(*report)

    def _take(self, now: float) -> tuple[int, int, str]:
        # Under the lock: the counts of one summary belong together.
        report = (self._since_log, self.total, self._latest)
        self._since_log = 0
        self._last_log = now
        return report

    def _window_ended(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def _log(self, count: int, total: int, latest: str) -> None:
        self.logger.warning(
            "skipped %d malformed telemetry message(s) since the last report (%d in all); "
            "latest: %s",
            count,
            total,
            latest,
        )


MALFORMED = MalformedCounter()
"""The process's one counter of malformed telemetry (Queue, queue state, workers)."""
# A short-lived process (a CLI command) reports what it skipped in its last window.
atexit.register(MALFORMED.flush)


def decode_telemetry(raw: bytes) -> BaseEvent | None:
    """Decode one queue-events record; a malformed one is counted (`MALFORMED`), not raised."""
    try:
        event: BaseEvent = decode_event(raw)
    except MessageError as exc:
        MALFORMED.note(exc)
        return None
    return event


def rtt_summary(seconds: list[float]) -> dict[str, float]:
    """Return min, p50, p99 and max of round-trip times, in milliseconds (nearest rank)."""
    if not seconds:
        raise ValueError("no round trips to summarise")
    ordered = sorted(seconds)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    return {
        "min": ordered[0] * 1000,
        "p50": rank(0.5),
        "p99": rank(0.99),
        "max": ordered[-1] * 1000,
    }


def ended(states: Mapping[str, ProducerState], targets: Iterable[str] = ()) -> bool:
    """Tell whether every producer has ended and each of `targets` (worker kinds) reported.

    The targets matter: a fast first step must not end a queue before a slower one started.
    """
    seen = {producer.partition("__")[0] for producer in states}
    return bool(states) and all(s.terminal for s in states.values()) and seen >= set(targets)


class JobView(Protocol):
    """What a launcher knows of one Job, as `merge_jobs` reads it (`launchers.JobStatus`).

    `state`: pending, active, succeeded, failed (or unknown: ended, how is not known here);
    `detail`: why it is where it is ("exit code 1", "killed by SIGKILL", "OOMKilled ...");
    `ended_at`: when it ended (Unix seconds), if known.
    """

    @property
    def producer(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def ended_at(self) -> float | None: ...


def merge_jobs(
    states: Mapping[str, ProducerState],
    jobs: Iterable[JobView],
    *,
    now: float | None = None,
    settle_s: float = SETTLE_S,
) -> dict[str, ProducerState]:
    """Return `states` merged with what the launcher knows of the queue's Jobs.

    The one definition of a queue's status from both sources (`Queue.status/wait/producers`,
    `Queue.list()`, the panels). A Job that ended (more than `settle_s` ago, so its last
    events had time to arrive) while its producer has no terminal event makes the producer
    `failed`, with the launcher's reason and what the telemetry last said: "exit code 1
    before any telemetry", "killed by SIGKILL after loading". A Job still pending or running
    that has sent nothing yet shows as `pending`/`active` (the launcher's word). A terminal
    event always wins: the worker's own reason is never replaced.
    """
    now = time.time() if now is None else now
    merged = dict(states)
    for job in jobs:
        producer = job.producer or next(
            (p for p in merged if p.partition("__")[0] == job.target), job.target
        )
        state = merged.get(producer)
        if state is not None and state.terminal:
            merged[producer] = _with_job_failure(state, job)
            continue
        if job.state in ("pending", "active"):
            if state is None:
                merged[producer] = ProducerState(producer, job.state, 0, now, job.detail or None)
            elif job.detail:  # e.g. a Pod waiting in ImagePullBackOff after it reported
                merged[producer] = replace(state, message=job.detail)
            continue
        if job.ended_at is not None and now - job.ended_at < settle_s:
            continue  # its last events may still be on their way
        how = job.detail or f"Job {job.state}"
        when = "before any telemetry" if state is None else f"after {state.status}"
        merged[producer] = ProducerState(
            producer,
            "failed",
            state.records_written if state else 0,
            job.ended_at or (state.last_seen if state else now),
            f"{how} {when} (no terminal event came from its worker)",
        )
    return merged


def _with_job_failure(state: ProducerState, job: JobView) -> ProducerState:
    """A terminal state, told why its Job failed when that says more than the worker could.

    A worker interrupted by SIGTERM cannot know it was the Job's deadline (or an eviction)
    that stopped it: the Job's failure makes the producer `failed`, its reason first. An
    `error` keeps the worker's reason, with the Job's (e.g. OOMKilled) after it.
    """
    if job.state != "failed" or not job.detail or job.detail in (state.message or ""):
        return state
    if state.status == "interrupted":
        told = f" (the worker said: {state.message})" if state.message else ""
        return replace(state, status="failed", message=f"{job.detail}{told}")
    if state.status == "error" and any(r in job.detail for r in _UNSEEN_BY_WORKERS):
        return replace(state, message=f"{state.message or 'error'} [Job: {job.detail}]")
    return state


# Why a Job failed that its worker cannot see from inside (its exit code it can).
_UNSEEN_BY_WORKERS = ("OOMKilled", "DeadlineExceeded", "Evicted")


def queue_status(states: Mapping[str, ProducerState], targets: Iterable[str]) -> str:
    """Fold producer states into one queue status, as `Queue.list()` shows it.

    launched (nothing known yet), running, error (a worker reported one), failed (a Job
    ended without a terminal event), interrupted, finished_with_dead_letters (finished, but
    a sink refused messages to its DLQ: the store lacks them), finished.
    """
    if not states:
        return "launched"
    values = [s.status for s in states.values()]
    if "error" in values:
        return "error"
    if "failed" in values:
        return "failed"
    if ended(states, targets):
        if "interrupted" in values:
            return "interrupted"
        if any(s.dead_letters for s in states.values()):
            return FINISHED_WITH_DEAD_LETTERS
        return "finished"
    return "running"
