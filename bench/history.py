"""Reading cost against history: the same queue operations with 10k, 100k and 1M events of
other queues on queue-events.

Starts a local broker in a temporary directory (or uses `--bootstrap`, PLAINTEXT; its
queue-events should hold the service topics' partition count) and a real dummy service for a
live queue, then for each N fills queue-events up to N events of 2,000 other queues (librdkafka
in big batches: 90% keyed by queue id with Kafka's murmur2 partitioner, 9% unkeyed, 1%
malformed; filling is bounded by `--max-fill-s`) and measures:

- cold first pong: a new `Queue` of the live queue, its first `ping()`, `close()` (median of
  `--cold` tries);
- status() of a finished queue: a queue launched and finished after the fill (started,
  loading, finished), read by a new `Queue(q, since=<its queue-state created_at>)`;
- events() of that queue: `list(Queue(q, since=...).events())`;
- Queue.list() over 1,000 queue-state records (an embedded store: 990 finished, 10 running,
  the running ones launched after the fill, each with a `started` event);
- status() of a queue launched and waited on BEFORE the fill (its queue-state record in an
  embedded store, as a launch writes it; `wait()` saw it end and kept its final states in
  the record): a new `Queue(q, store=...)` reads none of the later events (checked);
- for contrast, status() of a queue that finished BEFORE the fill and has no queue-state
  record (a bare Worker): its reader must read what its partition(s) received since the
  queue's start, which grows with N by design.

and, as the anchor measured in the same run, a bare kafka-python consumer of queue-events
(connect, assign the live queue's partition, seek to its end, one poll): the floor any reader
pays whatever the history.

Prints one column per N; the goal is every figure but the contrast flat (within 1.5x from 10k
to 1M), a cold first pong under 300 ms and the launched queue's status() under 1 s at 1M.
Exits 2 with the reason when any client fails or an answer is wrong (no figures then).
These are the bounds tests/test_history.py once asserted on the real clock (a cold first
pong and status() + events() under 5 s with 200k events on the topic); the tests now check
only what the answers hold.

    python bench/history.py [--sizes 10000,100000,1000000] [--cold 5] [--max-fill-s 600]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ping import abort_loudly, broker_settings, dummy_service, wait_until_serving

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.state import new_record
from streamforge_nb.control.worker import Worker
from streamforge_nb.platform.topics import SERVICE_TOPICS
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore

PARTITIONS = next(t.partitions for t in SERVICE_TOPICS if t.name == "queue-events")


def queue_id() -> str:
    return f"wf-btcusdt-api_candles_1m-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:8]}"


class Filler:
    """Adds events of other queues to queue-events, fast (librdkafka, big batches)."""

    def __init__(self, settings: Settings, queues: int = 2000) -> None:
        from confluent_kafka import Producer

        self.topic = settings.queue_events_topic
        self.producer = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "linger.ms": 50,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 1_000_000,
                "partitioner": "murmur2_random",
                "acks": 1,
            }
        )
        ids = [queue_id() for _ in range(queues)]
        self.keys = [q.encode() for q in ids]
        self.values = [
            orjson.dumps(
                {
                    "status": "loading",
                    "queue_id": q,
                    "producer": f"loader__{q[-8:]}",
                    "records_written": 15000,
                    "message": "Saved 15000 records",
                    "timestamp": time.time(),
                }
            )
            for q in ids
        ]
        self.sent = 0

    def fill_to(self, total: int, deadline: float) -> None:
        n = len(self.keys)
        while self.sent < total and time.monotonic() < deadline:
            i = self.sent
            value = self.values[i % n]
            if i % 100 == 99:
                value = b'{"status":"loading","queue_id":"' + self.keys[i % n] + b'","x":1e20}'
            key = None if i % 10 == 9 else self.keys[i % n]
            try:
                self.producer.produce(self.topic, value, key)
            except BufferError:
                self.producer.poll(0.05)
                continue
            self.sent += 1
            if i % 1000 == 0:
                self.producer.poll(0)
        if self.producer.flush(120) != 0:
            raise SystemExit("the filler could not deliver every event within 120 s")


def fresh_events_topic(settings: Settings) -> Settings:
    """Settings whose queue-events is a new, empty topic shaped like the service topic."""
    import os

    from streamforge_nb.kafka.clients import make_admin
    from streamforge_nb.platform.topics import TopicSpec, ensure_topics

    name = f"queue-events-bench-{uuid.uuid4().hex[:6]}"
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(name, partitions=PARTITIONS),))
    finally:
        admin.close()
    os.environ["QUEUE_EVENTS_TOPIC"] = name  # the dummy service's too
    return settings.model_copy(update={"queue_events_topic": name})


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def finished_queue(settings: Settings) -> tuple[str, float]:
    """Run a short worker to the end; return its queue id and queue-state start time."""
    qid = queue_id()
    created = time.time()
    with Worker(settings, queue_id=qid, producer_id=f"loader__{qid[-8:]}", target="loader") as w:
        w.run(lambda w: w.loading(1000))
    return qid, created


def status_of(settings: Settings, qid: str, since: float) -> None:
    with Queue(qid, settings, since=since) as queue:
        status = queue.status(timeout=300)
    if status.empty or status["status"].iloc[0] != "finished":
        raise SystemExit(f"status() of {qid} is wrong:\n{status}")


def launched_and_waited(settings: Settings, path: Path) -> str:
    """Launch a queue the way a launch records it (queue state in the embedded store at
    `path`), run its worker to the end and wait for it; return its queue id."""
    qid = queue_id()
    with CandleStore.open(path, settings=settings) as store:
        store.create_queue_state(
            new_record(
                queue_id=qid, symbol="BTCUSDT", type_="api_candles_1m", targets=["loader"],
                parameters={}, data_topic="t", outputs={}, launcher="", jobs=[],
            )
        )  # fmt: skip
    with Worker(settings, queue_id=qid, producer_id=f"loader__{qid[-8:]}", target="loader") as w:
        w.run(lambda w: w.loading(1000))
    with Queue(qid, settings, store=str(path)) as queue:
        queue.wait(timeout=60, progress=False)
    return qid


def status_kept(settings: Settings, qid: str, path: Path) -> None:
    with Queue(qid, settings, store=str(path)) as queue:
        status = queue.status(timeout=300)
        read = queue._telemetry.history_records
    if status.empty or status["status"].iloc[0] != "finished":
        raise SystemExit(f"status() of launched {qid} is wrong:\n{status}")
    if read:
        raise SystemExit(f"status() of launched {qid} read {read:,} events of queue-events")


def events_of(settings: Settings, qid: str, since: float) -> None:
    with Queue(qid, settings, since=since) as queue:
        statuses = [e.status for e in queue.events()]
    if statuses != ["started", "loading", "finished"]:
        raise SystemExit(f"events() of {qid} are wrong: {statuses}")


def cold_pong(settings: Settings, qid: str) -> float:
    started = time.perf_counter()
    with Queue(qid, settings) as queue:
        queue.ping(timeout=10)
        return time.perf_counter() - started


def bare_reader(settings: Settings, qid: str) -> float:
    """The anchor: a bare consumer to the live end of `qid`'s partition of queue-events."""
    from kafka import TopicPartition

    from streamforge_nb.kafka.clients import make_consumer
    from streamforge_nb.kafka.partitions import queue_partition

    started = time.perf_counter()
    consumer = make_consumer(settings, enable_auto_commit=False)
    try:
        tp: TopicPartition = queue_partition(consumer, settings.queue_events_topic, qid, settings)
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        consumer.poll(timeout_ms=0)
    finally:
        consumer.close()
    return time.perf_counter() - started


