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
import threading
from collections.abc import Sequence
from dataclasses import dataclass

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
    NotAuthorized,
    StreamForgeError,
)
from streamforge_nb.kafka.clients import make_admin
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
from streamforge_nb.workers.sink_dlq import (
    DLQ_MAX_KEY,
    DLQ_MAX_VALUE,
    dlq_copy,
    dlq_headers,
)
from streamforge_nb.workers.sink_stages import SinkStages

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


class Sink(SinkStages):
    """One run of the sink: consume, validate, store, commit (the loop: `SinkStages`)."""

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
        self.stage_cpu = {"read": 0.0, "check": 0.0, "store": 0.0}
        self.stage_wall = dict.fromkeys(self.stage_cpu, 0.0)
        self.stage_queued = dict.fromkeys(self.stage_cpu, 0.0)
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

    def _log_rate(self) -> None:
        """Log the candles stored and the seconds from the first message read to the last
        batch committed, and each stage's CPU per candle (bench/ingest.py reads both)."""
        if self.first_read is None or self.last_stored is None:
            return
        took = max(self.last_stored - self.first_read, 1e-9)
        stored = self.worker.records_written
        log.info(
            "stored %d candles in %.3f s from the first message read to the last commit "
            "(%.0f candles/s)",
            stored, took, stored / took,
        )  # fmt: skip
        if stored:
            # librdkafka's own threads (fetching) and the process's start are in neither.
            # A stage at work is on a core, waiting for one, or asleep (the GIL, the broker,
            # the disk): on two shared cores the check's wait was mostly for a core (issue 20).
            for what, seconds in (
                ("CPU", self.stage_cpu),
                ("wall", self.stage_wall),
                ("waiting for a core", self.stage_queued),
            ):
                per_candle = (f"{k} {s / stored * 1e6:.2f} us" for k, s in seconds.items())
                log.info("%s per candle by stage: %s", what, ", ".join(per_candle))

    def _cleanup(self) -> None:
        # Every partition's end is committed: nothing the store has not taken goes with it.
        from streamforge_nb.control.lifecycle import delete_data_topics

        try:
            done = delete_data_topics(self.worker.settings, self.topic)
        except StreamForgeError as exc:  # the candles are stored; the topic just stays
            log.warning("could not delete %s: %s", self.topic, exc)
            return
        log.info("cleanup: %s", "; ".join(f"{t}: {what}" for t, what in done.items()))

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


_GC_THRESHOLD = 100_000
"""Objects allocated between the collector's young-generation runs (Python's default: 700)."""


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
    # What the first batch's check imports (~25 ms), imported while the worker and the group
    # wait on the broker rather than in the loop.
    threading.Thread(target=_import_check_modules, name="sink-imports", daemon=True).start()
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


def _import_check_modules() -> None:
    import pyarrow.compute
    import pyarrow.csv
    import pyarrow.json  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sink from a command line; return the exit code."""
    return workers.main("sink", argv)


if __name__ == "__main__":
    sys.exit(main())
