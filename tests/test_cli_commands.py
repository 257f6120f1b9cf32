"""Commands run as a user runs them, end to end: `events --follow`, `candles` launching a
local workflow, `local cluster up|down` (test_node_cli.py; `cleanup --force`: test_lifecycle.py)."""

from __future__ import annotations

import json
import queue as queues
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import subprocess_env

from streamforge_nb.control.queue import Queue
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import unique_name
from streamforge_nb.testing.exchange import ExchangeServer


def cli(
    settings: Settings, *args: str, timeout: float = 240, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamforge_nb.cli", *args],
        env=subprocess_env(settings, **env), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _lines(proc: subprocess.Popen[str]) -> queues.Queue[str]:
    """Every stdout line of `proc`, as it is printed (read by a thread)."""
    lines: queues.Queue[str] = queues.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def _next_with(lines: queues.Queue[str], word: str, timeout: float = 60) -> str:
    """The next line with `word` as its status column; lines before it are skipped."""
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queues.Empty:
            pytest.fail(f"`events --follow` printed no {word!r} line within {timeout} s")
        if word in line.split():
            return line


@pytest.mark.timeout(120)
def test_events_follow_prints_events_as_they_come(
    settings: Settings, start_dummy: Callable[..., subprocess.Popen[str]]
) -> None:
    qid = unique_name("wf-follow")
    dummy = start_dummy(qid)
    follow = subprocess.Popen(
        [sys.executable, "-m", "streamforge_nb.cli", "events", "--queue-id", qid, "--follow"],
        env=subprocess_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = _lines(follow)
        assert "dummy__" in _next_with(lines, "started")  # the history first
        with Queue(qid, settings) as queue:
            # Events sent after the command started reach it while it runs.
            (reply,) = queue.ping(timeout=20)
            assert reply.producer in _next_with(lines, "pong")
            assert queue.stop(timeout=30) == [reply.producer]
        assert reply.producer in _next_with(lines, "interrupted")
        assert dummy.wait(timeout=20) == 0
        assert follow.poll() is None  # still following, until told to stop
    finally:
        follow.terminate()
        follow.wait(timeout=20)
        assert follow.stderr is not None
        follow.stderr.close()
        if follow.stdout is not None:
            follow.stdout.close()


@pytest.fixture(scope="module")
def exchange() -> Iterator[ExchangeServer]:
    with ExchangeServer() as server:
        yield server


@pytest.mark.timeout(240)
def test_candles_launches_a_local_workflow_to_the_store(
    settings: Settings, tmp_path: Path, exchange: ExchangeServer
) -> None:
    store = f"local://{tmp_path / 'store'}"
    launched = cli(
        settings, "candles", "--symbol", "ETHUSDT", "--interval", "1h",
        "--time-range", "2024-08-01:2024-08-03", "--base-url", exchange.base_url,
        "--store", store, STREAMFORGE_HOME=str(tmp_path),
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    first, *table = launched.stdout.splitlines()
    assert first.startswith("launched wf-ethusdt-api_candles_1h-20240801-") and "(local)" in first
    qid = first.split()[1]
    # to_string(): the columns' header, the index's name ("producer"), then one row each.
    assert table[1].split() == ["producer"]
    rows = {line.split()[0]: line.split()[1:3] for line in table[2:]}
    assert sorted(p.partition("__")[0] for p in rows) == ["arango-candles", "loader-candles"]
    assert all(row == ["finished", "48"] for row in rows.values()), table
    assert "\r" not in launched.stderr  # stderr is no terminal here: lines, not a redrawn bar
    with CandleStore.open(store) as opened:
        assert len(opened.load("ETHUSDT", "1h", "2024-08-01", "2024-08-03")) == 48
        record = opened.queue_state(qid)
    assert record is not None
    # The executed notebooks are under the home the command was given.
    for output in record["outputs"].values():
        assert Path(output).is_relative_to(tmp_path) and Path(output).is_file()


def test_a_jobs_log_is_json_lines_with_the_kernels_own_levels(
    settings: Settings, tmp_path: Path
) -> None:
    from conftest import node_dummy_job

    from streamforge_nb.workflow.processes import LocalLauncher

    launcher = LocalLauncher(tmp_path, settings=settings)
    queue_id = unique_name("wf-job-log")
    job, _output = node_dummy_job(tmp_path, queue_id, "streamforge/jupyter:test", exit_after=1)
    name = launcher.submit(job)
    assert launcher.wait(name, timeout=180) == 0, launcher.logs(name)[-3000:]
    lines = [line for line in launcher.logs(name).splitlines() if line.strip()]
    records = []
    for line in lines:
        record = json.loads(line)  # every line one JSON object, nothing else
        assert isinstance(record, dict) and {"level", "msg"} <= set(record), line
        records.append(record)
    # The worker in the kernel logs JSON itself: its lines come through as it wrote them,
    # not as papermill's `warning` with the JSON escaped inside `msg`.
    from_kernel = [r for r in records if r.get("logger", "").startswith("streamforge_nb.")]
    assert any(r["level"] == "info" for r in from_kernel), records
    assert not [r for r in records if str(r["msg"]).lstrip().startswith("{")], records


def test_quickstart_waits_with_progress_lines_not_a_bar_off_a_terminal(
    settings: Settings,
    start_dummy: Callable[..., subprocess.Popen[str]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    from streamforge_nb.quickstart import wait_with_progress

    queue_id = unique_name("wf-progress")
    start_dummy(queue_id, "--simulate-loading", "--loading-interval", "0.2", "--exit-after", "3")
    lines: list[str] = []
    with Queue(queue_id, settings) as queue:
        final = wait_with_progress(queue, ["dummy"], 60, lines.append, every=0.5)
    assert set(final["status"]) == {"finished"}
    captured = capfd.readouterr()
    assert "\r" not in captured.err + captured.out  # no bar redrawing itself into a log
    assert lines and all(line.startswith(f"{queue_id}: dummy__") for line in lines), lines


@pytest.mark.timeout(240)
def test_candles_json_is_one_object_in_the_apis_shape(
    settings: Settings, tmp_path: Path, exchange: ExchangeServer
) -> None:
    from streamforge_nb.api.models import ProducerStatus

    store = f"local://{tmp_path / 'store'}"
    launched = cli(
        settings, "candles", "--symbol", "ETHUSDT", "--interval", "1h", "--json",
        "--time-range", "2024-08-03:2024-08-04", "--base-url", exchange.base_url,
        "--store-url", store, STREAMFORGE_HOME=str(tmp_path),
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    (line,) = launched.stdout.splitlines()  # nothing but the answer on stdout
    answer = json.loads(line, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert answer["queue_id"].startswith("wf-ethusdt-api_candles_1h-20240803-")
    producers = [ProducerStatus.model_validate(p) for p in answer["producers"]]
    assert sorted(p.producer.partition("__")[0] for p in producers) == [
        "arango-candles", "loader-candles",
    ]  # fmt: skip
    assert all(p.status == "finished" and p.records_written == 24 for p in producers)
    assert all(p["last_seen"].endswith("Z") for p in answer["producers"])  # ISO 8601 UTC
    assert "\r" not in launched.stderr  # no progress bar with --json
