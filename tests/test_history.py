"""Reading cost independent of history: a queue-events topic pre-filled with other queues'.

Issue 10: with 132k events of other queues on the topic, a cold ping timed out and 20 Queues
lost pongs, because every Queue replayed the topic from offset 0. Here service topics of this
module's own (on the session's broker, shaped like queue-control and queue-events) get 200k
events of other queues (keyed and unkeyed, some malformed), filled fast with librdkafka, and
the same operations must still answer within their own timeouts and lose nothing. How fast
they are is bench/history.py's to measure, against an anchor, not these tests'.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.state import final_states, new_record
from streamforge_nb.control.telemetry import ProducerState
from streamforge_nb.control.worker import Worker
from streamforge_nb.kafka.clients import make_admin, make_consumer
from streamforge_nb.kafka.partitions import START_SLACK_S, partition_for
from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.platform.topics import SERVICE_TOPICS, ensure_topics
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore

FILL = 200_000


def platform_queue_id(day: datetime | None = None) -> str:
    """A queue id of the platform's shape, dated today (what a live launch gets)."""
    day = day or datetime.now(UTC)
    return f"wf-btcusdt-api_candles_1m-{day:%Y%m%d}-{uuid.uuid4().hex[:8]}"


def fill_events(settings: Settings, count: int, *, queues: int = 2000) -> float:
    """Produce `count` telemetry events of `queues` other queues; return the seconds it took.

    librdkafka in big batches (about 1 s for 200k here): 90% keyed by queue id with Kafka's
    murmur2 partitioner, 9% unkeyed, 1% malformed.
    """
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "partitioner": "murmur2_random",
            "acks": 1,
        }
    )
    ids = [platform_queue_id() for _ in range(queues)]
    keys = [qid.encode() for qid in ids]
    now = time.time()
    values = [
        orjson.dumps({"status": "loading", "queue_id": qid, "producer": f"loader__{qid[-8:]}",
                      "message": "Saved 15000 records", "records_written": 15000,
                      "timestamp": now})
        for qid in ids
    ]  # fmt: skip
    started = time.perf_counter()
    topic = settings.queue_events_topic
    for i in range(count):
        n = i % queues
        value = values[n]
        if i % 100 == 99:
            value = b'{"status":"loading","queue_id":"' + keys[n] + b'","timestamp":1e20}'
        key = None if i % 10 == 9 else keys[n]
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def settings(broker: LocalBroker) -> Settings:
    """Service topics of this module's own: its 200k events stay out of the other tests'."""
    from dataclasses import replace

    suffix = uuid.uuid4().hex[:8]
    control, events = f"queue-control-history-{suffix}", f"queue-events-history-{suffix}"
    own = broker.settings().model_copy(
        update={"queue_control_topic": control, "queue_events_topic": events}
    )
    specs = {"queue-control": control, "queue-events": events}
    admin = make_admin(own)
    try:
        ensure_topics(admin, tuple(replace(t, name=specs[t.name]) for t in SERVICE_TOPICS))
    finally:
        admin.close()
    return own


@pytest.fixture(scope="module")
def filled(settings: Settings) -> int:
    """queue-events holding at least FILL events of other queues, all older than the slack
    a reader allows before a queue's recorded start."""
    took = fill_events(settings, FILL)
    time.sleep(START_SLACK_S)
    consumer = make_consumer(settings)
    try:
        from kafka import TopicPartition

        topic = settings.queue_events_topic
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        total = sum(consumer.end_offsets(parts).values()) - sum(
            consumer.beginning_offsets(parts).values()
        )
    finally:
        consumer.close()
    assert total >= FILL
    print(f"filled {FILL} events in {took:.1f} s; topic holds {total}")
    return total


def test_partition_is_kafkas_murmur2() -> None:
    # Kafka's own test vectors (UtilsTest.testMurmur2): Java's murmur2 of these keys.
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, java in vectors.items():
        for count in (1, 3, 12, 50):
            assert partition_for(key, count) == (java & 0x7FFFFFFF) % count
    assert partition_for("abc", 12) == partition_for(b"abc", 12)


def test_cold_ping_is_answered_within_the_default_timeout(
    filled: int, settings: Settings, start_dummy: Callable[..., subprocess.Popen[str]]
) -> None:
    queue_id = platform_queue_id()
    start_dummy(queue_id)
    with Queue(queue_id, settings) as queue:
        replies = queue.ping()  # within the default timeout (5 s), or QueueTimeout
    assert [r.producer.partition("__")[0] for r in replies] == ["dummy"]


