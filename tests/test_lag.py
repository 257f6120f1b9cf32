"""Sink lag over time, from the sinks' own telemetry and the broker, judged per group."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import subprocess_env

from streamforge_nb.control.lag import LAG_COLUMNS, judge_lag
from streamforge_nb.control.queue import Queue
from streamforge_nb.kafka.clients import make_admin, make_producer
from streamforge_nb.platform.contract import Candle, Loading, encode, message_key
from streamforge_nb.platform.names import data_topic, new_short_id, queue_id
from streamforge_nb.platform.topics import TopicSpec, ensure_topics
from streamforge_nb.settings import Settings
from streamforge_nb.testing import CandleGenerator
from streamforge_nb.workers.sink import SinkOptions, run_sink

START_MS = 1722470400000  # 2024-08-01T00:00:00Z


def new_queue() -> str:
    return queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 1), new_short_id())


def fill(settings: Settings, topic: str, first: int, count: int) -> None:
    """Send `count` generated 1m candles from minute `first` on, keyed by `_key`."""
    start = START_MS + first * 60_000
    rows = CandleGenerator().rows("BTCUSDT", "1m", start, start + count * 60_000)
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(topic),))
    finally:
        admin.close()
    producer = make_producer(settings, linger_ms=20, batch_size=256 * 1024)
    for row in rows:
        candle = Candle.from_kline("BTCUSDT", "1m", row)
        producer.send(topic, key=message_key(candle), value=encode(candle))
    producer.flush()
    producer.close()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"local://{tmp_path / 'store'}"


def run(settings: Settings, qid: str, store_url: str) -> None:
    options = SinkOptions(
        queue_id=qid, store_url=store_url, wait_for_loader=False, batch_size=1000,
        batch_seconds=5.0, report_every=0.0,
    )  # fmt: skip
    assert run_sink(options, settings) == 0


def test_a_sinks_reports_carry_its_lag_and_lag_reads_them_back(
    settings: Settings, store_url: str
) -> None:
    qid = new_queue()
    fill(settings, data_topic(qid), 0, 6000)
    run(settings, qid, store_url)
    with Queue(qid, settings) as queue:
        frame = queue.lag()
        live = queue.lag(live=True)
        judged = queue.lag_status()
    assert list(frame.columns) == list(LAG_COLUMNS)
    assert len(frame) >= 3  # a report per batch of 1000
    assert set(frame["group"]) == {f"{qid}-sink"} and set(frame["partition"]) == {0}
    assert set(frame["source"]) == {"telemetry"}
    assert frame["producer"].str.startswith("arango-candles__").all()
    assert frame["committed"].is_monotonic_increasing
    assert (frame["messages_behind"] == frame["end"] - frame["committed"]).all()
    assert frame["end"].iloc[-1] == 6000
    assert frame["messages_behind"].iloc[0] > 0  # the first batch left most of the topic
    assert frame["seconds_behind"].iloc[0] >= 0
    # the broker's word now: every message committed
    now = live[live["source"] == "live"]
    assert now[["group", "partition", "committed", "end", "messages_behind"]].values.tolist() == [
        [f"{qid}-sink", 0, 6000, 6000, 0]
    ]
    assert judged.loc[f"{qid}-sink", "status"] == "ok"


def test_a_group_that_stopped_reading_while_messages_arrive_is_stalled(
    settings: Settings, store_url: str
) -> None:
    qid = new_queue()
    fill(settings, data_topic(qid), 0, 2000)
    run(settings, qid, store_url)
    fill(settings, data_topic(qid), 2000, 500)  # no sink reads these
    time.sleep(1.5)  # the group's last commit is older than the judgement's stale_s
    with Queue(qid, settings) as queue:
        judged = queue.lag_status(stale_s=1.0)
        without_live = queue.lag_status(live=False, stale_s=1.0)
    row = judged.loc[f"{qid}-sink"]
    assert row["status"] == "stalled"
    assert row["messages_behind"] == 500
    assert "has not moved" in row["why"]
    assert without_live.loc[f"{qid}-sink", "status"] == "ok"  # its telemetry ended caught up


def test_the_lag_command_prints_each_groups_judgement(settings: Settings, store_url: str) -> None:
    qid = new_queue()
    fill(settings, data_topic(qid), 0, 1500)
    run(settings, qid, store_url)
    done = subprocess.run(
        [sys.executable, "-m", "streamforge_nb.cli", "lag", qid, "--json"],
        env=subprocess_env(settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(line) for line in done.stdout.splitlines()]
    assert record["group"] == f"{qid}-sink" and record["status"] == "ok"
    assert record["messages_behind"] == 0
    assert {p["source"] for p in record["partitions"]} == {"live"}
    followed = subprocess.run(
        [sys.executable, "-m", "streamforge_nb.cli", "lag", qid, "--follow", "--every", "0.5",
         "--timeout", "5"],
        env=subprocess_env(settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert len(lines) >= 2 and all(line.startswith(f"{qid}-sink: ok") for line in lines)


def _samples(*rows: tuple[float, int, int, int]) -> pd.DataFrame:
    """A lag frame of group g partition 0 from (time, committed, end, seconds) rows."""
    from streamforge_nb.control.lag import lag_frame

    events = [
        Loading(
            queue_id="q",
            producer="arango-candles__x",
            timestamp=t,
            group="g",
            lag=[{"partition": 0, "committed": c, "end": e, "messages": e - c, "seconds": s}],
        )
        for t, c, e, s in rows
    ]
    return lag_frame(events)


@pytest.mark.parametrize(
    ("rows", "word"),
    [
        ([(100, 10, 50, 1), (102, 30, 50, 1), (104, 50, 50, 0)], "ok"),  # caught up
        ([(100, 10, 50, 1), (102, 30, 60, 1), (104, 50, 70, 1)], "ok"),  # catching up
        ([(100, 10, 50, 1), (102, 20, 80, 9), (104, 30, 120, 20)], "lagging"),
        ([(100, 10, 50, 1), (102, 10, 60, 9), (104, 10, 70, 20)], "stalled"),
        ([(100, 50, 50, 0), (102, 10, 50, 5)], "rewinding"),
    ],
)
def test_the_judgement_follows_the_written_rule(
    rows: list[tuple[float, int, int, int]], word: str
) -> None:
    frame = _samples(*((1_800_000_000 + t, c, e, s) for t, c, e, s in rows))
    judged = judge_lag(frame, now=1_800_000_104, stale_s=3)
    assert judged.loc["g", "status"] == word


def test_a_group_behind_that_went_silent_is_stalled() -> None:
    frame = _samples((1_800_000_000, 10, 50, 3))
    judged = judge_lag(frame, now=1_800_000_000 + 300)
    assert judged.loc["g", "status"] == "stalled"
    assert "has not moved for 300 s" in judged.loc["g", "why"]
    assert judge_lag(frame, now=1_800_000_000 + 5).loc["g", "status"] == "ok"


def test_events_since_reads_the_history_from_that_time(settings: Settings, store_url: str) -> None:
    qid = new_queue()
    fill(settings, data_topic(qid), 0, 1000)
    run(settings, qid, store_url)

    def events(*args: str) -> list[dict]:
        done = subprocess.run(
            [sys.executable, "-m", "streamforge_nb.cli", "events", "--queue-id", qid, "--json",
             *args],
            env=subprocess_env(settings), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    recent = events("--since", "1h")
    assert recent[0]["status"] == "started" and recent[-1]["status"] == "finished"
    assert any("lag" in e for e in recent if e["status"] == "loading")
    later = int(time.time() * 1000) + 3_600_000
    assert events("--since", f"@{later}") == []


def test_lag_is_per_partition_of_the_data_topic(settings: Settings, store_url: str) -> None:
    from streamforge_nb.platform.topics import ensure_queue_topics

    qid = new_queue()
    admin = make_admin(settings)
    try:
        ensure_queue_topics(admin, settings, data_topic(qid), partitions=2)
    finally:
        admin.close()
    fill(settings, data_topic(qid), 0, 4000)  # keyed by _key: both partitions get some
    options = SinkOptions(
        queue_id=qid, store_url=store_url, wait_for_loader=False, batch_size=500,
        batch_seconds=5.0, report_every=0.0, partitions=2,
    )  # fmt: skip
    assert run_sink(options, settings) == 0
    with Queue(qid, settings) as queue:
        frame = queue.lag(live=True)
    telemetry = frame[frame["source"] == "telemetry"]
    assert set(telemetry["partition"]) == {0, 1}
    for _, samples in telemetry.groupby("partition"):
        assert samples["committed"].is_monotonic_increasing
    live = frame[frame["source"] == "live"].sort_values("partition")
    assert live["partition"].tolist() == [0, 1]
    assert live["messages_behind"].tolist() == [0, 0]
    assert live["end"].sum() == 4000


def test_lag_reads_only_the_queues_well_formed_samples(settings: Settings) -> None:
    """Poison on the queue's partition of queue-events (garbage, samples out of the contract,
    another queue's report naming this one) gives no row and breaks nothing."""
    import orjson

    from streamforge_nb.control.telemetry import MALFORMED
    from streamforge_nb.kafka.clients import make_consumer
    from streamforge_nb.kafka.partitions import queue_partition

    qid, other = new_queue(), new_queue()
    now = time.time()
    group = f"{qid}-sink"

    def report(t: float, lag: object, **fields: object) -> bytes:
        doc = {"status": "loading", "queue_id": qid, "producer": "arango-candles__p1",
               "timestamp": t, "group": group, "lag": lag, **fields}  # fmt: skip
        return orjson.dumps(doc)

    def sample(partition: int, committed: object, end: int = 100) -> dict[str, object]:
        return {"partition": partition, "committed": committed, "end": end,
                "messages": 10, "seconds": 0.5}  # fmt: skip

    good = [
        encode(Loading(queue_id=qid, producer="arango-candles__p1", timestamp=now - 3,
                       group=group, lag=[sample(0, 90), sample(1, 50)])),
        report(now - 1, [sample(0, 95)]),
    ]  # fmt: skip
    poison = [
        b"\x00\xffnot json " + qid.encode(),
        b'{"queue_id": "' + qid.encode() + b'", "lag": [',
        report(now - 2, [sample(0, -1)]),  # a count below 0
        report(now - 2, [sample(0, 5.0)]),  # a count that is no int
        report(now - 2, [sample(0, 1), "x"]),  # one bad sample spoils its report
        report(now - 2, [sample(2**31, 1)]),  # no partition number
        report(True, [sample(0, 1)]),  # a bool is no time
        report(now - 2, [sample(0, 1)], group=None),  # no group: no sample
        report(now - 2, [sample(0, 1)], status="started"),  # only reports carry samples
        report(now - 2, [sample(0, 1)], queue_id=other, message=qid),  # another queue's
        report(now - 2, [sample(0, 1)], queue_id=[qid]),  # a queue id that is no text
    ]
    consumer = make_consumer(settings)
    try:
        where = queue_partition(consumer, settings.queue_events_topic, qid, settings).partition
    finally:
        consumer.close()
    producer = make_producer(settings)
    for value in [good[0], *poison, good[1]]:
        producer.send(settings.queue_events_topic, key=qid.encode(), value=value,
                      partition=where)  # fmt: skip
    producer.flush()
    producer.close()

    malformed = MALFORMED.total
    with Queue(qid, settings) as queue:
        frame = queue.lag()
    rows = frame[["partition", "committed", "end", "messages_behind"]].values.tolist()
    assert rows == [[0, 90, 100, 10], [0, 95, 100, 10], [1, 50, 100, 10]]
    assert set(frame["group"]) == {group} and set(frame["source"]) == {"telemetry"}
    assert frame["time"].tolist() == pd.to_datetime([now - 3, now - 1, now - 3], unit="s",
                                                    utc=True).tolist()  # fmt: skip
    assert MALFORMED.total > malformed  # counted, not silently dropped


