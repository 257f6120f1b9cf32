"""The candle loader (target `loader-candles`): exchange -> the queue's data topic.

For a symbol, a Binance interval and a UTC time range it publishes one message per candle
(`_key` = `SYMBOL_interval_opentime`, the Kafka key too) from Binance's REST klines or from
its public-data archives. Everything is validated, and the exchange asked for the first page,
before anything is published: a wrong symbol, interval or range publishes nothing.

From the REST API it also reports the windows the exchange confirmed empty: inside the asked
range and the symbol's life, open times where no kline exists (a page starting after its
`startTime`, rows that jump, a range ending with nothing). Each goes to the data topic as an
exchange-empty marker (`platform.markers.encode_exchange_empty`, header `streamforge-record:
exchange-empty`) for the sink to record in the store. Not exchange-empty: time before the
symbol's first kline, and a window ending within `SETTLE_MS` of now (a kline may be late).

Runs as `streamforge-nb loader ...`, `python -m streamforge_nb.workers.loader ...` and
`notebooks/loader_candles.ipynb`.

Candles travel as Arrow columns from the archive's CSV (or the REST pages) to the wire and
are published through librdkafka (`workers.publish`), so the broker, not Python, sets the
pace (issue 20); the messages are those `contract.encode` makes.
"""

from __future__ import annotations

import itertools
import logging
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamforge_nb import workers
from streamforge_nb.exceptions import StopRequested, StreamForgeError
from streamforge_nb.exchange.archives import archive_paths, archive_tables
from streamforge_nb.platform.anomalies import grid_floor_ms
from streamforge_nb.platform.arrow_values import int64_scalar
from streamforge_nb.platform.candle_columns import candles_table, encode_columns
from streamforge_nb.platform.intervals import check_interval, close_time, longest_ms, open_times
from streamforge_nb.platform.markers import EXCHANGE_EMPTY, RECORD_HEADER, encode_exchange_empty
from streamforge_nb.platform.names import (
    TimeRange,
    candle_type,
    check_kafka_topic,
    check_symbol,
    data_topic,
    new_short_id,
    parse_time_range,
    producer_id,
)
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    from streamforge_nb.control.worker import Worker
    from streamforge_nb.exchange.binance import KlinesClient

__all__ = ["EmptyWindows", "LoaderOptions", "main", "run_loader"]

log = logging.getLogger("streamforge_nb.loader")
TARGET = "loader-candles"
SOURCES = ("api", "archive")
BINANCE_API = "https://api.binance.com"
BINANCE_DATA = "https://data.binance.vision"

SETTLE_MS = 120_000
"""A window ending less than this before now may only be late at the exchange: not empty."""
Window = tuple[int, int]
Page = tuple[pa.Table, list[Window]]
"""Candles (`CANDLE_SCHEMA` columns) and the exchange-empty windows found with them."""
Encoded = tuple[pa.Array, pa.Array]
"""A page's candles as `encode_columns` makes them: Kafka keys and JSON values."""


@dataclass(frozen=True)
class LoaderOptions:
    """What to load and where; names match the CLI flags and the notebook parameters."""

    queue_id: str
    symbol: str
    interval: str
    time_range: str
    kafka_topic: str | None = None
    producer_id: str | None = None
    source: str = "api"
    base_url: str | None = None
    archives: tuple[str, ...] = ()
    report_every: float = 2.0
    partitions: int = 1
    debug: bool = False

    def validated(self) -> tuple[TimeRange, str]:
        """Check every option; return the parsed range and the data topic."""
        check_symbol(self.symbol)
        check_interval(self.interval)
        if self.source not in SOURCES:
            raise StreamForgeError(f"unknown source {self.source!r}; use one of {SOURCES}")
        time_range = parse_time_range(self.time_range)
        topic = check_kafka_topic(self.kafka_topic or data_topic(self.queue_id))
        return time_range, topic


def first_open(interval: str, ms: int) -> int:
    """Return the first open time of `interval` at or after `ms`."""
    return next(open_times(interval, ms, ms + longest_ms(interval) + 1))


@dataclass
class EmptyWindows:
    """Find the windows the exchange has no kline in, from a load's open times in order.

    `alive_before(ms)` tells whether the symbol has a kline opening before `ms` (asked only
    when the range starts without one): before its first kline a symbol is not listed yet,
    which is not an exchange-empty window.
    """

    interval: str
    start_ms: int
    end_ms: int
    alive_before: Callable[[int], bool]
    expected: int | None = field(default=None, init=False)
    """The next open time due after the last kline seen (None: none seen yet)."""

    def feed(self, times: Sequence[int]) -> list[Window]:
        """Take the next open times (ascending); return the windows they reveal."""
        found: list[Window] = []
        # In grid slots: a kline the exchange shifted off the grid (December 2017's minutes
        # open 20.799 s late) fills the slot it opens in, and windows stay on the grid.
        slots = grid_floor_ms(np.asarray(times, dtype=np.int64), self.interval).tolist()
        for t in slots:
            if self.expected is None:
                first = first_open(self.interval, self.start_ms)
                if t > first and self.alive_before(self.start_ms):
                    found.append((first, t))
            elif t > self.expected:
                found.append((self.expected, t))
            self.expected = max(self.expected or 0, close_time(self.interval, t) + 1)
        return found

    def finish(self, now_ms: int) -> list[Window]:
        """Return the window after the last kline, once the range is over, if any."""
        end = first_open(self.interval, self.end_ms)
        if end + SETTLE_MS > now_ms:
            return []  # the range ends at now: its last klines may only be late
        if self.expected is None:
            first = first_open(self.interval, self.start_ms)
            alive = first < end and self.alive_before(self.start_ms)
            return [(first, end)] if alive else []
        return [(self.expected, end)] if self.expected < end else []


