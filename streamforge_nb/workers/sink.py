"""The store sink (target `arango-candles`, the platform's name): data topic -> CandleStore.

Consumes the queue's data topic in a consumer group, validates every message, writes batches
to the CandleStore (idempotent upserts by `_key`) and commits Kafka offsets only after the
store has the batch: a crash replays at most one batch, and the replay overwrites itself.
A message that breaks the contract is counted, logged and copied to `<topic>-dlq` with the
reason in a header; it never stops the pipeline. Exchange-empty markers (header
`streamforge-record: exchange-empty`, see `platform.markers`) are told apart before candle
decoding, checked, and recorded with `CandleStore.write_exchange_empty` in the same batch; a
malformed one goes to the DLQ like any bad message.

It finishes once the loader has reported `finished` and the consumer has reached the end of
the topic. Runs as `streamforge-nb sink ...`, `python -m streamforge_nb.workers.sink ...` and
`notebooks/arango_candles.ipynb`.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from kafka import KafkaProducer

from streamforge_nb import workers
from streamforge_nb.control.queue import Queue
from streamforge_nb.control.worker import Worker
from streamforge_nb.exceptions import (
    BrokerUnavailable,
    InvalidName,
    MessageError,
    StoreError,
    StreamForgeError,
    is_passing_kafka_error,
    kafka_errors,
    map_confluent_error,
)
from streamforge_nb.kafka.clients import (
    make_admin,
    make_bulk_consumer,
    make_producer,
)
from streamforge_nb.platform.batch import decode_and_check
from streamforge_nb.platform.intervals import INTERVALS
from streamforge_nb.platform.markers import decode_exchange_empty, is_marker
from streamforge_nb.platform.names import (
    data_topic,
    dlq_topic,
    new_short_id,
    parse_queue_id,
    producer_id,
)
from streamforge_nb.platform.topics import ensure_queue_topics
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore

__all__ = ["SinkOptions", "main", "run_sink"]

log = logging.getLogger("streamforge_nb.sink")
TARGET = "arango-candles"
LOADER_TARGET = "loader-candles"


@dataclass(frozen=True)
class SinkOptions:
    """Where to read and store; names match the CLI flags and the notebook parameters."""

    queue_id: str
    kafka_topic: str | None = None
    producer_id: str | None = None
    store_url: str | None = None
    group_id: str | None = None
    batch_size: int = 10_000
    batch_seconds: float = 1.0
    report_every: float = 2.0
    partitions: int = 1
    # Without a loader (a topic filled by other means), finish at the end of the topic.
    wait_for_loader: bool = True
    # Delete the data topic (and an empty DLQ) once its end is committed.
    cleanup: bool = False
    debug: bool = False


class _Batch:
    """Messages read since the last commit: values and keys, then decoded and rejected."""

    def __init__(self) -> None:
        self.keys: list[bytes | None] = []
        self.values: list[bytes] = []
        self.offsets: list[tuple[int, int]] = []  # (partition, offset), for the DLQ
        # Exchange-empty markers: (key, value, (partition, offset)), apart from the candles.
        self.markers: list[tuple[bytes | None, bytes, tuple[int, int]]] = []
        self.started = time.monotonic()

    def __len__(self) -> int:
        return len(self.values) + len(self.markers)


class Sink:
    """One run of the sink: consume, validate, store, commit."""

    def __init__(self, worker: Worker, options: SinkOptions, store: CandleStore) -> None:
        self.worker = worker
        self.options = options
        self.store = store
        self.topic = options.kafka_topic or data_topic(options.queue_id)
        self.dlq = dlq_topic(self.topic)
        self.rejected = 0
        self.exchange_empty = 0  # windows recorded
        # Candles are checked against the queue the topic belongs to.
        self.symbol, self.interval = queue_series(self.topic, options.queue_id)
        settings = worker.settings
        admin = make_admin(settings)
        try:
            # The data topic as the loader makes it, whoever comes first; the DLQ alike.
            ensure_queue_topics(admin, settings, self.topic, partitions=options.partitions)
            ensure_queue_topics(admin, settings, self.dlq)
        finally:
            admin.close()
        self._renewals: list[float] = []
        self._commit_refusal: KafkaError | None = None
        self._stored_upto: dict[int, int] = {}  # partition: next offset after what is stored
        self.consumer = self._new_consumer()
        self.dlq_producer: KafkaProducer = make_producer(settings, acks="all")
        self.loader_watch = Queue(options.queue_id, settings) if options.wait_for_loader else None
        if self.loader_watch is not None:
            # Connect now: once following, the watch rides out a broker restart by itself.
            self.loader_watch.producers()

    def _new_consumer(self) -> Any:
        options = self.options
        return make_bulk_consumer(
            self.worker.settings,
            self.topic,
            **{
                "group.id": options.group_id or f"{options.queue_id}-sink",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # librdkafka prefetches up to this much per partition: it bounds the sink's
                # memory whatever the topic's size.
                "queued.max.messages.kbytes": 32 * 1024,
                "fetch.wait.max.ms": 100,
                # Static membership: a sink restarted after a crash takes its partitions back
                # at once instead of waiting out the dead member's session.
                "group.instance.id": self.worker.producer_id,
                "session.timeout.ms": 10_000,
                "on_commit": self._committed,
            },
        )

    def _renew_consumer(self, error: KafkaError) -> None:
        """Replace a consumer that hit a fatal error with a new one in the same group.

        A static member whose session timed out (a broker or this process stalled past
        `session.timeout.ms`) is fenced by its own rejoin, and librdkafka makes that fatal:
        the old consumer reads nothing more. The new one starts from the group's commits;
        what was stored but not committed is read again, and upserts by `_key` make that
        harmless. More than `MAX_RENEWALS` in `RENEWAL_WINDOW_S` is no passing trouble.
        """
        now = time.monotonic()
        self._renewals = [t for t in self._renewals if now - t < RENEWAL_WINDOW_S] + [now]
        if len(self._renewals) > MAX_RENEWALS:
            raise map_confluent_error(
                KafkaException(error), what=f"reading {self.topic}", settings=self.worker.settings
            )
        log.warning("consumer: %s; rejoining the group with a new consumer", error.str())
        self.consumer = None  # dropped, not closed: see `make_bulk_consumer`
        self.consumer = self._new_consumer()

    def run(self) -> int:
        """Consume until done or stopped; return the number of candles stored."""
        last_report = time.monotonic()
        end: dict[int, int] | None = None
        while True:
            batch = self._read_batch()
            self._store(batch)
            if time.monotonic() - last_report >= self.options.report_every and len(batch):
                self.worker.loading(self.worker.records_written, self._progress())
                last_report = time.monotonic()
            self.worker.check_stop()
            if end is None and self._loader_done():
                end = self._end_offsets()
            if end is not None and self._reached(end):
                if self.options.cleanup:
                    self._cleanup()
                return self.worker.records_written

    def _cleanup(self) -> None:
        # Every partition's end is committed: nothing the store has not taken goes with it.
        from streamforge_nb.control.lifecycle import delete_data_topics

        try:
            done = delete_data_topics(self.worker.settings, self.topic)
        except StreamForgeError as exc:  # the candles are stored; the topic just stays
            log.warning("could not delete %s: %s", self.topic, exc)
            return
        log.info("cleanup: %s", "; ".join(f"{t}: {what}" for t, what in done.items()))

    def _read_batch(self) -> _Batch:
        batch = _Batch()
        deadline = batch.started + self.options.batch_seconds
        while len(batch) < self.options.batch_size and time.monotonic() < deadline:
            if self.worker.stop_requested:
                break
            messages = self.consumer.consume(self.options.batch_size - len(batch), timeout=0.1)
            if not messages and len(batch):
                break  # caught up: store what we have rather than wait
            for message in messages:
                if message.error() is not None:
                    self._consumer_error(message.error())
                    continue
                where = (message.partition() or 0, message.offset() or 0)
                if is_marker(message.headers()):
                    batch.markers.append((message.key(), message.value() or b"", where))
                    continue
                batch.keys.append(message.key())
                batch.values.append(message.value() or b"")
                batch.offsets.append(where)
        return batch

    def _consumer_error(self, error: KafkaError) -> None:
        if error.code() in (
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            KafkaError.GROUP_AUTHORIZATION_FAILED,
        ):
            raise map_confluent_error(
                KafkaException(error), what=f"reading {self.topic}", settings=self.worker.settings
            )
        if _fatal(error):
            self._renew_consumer(error)
            return
        log.warning("consumer: %s", error.str())  # transient: librdkafka retries by itself

    def _store(self, batch: _Batch) -> None:
        if not len(batch):
            return
        stored, rejected = self._store_candles(batch) if batch.values else (0, [])
        dead = [(batch.keys[i], batch.values[i], why, batch.offsets[i]) for i, why in rejected]
        dead += self._store_markers(batch.markers)
        if dead:
            self._dead_letter(dead)
        # Only now is the batch safe: the store has it and the DLQ has the rejects.
        for partition, offset in [*batch.offsets, *(where for _, _, where in batch.markers)]:
            self._stored_upto[partition] = max(self._stored_upto.get(partition, 0), offset + 1)
        self._commit()
        self.worker.records_written += stored

    def _commit(self) -> None:
        """Commit what was read, without waiting: a synchronous commit has no timeout in
        librdkafka and was seen to wait forever after a broker stall. The answer comes to
        `_committed` during the next reads; a commit that did not land is made again once
        the end is known (`_commit_lost`), and a re-read batch overwrites itself."""
        self._raise_refusal()
        try:
            self.consumer.commit(asynchronous=True)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in _MOVED or is_passing_kafka_error(exc):
                log.info("offsets not committed now (made again later): %s", exc)
            elif _fatal(error):
                self._renew_consumer(error)  # it reads the batch again from the commits
            else:
                raise map_confluent_error(
                    exc, what="committing offsets", settings=self.worker.settings
                ) from None

    def _raise_refusal(self) -> None:
        """Raise a commit the broker refused (not a passing trouble), as soon as it is known."""
        if self._commit_refusal is not None:
            raise map_confluent_error(
                KafkaException(self._commit_refusal), what="committing offsets",
                settings=self.worker.settings,
            )  # fmt: skip

    def _committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's answer to a commit (called during `consume`)."""
        if error is None:
            return
        if error.code() in _MOVED or is_passing_kafka_error(KafkaException(error)):
            log.info("a commit did not land (made again later): %s", error.str())
        elif not _fatal(error):
            self._commit_refusal = error  # e.g. an ACL: raised by the next commit

    def _store_candles(self, batch: _Batch) -> tuple[int, list[tuple[int, str]]]:
        """Store the batch's candles: (rows stored, [(index, why)] to dead-letter)."""
        # Never raises on any message: each one is either in `candles` or in `rejected`.
        candles, rejected = decode_and_check(batch.values, batch.keys, self.symbol, self.interval)
        stored, refused = self._write(candles)
        if refused:
            taken = {i for i, _ in rejected}
            rows = [i for i in range(len(batch.values)) if i not in taken]
            rejected = sorted(rejected + [(rows[row], why) for row, why in refused])
        return stored, rejected

    def _store_markers(
        self, markers: list[tuple[bytes | None, bytes, tuple[int, int]]]
    ) -> list[tuple[bytes | None, bytes, str, tuple[int, int]]]:
        """Record valid markers' windows; return the malformed ones for the DLQ."""
        windows: dict[tuple[str, str], list[tuple[int, int]]] = {}
        dead = []
        for key, value, where in markers:
            try:
                symbol, interval, start, end = decode_exchange_empty(
                    value, key, self.symbol, self.interval
                )
            except MessageError as exc:
                dead.append((key, value, str(exc)[:MAX_REASON_CHARS], where))
                continue
            except Exception as exc:  # a bug in the check must not stall the sink either
                why = f"invalid exchange-empty marker: cannot be checked ({exc!r})"
                dead.append((key, value, why[:MAX_REASON_CHARS], where))
                continue
            windows.setdefault((symbol, interval), []).append((start, end))
        for (symbol, interval), spans in windows.items():
            # A StoreError is an outage, as for candles: the sink stops, nothing committed.
            self.store.write_exchange_empty(symbol, interval, spans)
            self.exchange_empty += len(spans)
        return dead

    def _write(self, table: Any) -> tuple[int, list[tuple[int, str]]]:
        """Store `table`: (rows stored, [(row, why)] the store refused), halving around refusals.

        A `StoreError` (disk full, ArangoDB down or refusing) is an outage: it propagates, the
        sink stops with an `error` event and the batch's offsets stay uncommitted. Any other
        error is the data's: the candles causing it are cornered and go to the DLQ.
        """
        try:
            return self.store.write_table(table), []
        except StoreError:
            raise
        except Exception as exc:
            if table.num_rows <= 1:
                why = f"invalid candle: the store refused it ({type(exc).__name__}: {exc})"
                return 0, [(0, why[:MAX_REASON_CHARS])]
        middle = table.num_rows // 2
        first, first_refused = self._write(table.slice(0, middle))
        second, second_refused = self._write(table.slice(middle))
        return first + second, first_refused + [(middle + r, w) for r, w in second_refused]

    def _dead_letter(
        self, rejected: list[tuple[bytes | None, bytes, str, tuple[int, int]]]
    ) -> None:
        sent = []
        for key, value, reason, (partition, offset) in rejected:
            log.warning(
                "bad message at %s [%d] offset %d sent to %s: %s",
                self.topic, partition, offset, self.dlq, reason,
            )  # fmt: skip
            headers = [
                ("error", reason[:MAX_REASON_CHARS].encode()),
                ("source_topic", self.topic.encode()),
                ("source_partition", str(partition).encode()),
                ("source_offset", str(offset).encode()),
            ]
            key, value, cut = dlq_copy(key, value)
            if cut:
                headers.append(("truncated", cut.encode()))
            with kafka_errors(f"writing {self.dlq}", self.worker.settings.kafka_bootstrap_servers):
                sent.append(self.dlq_producer.send(self.dlq, key=key, value=value, headers=headers))
        with kafka_errors(f"writing {self.dlq}", self.worker.settings.kafka_bootstrap_servers):
            self.dlq_producer.flush(timeout=30)
            for future in sent:
                future.get(timeout=30)  # a copy the DLQ refused: stop, offsets uncommitted
        self.rejected += len(rejected)

    def _loader_done(self) -> bool:
        if self.loader_watch is None:
            return True
        try:
            producers = self.loader_watch.producers()
        except BrokerUnavailable as exc:  # a stalled broker: asked again on the next round
            log.warning("the loader's telemetry is not readable yet: %s", exc)
            return False
        return any(p.startswith(f"{LOADER_TARGET}__") and s.terminal for p, s in producers.items())

    def _end_offsets(self) -> dict[int, int] | None:
        """Every partition's end, or None when the broker did not answer in time (asked
        again on the next round; a refusal such as a missing ACL raises)."""
        try:
            metadata = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            if not metadata.partitions:  # no answer yet: an empty end would mean "all read"
                return None
            return {
                p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                for p in metadata.partitions
            }
        except KafkaException as exc:
            if is_passing_kafka_error(exc):
                log.warning("the end of %s is not known yet: %s", self.topic, exc)
                return None
            raise map_confluent_error(
                exc, what=f"reading the end of {self.topic}", settings=self.worker.settings
            ) from None

    def _reached(self, end: dict[int, int]) -> bool:
        if all(offset == 0 for offset in end.values()):
            return True
        self._raise_refusal()  # the last batch's commit is refused: never wait on it
        asked = [TopicPartition(self.topic, p) for p in end]
        try:
            answer = self.consumer.committed(asked, timeout=10)
        except KafkaException as exc:  # e.g. the group is still rebalancing: ask again later
            log.info("committed offsets not available yet: %s", exc)
            return False
        committed = {tp.partition: tp.offset for tp in answer}
        if all(committed.get(p, -1) >= offset for p, offset in end.items()):
            return True
        self._commit_lost(committed)
        return False

    def _commit_lost(self, committed: dict[int, int]) -> None:
        """Commit again what this sink stored past the group's commits, for the partitions
        it owns: a commit lost to a rebalance (a stalled broker, a session timeout) is not
        always followed by a re-read, and without it the end is never reached."""
        try:
            owned = {tp.partition for tp in self.consumer.assignment()}
            behind = [
                TopicPartition(self.topic, p, upto)
                for p, upto in self._stored_upto.items()
                if p in owned and upto > committed.get(p, -1)
            ]
            if behind:
                log.info("committing again: %s", {tp.partition: tp.offset for tp in behind})
                self.consumer.commit(offsets=behind, asynchronous=True)
        except KafkaException as exc:  # asked again on the next round
            log.info("committing again failed: %s", exc)

    def _progress(self) -> str:
        rejected = f", {self.rejected} rejected to {self.dlq}" if self.rejected else ""
        empty = f", {self.exchange_empty} exchange-empty windows" if self.exchange_empty else ""
        return f"Saved {self.worker.records_written} records{empty}{rejected}"

    def close(self) -> None:
        if self.loader_watch is not None:
            self.loader_watch.close()
        # Dropped, not closed (see `make_bulk_consumer`): every batch it finished is
        # committed, and what it read past that is read again by the group.
        self.consumer = None
        self.dlq_producer.close(timeout=10)


