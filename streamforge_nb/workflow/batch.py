"""`Batch`: many candle queues (symbols x intervals x shards of a range) as one thing.

    batch = Workflow.candles(["BTCUSDT", "ETHUSDT"], ["1m", "1h"], "2020-01-01:now")
    batch.plan()                        # queues, request weight, time at the limit; no side effects
    batch.launch("local", max_parallel=4)   # at most 4 loader Jobs at once, in the background
    batch.wait()                        # one progress bar; batch.status() per queue
    batch = Batch(batch_id)             # in a new kernel: reopened from queue state

A shard is a slice of the range (the rule: `workflow.shards`); each is one queue, launched as
`Workflow.launch` does (its own queue-state record, loader and sink Jobs). The batch itself
is a record of the same queue state (`kind: "batch"`, never listed as a queue): its queues
and options, enough to reopen it anywhere and launch what was not launched yet. What was
launched is what has a queue-state record, so a reopened batch never launches a queue twice.
Watching the queues (status, wait, lag) is `workflow.batch_watch`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.telemetry import ENDED_STATUSES
from streamforge_nb.exceptions import InvalidName, StreamForgeError
from streamforge_nb.platform.intervals import check_interval
from streamforge_nb.platform.names import check_short_id, check_symbol, new_short_id
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.workflow.arguments import check_arguments, check_count, check_series_names
from streamforge_nb.workflow.batch_watch import BatchWatching
from streamforge_nb.workflow.launchers import Launcher, get_launcher, launcher_for
from streamforge_nb.workflow.pacing import launch_paced
from streamforge_nb.workflow.plan import Workflow
from streamforge_nb.workflow.ranges import check_time_range
from streamforge_nb.workflow.shards import (
    SHARD_CANDLES,
    BatchPlan,
    Shard,
    candle_count,
    shard_ranges,
)

if TYPE_CHECKING:
    from streamforge_nb.control.state import HistoryReader

__all__ = ["BATCH_KIND", "Batch"]

log = logging.getLogger(__name__)
BATCH_KIND = "batch"
"""The `kind` of a batch's queue-state record (queue records have none)."""
# Workflow options a batch records, to rebuild its queues' Workflows when reopened.
_OPTIONS = (
    "source", "base_url", "archives", "image", "namespace", "output_dir", "parameters",
    "resources", "timeouts", "cleanup",
)  # fmt: skip


def _names(kind: str, values: str | Iterable[str], check: Any) -> list[str]:
    """Check a list of symbols or intervals: not empty, no duplicates, each valid."""
    items: Any = [values] if isinstance(values, str) else values
    items = list(items) if isinstance(items, Iterable) else items
    check_series_names(kind, items)
    if not items:
        raise InvalidName(f"no {kind} given: name at least one")
    checked = [check(v) for v in items]
    twice = sorted({v for v in checked if checked.count(v) > 1})
    if twice:
        raise InvalidName(f"{kind} named more than once: {', '.join(twice)}")
    return checked


