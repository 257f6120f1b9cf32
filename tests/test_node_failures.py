"""Jobs that die on a real node: what `wait()`, `status()` and `cancel()` tell the user.

Marked `node` (see tests/test_node.py). Each scenario ends with the reason shown, within the
grace stated in the test: an image that does not exist, a Job over its memory limit, papermill's
timeout and the Job's deadline, a Pod deleted under a running worker, a Job that never gets a
node, a queue reattached from a new process, and a notebook read after the Job's TTL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    NAMESPACE,
    NOTEBOOK_SA,
    node_dummy_job,
    node_queue_id,
    notebook_dir,
    subprocess_env,
    wait_for_status,
    with_env,
)

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.state import new_record
from streamforge_nb.local.cluster.node import LocalNode, NodeLauncher
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing.image import BuiltImage
from streamforge_nb.workflow.plan import Workflow

# The first node test also pays for the session's image build and import (about 2 minutes,
# up to 5 on a loaded 2-core machine): pytest-timeout counts fixture setup too.
pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]

GRACE_S = 5.0


@pytest.fixture
def launcher(node: LocalNode, stf: Path) -> NodeLauncher:
    """The notebook ServiceAccount's launcher, giving up on a stuck Pod after GRACE_S."""
    as_notebook = node.service_account_client(NAMESPACE, NOTEBOOK_SA)
    return node.launcher(api_client=as_notebook, host_paths=[stf], stuck_grace=GRACE_S)


def _only(status: Any) -> tuple[str, str]:
    """The one producer's status and message (printed: what the user sees, for `-s`)."""
    (row,) = status.itertuples()
    print(f"\n  {row.Index}: {row.status}: {row.message}")
    return str(row.status), str(row.message)


def test_an_image_that_does_not_exist_fails_the_queue_after_the_grace(
    stf: Path, launcher: NodeLauncher, platform_settings: Settings
) -> None:
    queue_id = node_queue_id()
    job, _ = node_dummy_job(stf, queue_id, "registry.invalid/streamforge/nope:0.0.0")
    launcher.submit(job)
    with Queue(queue_id, platform_settings, launcher=launcher) as queue:
        status, message = _only(queue.wait(timeout=180, progress=False))
        assert status == "failed", message
        assert message.startswith(("ErrImagePull", "ImagePullBackOff")), message
        assert f"past the {GRACE_S:.0f} s grace" in message
        assert "before any telemetry" in message
        # The Job is still there (Kubernetes would retry the pull for ever): cancel deletes it.
        cancelled = queue.cancel(grace=1)
    assert cancelled["cancel"].tolist() == ["deleted"]
    assert launcher.list(queue_id) == []


