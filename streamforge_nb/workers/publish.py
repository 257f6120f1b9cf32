"""The loader's publisher: candles to a data topic in bulk, through librdkafka.

Candles arrive as columns (`platform.candle_columns`), are encoded in one call per block and
handed to librdkafka, which batches, checksums and partitions them in C. Idempotence and
`acks=all` keep a broker restart from losing or doubling a candle; `murmur2_random` puts a key
on the partition kafka-python's and Java's producers chose. librdkafka reports only failed
deliveries: the first one is raised, mapped to the library's errors, at the next call, and
`flush` raises unless the broker acknowledged every message in time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from streamforge_nb.exceptions import (
    BrokerUnavailable,
    StreamForgeError,
    kafka_error_of,
    map_confluent_error,
)
from streamforge_nb.kafka.clients import make_bulk_producer
from streamforge_nb.kafka.send import SEND_TIMEOUT_S
from streamforge_nb.platform.candle_columns import encode_columns
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    from streamforge_nb.control.worker import Worker

__all__ = ["FLUSH_TIMEOUT_S", "PRODUCER_CONFIG", "CandlePublisher", "ProgressReports"]

log = logging.getLogger(__name__)

MESSAGE_TIMEOUT_MS = 300_000
FLUSH_TIMEOUT_S = MESSAGE_TIMEOUT_MS / 1000 + 30
"""How long `flush` waits: past librdkafka's own give-up time, so a lost broker is reported
as its delivery error when it has one."""

PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    # Longer than a produce round trip on a busy broker: a part batch waiting for the one in
    # flight is not due yet (see HELD_MESSAGES).
    "linger.ms": 500,
    "batch.size": 1_000_000,
    # Bounds what waits in this process for the broker (RSS goal: 1 GB for a year's load).
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 256 * 1024,
    "message.timeout.ms": MESSAGE_TIMEOUT_MS,
    "delivery.report.only.error": True,
    # A topic is the loader's to create, with the platform's partitions and retention: the
    # producer's metadata requests (it may connect before the topic exists) never create one.
    "allow.auto.create.topics": False,
}


HELD_MESSAGES = 4_000
"""Messages librdkafka may hold (queued or in flight) before `encoded` hands it more: about
two 1 MB batches of candles, enough to keep one request in flight and the next one full.

