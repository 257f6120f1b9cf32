"""A real single-node cluster: Pods run the image built from jupyter-image/Dockerfile.

Marked `node`: skipped (saying why) without root, containerd or the binaries from
`scripts/install-node-deps` and `scripts/build-kube --node`, and failed instead under `CI=true`
(CI installs them: a missing one there is a broken set-up). The first test starts and stops a
node of its own (a Pod still running) to check that teardown leaves nothing behind; the others
share the session's.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from conftest import (
    MANIFESTS,
    NAMESPACE,
    NOTEBOOK_SA,
    missing_prerequisite,
    node_dummy_job,
    node_queue_id,
    wait_for_status,
    wait_job,
)

from streamforge_nb.control.queue import Queue
from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.local.cluster.hostfs import host_snapshot
from streamforge_nb.local.cluster.node import CGROUP_ROOT, LocalNode, local_node
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing.exchange import ExchangeServer
from streamforge_nb.testing.image import BuiltImage
from streamforge_nb.workflow.kubernetes import KubernetesLauncher
from streamforge_nb.workflow.plan import Workflow

# The first test on the session's node pays for its start and the image's import (and the
# image's build, when scripts/test did not build it): pytest-timeout counts fixture setup too.
pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]


@pytest.mark.parametrize(("ci", "outcome"), [
    (None, pytest.skip.Exception), ("", pytest.skip.Exception), ("false", pytest.skip.Exception),
    ("true", pytest.fail.Exception), ("TRUE", pytest.fail.Exception),
])  # fmt: skip
def test_a_missing_node_prerequisite_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: type[BaseException]
) -> None:
    """A CI run whose node set-up failed must not be green with every node test skipped."""
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    # Caught by hand: a skip escaping `pytest.raises(Failed)` would skip this test, not fail it.
    try:
        missing_prerequisite("no real node here: no containerd")
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        raised: BaseException = exc
    else:
        raise AssertionError("missing_prerequisite returned")
    assert type(raised) is outcome
    assert str(raised) == "no real node here: no containerd"


def run_pod(
    node: LocalNode, name: str, image: str, script: str, timeout: float = 120
) -> tuple[str, str]:
    """Run `sh -c script` in a host-network Pod; return its phase and log."""
    from kubernetes import client

    core = client.CoreV1Api(node.api_client())
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "hostNetwork": True,
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
            }],
        },
    }  # fmt: skip
    node.wait_service_account("default")
    core.create_namespaced_pod("default", pod)
    deadline = time.monotonic() + timeout
    phase = "Pending"
    try:
        while time.monotonic() < deadline:
            phase = core.read_namespaced_pod(name, "default").status.phase
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.2)
        return phase, core.read_namespaced_pod_log(name, "default")
    finally:
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


# --- teardown ----------------------------------------------------------------------------------


def test_a_node_directory_too_long_for_its_sockets_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    from streamforge_nb.exceptions import KubeTestError
    from streamforge_nb.local.cluster.node import local_node

    directory = tmp_path / ("d" * (104 - len(str(tmp_path))))
    with pytest.raises(KubeTestError) as raised, local_node(directory):
        pass
    socket = directory / "containerd" / "containerd.sock.ttrpc"
    assert str(raised.value) == (
        f"the node's directory {directory} is too long: containerd's socket {socket} would "
        f"take {len(str(socket))} bytes, over the 104 a Unix socket's path may; "
        "use a shorter directory"
    )
    assert not directory.exists()


def test_teardown_leaves_no_process_mount_cgroup_rule_or_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from kubernetes import client

    from streamforge_nb.local.cluster.node import node_unavailable
    from streamforge_nb.local.cluster.parts import PAUSE_IMAGE

    reason = node_unavailable()
    if reason:
        missing_prerequisite(f"no real node here: {reason}")
    before = host_snapshot(CGROUP_ROOT)
    # Short: containerd's socket path must fit 104 bytes, and xdist adds a level to tmp_path.
    directory = tmp_path_factory.mktemp("teardown") / "node"
    # No worker image to import: a Pod of the node's own pause image, still running when the
    # node goes down, is what the teardown has to end.
    with local_node(directory) as node:
        core = client.CoreV1Api(node.api_client())
        node.wait_service_account("default")
        core.create_namespaced_pod("default", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "left-running"},
            "spec": {"hostNetwork": True, "containers": [
                {"name": "main", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"},
            ]},
        })  # fmt: skip
        deadline = time.monotonic() + 120
        phase = "Pending"
        while phase != "Running" and time.monotonic() < deadline:
            time.sleep(0.2)
            phase = core.read_namespaced_pod("left-running", "default").status.phase
        assert phase == "Running"
        during = host_snapshot(CGROUP_ROOT)
        assert during["cgroups"], "the node made no cgroups under its root?"
    after = host_snapshot(CGROUP_ROOT)
    assert after == before
    from streamforge_nb.local.process import pids_mentioning

    assert pids_mentioning(str(directory)) == set()


# --- the node and the image --------------------------------------------------------------------


def test_node_is_ready_and_labelled_for_workers(node: LocalNode) -> None:
    from kubernetes import client

    found = client.CoreV1Api(node.api_client()).list_node().items
    assert [n.metadata.name for n in found] == ["streamforge-node"]
    assert found[0].metadata.labels["streamforge-worker"] == "true"
    assert {c.type: c.status for c in found[0].status.conditions}["Ready"] == "True"


def test_image_has_the_user_the_library_and_the_tools(
    node: LocalNode, node_image: BuiltImage
) -> None:
    script = (
        "set -e; echo uid=$(id -u) gid=$(id -g); streamforge-nb --help >/dev/null && echo help-ok;"
        " python -c 'from streamforge_nb.workflow.targets import notebook_path;"
        ' print(notebook_path("loader_candles.ipynb"))\';'
        " kubectl version --client; helm version; kcat -V"
    )
    phase, log = run_pod(node, "image-check", node_image.ref, script)
    assert phase == "Succeeded", log
    assert "uid=1001 gid=100" in log, log
    assert "help-ok" in log, log
    assert "/streamforge_nb/notebooks/loader_candles.ipynb" in log, log
    assert "Client Version: v1.36.3" in log, log
    assert "v3.21.4" in log, log  # the Dockerfile's HELM_VERSION, as the release build gets
    assert "kcat - Apache Kafka producer and consumer tool" in log, log


def test_image_python_packages_are_the_locked_versions(
    node: LocalNode, node_image: BuiltImage
) -> None:
    """What pip installed into the image (/usr/local: not Debian's own) is requirements.lock's."""
    from test_pipeline import lock_pins

    from streamforge_nb.testing.image import LOCK

    script = "python -m pip list --format=freeze --path /usr/local/lib/python3.11/dist-packages"
    phase, log = run_pod(node, "image-lock-check", node_image.ref, script)
    assert phase == "Succeeded", log
    installed = lock_pins(log)
    installed.pop("streamforge-nb")
    pins = lock_pins(LOCK.read_text())
    assert {n: (v, pins.get(n)) for n, v in installed.items() if pins.get(n) != v} == {}
    assert len(installed) > 100  # the library's dependencies and JupyterLab's, not a few


def test_host_network_pods_reach_the_broker(
    node: LocalNode, node_image: BuiltImage, broker: LocalBroker, settings: Settings
) -> None:
    host, port = settings.kafka_bootstrap_servers.rsplit(":", 1)
    phase, log = run_pod(node, "broker-check", node_image.ref, f"kcat -b {host}:{port} -L -t x")
    assert phase == "Succeeded", log
    assert "broker" in log


# --- Pod Security "restricted" ------------------------------------------------------------------


# papermill runs a notebook on a real kernel: its connection file, ~/.ipython and the executed
# notebook (a relative path, as the default `runs`) go to the emptyDirs of a read-only image.
PAPERMILL_SCRIPT = """
import nbformat, papermill
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
nbformat.write(nb, "/tmp/in.ipynb")
papermill.execute_notebook("/tmp/in.ipynb", "out.ipynb", progress_bar=False)
print("answer", nbformat.read("out.ipynb", 4).cells[0].outputs[0].text)
"""


def as_pod(job: dict[str, Any], namespace: str, name: str) -> dict[str, Any]:
    """The Pod that `job`'s controller would create (its template), named `name`."""
    template = job["spec"]["template"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **template.get("metadata", {})},
        "spec": template["spec"],
    }  # fmt: skip