def test_no_pong_lost_across_20_concurrent_queues(
    filled: int, settings: Settings, start_dummy: Callable[..., subprocess.Popen[str]]
) -> None:
    queue_id = platform_queue_id()
    start_dummy(queue_id)
    pings = 20
    lost: list[str] = []
    answered: list[int] = []

    def client() -> None:
        with Queue(queue_id, settings) as queue:
            got = 0
            for _ in range(pings):
                try:
                    got += len(queue.ping(timeout=10))
                except TimeoutError as exc:
                    lost.append(str(exc))
            answered.append(got)

    threads = [threading.Thread(target=client) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not lost, lost[:3]
    assert answered == [pings] * 20


def test_status_of_a_finished_queue_reads_only_its_own_history(
    filled: int, settings: Settings
) -> None:
    queue_id = platform_queue_id()
    since = time.time()
    with Worker(settings, queue_id=queue_id, producer_id="loader__x1", target="loader") as w:
        w.run(lambda w: w.loading(42))
    with Queue(queue_id, settings, since=since) as queue:
        status = queue.status()  # what its history holds once read, within 10 s (its wait)
        events = [e.status for e in queue.events()]
    assert status.loc["loader__x1", "status"] == "finished"
    assert status.loc["loader__x1", "records_written"] == 42
    assert events == ["started", "loading", "finished"]


def test_status_of_a_queue_that_ended_long_ago_reads_none_of_the_later_events(
    settings: Settings, tmp_path: Path
) -> None:
    # Issue 20: status() of a queue that finished before a million other events read them
    # all (31 s). Its queue-state record keeps the final states once it is seen ended.
    queue_id = platform_queue_id()
    where = str(tmp_path / "store")
    with CandleStore.open(where, settings=settings) as store:
        store.create_queue_state(
            new_record(
                queue_id=queue_id, symbol="BTCUSDT", type_="api_candles_1m",
                targets=["loader"], parameters={}, data_topic="t", outputs={}, launcher="",
                jobs=[],
            )
        )  # fmt: skip
    with Worker(settings, queue_id=queue_id, producer_id="loader__x1", target="loader") as w:
        w.run(lambda w: w.loading(42))
    with Queue(queue_id, settings, store=where) as queue:
        first = queue.status()  # read from the record's created_at, then kept in the record
        read_first = queue._telemetry.history_records
    later = 20_000
    fill_events(settings, later)
    with Queue(queue_id, settings, store=where) as queue:
        status = queue.status()
        read = queue._telemetry.history_records
    with CandleStore.open(where, settings=settings) as store:
        record = store.queue_state(queue_id)
    assert first.loc["loader__x1", "status"] == "finished"
    assert read_first > 0  # the first status() read the telemetry: nothing was kept yet
    assert record is not None and record["status"] == "finished"
    assert status.loc["loader__x1", "status"] == "finished"
    assert status.loc["loader__x1", "records_written"] == 42
    assert read == 0  # none of the later events (nor the queue's own) was read again


def test_final_states_are_taken_only_from_an_ended_record() -> None:
    done = {"producer": "loader__x1", "status": "finished", "records_written": 5,
            "last_seen": 1.0e9, "message": None, "dead_letters": 0, "anomalies": 0}  # fmt: skip
    ended_record = {"queue_id": "q", "status": "finished", "producers": [done]}
    assert final_states(ended_record) == {"loader__x1": ProducerState(**done)}  # type: ignore[arg-type]
    # Anything else reads the telemetry: running, kept before this existed, malformed.
    assert final_states({**ended_record, "status": "running"}) is None
    assert final_states({"queue_id": "q", "status": "finished"}) is None
    assert final_states({**ended_record, "producers": [{"producer": "x"}]}) is None
    assert final_states({**ended_record, "producers": "x"}) is None
    loading = {**done, "status": "loading"}
    assert final_states({**ended_record, "producers": [done, loading]}) is None
    assert final_states(None) is None


def _records_since(settings: Settings, queue_id: str, since: float) -> int:
    """Records in `queue_id`'s partition of queue-events from `since` (less the slack) to now."""
    from kafka import TopicPartition

    from streamforge_nb.kafka.partitions import offsets_at

    consumer = make_consumer(settings)
    try:
        topic = settings.queue_events_topic
        count = len(consumer.partitions_for_topic(topic))
        tp = TopicPartition(topic, partition_for(queue_id, count))
        start = offsets_at(consumer, [tp], since - START_SLACK_S)[tp]
        return int(consumer.end_offsets([tp])[tp]) - start
    finally:
        consumer.close()


def test_a_history_reader_reads_each_event_once_and_on_from_where_it_stopped(
    settings: Settings,
) -> None:
    """What `Batch.wait` polls with: each read reads only what arrived since the last."""
    from streamforge_nb.control.state import HistoryReader
    from streamforge_nb.kafka.send import send_event
    from streamforge_nb.platform.contract import Finished, Loading, Started

    early = platform_queue_id()
    probe = make_consumer(settings)
    try:
        count = len(probe.partitions_for_topic(settings.queue_events_topic))
    finally:
        probe.close()
    # Another queue of the reader's on the same partition, asked about first.
    late = next(
        q for q in (platform_queue_id() for _ in range(1000))
        if partition_for(q, count) == partition_for(early, count)
    )  # fmt: skip
    producer = "loader__x1"
    early_start = time.time()
    send_event(settings, Loading(queue_id=early, producer=producer, records_written=5,
                                 anomalies=2))  # fmt: skip
    time.sleep(START_SLACK_S + 1)  # so the late queue's read starts after that event
    late_start = time.time()
    send_event(settings, Started(queue_id=late, producer=producer))
    reader = HistoryReader(settings, [early, late])
    try:
        states = reader.read({late: late_start})
        assert states[late][producer].status == "started" and early not in states
        read = reader.records_read
        assert read == _records_since(settings, late, late_start)  # from its start only
        # Nothing new: nothing read.
        assert reader.read({late: late_start}) == states and reader.records_read == read
        # A deadline passed stops a read before it reads; the next one goes on from there.
        send_event(settings, Finished(queue_id=late, producer=producer))
        assert reader.read({late: late_start}, deadline=time.monotonic() - 1) == states
        assert reader.read({late: late_start})[late][producer].status == "finished"
        assert reader.records_read == read + 1
        # The early queue asked about now: its partition is read again from its start.
        both = reader.read({late: late_start, early: early_start})
        assert both[early][producer].anomalies == 2
        assert both[early][producer].records_written == 5
        assert both[late][producer].status == "finished"
        assert reader.records_read == read + 1 + _records_since(settings, early, early_start)
        assert reader.consumers_made == 1
        # Closed, it starts afresh and folds the same.
        reader.close()
        assert reader.read({late: late_start, early: early_start}) == both
        assert reader.consumers_made == 2
    finally:
        reader.close()
