"""Prometheus metrics of every worker, made from the telemetry it sends.

A `Worker` hands each event it sends (before sending it: a broker outage must not hide the
work done) to its `WorkerMetrics`, so the loader, the sink and the dummy all count the same
way without a line of metrics code of their own. The exchange's counts (request weight,
429 / 418 answers, failed requests) come from `exchange.weight.EXCHANGE_COUNTS`, read at each
scrape. Served by prometheus-client at `/metrics` on `$STREAMFORGE_METRICS_PORT` (unset: not
served; 0: a free port the system picks, for Pods sharing a host's network; the dummy's
`--metrics-port` is the same server). The worker names the address it serves at (`host:port`)
in its `started` event (the extra field `metrics_address`) and its log, so a scraper finds a
port it could not know in advance.

`$STREAMFORGE_METRICS_LINGER_SECONDS` keeps the server up that long after the work ended, so
a scrape every N seconds still sees a short Job's last counts. Names follow Prometheus's
conventions (`_total`, seconds); each carries the labels `queue_id` and `worker` (the target).
"""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from streamforge_nb.exceptions import ConfigError
from streamforge_nb.exchange.weight import EXCHANGE_COUNTS, ExchangeCounts

__all__ = [
    "METRICS_LINGER_ENV",
    "METRICS_PORT_ENV",
    "WorkerMetrics",
    "metrics_linger",
    "metrics_port",
    "serve_metrics",
]

METRICS_PORT_ENV = "STREAMFORGE_METRICS_PORT"
METRICS_LINGER_ENV = "STREAMFORGE_METRICS_LINGER_SECONDS"
_STATUSES = ("started", "loading", "finished", "error", "interrupted")


