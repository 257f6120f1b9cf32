"""Browse a topic from a point in time, in kcat's `-J` envelope.

A start time becomes an offset per partition by the broker's offsets-for-times lookup (its
time index), never by a scan from offset 0: the first message of a topic holding millions
costs one lookup and one fetch. The reading stops at the end offsets known at the start, at
`until`, or after `limit` messages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from streamforge_nb.exceptions import (
    InvalidName,
    map_confluent_error,
)
from streamforge_nb.kafka.reader import EndReader, end_offsets, offsets_since, topic_numbers
from streamforge_nb.platform.names import check_kafka_topic
from streamforge_nb.settings import Settings

__all__ = ["TSTYPES", "browse", "parse_time"]

TSTYPES = {0: "none", 1: "create", 2: "logappend"}
"""kcat's names of the timestamp types (librdkafka's TIMESTAMP_* values)."""
_RELATIVE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
_STALL_S = 30.0


def parse_time(text: str, *, now: float | None = None) -> int:
    """Return a time as Unix ms: `2h` (ago; ms, s, m, h, d, w), `@<ms>` or ISO 8601 (UTC if
    naive). Raise `InvalidName` naming the accepted forms otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidName(f"a time must be text such as 2h, @1722470400000 or ISO, got {text!r}")
    value = text.strip()
    current = time.time() if now is None else now
    relative = _RELATIVE.fullmatch(value)
    if relative:
        return int((current - float(relative[1]) * _UNIT_S[relative[2]]) * 1000)
    if value.startswith("@") and value[1:].isdigit() and len(value) <= 20:
        return int(value[1:])
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidName(
            f"invalid time {text!r}: expected a duration ago (2h, 30m, 1d), @<Unix ms> or "
            "an ISO 8601 date or time (2024-08-01T00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="backslashreplace")


def envelope(message: Any) -> dict[str, Any]:
    """Return kcat's `-J` envelope of a librdkafka message (headers as name, value, ...)."""
    kind, stamp = message.timestamp()
    headers: list[str | None] = []
    for name, value in message.headers() or ():
        headers += [name, _text(value)]
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "tstype": TSTYPES.get(kind, "none"),
        "ts": stamp if kind else -1,
        "broker": -1,
        "headers": headers,
        "key": _text(message.key()),
        "payload": _text(message.value()),
    }


def browse(
    settings: Settings,
    topic: str,
    *,
    since: int | None = None,
    until: int | None = None,
    key: str | None = None,
    partition: int | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield `topic`'s messages (envelopes) from `since` (Unix ms; None: the start) to the end
    known now or `until`, with `key` (when given) in `partition` (when given)."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaException

    from streamforge_nb.kafka.clients import make_assigned_reader

    check_kafka_topic(topic)  # a typed name, checked before any request
    if limit is not None and limit < 1:
        raise InvalidName(f"limit must be at least 1, got {limit}")
    wanted = None if key is None else key.encode()
    consumer = make_assigned_reader(settings, topic)
    try:
        numbers = topic_numbers(consumer, settings, topic)
        if partition is not None:
            if partition not in numbers:
                raise InvalidName(f"topic {topic} has no partition {partition} ({numbers})")
            numbers = [partition]
        ends = end_offsets(consumer, topic, numbers)
        if since is None:
            starts = {p: OFFSET_BEGINNING for p in numbers}
        else:
            starts = offsets_since(consumer, topic, since, ends)
        reader = EndReader(consumer, topic, starts, ends, stall_s=_STALL_S)
        sent = 0
        for message in reader:
            if until is not None and message.timestamp()[1] >= until:
                reader.done(message.partition())
                continue
            if wanted is not None and message.key() != wanted:
                continue
            yield envelope(message)
            sent += 1
            if limit is not None and sent >= limit:
                return
    except KafkaException as exc:
        raise map_confluent_error(exc, what=f"reading {topic}", settings=settings) from None
    finally:
        consumer.close()  # no group joined: nothing for the close to wait on