def write_reports(settings: Settings, qids: list[str], count: int, start: float) -> None:
    """`count` sink reports a minute apart from `start` for each of `qids`, interleaved on one
    partition, each stamped with its report's time (the broker's time index is real)."""
    producer = make_producer(settings, linger_ms=20, batch_size=64 * 1024)
    for k in range(count):
        for n, qid in enumerate(qids):
            at = start + 60 * k + n
            lag = [{"partition": 0, "committed": k, "end": k + 5, "messages": 5, "seconds": 1.0}]
            report = Loading(queue_id=qid, producer="arango-candles__p1", timestamp=at,
                             group=f"{qid}-sink", lag=lag)  # fmt: skip
            producer.send(settings.queue_events_topic, key=qid.encode(), value=encode(report),
                          partition=0, timestamp_ms=int(at * 1000))  # fmt: skip
    producer.flush()
    producer.close()


def events_topic(settings: Settings) -> Settings:
    """Settings whose queue-events is a new topic of one partition (every queue shares it)."""
    from streamforge_nb.testing import unique_name

    topic = unique_name("queue-events")
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(topic),))
    finally:
        admin.close()
    return settings.model_copy(update={"queue_events_topic": topic})


def assert_sampled(frame: pd.DataFrame, start: float) -> None:
    """Rows of one group: the first report of each of 10 buckets of 600 reports, then the
    newest reports in full (at least the judgement's window), as `attrs` says."""
    from streamforge_nb.control.lag import WINDOW

    committed = frame["committed"].tolist()
    assert committed[:10] == list(range(0, 6000, 600))
    newest = committed[10:]
    assert newest == list(range(newest[0], 6000)) and 5400 < newest[0] <= 6000 - WINDOW
    resolution = frame.attrs["resolution"]
    assert resolution["sampled"] is True and resolution["points"] == 10
    assert resolution["bucket_s"] == pytest.approx(36_000, abs=1)
    # from then on every report is a row (the partition's: another queue's may come first)
    assert frame["time"].iloc[9].timestamp() < resolution["full_since"]
    assert resolution["full_since"] <= frame["time"].iloc[10].timestamp()
    assert frame["time"].iloc[0].timestamp() == pytest.approx(start)


