"""Typed models of the platform's Kafka messages, and their one encoder and decoder.

Commands travel on `queue-control`, telemetry events on `queue-events`, candles on each
queue's data topic. The models are strict about the fields the platform requires
and their JSON types (a count sent as `"15000"` is an error, not a number), and tolerant of
fields they do not know: a newer sender's extra fields are accepted and kept on re-encode.

Every byte that goes to or comes from Kafka passes through `encode` / `decode_*` here, so a
malformed message always becomes a `MessageError` naming the offending field.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeAlias

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from streamforge_nb.exceptions import MessageError, describe_validation_error
from streamforge_nb.platform.intervals import check_interval
from streamforge_nb.platform.names import check_symbol

__all__ = [
    "COMMANDS",
    "MAX_COUNT",
    "MAX_ID_CHARS",
    "MAX_MESSAGE_CHARS",
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "STATUSES",
    "TERMINAL_STATUSES",
    "BaseCommand",
    "BaseEvent",
    "Candle",
    "Command",
    "Error",
    "Event",
    "Finished",
    "Interrupted",
    "Loading",
    "Message",
    "PartitionLag",
    "PingCommand",
    "Pong",
    "StartCommand",
    "Started",
    "StopCommand",
    "clip_message",
    "decode_candle",
    "decode_command",
    "decode_event",
    "encode",
    "message_key",
]

COMMANDS: tuple[str, ...] = ("start", "stop", "ping")
STATUSES: tuple[str, ...] = ("started", "loading", "finished", "error", "interrupted", "pong")
TERMINAL_STATUSES: tuple[str, ...] = ("finished", "error", "interrupted")

_CONFIG = ConfigDict(strict=True, extra="allow", use_attribute_docstrings=True, allow_inf_nan=False)

# Bounds on what a reader accepts: a value outside them is malformed, so no reader (fold,
# status, queue state, panels, the CLI) ever meets a time pandas cannot hold or a count that
# overflows an int64. Timestamps: 2000-01-01 .. 2100-01-01 UTC, in Unix seconds.
MIN_TIMESTAMP = 946_684_800.0
MAX_TIMESTAMP = 4_102_444_800.0
MAX_COUNT = 2**63 - 1
MAX_ID_CHARS = 255
MAX_MESSAGE_CHARS = 65_536
Timestamp = Annotated[float, Field(ge=MIN_TIMESTAMP, le=MAX_TIMESTAMP)]
"""Unix seconds within the sane window."""
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
"""A non-negative int64: counts, and the times of candles (Unix ms)."""
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
Text = Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
Short = Annotated[str, Field(max_length=MAX_ID_CHARS)]


def clip_message(text: str | None) -> str | None:
    """Return `text` cut to the length a telemetry message may have (None stays None)."""
    if text is None or len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 1] + "\u2026"


class _Message(BaseModel):
    model_config = _CONFIG


# --- queue-control ----------------------------------------------------------------------------


class BaseCommand(_Message):
    """Fields every command on `queue-control` carries."""

    command: str
    queue_id: Id
    """The queue (one queue id: one launch of a workflow) the command is addressed to."""


class StartCommand(BaseCommand):
    """Start a worker for a queue."""

    command: Literal["start"] = "start"
    target: str
    """Worker kind the command is for, e.g. `loader-producer`."""
    symbol: str
    type: str
    time_range: str
    """`YYYY-MM-DD:YYYY-MM-DD`, end exclusive."""
    kafka_topic: str
    collection_name: str | None = None
    telemetry_id: str | None = None
    image: str | None = None
    parameters: dict[str, Any] | None = None
    """Worker-specific options."""
    timestamp: Timestamp = Field(default_factory=time.time)
    """Send time, Unix seconds."""


class StopCommand(BaseCommand):
    """Stop a queue's worker; it answers with a final `interrupted` event."""

    command: Literal["stop"] = "stop"
    target: Short | None = None
    timestamp: Timestamp = Field(default_factory=time.time)
    """Send time, Unix seconds."""


class PingCommand(BaseCommand):
    """Ask a queue's worker for a `pong` carrying the same correlation id."""

    command: Literal["ping"] = "ping"
    target: Short | None = None
    correlation_id: Id
    timestamp: Timestamp
    """Send time, Unix seconds; echoed back as the pong's `ping_timestamp`."""

    @classmethod
    def new(cls, queue_id: str, target: str | None = None) -> PingCommand:
        """Return a ping for `queue_id` with a fresh correlation id, stamped now."""
        return cls(
            queue_id=queue_id, target=target, correlation_id=uuid.uuid4().hex, timestamp=time.time()
        )


Command: TypeAlias = Annotated[
    StartCommand | StopCommand | PingCommand, Field(discriminator="command")
]


# --- queue-events -----------------------------------------------------------------------------


