"""A batch's lag: every queue's sink lag in one frame, and a judgement per group."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_lag import assert_sampled, events_topic, fill, write_reports

from streamforge_nb.control.lag import LAG_COLUMNS
from streamforge_nb.platform.names import data_topic
from streamforge_nb.settings import Settings
from streamforge_nb.workers.sink import SinkOptions, run_sink
from streamforge_nb.workflow.plan import Workflow


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMFORGE_HOME", str(tmp_path))
    return tmp_path


def test_batch_lag_joins_its_queues_and_judges_each_group(settings: Settings, home: Path) -> None:
    store_url = f"local://{home / 'store'}"
    batch = Workflow.candles(["BTCUSDT", "ETHUSDT", "SOLUSDT"], "1m", "2024-08-01:2024-08-02",
                             store=store_url, settings=settings)  # fmt: skip
    ids = sorted(s.queue_id for s in batch.plan().shards)
    assert len(ids) == 3
    try:
        assert batch.lag().empty  # nothing ran yet: no sample, the same columns
        assert list(batch.lag().columns) == ["queue_id", *LAG_COLUMNS]
        # Two queues' sinks read their topics (1500 and 2500 candles); the third never runs.
        for qid, count in zip(ids[:2], (1500, 2500), strict=True):
            fill(settings, data_topic(qid), 0, count)
            options = SinkOptions(queue_id=qid, store_url=store_url, wait_for_loader=False,
                                  batch_size=1000, batch_seconds=5.0, report_every=0.0)  # fmt: skip
            assert run_sink(options, settings) == 0
        frame = batch.lag()
        judged = batch.lag_status()
    finally:
        batch.close()
    assert list(frame.columns) == ["queue_id", *LAG_COLUMNS]
    assert set(frame["queue_id"]) == set(ids[:2])
    for qid, count in zip(ids[:2], (1500, 2500), strict=True):
        own = frame[frame["queue_id"] == qid]
        assert set(own["group"]) == {f"{qid}-sink"}
        assert own["end"].max() == count
        assert own["committed"].is_monotonic_increasing
    assert judged["queue_id"].to_dict() == {f"{q}-sink": q for q in ids[:2]}
    assert set(judged["status"]) == {"ok"}
    assert judged["messages_behind"].tolist() == [0, 0]


def test_batch_lag_over_a_long_window_reads_each_queue_at_the_resolution(
    settings: Settings, home: Path
) -> None:
    """Two queues' reports share one partition of queue-events: one read gives each queue its
    bucket samples and its newest reports in full, and says the resolution."""
    own = events_topic(settings)
    batch = Workflow.candles(["BTCUSDT", "ETHUSDT"], "1m", "2024-08-01:2024-08-02",
                             store=f"local://{home / 'store'}", settings=own)  # fmt: skip
    ids = sorted(s.queue_id for s in batch.plan().shards)
    start = float(int(time.time()) - 6000 * 60 - 120)
    write_reports(own, ids, 6000, start)
    try:
        frame = batch.lag(since=start, until=start + 6000 * 60, points=10)
    finally:
        batch.close()
    assert list(frame.columns) == ["queue_id", *LAG_COLUMNS]
    assert frame["queue_id"].drop_duplicates().tolist() == ids
    for qid in ids:
        own_rows = frame[frame["queue_id"] == qid].reset_index(drop=True)
        assert set(own_rows["group"]) == {f"{qid}-sink"}
        own_rows.attrs = frame.attrs
        assert_sampled(own_rows.drop(columns="queue_id"), start + ids.index(qid))
