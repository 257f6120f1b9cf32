"""Queue state (the platform's `queue_state`): a record per launch, updated from telemetry.

A launch creates the record (id, symbol, type, targets, parameters, data topic, output notebook
locations, times) before anything else, once per queue id (`CandleStore.create_queue_state`,
a compare-and-set); later changes replace it (`save_queue_state`). `refresh` folds the
`queue-events` history into the records that are not finished yet (status, records written,
error message) and saves them back, so the state is right whoever looks, in whichever kernel.
Each unfinished record is read from its own partition (murmur2 of its queue id) from its
`created_at`, never from offset 0, so the cost follows the unfinished queues, not the topic's
history. A caller refreshing the same queues again and again (`Batch.wait`, once a second)
keeps a `HistoryReader`: it reads on from where its last read stopped, each event once.
Records live in the CandleStore's backend: the `queue_state` collection in ArangoDB, a SQLite
table next to the embedded store's files.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, TopicPartition

from streamforge_nb.control.telemetry import (
    ENDED_STATUSES,
    JobView,
    ProducerState,
    decode_telemetry,
    ended,
    fold,
    merge_jobs,
    queue_status,
    safe_timestamp,
)
from streamforge_nb.exceptions import kafka_errors
from streamforge_nb.kafka.clients import make_consumer
from streamforge_nb.kafka.partitions import START_SLACK_S, offsets_at, partition_for
from streamforge_nb.kafka.positions import read_to_end
from streamforge_nb.platform.contract import BaseEvent
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    from streamforge_nb.store.candles import CandleStore

__all__ = ["HistoryReader", "final_states", "launcher_jobs", "new_record", "refresh", "settled"]

log = logging.getLogger(__name__)


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
    launcher_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the state record of a launch that has not reported yet."""
    now = time.time()
    return {
        "queue_id": queue_id, "symbol": symbol, "type": type_, "targets": list(targets),
        "parameters": dict(parameters), "status": "launched", "created_at": now,
        "updated_at": now, "records_written": 0, "error_message": None,
        "data_topic": data_topic, "outputs": dict(outputs), "launcher": launcher,
        "launcher_options": dict(launcher_options or {}), "jobs": list(jobs),
    }  # fmt: skip


def refresh(
    store: CandleStore,
    settings: Settings,
    only: Collection[str] | None = None,
    *,
    reader: HistoryReader | None = None,
    deadline: float | None = None,
) -> list[dict[str, Any]]:
    """Update unfinished records from the telemetry history; return every queue's record,
    or only those of the queue ids in `only` (the others are neither read nor refreshed).

    With `reader` (kept by the caller across refreshes of the same queues), only what
    arrived since its last read is read; by `deadline` (`time.monotonic()`) it stops
    reading and the records show what it read so far.
    """
    # A batch's record (workflow.batch) lives in the same store but is no queue.
    records = [
        r
        for r in store.queue_states()
        if r.get("kind") != "batch" and (only is None or r.get("queue_id") in only)
    ]
    open_ids = {
        r["queue_id"]: safe_timestamp(r.get("created_at"))
        for r in records
        if r.get("status") not in ENDED_STATUSES and isinstance(r.get("queue_id"), str)
    }
    if not open_ids:
        return records
    if reader is not None:
        folded = reader.read(open_ids, deadline)
    else:
        folded = _fold_history(settings, open_ids)
    launchers: dict[str, Any] = {}
    for record in records:
        if record.get("queue_id") not in open_ids:
            continue
        jobs = launcher_jobs(record, launchers)
        states = merge_jobs(folded.get(record["queue_id"], {}), jobs)
        if not states:
            continue
        updated = settled(record, states)
        if updated != record:
            store.save_queue_state(updated)
            record.update(updated)
    return records


def settled(record: Mapping[str, Any], states: Mapping[str, ProducerState]) -> dict[str, Any]:
    """Return `record` updated from its queue's producer `states` (not empty).

    Once the queue has ended, the record keeps the producers' final states too
    (`final_states`): a later status() answers from them instead of reading every event the
    topic received since the queue's start.
    """
    status = queue_status(states, record.get("targets") or ())
    errors = [s.message for s in states.values() if s.status == "error" and s.message]
    updated = {
        **record,
        "status": status,
        "records_written": max(s.records_written for s in states.values()),
        "error_message": "; ".join(errors) or None,
        "updated_at": max(s.last_seen for s in states.values()),
    }
    if ended(states, record.get("targets") or ()):
        updated["producers"] = [asdict(s) for s in states.values()]
    return updated