def _listed_before(client: KlinesClient, symbol: str, interval: str, ms: int) -> bool:
    # One request from the epoch: Binance answers with the symbol's first klines.
    return next(client.candles(symbol, interval, 0, ms), None) is not None


def _candle_pages(options: LoaderOptions, time_range: TimeRange) -> Iterator[Page]:
    """The REST API's pages, with the exchange-empty windows each one reveals."""
    from streamforge_nb.exchange.binance import KlinesClient

    start_ms, end_ms = time_range.start_ms, time_range.end_ms
    client = KlinesClient(options.base_url or BINANCE_API)
    windows = EmptyWindows(
        options.interval,
        start_ms,
        end_ms,
        lambda ms: _listed_before(client, options.symbol, options.interval, ms),
    )
    for page in client.candles(options.symbol, options.interval, start_ms, end_ms):
        yield candles_table(page), windows.feed([c.open_time for c in page])
    yield candles_table([]), windows.finish(int(time.time() * 1000))


def _archive_parts(options: LoaderOptions, time_range: TimeRange) -> Iterator[Iterator[Page]]:
    """One iterator of pages per archive, in order; an archive is read when iterated."""
    sources = list(options.archives) or [
        f"{(options.base_url or BINANCE_DATA).rstrip('/')}/{path}"
        for path in archive_paths(options.symbol, options.interval, time_range)
    ]
    for source in sources:
        yield _archive_pages(options.symbol, options.interval, source, time_range)


def _archive_pages(
    symbol: str, interval: str, source: str, time_range: TimeRange
) -> Iterator[Page]:
    # Constants as Arrow scalars: a Python int here would import pandas (`arrow_values`).
    start, end = int64_scalar(time_range.start_ms), int64_scalar(time_range.end_ms)
    for table in archive_tables(symbol, interval, [source]):
        # Archives hold whole days or months: keep only the asked range. A block wholly
        # inside (most of a long range) is kept as it is: filtering copies every column.
        times = table.column("open_time")
        bounds = pc.min_max(times)
        first, last = bounds["min"].as_py(), bounds["max"].as_py()
        if table.num_rows and time_range.start_ms <= first and last < time_range.end_ms:
            yield table, []
        else:
            yield table.filter(pc.and_(pc.greater_equal(times, start), pc.less(times, end))), []


READ_AHEAD = 2
"""Pages (a month of 1m each) read ahead of the one being published, per archive."""
READERS = 2
"""Archives read at once."""


def _read_ahead(
    parts: Iterator[Iterator[Page]],
    symbol: str,
    interval: str,
    *,
    depth: int = READ_AHEAD,
    readers: int = READERS,
) -> Iterator[tuple[Page, Encoded]]:
    """Return the pages of `parts` in order, each with its encoded candles, read and encoded
    by `readers` background threads, one part (an archive) each, up to `depth` pages ahead.

    Unzipping, Arrow's CSV reader and its kernels release the GIL: the next archives are
    parsed and encoded while this one is handed to librdkafka (issue 20: one reader was the
    loader's wall, the publishing thread waited for it). Reading starts now, while the worker
    connects; it has no side effect. A reading error is raised from the iterator, after the
    pages before it; what other readers read past it is dropped.
    """
    done = threading.Event()
    # Each part's own queue of pages, queued in the parts' order (None: no more parts).
    slots: queue.Queue[queue.Queue[tuple[str, Any]] | None] = queue.Queue()
    taking = threading.Lock()
    over = False

    def offer(ahead: queue.Queue[tuple[str, Any]], item: tuple[str, Any]) -> bool:
        while not done.is_set():  # the consumer may be gone: never block for good
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next_part() -> tuple[Iterator[Page] | None, queue.Queue[tuple[str, Any]] | None]:
        nonlocal over
        with taking:  # a part and its slot are taken together: slots keep the parts' order
            if over:
                return None, None
            ahead: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
            try:
                part = next(parts, None)
            except BaseException as exc:
                part, over = None, True
                ahead.put(("error", exc))
                slots.put(ahead)
                return None, None
            if part is None:
                over = True
                slots.put(None)
                return None, None
            slots.put(ahead)
            return part, ahead

    def read() -> None:
        while not done.is_set():
            part, ahead = next_part()
            if part is None or ahead is None:
                return
            try:
                for page in part:
                    encoded = encode_columns(symbol, interval, page[0], checked=True)
                    if not offer(ahead, ("page", (page, encoded))):
                        return
                offer(ahead, ("end", None))
            except BaseException as exc:
                offer(ahead, ("error", exc))
            finally:
                getattr(part, "close", lambda: None)()  # closes the open archive

    def taken() -> Iterator[tuple[Page, Encoded]]:
        try:
            while (ahead := slots.get()) is not None:
                while True:
                    kind, value = ahead.get()
                    if kind == "end":
                        break
                    if kind == "error":
                        raise value
                    yield value
        finally:
            done.set()

    for n in range(readers):
        threading.Thread(target=read, name=f"loader-read-ahead-{n}", daemon=True).start()
    pages_taken = taken()
    weakref.finalize(pages_taken, done.set)  # never started (the worker failed): stop too
    return pages_taken


