"""The store sink against the real broker: exactly-once storage, DLQ, kill -9, broker restart."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import subprocess_env, wait_for_status

from streamforge_nb.control.queue import Queue
from streamforge_nb.kafka.clients import make_admin, make_producer
from streamforge_nb.platform.contract import Candle, encode, message_key
from streamforge_nb.platform.names import data_topic, dlq_topic, new_short_id, queue_id
from streamforge_nb.platform.topics import TopicSpec, ensure_topics
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import CandleGenerator, ExchangeServer, local_broker, read_topic
from streamforge_nb.workers.loader import LoaderOptions, run_loader
from streamforge_nb.workers.sink import SinkOptions, run_sink

START_MS = 1722470400000  # 2024-08-01T00:00:00Z


def new_queue() -> str:
    return queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 1), new_short_id())


def candles(count: int, start_ms: int = START_MS) -> list[Candle]:
    rows = CandleGenerator().rows("BTCUSDT", "1m", start_ms, start_ms + count * 60_000)
    return [Candle.from_kline("BTCUSDT", "1m", row) for row in rows]


def fill(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(topic),))
    finally:
        admin.close()
    producer = make_producer(settings, linger_ms=20, batch_size=256 * 1024)
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def as_messages(items: list[Candle]) -> list[tuple[bytes, bytes]]:
    return [(message_key(c), encode(c)) for c in items]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"local://{tmp_path / 'store'}"


def stored(store_url: str, count: int) -> tuple[int, int]:
    """Return (rows stored, distinct open times) for the test range."""
    with CandleStore.open(store_url) as store:
        frame = store.load("BTCUSDT", "1m", START_MS, START_MS + count * 60_000)
    return len(frame), frame.index.nunique()


def test_loader_then_sink_stores_exactly_the_exchange_candles(
    settings: Settings, store_url: str
) -> None:
    qid = new_queue()
    with ExchangeServer() as exchange:
        loader = LoaderOptions(
            queue_id=qid,
            symbol="BTCUSDT",
            interval="1m",
            time_range="2024-08-01:2024-08-02",
            base_url=exchange.base_url,
        )
        sink = threading.Thread(
            target=run_sink, args=(SinkOptions(queue_id=qid, store_url=store_url), settings)
        )
        sink.start()
        assert run_loader(loader, settings) == 0
        sink.join(timeout=120)
        expected = exchange.expected_rows("BTCUSDT", "1m", START_MS, START_MS + 1440 * 60_000)
    assert not sink.is_alive()
    with CandleStore.open(store_url) as store:
        frame = store.load("BTCUSDT", "1m", START_MS, START_MS + 1440 * 60_000)
    assert len(frame) == 1440
    assert frame["close"].tolist() == [float(row[4]) for row in expected]
    with Queue(qid, settings) as queue:
        final = queue.status()
    sinks = final[final.index.str.startswith("arango-candles__")]
    assert sinks["status"].tolist() == ["finished"]
    assert sinks["records_written"].tolist() == [1440]


def test_consuming_twice_stores_each_candle_once(settings: Settings, store_url: str) -> None:
    qid = new_queue()
    fill(settings, data_topic(qid), as_messages(candles(3000)))
    for group in ("first", "second"):
        options = SinkOptions(
            queue_id=qid,
            store_url=store_url,
            group_id=f"{qid}-{group}",
            wait_for_loader=False,
            batch_size=700,
        )
        assert run_sink(options, settings) == 0
    assert stored(store_url, 3000) == (3000, 3000)


def test_garbage_goes_to_the_dlq_and_every_valid_candle_is_stored(
    settings: Settings, store_url: str
) -> None:
    qid = new_queue()
    good = as_messages(candles(5000))
    bad = [
        (b"k", b"{not json"),
        (b"k", b'{"_key": "BTCUSDT_1m_1", "open_time": "1"}'),
        (
            b"k",
            encode(candles(1)[0]).replace(
                b'"number_of_trades":', b'"number_of_trades":"x","ignored":'
            ),
        ),
        (b"k", b"[]"),
        (b"k", b""),
    ] * 10  # 50 of 5050: 1%
    messages = []
    for i, message in enumerate(good):
        messages.append(message)
        if i % 100 == 0 and bad:
            messages.append(bad.pop())
    messages.extend(bad)
    fill(settings, data_topic(qid), messages)
    options = SinkOptions(queue_id=qid, store_url=store_url, wait_for_loader=False)
    assert run_sink(options, settings) == 0
    assert stored(store_url, 5000) == (5000, 5000)
    dead = read_topic(settings, dlq_topic(data_topic(qid)))
    assert len(dead) == 50
    assert all(dict(r.headers)["error"].startswith(b"invalid candle") for r in dead)


def test_sigkill_mid_run_loses_and_doubles_nothing(settings: Settings, store_url: str) -> None:
    qid = new_queue()
    count = 60_000
    fill(settings, data_topic(qid), as_messages(candles(count)))
    command = [
        sys.executable,
        "-m",
        "streamforge_nb.workers.sink",
        "--queue-id",
        qid,
        "--store-url",
        store_url,
        "--no-wait-for-loader",
        "--batch-size",
        "2000",
        "--report-every",
        "0",
    ]
    first = subprocess.Popen(command, env=subprocess_env(settings), stderr=subprocess.DEVNULL)
    with Queue(qid, settings) as queue:
        deadline = time.monotonic() + 60
        while not any(s.status == "loading" for s in queue.producers().values()):
            assert time.monotonic() < deadline, "the sink never reported progress"
            time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    partial = stored(store_url, count)[0]
    assert 0 < partial < count, "kill the sink mid-run, not after it finished"
    second = subprocess.run(
        command,
        env=subprocess_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert stored(store_url, count) == (count, count)


def test_broker_restart_during_a_load_loses_nothing(tmp_path: Path, store_url: str) -> None:
    with local_broker(tmp_path / "kafka") as broker, ExchangeServer() as exchange:
        settings = broker.settings()
        qid = new_queue()
        minutes = 3 * 1440
        loader = LoaderOptions(
            queue_id=qid,
            symbol="BTCUSDT",
            interval="1m",
            time_range="2024-08-01:2024-08-04",
            base_url=exchange.base_url,
            report_every=0,
        )
        codes: dict[str, int] = {}
        sink = threading.Thread(
            target=lambda: codes.update(
                sink=run_sink(
                    SinkOptions(queue_id=qid, store_url=store_url, batch_size=500), settings
                )
            )
        )
        loading = threading.Thread(target=lambda: codes.update(loader=run_loader(loader, settings)))
        sink.start()
        loading.start()
        wait_for_status(settings, qid, "loading")
        broker.down()
        broker.up()
        loading.join(timeout=300)
        sink.join(timeout=300)
        with Queue(qid, settings) as queue:
            history = [(e.producer, e.status, e.message) for e in queue.events()]
        assert codes == {"loader": 0, "sink": 0}, history
        assert stored(store_url, minutes) == (minutes, minutes)


def test_stop_ends_a_waiting_sink_with_interrupted(settings: Settings, store_url: str) -> None:
    qid = new_queue()  # no loader ever reports: the sink waits until told to stop
    codes: list[int] = []
    runner = threading.Thread(
        target=lambda: codes.append(
            run_sink(SinkOptions(queue_id=qid, store_url=store_url), settings)
        )
    )
    runner.start()
    wait_for_status(settings, qid, "started")
    with Queue(qid, settings) as queue:
        assert [p.split("__")[0] for p in queue.stop(timeout=30)] == ["arango-candles"]
    runner.join(timeout=30)
    assert codes == [0]
