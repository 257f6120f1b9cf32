"""CoveragePanel with real ipywidgets objects over a real embedded store; a confirmed
backfill launches through Workflow against the real broker (`settings`), with a launcher
that records the Jobs it is given instead of starting them.

GENERATED candles (`testing.CandleGenerator`, not market data)."""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_market import AUG1, MIN, generated  # tests/ is on sys.path (rootdir, no package)

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.ui.coverage_panel import CoveragePanel
from streamforge_nb.workflow.launchers import JobStatus, Launcher

HOUR = 60 * MIN
NOW = datetime(2024, 9, 15, tzinfo=UTC)


class RecordingLauncher(Launcher):
    """A launcher that keeps the Jobs it is asked to start (nothing runs)."""

    name = "recording"

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def submit(self, job: dict[str, Any]) -> str:
        self.jobs.append(job)
        return str(job["metadata"]["name"])

    def list(self, queue_id: str) -> builtins.list[JobStatus]:
        return []

    def delete(self, queue_id: str, *, grace: float = 30.0) -> builtins.list[str]:
        return []

    def logs(self, job_name: str) -> str:
        return ""


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    """BTCUSDT 1h over August 2024 with two holes (3 and 5 hours), one of them partly
    exchange-empty; ETHUSDT 1h whole."""
    store = CandleStore.open(tmp_path / "store")
    month = generated("BTCUSDT", "1h", AUG1, AUG1 + 31 * 24 * HOUR)
    holes = list(range(10, 13)) + list(range(100, 105))
    store.write(month.drop(month.index[holes]), "BTCUSDT", "1h")
    store.write_exchange_empty("BTCUSDT", "1h", [(AUG1 + 103 * HOUR, AUG1 + 105 * HOUR)])
    store.write(generated("ETHUSDT", "1h", AUG1, AUG1 + 31 * 24 * HOUR), "ETHUSDT", "1h")
    return store


def test_a_cell_lists_its_gaps_and_backfills_only_after_confirm(
    store: CandleStore, settings: Settings
) -> None:
    launcher = RecordingLauncher()
    panel = CoveragePanel(
        store, "*USDT", "1h", start="2024-08-01", end="2024-09-01", now=NOW,
        launcher=launcher, settings=settings,
    )  # fmt: skip
    cell = panel.cells[("BTCUSDT", "1h", "2024-08-01")]
    whole = panel.cells[("ETHUSDT", "1h", "2024-08-01")]
    assert "missing 6" in cell.tooltip and "exchange-empty 2" in cell.tooltip
    assert cell.style.button_color != whole.style.button_color
    assert panel.backfill_button.disabled
    cell.click()  # as a user's click: the button's own handlers
    assert panel.gaps["kind"].tolist() == ["missing", "missing", "exchange_empty"]
    assert "6 candles missing" in panel.gaps_html.value
    assert not panel.backfill_button.disabled
    panel.backfill_button.click()
    spans = [(wf.plan().time_range.start, wf.plan().time_range.end) for wf in panel.planned]
    assert spans == [
        (utc(AUG1 + 10 * HOUR), utc(AUG1 + 13 * HOUR)),
        (utc(AUG1 + 100 * HOUR), utc(AUG1 + 103 * HOUR)),  # the exchange-empty end not asked
    ]
    assert "nothing launched until Confirm" in panel.plan_html.value
    assert launcher.jobs == [] and panel.queues == []  # a plan only
    assert panel.confirm_button.layout.display != "none"
    ids = [wf.plan().queue_id for wf in panel.planned]
    panel.confirm_button.click()
    assert [q.queue_id for q in panel.queues] == ids
    assert len(launcher.jobs) == 4  # a loader and a sink Job per queue
    assert [store.queue_state(i)["launcher"] for i in ids] == ["recording"] * 2  # type: ignore[index]
    with pytest.raises(InvalidName, match="no backfill planned"):
        panel.confirm()


def utc(ms: int) -> Any:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def test_cancel_and_a_whole_cell_launch_nothing(store: CandleStore) -> None:
    launcher = RecordingLauncher()
    panel = CoveragePanel(store, ["BTCUSDT", "ETHUSDT"], "1h", now=NOW, launcher=launcher)
    panel.cells[("ETHUSDT", "1h", "2024-08-01")].click()
    assert panel.gaps.empty and panel.backfill_button.disabled
    with pytest.raises(InvalidName, match="no backfill planned"):
        panel.confirm()
    panel.cells[("BTCUSDT", "1h", "2024-08-01")].click()
    assert len(panel.plan_backfill()) == 2
    panel.cancel_button.click()
    assert panel.planned == [] and panel.plan_html.value == ""
    with pytest.raises(InvalidName):
        panel.confirm()
    assert launcher.jobs == []
