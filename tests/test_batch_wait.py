"""Waiting on a batch: every poll reads only what arrived since the last, with one consumer
for the whole wait, and ends with the same final states, records and errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from streamforge_nb.control.state import new_record
from streamforge_nb.exceptions import QueueTimeout
from streamforge_nb.kafka.clients import make_consumer
from streamforge_nb.kafka.send import send_event
from streamforge_nb.platform.contract import Error, Finished, Loading, Started
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.workflow.plan import Workflow

PRODUCER = "dummy__abc123"


@pytest.fixture
def consumers(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The (real) consumers queue state is read with, as they are made."""
    made: list[Any] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(make_consumer(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr("streamforge_nb.control.state.make_consumer", counted)
    return made


def _launched(store_url: str, queue_id: str, symbol: str) -> None:
    """Record a launch as `Workflow.launch` does first (no launcher to ask about Jobs)."""
    record = new_record(
        queue_id=queue_id, symbol=symbol, type_="api_candles_1h", targets=["dummy"],
        parameters={}, data_topic=f"{queue_id}-data", outputs={}, launcher="", jobs=[],
    )  # fmt: skip
    with CandleStore.open(store_url) as store:
        store.save_queue_state(record)


def test_a_batchs_wait_reads_each_event_once_over_many_polls(
    settings: Settings, tmp_path: Path, consumers: list[Any]
) -> None:
    """A wait polls every second while the batch runs (45 s for 5 symbols x a year): a new
    consumer folding every queue's history again at each poll cost 30-60 ms of CPU a poll.
    One consumer serves the whole wait, a queue launched while it waits included."""
    store_url = f"local://{tmp_path / 'store'}"
    batch = Workflow.candles(
        ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "1h", "2024-08-01:2024-08-03", settings=settings,
        store=store_url,
    )  # fmt: skip
    shards = batch.plan().shards
    first, second, third = (s.queue_id for s in shards)
    for shard in shards[:2]:
        _launched(store_url, shard.queue_id, shard.symbol)
    # Bounded with a reason while nothing has reported.
    with pytest.raises(QueueTimeout, match=r"still running after 0.5 s: 2 launched, 1 waiting"):
        batch.wait(timeout=0.5, progress=False)

    def run() -> None:
        # A step per poll or so (a wait polls once a second): the wait reads as they come.
        for step in (
            [(first, Started, 0), (second, Started, 0)],
            [(first, Loading, 10), (second, Loading, 5)],
            [(third, Started, 0), (first, Finished, 24)],
            [(second, Error, 5), (third, Finished, 24)],
        ):
            for queue_id, status, records in step:
                if queue_id == third and status is Started:  # launched while the wait polls
                    _launched(store_url, third, shards[2].symbol)
                message = "the exchange said no" if status is Error else None
                send_event(settings, status(queue_id=queue_id, producer=PRODUCER,
                                            records_written=records, message=message))  # fmt: skip
            time.sleep(1.2)

    sender = threading.Thread(target=run, daemon=True)
    sender.start()
    try:
        final = batch.wait(timeout=120, progress=False)
    finally:
        sender.join()
        batch.close()
    shown = final.loc[[first, second, third], ["status", "records_written", "error"]]
    assert shown.fillna({"error": "-"}).to_dict("index") == {
        first: {"status": "finished", "records_written": 24, "error": "-"},
        second: {"status": "error", "records_written": 5, "error": "the exchange said no"},
        third: {"status": "finished", "records_written": 24, "error": "-"},
    }
    # Every poll of both waits (a dozen or so) read on with the first poll's consumer.
    assert len(consumers) == 1
