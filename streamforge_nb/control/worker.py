"""The control loop every worker shares: commands in, telemetry out.

A `Worker` listens on `queue-control` in a background thread for commands addressed to its
queue id (and its target, when a command names one). It reads only the live end of its
queue's partition (murmur2 of the queue id over the topic's real partition count): commands
sent before it started, and other queues' commands, cost it nothing. It answers `ping` with
`pong` at once, from that thread, so a busy worker still answers; it turns `stop` into a flag
the work checks between steps. Its `run` wraps the work: `started` first, then `finished`,
`interrupted` on a stop, or `error` with the reason before the exception propagates (and the
process exits non-zero). Every event it sends is counted in its Prometheus metrics
(`control.metrics`), served when `$STREAMFORGE_METRICS_PORT` asks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from streamforge_nb.control.metrics import WorkerMetrics, metrics_linger
from streamforge_nb.control.metrics import metrics_port as env_metrics_port
from streamforge_nb.control.telemetry import MalformedCounter
from streamforge_nb.exceptions import (
    BrokerError,
    BrokerUnavailable,
    MessageError,
    StopRequested,
)
from streamforge_nb.kafka.clients import make_producer
from streamforge_nb.kafka.send import CommandSender, live_reader, send_checked
from streamforge_nb.platform.contract import (
    BaseEvent,
    Error,
    Finished,
    Interrupted,
    Loading,
    PingCommand,
    Pong,
    Started,
    StopCommand,
    clip_message,
    decode_command,
)
from streamforge_nb.retry import ask_again
from streamforge_nb.settings import Settings

__all__ = ["Worker"]

log = logging.getLogger(__name__)

# How long a control poll may block; bounds how late the control thread ends after `close()`.
_POLL_MS = 100
_MALFORMED_COMMANDS = MalformedCounter(logger=log)
TERMINAL_SEND_S = 120.0
"""How long a worker keeps trying to send its last event to a broker that does not answer."""


class Worker:
    """A worker's link to the platform: telemetry sender and control listener."""

    def __init__(
        self,
        settings: Settings,
        *,
        queue_id: str,
        producer_id: str,
        target: str,
        symbol: str | None = None,
        type: str | None = None,
        on_ping: Callable[[PingCommand], None] | None = None,
        on_sent: Callable[[BaseEvent], None] | None = None,
        metrics_port: int | None = None,
    ) -> None:
        """`metrics_port` None: `$STREAMFORGE_METRICS_PORT` (unset: not served); 0: any free
        port (`started` names it)."""
        # The environment is read and the port bound first: a bad value or a taken port is
        # told before anything reaches the broker.
        port = env_metrics_port() if metrics_port is None else metrics_port
        self._metrics_linger = metrics_linger()
        self.metrics = WorkerMetrics(queue_id, target)
        self.metrics.serve(port)
        self.settings = settings
        self.queue_id = queue_id
        self.producer_id = producer_id
        self.target = target
        self.symbol = symbol
        self.type = type
        self.on_ping = on_ping
        self.on_sent = on_sent
        self.records_written = 0
        # A sink's refusals and the oddities it stored: told in every event once non-zero.
        self.dead_letters = 0
        self.anomalies = 0
        # What the `finished` event says (e.g. a sink's "Saved N records, K rejected ...").
        self.summary: Callable[[], str] | None = None
        self.stop_event = threading.Event()
        self._closed = threading.Event()
        # Held while a pong is handed to its sender, and by `close()` to mark the worker
        # closed: a pong is then either handed over before the sender's flush, or not at all.
        self._answering = threading.Lock()
        try:
            self._producer = make_producer(settings, linger_ms=0, acks=1,
                                           enable_idempotence=False)  # fmt: skip
            # The ping path on librdkafka, a pong about a millisecond sooner each way than
            # through kafka-python (bench/ping.py); telemetry stays on `_producer`.
            self._pongs = CommandSender(settings, settings.queue_events_topic)
            self._consumer = self._control_consumer()
        except BaseException:
            self.metrics.close()
            raise
        self._thread = threading.Thread(
            target=self._listen, name=f"control-{producer_id}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"Worker(queue_id={self.queue_id!r}, producer={self.producer_id!r})"

    # -- telemetry ---------------------------------------------------------------------------
    def send(self, event: BaseEvent) -> None:
        """Send a telemetry event on queue-events and wait until the broker has it."""
        # Counted first: the work it reports was done even if the broker is away.
        self.metrics.sent(event)
        send_checked(self._producer, self.settings, self.settings.queue_events_topic, event)
        log.debug("sent %s", event.status, extra={"event": event.status})
        if self.on_sent is not None:
            self.on_sent(event)

    def _fields(self, message: str | None) -> dict[str, Any]:
        return {
            "queue_id": self.queue_id,
            "producer": self.producer_id,
            "symbol": self.symbol,
            "type": self.type,
            "message": clip_message(message),
            "records_written": self.records_written,
            **({"dead_letters": self.dead_letters} if self.dead_letters else {}),
            **({"anomalies": self.anomalies} if self.anomalies else {}),
        }

    def started(self, message: str | None = None) -> None:
        # Where the metrics are (an extra field: the contract keeps what it does not know), so
        # a scraper finds a port the system picked.
        address = self.metrics.address
        if address is not None:
            log.info("metrics at http://%s/metrics", address)
        extra: dict[str, Any] = {"metrics_address": address} if address is not None else {}
        # Ridden out like the last event: a worker starting while the broker restarts would
        # otherwise fail a run that has not begun (seen: a sink, "did not answer" after 10 s).
        self._send_terminal(Started(**self._fields(message), **extra))

    def loading(self, records_written: int, message: str | None = None, **fields: Any) -> None:
        """Report progress; best effort: a broker outage must not stop the work itself."""
        self.records_written = records_written
        text = message or f"Saved {records_written} records"
        try:
            self.send(Loading(**self._fields(text), **fields))
        except BrokerError as exc:
            log.warning("progress report not sent: %s", exc)

    def finished(self, message: str | None = None) -> None:
        self._send_terminal(Finished(**self._fields(message)))

    def interrupted(self, message: str | None = "stopped by a stop command") -> None:
        self._send_terminal(Interrupted(**self._fields(message)))

    def error(self, reason: str, *, error_type: str | None = None, cell: int | None = None) -> None:
        self._send_terminal(Error(**self._fields(reason), error_type=error_type, cell=cell))

    def _send_terminal(self, event: BaseEvent) -> None:
        """Send the run's first or last event, riding out a broker that does not answer for up
        to `TERMINAL_SEND_S`: without these the queue's status can only come from the Job's
        exit (a refusal, such as a missing ACL, raises at once)."""
        ask_again(
            lambda: self.send(event),
            passing=(BrokerUnavailable,),
            seconds=TERMINAL_SEND_S,
            what=f"the {event.status} event",
            log=log,
        )

    # -- control -----------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        return self.stop_event.is_set()

    def check_stop(self) -> None:
        """Raise `StopRequested` if a stop command arrived (call between units of work)."""
        if self.stop_event.is_set():
            raise StopRequested(f"queue {self.queue_id} was asked to stop")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early and raising `StopRequested` when a stop arrives."""
        if self.stop_event.wait(seconds):
            self.check_stop()

    def run(self, work: Callable[[Worker], Any]) -> Any:
        """Run `work(self)` between `started` and `finished` / `interrupted` / `error`."""
        self.started()
        try:
            result = work(self)
        except StopRequested:
            self.interrupted()
            return None
        except KeyboardInterrupt:
            # The kernel was interrupted (Jupyter's stop button, papermill's timeout): not the
            # worker's fault; whoever interrupted it says why (the Job runner does).
            self.interrupted("KeyboardInterrupt: the kernel was interrupted")
            raise
        except BaseException as exc:
            try:
                self.error(f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
            except BrokerError as unsent:  # the worker's own reason is what the caller needs
                log.error("could not report %s: %s", type(exc).__name__, unsent)
            raise
        if self.stop_requested:
            self.interrupted()
        else:
            self.finished(self.summary() if self.summary is not None else None)
        return result

    def _control_consumer(self) -> Any:
        # Only commands sent from now on concern this run, and only its queue's partition holds
        # them. The position is resolved here: a command sent once this returns is seen.
        consumer, _ = live_reader(
            self.settings, self.settings.queue_control_topic, partition_of=self.queue_id
        )
        return consumer

    def _listen(self) -> None:
        # The thread owns its consumer and closes it once told to end: `close()` then need not
        # wait out a poll (up to `_POLL_MS`, ~0.1 s of every worker's exit) for commands no one
        # would act on.
        try:
            while not self._closed.is_set():
                try:
                    message = self._consumer.poll(_POLL_MS / 1000)
                except Exception:  # the broker went away
                    if self._closed.is_set():
                        return
                    log.exception("control poll failed; retrying")
                    self._closed.wait(0.5)
                    continue
                if message is not None and message.error() is None:
                    self._handle(message.value())
        finally:
            self._consumer.close()

    def _handle(self, raw: bytes | None) -> None:
        if raw is None or self.queue_id.encode() not in raw:
            return  # another queue's command (or garbage): not ours to parse
        try:
            command = decode_command(raw)
        except MessageError as exc:
            _MALFORMED_COMMANDS.note(exc)
            return
        if command.queue_id != self.queue_id:
            return
        if command.target is not None and command.target != self.target:
            return
        if isinstance(command, PingCommand):
            self._answer(command)
        elif isinstance(command, StopCommand):
            log.info("stop requested", extra={"queue_id": self.queue_id})
            self.stop_event.set()

    def _answer(self, ping: PingCommand) -> None:
        with self._answering:
            if self._closed.is_set():
                return  # the pong sender is closed or closing: the worker has ended
            pong = Pong.answer(
                ping,
                self.producer_id,
                **_optional(self.symbol, self.type),
                records_written=self.records_written,
            )
            self.metrics.sent(pong)
            try:
                # No wait for the ack: the pong is on its way, and the sender measures the trip.
                self._pongs.send_nowait(pong)
            except Exception:
                log.exception("could not send pong")
                return
        if self.on_sent is not None:
            self.on_sent(pong)
        if self.on_ping is not None:
            self.on_ping(ping)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop listening and release the Kafka clients (sent telemetry is flushed first).

        The control thread ends and closes its consumer on its own, within one poll.
        """
        with self._answering:  # a pong being handed over goes out with the flush below
            if self._closed.is_set():
                return
            self._closed.set()
        self._pongs.close(timeout=10)
        self._producer.flush(timeout=10)
        self._producer.close(timeout=10)
        self.metrics.close(self._metrics_linger)

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _optional(symbol: str | None, type_: str | None) -> dict[str, str]:
    return {k: v for k, v in (("symbol", symbol), ("type", type_)) if v is not None}
