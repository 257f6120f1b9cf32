"""Queue state (the platform's `queue_state`): a record per launch, updated from telemetry.

A launch writes the record (id, symbol, type, targets, parameters, data topic, output notebook
locations, times). `refresh` folds the `queue-events` history into the records that are not
finished yet (status, records written, error message) and saves them back, so the state is
right whoever looks, in whichever kernel. Records live in the CandleStore's backend: the
`queue_state` collection in ArangoDB, a SQLite table next to the embedded store's files.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from streamforge_nb.control.telemetry import ProducerState, fold, queue_status
from streamforge_nb.exceptions import MessageError, kafka_errors
from streamforge_nb.kafka.clients import make_assigned_consumer
from streamforge_nb.platform.contract import TERMINAL_STATUSES, BaseEvent, decode_event
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    from streamforge_nb.store.candles import CandleStore

__all__ = ["new_record", "refresh"]

def new_record(
    *,
    queue_id: str,
    symbol: str | None,
    type_: str | None,
    targets: Iterable[str],
    parameters: Mapping[str, Any],
    data_topic: str,
    outputs: Mapping[str, str],
    launcher: str,
    jobs: Iterable[str],
) -> dict[str, Any]:
    """Return the state record of a launch that has not reported yet."""
    now = time.time()
    return {
        "queue_id": queue_id, "symbol": symbol, "type": type_, "targets": list(targets),
        "parameters": dict(parameters), "status": "launched", "created_at": now,
        "updated_at": now, "records_written": 0, "error_message": None,
        "data_topic": data_topic, "outputs": dict(outputs), "launcher": launcher,
        "jobs": list(jobs),
    }  # fmt: skip


def refresh(store: CandleStore, settings: Settings) -> list[dict[str, Any]]:
    """Update unfinished records from the telemetry history; return every record."""
    records = store.queue_states()
    open_ids = {r["queue_id"] for r in records if r["status"] not in TERMINAL_STATUSES}
    if not open_ids:
        return records
    folded = _fold_history(settings, open_ids)
    for record in records:
        states = folded.get(record["queue_id"])
        if not states:
            continue
        status = queue_status(states, record["targets"])
        errors = [s.message for s in states.values() if s.status == "error" and s.message]
        updated = {
            **record,
            "status": status,
            "records_written": max(s.records_written for s in states.values()),
            "error_message": "; ".join(errors) or None,
            "updated_at": max(s.last_seen for s in states.values()),
        }
        if updated != record:
            store.save_queue_state(updated)
            record.update(updated)
    return records


def _fold_history(settings: Settings, queue_ids: set[str]) -> dict[str, dict[str, ProducerState]]:
    topic = settings.queue_events_topic
    consumer, partitions = make_assigned_consumer(settings, topic)
    folded: dict[str, dict[str, ProducerState]] = {}
    try:
        with kafka_errors("reading " + topic, settings.kafka_bootstrap_servers):
            end = consumer.end_offsets(partitions)
            while any(consumer.position(tp) < end[tp] for tp in partitions):
                for batch in consumer.poll(timeout_ms=200, max_records=10_000).values():
                    for record in batch:
                        event = _event(record.value)
                        if event is not None and event.queue_id in queue_ids:
                            folded[event.queue_id] = fold(folded.get(event.queue_id, {}), event)
    finally:
        consumer.close()
    return folded


def _event(raw: bytes) -> BaseEvent | None:
    try:
        event: BaseEvent = decode_event(raw)
    except MessageError:
        return None  # Queue's follower logs malformed telemetry; the state just skips it
    return event
