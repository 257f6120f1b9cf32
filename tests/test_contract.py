"""The message contract: models, encode/decode, errors, and the committed JSON Schemas."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamforge_nb.control.telemetry import (
    ProducerState,
    event_line,
    fold,
    queue_status,
    safe_count,
    safe_timestamp,
)
from streamforge_nb.exceptions import InvalidName, MessageError
from streamforge_nb.platform.contract import (
    COMMANDS,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    STATUSES,
    TERMINAL_STATUSES,
    Candle,
    Error,
    Finished,
    Interrupted,
    Loading,
    Message,
    PingCommand,
    Pong,
    StartCommand,
    Started,
    StopCommand,
    decode_candle,
    decode_command,
    decode_event,
    encode,
    message_key,
)
from streamforge_nb.platform.schemas import json_schemas, main, render_schema, write_schemas

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "streamforge_nb" / "schemas"

# Verbatim from PLATFORM.md, which annotates its JSON with `//` comments.
PLATFORM_COMMAND = """
{
  "command": "start",            // start | stop | ping
  "queue_id": "wf-btcusdt-api_candles_5m-20240801-a1b2c3",
  "target": "loader-producer",   // which worker kind the command is for (optional for stop/ping)
  "symbol": "BTCUSDT",
  "type": "api_candles_5m",
  "time_range": "2024-08-01:2024-08-02",
  "kafka_topic": "wf-btcusdt-api_candles_5m-20240801-a1b2c3-data",
  "collection_name": "btcusdt_api_candles_5m_2024_08_01",
  "telemetry_id": "loader-producer__a1b2c3",
  "image": "registry.dmz.home/streamforge/loader-producer:v0.2.0",
  "timestamp": 1722500000.123
}
"""

PLATFORM_EVENT = """
{
  "queue_id": "wf-btcusdt-api_candles_5m-20240801-a1b2c3",
  "producer": "arango-connector__a1b2c3",
  "symbol": "BTCUSDT",
  "type": "api_candles_5m",
  "status": "loading",           // started | loading | finished | error | interrupted | pong
  "message": "Saved 15000 records",
  "records_written": 15000,
  "finished": false,
  "timestamp": 1722500125.456
}
"""

PLATFORM_CANDLE = """
{
  "_key": "BTCUSDT_1m_1672531200000",
  "open_time": 1672531200000, "open": "16541.23", "high": "16542.88",
  "low": "16540.99", "close": "16541.98", "volume": "123.45",
  "close_time": 1672531259999, "quote_asset_volume": "2042134.56",
  "number_of_trades": 456, "taker_buy_base_asset_volume": "60.12",
  "taker_buy_quote_asset_volume": "994512.34"
}
"""

# A real row of GET /api/v3/klines?symbol=BTCUSDT&interval=1m (2023-01-01 00:00 UTC).
BINANCE_ROW: list[Any] = [
    1672531200000, "16541.77000000", "16544.76000000", "16538.45000000", "16543.67000000",
    "83.08143000", 1672531259999, "1374268.84894210", 2687, "42.35403000",
    "700544.52399760", "0",
]  # fmt: skip

QID = "wf-btcusdt-api_candles_1m-20240801-abc123"


def _strip_comments(text: str) -> bytes:
    return re.sub(r"\s*//[^\n]*", "", text).encode()


def _candle_dict() -> dict[str, Any]:
    return dict(orjson.loads(_strip_comments(PLATFORM_CANDLE)))


def _every_message() -> list[Message]:
    ping = PingCommand(queue_id=QID, correlation_id="c0ffee", timestamp=1722500000.5)
    return [
        StartCommand(
            queue_id=QID,
            target="loader-producer",
            symbol="BTCUSDT",
            type="api_candles_1m",
            time_range="2024-08-01:2024-08-02",
            kafka_topic=QID + "-data",
            collection_name="btcusdt_api_candles_1m_2024_08_01",
            telemetry_id="loader-producer__abc123",
            image="registry.dmz.home/streamforge/loader-producer:v0.2.0",
            parameters={"limit": 1000, "nested": {"a": [1, 2]}},
        ),
        StopCommand(queue_id=QID),
        ping,
        Started(queue_id=QID, producer="arango-candles__abc123", symbol="BTCUSDT"),
        Loading(queue_id=QID, producer="arango-candles__abc123", records_written=15000),
        Finished(queue_id=QID, producer="arango-candles__abc123", records_written=1440),
        Error(queue_id=QID, producer="p__1", message="boom", error_type="KeyError", cell=3),
        Interrupted(queue_id=QID, producer="arango-candles__abc123"),
        Pong.answer(ping, "dummy__abc123"),
        Candle.from_kline("BTCUSDT", "1m", BINANCE_ROW),
    ]


def _decode(data: bytes, msg: Message) -> Message:
    if isinstance(msg, Candle):
        return decode_candle(data)
    if isinstance(msg, StartCommand | StopCommand | PingCommand):
        return decode_command(data)
    return decode_event(data)


# --- round trips and the platform's examples --------------------------------------------------


@pytest.mark.parametrize("msg", _every_message(), ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: Message) -> None:
    data = encode(msg)
    back = _decode(data, msg)
    assert type(back) is type(msg)
    assert back == msg
    assert encode(back) == data


def test_encode_omits_nulls_and_uses_aliases() -> None:
    stop = orjson.loads(encode(StopCommand(queue_id=QID, timestamp=1e9 + 0.5)))
    assert stop == {"command": "stop", "queue_id": QID, "timestamp": 1e9 + 0.5}
    candle = orjson.loads(encode(Candle.from_kline("BTCUSDT", "1m", BINANCE_ROW)))
    assert "_key" in candle and "key" not in candle


def test_platform_command_example_decodes() -> None:
    cmd = decode_command(_strip_comments(PLATFORM_COMMAND))
    assert isinstance(cmd, StartCommand)
    assert cmd.target == "loader-producer"
    assert cmd.time_range == "2024-08-01:2024-08-02"
    assert cmd.telemetry_id == "loader-producer__a1b2c3"
    assert cmd.timestamp == 1722500000.123
    assert cmd.parameters is None


def test_platform_event_example_decodes() -> None:
    event = decode_event(_strip_comments(PLATFORM_EVENT))
    assert isinstance(event, Loading)
    assert event.records_written == 15000
    assert event.finished is False
    assert not event.is_terminal


def test_platform_candle_example_decodes_and_reencodes_identically() -> None:
    raw = _strip_comments(PLATFORM_CANDLE)
    candle = decode_candle(raw)
    assert candle.key == "BTCUSDT_1m_1672531200000"
    assert candle.open == "16541.23"
    assert orjson.loads(encode(candle)) == orjson.loads(raw)


def test_stop_with_only_command_and_queue_id_decodes() -> None:
    stop = decode_command(b'{"command": "stop", "queue_id": "%s"}' % QID.encode())
    assert isinstance(stop, StopCommand)
    assert stop.target is None
    assert stop.timestamp > 0


def test_extra_fields_are_accepted_and_preserved() -> None:
    data = orjson.loads(_strip_comments(PLATFORM_EVENT))
    data["shard"] = 7
    data["details"] = {"lag": [1, 2]}
    event = decode_event(orjson.dumps(data))
    assert event.model_extra == {"shard": 7, "details": {"lag": [1, 2]}}
    assert orjson.loads(encode(event)) == data

    candle = _candle_dict() | {"ignore": "0"}
    assert orjson.loads(encode(decode_candle(orjson.dumps(candle)))) == candle


def test_statuses_and_terminal_statuses() -> None:
    assert COMMANDS == ("start", "stop", "ping")
    assert STATUSES == ("started", "loading", "finished", "error", "interrupted", "pong")
    assert TERMINAL_STATUSES == ("finished", "error", "interrupted")
    assert Finished(queue_id=QID, producer="p").finished is True
    assert Error(queue_id=QID, producer="p").is_terminal
    assert not Pong(queue_id=QID, producer="p", correlation_id="c", ping_timestamp=1e9).is_terminal


# --- ping / pong ------------------------------------------------------------------------------


def test_pong_echoes_the_ping() -> None:
    ping = PingCommand.new(QID, target="dummy")
    assert len(ping.correlation_id) >= 16
    wire_ping = decode_command(encode(ping))
    assert isinstance(wire_ping, PingCommand)
    pong = decode_event(encode(Pong.answer(wire_ping, "dummy__abc123")))
    assert isinstance(pong, Pong)
    assert pong.correlation_id == ping.correlation_id
    assert pong.ping_timestamp == ping.timestamp
    assert pong.queue_id == QID
    assert pong.round_trip_seconds(ping.timestamp + 0.25) == pytest.approx(0.25)
    assert 0 <= pong.round_trip_seconds() < 60


def test_ping_needs_correlation_id_and_timestamp() -> None:
    with pytest.raises(MessageError, match=r"correlation_id: Field required") as info:
        decode_command(b'{"command": "ping", "queue_id": "q", "timestamp": 1.0}')
    assert "ping" in str(info.value)
    with pytest.raises(MessageError, match=r"timestamp: Field required"):
        decode_command(b'{"command": "ping", "queue_id": "q", "correlation_id": "c"}')


# --- malformed input --------------------------------------------------------------------------


@pytest.mark.parametrize("decode", [decode_command, decode_event, decode_candle])
@pytest.mark.parametrize("data", [b"", b"{not json", b'{"a": 1', b"\xff\xfe"])
def test_broken_json_is_a_message_error(decode: Any, data: bytes) -> None:
    with pytest.raises(MessageError, match="not valid JSON"):
        decode(data)


@pytest.mark.parametrize("decode", [decode_command, decode_event, decode_candle])
@pytest.mark.parametrize("data", [b"[]", b"42", b'"start"', b"null"])
def test_json_that_is_not_an_object_is_a_message_error(decode: Any, data: bytes) -> None:
    with pytest.raises(MessageError, match="not a JSON object"):
        decode(data)


def test_unknown_command_and_status() -> None:
    with pytest.raises(MessageError, match=r"unknown command 'restart'"):
        decode_command(b'{"command": "restart", "queue_id": "q"}')
    with pytest.raises(MessageError, match=r"unknown status 'done'"):
        decode_event(b'{"status": "done", "queue_id": "q", "producer": "p"}')
    with pytest.raises(MessageError, match=r"command: Field required"):
        decode_command(b'{"queue_id": "q"}')
    with pytest.raises(MessageError, match=r"status: Field required"):
        decode_event(b'{"queue_id": "q", "producer": "p"}')


def test_missing_required_field_is_named() -> None:
    data = orjson.loads(_strip_comments(PLATFORM_COMMAND))
    del data["kafka_topic"]
    with pytest.raises(MessageError, match=r"^invalid start command: kafka_topic: Field required$"):
        decode_command(orjson.dumps(data))
    with pytest.raises(MessageError, match=r"producer: Field required"):
        decode_event(b'{"status": "started", "queue_id": "q"}')


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("records_written", "15000"),
        ("records_written", 1.5),
        ("records_written", -1),
        ("finished", "false"),
        ("finished", 0),
        ("timestamp", "1722500125.456"),
        ("queue_id", 42),
        ("queue_id", ""),
        ("message", ["Saved"]),
    ],
)
def test_wrong_event_field_type_is_named(field: str, value: Any) -> None:
    data = orjson.loads(_strip_comments(PLATFORM_EVENT)) | {field: value}
    with pytest.raises(MessageError, match=rf"^invalid loading event: {field}: ") as info:
        decode_event(orjson.dumps(data))
    if field == "records_written" and value == "15000":
        assert "'15000'" in str(info.value)  # shows what was received


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("open_time", "1672531200000"),
        ("open", 16541.23),
        ("number_of_trades", "456"),
        ("close_time", None),
        ("_key", "BTCUSDT-1m-1672531200000"),
        ("_key", "BTCUSDT_1m_"),
    ],
)
def test_wrong_candle_field_is_named(field: str, value: Any) -> None:
    data = _candle_dict() | {field: value}
    with pytest.raises(MessageError, match=rf"^invalid candle: {field}: "):
        decode_candle(orjson.dumps(data))


def test_candle_key_must_match_open_time() -> None:
    data = _candle_dict() | {"open_time": 1672531260000}
    with pytest.raises(MessageError, match=r"open_time: .*_key 'BTCUSDT_1m_1672531200000'"):
        decode_candle(orjson.dumps(data))


def test_missing_candle_field_is_named() -> None:
    data = _candle_dict()
    del data["taker_buy_quote_asset_volume"]
    with pytest.raises(MessageError, match=r"taker_buy_quote_asset_volume: Field required"):
        decode_candle(orjson.dumps(data))


def test_decoders_accept_str() -> None:
    assert decode_candle(_strip_comments(PLATFORM_CANDLE).decode()).open_time == 1672531200000


# --- keys and candles from Binance ------------------------------------------------------------


def test_message_keys() -> None:
    for msg in _every_message():
        expected = msg.key if isinstance(msg, Candle) else QID
        assert message_key(msg) == expected.encode()
    assert message_key(decode_candle(_strip_comments(PLATFORM_CANDLE))) == (
        b"BTCUSDT_1m_1672531200000"
    )


def test_candle_from_binance_kline_row() -> None:
    candle = Candle.from_kline("btcusdt", "1m", BINANCE_ROW)
    assert candle.key == "BTCUSDT_1m_1672531200000"
    assert candle.open_time == 1672531200000
    assert candle.close_time == 1672531259999
    assert (candle.open, candle.high, candle.low, candle.close) == (
        "16541.77000000",
        "16544.76000000",
        "16538.45000000",
        "16543.67000000",
    )
    assert candle.volume == "83.08143000"
    assert candle.quote_asset_volume == "1374268.84894210"
    assert candle.number_of_trades == 2687
    assert candle.taker_buy_base_asset_volume == "42.35403000"
    assert candle.taker_buy_quote_asset_volume == "700544.52399760"
    assert candle.model_extra == {}  # the trailing 'ignore' field is dropped
    assert Candle.from_kline("BTCUSDT", "1M", BINANCE_ROW).key == "BTCUSDT_1M_1672531200000"


def test_candle_from_bad_kline_row() -> None:
    with pytest.raises(MessageError, match="5 fields"):
        Candle.from_kline("BTCUSDT", "1m", BINANCE_ROW[:5])
    with pytest.raises(MessageError, match="number_of_trades"):
        Candle.from_kline("BTCUSDT", "1m", [*BINANCE_ROW[:8], "2687", *BINANCE_ROW[9:]])
    with pytest.raises(InvalidName, match="'7m'"):
        Candle.from_kline("BTCUSDT", "7m", BINANCE_ROW)
    with pytest.raises(InvalidName, match="BTC/USDT"):
        Candle.from_kline("BTC/USDT", "1m", BINANCE_ROW)


def test_candle_by_field_name_or_alias() -> None:
    data = _candle_dict()
    by_alias = Candle.model_validate(data)
    data["key"] = data.pop("_key")
    assert Candle.model_validate(data) == by_alias
    assert "_key" in by_alias.model_dump()


# --- JSON Schemas -----------------------------------------------------------------------------


def test_committed_schemas_match_the_models() -> None:
    """Fails when a model changed without `python -m streamforge_nb.platform.contract`."""
    expected = json_schemas()
    committed = {p.name.removesuffix(".schema.json") for p in SCHEMAS_DIR.glob("*.schema.json")}
    assert committed == set(expected), "regenerate: python -m streamforge_nb.platform.contract"
    for name, schema in expected.items():
        path = SCHEMAS_DIR / f"{name}.schema.json"
        assert json.loads(path.read_text()) == schema, f"{path} is stale; regenerate it"
        assert path.read_bytes() == render_schema(schema)


def test_schemas_cover_every_message_and_require_the_tag() -> None:
    schemas = json_schemas()
    assert list(schemas) == [*COMMANDS, *STATUSES, "candle"]
    for name in COMMANDS:
        assert "command" in schemas[name]["required"]
        assert schemas[name]["properties"]["command"]["const"] == name
    for name in STATUSES:
        assert {"status", "queue_id", "producer"} <= set(schemas[name]["required"])
    assert "_key" in schemas["candle"]["properties"]
    assert all(s["additionalProperties"] is True for s in schemas.values())


def test_write_schemas_removes_stale_files(tmp_path: Path) -> None:
    (tmp_path / "old.schema.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("keep")
    written = write_schemas(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{n}.schema.json" for n in json_schemas())
    assert not (tmp_path / "old.schema.json").exists()
    assert (tmp_path / "notes.txt").exists()
    assert (tmp_path / "start.schema.json").read_text().endswith("}\n")


def test_main_writes_into_the_given_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").glob("*.schema.json"))) == len(json_schemas())
    assert "candle.schema.json" in capsys.readouterr().out
    assert main(["a", "b"]) == 2


# --- telemetry bounds: no value the broker can hold breaks a reader (issue 10) ----------------
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_NUMBER = st.integers() | st.floats() | st.sampled_from([1e20, -1e20, 1e308, 2**63, 2**64, -1])
_TEXT = st.text() | st.sampled_from(["\x1b[2J", "a\nb", "\u202e", "x" * 70_000, ""])
_FIELDS = {
    "status": st.sampled_from(["started", "loading", "finished", "error", "interrupted", "pong"]),
    "queue_id": _TEXT,
    "producer": _TEXT,
    "timestamp": _NUMBER,
    "records_written": _NUMBER,
    "message": _TEXT | st.none(),
    "correlation_id": _TEXT,
    "ping_timestamp": _NUMBER,
    "cell": _NUMBER,
    "extra": _JSON | _NUMBER,
}
_EVENTS = st.fixed_dictionaries(
    {"status": _FIELDS["status"], "queue_id": _FIELDS["queue_id"], "producer": _FIELDS["producer"]},
    optional={k: v for k, v in _FIELDS.items() if k not in ("status", "queue_id", "producer")},
)


def _dumps(value: Any) -> bytes:
    # Python's json writes what orjson refuses (integers beyond 64 bits, inf): the broker can
    # hold those bytes too.
    return json.dumps(value).encode()


def _read_everything(raw: bytes) -> None:
    """What every reader does with one message: decode, fold, status, print, panel."""
    from streamforge_nb.ui.panel import _log_line, _table

    try:
        event = decode_event(raw)
    except MessageError:
        return
    assert MIN_TIMESTAMP <= event.timestamp <= MAX_TIMESTAMP  # the contract's window
    assert 0 <= event.records_written <= 2**63 - 1
    states = fold(fold({}, event), event)
    state = states[event.producer]
    assert safe_timestamp(state.last_seen) is not None
    assert safe_count(state.records_written) == state.records_written
    queue_status(states, ["loader"])
    for as_json in (False, True):
        line = event_line(event, as_json=as_json)
        assert "\n" not in line and "\x1b" not in line
    _log_line(event)
    _table(list(states.values()), 0.0)
    import pandas as pd

    pd.Timestamp(state.last_seen, unit="s", tz="UTC")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_JSON)
def test_any_json_value_decodes_or_is_malformed(value: Any) -> None:
    _read_everything(_dumps(value))
    with contextlib.suppress(MessageError):
        decode_command(_dumps(value))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_EVENTS)
def test_schema_shaped_extremes_never_break_a_reader(fields: dict[str, Any]) -> None:
    _read_everything(_dumps(fields))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_malformed_or_an_event(raw: bytes) -> None:
    _read_everything(raw)


def test_the_issue_10_event_is_malformed() -> None:
    raw = b'{"status":"loading","queue_id":"Q","producer":"x","timestamp":1e20}'
    with pytest.raises(MessageError, match="timestamp"):
        decode_event(raw)
    for bad in (
        b'{"status":"loading","queue_id":"Q","producer":"x","records_written":-1}',
        b'{"status":"loading","queue_id":"Q","producer":"x","records_written":9223372036854775808}',
        b'{"status":"loading","queue_id":"Q","producer":"' + b"p" * 256 + b'"}',
        b'{"status":"loading","queue_id":"Q","producer":"x","x":123456789012345678901234567}',
        b'{"status":"pong","queue_id":"Q","producer":"x","correlation_id":"c","ping_timestamp":-5}',
    ):
        with pytest.raises(MessageError):
            decode_event(bad)


def test_fold_clamps_what_validation_never_saw() -> None:
    event = Loading.model_construct(
        queue_id="q", producer="p", status="loading", timestamp=1e20, records_written=-5,
        message=None,
    )  # fmt: skip
    state = fold({}, event)["p"]
    assert isinstance(state, ProducerState)
    assert safe_timestamp(state.last_seen) is not None and state.records_written == 0
