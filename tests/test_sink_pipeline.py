"""The sink reads its next batch while it stores the last: commits still follow the store.

Against the session's real broker and the embedded store; bench/ingest.py has the speed.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import re
import threading
from pathlib import Path

import pytest

from streamforge_nb.kafka.clients import make_admin, make_producer
from streamforge_nb.platform.contract import Candle, encode, message_key
from streamforge_nb.platform.names import data_topic, new_short_id, queue_id
from streamforge_nb.platform.topics import TopicSpec, ensure_topics
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import CandleGenerator
from streamforge_nb.workers.sink import SinkOptions, run_sink

AUGUST_LAST_HOUR_MS = 1725145200000  # 2024-08-31T23:00:00Z: an hour before September


def fill_candles(settings: Settings, qid: str, start_ms: int, count: int) -> None:
    """Publish `count` 1m BTCUSDT candles from `start_ms` to the queue's data topic."""
    topic = data_topic(qid)
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(topic),))
    finally:
        admin.close()
    rows = CandleGenerator().rows("BTCUSDT", "1m", start_ms, start_ms + count * 60_000)
    producer = make_producer(settings, linger_ms=20)
    for row in rows:
        candle = Candle.from_kline("BTCUSDT", "1m", row)
        producer.send(topic, key=message_key(candle), value=encode(candle))
    producer.flush()
    producer.close()


def stored_rows(store_url: str, start_ms: int, count: int) -> int:
    with CandleStore.open(store_url) as store:
        return len(store.load("BTCUSDT", "1m", start_ms, start_ms + count * 60_000))


def test_a_store_failing_mid_load_leaves_committed_only_what_it_stored(
    settings: Settings, tmp_path: Path
) -> None:
    # August's hour stores; September's partition cannot be written (a folder where its
    # file goes): the sink stops with an error after reading ahead into September.
    qid = queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 31), new_short_id())
    fill_candles(settings, qid, AUGUST_LAST_HOUR_MS, 120)
    root = tmp_path / "store"
    september = root / "candles" / "BTCUSDT" / "1m" / "2024-09.parquet"
    september.mkdir(parents=True)
    store_url = f"local://{root}"
    options = SinkOptions(
        queue_id=qid, store_url=store_url, wait_for_loader=False, batch_size=20
    )  # fmt: skip
    assert run_sink(options, settings) == 1
    assert stored_rows(store_url, AUGUST_LAST_HOUR_MS, 60) == 60  # August's hour, whole
    # The same group, the store back: every candle the first run read but did not store is
    # read again (a batch read ahead and committed before it was stored would be lost).
    september.rmdir()
    assert run_sink(options, settings) == 0
    assert stored_rows(store_url, AUGUST_LAST_HOUR_MS, 120) == 120


def test_the_sink_logs_its_own_rate_and_leaves_the_collector_as_it_was(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # bench/ingest.py reads this line: the sink's loop, apart from its process's start.
    qid = queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 31), new_short_id())
    fill_candles(settings, qid, AUGUST_LAST_HOUR_MS, 300)
    options = SinkOptions(
        queue_id=qid, store_url=f"local://{tmp_path}", wait_for_loader=False, batch_size=70
    )  # fmt: skip
    thresholds = gc.get_threshold()
    caplog.set_level(logging.INFO, logger="streamforge_nb.sink")
    assert run_sink(options, settings) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "streamforge_nb.sink"]
    rate = re.compile(
        r"stored 300 candles in [0-9.]+ s from the first message read to the last commit "
        r"\([0-9]+ candles/s\)"
    )
    assert any(rate.fullmatch(line) for line in lines), lines
    # A notebook kernel (or this test process) running the sink keeps its own collector.
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0


def test_a_caught_up_sink_commits_without_waiting_out_its_batch_window(
    settings: Settings, tmp_path: Path
) -> None:
    # A long batch window (a slow live topic) must not hold back the commits of batches
    # already stored once every message is read: the sink finishes as soon as they are.
    # Before, it waited out the window (an hour here; a second, by default, at the end of
    # every topic) for messages that were not coming, with everything stored uncommitted.
    qid = queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 31), new_short_id())
    fill_candles(settings, qid, AUGUST_LAST_HOUR_MS, 120)
    store_url = f"local://{tmp_path}"
    options = SinkOptions(
        queue_id=qid, store_url=store_url, wait_for_loader=False, batch_size=50,
        batch_seconds=3600.0,
    )  # fmt: skip
    exit_codes: list[int] = []
    sink = threading.Thread(target=lambda: exit_codes.append(run_sink(options, settings)))
    sink.daemon = True  # a sink that waits out the hour must not hold pytest at exit
    sink.start()
    # Not a timing: a liveness bound, a minute against the window's hour (it takes seconds).
    sink.join(timeout=60)
    assert not sink.is_alive(), "the sink is waiting out its batch window, all of it read"
    assert exit_codes == [0]
    assert stored_rows(store_url, AUGUST_LAST_HOUR_MS, 120) == 120
