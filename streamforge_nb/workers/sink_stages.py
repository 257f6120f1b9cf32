"""The sink's three stages: read a batch, check the one before, store the one before that.

`SinkStages` is the loop of `workers.sink.Sink`: the consumer is read by the calling thread
only, two `sink-check` threads decode and check a batch each (`platform.checks`), a
`sink-store` thread writes them, in order, to the CandleStore and dead-letters their rejects,
and offsets are committed in order, only once a batch is stored. What the sink is (its
topics, group, store, telemetry) stays in `workers.sink`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from streamforge_nb.exceptions import MessageError, StoreError, kafka_errors
from streamforge_nb.kafka.clients import make_producer
from streamforge_nb.platform.checks import candle_anomalies, decode_and_check
from streamforge_nb.platform.markers import decode_exchange_empty
from streamforge_nb.workers.sink_batch import Batch
from streamforge_nb.workers.sink_dlq import MAX_REASON_CHARS, DeadLetter, dlq_copy, dlq_headers

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from streamforge_nb.control.worker import Worker
    from streamforge_nb.store.candles import CandleStore
    from streamforge_nb.workers.group import GroupReader
    from streamforge_nb.workers.sink import SinkOptions

__all__ = ["SinkStages"]

log = logging.getLogger("streamforge_nb.sink")


class SinkStages:
    """Read, check, store and commit batches until the topic's end; `Sink` says where."""

    worker: Worker
    options: SinkOptions
    store: CandleStore
    group: GroupReader
    topic: str
    dlq: str
    symbol: str | None
    interval: str | None
    span: tuple[int, int] | None
    dlq_producer: KafkaProducer | None
    rejected: int
    exchange_empty: int
    anomalies: dict[str, int]
    last_ms: dict[int, int]
    first_read: float | None
    last_stored: float | None
    stage_cpu: dict[str, float]
    """CPU seconds of each stage's own threads ("read", "check", "store"): what the stages
    cost apart from waiting, whatever else the machine runs."""
    stage_wall: dict[str, float]
    """Seconds each stage was at work (the store's wait for the check left out; the check's
    summed over its `_CHECKERS` threads): the stage whose time is nearest the loop's (the
    check's: half of it) is its wall."""
    stage_queued: dict[str, float]
    """Seconds each stage's thread waited for a core while at work (Linux; 0 elsewhere): at
    work = CPU + this + asleep (the GIL, the broker's fetches, the disk)."""

    def _loader_done(self) -> bool:
        """Tell whether the loader has finished (the end may then be asked)."""
        raise NotImplementedError

    def _cleanup(self) -> None:
        """Delete the data topic once its end is committed (`cleanup`)."""
        raise NotImplementedError

    def _progress(self) -> str:
        """Say what is stored so far, for the progress report."""
        raise NotImplementedError

    def _run(self) -> int:
        """Read the next batch while two threads check the last two and another stores the
        one before; commit each, in order, once stored.

        The consumer is used by this thread only. Three stages on two cores: reading
        (librdkafka's messages made into Python objects), checking (Arrow's decoding and
        checks) and storing (Parquet writes and fsyncs) each wait on something else at
        times (the GIL, the disk), and the stages' work fills those waits. The check is
        the dearest (1.3-1.5 us of CPU a candle, 2 us at work) and Arrow runs it without
        the GIL, so two batches are checked at once; a batch is stored only after the one
        before it, whichever check ends first.
        """
        last_report = time.monotonic()
        end: dict[int, int] | None = None
        in_flight: deque[Future[tuple[Batch, int]]] = deque()
        with (
            ThreadPoolExecutor(_CHECKERS, thread_name_prefix="sink-check") as checking,
            ThreadPoolExecutor(1, thread_name_prefix="sink-store") as storing,
        ):
            try:
                while True:
                    batch = self._read_batch(waiting=bool(in_flight))
                    # Commit what is stored, oldest first; wait only for a full pipeline. When
                    # nothing new came, the next read looks again shortly (`_CAUGHT_UP_S`):
                    # the last batches commit as soon as they are stored, and the end is
                    # asked only once everything read is committed.
                    while in_flight and (in_flight[0].done() or len(in_flight) >= _IN_FLIGHT):
                        self._commit(*in_flight.popleft().result())  # raises what the store did
                        last_report = self._report(last_report)
                    if len(batch):
                        checked = checking.submit(self._check, batch)
                        in_flight.append(storing.submit(self._store, batch, checked))
                    if self.worker.stop_requested and in_flight:
                        while in_flight:  # stop with every batch read committed
                            self._commit(*in_flight.popleft().result())
                            last_report = self._report(last_report)
                    self.worker.check_stop()
                    if in_flight:
                        continue  # the end is asked once everything read is committed
                    if end is None and self._loader_done():
                        end = self.group.end_offsets()
                    if end is not None and self.group.reached(end):
                        if self.options.cleanup:
                            self._cleanup()
                        return self.worker.records_written
            except BaseException:
                # The batches after a failure are never committed; those not begun are not
                # stored either (a restart reads them again from the commits).
                for future in in_flight:
                    future.cancel()
                raise

    def _report(self, last_report: float) -> float:
        """Report progress after a batch was committed, at most every `report_every` s;
        return when the last report went. After the commit: `loading` never comes before
        the store has something, and each committed batch may have its own report."""
        if time.monotonic() - last_report < self.options.report_every:
            return last_report
        lag = self.group.lag(self.last_ms, time.time())
        # The lag sample rides on the progress report: its history costs no request.
        extra = {"group": self.group.group_id, "lag": lag} if lag else {}
        self.worker.loading(self.worker.records_written, self._progress(), **extra)
        return time.monotonic()

    def _read_batch(self, waiting: bool) -> Batch:
        """Read the next batch; return it early once caught up: with something read, or
        with batches in flight (`waiting`), whose commits must not wait out the batch's
        window for messages that are not coming (a second at the end of every topic), nor
        a whole poll (0.1 s): with nothing read yet, they are looked at every `_CAUGHT_UP_S`."""
        since = _now()
        batch = Batch()
        deadline = batch.started + self.options.batch_seconds
        while len(batch) < self.options.batch_size and time.monotonic() < deadline:
            if self.worker.stop_requested:
                break
            # In steps: librdkafka's messages become Python objects with the GIL held for the
            # whole call, and the other stages need it between their Arrow calls.
            count = min(self.options.batch_size - len(batch), _READ_STEP)
            timeout = _CAUGHT_UP_S if waiting and not len(batch) else 0.1
            messages = self.group.read(count, timeout=timeout)
            if messages and self.first_read is None:
                self.first_read = time.monotonic()
            if not messages and (len(batch) or waiting):
                break  # caught up: store what we have, or commit what is stored, not wait
            batch.add(messages)
        self._took("read", since)
        return batch

    def _check(self, batch: Batch) -> tuple[Any, list[tuple[int, str]]]:
        """Decode and check the batch's candles: (table of the sane ones, [(index, why)])."""
        since = _now()
        # Never raises on any message: each one is either in the table or rejected.
        checked = decode_and_check(
            batch.values, batch.keys, self.symbol, self.interval, span=self.span
        )  # fmt: skip
        self._took("check", since)
        return checked

    def _store(
        self, batch: Batch, checked: Future[tuple[Any, list[tuple[int, str]]]]
    ) -> tuple[Batch, int]:
        """Store the checked batch and dead-letter its rejects: (the batch, candles stored)."""
        candles, rejected = checked.result()  # raises what the check raised
        since = _now()
        stored, rejected = self._store_candles(batch, candles, rejected)
        dead: list[DeadLetter] = [
            (batch.keys[i], batch.values[i], why, batch.where(i), batch.sources.get(i, []))
            for i, why in rejected
        ]
        dead += [(k, v, why, at, []) for k, v, why, at in self._store_markers(batch.markers)]
        if dead:
            self._dead_letter(dead)
        self._took("store", since)
        return batch, stored

    def _took(self, stage: str, since: tuple[float, float, float]) -> None:
        """Count the thread CPU, wall and core-wait seconds since `since` (`_now()`) to
        `stage`."""
        cpu, wall, queued = since
        cpu, wall, queued = time.thread_time() - cpu, time.perf_counter() - wall, _queued() - queued
        with _TOOK:  # two check threads add to the same figures
            self.stage_cpu[stage] += cpu
            self.stage_wall[stage] += wall
            self.stage_queued[stage] += queued

    def _commit(self, batch: Batch, stored: int) -> None:
        # Only now is the batch safe: the store has it and the DLQ has the rejects.
        self.group.stored(batch.positions())
        self.last_stored = time.monotonic()
        self.worker.records_written += stored
        self.last_ms.update(batch.last_ms())

    def _store_candles(
        self, batch: Batch, candles: Any, rejected: list[tuple[int, str]]
    ) -> tuple[int, list[tuple[int, str]]]:
        """Store the checked candles: (rows stored, [(index, why)] to dead-letter)."""
        if not candles.num_rows:
            return 0, rejected
        stored, refused = self._write(candles)
        self._note_anomalies(candles, refused)
        if refused:
            taken = {i for i, _ in rejected}
            rows = [i for i in range(len(batch.values)) if i not in taken]
            rejected = sorted(rejected + [(rows[row], why) for row, why in refused])
        return stored, rejected

    def _note_anomalies(self, candles: Any, refused: list[tuple[int, str]]) -> None:
        """Count and log what real exchanges serve oddly among the candles just stored."""
        if refused:  # rare: the store refused some; count only what it took
            keep = [True] * candles.num_rows
            for row, _ in refused:
                keep[row] = False
            from streamforge_nb.platform.arrow_values import from_numpy

            candles = candles.filter(from_numpy(keep))
        found, odd = candle_anomalies(candles, self.interval)
        if not odd:
            return
        for kind, count in found.items():
            self.anomalies[kind] = self.anomalies.get(kind, 0) + count
        self.worker.anomalies += odd
        # One line a batch, not one a candle: a shifted month is 20,000 of them.
        log.info(
            "stored %s with anomalies as the exchange sent them (%s)",
            _plural(odd, "candle"),
            ", ".join(f"{kind}: {count}" for kind, count in found.items()),
        )

    def _store_markers(
        self, markers: list[tuple[bytes | None, bytes, tuple[int, int]]]
    ) -> list[tuple[bytes | None, bytes, str, tuple[int, int]]]:
        """Record valid markers' windows; return the malformed ones for the DLQ."""
        windows: dict[tuple[str, str], list[tuple[int, int]]] = {}
        dead = []
        for key, value, where in markers:
            try:
                symbol, interval, start, end = decode_exchange_empty(
                    value, key, self.symbol, self.interval
                )
            except MessageError as exc:
                dead.append((key, value, str(exc)[:MAX_REASON_CHARS], where))
                continue
            except Exception as exc:  # a bug in the check must not stall the sink either
                why = f"invalid exchange-empty marker: cannot be checked ({exc!r})"
                dead.append((key, value, why[:MAX_REASON_CHARS], where))
                continue
            windows.setdefault((symbol, interval), []).append((start, end))
        for (symbol, interval), spans in windows.items():
            # A StoreError is an outage, as for candles: the sink stops, nothing committed.
            self.store.write_exchange_empty(symbol, interval, spans)
            self.exchange_empty += len(spans)
        return dead

    def _write(self, table: Any) -> tuple[int, list[tuple[int, str]]]:
        """Store `table`: (rows stored, [(row, why)] the store refused), halving around refusals.

        A `StoreError` (disk full, ArangoDB down or refusing) is an outage: it propagates, the
        sink stops with an `error` event and the batch's offsets stay uncommitted. Any other
        error is the data's: the candles causing it are cornered and go to the DLQ.
        """
        try:
            return self.store.write_table(table), []
        except StoreError:
            raise
        except Exception as exc:
            if table.num_rows <= 1:
                why = f"invalid candle: the store refused it ({type(exc).__name__}: {exc})"
                return 0, [(0, why[:MAX_REASON_CHARS])]
        middle = table.num_rows // 2
        first, first_refused = self._write(table.slice(0, middle))
        second, second_refused = self._write(table.slice(middle))
        return first + second, first_refused + [(middle + r, w) for r, w in second_refused]

    def _dead_letter(self, rejected: list[DeadLetter]) -> None:
        if self.dlq_producer is None:
            self.dlq_producer = make_producer(self.worker.settings, acks="all")
        producer = self.dlq_producer
        sent = []
        for key, value, reason, (partition, offset), source in rejected:
            log.warning(
                "bad message at %s [%d] offset %d sent to %s: %s",
                self.topic, partition, offset, self.dlq, reason,
            )  # fmt: skip
            headers = dlq_headers(reason, self.topic, partition, offset, source)
            key, value, cut = dlq_copy(key, value)
            if cut:
                headers.append(("truncated", cut.encode()))
            with kafka_errors(f"writing {self.dlq}", self.worker.settings.kafka_bootstrap_servers):
                sent.append(producer.send(self.dlq, key=key, value=value, headers=headers))
        with kafka_errors(f"writing {self.dlq}", self.worker.settings.kafka_bootstrap_servers):
            producer.flush(timeout=30)
            for future in sent:
                future.get(timeout=30)  # a copy the DLQ refused: stop, offsets uncommitted
        self.rejected += len(rejected)
        self.worker.dead_letters = self.rejected


_CHECKERS = 2
"""Batches checked at once. With one, the check was the loop's wall (its thread at work all
the time, 2 us a candle); with two, the sink's loop went 0.61-0.74x -> 0.71-0.79x kcat -C in
six paired runs on a quiet machine, for 0-0.25 us a candle more CPU (the threads' waits)."""
_IN_FLIGHT = 3
"""Batches checked or stored while the next is read: one in each check thread, one stored."""
_TOOK = threading.Lock()
_CAUGHT_UP_S = 0.01
"""How long a read with batches in flight and nothing read yet waits for a message before
the loop commits what is stored (a poll of librdkafka's queue, no request to the broker)."""
_READ_STEP = 2_000
"""Messages made into Python objects at a time (0.7 us each, with the GIL held): 1.4 ms."""


def _now() -> tuple[float, float, float]:
    """Return (this thread's CPU seconds, wall seconds, seconds waited for a core), for
    `SinkStages._took`."""
    return time.thread_time(), time.perf_counter(), _queued()


def _queued() -> float:
    """Return the seconds this thread has waited for a core (Linux's schedstat), else 0."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _plural(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"