def store_with_records(settings: Settings, home: Path, running: int = 10) -> Path:
    """An embedded store with 1,000 queue-state records, `running` of them launched now."""
    path = home / f"store-{uuid.uuid4().hex[:6]}"
    with CandleStore.open(path, settings=settings) as store:
        old = time.time() - 3 * 86400
        for i in range(1000 - running):
            record = new_record(
                queue_id=queue_id(), symbol="BTCUSDT", type_="api_candles_1m",
                targets=["loader"], parameters={}, data_topic="t", outputs={},
                launcher="local", jobs=[],
            )  # fmt: skip
            store.save_queue_state({**record, "status": "finished", "created_at": old + i,
                                    "updated_at": old + i + 60})  # fmt: skip
        for _ in range(running):
            qid = queue_id()
            store.save_queue_state(
                new_record(
                    queue_id=qid,
                    symbol="BTCUSDT",
                    type_="api_candles_1m",
                    targets=["loader"],
                    parameters={},
                    data_topic="t",
                    outputs={},
                    launcher="local",
                    jobs=[],
                )
            )
            with Worker(settings, queue_id=qid, producer_id=f"loader__{qid[-8:]}",
                        target="loader") as w:  # fmt: skip
                w.started()
    return path


def list_queues(settings: Settings, path: Path) -> None:
    frame = Queue.list(str(path), settings=settings)
    if len(frame) != 1000 or (frame["status"] == "running").sum() != 10:
        raise SystemExit(f"Queue.list() is wrong: {frame['status'].value_counts().to_dict()}")