An idempotent librdkafka producer sends one request at a time per partition here, and while
it waits for the broker with a large queue behind it, its broker thread polls its sockets
without a timeout (strace: tens of thousands of `poll(..., 0)` a second). On a busy broker
that spin was most of a loader's CPU (issue 20: a 5-symbol batch, 3 s of 5 per loader, py-spy
and /proc per thread); with at most this many held it sleeps until the answer comes, and a
lone loader is as fast (a producer benchmark: 300k candles, same wall, a third of the CPU)."""
HANDED_AT_ONCE = 2_000
"""Messages `encoded` hands to librdkafka between two looks at what it holds."""
_ROOM_POLL_S = 0.001
_ROOM_POLL_MAX_S = 0.016


class CandlePublisher:
    """Publish candle tables and exchange-empty markers to one data topic."""

    def __init__(self, settings: Settings, topic: str, **config: Any) -> None:
        self.settings = settings
        self.topic = topic
        self._what = f"publishing to {topic}"
        self._failed: list[Any] = []
        self._fatal: list[Any] = []
        self._fatal_logged: list[str] = []
        self._candles = 0
        options = {
            **PRODUCER_CONFIG,
            "on_delivery": self._delivered,
            "error_cb": self._reported,
            "logger": _FatalNoted(
                logging.getLogger("streamforge_nb.librdkafka"), self._fatal_logged
            ),
            **config,
        }
        self._producer: Any = make_bulk_producer(settings, topic, **options)

    def candles(self, symbol: str, interval: str, table: pa.Table) -> int:
        """Queue the candles of `table` (`CANDLE_SCHEMA`) for sending; return how many."""
        return self.encoded(*encode_columns(symbol, interval, table))

    def encoded(self, keys: pa.Array, values: pa.Array) -> int:
        """Queue candles `encode_columns` encoded (keys, values) for sending; return how many."""
        produce, topic = self._producer.produce, self.topic
        # As bytes (a view of the same buffers): strings would be decoded from UTF-8 one by
        # one here for `produce` to encode again (15% of the conversion, measured).
        all_keys = keys.view(pa.binary()).to_pylist()
        all_values = values.view(pa.binary()).to_pylist()
        with self._mapped():
            for start in range(0, len(all_values), HANDED_AT_ONCE):
                self._wait_for_room()
                end = start + HANDED_AT_ONCE
                for key, value in zip(all_keys[start:end], all_values[start:end], strict=True):
                    try:
                        produce(topic, value, key)
                    except BufferError:  # the local queue is full: let the broker catch up
                        self._retry(key, value, None)
            self._producer.poll(0)
        self._raise_failed()
        self._candles += len(values)
        return len(values)

    @property
    def acknowledged(self) -> int:
        """Candles the broker acknowledged so far (at least: a queued marker counts too).

        Read from librdkafka's count of messages still waiting: a progress report needs no
        flush, which would drain the pipeline each time (20% of a load's time, measured).
        """
        with self._mapped():
            self._producer.poll(0)
        self._raise_failed()
        return max(0, self._candles - len(self._producer))

    def message(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Queue one message with `headers` (an exchange-empty marker) for sending."""
        with self._mapped():
            try:
                self._producer.produce(self.topic, value, key, headers=headers)
            except BufferError:
                self._retry(key, value, headers)

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Wait until the broker acknowledged every queued message; raise if it did not."""
        with self._mapped():
            left = self._producer.flush(timeout)
        self._raise_failed()
        if left:
            raise BrokerUnavailable(
                f"{self._what}: the broker at {self.settings.kafka_bootstrap_servers} did not "
                f"acknowledge {left} messages within {timeout:g} s"
            )

    def _wait_for_room(self) -> None:
        """Wait until librdkafka holds at most `HELD_MESSAGES` (see there); raise as `_retry`."""
        if len(self._producer) <= HELD_MESSAGES:
            return
        started, pause = time.monotonic(), _ROOM_POLL_S
        while len(self._producer) > HELD_MESSAGES:
            self._producer.poll(pause)  # serves failed deliveries too
            self._raise_failed()
            # Looked at less often the longer the broker takes: each look wakes this thread
            # (a busy broker answers in tenths of a second; a quiet one in milliseconds).
            pause = min(pause * 2, _ROOM_POLL_MAX_S)
            if time.monotonic() - started > FLUSH_TIMEOUT_S:
                self.flush(0)  # raises: the broker took nothing for that long

    def _retry(self, key: Any, value: Any, headers: list[tuple[str, bytes]] | None) -> None:
        started = time.monotonic()
        while True:
            self._producer.poll(0.05)
            self._raise_failed()
            try:
                self._producer.produce(self.topic, value, key, headers=headers)
                return
            except BufferError:
                if time.monotonic() - started > FLUSH_TIMEOUT_S:
                    self.flush(0)  # raises: the broker took nothing for that long

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None and not self._failed:
            self._failed.append(error)

    def _reported(self, error: Any) -> None:
        # Only recorded: a callback must not poll, flush or raise (the binding then raises
        # SystemError from the next call).
        if error.fatal() and not self._fatal:
            self._fatal.append(error)

    def _fatal_cause(self, exc: Any) -> Any:
        """Return the error that made librdkafka's `_FATAL` `exc`, or `exc` if none is known.

        librdkafka tells the cause (an idempotent producer without the cluster ACL) only in
        `poll`, to `error_cb` or raised from it: when produce or flush fails first, one poll
        here, outside any callback, delivers it (at once: librdkafka queued it before it
        failed the call, or is about to).
        """
        from confluent_kafka import KafkaError

        error = kafka_error_of(exc)
        if error is None or error.code() != KafkaError._FATAL:
            if error is not None and error.fatal():
                self._reported(error)  # told by a poll that raised it: the cause for later
            return exc
        told = self._told_fatal()
        return exc if told is None else told

    def _told_fatal(self) -> Any:
        """Return the fatal error librdkafka reported (polling once for it), or None."""
        from confluent_kafka import KafkaError, KafkaException

        if not self._fatal:
            try:
                self._producer.poll(1)
            except (KafkaException, SystemError) as raised:
                # confluent-kafka 2.16 raises the cause here (or a SystemError caused by it)
                told = raised if isinstance(raised, KafkaException) else raised.__cause__
                if isinstance(told, KafkaException) and isinstance(told.args[0], KafkaError):
                    self._reported(told.args[0])
        if self._fatal:
            return KafkaException(self._fatal[0])
        if self._fatal_logged:  # logged, never told to error_cb (see `_FatalNoted`)
            return KafkaException(KafkaError(KafkaError._FATAL, self._fatal_logged[0], fatal=True))
        return None

    def _raise_failed(self) -> None:
        if self._failed:
            from confluent_kafka import KafkaException

            with self._mapped():
                raise KafkaException(self._failed[0])

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """Raise librdkafka's errors as the library's, naming the topic and the user."""
        from confluent_kafka import KafkaException

        try:
            yield
        except KafkaException as exc:
            cause = self._fatal_cause(exc)
            raise map_confluent_error(cause, what=self._what, settings=self.settings) from None
        except SystemError as exc:
            # A fatal error (the user may not write idempotently: no cluster ACL) is raised,
            # then the binding runs a delivery callback with it still set (confluent-kafka
            # 2.16): the cause is the real error. A fatal error during flush's chunked wait
            # has also ended it with no exception at all ("returned NULL without setting an
            # exception", seen twice in the suite): then the cause is the one error_cb got,
            # or the one librdkafka logged (`_FatalNoted`).
            if isinstance(exc.__cause__, KafkaException):
                cause = self._fatal_cause(exc.__cause__)
            elif (cause := self._told_fatal()) is None:
                raise
            raise map_confluent_error(cause, what=self._what, settings=self.settings) from None


class _FatalNoted:
    """A producer's librdkafka logger that notes the fatal error librdkafka logs, then logs
    every line as the logger would. confluent-kafka 2.16 has ended a flush after a fatal
    error (an idempotent producer refused its id: no cluster ACL) with a SystemError and no
    exception, `error_cb` never told of it and a poll after it telling nothing either (one
    suite run; in another `error_cb` had been told): the log line is then the only word of
    the refusal."""

    def __init__(self, logger: logging.Logger, noted: list[str]) -> None:
        self._logger, self._noted = logger, noted

    def log(self, level: int, msg: str, *args: Any) -> None:
        # As the binding calls it: log(level, "%s [%s] %s", facility, client, text).
        if len(args) == 3 and args[0] == "FATAL" and not self._noted:
            text = str(args[2])
            self._noted.append(text.split("]: ", 1)[-1])  # without "[thrd:main]: "
        self._logger.log(level, msg, *args, stacklevel=2)  # at the call that served it


CLOSE_TIMEOUT_S = SEND_TIMEOUT_S * 2
"""How long `ProgressReports.close` waits for a report being sent."""


class ProgressReports:
    """Send a worker's `loading` reports from a thread of their own, newest count first.

    Publishing never waits for the broker to acknowledge a report: each one is a send that
    waits for its ack, seconds on a loaded broker (issue 20: five loaders and their sinks on
    one broker). A count offered while one is being sent replaces any older one waiting.
    `close` sends what is waiting, then returns; reports stay best effort, as in `Worker`.
    """

    def __init__(self, worker: Worker, topic: str) -> None:
        self._worker, self._topic = worker, topic
        self._waiting: int | None = None
        self._closed = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._send, name="loader-progress", daemon=True)
        self._thread.start()

    def offer(self, published: int) -> None:
        """Report `published` candles (acknowledged by the broker) as soon as possible."""
        with self._ready:
            self._waiting = published
            self._ready.notify()

    def close(self) -> None:
        """Send the report still waiting, if any; then stop (waiting `CLOSE_TIMEOUT_S` at most)."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        # A report is one send that gives up after SEND_TIMEOUT_S: the thread ends well within
        # this bound unless something below the send hangs, and then the run's last event and
        # exit must not wait for a progress report (the thread is a daemon).
        self._thread.join(CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("a progress report to %s was still being sent after %g s; not waited for",
                        self._topic, CLOSE_TIMEOUT_S)  # fmt: skip

    def _send(self) -> None:
        while True:
            with self._ready:
                while self._waiting is None and not self._closed:
                    self._ready.wait()
                published, self._waiting = self._waiting, None
            if published is None:
                return
            try:
                self._worker.loading(published, f"Published {published} candles to {self._topic}")
            except StreamForgeError as exc:  # Worker.loading keeps broker errors to itself
                log.warning("progress report not sent: %s", exc)
