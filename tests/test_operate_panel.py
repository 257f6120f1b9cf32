"""The panels' operating views with real ipywidgets on the real broker: the queue panel's lag
sparkline and its DLQ tab (read, dry-run preview, redrive behind a confirmation), the batch
panel's lag per queue."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# Imported here, not first by a panel's thread (see test_widgets.py).
import numpy  # noqa: F401
import pytest
from test_dlq import candle, send
from test_lag import fill
from test_widgets import eventually

from streamforge_nb.control.queue import Queue
from streamforge_nb.platform.names import data_topic, dlq_topic, new_short_id, queue_id
from streamforge_nb.settings import Settings
from streamforge_nb.testing import read_topic
from streamforge_nb.ui.batch_panel import BatchPanel
from streamforge_nb.ui.panel import QueuePanel
from streamforge_nb.workers.sink import SinkOptions, dlq_headers, run_sink
from streamforge_nb.workflow.plan import Workflow


def new_queue() -> str:
    import datetime as dt

    return queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 1), new_short_id())


def run(settings: Settings, qid: str, store_url: str) -> None:
    options = SinkOptions(queue_id=qid, store_url=store_url, wait_for_loader=False,
                          batch_size=1000, batch_seconds=5.0, report_every=0.0)  # fmt: skip
    assert run_sink(options, settings) == 0


def click_and_wait(panel: Any, button: Any) -> None:
    button.click()
    assert panel.wait(120), "the panel's action did not finish"


def test_the_queue_panel_draws_the_sinks_lag_as_it_reports(
    settings: Settings, tmp_path: Path
) -> None:
    qid = new_queue()
    fill(settings, data_topic(qid), 0, 3000)
    with Queue(qid, settings) as queue:
        panel = QueuePanel(queue)
        try:
            assert panel.lag_label.value == "lag: no sample yet"
            run(settings, qid, f"local://{tmp_path}")  # a report per batch of 1000
            eventually(lambda: len(panel.lag.totals) >= 3, "three lag samples", 60)
            totals = list(panel.lag.totals)
            text = panel.lag_label.value
        finally:
            panel.close()
    assert totals[0] > 0 and totals[-1] == 0  # the first batch left most; the last none
    match = re.fullmatch(r"lag ([▁-█]+)  0 messages behind", text)
    assert match, text
    assert len(match[1]) == len(totals) and match[1][0] == "█" and match[1][-1] == "▁"


def _letter(settings: Settings, qid: str, minute: int, **changes: object) -> None:
    """Put a dead letter into the queue's DLQ as its sink would (the reason and source)."""
    key, value = candle(minute, **changes)
    headers = dlq_headers("refused by an older sink", data_topic(qid), 0, minute, [])
    send(settings, dlq_topic(data_topic(qid)), [(key, value, headers)])


def test_the_dlq_tab_reads_previews_and_redrives_only_after_a_confirmation(
    settings: Settings,
) -> None:
    qid = new_queue()
    _letter(settings, qid, 3)  # a good candle: today's checks pass it
    _letter(settings, qid, 4, open="-5")  # refused again: no redrive sends it
    with Queue(qid, settings) as queue:
        panel = QueuePanel(queue)
        tab = panel.dlq
        try:
            assert panel.tabs.titles == ("Queue", "Dead letters")
            click_and_wait(panel, tab.read_button)
            assert tab.count.value == "2 dead letters"
            assert "refused by an older sink" in tab.reasons.value
            assert tab.redrive_button.disabled  # nothing previewed yet

            click_and_wait(panel, tab.preview_button)
            assert "2 dead letters chosen: would redrive 1, 1 refused" in tab.plan.value
            assert "open -5" in tab.plan.value
            assert not tab.redrive_button.disabled
            tab.where.value = "reason_class == 'number'"  # another choice: preview it first
            assert tab.redrive_button.disabled
            tab.where.value = ""
            click_and_wait(panel, tab.preview_button)

            tab.redrive_button.click()
            assert tab.confirm_box.layout.display is None  # asks first
            tab.cancel_button.click()
            assert tab.confirm_box.layout.display == "none"
            assert read_topic(settings, data_topic(qid)) == []  # the cancel sent nothing

            _letter(settings, qid, 5)  # arrives after the preview: not sent
            tab.redrive_button.click()
            click_and_wait(panel, tab.confirm_button)
            assert tab.result is not None and tab.result.sent == 1, panel.status_label.value
            assert "redrove 1" in tab.plan.value
            assert tab.count.value == "3 dead letters"  # read again after the redrive
        finally:
            panel.close()
    (sent,) = read_topic(settings, data_topic(qid))
    assert sent.key == candle(3)[0]
    assert dict(sent.headers)["redriven-from"].startswith(dlq_topic(data_topic(qid)).encode())


def test_the_batch_panel_shows_each_queues_lag(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMFORGE_HOME", str(tmp_path))
    store_url = f"local://{tmp_path / 'store'}"
    batch = Workflow.candles(["BTCUSDT", "ETHUSDT"], "1m", "2024-08-01:2024-08-02",
                             store=store_url, settings=settings)  # fmt: skip
    ran, idle = sorted(s.queue_id for s in batch.plan().shards)
    fill(settings, data_topic(ran), 0, 2000)
    run(settings, ran, store_url)
    panel = BatchPanel(batch, refresh_s=60)
    try:
        click_and_wait(panel, panel.lag_button)
        shown = panel.lag_view.value
    finally:
        panel.close()
        batch.close()
    assert f"<code>{ran}</code>" in shown and idle not in shown
    assert re.search(r"<td>ok</td><td[^>]*>lag [▁-█]+  0 messages behind</td>", shown), shown
