"""The README's main job on the embedded local default.

1. Start the local Kafka broker (idempotent).
2. Control plane: start a dummy worker, ping it through Kafka, stop it.
3. Data plane: `Workflow.candles(...).launch("local")`: the loader and the store sink run as
   local notebook Jobs (papermill); the loader reads the GENERATED sample archive shipped in
   `streamforge_nb/resources/sample/` (or, with `binance=True`, Binance's REST API), the sink
   writes the embedded store.
4. Analysis: load the candles back, count gaps, and save a candlestick chart as HTML.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import QueueTimeout, StreamForgeError
from streamforge_nb.exchange.archives import SAMPLE_ARCHIVE
from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.settings import Settings, local_home
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.workflow.plan import Workflow

__all__ = ["QuickstartResult", "run_quickstart"]

SAMPLE_RANGE = "2024-08-01:2024-08-02"
PROGRESS_EVERY_S = 10.0
"""Seconds between progress lines when stderr is not a terminal (a log, a CI job)."""


@dataclass(frozen=True)
class QuickstartResult:
    """What the main job did: round trips, the queue it loaded, candles stored, the chart."""

    round_trips_s: list[float]
    queue_id: str
    candles: int
    gaps: int
    chart: Path


def run_quickstart(
    *,
    pings: int = 3,
    binance: bool = False,
    symbol: str = "BTCUSDT",
    interval: str = "1m",
    time_range: str | None = None,
    echo: Callable[[str], None] = print,
) -> QuickstartResult:
    """Run the main job; see the module docstring."""
    home = local_home()
    LocalBroker(home).up(progress=echo)
    settings = Settings.from_env()
    echo(f"using {settings.describe()} (settings from {settings.source})")
    store_url = f"local://{home / 'store'}"
    rtts = ping_a_dummy(settings, pings, store_url, echo)
    if not binance:
        symbol, interval, time_range = "BTCUSDT", "1m", SAMPLE_RANGE
        echo(f"loading the GENERATED sample {SAMPLE_ARCHIVE.name} (not market data)")
        source: dict[str, Any] = {"source": "archive", "archives": [str(SAMPLE_ARCHIVE)]}
    else:
        source = {"source": "api"}
    workflow = Workflow.candles(
        symbol, interval, time_range or _yesterday(), store=store_url, settings=settings, **source
    )
    plan = workflow.plan()
    span, qid = plan.time_range, plan.queue_id
    if binance:
        echo(f"loading {symbol} {interval} {span} from Binance's REST API")
    echo(
        f"launching queue {qid} (loader-candles -> {plan.data_topic} -> arango-candles) "
        "as local notebook Jobs"
    )
    with workflow.launch("local", settings=settings) as queue:
        final = wait_with_progress(queue, [s.target for s in plan.steps], 1800, echo)
    failed = final[final["status"] != "finished"]
    if len(failed):
        raise StreamForgeError(
            f"queue {qid} did not finish: "
            + "; ".join(f"{p} {r.status}: {r.message}" for p, r in failed.iterrows())
        )
    for step in plan.steps:
        echo(f"executed notebook of {step.target}: {step.output}")
    with CandleStore.open(store_url) as store:
        candles = store.load(symbol, interval, span.start, span.end)
        gaps = store.gaps(symbol, interval, span.start, span.end)
        chart = home / f"quickstart-{symbol}-{interval}.html"
        store.plot(
            store.resample(candles, "15min") if interval in ("1s", "1m") else candles,
            title=f"{symbol} {interval} {span}",
        ).write_html(chart)
    echo(f"stored {len(candles):,} candles in {store_url} ({len(gaps)} gaps); chart: {chart}")
    echo(f"the broker keeps running; `streamforge-nb local down` stops it ({home})")
    return QuickstartResult(rtts, qid, len(candles), len(gaps), chart)


def ping_a_dummy(
    settings: Settings, count: int, store_url: str, echo: Callable[[str], None]
) -> list[float]:
    """Launch a dummy worker as a local notebook Job, ping it `count` times, stop it."""
    workflow = Workflow(
        "BTCUSDT",
        "1m",
        SAMPLE_RANGE,
        ["dummy"],
        store=store_url,
        settings=settings,
        parameters={"dummy": {"metrics_port": 0}},
    )
    echo(f"starting a dummy worker (a notebook Job) for queue {workflow.plan().queue_id}")
    rtts: list[float] = []
    with workflow.launch("local", settings=settings) as queue:
        try:
            _first_pong(queue, timeout=60)
            for i in range(1, count + 1):
                (reply,) = queue.ping(timeout=10)
                rtts.append(reply.round_trip_s)
                echo(f"pong {i} from {reply.producer}: {reply.round_trip_s * 1000:.1f} ms")
            echo(
                f"median round trip {statistics.median(rtts) * 1000:.1f} ms; "
                f"stopped: {', '.join(queue.stop(timeout=30))}"
            )
            queue.wait(timeout=60, progress=False)
        finally:
            queue.launcher.delete(queue.queue_id)  # no-op once it exited
    return rtts


def wait_with_progress(
    queue: Queue,
    targets: list[str],
    timeout: float,
    echo: Callable[[str], None],
    every: float = PROGRESS_EVERY_S,
) -> Any:
    """`queue.wait`: a progress bar on a terminal, else a line every `every` seconds.

    A bar redraws itself with carriage returns, which a log keeps as one endless line.
    """
    if sys.stderr.isatty():
        return queue.wait(timeout=timeout, targets=targets)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return queue.wait(timeout=max(0.0, min(every, left)), targets=targets, progress=False)
        except QueueTimeout:
            if time.monotonic() >= deadline:
                raise
        states = queue.producers().values()
        echo(
            f"{queue.queue_id}: "
            + (", ".join(f"{s.producer} {s.status} {s.records_written:,}" for s in states)
               or "waiting for the first event")
        )  # fmt: skip


def _first_pong(queue: Queue, timeout: float) -> None:
    """Ping until the freshly started worker answers (its start-up is not a round trip)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            queue.ping(timeout=1)
            return
        except QueueTimeout:
            if time.monotonic() > deadline:
                raise


def _yesterday() -> str:
    today = dt.datetime.now(dt.UTC).date()
    return f"{today - dt.timedelta(days=1)}:{today}"
