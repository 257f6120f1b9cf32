"""Job payloads: a notebook run by papermill inside a Job, on failure, stop and SIGTERM."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from conftest import wait_for_status

from streamforge_nb.control.queue import Queue
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name
from streamforge_nb.workflow.launchers import LocalLauncher
from streamforge_nb.workflow.targets import OUTPUT_ENV, PARAMETERS_ENV, job_spec, notebook_path


def dummy_job(tmp_path: Path, queue_id: str, **parameters: object) -> tuple[dict, Path]:
    output = tmp_path / "runs" / queue_id / "dummy.ipynb"
    env = {
        "QUEUE_ID": queue_id,
        "TELEMETRY_PRODUCER_ID": "dummy__job001",
        PARAMETERS_ENV: json.dumps({"metrics_port": 0, **parameters}),
        OUTPUT_ENV: str(output),
    }
    job = job_spec(
        job_name=f"job-dummy-{queue_id[-8:]}",
        namespace="stf",
        queue_id=queue_id,
        target="dummy",
        image="streamforge/jupyter:test",
        env=env,
    )
    return job, output


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
