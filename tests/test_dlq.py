"""Dead letters read back and redriven, against the real broker and an embedded store."""

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

from streamforge_nb.control.dlq import DEAD_LETTER_COLUMNS, reason_class
from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import InvalidName
from streamforge_nb.kafka.clients import make_admin
from streamforge_nb.platform.contract import Candle, encode, message_key
from streamforge_nb.platform.names import data_topic, dlq_topic, new_short_id, queue_id
from streamforge_nb.platform.topics import TopicSpec, ensure_topics
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import CandleGenerator, read_topic
from streamforge_nb.workers.sink import SinkOptions, run_sink

START_MS = 1722470400000  # 2024-08-01T00:00:00Z
MINUTE = 60_000


def new_queue() -> str:
    return queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 1), new_short_id())


def candle(minute: int, **changes: object) -> tuple[bytes, bytes]:
    """(Kafka key, value) of the generated candle `minute`s after START_MS, with `changes`."""
    start = START_MS + minute * MINUTE
    row = CandleGenerator().rows("BTCUSDT", "1m", start, start + MINUTE)[0]
    good = Candle.from_kline("BTCUSDT", "1m", row)
    data = json.loads(encode(good))
    data.update(changes)
    return message_key(good), json.dumps(data).encode()


def send(
    settings: Settings, topic: str, messages: list[tuple[bytes | None, bytes | None, list]]
) -> None:
    """Send with librdkafka, which (unlike kafka-python) also sends null header values."""
    from confluent_kafka import Producer

    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(topic),))
    finally:
        admin.close()
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "message.max.bytes": 2 * 2**20}
    )
    for key, value, headers in messages:
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


def sink(settings: Settings, qid: str, store_url: str) -> None:
    options = SinkOptions(queue_id=qid, store_url=store_url, wait_for_loader=False)
    assert run_sink(options, settings) == 0


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"local://{tmp_path / 'store'}"


def poisoned_queue(settings: Settings, store_url: str) -> tuple[str, dict[str, int]]:
    """A queue whose sink stored 10 good candles and refused one message of each class;
    return it and the data-topic offset of each refused message, by class."""
    qid = new_queue()
    key, value = candle(3)
    bad = {
        "series": candle(11, _key=f"ETHUSDT_1m_{START_MS + 11 * MINUTE}"),
        "key": (b"BTCUSDT_1m_1", candle(12)[1]),
        "range": candle(-60 * 24 * 30, open_time=START_MS - 30 * 86_400_000),
        "number": candle(14, open="-5"),
        "not-json": (b"BTCUSDT_1m_" + str(START_MS + 15 * MINUTE).encode(), b"x" * 300_000),
        "field": candle(16, number_of_trades="7"),
    }
    # the range candle's _key must agree with its open time, so only the range is wrong
    rkey = f"BTCUSDT_1m_{START_MS - 30 * 86_400_000}"
    bad["range"] = (rkey.encode(), candle(0, _key=rkey, open_time=START_MS - 30 * 86_400_000)[1])
    messages: list[tuple[bytes | None, bytes | None, list]] = [(*candle(m), []) for m in range(10)]
    offsets = {}
    for kind, (k, v) in bad.items():
        offsets[kind] = len(messages)
        messages.append((k, v, []))
    del key, value
    send(settings, data_topic(qid), messages)
    sink(settings, qid, store_url)
    return qid, offsets


