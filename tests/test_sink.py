"""The store sink against the real broker: exactly-once storage, DLQ, kill -9, broker restart."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import subprocess_env, wait_for_status
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.telemetry import FINISHED_WITH_DEAD_LETTERS, queue_status
from streamforge_nb.kafka.clients import make_admin, make_producer
from streamforge_nb.platform.checks import check_candles, decode_and_check
from streamforge_nb.platform.contract import Candle, encode, message_key
from streamforge_nb.platform.markers import EXCHANGE_EMPTY, RECORD_HEADER, encode_exchange_empty
from streamforge_nb.platform.names import data_topic, dlq_topic, new_short_id, queue_id
from streamforge_nb.platform.topics import TopicSpec, ensure_topics
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import CandleGenerator, ExchangeServer, local_broker, read_topic
from streamforge_nb.workers.loader import LoaderOptions, run_loader
from streamforge_nb.workers.sink import (
    DLQ_MAX_KEY,
    DLQ_MAX_VALUE,
    SinkOptions,
    dlq_copy,
    queue_series,
    run_sink,
)

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
        deadline = time.monotonic() + 180  # generous: a loaded 2-core machine starts slowly
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
        errors = [h for h in history if h[1] == "error"]  # the reason first: history is long
        assert codes == {"loader": 0, "sink": 0}, errors or history
        assert stored(store_url, minutes) == (minutes, minutes)


@pytest.mark.stress
def test_a_broker_that_stalls_as_the_load_ends_fails_no_worker(
    tmp_path: Path, store_url: str
) -> None:
    """A broker frozen for 20 s (a long GC pause, a saturated node) just as the loader ends,
    while the sink looks for the topic's end and commits: timeouts, not refusals, so both
    go on and every candle is stored once."""
    with local_broker(tmp_path / "kafka") as broker, ExchangeServer() as exchange:
        settings = broker.settings()
        qid = new_queue()
        minutes = 3 * 1440
        loader = LoaderOptions(
            queue_id=qid, symbol="BTCUSDT", interval="1m", time_range="2024-08-01:2024-08-04",
            base_url=exchange.base_url, report_every=0,
        )  # fmt: skip
        codes: dict[str, int] = {}
        sink = threading.Thread(
            target=lambda: codes.update(
                sink=run_sink(
                    SinkOptions(queue_id=qid, store_url=store_url, batch_size=50), settings
                )
            )
        )
        sink.start()
        assert run_loader(loader, settings) == 0
        pid = broker.status().pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(20)
        finally:
            os.kill(pid, signal.SIGCONT)
        sink.join(timeout=300)
        assert codes == {"sink": 0}, _history(settings, qid)  # read only on failure
        assert stored(store_url, minutes) == (minutes, minutes)


def _history(settings: Settings, qid: str) -> list[tuple[str, str, str | None]]:
    with Queue(qid, settings) as queue:
        return [(e.producer, e.status, e.message) for e in queue.events()]


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


# --- poison messages: each stored or dead-lettered, never a stall -----------------------------


def _candle_json(
    minute: int, symbol: str = "BTCUSDT", interval: str = "1m", **changes: object
) -> bytes:
    """A generated 1m candle `minute`s after START_MS, with `changes` (raw JSON values)."""
    candle = candles(1, START_MS + minute * 60_000)[0]
    data: dict[str, object] = json.loads(encode(candle))
    data["_key"] = f"{symbol}_{interval}_{data['open_time']}"
    data.update(changes)
    if "open_time" in changes and "_key" not in changes:
        data["_key"] = f"{symbol}_{interval}_{changes['open_time']}"
    return json.dumps(data).encode()  # json, not orjson: it writes ints beyond 64 bits


def _poison() -> list[tuple[str, bytes, bytes]]:
    """(expected words of the DLQ reason, Kafka key, value): issue 11's messages."""
    future = 9 * 10**15
    big = b"x" * 1_048_509
    year_1970, year_2500 = 60_000, 16_725_225_600_000

    letters = "ABCDEFGHIJKLMNOPQRSTUVWXY"  # 25 characters

    def at(minute: int, open_ms: int) -> bytes:
        return _candle_json(minute, open_time=open_ms, close_time=open_ms + 59_999)

    def key(value: bytes) -> bytes:
        return str(json.loads(value)["_key"]).encode()

    def item(words: str, value: bytes, kafka_key: bytes | None = None) -> tuple[str, bytes, bytes]:
        return words, kafka_key if kafka_key is not None else key(value), value

    return [
        item("interval '7m'", _candle_json(100, interval="7m")),
        item("symbol 'B'", _candle_json(101, symbol="B")),
        item("symbol 'ABCDEFGHIJKLMNOPQRSTUVWXY'", _candle_json(102, symbol=letters)),
        item("open_time", _candle_json(103, open_time=10**20)),
        item("number_of_trades", _candle_json(104, number_of_trades=10**20)),
        ("not valid JSON", b"k", big),
        ("not a JSON object", b"k", b"null"),  # crashed pyarrow's JSON reader (SIGSEGV)
        item("outside the exchange's era", at(105, future)),
        item("volume -1", _candle_json(106, volume="-1")),
        item("open -5", _candle_json(107, open="-5", low="-6")),
        item("number_of_trades", _candle_json(110, number_of_trades=-7)),
        item("is not a finite number", _candle_json(112, close="9" * 400)),
        item("outside the exchange's era", at(114, year_1970)),
        item("outside the exchange's era", at(115, year_2500)),
        item("symbol 'ETHUSDT'", _candle_json(116, symbol="ETHUSDT")),
        item("interval '5m'", _candle_json(115, interval="5m")),  # on the 5m grid too
        item("Kafka key", _candle_json(118), kafka_key=b"BTCUSDT_1m_1722470400000"),
        item("Kafka key", _candle_json(119), kafka_key=b""),
        item("outside the queue's range", _candle_json(-60 * 24 * 365)),  # 2023, on 2024-08-01
    ]  # fmt: skip


