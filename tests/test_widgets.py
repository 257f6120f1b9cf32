"""QueuePanel against the real broker and a real dummy service subprocess (no Kafka mocks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Imported here, not first by a panel's refresh thread: pytest.approx peeks at
# sys.modules['numpy'] and fails on a module another thread is still importing.
import numpy  # noqa: F401
import pytest

from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import QueueTimeout
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name
from streamforge_nb.ui.panel import QueuePanel
from streamforge_nb.workflow.targets import notebook_path

NOTEBOOK = notebook_path("control_panel.ipynb")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def eventually(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Return check()'s first truthy value, polling; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)
    return value


@pytest.fixture
def dummy(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real dummy service serving a fresh queue id, already answering pings."""
    queue_id = unique_name("wf-panel")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    log_path = tmp_path / "dummy.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamforge_nb.workers.dummy",
             "--queue-id", queue_id, "--metrics-port", "0"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        with Queue(queue_id, settings) as queue:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"dummy exited with {proc.returncode}:\n{log_path.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"dummy never answered a ping:\n{log_path.read_text()}")
                try:
                    queue.ping(timeout=1)
                    break
                except QueueTimeout:
                    pass  # its control listener is not positioned yet: that ping is lost
        yield queue_id, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def open_panel(settings: Settings) -> Iterator[Callable[..., QueuePanel]]:
    """Open QueuePanels on fresh Queues; close both at teardown."""
    opened: list[tuple[Queue, QueuePanel | None]] = []

    def open_(queue_id: str, **options: Any) -> QueuePanel:
        queue = Queue(queue_id, settings)
        opened.append((queue, None))
        panel = QueuePanel(queue, **options)
        opened[-1] = (queue, panel)
        return panel

    yield open_
    for queue, panel in opened:
        if panel is not None:
            panel.close()
        queue.close()


def click_and_wait(panel: QueuePanel, button: Any) -> None:
    button.click()
    assert panel.wait(40), "the panel's action did not finish"


def history_ms(panel: QueuePanel) -> list[float]:
    return [float(v) for v in re.findall(r"\d+\.\d", panel.history_label.value)]


def row_of(panel: QueuePanel, producer: str) -> str:
    rows = [r for r in panel.table.value.split("<tr>") if f"<code>{producer}</code>" in r]
    assert len(rows) == 1, panel.table.value
    return rows[0]


def test_ping_shows_a_real_round_trip_and_its_history(dummy: Any, open_panel: Any) -> None:
    queue_id, _proc = dummy
    panel = open_panel(queue_id, refresh_s=0.1)
    assert panel.rtt_label.value == "no ping yet"

    click_and_wait(panel, panel.ping_button)
    match = re.fullmatch(r"(\d+\.\d) ms", panel.rtt_label.value)
    assert match, panel.rtt_label.value
    assert float(match[1]) > 0
    assert panel.last_rtt_ms == pytest.approx(float(match[1]), abs=0.05)
    assert re.fullmatch(r"pong from dummy__\w+ in \d+\.\d ms", panel.status_label.value)
    assert history_ms(panel) == [float(match[1])]

    click_and_wait(panel, panel.ping_button)
    click_and_wait(panel, panel.ping_button)
    assert len(history_ms(panel)) == 3
    assert list(panel.round_trips_ms) == pytest.approx(history_ms(panel), abs=0.05)
    assert len(panel.history_label.value.split()[0]) == 3  # one sparkline bar per round trip
    assert not panel.ping_button.disabled


def test_history_keeps_the_last_n_round_trips(dummy: Any, open_panel: Any) -> None:
    panel = open_panel(dummy[0], history=2)
    for _ in range(3):
        click_and_wait(panel, panel.ping_button)
    assert len(history_ms(panel)) == 2
    assert history_ms(panel)[-1] == pytest.approx(panel.last_rtt_ms, abs=0.05)


def test_ping_nobody_serves_shows_the_timeout(open_panel: Any) -> None:
    panel = open_panel(unique_name("wf-panel-nobody"), ping_timeout=0.5)
    click_and_wait(panel, panel.ping_button)  # must not raise
    assert "no pong from queue" in panel.status_label.value
    assert "within 0.5 s" in panel.status_label.value
    assert panel.rtt_label.value == "timeout"
    assert panel.last_rtt_ms is None
    assert history_ms(panel) == []
    assert not panel.ping_button.disabled


def test_producer_rows_show_status_and_a_refreshing_age(dummy: Any, open_panel: Any) -> None:
    panel = open_panel(dummy[0], refresh_s=0.1)
    producer = eventually(lambda: next(iter(panel.queue.producers()), None), "a producer row")
    row = eventually(lambda: "s ago" in panel.table.value and row_of(panel, producer), "a row")
    assert ">started</td>" in row  # the fixture's pong refreshes liveness, not the status
    first_age = int(re.findall(r"(\d+) s ago", row)[0])
    eventually(
        lambda: int(re.findall(r"(\d+) s ago", row_of(panel, producer))[0]) > first_age,
        "the age advancing without new events",
    )


