"""Job payloads: a notebook run by papermill inside a Job, on failure, stop and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from conftest import node_dummy_job, notebook_dir, subprocess_env, wait_for_status, with_env

from streamforge_nb.control.queue import Queue
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name
from streamforge_nb.workflow.processes import LocalLauncher
from streamforge_nb.workflow.targets import notebook_path


def dummy_job(tmp_path: Path, queue_id: str, **parameters: object) -> tuple[dict, Path]:
    """The dummy's Job as the node tests make it; the local launcher runs its command."""
    return node_dummy_job(tmp_path, queue_id, "streamforge/jupyter:test", **parameters)


@pytest.fixture
def launcher(settings: Settings, tmp_path: Path) -> LocalLauncher:
    return LocalLauncher(tmp_path, settings=settings)


def test_failing_cell_saves_the_notebook_and_reports_the_cell(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    queue_id = unique_name("wf-job-fail")
    job, output = dummy_job(tmp_path, queue_id, fail_after=1)
    name = launcher.submit(job)
    assert launcher.wait(name, timeout=120) == 1
    assert [j.state for j in launcher.list(queue_id)] == ["failed"]
    notebook = nbformat.read(output, as_version=4)
    assert any(
        o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", [])
    )
    with Queue(queue_id, settings) as queue:
        errors = [e for e in queue.events() if e.status == "error"]
    from_runner = [e for e in errors if getattr(e, "cell", None) is not None]
    assert from_runner, errors
    assert from_runner[0].error_type == "RuntimeError"
    assert str(output) in (from_runner[0].message or "")
    assert "failed: RuntimeError" in launcher.logs(name)


def test_stop_saves_the_notebook_with_interrupted(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    queue_id = unique_name("wf-job-stop")
    job, output = dummy_job(tmp_path, queue_id)
    name = launcher.submit(job)
    wait_for_status(settings, queue_id, "started")
    with Queue(queue_id, settings) as queue:
        assert queue.stop(timeout=30) == ["dummy__job001"]
    assert launcher.wait(name, timeout=60) == 0
    assert output.is_file()


def test_sigterm_asks_the_worker_to_stop_and_keeps_the_notebook(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    queue_id = unique_name("wf-job-term")
    job, output = dummy_job(tmp_path, queue_id)
    launcher.submit(job)
    wait_for_status(settings, queue_id, "started")
    assert launcher.delete(queue_id) == [job["metadata"]["name"]]
    with Queue(queue_id, settings) as queue:
        assert [e.status for e in queue.events()][-1] == "interrupted"
    notebook = nbformat.read(output, as_version=4)
    assert notebook.metadata["papermill"]["exception"] is not True
    assert launcher.list(queue_id) == []


def test_payload_notebooks_are_found() -> None:
    for name in ("loader_candles.ipynb", "arango_candles.ipynb", "dummy_service.ipynb"):
        assert notebook_path(name).is_file()


# -- issue 13: every way a Job can end shows in the queue's status, and wait() ends -----------
# Each scenario's wait() gets WAIT_S: far more than a Job needs on a busy 2-core machine, and
# the assertion on the elapsed time says the wait ended because of the failure, not its timeout.
WAIT_S = 180


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.1)


def final(queue: Queue) -> tuple[str, str, float]:
    """wait() for the queue; return the dummy producer's status, message, and seconds taken."""
    started = time.monotonic()
    status = queue.wait(timeout=WAIT_S, progress=False)
    row = status.loc["dummy__job001"]
    return row["status"], row["message"] or "", time.monotonic() - started


def test_a_job_killed_before_any_telemetry_fails_its_producer(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    queue_id = unique_name("wf-job-kill0")
    job, _ = dummy_job(tmp_path, queue_id)
    sleeper = notebook_dir(tmp_path, "sleeper", "import time\ntime.sleep(600)")
    name = launcher.submit(with_env(job, STREAMFORGE_NOTEBOOKS=str(sleeper)))
    # The kernel runs the sleeping cell: the notebook has been saved once.
    wait_until(lambda: (tmp_path / "runs" / queue_id / "dummy.ipynb").is_file(), "notebook")
    os.killpg(launcher._processes[name].pid, signal.SIGKILL)
    with Queue(queue_id, settings, launcher=launcher) as queue:
        status, message, took = final(queue)
    assert status == "failed"
    assert message.startswith("killed by SIGKILL before any telemetry"), message
    assert took < WAIT_S / 2
    assert [(j.state, j.detail) for j in launcher.list(queue_id)] == [
        ("failed", "killed by SIGKILL")
    ]


def test_a_job_killed_while_running_fails_its_producer(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    queue_id = unique_name("wf-job-kill1")
    job, _ = dummy_job(tmp_path, queue_id)
    name = launcher.submit(job)
    wait_for_status(settings, queue_id, "started", timeout=120)
    os.killpg(launcher._processes[name].pid, signal.SIGKILL)
    with Queue(queue_id, settings, launcher=launcher) as queue:
        status, message, took = final(queue)
    assert status == "failed"
    assert message.startswith("killed by SIGKILL after started"), message
    assert took < WAIT_S / 2


def test_a_missing_notebook_is_reported(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    queue_id = unique_name("wf-job-nonb")
    job, _ = dummy_job(tmp_path, queue_id)
    empty = tmp_path / "empty"
    empty.mkdir()
    launcher.submit(with_env(job, STREAMFORGE_NOTEBOOKS=str(empty)))
    with Queue(queue_id, settings, launcher=launcher) as queue:
        status, message, took = final(queue)
    assert status == "error"
    assert message == (
        f"FileNotFoundError: notebook dummy_service.ipynb not found in {empty} "
        "(no notebook executed)"
    )
    assert took < WAIT_S / 2
    assert [j.detail for j in launcher.list(queue_id)] == ["exit code 1"]


def test_bad_parameters_are_reported(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    queue_id = unique_name("wf-job-badp")
    job, _ = dummy_job(tmp_path, queue_id)
    launcher.submit(with_env(job, STREAMFORGE_PARAMETERS="{not json"))
    with Queue(queue_id, settings, launcher=launcher) as queue:
        status, message, took = final(queue)
    assert status == "error"
    assert message.startswith("ValueError: bad parameters in STREAMFORGE_PARAMETERS: Expecting")
    assert message.endswith("(no notebook executed)")
    assert took < WAIT_S / 2


def test_a_kernel_that_dies_is_reported_and_its_notebook_saved(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    queue_id = unique_name("wf-job-dead")
    job, output = dummy_job(tmp_path, queue_id)
    dying = notebook_dir(tmp_path, "dying", "print('about to die')", "import os\nos._exit(3)")
    launcher.submit(with_env(job, STREAMFORGE_NOTEBOOKS=str(dying)))
    with Queue(queue_id, settings, launcher=launcher) as queue:
        status, message, took = final(queue)
    assert status == "error"
    assert "DeadKernelError" in message, message
    assert message.endswith(f"(notebook saved: {output})")
    assert took < WAIT_S / 2
    saved = nbformat.read(output, as_version=4)
    assert any("about to die" in str(c.get("outputs")) for c in saved.cells)


def test_the_workers_own_error_is_kept_over_the_runners(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    """Issue 11 item 5: the runner's generic `cell N failed` never replaces the real reason."""
    queue_id = unique_name("wf-job-own")
    job, _ = dummy_job(tmp_path, queue_id, fail_after=1)
    launcher.submit(job)
    with Queue(queue_id, settings, launcher=launcher) as queue:
        status, message, _ = final(queue)
        runner = [e for e in queue.events() if getattr(e, "cell", None) is not None]
    assert runner, "the runner sent its error too"
    assert status == "error"
    assert "simulated failure after 1 s (--fail-after)" in message, message
    assert not message.startswith("cell "), message


def test_reattach_and_cancel_from_a_new_process(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    """A dummy that answers stop, and a Job that never reports: cancelled from elsewhere."""
    from streamforge_nb.control.state import new_record
    from streamforge_nb.store.candles import CandleStore

    queue_id = unique_name("wf-job-cancel")
    store = f"local://{tmp_path / 'store'}"
    dummy, _ = dummy_job(tmp_path, queue_id)
    sleeper, _ = dummy_job(tmp_path, queue_id)
    sleeper["metadata"]["name"] += "-sleeper"
    folder = notebook_dir(tmp_path, "sleeper", "import time\ntime.sleep(600)")
    with_env(sleeper, STREAMFORGE_NOTEBOOKS=str(folder), TELEMETRY_PRODUCER_ID="dummy__sleep1")
    with CandleStore.open(store, settings=settings) as opened:
        opened.save_queue_state(
            new_record(
                queue_id=queue_id, symbol=None, type_=None, targets=["dummy"], parameters={},
                data_topic="", outputs={}, launcher="local", jobs=[],
                launcher_options=launcher.options(),
            )
        )  # fmt: skip
    names = [launcher.submit(dummy), launcher.submit(sleeper)]
    wait_for_status(settings, queue_id, "started", timeout=120)
    script = (
        "import json, sys\n"
        "from streamforge_nb import Queue\n"
        "with Queue(sys.argv[1], store=sys.argv[2]) as q:\n"
        "    print(json.dumps(sorted(q.jobs()['state'].items())))\n"
    )
    env = subprocess_env(settings)
    listed = subprocess.run(
        [sys.executable, "-c", script, queue_id, store],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert json.loads(listed.stdout.strip().splitlines()[-1]) == [
        [names[0], "active"], [names[1], "active"]
    ]  # fmt: skip
    # The shell's way, from yet another process: `streamforge-nb cancel`.
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streamforge_nb.cli", "cancel", "--queue-id", queue_id,
         "--store", store, "--grace", "10", "--kill-grace", "5", "--json"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)  # one CancelResponse, the API's shape
    assert answer["queue_id"] == queue_id
    result = {
        row["producer"]: [row["status"], row["cancel"], row["message"]]
        for row in answer["producers"]
    }
    assert result["dummy__job001"][:2] == ["interrupted", "stopped"]
    assert result["dummy__sleep1"][:2] == ["interrupted", "deleted"]
    assert result["dummy__sleep1"][2].startswith("deleted by cancel: no `interrupted` within")
    assert time.monotonic() - started < 200
    assert launcher.list(queue_id) == []
    for name in names:
        assert launcher._processes[name].wait(timeout=30) is not None
    # The queue's record says the same, read from here.
    listed = Queue.list(store, settings=settings)
    assert listed.loc[queue_id, "status"] == "interrupted"


def test_the_panels_stop_cancels_after_its_grace(
    settings: Settings, tmp_path: Path, launcher: LocalLauncher
) -> None:
    from streamforge_nb.ui.panel import QueuePanel

    queue_id = unique_name("wf-job-panel")
    job, _ = dummy_job(tmp_path, queue_id)
    sleeper = notebook_dir(tmp_path, "sleeper", "import time\ntime.sleep(600)")
    name = launcher.submit(with_env(job, STREAMFORGE_NOTEBOOKS=str(sleeper)))
    wait_until(lambda: (tmp_path / "runs" / queue_id / "dummy.ipynb").is_file(), "notebook")
    with Queue(queue_id, settings, launcher=launcher) as queue:
        panel = QueuePanel(queue, stop_timeout=3, refresh_s=0.2)
        try:
            panel.stop_button.click()
            panel.confirm_button.click()
            assert panel.wait(120)
            assert panel.status_label.value == (
                "no `interrupted` within 3 s: cancelled; Jobs deleted for dummy__job001"
            )
            assert ">interrupted</td>" in panel.table.value
        finally:
            panel.close()
    assert launcher.list(queue_id) == []
    assert name not in launcher._processes


def test_jobs_started_at_once_each_get_a_kernel_on_unix_sockets(
    tmp_path: Path, launcher: LocalLauncher
) -> None:
    """Kernels started together on one host must not race for TCP ports (papermill#511): each
    Job's kernel talks over Unix sockets in a folder of its own, removed after the run."""
    report = (
        "import json, os, ipykernel\n"
        "info = json.loads(ipykernel.get_connection_info())\n"
        "print('KERNEL', json.dumps({'transport': info['transport'], 'ip': info['ip'],"
        " 'sockets': sorted(os.listdir(os.path.dirname(info['ip'])))}))"
    )
    folder = notebook_dir(tmp_path, "report", report)
    jobs = []
    for n in range(3):
        queue_id = unique_name(f"wf-job-ipc{n}")
        job, output = dummy_job(tmp_path, queue_id)
        launcher.submit(with_env(job, STREAMFORGE_NOTEBOOKS=str(folder)))
        jobs.append((job["metadata"]["name"], output))
    for name, output in jobs:
        assert launcher.wait(name, timeout=WAIT_S) == 0, launcher.logs(name)[-3000:]
        text = "".join(
            o.get("text", "")
            for c in nbformat.read(output, as_version=4).cells
            for o in c.get("outputs", [])
        )
        kernel = json.loads(text.split("KERNEL ", 1)[1])
        assert kernel["transport"] == "ipc", kernel
        assert kernel["sockets"] == [f"kernel-{i}" for i in range(1, 6)], kernel
        assert not Path(kernel["ip"]).parent.exists(), "the run's socket folder was left behind"
