"""Platform names: makers reproduce PLATFORM.md exactly, parsers invert them, rules bite."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.platform.intervals import INTERVALS, check_interval
from streamforge_nb.platform.names import (
    QueueIdParts,
    TimeRange,
    candle_type,
    check_collection_name,
    check_dns1123_label,
    check_kafka_topic,
    check_label_value,
    check_parameters,
    check_queue_id,
    check_symbol,
    check_target,
    check_type,
    collection_name,
    data_topic,
    dlq_topic,
    job_name,
    new_short_id,
    parse_collection_name,
    parse_queue_id,
    parse_time_range,
    producer_id,
    queue_id,
)

DAY = date(2024, 8, 1)


# --- the platform's examples ------------------------------------------------------------------


def test_platform_names_table_is_reproduced_exactly() -> None:
    qid = queue_id("BTCUSDT", "api_candles_1m", DAY, "abc123")
    assert qid == "wf-btcusdt-api_candles_1m-20240801-abc123"
    assert data_topic(qid) == "wf-btcusdt-api_candles_1m-20240801-abc123-data"
    assert collection_name("BTCUSDT", "api_candles_1m", DAY) == "btcusdt_api_candles_1m_2024_08_01"
    assert producer_id("arango-candles", "abc123") == "arango-candles__abc123"
    assert job_name("arango-candles", "BTCUSDT", "abc123") == "job-arango-candles-btcusdt-abc123"


def test_platform_command_example_names_are_reproduced_exactly() -> None:
    type_ = candle_type("5m")
    qid = queue_id("BTCUSDT", type_, DAY, "a1b2c3")
    assert type_ == "api_candles_5m"
    assert qid == "wf-btcusdt-api_candles_5m-20240801-a1b2c3"
    assert data_topic(qid) == "wf-btcusdt-api_candles_5m-20240801-a1b2c3-data"
    assert collection_name("BTCUSDT", type_, DAY) == "btcusdt_api_candles_5m_2024_08_01"
    assert producer_id("loader-producer", "a1b2c3") == "loader-producer__a1b2c3"
    assert str(parse_time_range("2024-08-01:2024-08-02")) == "2024-08-01:2024-08-02"


def test_makers_accept_lowercase_symbols() -> None:
    assert queue_id("btcusdt", "api_candles_1m", DAY, "abc123") == queue_id(
        "BTCUSDT", "api_candles_1m", DAY, "abc123"
    )
    assert collection_name("btcusdt", "api_candles_1m", DAY) == "btcusdt_api_candles_1m_2024_08_01"


# --- queue ids --------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", INTERVALS)
def test_queue_id_round_trips(interval: str) -> None:
    short = new_short_id()
    qid = queue_id("ETHBTC", candle_type(interval), date(2023, 12, 31), short)
    parts = parse_queue_id(qid)
    assert parts == QueueIdParts("ETHBTC", f"api_candles_{interval}", date(2023, 12, 31), short)
    assert str(parts) == qid
    assert check_queue_id(qid) == qid
    assert check_label_value(qid) == qid


def test_parse_queue_id_gives_uppercase_symbol_and_named_parts() -> None:
    symbol, type_, day, short = parse_queue_id("wf-btcusdt-api_candles_1m-20240801-abc123")
    assert (symbol, type_, day, short) == ("BTCUSDT", "api_candles_1m", DAY, "abc123")
    assert parse_queue_id("wf-1inchusdt-api_candles_1M-20240801-abc123").type == "api_candles_1M"


@pytest.mark.parametrize(
    "qid",
    [
        "",
        "btcusdt-api_candles_1m-20240801-abc123",
        "wf-BTCUSDT-api_candles_1m-20240801-abc123",
        "wf-btcusdt-api_candles_1m-2024080-abc123",
        "wf-btcusdt-api_candles_1m-2024811-abc123",  # strptime alone reads 2024-08-11
        "wf-btcusdt-api_candles_1m-20241301-abc123",
        "wf-btcusdt-api_candles_1m-20240801-ABC123",
        "wf-btcusdt-api_candles_1m-20240801-",
        "wf-btcusdt-api_candles_7m-20240801-abc123",
        "wf-btcusdt-api-candles-1m-20240801-abc123",
        "wf-btcusdt-api_candles_1m-20240801-abc123-data",
    ],
)
def test_malformed_queue_ids_are_rejected(qid: str) -> None:
    with pytest.raises(InvalidName, match=re.escape(repr(qid)) if qid else "queue id"):
        parse_queue_id(qid)


def test_new_short_id_is_six_random_lowercase_hex() -> None:
    ids = {new_short_id() for _ in range(200)}
    assert all(re.fullmatch(r"[0-9a-f]{6}", s) for s in ids)
    assert len(ids) > 190


def test_too_long_queue_id_is_rejected_naming_the_rule() -> None:
    type_ = "api_" + "x" * 40 + "_candles_1m"
    with pytest.raises(InvalidName, match="label value") as info:
        queue_id("BTCUSDT", type_, DAY, "abc123")
    assert type_ in str(info.value)


def test_short_ids_are_one_to_twelve_characters() -> None:
    """A short id is 1..12 lowercase letters or digits: 13 is refused in every name."""
    twelve, thirteen = "abc123def456", "abc123def4567"
    qid = queue_id("BTCUSDT", "api_candles_1m", DAY, twelve)
    assert qid == f"wf-btcusdt-api_candles_1m-20240801-{twelve}"
    assert parse_queue_id(qid).short == twelve
    assert producer_id("arango-candles", twelve) == f"arango-candles__{twelve}"
    assert job_name("arango-candles", "BTCUSDT", twelve).endswith(twelve)
    rule = f"invalid short id '{thirteen}': expected 1..12 lowercase letters or digits"
    for make in (
        lambda: queue_id("BTCUSDT", "api_candles_1m", DAY, thirteen),
        lambda: parse_queue_id(f"wf-btcusdt-api_candles_1m-20240801-{thirteen}"),
        lambda: check_queue_id(f"wf-btcusdt-api_candles_1m-20240801-{thirteen}"),
        lambda: producer_id("arango-candles", thirteen),
        lambda: job_name("arango-candles", "BTCUSDT", thirteen),
    ):
        with pytest.raises(InvalidName, match=re.escape(rule)):
            make()


def test_dlq_topic() -> None:
    assert dlq_topic("wf-x-data") == "wf-x-data-dlq"
    with pytest.raises(InvalidName, match="Kafka topic"):
        dlq_topic("x" * 246)


# --- job names, producers, collections --------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "symbol", "short", "fragment"),
    [
        ("Arango-Candles", "BTCUSDT", "abc123", "'Arango-Candles'"),
        ("arango_candles", "BTCUSDT", "abc123", "'arango_candles'"),
        ("-arango", "BTCUSDT", "abc123", "'-arango'"),
        ("arango-candles", "BTC-USDT", "abc123", "'BTC-USDT'"),
        ("arango-candles", "BTCUSDT", "ABC123", "'ABC123'"),
        ("a" * 40, "BTCUSDTBTCUSDTBTCUSDT"[:20], "abc123", "63"),
    ],
)
def test_illegal_job_names_are_rejected(
    target: str, symbol: str, short: str, fragment: str
) -> None:
    with pytest.raises(InvalidName) as info:
        job_name(target, symbol, short)
    assert fragment in str(info.value)


def test_producer_id_rules() -> None:
    with pytest.raises(InvalidName, match="'Loader'"):
        producer_id("Loader", "abc123")
    with pytest.raises(InvalidName, match="short id ''"):
        producer_id("loader", "")


def test_symbols_starting_with_a_digit_get_a_prefixed_collection() -> None:
    # Binance has symbols starting with a digit; ArangoDB's traditional names may not.
    assert collection_name("1INCHUSDT", "api_candles_1m", DAY) == (
        "sym-1inchusdt_api_candles_1m_2024_08_01"
    )
    assert collection_name("1000satsusdt", "api_candles_1M", DAY) == (
        "sym-1000satsusdt_api_candles_1M_2024_08_01"
    )
    with pytest.raises(InvalidName, match="start with a letter"):
        check_collection_name("1inchusdt_api_candles_1m_2024_08_01")


@pytest.mark.parametrize("symbol", ["BTCUSDT", "1INCHUSDT", "1000SATSUSDT", "USDT1", "A1", "99"])
@pytest.mark.parametrize("type_", ["api_candles_1m", "api_candles_1M", "archive_candles_1w"])
def test_collection_names_round_trip(symbol: str, type_: str) -> None:
    name = collection_name(symbol, type_, DAY)
    assert check_collection_name(name) == name
    assert parse_collection_name(name) == (symbol, type_, DAY)


@pytest.mark.parametrize(
    "name",
    [
        "sym-btcusdt_api_candles_1m_2024_08_01",  # the prefix only ever precedes a digit
        "1inchusdt_api_candles_1m_2024_08_01",  # a digit first needs the prefix
        "btcusdt_api_candles_1m_2024_02_30",
        "btcusdt_api_candles_7m_2024_08_01",
        "queue_state",
        "",
    ],
)
def test_parse_collection_name_refuses_other_names(name: str) -> None:
    with pytest.raises(InvalidName, match="invalid collection name"):
        parse_collection_name(name)


# --- parts ------------------------------------------------------------------------------------


def test_symbols() -> None:
    assert check_symbol("BTCUSDT") == "BTCUSDT"
    assert check_symbol("1000SATSUSDT") == "1000SATSUSDT"
    for bad in ("btcusdt", "B", "BTC/USDT", "X" * 21, ""):
        with pytest.raises(InvalidName, match=re.escape(repr(bad))):
            check_symbol(bad)
    with pytest.raises(InvalidName, match="did you mean 'BTCUSDT'"):
        check_symbol("btcusdt")


def test_intervals_and_types() -> None:
    assert len(INTERVALS) == 16 and "1M" in INTERVALS and "1m" in INTERVALS
    assert check_interval("1M") == "1M"
    with pytest.raises(InvalidName, match="'1mo'"):
        check_interval("1mo")
    assert candle_type("1M") == "api_candles_1M"
    assert candle_type("1h", source="ws") == "ws_candles_1h"
    for good in ("api_candles_1m", "api_candles_1M", "ws_trades", "depth"):
        assert check_type(good) == good
    for bad in ("API_candles_1m", "api-candles-1m", "api_candles_7m", "_x", "api__x", "x_", ""):
        with pytest.raises(InvalidName, match=re.escape(repr(bad))):
            check_type(bad)


def test_non_strings_are_rejected() -> None:
    bad: Any = None
    with pytest.raises(InvalidName, match="must be a string"):
        check_symbol(bad)
    with pytest.raises(InvalidName, match="must be a date"):
        queue_id("BTCUSDT", "api_candles_1m", "2024-08-01", "abc123")  # type: ignore[arg-type]


# --- system rules -----------------------------------------------------------------------------


def test_kafka_topic_rule() -> None:
    assert check_kafka_topic("a" * 249) == "a" * 249
    assert check_kafka_topic("queue-control") == "queue-control"
    for bad in ("", ".", "..", "a" * 250, "with space", "wf/x", "tëst"):
        with pytest.raises(InvalidName, match="Kafka topic"):
            check_kafka_topic(bad)


def test_dns1123_label_rule() -> None:
    assert check_dns1123_label("a" * 63) == "a" * 63
    for bad in ("", "a" * 64, "Job", "job_", "-job", "job-", "job.x"):
        with pytest.raises(InvalidName, match=re.escape(repr(bad))):
            check_dns1123_label(bad)


def test_label_value_rule() -> None:
    for good in ("", "a", "A.b_c-D", "x" * 63):
        assert check_label_value(good) == good
    for bad in ("x" * 64, "-a", "a-", "_a", "a b", "a/b"):
        with pytest.raises(InvalidName, match="label value"):
            check_label_value(bad)


def test_collection_name_rule() -> None:
    assert check_collection_name("a" + "b" * 255) == "a" + "b" * 255
    for bad in ("", "_system", "1abc", "a" + "b" * 256, "a.b", "a b"):
        with pytest.raises(InvalidName, match="ArangoDB collection"):
            check_collection_name(bad)


def test_target_rule() -> None:
    for good in ("loader-candles", "arango-candles", "dummy", "loader-producer"):
        assert check_target(good) == good
    with pytest.raises(InvalidName, match="target"):
        check_target("Dummy")


def nested(levels: int, kind: type[list[Any] | dict[str, Any]]) -> Any:
    """A value of `levels` lists (or dicts) one inside the other, the innermost holding 1."""
    value: Any = 1
    for _ in range(levels):
        value = [value] if kind is list else {"x": value}
    return value


@pytest.mark.parametrize("kind", [list, dict])
def test_parameters_nest_at_most_100_levels(kind: type[list[Any] | dict[str, Any]]) -> None:
    """Papermill writes parameters recursively: deeper ones would end in a RecursionError."""
    assert check_parameters({"p": nested(100, kind)}) == {"p": nested(100, kind)}
    with pytest.raises(InvalidName, match="parameter p: lists and dicts nest deeper than 100"):
        check_parameters({"p": nested(101, kind)})


def test_a_parameter_that_holds_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidName, match="nest deeper than 100"):
        check_parameters({"p": loop})


def test_parameters_must_be_a_mapping_of_names() -> None:
    with pytest.raises(InvalidName, match="must be a mapping of name to value, got list"):
        check_parameters([("p", 1)])
    with pytest.raises(InvalidName, match="parameter names must be strings, got 1"):
        check_parameters({1: "x"})


# --- time ranges ------------------------------------------------------------------------------


def test_platform_time_range() -> None:
    tr = parse_time_range("2024-08-01:2024-08-02")
    assert tr.start == datetime(2024, 8, 1, tzinfo=UTC)
    assert tr.end == datetime(2024, 8, 2, tzinfo=UTC)
    assert tr.start_ms == 1722470400000
    assert tr.end_ms == 1722470400000 + 86_400_000
    assert tr.day == DAY
    assert str(tr) == "2024-08-01:2024-08-02"


@pytest.mark.parametrize(
    "text",
    [
        "2024-08-01T00:00:00Z/2024-08-02T00:00:00Z",
        "2024-08-01T00:00:00Z:2024-08-02T00:00:00Z",
        "2024-08-01T00:00:00:2024-08-02T00:00:00",
        "2024-08-01T02:00:00+02:00:2024-08-02",
        "2024-08-01/2024-08-02",
    ],
)
def test_iso_time_ranges(text: str) -> None:
    tr = parse_time_range(text)
    assert (tr.start, tr.end) == (
        datetime(2024, 8, 1, tzinfo=UTC),
        datetime(2024, 8, 2, tzinfo=UTC),
    )
    assert str(tr) == "2024-08-01:2024-08-02"


def test_time_range_below_a_day_round_trips() -> None:
    tr = parse_time_range("2024-08-01T12:30:00.250Z/2024-08-01T13:00:00Z")
    assert tr.start_ms == 1722470400000 + (12 * 3600 + 30 * 60) * 1000 + 250
    assert str(tr) == "2024-08-01T12:30:00.250000Z/2024-08-01T13:00:00Z"
    assert parse_time_range(str(tr)) == tr


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("2024-08-01/2024-08-01T12:00:00Z", "2024-08-01T00:00:00Z/2024-08-01T12:00:00Z"),
        ("2024-08-01T12:00:00Z/2024-08-02", "2024-08-01T12:00:00Z/2024-08-02T00:00:00Z"),
    ],
)
def test_a_range_with_one_midnight_side_prints_both_times(text: str, printed: str) -> None:
    """Only a range of whole days prints as days: anything else would change on re-reading."""
    tr = parse_time_range(text)
    assert str(tr) == printed
    assert parse_time_range(str(tr)) == tr


def test_time_range_normalises_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    tr = TimeRange(datetime(2024, 8, 1, 2, tzinfo=plus2), datetime(2024, 8, 2, 2, tzinfo=plus2))
    assert tr.start.tzinfo is UTC
    assert str(tr) == "2024-08-01:2024-08-02"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2024-08-02:2024-08-01", "ends before it starts"),
        ("2024-08-01:2024-08-01", "is empty"),
        ("2024-08-01", "expected 'YYYY-MM-DD:YYYY-MM-DD'"),
        ("2024-08-01..2024-08-02", "'2024-08-01..2024-08-02'"),
        ("2024-13-01:2024-08-02", "'2024-13-01' is not a date"),
        ("2024-08-01/2024-08-02/2024-08-03", "expected"),
        ("yesterday:2024-08-02", "'yesterday' is not a date"),
    ],
)
def test_bad_time_ranges(text: str, fragment: str) -> None:
    with pytest.raises(InvalidName, match=re.escape(fragment)):
        parse_time_range(text)


@pytest.fixture(params=["Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def local_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """This process's local time zone set to a non-UTC one (restored after the test)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.mark.parametrize(
    "text",
    [
        "2024-08-01:2024-08-02",
        "2024-08-01T00:00:00:2024-08-02T00:00:00",
        "2024-08-01T00:00:00/2024-08-02",
        "2024-08-01/2024-08-02T00:00:00.000",
    ],
)
def test_naive_dates_and_times_are_utc_whatever_the_local_zone(local_zone: str, text: str) -> None:
    assert time.timezone != 0 or time.daylight  # the zone really is not UTC
    tr = parse_time_range(text)
    assert (tr.start_ms, tr.end_ms) == (1722470400000, 1722470400000 + 86_400_000)
    assert str(tr) == "2024-08-01:2024-08-02"
    assert tr.day == DAY


def test_time_range_needs_aware_datetimes() -> None:
    with pytest.raises(InvalidName, match="timezone-aware"):
        TimeRange(datetime(2024, 8, 1), datetime(2024, 8, 2))


def test_invalid_name_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_time_range("2024-08-02:2024-08-01")


@pytest.mark.parametrize("symbol", ["1INCHUSDT", "1000SATSUSDT"])
def test_workflows_accept_symbols_starting_with_a_digit(symbol: str) -> None:
    from streamforge_nb.settings import Settings
    from streamforge_nb.workflow import Workflow

    plan = Workflow.candles(symbol, "1m", "2024-08-01:2024-08-02", settings=Settings()).plan()
    assert plan.collection == f"sym-{symbol.lower()}_api_candles_1m_2024_08_01"
    assert parse_collection_name(plan.collection) == (symbol, "api_candles_1m", DAY)
    assert parse_queue_id(plan.queue_id).symbol == symbol