def test_stop_needs_confirmation_then_stops_the_dummy(dummy: Any, open_panel: Any) -> None:
    queue_id, proc = dummy
    panel = open_panel(queue_id)
    assert panel.confirm_box.layout.display == "none"

    panel.stop_button.click()
    assert panel.confirm_box.layout.display != "none"
    assert panel.wait(0), "Stop alone started an action"
    time.sleep(1.0)
    assert proc.poll() is None, "Stop without confirmation stopped the dummy"

    panel.cancel_button.click()
    assert panel.confirm_box.layout.display == "none"
    assert not panel.stop_button.disabled
    click_and_wait(panel, panel.ping_button)  # still served
    assert panel.status_label.value.startswith("pong from")

    panel.stop_button.click()
    click_and_wait(panel, panel.confirm_button)
    assert proc.wait(timeout=30) == 0
    producers = list(panel.queue.producers())
    assert panel.acknowledged == producers
    assert panel.status_label.value == f"stop acknowledged by {producers[0]}"
    assert ">interrupted</td>" in row_of(panel, producers[0])
    assert panel.confirm_box.layout.display == "none"


def test_event_log_is_live_and_bounded(dummy: Any, open_panel: Any) -> None:
    panel = open_panel(dummy[0], log_lines=5)
    eventually(lambda: " started" in panel.log.value, "the replayed started event in the log")
    for _ in range(6):
        click_and_wait(panel, panel.ping_button)
    eventually(lambda: panel.log.value.count(" pong") == 5, "five pongs, newest first")
    lines = panel.log.value.splitlines()
    assert len(lines) == 5
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d dummy__\w+ pong", line) for line in lines), lines


def test_close_leaves_no_thread_the_panel_started(dummy: Any, settings: Settings) -> None:
    queue_id = dummy[0]
    before = set(threading.enumerate())
    queue = Queue(queue_id, settings)
    panel = QueuePanel(queue, refresh_s=0.05)
    panel.ping_button.click()  # an action thread, maybe still running at close()
    started = {t.name for t in set(threading.enumerate()) - before}
    assert f"panel-{queue_id}-refresh" in started

    panel.close()
    panel.close()  # idempotent
    left = {t.name for t in set(threading.enumerate()) - before}
    # The queue's own follower and Kafka client threads stay until queue.close().
    assert not {n for n in left if n.startswith("panel-")}, left
    assert panel.widget.comm is None and panel.ping_button.comm is None
    panel.ping_button.click()  # a click on a closed panel does nothing
    assert panel.wait(0)

    queue.close()
    eventually(lambda: not set(threading.enumerate()) - before, "all threads gone")


def test_closing_the_widget_from_queue_panel_closes_the_panel(settings: Settings) -> None:
    queue_id = unique_name("wf-panel-nobody")
    with Queue(queue_id, settings) as queue:
        widget = queue.panel()
        name = f"panel-{queue_id}-refresh"
        assert name in {t.name for t in threading.enumerate()}
        assert widget.children
        widget.close()
        assert name not in {t.name for t in threading.enumerate()}
        assert widget.comm is None


def test_control_panel_notebook_runs_under_papermill(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import papermill

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    queue_id = unique_name("wf-panel-nb")
    nb = papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "out.ipynb"), parameters={"queue_id": queue_id},
        kernel_name="python3", cwd=str(tmp_path), progress_bar=False, execution_timeout=120,
    )  # fmt: skip
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"], outputs
    views = [o["data"][WIDGET_VIEW] for o in outputs if WIDGET_VIEW in o.get("data", {})]
    assert len(views) == 1, outputs
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert state[views[0]["model_id"]]["model_name"] == "VBoxModel"
    buttons = {m["state"].get("description") for m in state.values()}
    assert {"Ping", "Stop", "Confirm stop", "Cancel"} <= buttons
    assert any(queue_id in o.get("data", {}).get("text/html", "") for o in outputs)


def test_refreshing_ends_when_the_queue_closes(settings: Settings) -> None:
    queue = Queue(unique_name("wf-panel-nobody"), settings)
    panel = QueuePanel(queue, refresh_s=0.05)
    name = f"panel-{queue.queue_id}-refresh"
    try:
        queue.close()
        eventually(
            lambda: name not in {t.name for t in threading.enumerate()}, "the refresher ending"
        )
        assert panel.status_label.value.startswith("no more updates:")
    finally:
        panel.close()