def _odd() -> list[tuple[str, bytes, bytes]]:
    """(anomaly kind, Kafka key, value): odd but plausible candles, as exchanges serve them.

    They were refused to the DLQ before (issue 19); each must now be stored as sent.
    """
    off_grid = START_MS + 113 * 60_000 + 123
    values = [
        ("ohlc", _candle_json(108, high="1", low="2")),
        ("ohlc", _candle_json(109, close="99999", high="99998")),
        ("close_time", _candle_json(111, close_time=START_MS + 111 * 60_000 - 1)),
        ("off_grid", _candle_json(113, open_time=off_grid, close_time=off_grid + 59_999)),
    ]
    return [(kind, str(json.loads(v)["_key"]).encode(), v) for kind, v in values]


def test_poison_messages_go_to_the_dlq_and_every_good_candle_is_stored(
    settings: Settings, store_url: str
) -> None:
    qid = new_queue()
    topic = data_topic(qid)
    poison = _poison()
    odd = _odd()
    good = as_messages(candles(60))
    messages: list[tuple[bytes, bytes]] = []
    for i, (_, key, value) in enumerate(poison):  # each poison message among good candles
        messages += [*good[i * 2 : i * 2 + 2], (key, value)]
    messages += good[len(poison) * 2 :]
    messages += [(key, value) for _, key, value in odd]
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(topic),))
    finally:
        admin.close()
    producer = make_producer(settings, max_request_size=2 * 2**20)
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    options = SinkOptions(queue_id=qid, store_url=store_url, wait_for_loader=False)
    assert run_sink(options, settings) == 0
    assert stored(store_url, 200) == (60 + len(odd), 60 + len(odd))
    with CandleStore.open(store_url) as store:
        coverage = store.coverage()  # never raises, and holds nothing but the good candles
        frame = store.load("BTCUSDT", "1m", START_MS, START_MS + 200 * 60_000)
    assert coverage[["symbol", "interval", "rows"]].values.tolist() == [
        ["BTCUSDT", "1m", 60 + len(odd)]
    ]
    for _, _, value in odd:  # stored exactly as sent
        sent = json.loads(value)
        row = frame.loc[pd.Timestamp(sent["open_time"], unit="ms", tz="UTC")]
        assert row["close_time"] == pd.Timestamp(sent["close_time"], unit="ms", tz="UTC")
        assert [row[f] for f in ("open", "high", "low", "close")] == [
            float(sent[f]) for f in ("open", "high", "low", "close")
        ]
    dead = read_topic(settings, dlq_topic(topic))
    assert len(dead) == len(poison)
    offsets = set()
    for record, (words, key, value) in zip(dead, poison, strict=True):
        headers = dict(record.headers)
        reason = headers["error"].decode()
        assert reason.startswith("invalid candle"), reason
        assert words in reason, (words, reason)
        assert headers["source_topic"] == topic.encode()
        offsets.add(int(headers["source_offset"]))
        if len(value) > DLQ_MAX_VALUE:
            assert record.value == value[:DLQ_MAX_VALUE]
            assert (
                headers["truncated"]
                == f"value cut from {len(value)} to {DLQ_MAX_VALUE} bytes".encode()
            )
        else:
            assert (record.key, record.value) == (key, value)
            assert "truncated" not in headers
    assert len(offsets) == len(poison)
    with Queue(qid, settings) as queue:
        final = queue.status()
        states = queue.producers()
    assert final["status"].tolist() == ["finished"]
    assert final["records_written"].tolist() == [60 + len(odd)]
    # Said, not hidden: what went to the DLQ, and what was stored odd.
    assert final["dead_letters"].tolist() == [len(poison)]
    assert final["anomalies"].tolist() == [len(odd)]
    assert f"{len(poison)} rejected to {dlq_topic(topic)}" in final["message"].iloc[0]
    assert "ohlc 2" in final["message"].iloc[0]
    assert queue_status(states, ["arango-candles"]) == FINISHED_WITH_DEAD_LETTERS