def _fatal(error: KafkaError) -> bool:
    # librdkafka reports a fenced static member as code _FATAL without the fatal flag.
    return bool(error.fatal()) or error.code() == KafkaError._FATAL


MAX_REASON_CHARS = 2000
MAX_RENEWALS = 3
RENEWAL_WINDOW_S = 600.0


_MOVED = (
    KafkaError._NO_OFFSET,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
)
"""Commit errors that mean a rebalance took the batch's partitions away."""
DLQ_MAX_VALUE = 256 * 1024
"""Bytes of a bad message the DLQ keeps; a longer one is cut, with a `truncated` header."""
DLQ_MAX_KEY = 1024


def dlq_copy(key: bytes | None, value: bytes) -> tuple[bytes | None, bytes, str]:
    """Return (key, value, note) to send to the DLQ: cut to a size any broker takes."""
    notes = []
    if key is not None and len(key) > DLQ_MAX_KEY:
        notes.append(f"key cut from {len(key)} to {DLQ_MAX_KEY} bytes")
        key = key[:DLQ_MAX_KEY]
    if len(value) > DLQ_MAX_VALUE:
        notes.append(f"value cut from {len(value)} to {DLQ_MAX_VALUE} bytes")
        value = value[:DLQ_MAX_VALUE]
    return key, value, "; ".join(notes)


