"""The platform's test service (`dummy-service`).

Answers `ping` with `pong`, turns `stop` into `interrupted`, and can simulate loading, failure
or a timed exit. Runs the same three ways: `streamforge-nb dummy ...`,
`python -m streamforge_nb.workers.dummy ...`, and `notebooks/dummy_service.ipynb` under papermill.
Prometheus metrics on `--metrics-port` (default 8000, 0 turns them off) at `/metrics`.

`--noop` sends `started` and no progress: it idles, still answering ping and stop.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from streamforge_nb import workers
from streamforge_nb.control.worker import Worker
from streamforge_nb.exceptions import DummyFailure
from streamforge_nb.platform.contract import BaseEvent, PingCommand
from streamforge_nb.platform.names import new_short_id, producer_id
from streamforge_nb.settings import Settings

__all__ = ["DummyOptions", "main", "run_dummy"]

log = logging.getLogger("streamforge_nb.dummy")
TARGET = "dummy"


@dataclass(frozen=True)
class DummyOptions:
    """The dummy service's options; names match the CLI flags and the notebook parameters.

    Read from a command line, the environment or a mapping by `streamforge_nb.workers`.
    """

    queue_id: str
    producer_id: str | None = None
    debug: bool = False
    noop: bool = False
    exit_on_ping: bool = False
    exit_after: float | None = None
    simulate_loading: bool = False
    loading_interval: float = 10.0
    fail_after: float | None = None
    metrics_port: int = 8000


class _Metrics:
    """The test service's own Prometheus metrics, beside every worker's in the worker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "dummy_events", "Telemetry events sent", ["event"], registry=self.registry
        )
        self.pings = Counter("dummy_pings", "Pings received", registry=self.registry)
        self.pongs = Counter("dummy_pongs", "Pongs sent", registry=self.registry)
        self.status = Gauge(
            "dummy_status_last", "1 for the last status sent", ["status"], registry=self.registry
        )

    def sent(self, event: BaseEvent) -> None:
        self.events.labels(event=event.status).inc()
        if event.status == "pong":
            self.pongs.inc()
            return
        for status in ("started", "loading", "finished", "error", "interrupted"):
            self.status.labels(status=status).set(1 if status == event.status else 0)


def run_dummy(options: DummyOptions, settings: Settings | None = None) -> int:
    """Run the dummy service until it finishes, fails or is stopped; return the exit code."""
    settings = settings or Settings.from_env()
    pinged = threading.Event()

    def on_ping(_ping: PingCommand) -> None:
        metrics.pings.inc()
        pinged.set()

    worker = Worker(
        settings,
        queue_id=options.queue_id,
        producer_id=options.producer_id or producer_id(TARGET, new_short_id()),
        target=TARGET,
        metrics_port=options.metrics_port,
    )
    # Set before `started` is sent: nobody pings a worker before it says it is up.
    metrics = _Metrics(worker.metrics.registry)
    worker.on_ping, worker.on_sent = on_ping, metrics.sent
    log.info(
        "dummy service up", extra={"queue_id": options.queue_id, "producer": worker.producer_id}
    )
    try:
        worker.run(lambda w: _serve(w, options, pinged))
    except DummyFailure as exc:
        log.error("dummy service failed: %s", exc)
        return 1
    finally:
        worker.close()
    log.info("dummy service done", extra={"stop_requested": worker.stop_requested})
    return 0


def _serve(worker: Worker, options: DummyOptions, pinged: threading.Event) -> str:
    started = time.monotonic()
    next_loading = started + options.loading_interval
    while True:
        elapsed = time.monotonic() - started
        if options.fail_after is not None and elapsed >= options.fail_after:
            raise DummyFailure(f"simulated failure after {options.fail_after:g} s (--fail-after)")
        if options.exit_after is not None and elapsed >= options.exit_after:
            return "exit-after"
        if options.exit_on_ping and pinged.is_set():
            return "exit-on-ping"
        if options.simulate_loading and not options.noop and time.monotonic() >= next_loading:
            worker.loading(worker.records_written + 100)
            next_loading += options.loading_interval
        worker.sleep(0.02)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dummy service from a command line; return the exit code."""
    return workers.main("dummy", argv)


if __name__ == "__main__":
    sys.exit(main())
