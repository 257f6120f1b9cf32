"""The dummy test service as a real process: every option of the seed, against the broker."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

from conftest import subprocess_env, wait_for_status

from streamforge_nb.control.queue import Queue
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name

StartDummy = Callable[..., subprocess.Popen[str]]


def statuses(settings: Settings, queue_id: str) -> list[str]:
    with Queue(queue_id, settings) as queue:
        return [e.status for e in queue.events()]


def test_stop_turns_into_interrupted_and_exit_0(
    settings: Settings, start_dummy: StartDummy
) -> None:
    queue_id = unique_name("wf-dummy")
    proc = start_dummy(queue_id)
    with Queue(queue_id, settings) as queue:
        (reply,) = queue.ping(timeout=10)
        assert reply.producer.startswith("dummy__")
        assert queue.stop(timeout=20) == [reply.producer]
    assert proc.wait(timeout=20) == 0
    assert statuses(settings, queue_id) == ["started", "pong", "interrupted"]


def test_fail_after_sends_error_before_a_non_zero_exit(
    settings: Settings, start_dummy: StartDummy
) -> None:
    queue_id = unique_name("wf-dummy-fail")
    proc = start_dummy(queue_id, "--fail-after", "1", ready=False)
    assert proc.wait(timeout=30) == 1
    with Queue(queue_id, settings) as queue:
        events = list(queue.events())
    assert [e.status for e in events] == ["started", "error"]
    assert "simulated failure after 1 s" in (events[-1].message or "")


def test_exit_after_ends_on_time_with_finished(settings: Settings, start_dummy: StartDummy) -> None:
    queue_id = unique_name("wf-dummy-exit")
    proc = start_dummy(queue_id, "--exit-after", "1", ready=False)
    assert proc.wait(timeout=30) == 0  # how long past the 1 s: bench/deadlines.py
    assert statuses(settings, queue_id) == ["started", "finished"]


def test_exit_on_ping_answers_once_then_ends(settings: Settings, start_dummy: StartDummy) -> None:
    queue_id = unique_name("wf-dummy-ping")
    proc = start_dummy(queue_id, "--exit-on-ping")
    with Queue(queue_id, settings) as queue:
        assert queue.ping(timeout=10)
    assert proc.wait(timeout=20) == 0
    assert statuses(settings, queue_id) == ["started", "pong", "finished"]


def test_simulate_loading_sends_growing_loading_events(
    settings: Settings, start_dummy: StartDummy
) -> None:
    queue_id = unique_name("wf-dummy-load")
    start_dummy(queue_id, "--simulate-loading", "--loading-interval", "0.2", "--exit-after", "1.5")
    wait_for_status(settings, queue_id, "finished")
    with Queue(queue_id, settings) as queue:
        loading = [e.records_written for e in queue.events() if e.status == "loading"]
    assert len(loading) >= 3
    assert loading == sorted(loading) and loading[0] > 0


def test_noop_sends_started_only(settings: Settings, start_dummy: StartDummy) -> None:
    queue_id = unique_name("wf-dummy-noop")
    proc = start_dummy(queue_id, "--noop", "--simulate-loading", "--loading-interval", "0.1")
    time.sleep(1)
    assert statuses(settings, queue_id) == ["started"]
    with Queue(queue_id, settings) as queue:
        queue.stop(timeout=20)
    assert proc.wait(timeout=20) == 0


def test_metrics_count_pings_and_pongs(settings: Settings, start_dummy: StartDummy) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue_id = unique_name("wf-dummy-metrics")
    start_dummy(queue_id, "--metrics-port", str(port))

    def metric(name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        match = re.search(rf"^{re.escape(name)} (\S+)$", text.decode(), re.M)
        assert match, f"{name} not in /metrics"
        return float(match.group(1))

    assert metric("dummy_pings_total") == 0
    assert metric('dummy_status_last{status="started"}') == 1
    with Queue(queue_id, settings) as queue:
        for _ in range(3):
            queue.ping(timeout=10)
    time.sleep(0.2)
    assert metric("dummy_pings_total") == 3
    assert metric("dummy_pongs_total") == 3
    assert metric('dummy_events_total{event="pong"}') == 3
    assert metric('dummy_events_total{event="started"}') == 1


def test_cli_entry_point_behaves_the_same(settings: Settings) -> None:
    queue_id = unique_name("wf-dummy-cli")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamforge_nb.cli",
            "dummy",
            "--queue-id",
            queue_id,
            "--metrics-port",
            "0",
            "--exit-after",
            "0.5",
        ],
        env=subprocess_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert statuses(settings, queue_id) == ["started", "finished"]
    assert '"msg": "dummy service up"' in proc.stderr  # structured JSON logs


def test_platform_variables_configure_the_worker(settings: Settings) -> None:
    queue_id = unique_name("wf-dummy-env")
    env = subprocess_env(settings, QUEUE_ID=queue_id, TELEMETRY_PRODUCER_ID="dummy__fromenv")
    proc = subprocess.run(
        [sys.executable, "-m", "streamforge_nb.workers.dummy", "--metrics-port", "0",
         "--exit-after", "0.5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Queue(queue_id, settings) as queue:
        events = list(queue.events())
    assert [(e.producer, e.status) for e in events] == [
        ("dummy__fromenv", "started"),
        ("dummy__fromenv", "finished"),
    ]


def test_missing_queue_id_is_a_usage_error(settings: Settings) -> None:
    env = subprocess_env(settings)
    env.pop("QUEUE_ID", None)
    proc = subprocess.run(
        [sys.executable, "-m", "streamforge_nb.workers.dummy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Usage: python -m streamforge_nb.workers.dummy [OPTIONS]" in proc.stderr
    assert "--queue-id (QUEUE_ID, or the notebook parameter queue_id) is required" in proc.stderr