def test_a_long_window_reads_a_sample_per_bucket_and_the_newest_in_full(
    settings: Settings,
) -> None:
    """100 hours of reports a minute apart, read at 10 points: one report per 10 hours found
    by the broker's time index, the newest in full; the judgement sees what a full read sees."""
    own = events_topic(settings)
    qid, other = new_queue(), new_queue()
    start = float(int(time.time()) - 6000 * 60 - 120)
    write_reports(own, [qid, other], 6000, start)
    with Queue(qid, own) as queue:
        frame = queue.lag(since=start, until=start + 6000 * 60, points=10)
        full = queue.lag(since=start, until=start + 6000 * 60, points=None)
    assert list(frame.columns) == list(LAG_COLUMNS)
    assert set(frame["group"]) == {f"{qid}-sink"}  # the other queue's reports are not its
    assert_sampled(frame, start)
    assert len(full) == 6000 and full.attrs["resolution"]["sampled"] is False
    newest = frame.tail(10).reset_index(drop=True)
    pd.testing.assert_frame_equal(newest, full.tail(10).reset_index(drop=True))
    now = start + 6000 * 60
    assert judge_lag(frame, now=now).equals(judge_lag(full, now=now))


def test_lag_refuses_a_bad_window_before_reading(settings: Settings) -> None:
    from streamforge_nb.exceptions import InvalidName

    with Queue(new_queue(), settings) as queue:
        with pytest.raises(InvalidName, match="points"):
            queue.lag(points=1)
        with pytest.raises(InvalidName, match="invalid time 'yesterday'"):
            queue.lag(since="yesterday")
        with pytest.raises(InvalidName, match="until"):
            queue.lag(since="1h", until="2h")


def test_the_lag_command_reads_from_since_at_points(settings: Settings) -> None:
    own = events_topic(settings)
    qid = new_queue()
    start = float(int(time.time()) - 600 * 60)
    write_reports(own, [qid], 600, start)

    def lag(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streamforge_nb.cli", "lag", qid, "--json", *args],
            env=subprocess_env(own), capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    done = lag("--since", f"@{int(start * 1000) + 3_600_000}", "--points", "4")
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(line) for line in done.stdout.splitlines()]
    assert record["group"] == f"{qid}-sink"
    [newest] = record["partitions"]  # the newest report, read in full
    assert (newest["committed"], newest["messages_behind"]) == (599, 5)
    refused = lag("--since", "yesterday")
    assert refused.returncode != 0 and "invalid time 'yesterday'" in refused.stderr
    assert lag("--points", "1").returncode != 0
