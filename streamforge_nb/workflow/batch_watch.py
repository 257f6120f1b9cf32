"""`BatchWatching`: how a batch's queues are doing (the methods `Batch` has for status,
waiting and lag), apart from planning, launching and stopping them (`workflow.batch`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from streamforge_nb.control.queue_telemetry import DEFAULT_WAIT_S
from streamforge_nb.control.telemetry import ENDED_STATUSES, safe_timestamp
from streamforge_nb.exceptions import QueueTimeout, StreamForgeError
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.workflow.shards import BatchPlan

if TYPE_CHECKING:
    import pandas as pd

    from streamforge_nb.control.state import HistoryReader

__all__ = ["BatchWatching"]


class BatchWatching:
    """Status, wait and lag of a batch's queues (mixed into `Batch`)."""

    batch_id: str
    settings: Settings
    store_url: str | None
    _plan: BatchPlan
    _ids: set[str]
    _lock: threading.Lock
    _reader: HistoryReader | None
    _failure: BaseException | None

    @property
    def launching(self) -> bool:
        """Tell whether the background launch is still starting queues."""
        raise NotImplementedError

    def status(self) -> pd.DataFrame:
        """Return one row per queue: symbol, interval, range, status, records, rate, error.

        Queues not launched yet are `waiting`; the others' queue state is refreshed from
        telemetry and their launcher first.
        """
        return self._status(None)

    def _status(self, deadline: float | None) -> pd.DataFrame:
        import pandas as pd

        from streamforge_nb.control.state import HistoryReader, refresh

        with self._lock:
            # One reader for the batch's life: each poll reads only what arrived since the
            # last (a new consumer folding every queue's history again cost 30-60 ms a poll).
            if self._reader is None:
                self._reader = HistoryReader(self.settings, self._ids)
            reader = self._reader
        with CandleStore.open(self.store_url, settings=self.settings) as store:
            records = {
                r["queue_id"]: r
                for r in refresh(store, self.settings, self._ids, reader=reader, deadline=deadline)
            }
        rows = []
        for shard in self._plan.shards:
            record = records.get(shard.queue_id, {})
            created = safe_timestamp(record.get("created_at"))
            updated = safe_timestamp(record.get("updated_at"))
            written = int(record.get("records_written") or 0)
            took = (updated - created) if created and updated else 0.0
            rows.append({
                "queue_id": shard.queue_id, "symbol": shard.symbol, "interval": shard.interval,
                "time_range": shard.time_range, "candles": shard.candles,
                "status": record.get("status", "waiting"), "records_written": written,
                "rate": round(written / took, 1) if took > 0 else 0.0,
                "error": record.get("error_message"),
            })  # fmt: skip
        return pd.DataFrame(rows).set_index("queue_id")

    def wait(
        self, timeout: float | None = DEFAULT_WAIT_S, *, progress: bool = True
    ) -> pd.DataFrame:
        """Block until every launched queue ended and nothing is left to launch (or the
        launch was paused); return `status()`. One progress bar (records of the batch).

        Always ends: then, or at `timeout` (None: as long as it takes) with `QueueTimeout`
        naming the count per status; a failed background launch is raised here.
        """
        from tqdm.auto import tqdm

        deadline = None if timeout is None else time.monotonic() + timeout
        bar = tqdm(desc=self.batch_id, total=self._plan.candles, unit=" candles",
                   disable=not progress)  # fmt: skip
        try:
            while True:
                launching = self.launching
                frame = self._status(deadline)
                counts = frame["status"].value_counts().to_dict()
                bar.n = int(frame["records_written"].sum())
                bar.set_postfix_str(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
                if self._failure is not None:
                    raise StreamForgeError(
                        f"launching {self.batch_id} failed: {self._failure}"
                    ) from self._failure
                launched = frame[frame["status"] != "waiting"]
                if not launching and launched["status"].isin(ENDED_STATUSES).all():
                    bar.refresh()
                    return frame
                if deadline is not None and time.monotonic() > deadline:
                    seen = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                    raise QueueTimeout(
                        f"batch {self.batch_id} still running after {timeout:g} s: {seen}"
                    )
                time.sleep(1.0)
        finally:
            bar.close()

    def lag(
        self, *, live: bool = False, since: Any = None, until: Any = None, points: int | None = 200
    ) -> pd.DataFrame:
        """Return the sinks' lag over time of every queue (`Queue.lag`, the same window and
        resolution), with a `queue_id` column first; queues with no lag sample yet add no row.

        Each partition of queue-events is read once for all the queues it holds.
        """
        from streamforge_nb.control.lag_read import read_queues_lag, window_time

        return read_queues_lag(
            self.settings, list(self._ids), since=window_time(since), until=window_time(until),
            points=points, live=live,
        )  # fmt: skip

    def lag_status(
        self, *, live: bool = True, window: int = 10, stale_s: float = 120.0
    ) -> pd.DataFrame:
        """Judge each sink group of the batch: ok, lagging, stalled or rewinding (rule in
        `control.lag.judge_lag`); one row per group, with its queue."""
        from streamforge_nb.control.lag import judge_queues

        return judge_queues(self.lag(live=live), window=window, stale_s=stale_s)