def run_loader(options: LoaderOptions, settings: Settings | None = None) -> int:
    """Load candles into the data topic; return the exit code (0 finished or stopped)."""
    time_range, topic = options.validated()
    settings = settings or Settings.from_env()
    symbol, interval = options.symbol, options.interval
    # Pages are checked where they are made (`archive_tables`, or `candles_table` of models).
    pages = (
        _read_ahead(_archive_parts(options, time_range), symbol, interval)
        if options.source == "archive"
        else (
            (page, encode_columns(symbol, interval, page[0], checked=True))
            for page in _candle_pages(options, time_range)
        )
    )
    # Imported once the archives are being read (issue 20: the Kafka clients, the contract's
    # events and the metrics take a few hundred ms to import, in parallel with the first
    # archive's reading instead of before it).
    from streamforge_nb.control.worker import Worker

    with Worker(
        settings,
        queue_id=options.queue_id,
        producer_id=options.producer_id or producer_id(TARGET, new_short_id()),
        target=TARGET,
        symbol=options.symbol,
        type=candle_type(options.interval),
    ) as worker:
        try:
            worker.run(lambda w: _publish(w, pages, topic, options))
        except StreamForgeError as exc:
            log.error("loader failed: %s", exc)
            return 1
    return 0


def _publish(
    worker: Worker, pages: Iterator[tuple[Page, Encoded]], topic: str, opts: LoaderOptions
) -> int:
    from streamforge_nb.kafka.clients import make_admin
    from streamforge_nb.platform.topics import ensure_queue_topics
    from streamforge_nb.workers.publish import CandlePublisher, ProgressReports

    settings = worker.settings
    # The producer and the admin client connect while the first page is read (issue 20:
    # tens of ms each, after the page before). Neither has a side effect: the producer sends
    # nothing before the topic exists and its metadata requests never create it
    # (`allow.auto.create.topics` off).
    with ThreadPoolExecutor(2, thread_name_prefix="loader-connect") as pool:
        connecting = pool.submit(CandlePublisher, settings, topic)
        admin_connecting = pool.submit(make_admin, settings)
        try:
            # The first page comes before the topic or any message exists: an unknown
            # symbol fails here with nothing published.
            first = next(pages, None)
        except BaseException:
            admin_connecting.add_done_callback(_close_admin)
            raise
        admin = admin_connecting.result()
        try:
            ensure_queue_topics(admin, settings, topic, partitions=opts.partitions)
        finally:
            admin.close()
        publisher = connecting.result()
    sent = empty = 0
    last_report = time.monotonic()
    marker = [(RECORD_HEADER, EXCHANGE_EMPTY)]
    reports = ProgressReports(worker, topic)
    try:
        for (_, windows), encoded in itertools.chain([] if first is None else [first], pages):
            worker.check_stop()
            sent += publisher.encoded(*encoded)
            for start, end in windows:
                key, value = encode_exchange_empty(opts.symbol, opts.interval, start, end)
                publisher.message(key, value, marker)
                log.info("the exchange has no %s %s klines in [%d, %d)",
                         opts.symbol, opts.interval, start, end)  # fmt: skip
            empty += len(windows)
            if time.monotonic() - last_report >= opts.report_every:
                reports.offer(publisher.acknowledged)  # acknowledged candles only
                last_report = time.monotonic()
        publisher.flush()  # every message acknowledged before the loader says finished
    except StopRequested:
        # What was handed to librdkafka before the stop is delivered, not dropped: the
        # interrupted queue keeps every candle of the pages already fetched.
        publisher.flush()
        reports.close()
        worker.records_written = publisher.acknowledged
        raise
    finally:
        reports.close()  # no report after the run's last event
    worker.records_written = sent
    log.info("published %d candles and %d exchange-empty windows", sent, empty,
             extra={"topic": topic})  # fmt: skip
    return sent


def _close_admin(connecting: Future[Any]) -> None:
    if not connecting.cancelled() and connecting.exception() is None:
        connecting.result().close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the loader from a command line; return the exit code."""
    return workers.main("loader", argv)


if __name__ == "__main__":
    sys.exit(main())
