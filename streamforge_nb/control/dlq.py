"""Dead letters read back: a queue's DLQ (`<data topic>-dlq`) as a DataFrame.

The sink copies every message it refuses to the DLQ with headers naming the reason and where
the message came from (today's `error`, `source_*`, `refused_*`, `truncated`, and Kafka
Connect's `__connect.errors.*` beside them). `read_dead_letters` turns them into one row per
dead letter without keeping any value: memory grows with the rows asked for (`limit`), not
with the values' size. The DLQ is an ordinary topic anyone with write access may fill, so
nothing in it (garbage values, absurd or missing headers, huge or non-UTF-8 bytes) may break
the reading: each field that cannot be read is left empty.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from streamforge_nb.control.telemetry import printable
from streamforge_nb.exceptions import InvalidName, map_confluent_error
from streamforge_nb.kafka.clients import make_assigned_reader
from streamforge_nb.kafka.reader import EndReader
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CONNECT_HEADERS",
    "DEAD_LETTER_COLUMNS",
    "REASON_CLASSES",
    "DeadLetter",
    "connect_class",
    "read_dead_letters",
    "reason_class",
    "scan_dead_letters",
]

log = logging.getLogger(__name__)

REASON_CLASSES = (
    "series", "key", "range", "number", "field", "not-json", "marker", "store", "other",
)  # fmt: skip
"""What a refusal is about: another series; a key that lies; an open time outside the era or
the queue's range; a value that is not a sane number; a field missing or of the wrong type; a
value that is not a JSON object; a malformed exchange-empty marker; the store refused it;
anything else (a check that could not run)."""
CONNECT_PREFIX = "__connect.errors."
CONNECT_HEADERS = tuple(
    CONNECT_PREFIX + name
    for name in ("topic", "partition", "offset", "exception.class.name", "exception.message")
)
"""Kafka Connect's dead-letter headers, which the sink writes beside its own."""
CONNECT_CLASS_PREFIX = "streamforge_nb.refusal."
"""`__connect.errors.exception.class.name` is this prefix and the reason class."""
DEAD_LETTER_COLUMNS = (
    "reason", "reason_class", "source_topic", "source_partition", "source_offset", "key",
    "symbol", "interval", "open_time", "size", "truncated", "dlq_partition", "dlq_offset",
    "dlq_timestamp",
)  # fmt: skip
_INT_COLUMNS = ("source_partition", "source_offset", "size", "dlq_partition", "dlq_offset")
_READ_BATCH = 5_000
STALL_S = 60.0
"""How long a reading waits for the next message before it calls the broker unavailable."""
_MAX_TEXT = 2_000  # a header longer than the sink ever writes is cut, never kept whole
_PARSE_MAX = 256 * 1024 + 1  # values the sink could have kept whole; larger ones: poison
_KEY_RE = re.compile(r"([A-Z0-9]{2,20})_([0-9]+[smhdwM])_(?:empty_)?([0-9]{1,19})(?:_[0-9]+)?")
# A value whose first field is a plain `_key` string (a duplicate `_key` later is not seen).
_LEADING_KEY_RE = re.compile(rb'\{\s*"_key"\s*:\s*"([^"\\]{1,200})"\s*[,}]')
_CUT_RE = re.compile(r"value cut from ([0-9]{1,19}) to")
# Ordered: the first matching phrase of the reason's first clause names its class.
_CLASS_RULES = (
    ("invalid exchange-empty marker", "marker"),
    ("not valid JSON", "not-json"),
    ("not a JSON object", "not-json"),
    ("the store refused it", "store"),
    ("cannot be checked", "other"),
    ("is not the queue's", "series"),
    ("names no valid symbol and interval", "series"),
    ("Kafka key", "key"),
    ("differs from the open time in _key", "key"),
    ("outside the exchange's era", "range"),
    ("outside the queue's range", "range"),
    ("is not a finite number", "number"),
    ("is negative", "number"),
    ("_key", "key"),
    ("should match pattern '^-?[0-9]", "number"),
    ("greater than or equal to 0", "number"),
    ("Field required", "field"),
    ("Input should be", "field"),
)