def test_a_dead_letter_refused_again_keeps_where_it_first_came_from(
    settings: Settings, store_url: str
) -> None:
    first, second = new_queue(), new_queue()
    big = _candle_json(3, symbol="ETHUSDT", volume="1" + "0" * 300_000)  # cut in the DLQ
    fill(settings, data_topic(first), [*as_messages(candles(2)), (b"k", big)])
    assert run_sink(SinkOptions(queue_id=first, store_url=store_url, wait_for_loader=False),
                    settings) == 0  # fmt: skip
    [dead] = read_topic(settings, dlq_topic(data_topic(first)))
    # Redriven as is (key, value, headers) into another queue, where it is refused again.
    fill(settings, data_topic(second), [])
    producer = make_producer(settings)
    producer.send(data_topic(second), key=dead.key, value=dead.value, headers=dead.headers)
    producer.flush()
    producer.close()
    assert run_sink(SinkOptions(queue_id=second, store_url=store_url, wait_for_loader=False),
                    settings) == 0  # fmt: skip
    [again] = read_topic(settings, dlq_topic(data_topic(second)))
    headers = dict(again.headers)
    assert headers["source_topic"] == data_topic(first).encode()
    assert headers["source_offset"] == b"2"
    assert headers["truncated"] == f"value cut from {len(big)} to {DLQ_MAX_VALUE} bytes".encode()
    assert headers["refused_topic"] == data_topic(second).encode()
    assert headers["refused_offset"] == b"0"
    assert b"invalid candle" in headers["error"]


def test_a_store_outage_stops_the_sink_with_an_error_and_commits_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    qid = new_queue()
    fill(settings, data_topic(qid), as_messages(candles(500)))
    root = tmp_path / "store"
    root.mkdir()
    (root / "candles").write_text("a file where the store wants a folder: every write fails")
    options = SinkOptions(queue_id=qid, store_url=f"local://{root}", wait_for_loader=False)
    assert run_sink(options, settings) == 1
    with Queue(qid, settings) as queue:
        final = queue.status()
    assert final["status"].tolist() == ["error"]
    assert "StoreError" in final["message"].iloc[0]
    assert read_topic(settings, dlq_topic(data_topic(qid))) == []  # nothing blamed on the data
    # Nothing was committed: once the store is back, the same group stores every candle.
    (root / "candles").unlink()
    assert run_sink(options, settings) == 0
    assert stored(f"local://{root}", 500) == (500, 500)


# --- the batch decoder and checks, on arbitrary input -----------------------------------------

_FIELDS = (
    "_key", "open_time", "open", "high", "low", "close", "volume", "close_time",
    "quote_asset_volume", "number_of_trades", "taker_buy_base_asset_volume",
    "taker_buy_quote_asset_volume",
)  # fmt: skip
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["1.5", "-1", "0", "1e5", "9" * 400, "BTCUSDT_1m_1722470400000", ""]),
)


