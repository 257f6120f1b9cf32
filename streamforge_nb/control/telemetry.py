"""Telemetry folded into state: one row per producer, one status per queue.

The only definitions of what a producer's events add up to and of when a queue has ended;
`Queue`, queue state, the CLI and the panels all fold through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from streamforge_nb.platform.contract import TERMINAL_STATUSES, BaseEvent

__all__ = ["ProducerState", "ended", "fold", "queue_status", "rtt_summary"]


@dataclass(frozen=True)
class ProducerState:
    """What the telemetry says of one producer (worker) of the queue."""

    producer: str
    status: str
    records_written: int
    last_seen: float
    message: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def fold(states: dict[str, ProducerState], event: BaseEvent) -> dict[str, ProducerState]:
    """Return `states` updated by one event (a pong refreshes liveness, not the status)."""
    previous = states.get(event.producer)
    if event.status == "pong":
        if previous is None:
            state = ProducerState(event.producer, "alive", event.records_written, event.timestamp)
        else:
            state = replace(previous, last_seen=max(previous.last_seen, event.timestamp))
    else:
        records = max(event.records_written, previous.records_written if previous else 0)
        state = ProducerState(event.producer, event.status, records, event.timestamp, event.message)
    return {**states, event.producer: state}


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


def queue_status(states: Mapping[str, ProducerState], targets: Iterable[str]) -> str:
    """Fold producer states into one queue status, as `Queue.list()` shows it."""
    if not states:
        return "launched"
    values = [s.status for s in states.values()]
    if "error" in values:
        return "error"
    if ended(states, targets):
        return "interrupted" if "interrupted" in values else "finished"
    return "running"
