"""LaunchPanel: inline errors launch nothing; a launch shows progress and a live chart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streamforge_nb.settings import Settings
from streamforge_nb.testing.exchange import ExchangeServer
from streamforge_nb.ui.launch_panel import LaunchPanel


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMFORGE_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("symbol", "BTC/USDT", "BTC/USDT"), ("time_range", "2024-08-02:2024-08-01", "2024-08-02")],
)
def test_invalid_input_shows_an_inline_error_and_launches_nothing(
    settings: Settings, home: Path, field: str, value: str, message: str
) -> None:
    panel = LaunchPanel(settings=settings, store=f"local://{home / 'store'}")
    getattr(panel, field).value = value
    panel.launch_button.click()
    assert message in panel.error.value
    assert panel.queue is None
    assert not (home / "jobs").exists() and not (home / "store").exists()
    panel.close()


def test_launch_shows_progress_and_a_chart_of_the_stored_candles(
    settings: Settings, home: Path
) -> None:
    with ExchangeServer() as exchange:
        panel = LaunchPanel(
            symbol="ETHUSDT",
            interval="15m",
            time_range="2024-08-01:2024-08-02",
            base_url=exchange.base_url,
            store=f"local://{home / 'store'}",
            settings=settings,
            refresh_s=0.5,
        )
        panel.launch_button.click()
        assert panel.queue is not None, panel.error.value
        deadline = time.monotonic() + 120
        while not panel.refresh():
            assert time.monotonic() < deadline, panel.progress_label.value
            time.sleep(0.5)
    assert panel.progress.value == panel.progress.max == 96
    assert "96 candles stored" in panel.progress_label.value
    (chart,) = panel.chart.outputs
    figure = chart["data"]["application/vnd.plotly.v1+json"]
    assert [t["type"] for t in figure["data"]] == ["candlestick", "bar"]
    assert "96 candles" in figure["layout"]["title"]["text"]
    assert panel.queue_box.children  # the queue's Ping/Stop panel
    panel.close()