def test_a_job_over_its_memory_limit_is_reported_out_of_memory(
    stf: Path, node_image: BuiltImage, launcher: NodeLauncher, platform_settings: Settings
) -> None:
    queue_id = node_queue_id()
    # On the shared hostPath, so the Pod sees it.
    hog = notebook_dir(stf, f"hog-{queue_id[-6:]}", "blob = b'x' * (2 << 30)  # 2 GiB, resident")
    job, _ = node_dummy_job(
        stf, queue_id, node_image.ref,
        spec={"resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "400Mi"}}},
    )  # fmt: skip
    job["spec"]["backoffLimit"] = 0
    with_env(job, STREAMFORGE_NOTEBOOKS=str(hog))
    launcher.submit(job)
    with Queue(queue_id, platform_settings, launcher=launcher) as queue:
        status, message = _only(queue.wait(timeout=240, progress=False))
    assert status in ("error", "failed"), message
    assert "out of memory" in message or "OOMKilled" in message, message


def test_papermills_timeout_ends_the_run_with_the_reason_and_the_notebook(
    stf: Path, node_image: BuiltImage, launcher: NodeLauncher, platform_settings: Settings
) -> None:
    queue_id = node_queue_id()
    job, output = node_dummy_job(stf, queue_id, node_image.ref, spec={"timeout_s": 20})
    job["spec"]["backoffLimit"] = 0
    assert job["spec"]["activeDeadlineSeconds"] == 20 + 120
    launcher.submit(job)
    with Queue(queue_id, platform_settings, launcher=launcher) as queue:
        status, message = _only(queue.wait(timeout=240, progress=False))
    assert status == "error", message
    assert "the run passed its 20 s timeout, STREAMFORGE_TIMEOUT" in message, message
    assert f"notebook saved: {output}" in message
    assert output.is_file()


def test_the_jobs_deadline_fails_a_worker_that_was_only_told_to_stop(
    stf: Path, node_image: BuiltImage, launcher: NodeLauncher, platform_settings: Settings
) -> None:
    queue_id = node_queue_id()
    job, _ = node_dummy_job(stf, queue_id, node_image.ref)
    job["spec"]["activeDeadlineSeconds"] = 25  # shorter than papermill's timeout
    launcher.submit(job)
    wait_for_status(platform_settings, queue_id, "started", timeout=120)
    with Queue(queue_id, platform_settings, launcher=launcher) as queue:
        status, message = _only(queue.wait(timeout=240, progress=False))
    # The runner's SIGTERM made the worker say `interrupted`; the Job says why.
    assert status == "failed", message
    assert message.startswith("DeadlineExceeded"), message
    assert "the worker said" in message


def test_a_deleted_pod_is_told_and_the_wait_ends(
    node: LocalNode, stf: Path, node_image: BuiltImage, launcher: NodeLauncher,
    platform_settings: Settings,
) -> None:  # fmt: skip
    from kubernetes import client

    queue_id = node_queue_id()
    job, output = node_dummy_job(stf, queue_id, node_image.ref)
    job["spec"]["backoffLimit"] = 0
    launcher.submit(job)
    wait_for_status(platform_settings, queue_id, "started", timeout=120)
    core = client.CoreV1Api(node.api_client())
    (pod,) = core.list_namespaced_pod(NAMESPACE, label_selector=f"queue_id={queue_id}").items
    core.delete_namespaced_pod(pod.metadata.name, NAMESPACE, grace_period_seconds=30)
    with Queue(queue_id, platform_settings, launcher=launcher) as queue:
        status, message = _only(queue.wait(timeout=180, progress=False))
        jobs = launcher.list(queue_id)
    # SIGTERM reached the runner, which asked its worker to stop; the notebook is kept.
    assert status in ("interrupted", "failed"), message
    assert output.is_file()
    assert [j.state for j in jobs] in (["succeeded"], ["failed"]), jobs


def test_cancel_of_a_job_that_never_gets_a_node(
    stf: Path, node_image: BuiltImage, launcher: NodeLauncher, platform_settings: Settings
) -> None:
    queue_id = node_queue_id()
    job, _ = node_dummy_job(
        stf, queue_id, node_image.ref, spec={"node_selector": {"streamforge-worker": "nowhere"}}
    )
    launcher.submit(job)
    with Queue(queue_id, platform_settings, launcher=launcher) as queue:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, message = _only(queue.status())
            if "past the" in message or "(for " in message:
                break
            time.sleep(0.5)
        # Waiting for a node is reported, not failed: a cluster may still get one.
        assert status == "pending" and message.startswith("Unschedulable"), message
        started = time.monotonic()
        cancelled = queue.cancel(grace=3)
    assert time.monotonic() - started < 60
    (row,) = cancelled.itertuples()
    assert row.cancel == "deleted"
    assert row.message.startswith("deleted by cancel: no `interrupted` within the 3 s"), row.message
    assert launcher.list(queue_id) == []


def test_reattach_and_cancel_from_a_new_process(
    node: LocalNode, stf: Path, node_image: BuiltImage, launcher: NodeLauncher,
    platform_settings: Settings,
) -> None:  # fmt: skip
    queue_id = node_queue_id()
    store = f"local://{stf / 'store'}"
    job, output = node_dummy_job(stf, queue_id, node_image.ref)
    with CandleStore.open(store) as opened:
        opened.save_queue_state(
            new_record(
                queue_id=queue_id, symbol=None, type_=None, targets=["dummy"], parameters={},
                data_topic="", outputs={"dummy": str(output)}, launcher="kubernetes",
                jobs=[job["metadata"]["name"]], launcher_options=launcher.options(),
            )
        )  # fmt: skip
    launcher.submit(job)
    wait_for_status(platform_settings, queue_id, "started", timeout=120)
    env = subprocess_env(platform_settings, KUBECONFIG=str(node.kubeconfig))
    script = (
        "import json, sys\n"
        "from streamforge_nb import Queue\n"
        "with Queue(sys.argv[1], store=sys.argv[2]) as q:\n"
        "    print(json.dumps(sorted(q.jobs()['state'].items())))\n"
        "    print(json.dumps(q.cancel(grace=60)['cancel'].to_dict()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, queue_id, store],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    jobs, cancelled = map(json.loads, done.stdout.strip().splitlines()[-2:])
    assert jobs == [[job["metadata"]["name"], "active"]]
    assert cancelled == {"dummy__job001": "stopped"}
    assert launcher.list(queue_id) == []
    assert output.is_file()


def test_the_notebook_is_readable_after_the_jobs_ttl(
    node: LocalNode, stf: Path, node_image: BuiltImage, launcher: NodeLauncher,
    platform_settings: Settings,
) -> None:  # fmt: skip
    runs = node.directory / "shared" / f"runs-{time.monotonic_ns()}"
    runs.mkdir(parents=True)
    os.chmod(runs, 0o777)
    settings = platform_settings.model_copy(
        update={"runs": str(runs), "runs_volume": f"hostPath:{runs}"}
    )
    store = f"local://{stf / 'store'}"
    wf = Workflow(
        "BTCUSDT", "1m", "2024-08-01:2024-08-02", ["dummy"], store=store, image=node_image.ref,
        settings=settings, parameters={"dummy": {"metrics_port": 0, "exit_after": 1}},
    )  # fmt: skip
    (step,) = wf.plan().steps
    assert step.output.startswith(str(runs))
    step.job["spec"]["ttlSecondsAfterFinished"] = 2
    with wf.launch(launcher) as queue:
        status, message = _only(queue.wait(timeout=180, progress=False))
        assert status == "finished", message
        deadline = time.monotonic() + 60
        while launcher.list(queue.queue_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert launcher.list(queue.queue_id) == [], "the TTL controller left the Job"
    with Queue(wf.plan().queue_id, settings, store=store) as again:
        assert again.notebooks().loc["dummy", "saved"]
        notebook = again.notebook("dummy")
    assert notebook.metadata["papermill"]["exception"] is not True
