"""The candle loader (target `loader-candles`): exchange -> the queue's data topic.

For a symbol, a Binance interval and a UTC time range it publishes one message per candle
(`_key` = `SYMBOL_interval_opentime`, the Kafka key too) from Binance's REST klines or from
its public-data archives. Everything is validated, and the exchange asked for the first page,
before anything is published: a wrong symbol, interval or range publishes nothing.

Runs as `streamforge-nb loader ...`, `python -m streamforge_nb.workers.loader ...` and
`notebooks/loader_candles.ipynb`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from streamforge_nb import workers
from streamforge_nb.control.worker import Worker
from streamforge_nb.exceptions import StreamForgeError, kafka_errors
from streamforge_nb.exchange.archives import archive_candles, archive_paths
from streamforge_nb.exchange.binance import KlinesClient
from streamforge_nb.kafka.clients import make_admin, make_producer
from streamforge_nb.platform.contract import Candle, encode, message_key
from streamforge_nb.platform.intervals import check_interval
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
from streamforge_nb.platform.topics import TopicSpec, ensure_topics
from streamforge_nb.settings import Settings

__all__ = ["LoaderOptions", "main", "run_loader"]

log = logging.getLogger("streamforge_nb.loader")
TARGET = "loader-candles"
SOURCES = ("api", "archive")
BINANCE_API = "https://api.binance.com"
BINANCE_DATA = "https://data.binance.vision"

# Batching producer: many candles per request is what makes publishing fast; acks=all with
# idempotence keeps a broker restart from losing or doubling a candle.
PRODUCER_CONFIG: dict[str, Any] = {
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    "acks": "all",
    "enable_idempotence": True,
    "delivery_timeout_ms": 300_000,
}


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


def _candle_pages(options: LoaderOptions, time_range: TimeRange) -> Iterator[list[Candle]]:
    if options.source == "api":
        client = KlinesClient(options.base_url or BINANCE_API)
        yield from client.candles(
            options.symbol, options.interval, time_range.start_ms, time_range.end_ms
        )
        return
    sources = list(options.archives) or [
        f"{(options.base_url or BINANCE_DATA).rstrip('/')}/{path}"
        for path in archive_paths(options.symbol, options.interval, time_range)
    ]
    for page in archive_candles(options.symbol, options.interval, sources):
        # Archives hold whole days or months: keep only the asked range.
        yield [c for c in page if time_range.start_ms <= c.open_time < time_range.end_ms]


def run_loader(options: LoaderOptions, settings: Settings | None = None) -> int:
    """Load candles into the data topic; return the exit code (0 finished or stopped)."""
    time_range, topic = options.validated()
    settings = settings or Settings.from_env()
    pages = _candle_pages(options, time_range)
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


def _publish(worker: Worker, pages: Iterator[list[Candle]], topic: str, opts: LoaderOptions) -> int:
    settings = worker.settings
    # The first page comes before the topic or any message exists: an unknown symbol fails
    # here with nothing published.
    first = next(pages, [])
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(topic, partitions=opts.partitions),))
    finally:
        admin.close()
    producer = make_producer(settings, **PRODUCER_CONFIG)
    sent = 0
    last_report = time.monotonic()
    try:
        with kafka_errors(f"publishing to {topic}", settings.kafka_bootstrap_servers):
            for page in _chain(first, pages):
                worker.check_stop()
                for candle in page:
                    producer.send(topic, key=message_key(candle), value=encode(candle))
                sent += len(page)
                if time.monotonic() - last_report >= opts.report_every:
                    producer.flush()
                    worker.loading(sent, f"Published {sent} candles to {topic}")
                    last_report = time.monotonic()
            producer.flush()
    finally:
        producer.close(timeout=30)
    worker.records_written = sent
    log.info("published %d candles", sent, extra={"topic": topic})
    return sent


def _chain(first: list[Candle], rest: Iterator[list[Candle]]) -> Iterator[list[Candle]]:
    if first:
        yield first
    yield from rest


def main(argv: Sequence[str] | None = None) -> int:
    """Run the loader from a command line; return the exit code."""
    return workers.main("loader", argv)


if __name__ == "__main__":
    sys.exit(main())
