"""The sink's dead letters: what a refused message carries to `<topic>-dlq`.

A dead letter keeps the message's key and value (cut to a size any broker takes) and says in
its headers why it was refused and where it was read, in the platform's names and in Kafka
Connect's (`control.dlq.CONNECT_HEADERS`), so tools that read Connect's DLQs read ours.
"""

from __future__ import annotations

from typing import Any

from streamforge_nb.control.dlq import CONNECT_HEADERS, connect_class

__all__ = [
    "DLQ_MAX_KEY",
    "DLQ_MAX_VALUE",
    "MAX_REASON_CHARS",
    "DeadLetter",
    "dlq_copy",
    "dlq_headers",
    "first_source",
]

DeadLetter = tuple[bytes | None, bytes, str, tuple[int, int], list[tuple[str, bytes]]]
"""(key, value, reason, (partition, offset), first-source headers it came with)."""
MAX_REASON_CHARS = 2000
_SOURCE_HEADERS = ("source_topic", "source_partition", "source_offset", "truncated")


def first_source(headers: Any) -> list[tuple[str, bytes]]:
    """Return the source headers a redriven dead letter carries (librdkafka's pairs)."""
    if not headers:
        return []
    pairs = headers.items() if isinstance(headers, dict) else headers
    found = []
    for name, value in pairs:
        if name in _SOURCE_HEADERS and isinstance(value, bytes) and len(value) <= 1024:
            found.append((name, value))
    return found


def dlq_headers(
    reason: str, topic: str, partition: int, offset: int, source: list[tuple[str, bytes]]
) -> list[tuple[str, bytes]]:
    """Return a dead letter's headers: the reason, and where the message first came from.

    A message redriven from a DLQ and refused again keeps its first source (and its
    `truncated` note): that is where the data was lost. Where it was refused this time
    goes in `refused_topic` / `refused_partition` / `refused_offset`, and in Kafka Connect's
    `__connect.errors.*` headers (`control.dlq.CONNECT_HEADERS`), with the reason's class.
    """
    here = [
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]
    reason = reason[:MAX_REASON_CHARS]
    headers = [("error", reason.encode())]
    if any(name == "source_topic" for name, _ in source):
        headers += source
        headers += [(name.replace("source_", "refused_"), value) for name, value in here]
    else:
        headers += here
    # Kafka Connect's names, for tools that read Connect's DLQs: like Connect's, they say
    # where this refusal happened (the message this sink read), not where it first came from.
    topic_h, partition_h, offset_h, class_h, message_h = CONNECT_HEADERS
    return [
        *headers,
        (topic_h, topic.encode()),
        (partition_h, str(partition).encode()),
        (offset_h, str(offset).encode()),
        (class_h, connect_class(reason).encode()),
        (message_h, reason.encode()),
    ]


DLQ_MAX_VALUE = 256 * 1024
"""Bytes of a bad message the DLQ keeps; a longer one is cut, with a `truncated` header."""
DLQ_MAX_KEY = 1024


def dlq_copy(key: bytes | None, value: bytes) -> tuple[bytes | None, bytes, str]:
    """Return (key, value, note) to send to the DLQ: cut to a size any broker takes."""
    notes = []
    if key is not None and len(key) > DLQ_MAX_KEY:
        notes.append(f"key cut from {len(key)} to {DLQ_MAX_KEY} bytes")
        key = key[:DLQ_MAX_KEY]
    if len(value) > DLQ_MAX_VALUE:
        notes.append(f"value cut from {len(value)} to {DLQ_MAX_VALUE} bytes")
        value = value[:DLQ_MAX_VALUE]
    return key, value, "; ".join(notes)