def refusal(node: LocalNode, pod: dict[str, Any]) -> str:
    """The API server's refusal of `pod` (server-side dry run: nothing is created)."""
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as refused:
        node.create([pod], dry_run=True)
    assert refused.value.status == 403, refused.value
    return str(json.loads(refused.value.body)["message"])


def test_restricted_namespace_refuses_a_seed_pod_and_runs_the_workers_pod(
    node: LocalNode, node_image: BuiltImage
) -> None:
    """namespace.yaml as shipped: the API server refuses a Pod without our security context
    and admits the worker Job's Pod as generated, which runs papermill and a kernel on its
    read-only image there (on the node's Pod network: no broker is reached)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from streamforge_nb.workflow.targets import job_spec

    job = job_spec(job_name="job-dummy-psa", namespace=NAMESPACE, queue_id="wf-psa",
                   target="dummy", image=node_image.ref, env={}, pull_secret="")  # fmt: skip
    core = client.CoreV1Api(node.api_client())
    ours = as_pod(job, NAMESPACE, "workers-pod")
    container = ours["spec"]["containers"][0]
    del container["envFrom"]  # no ConfigMap or Secret needed: no broker is reached
    container["env"] = [{"name": "SCRIPT", "value": PAPERMILL_SCRIPT}]
    container["command"] = ["sh", "-c", (
        "echo uid=$(id -u) gid=$(id -g); awk '$2 == \"/\" {print \"root\", $4}' /proc/mounts;"
        ' exec python -c "$SCRIPT"'
    )]  # fmt: skip
    node.apply(MANIFESTS / "namespace.yaml")
    try:
        labels = core.read_namespace(NAMESPACE).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        seed = as_pod(copy.deepcopy(job), NAMESPACE, "seed-pod")
        del seed["spec"]["securityContext"]
        del seed["spec"]["containers"][0]["securityContext"]
        message = refusal(node, seed)
        assert 'violates PodSecurity "restricted:latest"' in message, message
        for rule in ("allowPrivilegeEscalation != false", "unrestricted capabilities",
                     "runAsNonRoot != true", "seccompProfile"):  # fmt: skip
            assert rule in message, message
        node.wait_service_account(NAMESPACE)
        node.create([ours])  # admitted: nothing to refuse
        deadline = time.monotonic() + 180
        phase = "Pending"
        while phase not in ("Succeeded", "Failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            phase = core.read_namespaced_pod("workers-pod", NAMESPACE).status.phase
        log = core.read_namespaced_pod_log("workers-pod", NAMESPACE)
        assert phase == "Succeeded", log
        assert "uid=1001 gid=100" in log and "root ro," in log, log
        assert "answer 42" in log, log
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespaced_pod("workers-pod", NAMESPACE, grace_period_seconds=0)
        node.apply_allowing_host_pods(MANIFESTS / "namespace.yaml")


# --- end to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exchange() -> Iterator[ExchangeServer]:
    with ExchangeServer() as server:
        yield server


def test_candles_workflow_runs_in_pods_as_the_notebook_service_account(
    node: LocalNode,
    node_image: BuiltImage,
    stf: Path,
    platform_settings: Settings,
    exchange: ExchangeServer,
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    as_notebook = node.service_account_client(NAMESPACE, NOTEBOOK_SA)
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(as_notebook).read_namespaced_secret("streamforge-secrets", NAMESPACE)
    assert refused.value.status == 403

    store_url = f"local://{stf / 'store'}"
    wf = Workflow.candles(
        "BTCUSDT",
        "15m",
        "2024-08-01:2024-08-03",
        base_url=exchange.base_url,
        store=store_url,
        image=node_image.ref,
        output_dir=str(stf / "runs"),
        settings=platform_settings,
    )
    plan = wf.plan()
    launcher = node.launcher(api_client=as_notebook, host_paths=[stf])
    with wf.launch(launcher) as queue:
        final = queue.wait(
            timeout=300, targets=["loader-candles", "arango-candles"], progress=False
        )
        jobs = queue.jobs()
        sink_log = queue.logs("arango-candles")
    assert set(final["status"]) == {"finished"}, final.to_dict("index")
    with CandleStore.open(store_url) as store:
        stored = len(store.load("BTCUSDT", "15m", "2024-08-01", "2024-08-03"))
    assert stored == 192
    assert final.loc[plan.steps[1].producer_id, "records_written"] == stored
    assert "running arango_candles.ipynb" in sink_log, sink_log[-2000:]
    assert set(jobs["state"]) <= {"succeeded", "active"}

    # The Pods that ran are the hardened ones; a namespace enforcing "restricted" (labels as
    # namespace.yaml ships them) refuses them for what this node adds, and for nothing else.
    (namespace,) = yaml.safe_load_all((MANIFESTS / "namespace.yaml").read_text())
    namespace["metadata"]["name"] = "stf-restricted"
    node.apply([namespace])
    for step in plan.steps:
        stored = launcher.get(step.job_name)
        pod = stored["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 1001
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        message = refusal(node, as_pod(stored, "stf-restricted", step.job_name))
        assert message.split('"restricted:latest": ', 1)[1] == (
            "host namespaces (hostNetwork=true), restricted volume types "
            '(volume "host-0" uses restricted volume type "hostPath")'
        ), message

    # The Jobs go (as the notebook may delete them); the executed notebooks stay.
    launcher.delete(plan.queue_id)
    for step in plan.steps:
        notebook = nbformat.read(step.output, as_version=4)
        texts = [o.get("text", "") for c in notebook.cells for o in c.get("outputs", [])]
        assert any("ended normally" in t for t in texts), step.target
    listed = Queue.list(store_url, settings=platform_settings)
    assert listed.loc[plan.queue_id, "status"] == "finished"


# --- a dummy Job's life on the node ------------------------------------------------------------


def test_stop_of_a_running_dummy_job_interrupts_and_the_pod_exits_0(
    node_image: BuiltImage,
    stf: Path,
    notebook_launcher: KubernetesLauncher,
    platform_settings: Settings,
) -> None:
    queue_id = node_queue_id()
    job, output = node_dummy_job(stf, queue_id, node_image.ref)
    notebook_launcher.submit(job)
    wait_for_status(platform_settings, queue_id, "started", timeout=120)
    with Queue(queue_id, platform_settings, launcher=notebook_launcher) as queue:
        assert queue.stop(timeout=60) == ["dummy__job001"]
    (done,) = wait_job(notebook_launcher, queue_id, {"succeeded", "failed"})
    assert done.state == "succeeded", done
    assert output.is_file()
    assert "running dummy_service.ipynb" in notebook_launcher.logs(done.name)


def test_deleting_the_job_sigterms_the_pod_interrupted_and_notebook_saved(
    node_image: BuiltImage,
    stf: Path,
    notebook_launcher: KubernetesLauncher,
    platform_settings: Settings,
) -> None:
    queue_id = node_queue_id()
    job, output = node_dummy_job(stf, queue_id, node_image.ref)
    notebook_launcher.submit(job)
    wait_for_status(platform_settings, queue_id, "started", timeout=120)
    assert notebook_launcher.delete(queue_id) == [job["metadata"]["name"]]
    wait_for_status(platform_settings, queue_id, "interrupted", timeout=60)
    deadline = time.monotonic() + 60
    while not output.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    notebook = nbformat.read(output, as_version=4)
    assert notebook.metadata["papermill"]["exception"] is not True
    assert notebook_launcher.list(queue_id) == []


def test_failing_notebook_reports_the_cell_and_retries_to_the_backoff_limit(
    node_image: BuiltImage,
    stf: Path,
    notebook_launcher: KubernetesLauncher,
    platform_settings: Settings,
) -> None:
    queue_id = node_queue_id()
    job, output = node_dummy_job(stf, queue_id, node_image.ref, fail_after=1)
    assert job["spec"]["backoffLimit"] == 2  # the default; one retry is enough to show them
    job["spec"]["backoffLimit"] = 1
    notebook_launcher.submit(job)
    # Two Pods, with the Job controller's 10 s back-off between them; the Job is failed for
    # good only with its Failed condition (BackoffLimitExceeded).
    name = job["metadata"]["name"]
    deadline = time.monotonic() + 240
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = notebook_launcher.get(name)["status"]
        if any(c["type"] == "Failed" for c in status.get("conditions") or []):
            break
        time.sleep(0.5)
    assert status.get("failed") == 2, status
    (failed,) = notebook_launcher.list(queue_id)
    assert failed.state == "failed" and "BackoffLimitExceeded" in failed.detail, failed
    with Queue(queue_id, platform_settings) as queue:
        errors = [e for e in queue.events() if e.status == "error"]
    from_runner = [e for e in errors if getattr(e, "cell", None) is not None]
    assert len(from_runner) == 2, errors
    assert from_runner[0].error_type == "RuntimeError"
    assert output.is_file()


def test_ttl_after_finished_removes_the_job(
    node_image: BuiltImage, stf: Path, notebook_launcher: KubernetesLauncher
) -> None:
    queue_id = node_queue_id()
    job, _output = node_dummy_job(stf, queue_id, node_image.ref, exit_after=1)
    job["spec"]["ttlSecondsAfterFinished"] = 2
    notebook_launcher.submit(job)
    wait_job(notebook_launcher, queue_id, {"succeeded"})
    deadline = time.monotonic() + 60
    while notebook_launcher.list(queue_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert notebook_launcher.list(queue_id) == []