@st.composite
def candle_messages(draw: st.DrawFn) -> tuple[bytes | None, bytes]:
    """A valid candle, a candle with some fields replaced or dropped, or arbitrary bytes."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.none() | st.binary(max_size=40)), draw(st.binary(max_size=200))
    minute = draw(st.integers(-(10**9), 10**9))
    value = json.loads(_candle_json(minute % 100_000))
    if kind >= 2:
        for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=4)):
            if draw(st.booleans()):
                value.pop(name, None)
            else:
                value[name] = draw(_json_scalars)
    if kind == 4:
        value = draw(st.sampled_from([[value], "x", 1, None, {"a": value}]))
    key = value.get("_key") if isinstance(value, dict) else None
    kafka_key = (
        key.encode()
        if isinstance(key, str) and draw(st.booleans())
        else draw(st.none() | st.binary(max_size=30))
    )
    return kafka_key, json.dumps(value).encode()


@settings_(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(candle_messages(), max_size=40))
def test_every_message_is_stored_xor_dead_lettered(
    messages: list[tuple[bytes | None, bytes]],
) -> None:
    keys = [k for k, _ in messages]
    values = [v for _, v in messages]
    table, rejected = decode_and_check(values, keys, "BTCUSDT", "1m")
    indices = [i for i, _ in rejected]
    assert indices == sorted(set(indices))
    assert all(0 <= i < len(values) and why for i, why in rejected)
    assert table.num_rows + len(rejected) == len(values)
    # What passed is sane: checking it again finds nothing, and the store takes it.
    again, none = check_candles(table, None, "BTCUSDT", "1m")
    assert none == [] and again.num_rows == table.num_rows
    with (
        tempfile.TemporaryDirectory() as directory,
        CandleStore.open(f"local://{directory}") as store,
    ):
        # One row per open time: duplicates in a batch are one candle (the last wins).
        assert store.write_table(table) == len(set(table["open_time"].to_pylist()))
        store.coverage()


@settings_(max_examples=60, deadline=None)
@given(st.lists(candle_messages(), max_size=20))
def test_a_hand_made_queue_checks_each_rows_own_series(
    messages: list[tuple[bytes | None, bytes]],
) -> None:
    values = [v for _, v in messages]
    table, rejected = decode_and_check(values, None, None, None)
    assert table.num_rows + len(rejected) == len(values)


def test_dlq_copies_fit_any_broker() -> None:
    assert dlq_copy(b"k", b"v") == (b"k", b"v", "")
    key, value, note = dlq_copy(b"k" * 5000, b"v" * (DLQ_MAX_VALUE + 1))
    assert (len(key or b""), len(value)) == (DLQ_MAX_KEY, DLQ_MAX_VALUE)
    cut = f"value cut from {DLQ_MAX_VALUE + 1} to {DLQ_MAX_VALUE} bytes"
    assert note == f"key cut from 5000 to {DLQ_MAX_KEY} bytes; {cut}"


def test_queue_series_comes_from_the_topics_queue() -> None:
    qid = new_queue()
    assert queue_series(data_topic(qid), qid) == ("BTCUSDT", "1m")
    other = queue_id("1INCHUSDT", "api_candles_1M", dt.date(2024, 8, 1), "abc")
    assert queue_series(data_topic(other), qid) == ("1INCHUSDT", "1M")
    assert queue_series("hand-made-topic", "my queue") == (None, None)


def test_a_null_message_never_reaches_pyarrows_json_reader() -> None:
    # pyarrow 26's JSON reader segfaults on a buffer starting with a top-level null.
    good = encode(candles(1)[0])
    for values in ([b"null", good], [b" null", good], [b"null"]):
        table, rejected = decode_and_check(values, None, "BTCUSDT", "1m")
        assert [i for i, _ in rejected] == [i for i, v in enumerate(values) if v != good]
        assert table.num_rows == values.count(good)


# -- issue 14: exchange-empty markers ------------------------------------------------------------
def test_markers_are_recorded_and_malformed_ones_go_to_the_dlq(
    settings: Settings, store_url: str
) -> None:
    qid = new_queue()
    topic = data_topic(qid)
    hole = (START_MS + 20 * 60_000, START_MS + 30 * 60_000)
    key, value = encode_exchange_empty("BTCUSDT", "1m", *hole)
    off_grid_key, off_grid = encode_exchange_empty("BTCUSDT", "1m", hole[0] + 1, hole[1])
    eth_key, eth = encode_exchange_empty("ETHUSDT", "1m", *hole)
    reversed_key, backwards = encode_exchange_empty("BTCUSDT", "1m", hole[1], hole[0])
    malformed = [
        (b"x", b"{not json", "not valid JSON"),
        (key, b'{"_key": 1}', "expected fields"),
        (off_grid_key, off_grid, "is not on the 1m grid"),
        (eth_key, eth, "is not the queue's BTCUSDT 1m"),
        (reversed_key, backwards, "is not a non-empty range"),
        (b"another-key", value, "differs from _key"),
        (key, value.replace(b"_empty_", b"_blank_"), "_key"),
    ]
    good = [c for c in candles(40) if not hole[0] <= c.open_time < hole[1]]
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(topic),))
    finally:
        admin.close()
    producer = make_producer(settings)
    header = [(RECORD_HEADER, EXCHANGE_EMPTY)]
    for message_key_, message in as_messages(good[:20]):
        producer.send(topic, key=message_key_, value=message)
    for bad_key, bad_value, _ in malformed:
        producer.send(topic, key=bad_key, value=bad_value, headers=header)
    for _ in range(2):  # published twice (a loader retried): recorded once
        producer.send(topic, key=key, value=value, headers=header)
    for message_key_, message in as_messages(good[20:]):
        producer.send(topic, key=message_key_, value=message)
    producer.flush()
    producer.close()
    options = SinkOptions(queue_id=qid, store_url=store_url, wait_for_loader=False)
    assert run_sink(options, settings) == 0
    assert stored(store_url, 40) == (30, 30)
    with CandleStore.open(store_url) as store:
        recorded = store.exchange_empty("BTCUSDT", "1m")
        gaps = store.gaps("BTCUSDT", "1m", START_MS, START_MS + 40 * 60_000)
    assert [(int(s.value // 10**6), int(e.value // 10**6)) for s, e in recorded.values] == [hole]
    assert gaps["kind"].tolist() == ["exchange_empty"]
    dead = read_topic(settings, dlq_topic(topic))
    assert len(dead) == len(malformed)
    for record, (bad_key, bad_value, words) in zip(dead, malformed, strict=True):
        reason = dict(record.headers)["error"].decode()
        assert reason.startswith("invalid exchange-empty marker") and words in reason, reason
        assert (record.key, record.value) == (bad_key, bad_value)
    with Queue(qid, settings) as queue:
        final = queue.status()
    assert final["status"].tolist() == ["finished"]
    assert final["records_written"].tolist() == [30]


def test_dlq_copies_are_cut_at_the_documented_256_kib_value_and_1_kib_key() -> None:
    """README: a copy larger than 256 KiB (value) or 1 KiB (key) is cut; not one byte less."""
    fits = dlq_copy(b"k" * 1024, b"v" * (256 * 1024))
    assert fits == (b"k" * 1024, b"v" * (256 * 1024), "")
    key, value, note = dlq_copy(b"k" * 1025, b"v" * (256 * 1024 + 1))
    assert (key, value) == (b"k" * 1024, b"v" * (256 * 1024))
    assert note == "key cut from 1025 to 1024 bytes; value cut from 262145 to 262144 bytes"
    key, value, note = dlq_copy(None, b"v" * (512 * 1024))
    assert (key, len(value), note) == (None, 262144, "value cut from 524288 to 262144 bytes")


def test_a_zero_price_or_another_series_is_refused_and_zero_volume_is_stored() -> None:
    """Prices are > 0 (however small), volumes >= 0 (a minute without trades is real), and a
    queue's sink takes only its own symbol and interval: checked on the batch, no broker."""
    zeros = {name: "0" for name in ("volume", "quote_asset_volume",
             "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume")}  # fmt: skip
    values = [
        _candle_json(0, **zeros, number_of_trades=0),
        _candle_json(1, open="0", low="0"),
        _candle_json(2, symbol="ETHUSDT"),
        _candle_json(3, interval="5m"),
        # Many coins trade below 1 (SHIBUSDT near 0.00001): any price above 0 is sane.
        _candle_json(4, open="0.00001234", high="0.0000124", low="0.0000123", close="0.00001235"),
    ]
    keys = [str(json.loads(v)["_key"]).encode() for v in values]
    table, refused = decode_and_check(values, keys, "BTCUSDT", "1m", START_MS + 86_400_000)
    assert table["open_time"].to_pylist() == [START_MS, START_MS + 4 * 60_000]
    assert float(table["volume"][0].as_py()) == 0.0
    assert [(i, why.split(": ", 1)[1]) for i, why in refused] == [
        (1, "open 0 is not a finite number > 0; low 0 is not a finite number > 0"),
        (2, f"symbol 'ETHUSDT' in _key {keys[2].decode()!r} is not the queue's BTCUSDT"),
        (3, f"interval '5m' in _key {keys[3].decode()!r} is not the queue's 1m"),
    ]