class BaseEvent(_Message):
    """Fields every telemetry event on `queue-events` carries."""

    status: str
    queue_id: Id
    producer: Id
    """Telemetry id of the sending worker, e.g. `arango-candles__abc123`."""
    symbol: Short | None = None
    type: Short | None = None
    message: Text | None = None
    records_written: Count = 0
    dead_letters: Count | None = None
    """Messages the worker refused to its DLQ so far (a sink's; absent: none)."""
    anomalies: Count | None = None
    """Stored candles with an anomaly real exchanges serve (odd close time, ...; absent: none)."""
    finished: bool = False
    timestamp: Timestamp = Field(default_factory=time.time)
    """Send time, Unix seconds."""

    @property
    def is_terminal(self) -> bool:
        """Tell whether this event ends the worker's life (finished, error, interrupted)."""
        return self.status in TERMINAL_STATUSES


class Started(BaseEvent):
    """The worker is up and working."""

    status: Literal["started"] = "started"


class PartitionLag(_Message):
    """How far a sink's consumer group is behind on one partition of its data topic."""

    partition: Annotated[int, Field(ge=0, le=2**31 - 1)]
    committed: Count
    """The offset after the last message the store has (committed, or being committed)."""
    end: Count
    """The partition's end offset (high watermark) as the sink last fetched it."""
    messages: Count
    """Messages behind: end - committed (0: caught up)."""
    seconds: Annotated[float, Field(ge=0, le=MAX_TIMESTAMP)] | None = None
    """Seconds behind: the report's time minus the timestamp of the last message stored from
    the partition (0: caught up; absent: unknown)."""


class Loading(BaseEvent):
    """Progress report."""

    status: Literal["loading"] = "loading"
    group: Short | None = None
    """The consumer group the sink reads its data topic in (a sink's, with `lag`)."""
    lag: Annotated[list[PartitionLag], Field(max_length=10_000)] | None = None
    """A sink's lag per partition it owns at this report (`Queue.lag()` reads them)."""


class Finished(BaseEvent):
    """The worker completed its work."""

    status: Literal["finished"] = "finished"
    finished: bool = True


class Error(BaseEvent):
    """The worker failed."""

    status: Literal["error"] = "error"
    error_type: Short | None = None
    """Exception class name, when known."""
    cell: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    """Index of the failed notebook cell, for notebook workers."""


class Interrupted(BaseEvent):
    """The worker stopped on a `stop` command."""

    status: Literal["interrupted"] = "interrupted"


class Pong(BaseEvent):
    """Answer to a `ping`."""

    status: Literal["pong"] = "pong"
    correlation_id: Id
    """The ping's correlation id."""
    ping_timestamp: Timestamp
    """The ping's `timestamp`, echoed back."""

    @classmethod
    def answer(cls, ping: PingCommand, producer: str, **fields: Any) -> Pong:
        """Return the pong answering `ping`, sent by `producer`."""
        return cls(
            queue_id=ping.queue_id,
            producer=producer,
            correlation_id=ping.correlation_id,
            ping_timestamp=ping.timestamp,
            **fields,
        )

    def round_trip_seconds(self, received_at: float | None = None) -> float:
        """Return seconds from the ping's send time to `received_at` (default: now)."""
        return (time.time() if received_at is None else received_at) - self.ping_timestamp


Event: TypeAlias = Annotated[
    Started | Loading | Finished | Error | Interrupted | Pong, Field(discriminator="status")
]


# --- data topics ------------------------------------------------------------------------------


KEY_PATTERN = r"^[A-Za-z0-9]+_[0-9]+[smhdwM]_[0-9]+$"
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
# Binance sends prices and volumes as decimal strings; anything else would fail later, in the
# store, for a whole batch: reject it here, per message.
DecimalString = Annotated[str, Field(pattern=DECIMAL_PATTERN)]
DECIMAL_FIELDS = (
    "open", "high", "low", "close", "volume", "quote_asset_volume",
    "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume",
)  # fmt: skip


