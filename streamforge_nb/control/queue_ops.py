"""`QueueOperations`: what an operator asks of a queue beside its control (the methods
`Queue` has for dead letters, redrive, lag and the data topic's messages).

Each hands off to its own module (`control.dlq`, `control.redrive`, `control.lag_read`,
`control.messages`), imported on use: a notebook that only pings never loads them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamforge_nb.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["QueueOperations"]


class QueueOperations:
    """Dead letters, redrive, lag and messages of one queue (mixed into `Queue`)."""

    queue_id: str
    settings: Settings
    store: str | None
    since: float | None

    def dead_letters(self, *, limit: int | None = 100_000) -> pd.DataFrame:
        """Return the messages the sink refused to the queue's DLQ, one row each, `limit` at
        most (columns in `control.dlq.DEAD_LETTER_COLUMNS`; values are not kept)."""
        from streamforge_nb.control.dlq import read_dead_letters
        from streamforge_nb.platform.names import data_topic, dlq_topic

        return read_dead_letters(self.settings, dlq_topic(data_topic(self.queue_id)), limit=limit)

    def redrive(
        self,
        where: Any = None,
        fix: Callable[[Any], Any] | None = None,
        dry_run: bool = True,
        *,
        store: Any = None,
        time_range: str | None = None,
    ) -> Any:
        """Republish chosen dead letters that pass the sink's checks (`control.redrive`).

        `where`: a `dead_letters()` query string or a callable returning a mask (None: all);
        `fix(value)`: the new value, or (key, value), or None to leave the letter out;
        `dry_run` (the default) sends nothing. `store` (a CandleStore or URL; default the
        queue's): gaps before and after. `time_range`: the sink's TIME_RANGE, else the range
        the queue id implies.
        Returns a `Redrive`: its plan, the windows a backfill would load, the gaps.
        """
        from streamforge_nb.control.redrive import queue_series, queue_span, redrive
        from streamforge_nb.platform.names import data_topic

        topic = data_topic(self.queue_id)
        return redrive(
            self.settings, self.queue_id, where=where, fix=fix, dry_run=dry_run,
            store=store if store is not None else self.store,
            span=queue_span(topic, self.queue_id, time_range),
            series=queue_series(topic, self.queue_id),
        )  # fmt: skip

    def lag(
        self, *, live: bool = False, since: Any = None, until: Any = None, points: int | None = 200
    ) -> pd.DataFrame:
        """Return the sinks' lag over time: one row per sample, group and partition.

        From the lag samples the sinks put in their progress reports, `since` to `until`
        (2h, @<Unix ms>, ISO, a datetime or Unix s; default: the queue's start, now). A long
        window is read at a resolution (`control.lag_read`): the first sample of each of
        `points` time buckets, the newest samples in full; `frame.attrs["resolution"]` says
        which (`points=None`: every sample). `live`: plus each group's offsets now (`source`
        `live`). `lag_status()` judges each group.
        """
        from streamforge_nb.control.lag_read import read_queues_lag, window_time

        start = window_time(since)
        return read_queues_lag(
            self.settings, [self.queue_id], since=self.since if start is None else start,
            until=window_time(until), points=points, live=live,
        ).drop(columns="queue_id")  # fmt: skip

    def lag_status(
        self, *, live: bool = True, window: int = 10, stale_s: float = 120.0
    ) -> pd.DataFrame:
        """Judge each sink group: ok, lagging, stalled or rewinding (rule in
        `control.lag.judge_lag`), over its latest `window` samples and a live read."""
        from streamforge_nb.control.lag import judge_lag

        return judge_lag(self.lag(live=live), window=window, stale_s=stale_s)

    def messages(
        self,
        since: str | int | None = None,
        until: str | int | None = None,
        *,
        key: str | None = None,
        partition: int | None = None,
        limit: int | None = 10_000,
    ) -> pd.DataFrame:
        """Return the data topic's messages from `since` (2h, ISO, @ms, or Unix ms; None: the
        start) to the end or `until`, `limit` at most, in kcat's `-J` envelope (one column
        per field), found by the broker's offsets-for-times lookup."""
        import pandas as pd

        from streamforge_nb.control.messages import browse, parse_time
        from streamforge_nb.platform.names import data_topic

        def ms(value: str | int | None) -> int | None:
            return value if value is None or isinstance(value, int) else parse_time(value)

        found = browse(
            self.settings, data_topic(self.queue_id), since=ms(since), until=ms(until),
            key=key, partition=partition, limit=limit,
        )  # fmt: skip
        columns = ["topic", "partition", "offset", "tstype", "ts", "broker", "headers", "key"]
        return pd.DataFrame(list(found), columns=[*columns, "payload"])
