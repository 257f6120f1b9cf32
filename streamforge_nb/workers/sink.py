"""The store sink (target `arango-candles`, the platform's name): data topic -> CandleStore.

Consumes the queue's data topic in a consumer group, validates every message, writes batches
to the CandleStore (idempotent upserts by `_key`) and commits Kafka offsets only after the
store has the batch: a crash replays at most three batches (the one being stored, the one
being checked and the next, read meanwhile), and the replay overwrites itself.
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

import gc
import logging
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer

from streamforge_nb import workers
from streamforge_nb.control.queue import Queue
from streamforge_nb.control.redrive import queue_series, queue_span
from streamforge_nb.control.worker import Worker
from streamforge_nb.exceptions import (
    AuthenticationFailed,
    BrokerError,
    BrokerUnavailable,
    InvalidName,
    MessageError,
    NotAuthorized,
    StoreError,
    StreamForgeError,
    kafka_errors,
)
from streamforge_nb.kafka.clients import make_admin, make_producer
from streamforge_nb.platform.checks import candle_anomalies, decode_and_check
from streamforge_nb.platform.markers import decode_exchange_empty
from streamforge_nb.platform.names import (
    data_topic,
    dlq_topic,
    new_short_id,
    parse_queue_id,
    producer_id,
)
from streamforge_nb.platform.topics import ensure_queue_topics
from streamforge_nb.retry import ask_again
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.workers.group import GroupReader
from streamforge_nb.workers.sink_batch import Batch
from streamforge_nb.workers.sink_dlq import (
    DLQ_MAX_KEY,
    DLQ_MAX_VALUE,
    MAX_REASON_CHARS,
    DeadLetter,
    dlq_copy,
    dlq_headers,
)

# The dead-letter names live in `sink_dlq`; they stay importable from here.
__all__ = [
    "DLQ_MAX_KEY",
    "DLQ_MAX_VALUE",
    "SinkOptions",
    "dlq_copy",
    "dlq_headers",
    "main",
    "queue_series",
    "queue_span",
    "run_sink",
]

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
    # The queue's range (TIME_RANGE): a candle opening outside it is refused. None: only
    # candles before the day in the queue id are.
    time_range: str | None = None
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
        self.anomalies: dict[str, int] = {}  # candles stored with each kind of anomaly
        # Per partition, the timestamp (ms) of the last message stored: seconds behind.
        self.last_ms: dict[int, int] = {}
        # When the first message came and the last batch was committed (monotonic s): the
        # sink's own rate, without the process start a bench timing it to exit also counts.
        self.first_read: float | None = None
        self.last_stored: float | None = None
        # Candles are checked against the queue the topic belongs to, and its range.
        self.symbol, self.interval = queue_series(self.topic, options.queue_id)
        self.span = queue_span(self.topic, options.queue_id, options.time_range)
        settings = worker.settings
        admin = make_admin(settings)
        try:
            # The data topic as the loader makes it, whoever comes first; the DLQ alike.
            ensure_queue_topics(admin, settings, self.topic, partitions=options.partitions)
            ensure_queue_topics(admin, settings, self.dlq)
        finally:
            admin.close()
        self.group = GroupReader(
            settings, self.topic, group_id=options.group_id or f"{options.queue_id}-sink",
            instance_id=worker.producer_id,
        )  # fmt: skip
        # Made at the first dead letter: most runs have none, and an idle kafka-python
        # producer's thread still wakes for the GIL the sink's stages share.
        self.dlq_producer: KafkaProducer | None = None
        worker.summary = self._progress
        self.loader_watch = Queue(options.queue_id, settings) if options.wait_for_loader else None
        if self.loader_watch is not None:
            # Connect now: once following, the watch rides out a broker restart by itself.
            try:
                self.loader_watch.producers()
            except BaseException:
                self.close()  # `start_sink` may make another
                raise

    def run(self) -> int:
        """Consume until done or stopped; return the number of candles stored."""
        # Every batch makes tens of thousands of GC-tracked `Message`s: with the default
        # thresholds the collector ran every 700 of them and rescanned what the imports made
        # (py-spy --native: 15% of the samples in the collector, about half of them during
        # the loop, half in the imports; the sink's CPU fell ~10%). The sink makes no cycles
        # worth chasing per message: leave what exists now out of every collection, and
        # collect rarely.
        # Restored after: a notebook kernel or test process running the sink keeps its own.
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(_GC_THRESHOLD, *thresholds[1:])
        try:
            return self._run()
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            self._log_rate()

    def _run(self) -> int:
        """Read the next batch while one thread checks the last and another stores the one
        before; commit each, in order, once stored.

        The consumer is used by this thread only. Three stages on two cores: reading
        (librdkafka's messages made into Python objects), checking (Arrow's decoding and
        checks) and storing (Parquet writes and fsyncs) each wait on something else at
        times (the GIL, the disk), and the stages' work fills those waits.
        """
        last_report = time.monotonic()
        end: dict[int, int] | None = None
        in_flight: deque[Future[tuple[Batch, int]]] = deque()
        with (
            ThreadPoolExecutor(1, thread_name_prefix="sink-check") as checking,
            ThreadPoolExecutor(1, thread_name_prefix="sink-store") as storing,
        ):
            try:
                while True:
                    batch = self._read_batch()
                    # Commit what is stored, oldest first; wait only for a full pipeline, or
                    # when nothing new came (then everything read is committed before the end
                    # is asked).
                    while in_flight and (
                        in_flight[0].done() or len(in_flight) >= _IN_FLIGHT or not len(batch)
                    ):
                        self._commit(*in_flight.popleft().result())  # raises what the store did
                        last_report = self._report(last_report)
                    if len(batch):
                        checked = checking.submit(self._check, batch)
                        in_flight.append(storing.submit(self._store, batch, checked))
                    if self.worker.stop_requested and in_flight:
                        while in_flight:  # stop with every batch read committed
                            self._commit(*in_flight.popleft().result())
                            last_report = self._report(last_report)
                    self.worker.check_stop()
                    if in_flight:
                        continue  # the end is asked once everything read is committed
                    if end is None and self._loader_done():
                        end = self.group.end_offsets()
                    if end is not None and self.group.reached(end):
                        if self.options.cleanup:
                            self._cleanup()
                        return self.worker.records_written
            except BaseException:
                # The batches after a failure are never committed; those not begun are not
                # stored either (a restart reads them again from the commits).
                for future in in_flight:
                    future.cancel()
                raise

    def _report(self, last_report: float) -> float:
        """Report progress after a batch was committed, at most every `report_every` s;
        return when the last report went. After the commit: `loading` never comes before
        the store has something, and each committed batch may have its own report."""
        if time.monotonic() - last_report < self.options.report_every:
            return last_report
        lag = self.group.lag(self.last_ms, time.time())
        # The lag sample rides on the progress report: its history costs no request.
        extra = {"group": self.group.group_id, "lag": lag} if lag else {}
        self.worker.loading(self.worker.records_written, self._progress(), **extra)
        return time.monotonic()

    def _log_rate(self) -> None:
        """Log the candles stored and the seconds from the first message read to the last
        batch committed (bench/ingest.py reads this line)."""
        if self.first_read is None or self.last_stored is None:
            return
        took = max(self.last_stored - self.first_read, 1e-9)
        stored = self.worker.records_written
        log.info(
            "stored %d candles in %.3f s from the first message read to the last commit "
            "(%.0f candles/s)",
            stored, took, stored / took,
        )  # fmt: skip

    def _cleanup(self) -> None:
        # Every partition's end is committed: nothing the store has not taken goes with it.
        from streamforge_nb.control.lifecycle import delete_data_topics

        try:
            done = delete_data_topics(self.worker.settings, self.topic)
        except StreamForgeError as exc:  # the candles are stored; the topic just stays
            log.warning("could not delete %s: %s", self.topic, exc)
            return
        log.info("cleanup: %s", "; ".join(f"{t}: {what}" for t, what in done.items()))

    def _read_batch(self) -> Batch:
        batch = Batch()
        deadline = batch.started + self.options.batch_seconds
        while len(batch) < self.options.batch_size and time.monotonic() < deadline:
            if self.worker.stop_requested:
                break
            # In steps: librdkafka's messages become Python objects with the GIL held for the
            # whole call, and the other stages need it between their Arrow calls.
            count = min(self.options.batch_size - len(batch), _READ_STEP)
            messages = self.group.read(count, timeout=0.1)
            if messages and self.first_read is None:
                self.first_read = time.monotonic()
            if not messages and len(batch):
                break  # caught up: store what we have rather than wait
            batch.add(messages)
        return batch

    def _check(self, batch: Batch) -> tuple[Any, list[tuple[int, str]]]:
        """Decode and check the batch's candles: (table of the sane ones, [(index, why)])."""
        # Never raises on any message: each one is either in the table or rejected.
        return decode_and_check(
            batch.values, batch.keys, self.symbol, self.interval, span=self.span
        )  # fmt: skip

    def _store(
        self, batch: Batch, checked: Future[tuple[Any, list[tuple[int, str]]]]
    ) -> tuple[Batch, int]:
        """Store the checked batch and dead-letter its rejects: (the batch, candles stored)."""
        candles, rejected = checked.result()  # raises what the check raised
        stored, rejected = self._store_candles(batch, candles, rejected)
        dead: list[DeadLetter] = [
            (batch.keys[i], batch.values[i], why, batch.where(i), batch.sources.get(i, []))
            for i, why in rejected
        ]
        dead += [(k, v, why, at, []) for k, v, why, at in self._store_markers(batch.markers)]
        if dead:
            self._dead_letter(dead)
        return batch, stored

    def _commit(self, batch: Batch, stored: int) -> None:
        # Only now is the batch safe: the store has it and the DLQ has the rejects.
        self.group.stored(batch.positions())
        self.last_stored = time.monotonic()
        self.worker.records_written += stored
        self.last_ms.update(batch.last_ms())

    def _store_candles(
        self, batch: Batch, candles: Any, rejected: list[tuple[int, str]]
    ) -> tuple[int, list[tuple[int, str]]]:
        """Store the checked candles: (rows stored, [(index, why)] to dead-letter)."""
        if not candles.num_rows:
            return 0, rejected
        stored, refused = self._write(candles)
        self._note_anomalies(candles, refused)
        if refused:
            taken = {i for i, _ in rejected}
            rows = [i for i in range(len(batch.values)) if i not in taken]
            rejected = sorted(rejected + [(rows[row], why) for row, why in refused])
        return stored, rejected

    def _note_anomalies(self, candles: Any, refused: list[tuple[int, str]]) -> None:
        """Count and log what real exchanges serve oddly among the candles just stored."""
        if refused:  # rare: the store refused some; count only what it took
            keep = [True] * candles.num_rows
            for row, _ in refused:
                keep[row] = False
            import pyarrow as pa

            candles = candles.filter(pa.array(keep))
        found, odd = candle_anomalies(candles, self.interval)
        if not odd:
            return
        for kind, count in found.items():
            self.anomalies[kind] = self.anomalies.get(kind, 0) + count
        self.worker.anomalies += odd
        # One line a batch, not one a candle: a shifted month is 20,000 of them.
        log.info(
            "stored %s with anomalies as the exchange sent them (%s)",
            _plural(odd, "candle"),
            ", ".join(f"{kind}: {count}" for kind, count in found.items()),
        )

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

    def _dead_letter(self, rejected: list[DeadLetter]) -> None:
        if self.dlq_producer is None:
            self.dlq_producer = make_producer(self.worker.settings, acks="all")
        producer = self.dlq_producer
        sent = []
        for key, value, reason, (partition, offset), source in rejected:
            log.warning(
                "bad message at %s [%d] offset %d sent to %s: %s",
                self.topic, partition, offset, self.dlq, reason,
            )  # fmt: skip
            headers = dlq_headers(reason, self.topic, partition, offset, source)
            key, value, cut = dlq_copy(key, value)
            if cut:
                headers.append(("truncated", cut.encode()))
            with kafka_errors(f"writing {self.dlq}", self.worker.settings.kafka_bootstrap_servers):
                sent.append(producer.send(self.dlq, key=key, value=value, headers=headers))
        with kafka_errors(f"writing {self.dlq}", self.worker.settings.kafka_bootstrap_servers):
            producer.flush(timeout=30)
            for future in sent:
                future.get(timeout=30)  # a copy the DLQ refused: stop, offsets uncommitted
        self.rejected += len(rejected)
        self.worker.dead_letters = self.rejected

    def _loader_done(self) -> bool:
        if self.loader_watch is None:
            return True
        try:
            producers = self.loader_watch.producers()
        except BrokerUnavailable as exc:  # a stalled broker: asked again on the next round
            log.warning("the loader's telemetry is not readable yet: %s", exc)
            return False
        return any(p.startswith(f"{LOADER_TARGET}__") and s.terminal for p, s in producers.items())

    def _progress(self) -> str:
        rejected = f", {self.rejected} rejected to {self.dlq}" if self.rejected else ""
        empty = f", {self.exchange_empty} exchange-empty windows" if self.exchange_empty else ""
        odd = ""
        if self.anomalies:
            kinds = ", ".join(f"{kind} {count}" for kind, count in self.anomalies.items())
            odd = f", {self.worker.anomalies} stored with anomalies ({kinds})"
        return f"Saved {self.worker.records_written} records{empty}{odd}{rejected}"

    def close(self) -> None:
        if self.loader_watch is not None:
            self.loader_watch.close()
        self.group.drop()
        if self.dlq_producer is not None:
            self.dlq_producer.close(timeout=10)


_IN_FLIGHT = 2
"""Batches checked or stored while the next is read: one in each stage."""
_READ_STEP = 2_000
"""Messages made into Python objects at a time (0.7 us each, with the GIL held): 1.4 ms."""
_GC_THRESHOLD = 100_000
"""Objects allocated between the collector's young-generation runs (Python's default: 700)."""


def _plural(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


START_RETRY_S = 60.0
"""How long a sink's start asks again while the broker does not answer (a restart)."""


def start_sink(worker: Worker, options: SinkOptions, store: CandleStore) -> Sink:
    """Make the sink, asking again while the broker is down or just back (a restart, a
    rolling upgrade): what it does at start (topics made, the loader watched) is safe to
    repeat. A refusal, or no answer for `START_RETRY_S`, is raised."""
    return ask_again(
        lambda: Sink(worker, options, store),
        passing=(BrokerError,),
        refusing=(AuthenticationFailed, NotAuthorized),
        seconds=START_RETRY_S,
        pause=1.0,
        max_pause=1.0,
        what="the sink's start",
        log=log,
    )


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
            sink = start_sink(worker, options, store)
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
