"""`QueueJobs`: a queue's Jobs, as the launcher that started them sees them.

The launcher is given to `Queue`, or reattached from the queue's state record (kind,
namespace, context) on first need, so `jobs()`, `logs()` and a status merged with the Jobs'
own work hold in any process. Mixed into `Queue` (control/queue.py).
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from streamforge_nb.control.telemetry import JobView, safe_timestamp
from streamforge_nb.exceptions import StreamForgeError
from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["QueueJobs"]

# The Queue's logger, as before its Jobs had a module of their own.
log = logging.getLogger("streamforge_nb.control.queue")
_JOBS_TTL_S = 1.0  # how long the launcher's answer is reused (the API server is not polled)


class QueueJobs:
    """The Jobs of one queue and the launcher that started them (mixed into `Queue`)."""

    queue_id: str
    settings: Settings
    store: str | None
    since: float | None
    # The launcher that started this queue's Jobs (a `launchers.Launcher`), if known.
    launcher: Any
    _looked_up: bool
    _record_read: bool
    _record: dict[str, Any] | None  # its queue-state record, once looked up
    _reattach_lock: threading.Lock
    _jobs_cache: tuple[float, builtins.list[JobView]] | None

    def jobs(self) -> pd.DataFrame:
        """Return the queue's Jobs as its launcher sees them (name, target, state)."""
        import pandas as pd

        statuses = self._launcher().list(self.queue_id)
        return pd.DataFrame(
            [vars(s) for s in statuses], columns=["name", "queue_id", "target", "state", "detail"]
        ).set_index("name")

    def logs(self, target: str | None = None) -> str:
        """Return the output of the queue's Jobs (one target's, or all of them)."""
        runner = self._launcher()
        return "\n".join(
            runner.logs(job.name)
            for job in runner.list(self.queue_id)
            if target is None or job.target == target
        )

    def _jobs_running(self) -> bool:
        return any(j.state in ("active", "pending") for j in self._job_views())

    def _job_views(self, *, fresh: bool = False) -> builtins.list[Any]:
        # launchers.JobStatus, a telemetry.JobView with a name
        """The launcher's Jobs of this queue ([] without one), reused for a second."""
        launcher = self._reattach()
        if launcher is None:
            return []
        now = time.monotonic()
        cached = self._jobs_cache
        if cached is not None and not fresh and now - cached[0] < _JOBS_TTL_S:
            return cached[1]
        try:
            jobs = builtins.list(launcher.list(self.queue_id))
        except StreamForgeError as exc:  # telemetry alone, rather than no status
            log.warning("could not list the Jobs of %s: %s", self.queue_id, exc)
            jobs = cached[1] if cached is not None else []
        self._jobs_cache = (now, jobs)
        return jobs

    def _reattach(self, *, record: bool = False) -> Any:
        """Return the launcher, reattaching the one queue state records (once); or None.

        With `record`, the queue-state record is read even when the launcher was given.
        """
        with self._reattach_lock:
            if not self._looked_up or (record and not self._record_read):
                self._lookup()
                self._looked_up = self._record_read = True
        return self.launcher

    def _lookup(self) -> None:
        from streamforge_nb.control.launchers import launcher_for
        from streamforge_nb.store.candles import CandleStore

        try:
            with CandleStore.open(
                self.store or self.settings.arango_url, settings=self.settings
            ) as store:
                record = store.queue_state(self.queue_id)
            self._record = record
            if record is not None and record.get("launcher") and self.launcher is None:
                self.launcher = launcher_for(
                    record["launcher"], record.get("launcher_options") or {}
                )
                if self.since is None:
                    self.since = safe_timestamp(record.get("created_at"))
        except Exception as exc:  # no store, no kubeconfig: telemetry alone
            log.warning("could not reattach the launcher of %s: %s", self.queue_id, exc)

    def _launcher(self) -> Any:
        if self._reattach() is None:
            raise StreamForgeError(
                f"{self!r} does not know its launcher and its queue state records none; "
                "pass launcher= (e.g. LocalLauncher()) or store= (where it was launched)"
            )
        return self.launcher
