"""The README's main job, end to end on the local default (its own broker, home and store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.quickstart import run_quickstart


def test_quickstart_loads_the_sample_into_the_embedded_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMFORGE_HOME", str(tmp_path))
    lines: list[str] = []
    try:
        result = run_quickstart(pings=2, echo=lines.append)
    finally:
        LocalBroker(tmp_path).down()
    assert len(result.round_trips_s) == 2
    assert result.candles == 1440 and result.gaps == 0
    assert result.chart.is_file() and "plotly" in result.chart.read_text()[:5000].lower()
    assert any("GENERATED sample" in line for line in lines)
    assert (tmp_path / "store" / "candles" / "BTCUSDT").is_dir()
    # The data plane ran as local notebook Jobs: their executed notebooks are the record.
    executed = sorted(p.name for p in (tmp_path / "runs" / result.queue_id).iterdir())
    assert executed == ["arango-candles.ipynb", "loader-candles.ipynb"]