def reason_class(reason: str) -> str:
    """Return the class (one of `REASON_CLASSES`) of a sink's refusal reason."""
    text = reason if isinstance(reason, str) else ""
    head, _, rest = text.partition(": ")
    if head.startswith("invalid exchange-empty marker"):
        return "marker"
    first = (rest or head).split("; ")[0]
    for phrase, kind in _CLASS_RULES:
        if phrase in first:
            return kind
    return "other"


def connect_class(reason: str) -> str:
    """Return the `__connect.errors.exception.class.name` the sink writes for `reason`."""
    return CONNECT_CLASS_PREFIX + reason_class(reason)


@dataclass(frozen=True)
class DeadLetter:
    """One message read from a DLQ: its row, and what a redrive needs to send it again."""

    row: dict[str, Any]
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


# Bytes `printable` would change: control characters, DEL, and anything not ASCII.
_NOT_PLAIN = re.compile(rb"[^\x20-\x7e]")


def _text(value: Any, limit: int = _MAX_TEXT) -> str | None:
    if value is None:
        return None
    # What the sink writes is plain ASCII: kept as it is, without escaping it char by char.
    if type(value) is bytes and len(value) <= limit and _NOT_PLAIN.search(value) is None:
        return value.decode("ascii")
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: limit * 4]).decode("utf-8", errors="replace")
    return printable(value, limit)


def _count(value: Any) -> int | None:
    """A header's non-negative int64, or None (absent, garbage, absurd)."""
    if type(value) is bytes and 0 < len(value) <= 19 and value.isdigit():  # ASCII digits only
        number = int(value)
        return number if number < 2**63 else None
    text = _text(value, 40)
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if number < 2**63 else None


@functools.lru_cache(maxsize=1024)
def _name(value: bytes) -> str | None:
    """A topic name or the like, read once per distinct value (a DLQ repeats them)."""
    return _text(value, 255)


def _series(
    key: bytes | None, value: bytes, whole: bool
) -> tuple[str | None, str | None, int | None]:
    """(symbol, interval, open time ms) from the value's `_key`/`open_time`, else the key."""
    candidates: list[Any] = []
    named = _LEADING_KEY_RE.match(value) if key else None
    if named is not None and named[1] == key:
        pass  # `_key` first and the Kafka key's copy, as the platform writes: no parse needed
    elif whole and value[:1] == b"{" and len(value) <= _PARSE_MAX:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            candidates.append(doc.get("_key"))
    candidates.append(key[:200].decode("ascii", errors="replace") if key else None)
    for text in candidates:
        match = _KEY_RE.fullmatch(text) if isinstance(text, str) else None
        if match is not None:
            open_ms = int(match[3])
            symbol, interval = sys.intern(match[1]), sys.intern(match[2])
            return symbol, interval, open_ms if open_ms < 2**62 else None
    return None, None, None


def _row(message: Any) -> DeadLetter:
    """Read one DLQ message into a row; never raises on what the message holds."""
    raw = message.headers()
    key = message.key() if isinstance(message.key(), bytes) else None
    value = message.value() if isinstance(message.value(), bytes) else b""
    pairs = [(name, got) for name, got in raw or () if got is not None]
    row = dict(zip(DEAD_LETTER_COLUMNS, _values(message, raw, key, value), strict=True))
    return DeadLetter(row, key, value, pairs)


