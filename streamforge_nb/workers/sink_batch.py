"""The sink's batch: the messages read since the last commit, taken apart for the store.

Per message only C calls (`map` over librdkafka's `Message` methods); Python looks at a
message one by one only in a batch with headers (exchange-empty markers, redriven dead
letters), which are rare.
"""

from __future__ import annotations

import time

from confluent_kafka import Message

from streamforge_nb.platform.markers import is_marker
from streamforge_nb.workers.sink_dlq import first_source

__all__ = ["Batch"]


class Batch:
    """Messages read since the last commit: values and keys, then decoded and rejected."""

    def __init__(self) -> None:
        self.keys: list[bytes | None] = []
        self.values: list[bytes] = []
        self.candles: list[Message] = []  # by value index: where a rejected one came from
        # The last message read of each partition: its offset is what the batch commits.
        # (Keyed as librdkafka says: a message read, not an error, always has its partition.)
        self.last: dict[int | None, Message] = {}
        # A redriven dead letter's first-source headers, by message index: a second refusal
        # keeps them (most messages have none).
        self.sources: dict[int, list[tuple[str, bytes]]] = {}
        # Exchange-empty markers: (key, value, (partition, offset)), apart from the candles.
        self.markers: list[tuple[bytes | None, bytes, tuple[int, int]]] = []
        self.started = time.monotonic()

    def __len__(self) -> int:
        return len(self.values) + len(self.markers)

    def add(self, messages: list[Message]) -> None:
        """Take messages as read: a few C calls each (a per-message Python loop with a
        header check was a quarter of the sink's time; `map` over the methods is half a
        comprehension's)."""
        # Later messages overwrite earlier ones: the last of each partition stays.
        self.last.update(zip(map(Message.partition, messages), messages, strict=True))
        # Headers are rare (markers, redriven dead letters): only those go one by one.
        if any(map(Message.headers, messages)):
            for message in messages:
                self._add_one(message)
            return
        self.keys += map(Message.key, messages)
        values: list[bytes | None] = list(map(Message.value, messages))
        if None in values:  # a tombstone: an empty value, refused as any bad message
            values = [v or b"" for v in values]
        self.values += values  # type: ignore[arg-type]  # no None left
        self.candles += messages

    def _add_one(self, message: Message) -> None:
        headers = message.headers()
        if is_marker(headers):
            where = (message.partition() or 0, message.offset() or 0)
            self.markers.append((message.key(), message.value() or b"", where))
            return
        source = first_source(headers)
        if source:
            self.sources[len(self.values)] = source
        self.keys.append(message.key())
        self.values.append(message.value() or b"")
        self.candles.append(message)

    def where(self, index: int) -> tuple[int, int]:
        """Return (partition, offset) of the candle message at `index`."""
        message = self.candles[index]
        return message.partition() or 0, message.offset() or 0

    def positions(self) -> list[tuple[int, int]]:
        """Return (partition, offset) of the last message read of each partition."""
        return [(p or 0, m.offset() or 0) for p, m in self.last.items()]

    def last_ms(self) -> dict[int, int]:
        """Return each partition's last message timestamp (ms), where the producer set one."""
        stamps = {p or 0: m.timestamp() for p, m in self.last.items()}
        return {p: stamp for p, (kind, stamp) in stamps.items() if kind}
