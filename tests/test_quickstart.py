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
    # The quickstart has no port option: its broker starts on the home's previous ports (9092
    # on a first start). Free ports chosen once (`local up --port 0`, then down) keep it off
    # the machine's 9092-9094, and the quickstart still starts its broker itself.
    broker = LocalBroker(tmp_path)
    chosen = broker.up(port=0).plaintext
    broker.down()
    assert chosen and not chosen.endswith(":9092")
    lines: list[str] = []
    try:
        result = run_quickstart(pings=2, echo=lines.append)
    finally:
        broker.down()
    assert any(line.startswith(f"using kafka {chosen} ") for line in lines), lines
    assert len(result.round_trips_s) == 2
    assert result.candles == 1440 and result.gaps == 0
    assert result.chart.is_file() and "plotly" in result.chart.read_text()[:5000].lower()
    assert any("GENERATED sample" in line for line in lines)
    assert (tmp_path / "store" / "candles" / "BTCUSDT").is_dir()
    # The data plane ran as local notebook Jobs: their executed notebooks are the record.
    executed = sorted(p.name for p in (tmp_path / "runs" / result.queue_id).iterdir())
    assert executed == ["arango-candles.ipynb", "loader-candles.ipynb"]