class Batch(BatchWatching):
    """Queues of one candle load (symbols x intervals x shards), launched and watched as one.

    `Batch(batch_id, store)` reopens a launched batch from its queue-state record; a new
    one comes from `Workflow.candles([...], [...], ...)` or `Batch.candles(...)`.
    """

    def __init__(
        self, batch_id: str, store: str | None = None, *, settings: Settings | None = None
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.store_url = store or self.settings.arango_url
        with CandleStore.open(self.store_url, settings=self.settings) as opened:
            record = opened.queue_state(batch_id)
        if record is None or record.get("kind") != BATCH_KIND:
            raise StreamForgeError(f"no batch {batch_id!r} in the queue state of {opened!r}")
        self._setup(record, [self._workflow(q, record["options"]) for q in record["queues"]])

    @classmethod
    def open(
        cls, batch_id: str, store: str | None = None, *, settings: Settings | None = None
    ) -> Batch:
        """Reopen a launched batch from the queue state in `store` (default: the settings')."""
        return cls(batch_id, store, settings=settings)

    @classmethod
    def candles(
        cls,
        symbols: str | Iterable[str],
        intervals: str | Iterable[str],
        time_range: str,
        *,
        store: str | None = None,
        settings: Settings | None = None,
        sinks: int = 1,
        partitions: int = 1,
        shard_candles: int | None = None,
        max_candles: int | None = None,
        now: datetime | None = None,
        short_id: str | None = None,
        **options: Any,
    ) -> Batch:
        """Plan one queue per symbol x interval x shard of `time_range` (`<start>:now` too).

        Shards follow `workflow.shards` (at most `shard_candles`, default `SHARD_CANDLES`,
        and at most one queue's limit); everything is checked here, before any side effect.
        """
        check_arguments(settings=settings, shard_candles=shard_candles,
                        max_candles=max_candles, now=now, short_id=short_id)  # fmt: skip
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise InvalidName(f"unknown batch option(s): {', '.join(sorted(unknown))}")
        symbols = _names("symbols", symbols, lambda s: check_symbol(str(s)))
        intervals = _names("intervals", intervals, lambda i: check_interval(str(i)))
        check_count("sinks", sinks)
        check_count("partitions", partitions)
        settings = settings or Settings.from_env()
        limit = min(
            check_count("shard_candles", shard_candles or SHARD_CANDLES),
            max_candles or settings.max_candles_per_queue,
        )
        now = now or datetime.now(UTC)
        short = check_short_id(short_id) if short_id else new_short_id()
        options = {**options, "sinks": sinks, "partitions": partitions}
        if max_candles:
            options["max_candles"] = max_candles
        queues: list[dict[str, Any]] = []
        for interval in intervals:
            # The whole range may exceed one queue's limit: that is what shards are for.
            span = check_time_range(time_range, interval, max_candles=2**62, now=now)
            for start, end in shard_ranges(span, interval, limit):
                for symbol in symbols:
                    queues.append({
                        "symbol": symbol, "interval": interval, "short_id": new_short_id(),
                        "time_range": f"{start.isoformat()}/{end.isoformat()}",
                    })  # fmt: skip
        first = Workflow.candles(
            str(queues[0]["symbol"]), str(queues[0]["interval"]), queues[0]["time_range"],
            store=store, settings=settings, short_id=queues[0]["short_id"], now=now, **options,
        )  # fmt: skip
        batch = cls.__new__(cls)
        # Credentials in a store URL stay in the first Workflow's settings, as there.
        batch.settings, batch.store_url = first.settings, first.store_url
        workflows = [first] + [batch._workflow(q, options, now) for q in queues[1:]]
        for queue, wf in zip(queues, workflows, strict=True):
            queue["queue_id"] = wf.plan().queue_id
        record = {
            "queue_id": f"batch-{now:%Y%m%d}-{short}", "kind": BATCH_KIND, "status": "planned",
            "symbols": symbols, "intervals": intervals, "time_range": time_range,
            "store": batch.store_url, "options": options, "queues": queues,
        }  # fmt: skip
        batch._setup(record, workflows)
        return batch

    def _workflow(
        self, queue: Mapping[str, Any], options: Mapping[str, Any], now: datetime | None = None
    ) -> Workflow:
        return Workflow.candles(
            str(queue["symbol"]), str(queue["interval"]), queue["time_range"],
            store=self.store_url, settings=self.settings, short_id=queue["short_id"], now=now,
            **options,
        )  # fmt: skip

    def _setup(self, record: dict[str, Any], workflows: list[Workflow]) -> None:
        self.batch_id: str = record["queue_id"]
        self._record = record
        self.workflows = workflows
        plans = [wf.plan() for wf in workflows]
        shards = tuple(
            Shard(p.queue_id, p.symbol, p.interval, str(p.time_range), q["short_id"],
                  candle_count(p.interval, p.time_range.start, p.time_range.end))
            for q, p in zip(record["queues"], plans, strict=True)
        )  # fmt: skip
        options = record["options"]
        self._plan = BatchPlan(
            self.batch_id, tuple(record["symbols"]), tuple(record["intervals"]),
            record["time_range"], shards, options.get("sinks", 1), options.get("partitions", 1),
        )  # fmt: skip
        self._ids = {s.queue_id for s in shards}
        self._lock = threading.Lock()
        self._launching: threading.Thread | None = None
        self._pause = threading.Event()
        self._failure: BaseException | None = None
        self._runner: Launcher | None = None
        self._queues: dict[str, Queue] = {}
        self._panels: list[Any] = []
        self._reader: HistoryReader | None = None

    def __repr__(self) -> str:
        return f"Batch({self.batch_id!r}, {len(self.workflows)} queues)"

    def plan(self) -> BatchPlan:
        """Return the batch's queues, request weight and time at the limit; no side effects."""
        return self._plan

    def _repr_html_(self) -> str:
        return self._plan._repr_html_()

    # -- launching ---------------------------------------------------------------------------
    def launch(
        self, launcher: str | Launcher | None = None, *, max_parallel: int = 4, **options: Any
    ) -> Batch:
        """Record the batch, then launch its queues in a background thread: at most
        `max_parallel` loader Jobs at once, the next as soon as one ends. Queues already
        launched (by any process) are not launched again. Returns at once; `wait()` waits.

        `launcher`: "local", "kubernetes" or a Launcher; default, the one the batch was
        launched with before, else "local". Options go to the launcher. A batch id is
        launched once: a second new Batch of the same id gets `QueueExists` (`Batch.open`
        reopens the first to go on).
        """
        check_count("max_parallel", max_parallel)
        if self._launching is not None and self._launching.is_alive():
            raise StreamForgeError(f"{self!r} is launching already; pause() first")
        if launcher is None and self._record.get("launcher") and not options:
            kind, recorded = self._record["launcher"], dict(self._record["launcher_options"])
            if kind == "local":  # its Jobs get this batch's settings, as at the first launch
                recorded["settings"] = self.settings
            runner = launcher_for(kind, recorded)
        else:
            if (launcher or "local") == "local":
                options.setdefault("settings", self.settings)
            runner = get_launcher(launcher or "local", **options)
        self._runner, self._failure = runner, None
        self._save(status="launching", launcher=runner.name,
                   launcher_options=runner.options(), max_parallel=max_parallel)  # fmt: skip
        self._pause.clear()
        self._launching = threading.Thread(
            target=self._launch_all, args=(runner, max_parallel),
            name=f"{self.batch_id}-launch", daemon=True,
        )  # fmt: skip
        self._launching.start()
        return self

    def pause(self, timeout: float = 60.0) -> None:
        """Launch no more queues (those running go on); `launch()` resumes."""
        self._pause.set()
        if self._launching is not None:
            self._launching.join(timeout)

    @property
    def launching(self) -> bool:
        """Tell whether the background launch is still starting queues."""
        return self._launching is not None and self._launching.is_alive()

    def launched(self) -> set[str]:
        """Return the ids of the batch's queues that have a queue-state record."""
        with CandleStore.open(self.store_url, settings=self.settings) as store:
            return {r["queue_id"] for r in store.queue_states() if r.get("queue_id") in self._ids}

    def _launch_all(self, runner: Launcher, most: int) -> None:
        try:
            done = launch_paced(self.workflows, self.launched(), runner, most, self._pause)
            self._save(status="launched" if done else "paused")
        except BaseException as exc:  # raised by wait(); a thread has no one to raise to
            log.error("launching %s failed: %s", self.batch_id, exc)
            self._failure = exc

    def _save(self, **changes: Any) -> None:
        with self._lock:
            record = {**self._record, **changes, "updated_at": time.time()}
            first = "created_at" not in record
            record.setdefault("created_at", record["updated_at"])
            with CandleStore.open(self.store_url, settings=self.settings) as store:
                if first:  # the batch id's first launch: of racing ones, one gets it
                    store.create_queue_state(record)
                else:
                    store.save_queue_state(record)
            self._record = record

    def queue(self, queue_id: str) -> Queue:
        """Return the handle of one of the batch's queues (closed with the batch)."""
        if queue_id not in self._ids:
            raise StreamForgeError(f"{queue_id!r} is not a queue of {self!r}")
        with self._lock:
            if queue_id not in self._queues:
                self._queues[queue_id] = Queue(
                    queue_id, self.settings, launcher=self._runner, store=self.store_url
                )
            return self._queues[queue_id]

    # -- stopping ----------------------------------------------------------------------------
    def stop(self, *, timeout: float = 30.0) -> dict[str, str]:
        """Launch no more queues and send `stop` to every running one; return, per queue,
        the producers that acknowledged (or why none did)."""
        return self._each(lambda q: ", ".join(q.stop(timeout=timeout)) or "-", "stopped")

    def cancel(self, grace: float = 30.0) -> dict[str, str]:
        """Launch no more queues and cancel every running one (`Queue.cancel`: stop, then
        delete its Jobs); return, per queue, how each producer ended."""

        def one(queue: Queue) -> str:
            frame = queue.cancel(grace)
            return ", ".join(f"{p}: {how}" for p, how in frame["cancel"].items())

        return self._each(one, "cancelled")

    def _each(self, action: Any, status: str) -> dict[str, str]:
        self.pause()
        frame = self.status()
        running = [q for q, s in frame["status"].items()
                   if s != "waiting" and s not in ENDED_STATUSES]  # fmt: skip
        results: dict[str, str] = {}

        def run(queue_id: str) -> None:
            try:
                results[queue_id] = action(self.queue(queue_id))
            except StreamForgeError as exc:
                results[queue_id] = f"{type(exc).__name__}: {exc}"

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"{self.batch_id}-") as pool:
            list(pool.map(run, running))
        if running:
            self._save(status=status)
        return results

    # -- lifecycle and display ---------------------------------------------------------------
    def panel(self, **options: Any) -> Any:
        """Return an ipywidgets panel of the batch's queues (`ui.batch_panel.BatchPanel`)."""
        from streamforge_nb.registry import PANELS

        panel = PANELS.get("batch")(self, **options)
        self._panels.append(panel)
        return panel.widget

    def close(self) -> None:
        """Close the panels, queue handles and telemetry reader (the launch thread goes on
        until paused)."""
        for panel in self._panels:
            panel.close()
        self._panels.clear()
        for queue in self._queues.values():
            queue.close()
        self._queues.clear()
        if self._reader is not None:
            self._reader.close()

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