def _values(message: Any, raw: Any, key: bytes | None, value: bytes) -> tuple[Any, ...]:
    """The row of one DLQ message, in `DEAD_LETTER_COLUMNS` order; never raises."""
    # The first value of each header name: the last assignment wins, so assign in reverse.
    first: dict[str, Any] = dict(reversed(raw)) if raw else {}
    reason = _text(first.get("error")) or _text(first.get(CONNECT_PREFIX + "exception.message"))
    named = _text(first.get(CONNECT_PREFIX + "exception.class.name"), 100) or ""
    kind = named.removeprefix(CONNECT_CLASS_PREFIX)
    if kind not in REASON_CLASSES or not named.startswith(CONNECT_CLASS_PREFIX):
        kind = reason_class(reason or "")
    cut = _text(first.get("truncated"), 200)
    original = _CUT_RE.search(cut) if cut else None
    symbol, interval, open_ms = _series(key, value, not cut)
    try:
        kind_ts, stamp = message.timestamp()
    except (TypeError, ValueError):
        kind_ts, stamp = 0, -1
    topic = first.get("source_topic")
    return (
        reason,
        kind,
        _name(topic) if isinstance(topic, bytes) else None,
        _count(first.get("source_partition")),
        _count(first.get("source_offset")),
        _text(key, 200),
        symbol,
        interval,
        open_ms,
        int(original[1]) if original and len(original[1]) < 19 else len(value),
        bool(cut),
        message.partition(),
        message.offset(),
        stamp if kind_ts and stamp is not None and 0 <= stamp < 2**62 else None,
    )


def scan_dead_letters(
    settings: Settings, dlq: str, *, limit: int | None = None
) -> Iterator[DeadLetter]:
    """Yield the DLQ's messages from its start up to its end when asked, `limit` at most.

    A librdkafka consumer that joins no group (`kafka.clients.make_assigned_reader`) reads
    batches of `_READ_BATCH`; a DLQ that does not exist has no dead letters.
    """
    for message in _messages(settings, dlq, limit):
        yield _row(message)


def _messages(settings: Settings, dlq: str, limit: int | None) -> Iterator[Any]:
    """The DLQ's librdkafka messages from its start up to its end when asked, `limit` at most."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

    consumer = make_assigned_reader(settings, dlq)
    try:
        metadata = consumer.list_topics(dlq, timeout=10).topics.get(dlq)
        if metadata is None:
            return
        if metadata.error is not None:
            if metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return
            raise KafkaException(metadata.error)
        ends = {}
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(dlq, p), timeout=10)
            if high > low:
                ends[p] = high
        starts = dict.fromkeys(ends, OFFSET_BEGINNING)
        reader = EndReader(consumer, dlq, starts, ends, batch=_READ_BATCH, stall_s=STALL_S)
        for read, message in enumerate(reader, start=1):
            yield message
            if limit is not None and read >= limit:
                return
    except KafkaException as exc:
        raise map_confluent_error(exc, what=f"reading {dlq}", settings=settings) from None
    finally:
        consumer.close()  # no group joined: nothing for the close to wait on


def read_dead_letters(settings: Settings, dlq: str, *, limit: int | None = 100_000) -> pd.DataFrame:
    """Return the DLQ's dead letters, one row each (`DEAD_LETTER_COLUMNS`), `limit` at most."""
    check_limit(limit)
    # A tuple per row, no value kept: memory grows with the rows, not with the values.
    rows = []
    for message in _messages(settings, dlq, limit):
        key, value = message.key(), message.value()
        key = key if isinstance(key, bytes) else None
        value = value if isinstance(value, bytes) else b""
        rows.append(_values(message, message.headers(), key, value))
    return dead_letter_frame(rows)


def check_limit(limit: Any) -> None:
    """Raise `InvalidName` unless `limit` is None or a count >= 1."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidName(f"limit must be None or a whole number >= 1, got {limit!r}")


def dead_letter_frame(rows: list[dict[str, Any]] | list[tuple[Any, ...]]) -> pd.DataFrame:
    """Return rows (from `scan_dead_letters`, or tuples in column order) as the frame."""
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=list(DEAD_LETTER_COLUMNS))
    for name in _INT_COLUMNS:
        frame[name] = frame[name].astype("Int64")
    frame["truncated"] = frame["truncated"].astype(bool)
    for name in ("open_time", "dlq_timestamp"):
        frame[name] = pd.to_datetime(frame[name], unit="ms", utc=True, errors="coerce")
    return frame