def queue_series(topic: str, queue_id: str) -> tuple[str | None, str | None]:
    """Return (symbol, interval) of the queue owning `topic` (None, None: a hand-made queue)."""
    qid = topic.removesuffix("-data") if topic.endswith("-data") else queue_id
    try:
        parts = parse_queue_id(qid)
    except InvalidName:
        return None, None
    m = _CANDLES_TYPE.fullmatch(parts.type)
    if m is None or m["interval"] not in INTERVALS:
        return None, None
    return parts.symbol, m["interval"]


_CANDLES_TYPE = re.compile(r"[a-z][a-z0-9]*_candles_(?P<interval>[0-9A-Za-z]+)")


def run_sink(options: SinkOptions, settings: Settings | None = None) -> int:
    """Store the data topic's candles; return the exit code (0 finished or stopped)."""
    settings = settings or Settings.from_env()
    symbol: str | None
    type_: str | None
    try:
        parts = parse_queue_id(options.queue_id)
        symbol, type_, short = parts.symbol, parts.type, parts.short
    except InvalidName:  # a hand-made queue id: telemetry goes without symbol and type
        symbol = type_ = None
        short = new_short_id()
    store = CandleStore.open(options.store_url or settings.arango_url, settings=settings)
    with Worker(
        settings,
        queue_id=options.queue_id,
        producer_id=options.producer_id or producer_id(TARGET, short),
        target=TARGET,
        symbol=symbol,
        type=type_,
    ) as worker:
        try:
            sink = Sink(worker, options, store)
        except StreamForgeError as exc:
            worker.error(str(exc), error_type=type(exc).__name__)
            store.close()
            return 1
        try:
            worker.run(lambda _w: sink.run())
        except StreamForgeError as exc:
            log.error("sink failed: %s", exc)
            return 1
        finally:
            sink.close()
            store.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sink from a command line; return the exit code."""
    return workers.main("sink", argv)


if __name__ == "__main__":
    sys.exit(main())