def final_states(record: Mapping[str, Any] | None) -> dict[str, ProducerState] | None:
    """Return the producers' final states `record` keeps if its queue ended, else None.

    None too for a record saved before they were kept, or one whose list is not what
    `settled` writes: the caller then reads the telemetry, as for a running queue.
    """
    if record is None or record.get("status") not in ENDED_STATUSES:
        return None
    kept = record.get("producers")
    if not isinstance(kept, list) or not kept:
        return None
    try:
        states = [ProducerState(**item) for item in kept]
    except TypeError:
        return None
    if not all(isinstance(s.producer, str) and s.status in ENDED_STATUSES for s in states):
        return None
    return {s.producer: s for s in states}


def launcher_jobs(record: Mapping[str, Any], cache: dict[str, Any] | None = None) -> list[JobView]:
    """What the launcher recorded in `record` knows of the queue's Jobs ([] if unreachable)."""
    from streamforge_nb.control.launchers import launcher_for

    kind = record.get("launcher")
    if not isinstance(kind, str) or not kind:
        return []
    options = record.get("launcher_options") or {}
    key = kind + json.dumps(options, sort_keys=True, default=str)
    cache = {} if cache is None else cache
    try:
        if key not in cache:
            cache[key] = launcher_for(kind, dict(options))
        return list(cache[key].list(record["queue_id"]))
    except Exception as exc:  # a status without the launcher's half beats no status
        log.warning("the %s launcher of %s is not reachable: %s", kind, record["queue_id"], exc)
        cache[key] = _Unreachable()
        return []


class _Unreachable:
    """A launcher that could not be reached once: not asked again in the same refresh."""

    def list(self, queue_id: str) -> list[JobView]:
        return []


def _fold_history(
    settings: Settings, queue_ids: Mapping[str, float | None]
) -> dict[str, dict[str, ProducerState]]:
    """Fold the events of `queue_ids` (queue id -> start time, if known), each read from its
    own partition from its start time; a partition is read once, from its earliest start."""
    topic = settings.queue_events_topic
    consumer = make_consumer(settings, enable_auto_commit=False, fetch_max_wait_ms=100)
    folded: dict[str, dict[str, ProducerState]] = {}
    try:
        with kafka_errors("reading " + topic, settings.kafka_bootstrap_servers):
            numbers = consumer.partitions_for_topic(topic)
            if not numbers:
                return folded
            count = len(numbers)
            starts: dict[TopicPartition, float | None] = {}
            for qid, created in queue_ids.items():
                tp = TopicPartition(topic, partition_for(qid, count))
                since = None if created is None else created - START_SLACK_S
                if tp not in starts:
                    starts[tp] = since
                else:
                    known = starts[tp]
                    starts[tp] = None if known is None or since is None else min(known, since)
            partitions = sorted(starts, key=lambda tp: tp.partition)
            end = consumer.end_offsets(partitions)
            start: dict[TopicPartition, int] = {}
            for tp in partitions:
                start.update(offsets_at(consumer, [tp], starts[tp]))
            remaining = [tp for tp in partitions if start[tp] < end[tp]]
            if not remaining:
                return folded
            consumer.assign(remaining)
            for tp in remaining:
                consumer.seek(tp, start[tp])
            needles = {qid.encode(): qid for qid in queue_ids}

            def handle(batch: list[Any]) -> None:
                for record in batch:
                    event = _event(record.value, record.key, needles)
                    if event is not None and event.queue_id in queue_ids:
                        folded[event.queue_id] = fold(folded.get(event.queue_id, {}), event)

            ends = {tp: end[tp] for tp in remaining}
            read_to_end(consumer, ends, handle, what="reading the history of " + topic)
    finally:
        consumer.close()
    return folded