def test_dead_letters_reads_back_each_refusal_with_its_class_and_source(
    settings: Settings, store_url: str
) -> None:
    qid, offsets = poisoned_queue(settings, store_url)
    with Queue(qid, settings) as queue:
        frame = queue.dead_letters()
    assert list(frame.columns) == list(DEAD_LETTER_COLUMNS)
    assert len(frame) == len(offsets)
    by_offset = frame.set_index("source_offset")
    for kind, offset in offsets.items():
        row = by_offset.loc[offset]
        assert row["reason_class"] == kind, (kind, row["reason"])
        assert row["source_topic"] == data_topic(qid)
        assert row["source_partition"] == 0
    # symbol / interval / open time from the value, or from the key when the value is lost
    lost = by_offset.loc[offsets["not-json"]]
    assert bool(lost["truncated"]) and lost["size"] == 300_000
    assert (lost["symbol"], lost["interval"]) == ("BTCUSDT", "1m")
    assert lost["open_time"] == pd.Timestamp(START_MS + 15 * MINUTE, unit="ms", tz="UTC")
    number = by_offset.loc[offsets["number"]]
    assert number["open_time"] == pd.Timestamp(START_MS + 14 * MINUTE, unit="ms", tz="UTC")
    assert not bool(number["truncated"]) and number["size"] > 100
    assert frame["dlq_offset"].tolist() == list(range(len(offsets)))
    assert frame["dlq_timestamp"].notna().all()
    # Kafka Connect's headers beside today's, saying the same
    for record in read_topic(settings, dlq_topic(data_topic(qid))):
        headers = dict(record.headers)
        assert headers["__connect.errors.topic"] == headers["source_topic"]
        assert headers["__connect.errors.partition"] == headers["source_partition"]
        assert headers["__connect.errors.offset"] == headers["source_offset"]
        assert headers["__connect.errors.exception.message"] == headers["error"]
        kind = reason_class(headers["error"].decode())
        assert headers["__connect.errors.exception.class.name"] == (
            f"streamforge_nb.refusal.{kind}".encode()
        )


def test_poison_in_the_dlq_itself_never_breaks_dead_letters(settings: Settings) -> None:
    qid = new_queue()
    dlq = dlq_topic(data_topic(qid))
    poison: list[tuple[bytes | None, bytes | None, list]] = [
        (None, None, []),  # a tombstone, no key, no headers at all
        (b"\xff\xfe", b"\x00\xff garbage", [("error", b"\xff\xfe\xfd")]),
        (b"k", b"{}", [("source_partition", b"-1"), ("source_offset", b"9" * 40)]),
        (b"k", b"[1]", [("source_offset", b"abc"), ("source_topic", None), ("error", None)]),
        (b"k", b"x" * 1_000_000, [("truncated", b"value cut from lots")]),  # a huge value
        (b"k", b"{", [("__connect.errors.exception.class.name", b"\x00" * 5000)]),
        (b"k", b"null", [("error", b"e" * 100_000), ("error", b"second")]),
        (
            b"BTCUSDT_1m_99999999999999999999",
            b"{}",
            [("truncated", b"value cut from 9" + b"9" * 30 + b" to 1")],
        ),
    ]
    send(settings, dlq, poison)
    with Queue(qid, settings) as queue:
        frame = queue.dead_letters()
        assert len(queue.dead_letters(limit=3)) == 3
        with pytest.raises(InvalidName, match="limit"):
            queue.dead_letters(limit=0)
    assert len(frame) == len(poison)
    assert frame["source_partition"].isna().all()
    assert frame["source_offset"].isna().all()
    assert frame["reason_class"].isin(["other"]).all()
    assert frame["size"].tolist()[:5] == [0, 10, 2, 3, 1_000_000]
    assert frame["reason"].str.len().max() <= 2000
    assert frame["open_time"].isna().all()
    assert "\\x" in frame.loc[1, "reason"] or "\ufffd" in frame.loc[1, "reason"]


