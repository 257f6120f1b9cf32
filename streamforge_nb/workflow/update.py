"""`CandleStore.update`'s launching half: one candle Workflow per series that needs loading.

The store plans (`CandleStore.plan_update`: from the last stored candle to the last closed
one); this module, in the workflow layer, makes and launches the Workflows. It is found by
the store through `registry.UPDATERS` ("candles"), so the store never imports workflows.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from streamforge_nb.store.update import Updated, split_options
from streamforge_nb.workflow.plan import Workflow

if TYPE_CHECKING:
    from streamforge_nb.store.candles import CandleStore

__all__ = ["update_candles"]


def update_candles(
    store: CandleStore,
    symbols: str | Iterable[str],
    intervals: str | Iterable[str],
    *,
    since: Any = None,
    now: datetime | None = None,
    **options: Any,
) -> Updated:
    """Launch a candle Workflow into `store` for each series `store.plan_update` says needs it.

    `options`: the Workflow's keywords go to each Workflow, the rest to its `launch`. Every
    Workflow is made (and so validated) before the first launch. Returns the queues.
    """
    when = now or datetime.now(UTC)
    series = store.plan_update(symbols, intervals, since=since, now=when)
    keywords = set(inspect.signature(Workflow.__init__).parameters) - {"store", "now", "self"}
    wf_options, launch_options = split_options(options, keywords)
    workflows = [
        Workflow.candles(
            s.symbol, s.interval, s.time_range, store=store.url, now=when, **wf_options
        )
        for s in series
        if s.needed
    ]
    return Updated([wf.launch(**launch_options) for wf in workflows], series)