def metrics_port(environ: Mapping[str, str] = os.environ) -> int | None:
    """Return the port `$STREAMFORGE_METRICS_PORT` asks for (None: unset, no metrics; 0: any
    free port); ConfigError if bad."""
    text = environ.get(METRICS_PORT_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > 65535:
        raise ConfigError(
            f"{METRICS_PORT_ENV}={text!r} is not a port 0..65535 (0: any free port; unset: none)"
        )
    return int(text)


def metrics_linger(environ: Mapping[str, str] = os.environ) -> float:
    """Return `$STREAMFORGE_METRICS_LINGER_SECONDS` (0 when unset); ConfigError if bad."""
    text = environ.get(METRICS_LINGER_ENV, "").strip()
    try:
        seconds = float(text) if text else 0.0
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(f"{METRICS_LINGER_ENV}={text!r} is not a number of seconds >= 0")
    return seconds


def serve_metrics(registry: CollectorRegistry, port: int) -> Any:
    """Serve `registry` at `/metrics` on `port`; return the server. ConfigError if taken."""
    try:
        server, _thread = start_http_server(port, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"metrics port {port} cannot be used ({exc.strerror or exc}): another process "
            f"listens there? choose another ({METRICS_PORT_ENV}, or the dummy's --metrics-port; "
            "0: any free port)"
        ) from None
    return server


class WorkerMetrics:
    """One worker's metrics, in a registry of their own (one worker per process)."""

    def __init__(self, queue_id: str, worker: str, *, counts: ExchangeCounts = EXCHANGE_COUNTS):
        self.registry = CollectorRegistry()
        self.labels = {"queue_id": queue_id, "worker": worker}
        names = ["queue_id", "worker"]
        lag = [*names, "group", "partition"]

        def counter(name: str, text: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, text, [*names, *extra], registry=self.registry)

        def gauge(name: str, text: str, labels: list[str] = names) -> Gauge:
            return Gauge(name, text, labels, registry=self.registry)

        self.events = counter("streamforge_events", "Telemetry events sent", ("status",))
        self.records = counter(
            "streamforge_records_written", "Records written (loader: published, sink: stored)"
        )
        self.rate = gauge("streamforge_records_per_second", "Records per second, last 2 reports")
        self.dead_letters = counter("streamforge_dead_letters", "Messages refused to the DLQ")
        self.anomalies = counter("streamforge_anomalies", "Candles stored with an anomaly")
        self.errors = counter("streamforge_errors", "Runs ended in error", ("error_type",))
        self.last_event = gauge(
            "streamforge_last_event_timestamp_seconds", "Unix time of the last telemetry event"
        )
        self.status = gauge(
            "streamforge_worker_status", "1 for the last status sent", [*names, "status"]
        )
        self.lag_messages = gauge("streamforge_lag_messages", "Messages the sink is behind", lag)
        self.lag_seconds = gauge("streamforge_lag_seconds", "Seconds the sink is behind", lag)
        self.registry.register(_ExchangeCollector(counts, self.labels))
        # Zero from the start, so rate() and increase() see the first records too.
        for total in (self.records, self.dead_letters, self.anomalies):
            total.labels(**self.labels)
        self._seen = {"records_written": 0, "dead_letters": 0, "anomalies": 0}
        self._last_report: tuple[float, int] | None = None
        self._lock = threading.Lock()
        self.server: Any = None

    def serve(self, port: int | None) -> None:
        """Serve the metrics on `port` (0: a free port the system picks; None: do nothing)."""
        if port is not None:
            self.server = serve_metrics(self.registry, port)

    @property
    def address(self) -> str | None:
        """`host:port` a scraper reaches the metrics at (None: not served).

        The host is this machine's address as its own name resolves (a Pod's IP, or on a
        host's network the host's), since the server listens on every interface.
        """
        if self.server is None:
            return None
        return f"{_own_host()}:{self.server.server_address[1]}"

    def sent(self, event: Any) -> None:
        """Count one telemetry event (its counts are totals so far: only rises are added)."""
        labels = self.labels
        with self._lock:
            self.events.labels(**labels, status=event.status).inc()
            timestamp = float(getattr(event, "timestamp", 0) or 0)
            if timestamp:
                self.last_event.labels(**labels).set(timestamp)
            if event.status == "pong":
                return
            for status in _STATUSES:
                self.status.labels(**labels, status=status).set(status == event.status)
            for field, counter in (("records_written", self.records),
                                   ("dead_letters", self.dead_letters),
                                   ("anomalies", self.anomalies)):  # fmt: skip
                value = getattr(event, field, None) or 0
                if value > self._seen[field]:
                    counter.labels(**labels).inc(value - self._seen[field])
                    self._seen[field] = value
            self._note_rate(timestamp, int(getattr(event, "records_written", 0) or 0))
            if event.status == "error":
                kind = getattr(event, "error_type", None) or "unknown"
                self.errors.labels(**labels, error_type=kind).inc()
            group = getattr(event, "group", None)
            for lag in getattr(event, "lag", None) or ():
                where = {**labels, "group": group or "", "partition": str(lag.partition)}
                self.lag_messages.labels(**where).set(lag.messages)
                if lag.seconds is not None:
                    self.lag_seconds.labels(**where).set(lag.seconds)

    def _note_rate(self, timestamp: float, records: int) -> None:
        if self._last_report is not None:
            then, before = self._last_report
            if timestamp > then:
                self.rate.labels(**self.labels).set(max(0, records - before) / (timestamp - then))
        self._last_report = (timestamp, records)

    def close(self, linger: float = 0.0) -> None:
        """Stop serving, after `linger` seconds so a last scrape sees the final counts."""
        if self.server is None:
            return
        if linger > 0:
            threading.Event().wait(linger)
        self.server.shutdown()
        self.server.server_close()
        self.server = None


def _own_host() -> str:
    name = socket.gethostname()
    try:
        return socket.gethostbyname(name)
    except OSError:  # a name nothing resolves: the name is still the best a scraper gets
        return name


class _ExchangeCollector(Collector):
    """The process's exchange counts, read at each scrape."""

    def __init__(self, counts: ExchangeCounts, labels: Mapping[str, str]) -> None:
        self.counts = counts
        self.names = list(labels)
        self.values = list(labels.values())

    def collect(self) -> Iterator[Any]:
        snap = self.counts.snapshot()
        sent = CounterMetricFamily("streamforge_exchange_weight_sent", "Request weight of the "
                                   "requests sent to the exchange", labels=self.names)  # fmt: skip
        sent.add_metric(self.values, snap["weight_sent"])
        yield sent
        used = GaugeMetricFamily("streamforge_exchange_used_weight", "The IP's request weight "
                                 "in the current window, as the exchange last reported it",
                                 labels=self.names)  # fmt: skip
        if snap["used_weight"] is not None:
            used.add_metric(self.values, snap["used_weight"])
        yield used
        limit = GaugeMetricFamily("streamforge_exchange_weight_limit", "The exchange's request "
                                  "weight limit per window", labels=self.names)  # fmt: skip
        if snap["weight_limit"] is not None:
            limit.add_metric(self.values, snap["weight_limit"])
        yield limit
        answers = CounterMetricFamily("streamforge_exchange_answers", "Exchange answers by HTTP "
                                      "status (429: rate-limited, 418: banned)",
                                      labels=[*self.names, "code"])  # fmt: skip
        # 429 and 418 always present, so an alert's increase() has a zero to start from.
        for code in sorted({429, 418} | set(snap["answers"])):
            answers.add_metric([*self.values, str(code)], snap["answers"].get(code, 0))
        yield answers
        errors = CounterMetricFamily("streamforge_exchange_errors", "Failed exchange requests "
                                     "(network, server: 5xx, client: other 4xx)",
                                     labels=[*self.names, "kind"])  # fmt: skip
        for kind in sorted({"network", "server", "client"} | set(snap["errors"])):
            errors.add_metric([*self.values, kind], snap["errors"].get(kind, 0))
        yield errors