def test_a_queue_without_a_dlq_has_no_dead_letters(settings: Settings) -> None:
    with Queue(new_queue(), settings) as queue:
        frame = queue.dead_letters()
    assert frame.empty and list(frame.columns) == list(DEAD_LETTER_COLUMNS)


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamforge_nb.cli", *args],
        env=subprocess_env(settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_dlq_command_lists_dead_letters(settings: Settings, store_url: str) -> None:
    qid, offsets = poisoned_queue(settings, store_url)
    done = cli(settings, "dlq", qid, "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(r["source_offset"] for r in rows) == sorted(offsets.values())
    assert {r["reason_class"] for r in rows} == set(offsets)
    plain = cli(settings, "dlq", qid)
    assert plain.returncode == 0, plain.stderr
    assert f"{len(offsets)} dead letters" in plain.stdout


# -- redrive ---------------------------------------------------------------------------------


def test_redrive_fixes_what_it_can_and_plans_a_backfill_for_the_rest(
    settings: Settings, store_url: str
) -> None:
    qid, offsets = poisoned_queue(settings, store_url)
    minute = {"number": 14, "field": 16, "not-json": 15}

    def fix(value: object) -> object:
        if isinstance(value, dict) and value.get("number_of_trades") == "7":
            return {**value, "number_of_trades": 7}
        if isinstance(value, dict) and value.get("open") == "-5":
            return {**value, "open": "-4"}  # still refused: no fix saves it
        return value

    with Queue(qid, settings) as queue, CandleStore.open(store_url) as store:
        choose = "reason_class in ['number', 'field', 'not-json']"
        dry = queue.redrive(choose, fix=fix, store=store)
        assert dry.sent == 0 and dry.dry_run
        actions = dict(zip(dry.plan["reason_class"], dry.plan["action"], strict=True))
        assert actions == {"field": "redrive", "number": "refused", "not-json": "refused"}
        assert (
            "open -4 is not a finite number > 0"
            in dry.plan.set_index("reason_class").loc["number", "why"]
        )
        # the holes: minutes 14, 15 and 16; 14 and 15 no fix saves
        assert dry.gaps_before["missing"].sum() == 3
        windows = [(w.start, w.end) for w in dry.backfill.itertuples()]
        at = lambda m: pd.Timestamp(START_MS + m * MINUTE, unit="ms", tz="UTC")  # noqa: E731
        assert windows == [(at(minute["number"]), at(minute["not-json"] + 1))]
        assert dry.backfill["time_range"].tolist() == [f"{at(14).isoformat()}/{at(16).isoformat()}"]
        assert read_topic(settings, data_topic(qid))[-1].offset == max(offsets.values())

        applied = queue.redrive(choose, fix=fix, dry_run=False, store=store)
        assert applied.sent == 1
        sink(settings, qid, store_url)
        after = applied.gaps_after()
        assert after is not None and after["missing"].sum() == 2  # minute 16 is stored now
        frame = store.load("BTCUSDT", "1m", START_MS, START_MS + 20 * MINUTE)
        assert frame.loc[at(16), "number_of_trades"] == 7

        # a second redrive sends again, and the store does not change
        again = queue.redrive(choose, fix=fix, dry_run=False, store=store)
        assert again.sent == 1
        sink(settings, qid, store_url)
        assert store.load("BTCUSDT", "1m", START_MS, START_MS + 20 * MINUTE).equals(frame)
        dead = queue.dead_letters()
    assert len(dead) == len(offsets)  # nothing redriven came back refused
    redriven = [
        r for r in read_topic(settings, data_topic(qid)) if r.offset > max(offsets.values())
    ]
    assert len(redriven) == 2
    headers = dict(redriven[0].headers)
    letter = dead.set_index("source_offset").loc[offsets["field"]]
    assert (
        headers["redriven-from"]
        == f"{dlq_topic(data_topic(qid))}:0:{letter['dlq_offset']}".encode()
    )
    assert redriven[0].key == candle(16)[0]
    assert headers["source_offset"] == str(offsets["field"]).encode()


def test_redrive_never_sends_what_the_sinks_checks_refuse(
    settings: Settings, store_url: str
) -> None:
    qid, offsets = poisoned_queue(settings, store_url)
    with Queue(qid, settings) as queue:
        result = queue.redrive(dry_run=False)  # everything, unfixed
        assert result.sent == 0
        assert set(result.plan["action"]) == {"refused"}
        with pytest.raises(InvalidName, match="where"):
            queue.redrive("no_such_column > 1")
        with pytest.raises(InvalidName, match="where"):
            queue.redrive(42)
    assert read_topic(settings, data_topic(qid))[-1].offset == max(offsets.values())


def test_the_dlq_redrive_command_dry_runs_then_applies(settings: Settings, store_url: str) -> None:
    qid, offsets = poisoned_queue(settings, store_url)
    dry = cli(settings, "dlq", "redrive", qid, "--json")
    assert dry.returncode == 0, dry.stderr
    lines = [json.loads(line) for line in dry.stdout.splitlines()]
    assert lines[-1]["summary"]["dry_run"] is True and lines[-1]["summary"]["sent"] == 0
    assert len([x for x in lines if "dead_letter" in x]) == len(offsets)
    applied = cli(settings, "dlq", "redrive", qid, "--apply", "--where", "reason_class == 'series'")
    assert applied.returncode == 0, applied.stderr
    assert "redrove 0" in applied.stdout and "1 refused" in applied.stdout


# -- browsing a topic from a time -------------------------------------------------------------


def test_messages_starts_at_a_time_and_prints_kcats_envelope(settings: Settings) -> None:
    from confluent_kafka import Producer

    from streamforge_nb.control.messages import browse, parse_time

    topic = f"browse-{new_short_id()}"
    send(settings, topic, [])
    hour = 3_600_000
    now_ms = int(time.time() * 1000)
    batches = [now_ms - 3 * hour, now_ms - 2 * hour, now_ms - hour]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for b, stamp in enumerate(batches):
        for i in range(100):
            key = f"k{i % 10}".encode()
            producer.produce(
                topic, key=key, value=f"{b}-{i}".encode(), timestamp=stamp + i,
                headers=[("h", b"\xff")],
            )  # fmt: skip
    assert producer.flush(30) == 0

    done = cli(settings, "messages", topic, "--since", "150m", "-J", "--limit", "3")
    assert done.returncode == 0, done.stderr
    first = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["offset"] for r in first] == [100, 101, 102]
    assert first[0] == {
        "topic": topic, "partition": 0, "offset": 100, "tstype": "create",
        "ts": batches[1], "broker": -1, "headers": ["h", "\\xff"], "key": "k0",
        "payload": "1-0",
    }  # fmt: skip
    window = list(browse(settings, topic, since=batches[1], until=batches[2]))
    assert [r["payload"] for r in window] == [f"1-{i}" for i in range(100)]
    keyed = list(browse(settings, topic, since=batches[2], key="k3"))
    assert [r["offset"] for r in keyed] == [203 + 10 * i for i in range(10)]
    iso = dt.datetime.fromtimestamp(batches[2] / 1000, dt.UTC).isoformat()
    assert parse_time(iso) == batches[2] and parse_time(f"@{batches[0]}") == batches[0]
    assert list(browse(settings, topic, since=now_ms + hour)) == []  # nothing that recent
    plain = cli(settings, "messages", topic, "--since", f"@{batches[2] + 98}")
    assert plain.stdout.splitlines() == ["2-98", "2-99"], plain.stderr
    with pytest.raises(InvalidName, match="duration ago"):
        parse_time("yesterday")
    with pytest.raises(InvalidName, match="no partition 3"):
        list(browse(settings, topic, partition=3))
    refused = cli(settings, "messages", topic, "--since", "yesterday")
    assert refused.returncode == 2 and "invalid time 'yesterday'" in refused.stderr  # bad input


def test_a_user_without_acls_on_the_dlq_is_told_so(
    settings: Settings, viewer_settings: Settings, store_url: str
) -> None:
    from streamforge_nb.exceptions import NotAuthorized

    qid, _ = poisoned_queue(settings, store_url)
    with Queue(qid, viewer_settings) as queue:
        with pytest.raises(NotAuthorized, match=dlq_topic(data_topic(qid))):
            queue.dead_letters()
        with pytest.raises(NotAuthorized, match=dlq_topic(data_topic(qid))):
            queue.redrive()
        # the lag history is in queue-events, which a viewer reads; the group's offsets are not
        assert list(queue.lag()["group"].unique()) in ([], [f"{qid}-sink"])
        with pytest.raises(NotAuthorized, match=f"{qid}-sink"):
            queue.lag(live=True)
    from streamforge_nb.control.messages import browse

    with pytest.raises(NotAuthorized, match=data_topic(qid)):  # hidden by ACLs: not "missing"
        list(browse(viewer_settings, data_topic(qid), limit=1))
    with pytest.raises(InvalidName, match="topic"):  # a typed name, refused before a request
        list(browse(viewer_settings, "no such/topic", limit=1))


def test_a_fixed_marker_is_redriven_as_a_marker_and_its_window_recorded(
    settings: Settings, store_url: str
) -> None:
    from streamforge_nb.platform.markers import EXCHANGE_EMPTY, RECORD_HEADER, marker_key

    qid = new_queue()
    start, end = START_MS + 10 * MINUTE, START_MS + 30 * MINUTE
    off = marker_key("BTCUSDT", "1m", start + 1, end)  # off the grid: refused
    doc = {"_key": off, "symbol": "BTCUSDT", "interval": "1m", "start_ms": start + 1, "end_ms": end}
    messages: list[tuple[bytes | None, bytes | None, list]] = [
        (*candle(m), []) for m in [*range(10), *range(30, 40)]
    ]
    messages.append((off.encode(), json.dumps(doc).encode(), [(RECORD_HEADER, EXCHANGE_EMPTY)]))
    send(settings, data_topic(qid), messages)
    sink(settings, qid, store_url)

    def fix(value: dict) -> tuple[str, dict]:
        key = marker_key("BTCUSDT", "1m", start, end)
        return key, {**value, "_key": key, "start_ms": start}

    with Queue(qid, settings) as queue:
        [letter] = queue.dead_letters().to_dict("records")
        assert letter["reason_class"] == "marker" and "not on the 1m grid" in letter["reason"]
        unfixed = queue.redrive()
        assert unfixed.plan["action"].tolist() == ["refused"]
        assert queue.redrive(fix=fix, dry_run=False).sent == 1
    sink(settings, qid, store_url)
    with CandleStore.open(store_url) as store:
        gaps = store.gaps("BTCUSDT", "1m", START_MS, START_MS + 40 * MINUTE)
    assert gaps[["missing", "kind"]].values.tolist() == [[20, "exchange_empty"]]


def test_queue_messages_is_the_data_topic_as_a_frame(settings: Settings) -> None:
    qid = new_queue()
    send(settings, data_topic(qid), [(*candle(m), [("h", b"v")]) for m in range(5)])
    with Queue(qid, settings) as queue:
        frame = queue.messages(since="1h", limit=3)
        keyed = queue.messages(key=candle(4)[0].decode())
        assert queue.messages(since=int(time.time() * 1000) + 3_600_000).empty
    assert frame["offset"].tolist() == [0, 1, 2]
    assert frame["key"].tolist() == [candle(m)[0].decode() for m in range(3)]
    assert frame["headers"].tolist()[0] == ["h", "v"]
    assert json.loads(frame["payload"][1])["_key"] == candle(1)[0].decode()
    assert keyed["offset"].tolist() == [4]


@pytest.mark.parametrize(
    "where",
    [
        'reason.to_csv("/tmp/streamforge-pwned")',  # pandas' query would write the file
        '@frame.to_csv("/tmp/streamforge-pwned")',  # ... or reach the caller's locals
        '__import__("os").system("true")',
        "reason.__class__",
        "no_such_column == 1",
        "(lambda: 1)()",
    ],
)
def test_a_redrive_query_can_only_compare_and_select(where: str) -> None:
    from streamforge_nb.control.redrive import check_query

    columns = ["reason", "reason_class", "dlq_offset"]
    with pytest.raises(InvalidName):
        check_query(where, columns)
    assert not Path("/tmp/streamforge-pwned").exists()
    # What a person selects with stays allowed.
    ok = 'reason_class == "number" and not reason.str.contains("era") or dlq_offset in [1, 2]'
    assert check_query(ok, columns) == ok