def main() -> int:
    return abort_loudly("bench/history.py", run)


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--cold", type=int, default=5, help="cold first pongs per size")
    parser.add_argument("--max-fill-s", type=float, default=600, help="filling budget in all")
    parser.add_argument("--bootstrap", help="use this PLAINTEXT broker instead of a local one")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    deadline = time.monotonic() + args.max_fill_s

    rows: dict[str, list[str]] = {k: [] for k in (
        "events on the topic", "fill took (s)", "cold first pong, median (ms)",
        "cold first pong, max (ms)", "status() of a finished queue (ms)",
        "events() of one queue (ms)", "Queue.list(), 1,000 records (ms)",
        "status(), launched + waited before the fill (ms)",
        "contrast: status(), no record, before the fill (ms)",
        "anchor: bare consumer to the live end (ms)",
    )}  # fmt: skip
    with broker_settings(args.bootstrap) as (given, how), tempfile.TemporaryDirectory() as tmp:
        settings = fresh_events_topic(given)
        print(
            f"broker: {settings.kafka_bootstrap_servers} ({how}); "
            f"events topic {settings.queue_events_topic}, {PARTITIONS} partitions"
        )
        live = queue_id()
        early, early_since = finished_queue(settings)
        launched_store = Path(tmp) / "launched"
        launched = launched_and_waited(settings, launched_store)
        with dummy_service(settings, live) as process:
            with Queue(live, settings) as queue:
                wait_until_serving(queue, process, timeout=60)
            filler = Filler(settings)
            for size in sizes:
                started = time.perf_counter()
                filler.fill_to(size, deadline)
                fill_s = time.perf_counter() - started
                time.sleep(6)  # past the readers' clock-skew slack before a queue's start
                pongs = [cold_pong(settings, live) for _ in range(args.cold)]
                qid, since = finished_queue(settings)
                status_s = timed(lambda: status_of(settings, qid, since))  # noqa: B023
                events_s = timed(lambda: events_of(settings, qid, since))  # noqa: B023
                path = store_with_records(settings, Path(tmp))
                list_s = timed(lambda: list_queues(settings, path))  # noqa: B023
                kept_s = timed(lambda: status_kept(settings, launched, launched_store))
                contrast_s = timed(lambda: status_of(settings, early, early_since))
                anchor_s = statistics.median(bare_reader(settings, live) for _ in range(3))
                values = [
                    f"{filler.sent:,}", f"{fill_s:.1f}",
                    f"{statistics.median(pongs) * 1000:.0f}", f"{max(pongs) * 1000:.0f}",
                    f"{status_s * 1000:.0f}", f"{events_s * 1000:.0f}",
                    f"{list_s * 1000:.0f}", f"{kept_s * 1000:.0f}", f"{contrast_s * 1000:.0f}",
                    f"{anchor_s * 1000:.0f}",
                ]  # fmt: skip
                for key, value in zip(rows, values, strict=True):
                    rows[key].append(value)
                pairs = zip(rows, values, strict=True)
                print(f"N={filler.sent:,}: " + ", ".join(f"{k}={v}" for k, v in pairs))
                if filler.sent < size:
                    print(f"filling stopped at {filler.sent:,} (--max-fill-s)")
                    break
    width = max(len(k) for k in rows)
    print()
    print(f"{'':<{width}}  " + "  ".join(f"{'N=' + f'{s:,}':>12}" for s in sizes[: len(
        rows['fill took (s)'])]))  # fmt: skip
    for key, values in rows.items():
        print(f"{key:<{width}}  " + "  ".join(f"{v:>12}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