class Candle(_Message):
    """One Binance kline on a data topic; `_key` makes every write idempotent."""

    model_config = ConfigDict(
        **_CONFIG, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    key: str = Field(alias="_key", pattern=KEY_PATTERN)
    """`<SYMBOL>_<interval>_<open_time>`, e.g. `BTCUSDT_1m_1672531200000`."""
    open_time: Count
    """Unix milliseconds."""
    open: DecimalString
    high: DecimalString
    low: DecimalString
    close: DecimalString
    volume: DecimalString
    close_time: Count
    """Unix milliseconds."""
    quote_asset_volume: DecimalString
    number_of_trades: Count
    taker_buy_base_asset_volume: DecimalString
    taker_buy_quote_asset_volume: DecimalString

    @field_validator("open_time")
    @classmethod
    def _open_time_matches_key(cls, value: int, info: ValidationInfo) -> int:
        key = info.data.get("key")
        # A key that broke its pattern is reported on `_key` already (and is absent here).
        if key is not None and not key.endswith(f"_{value}"):
            raise ValueError(f"{value} differs from the open time in _key {key!r}")
        return value

    @classmethod
    def from_kline(cls, symbol: str, interval: str, row: Sequence[Any]) -> Candle:
        """Build a candle from one Binance REST kline row (12 fields, the last ignored)."""
        sym = check_symbol(symbol.upper())
        check_interval(interval)
        if len(row) < 11:
            raise MessageError(f"kline row has {len(row)} fields, expected 12: {list(row)!r}")
        data = dict(zip(_KLINE_FIELDS, row, strict=False))
        data["_key"] = f"{sym}_{interval}_{data['open_time']}"
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MessageError(describe_validation_error(exc, what="invalid kline row")) from None


_KLINE_FIELDS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time",
    "quote_asset_volume", "number_of_trades",
    "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume",
)  # fmt: skip

Message: TypeAlias = (
    StartCommand | StopCommand | PingCommand
    | Started | Loading | Finished | Error | Interrupted | Pong
    | Candle
)  # fmt: skip


# --- encoding and decoding --------------------------------------------------------------------


def encode(msg: Message | BaseCommand | BaseEvent) -> bytes:
    """Return the JSON bytes of `msg` as sent to Kafka (aliases, no nulls, extras kept)."""
    return orjson.dumps(msg.model_dump(mode="json", by_alias=True, exclude_none=True))


def message_key(msg: Message | BaseCommand | BaseEvent) -> bytes:
    """Return the Kafka key of `msg`: its queue id, or `_key` for candles."""
    return (msg.key if isinstance(msg, Candle) else msg.queue_id).encode()


_COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)
_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def decode_command(data: bytes | bytearray | str) -> Command:
    """Parse a `queue-control` message, raising `MessageError` if it breaks the contract."""
    try:
        command = _COMMAND_ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise MessageError(_explain(exc, "command", "command", COMMANDS)) from None
    _check_extras(command, "command")
    return command


def decode_event(data: bytes | bytearray | str) -> Event:
    """Parse a `queue-events` message, raising `MessageError` if it breaks the contract."""
    try:
        event = _EVENT_ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise MessageError(_explain(exc, "event", "status", STATUSES)) from None
    _check_extras(event, "event")
    return event


def _check_extras(msg: BaseModel, kind: str) -> None:
    """Reject extra fields a reader could not re-encode (integers beyond 64 bits, huge text)."""
    extra = msg.model_extra
    if not extra:
        return
    try:
        size = len(orjson.dumps(extra))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise MessageError(f"invalid {kind}: an extra field cannot be encoded ({exc})") from None
    if size > MAX_MESSAGE_CHARS:
        raise MessageError(
            f"invalid {kind}: extra fields take {size} bytes (at most {MAX_MESSAGE_CHARS})"
        )


def decode_candle(data: bytes | bytearray | str) -> Candle:
    """Parse a data-topic candle, raising `MessageError` if it breaks the contract."""
    try:
        return Candle.model_validate_json(data)
    except ValidationError as exc:
        raise MessageError(_explain(exc, "candle", None, ())) from None


class _Errors:
    """Pydantic errors reworded for `describe_validation_error`."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self._errors = errors

    def errors(self) -> list[dict[str, Any]]:
        return self._errors


def _explain(exc: ValidationError, kind: str, tag: str | None, tags: tuple[str, ...]) -> str:
    """Render `exc` as one line naming each bad field of a `kind` message."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"invalid {kind}: not valid JSON ({first['ctx']['error']})"
    if first["type"] in ("dict_type", "model_type") and not first["loc"]:
        return f"invalid {kind}: not a JSON object (got {type(first['input']).__name__})"
    if first["type"] == "union_tag_not_found":
        return f"invalid {kind}: {tag}: Field required (expected one of {', '.join(tags)})"
    if first["type"] == "union_tag_invalid":
        value = first["ctx"]["tag"]
        return f"invalid {kind}: unknown {tag} {value!r} (expected one of {', '.join(tags)})"
    what = f"invalid {kind}"
    reworded = []
    for err in errors:
        loc = tuple(err["loc"])
        # A discriminated union prefixes each location with the tag value; drop it.
        if tag is not None and loc and loc[0] in tags:
            what = f"invalid {loc[0]} {kind}"
            loc = loc[1:]
        msg = err["msg"]
        if err["type"] != "missing":
            msg = f"{msg} (got {_short_repr(err['input'])})"
        reworded.append({**err, "loc": loc, "msg": msg})
    return describe_validation_error(_Errors(reworded), what=what)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