class HistoryReader:
    """Fold the queue-events of a fixed set of queues, reading each event once across reads.

    What `refresh` alone makes and reads anew each time, kept: one group-less consumer,
    each queue's partition (murmur2 of its id) read from the queue's start, and the
    producer states folded so far. A read goes on from where the last one stopped to the
    end offsets of now, so a wait polling every second costs what arrived in that second,
    not the queues' whole history again (and no new consumer). Reads are serialised.
    """

    def __init__(self, settings: Settings, queue_ids: Collection[str]) -> None:
        self.settings = settings
        # Events of every one of these are folded, asked about yet or not: a queue launched
        # after its partition's read began has its events folded from the first.
        self._ids = frozenset(queue_ids)
        self._needles = {qid.encode(): qid for qid in self._ids}
        self._lock = threading.Lock()
        self._consumer: KafkaConsumer | None = None
        self._count = 0  # partitions of queue-events, once known
        self._begin: dict[TopicPartition, int] = {}  # where each partition's read began
        self._starts: dict[str, float | None] = {}  # queues asked about: their start time
        self._folded: dict[str, dict[str, ProducerState]] = {}
        self.records_read = 0
        """Records of queue-events read so far (what the reads cost)."""
        self.consumers_made = 0
        """Consumers made so far: one, unless a read failed (the next starts afresh)."""

    def __repr__(self) -> str:
        return f"HistoryReader({len(self._ids)} queues, {self.records_read} records read)"

    def read(
        self, queue_ids: Mapping[str, float | None], deadline: float | None = None
    ) -> dict[str, dict[str, ProducerState]]:
        """Return the producer states of `queue_ids` (id -> start time, if known), folded
        from their events up to now, or up to where `deadline` (`time.monotonic()`) stopped
        the read: the next read goes on from there. Ids not the reader's are not read."""
        topic = self.settings.queue_events_topic
        with self._lock:
            try:
                with kafka_errors("reading " + topic, self.settings.kafka_bootstrap_servers):
                    self._read(topic, queue_ids, deadline)
            except BaseException:
                # A failed poll may have moved positions past events not folded: start over.
                self._reset()
                raise
            return {qid: dict(self._folded[qid]) for qid in queue_ids if qid in self._folded}

    def close(self) -> None:
        """Release the consumer and forget what was read (a later read starts afresh)."""
        with self._lock:
            self._reset()

    def _read(
        self, topic: str, queue_ids: Mapping[str, float | None], deadline: float | None
    ) -> None:
        if self._consumer is None:
            self._consumer = make_consumer(self.settings, enable_auto_commit=False,
                                           fetch_max_wait_ms=100)  # fmt: skip
            self.consumers_made += 1
        consumer = self._consumer
        if not self._count:
            self._count = len(consumer.partitions_for_topic(topic) or ())
            if not self._count:
                return
        new = {q: t for q, t in queue_ids.items() if q in self._ids and q not in self._starts}
        if new:
            self._place(consumer, topic, new)
        partitions = sorted(self._begin, key=lambda tp: tp.partition)
        if not partitions:
            return
        end = consumer.end_offsets(partitions)

        def handle(batch: list[Any]) -> None:
            self.records_read += len(batch)
            for record in batch:
                event = _event(record.value, record.key, self._needles)
                if event is not None and event.queue_id in self._ids:
                    folded = self._folded.get(event.queue_id, {})
                    self._folded[event.queue_id] = fold(folded, event)

        what = "reading the history of " + topic
        read_to_end(consumer, end, handle, what=what, deadline=deadline)

    def _place(self, consumer: KafkaConsumer, topic: str, new: Mapping[str, float | None]) -> None:
        """Have the partitions of the `new` queues read from their start (as `_fold_history`)."""
        wanted: dict[TopicPartition, float | None] = {}
        for qid, created in new.items():
            tp = TopicPartition(topic, partition_for(qid, self._count))
            since = None if created is None else created - START_SLACK_S
            known = wanted.get(tp, since)
            wanted[tp] = None if known is None or since is None else min(known, since)
        seeks: dict[TopicPartition, int] = {}
        for tp, since in wanted.items():
            offset = offsets_at(consumer, [tp], since)[tp]
            if tp in self._begin and offset >= self._begin[tp]:
                continue  # read from before this queue's start already
            if tp in self._begin:
                # A queue that started before this partition's read began (launched at the
                # same time, on a clock a little behind): fold that partition again from it.
                for qid in self._ids:
                    if partition_for(qid, self._count) == tp.partition:
                        self._folded.pop(qid, None)
            self._begin[tp] = seeks[tp] = offset
        if seeks:
            consumer.assign(sorted(self._begin, key=lambda tp: tp.partition))
            for tp, offset in seeks.items():
                consumer.seek(tp, offset)
        self._starts.update(new)

    def _reset(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._count = 0
        self._begin, self._starts, self._folded = {}, {}, {}
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:  # closing what failed must not hide why it failed
                log.warning("closing the queue-events reader failed: %s", exc)


def _event(raw: bytes | None, key: bytes | None, needles: Mapping[bytes, str]) -> BaseEvent | None:
    if raw is None:
        return None
    # Skip other queues' telemetry unparsed: a record keyed by another id that names none of
    # ours (a text search, while there are few enough ids for it to be cheaper than parsing).
    if (
        key is not None
        and key not in needles
        and len(needles) <= 32
        and not any(n in raw for n in needles)
    ):
        return None
    return decode_telemetry(raw)
