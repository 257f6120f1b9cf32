"""The candle loader against a local exchange speaking Binance's wire format and the real broker."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from conftest import subprocess_env

from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import ArchiveError, BrokerUnavailable, InvalidName, NotAuthorized
from streamforge_nb.exchange.archives import SAMPLE_ARCHIVE, archive_candles
from streamforge_nb.kafka.clients import make_admin
from streamforge_nb.kafka.partitions import partition_for
from streamforge_nb.platform.candle_columns import candles_table
from streamforge_nb.platform.contract import Candle, decode_candle, encode
from streamforge_nb.platform.markers import decode_exchange_empty, is_marker
from streamforge_nb.platform.names import data_topic, new_short_id, parse_time_range, queue_id
from streamforge_nb.platform.topics import ensure_queue_topics
from streamforge_nb.settings import Settings
from streamforge_nb.testing import read_topic, topic_exists
from streamforge_nb.testing.exchange import ExchangeServer
from streamforge_nb.workers.loader import (
    SETTLE_MS,
    EmptyWindows,
    LoaderOptions,
    _read_ahead,
    run_loader,
)
from streamforge_nb.workers.publish import CandlePublisher


@pytest.fixture(scope="module")
def exchange() -> Iterator[ExchangeServer]:
    with ExchangeServer() as server:
        yield server


def new_queue(symbol: str = "BTCUSDT", interval: str = "1m") -> str:
    return queue_id(symbol, f"api_candles_{interval}", dt.date(2024, 8, 1), new_short_id())


def events(settings: Settings, qid: str) -> list:
    with Queue(qid, settings) as queue:
        return list(queue.events())


def test_publishes_exactly_the_exchange_candles(
    settings: Settings, exchange: ExchangeServer
) -> None:
    qid = new_queue()
    # 2500 one-minute candles: three pages, the boundaries inside the range, and a 429 first.
    time_range = "2024-08-01T00:00:00Z/2024-08-02T17:40:00Z"
    exchange.clear_requests()
    exchange.fail_next(status=429, retry_after=1)
    options = LoaderOptions(
        queue_id=qid,
        symbol="BTCUSDT",
        interval="1m",
        time_range=time_range,
        base_url=exchange.base_url,
        report_every=0,
    )
    assert run_loader(options, settings) == 0

    span = parse_time_range(time_range)
    expected = [
        Candle.from_kline("BTCUSDT", "1m", row)
        for row in exchange.expected_rows("BTCUSDT", "1m", span.start_ms, span.end_ms)
    ]
    records = read_topic(settings, data_topic(qid))
    assert len(expected) == 2500
    assert [decode_candle(r.value) for r in records] == expected
    assert [r.key.decode() for r in records] == [c.key for c in expected]
    assert [r.status for r in exchange.requests].count(429) == 1

    statuses = [(e.status, e.records_written) for e in events(settings, qid)]
    assert statuses[0] == ("started", 0)
    assert statuses[-1] == ("finished", 2500)
    assert any(s == "loading" for s, _ in statuses)


def test_unknown_symbol_publishes_nothing(settings: Settings, exchange: ExchangeServer) -> None:
    qid = new_queue("NOPEUSDT")
    options = LoaderOptions(
        queue_id=qid,
        symbol="NOPEUSDT",
        interval="1m",
        time_range="2024-08-01:2024-08-02",
        base_url=exchange.base_url,
    )
    assert run_loader(options, settings) == 1
    assert not topic_exists(settings, data_topic(qid))
    last = events(settings, qid)[-1]
    assert last.status == "error"
    assert "NOPEUSDT" in (last.message or "")


@pytest.mark.parametrize(
    ("interval", "time_range", "match"),
    [
        ("7m", "2024-08-01:2024-08-02", "7m"),
        ("1m", "2024-08-02:2024-08-01", "2024-08-02"),
        ("1m", "2024-08-01:2024-08-01", "empty"),
    ],
)
def test_bad_request_fails_before_any_side_effect(
    settings: Settings, exchange: ExchangeServer, interval: str, time_range: str, match: str
) -> None:
    qid = new_queue()
    exchange.clear_requests()
    options = LoaderOptions(
        queue_id=qid,
        symbol="BTCUSDT",
        interval=interval,
        time_range=time_range,
        base_url=exchange.base_url,
    )
    with pytest.raises(InvalidName, match=match):
        run_loader(options, settings)
    assert exchange.requests == []
    assert not topic_exists(settings, data_topic(qid))
    assert events(settings, qid) == []


def test_archive_source_reads_the_shipped_sample(settings: Settings) -> None:
    qid = new_queue()
    options = LoaderOptions(
        queue_id=qid,
        symbol="BTCUSDT",
        interval="1m",
        time_range="2024-08-01:2024-08-02",
        source="archive",
        archives=(str(SAMPLE_ARCHIVE),),
    )
    assert run_loader(options, settings) == 0
    records = read_topic(settings, data_topic(qid))
    assert len(records) == 1440
    first = decode_candle(records[0].value)
    assert first.key == "BTCUSDT_1m_1722470400000"


def test_stop_between_pages_ends_with_interrupted(
    settings: Settings, exchange: ExchangeServer
) -> None:
    qid = new_queue(interval="1s")
    options = LoaderOptions(
        queue_id=qid,
        symbol="BTCUSDT",
        interval="1s",
        time_range="2024-08-01:2024-08-02",
        base_url=exchange.base_url,
        report_every=0,
    )
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(run_loader(options, settings)))
    runner.start()
    with Queue(qid, settings) as queue:
        deadline = time.monotonic() + 60
        while not any(s.status == "loading" for s in queue.producers().values()):
            assert time.monotonic() < deadline, "the loader never reported progress"
            time.sleep(0.02)
        assert queue.stop(timeout=30)
    runner.join(timeout=60)
    assert result == [0]
    last = events(settings, qid)[-1]
    assert last.status == "interrupted"
    published = len(read_topic(settings, data_topic(qid)))
    assert 0 < published < 86_400


_LOAD_WITHOUT_PANDAS = """
import sys
from streamforge_nb.workers.loader import main
code = main(sys.argv[1:])
print("pandas imported" if "pandas" in sys.modules else "no pandas")
sys.exit(code)
"""


def test_an_archive_load_never_imports_pandas(settings: Settings) -> None:
    """pyarrow imports pandas on its first conversion of a Python value: 0.3-0.45 s of the
    loader's start (issue 20). The loader's Arrow constants never take that path."""
    qid = new_queue()
    command = [
        sys.executable, "-c", _LOAD_WITHOUT_PANDAS, "--queue-id", qid, "--symbol", "BTCUSDT",
        "--interval", "1m", "--time-range", "2024-08-01T06:00/2024-08-01T18:00",
        "--source", "archive", "--archive", str(SAMPLE_ARCHIVE),
    ]  # fmt: skip
    proc = subprocess.run(
        command,
        env=subprocess_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "no pandas"
    records = read_topic(settings, data_topic(qid))  # part of the day: the range was filtered
    assert len(records) == 720
    assert decode_candle(records[0].value).open_time == 1722492000000


def test_cli_bad_interval_is_one_line(settings: Settings) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamforge_nb.cli",
            "loader",
            "--queue-id",
            new_queue(),
            "--symbol",
            "BTCUSDT",
            "--interval",
            "7m",
            "--time-range",
            "2024-08-01:2024-08-02",
        ],
        env=subprocess_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2  # bad input: the CLI's usage code
    assert "7m" in proc.stderr and "Traceback" not in proc.stderr


# -- issue 14: windows the exchange confirmed empty ------------------------------------------------
AUG1 = 1722470400000  # 2024-08-01T00:00:00Z
MIN = 60_000


def windows_of(
    times: list[int], start: int, end: int, *, alive: bool = True, now: int = 2 * AUG1
) -> list[tuple[int, int]]:
    asked: list[int] = []

    def alive_before(ms: int) -> bool:
        asked.append(ms)
        return alive

    finder = EmptyWindows("1m", AUG1 + start * MIN, AUG1 + end * MIN, alive_before)
    found = finder.feed([AUG1 + t * MIN for t in times[:2]]) + finder.feed(
        [AUG1 + t * MIN for t in times[2:]]
    )
    found += finder.finish(now)
    assert len(asked) <= 1  # the listing question costs one request at most
    return [((a - AUG1) // MIN, (b - AUG1) // MIN) for a, b in found]


def test_empty_windows_are_jumps_inside_the_symbols_life() -> None:
    assert windows_of([0, 1, 2, 3], 0, 4) == []
    assert windows_of([0, 1, 5, 6, 9], 0, 10) == [(2, 5), (7, 9)]  # jumps, across feeds too
    assert windows_of([3, 4], 0, 5) == [(0, 3)]  # a first page starting late
    assert windows_of([3, 4], 0, 5, alive=False) == []  # ... before the listing
    assert windows_of([0, 1], 0, 5) == [(2, 5)]  # a range ending with nothing
    assert windows_of([], 0, 5) == [(0, 5)] and windows_of([], 0, 5, alive=False) == []
    # A range ending at now: its last klines may only be late, so no trailing window.
    assert windows_of([0, 1], 0, 5, now=AUG1 + 5 * MIN + SETTLE_MS - 1) == []
    assert windows_of([0, 1], 0, 5, now=AUG1 + 5 * MIN + SETTLE_MS) == [(2, 5)]
    assert windows_of([0, 1, 3], 0, 5, now=AUG1) == [(2, 3)]  # inner windows stay


def markers(settings: Settings, qid: str) -> tuple[list[Candle], list[tuple[str, str, int, int]]]:
    candles, found = [], []
    for record in read_topic(settings, data_topic(qid)):
        if is_marker(record.headers):
            found.append(decode_exchange_empty(record.value, record.key, "BTCUSDT", "1m"))
        else:
            candles.append(decode_candle(record.value))
    return candles, found


def test_exchange_empty_windows_are_published_as_markers(settings: Settings) -> None:
    downtime = [(AUG1 + 100 * MIN, AUG1 + 160 * MIN), (AUG1 + 210 * MIN, AUG1 + 300 * MIN)]
    with ExchangeServer(downtime=downtime) as exchange:
        qid = new_queue()
        options = LoaderOptions(
            queue_id=qid,
            symbol="BTCUSDT",
            interval="1m",
            time_range="2024-08-01T00:00:00Z/2024-08-01T04:00:00Z",
            base_url=exchange.base_url,
        )
        assert run_loader(options, settings) == 0
        candles, found = markers(settings, qid)
        expected = exchange.expected_rows("BTCUSDT", "1m", AUG1, AUG1 + 240 * MIN)
        assert [c.open_time for c in candles] == [row[0] for row in expected]
        assert len(candles) == 240 - 60 - 30
        assert found == [
            ("BTCUSDT", "1m", AUG1 + 100 * MIN, AUG1 + 160 * MIN),
            ("BTCUSDT", "1m", AUG1 + 210 * MIN, AUG1 + 240 * MIN),  # cut at the range's end
        ]
        # A range starting inside a window: the symbol was listed before, so it counts.
        qid = new_queue()
        span = "2024-08-01T01:50:00Z/2024-08-01T02:50:00Z"
        late = LoaderOptions(**{**options.__dict__, "queue_id": qid, "time_range": span})
        assert run_loader(late, settings) == 0
        candles, found = markers(settings, qid)
        assert len(candles) == 10 and found == [
            ("BTCUSDT", "1m", AUG1 + 110 * MIN, AUG1 + 160 * MIN)
        ]


# -- issue 20: the bulk path keeps the wire, the keys' partitions and the refusals ---------------


def test_archive_messages_are_the_contracts_and_keys_keep_their_partitions(
    settings: Settings,
) -> None:
    qid = new_queue()
    options = LoaderOptions(
        queue_id=qid,
        symbol="BTCUSDT",
        interval="1m",
        time_range="2024-08-01T06:00:00Z/2024-08-01T18:00:00Z",
        source="archive",
        archives=(str(SAMPLE_ARCHIVE),),
        partitions=4,
    )
    assert run_loader(options, settings) == 0
    records = read_topic(settings, data_topic(qid))
    (day,) = archive_candles("BTCUSDT", "1m", [SAMPLE_ARCHIVE])
    expected = {c.key: c for c in day[360:1080]}  # the range: 06:00 to 18:00
    assert sorted(r.key.decode() for r in records) == sorted(expected)
    for record in records:
        candle = expected[record.key.decode()]
        assert record.value == encode(candle)  # the contract's bytes, not only equal JSON
        # Where kafka-python's and Java's murmur2 put the key: a sink's or a tool's readers
        # and an older loader's messages agree on each candle's partition.
        assert record.partition == partition_for(record.key, 4)
    assert len({r.partition for r in records}) == 4


def test_a_refused_publish_names_the_user_and_the_topic(
    platform_settings: Settings, viewer_settings: Settings
) -> None:
    table = candles_table(next(archive_candles("BTCUSDT", "1m", [SAMPLE_ARCHIVE]))[:10])
    # A data topic the viewer may not even see: refused before any message is queued.
    topic = data_topic(new_queue())
    admin = make_admin(platform_settings)
    try:
        ensure_queue_topics(admin, platform_settings, topic)
    finally:
        admin.close()
    refused = rf"{topic}: an ACL refusal: .* does not authorize user-streamforge-viewer"
    with pytest.raises(NotAuthorized, match=refused):
        CandlePublisher(viewer_settings, topic)
    # A topic it may read but not write: refused when the broker answers the messages (or
    # already when they are queued, if the refusal of its producer id came first).
    events = viewer_settings.queue_events_topic
    refused = rf"publishing to {events}: an ACL refusal: .*user-streamforge-viewer"
    publisher = CandlePublisher(viewer_settings, events)
    with pytest.raises(NotAuthorized, match=refused):
        publisher.candles("BTCUSDT", "1m", table)
        publisher.flush(timeout=60)
    # Refused before the first message: librdkafka asks for an idempotent producer id as soon
    # as it connects, and then fails every produce with a bare "Fatal error"; the user still
    # learns the refusal (1 run in 3 did by chance before the cause was read).
    early = CandlePublisher(viewer_settings, events)
    time.sleep(3)  # the broker refuses the producer id within milliseconds of the connection
    with pytest.raises(NotAuthorized, match=refused):
        early.candles("BTCUSDT", "1m", table)
        early.flush(timeout=60)
    # confluent-kafka 2.16 has also ended a flush after this refusal with a SystemError and
    # no exception at all (once, in a suite run on two workers): the user still learns it.
    with pytest.raises(NotAuthorized, match=refused), early._mapped():
        raise SystemError("<method 'flush'> returned NULL without setting an exception")
    # ... and so has it with error_cb never told and a poll after it telling nothing (seen
    # once more): the refusal is then the fatal error librdkafka logged.
    late = CandlePublisher(viewer_settings, events)
    deadline = time.monotonic() + 20
    while not late._fatal_logged and time.monotonic() < deadline:
        with contextlib.suppress(KafkaException, SystemError):
            late._producer.poll(0.5)  # serves librdkafka's log lines (and error_cb)
    assert late._fatal_logged, "librdkafka logged no fatal error within 20 s"
    late._fatal.clear()  # as if error_cb had never been told
    with pytest.raises(NotAuthorized, match=refused), late._mapped():
        raise SystemError("<method 'flush'> returned NULL without setting an exception")


def test_flush_raises_when_the_broker_does_not_acknowledge_in_time(settings: Settings) -> None:
    table = candles_table(next(archive_candles("BTCUSDT", "1m", [SAMPLE_ARCHIVE]))[:10])
    # A topic that does not exist (auto-creation is off): librdkafka holds the messages.
    publisher = CandlePublisher(settings, data_topic(new_queue()))
    publisher.candles("BTCUSDT", "1m", table)
    assert publisher.acknowledged == 0  # a progress report counts none of them
    with pytest.raises(BrokerUnavailable, match="did not acknowledge 10 messages within 1 s"):
        publisher.flush(timeout=1)
    # To a topic that exists, all are acknowledged once flushed.
    topic = data_topic(new_queue())
    admin = make_admin(settings)
    try:
        ensure_queue_topics(admin, settings, topic)
    finally:
        admin.close()
    publisher = CandlePublisher(settings, topic)
    publisher.candles("BTCUSDT", "1m", table)
    publisher.flush(timeout=60)
    assert publisher.acknowledged == 10


def test_two_archives_are_read_at_once_and_their_pages_published_in_order() -> None:
    candles = next(archive_candles("BTCUSDT", "1m", [SAMPLE_ARCHIVE]))
    second_started = threading.Event()

    def first() -> Iterator[tuple]:
        # Only a second reader, working while this archive is still being read, lets it go on.
        assert second_started.wait(60), "the next archive was not read alongside this one"
        yield candles_table(candles[0:2]), []
        yield candles_table(candles[2:3]), []

    def second() -> Iterator[tuple]:
        second_started.set()
        yield candles_table(candles[3:5]), []

    def broken() -> Iterator[tuple]:
        raise ArchiveError("a corrupted archive")
        yield  # a generator, read by a reader thread

    published = []
    with pytest.raises(ArchiveError, match="corrupted"):
        for (table, _windows), (keys, _values) in _read_ahead(
            iter([first(), second(), broken()]), "BTCUSDT", "1m"
        ):
            published += keys.to_pylist()
            assert table.num_rows == len(keys)
    # In the archives' order, every page before the error, whichever reader finished first.
    assert published == [c.key for c in candles[:5]]


def test_publishing_goes_on_while_the_broker_is_slow_to_take_a_progress_report(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from streamforge_nb.control.worker import Worker

    # The same day from a second folder: a second archive, published after the first report.
    for suffix in ("", ".CHECKSUM"):
        name = SAMPLE_ARCHIVE.name + suffix
        (tmp_path / name).write_bytes(SAMPLE_ARCHIVE.with_name(name).read_bytes())
    release, loading = threading.Event(), Worker.loading

    def slow_to_acknowledge(self: Worker, records_written: int, message: str | None = None,
                            **fields: object) -> None:  # fmt: skip
        release.wait(300)
        loading(self, records_written, message, **fields)

    monkeypatch.setattr(Worker, "loading", slow_to_acknowledge)
    qid = new_queue()
    options = LoaderOptions(
        queue_id=qid, symbol="BTCUSDT", interval="1m", time_range="2024-08-01:2024-08-02",
        source="archive", archives=(str(SAMPLE_ARCHIVE), str(tmp_path / SAMPLE_ARCHIVE.name)),
        report_every=0.0,
    )  # fmt: skip
    codes: list[int] = []
    loader = threading.Thread(target=lambda: codes.append(run_loader(options, settings)))
    loader.start()
    try:
        published = 0
        for _ in range(120):  # both archives' candles arrive while the first report waits
            published = len(read_topic(settings, data_topic(qid), timeout=5))
            if published == 2 * 1440:
                break
            time.sleep(0.5)
        assert published == 2 * 1440
        assert not codes  # the loader still waits to report, as it must before finishing
    finally:
        release.set()
        loader.join(120)
    assert codes == [0]
    final = events(settings, qid)[-1]
    assert (final.status, final.records_written) == ("finished", 2 * 1440)


def test_closing_progress_reports_does_not_wait_for_a_report_that_hangs(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from streamforge_nb.control.worker import Worker
    from streamforge_nb.workers import publish

    hang = threading.Event()

    def hanging(self: Worker, records_written: int, message: str | None = None,
                **fields: object) -> None:  # fmt: skip
        hang.wait(600)

    monkeypatch.setattr(Worker, "loading", hanging)
    monkeypatch.setattr(publish, "CLOSE_TIMEOUT_S", 0.2)
    qid = new_queue()
    with Worker(settings, queue_id=qid, producer_id="loader-candles__close",
                target="loader-candles") as worker:  # fmt: skip
        reports = publish.ProgressReports(worker, data_topic(qid))
        reports.offer(5)
        closing = threading.Thread(target=reports.close)
        closing.start()
        try:
            closing.join(120)  # not a timing: a close that waits for the report never returns
            assert not closing.is_alive(), "close waited for a report that never ends"
            assert "still being sent" in caplog.text
        finally:
            hang.set()
            closing.join(120)


def test_a_loader_killed_mid_load_and_run_again_stores_every_candle_once(
    settings: Settings, tmp_path: Path
) -> None:
    """kill -9 of a loader publishing archives (issue 20): what it handed librdkafka and the
    broker never acknowledged is lost with it, a second run publishes every candle again, and
    the store holds each one once."""
    from streamforge_nb.store.candles import CandleStore
    from streamforge_nb.testing import write_archive
    from streamforge_nb.workers.sink import SinkOptions, run_sink

    months = ("2023-01", "2023-02", "2023-03", "2023-04", "2023-05", "2023-06")
    archives = [write_archive(tmp_path, "BTCUSDT", "1m", month) for month in months]
    start_ms, end_ms = 1672531200000, 1688169600000  # 2023-01-01 to 2023-07-01
    count = (end_ms - start_ms) // 60_000
    # The sink stores only the candles of the range the queue's id names.
    qid = queue_id("BTCUSDT", "archive_candles_1m", dt.date(2023, 1, 1), new_short_id())
    command = [
        sys.executable, "-m", "streamforge_nb.workers.loader", "--queue-id", qid,
        "--symbol", "BTCUSDT", "--interval", "1m", "--time-range", "2023-01-01:2023-07-01",
        "--source", "archive", "--report-every", "0",
        *[arg for path in archives for arg in ("--archive", str(path))],
    ]  # fmt: skip
    with Queue(qid, settings) as queue:  # open before the loader starts: it may be quick
        first = subprocess.Popen(command, env=subprocess_env(settings), stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 180  # generous: a loaded 2-core machine starts slowly
            # The first report comes once the first of six months is handed to librdkafka.
            while not any(s.status == "loading" for s in queue.producers().values()):
                assert first.poll() is None, "the loader ended before it reported loading"
                assert time.monotonic() < deadline, "the loader never reported progress"
                time.sleep(0.01)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
    published = len(read_topic(settings, data_topic(qid), timeout=120))
    assert 0 < published < count, "kill the loader mid-load, not before or after it"
    again = subprocess.run(
        command, env=subprocess_env(settings), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(read_topic(settings, data_topic(qid), timeout=120)) == published + count
    store_url = f"local://{tmp_path / 'store'}"
    sink = SinkOptions(queue_id=qid, store_url=store_url, wait_for_loader=False)
    assert run_sink(sink, settings) == 0
    with CandleStore.open(store_url) as store:
        frame = store.load("BTCUSDT", "1m", start_ms, end_ms)
    # As many distinct minutes as the range has: each candle stored, and once.
    assert len(frame) == count
    assert frame.index.nunique() == count
