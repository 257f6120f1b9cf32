"""Launchers: the local one, and the Kubernetes one against a real kube-apiserver with RBAC.

The API server comes from `scripts/build-kube` (Go module proxy); without it these `kube`
tests fail with a message naming the script, never skip. Jobs are stored, validated and
authorized exactly as on a cluster; no Pod runs (there is no scheduler or kubelet).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import ConfigError, StreamForgeError
from streamforge_nb.settings import Settings
from streamforge_nb.testing import LocalApiServer, local_apiserver
from streamforge_nb.workflow.kubernetes import KubernetesLauncher
from streamforge_nb.workflow.launchers import get_launcher
from streamforge_nb.workflow.plan import Workflow

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalApiServer]:
    with local_apiserver(tmp_path_factory.mktemp("kube")) as server:
        server.apply(MANIFESTS / "namespace.yaml")
        server.apply(MANIFESTS / "notebook-rbac.yaml")
        yield server


@pytest.fixture
def as_notebook(kube: LocalApiServer) -> Any:
    """An API client with the notebook ServiceAccount's own token (what JupyterHub gives)."""
    return kube.service_account_client("stf", "streamforge-notebook")


def test_unknown_launcher_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown launcher 'ssh'; known: kubernetes, local"):
        get_launcher("ssh")


@pytest.mark.kube
def test_submitted_jobs_equal_the_plan(settings: Settings, as_notebook: Any) -> None:
    launcher = KubernetesLauncher("stf", api_client=as_notebook)
    plan = Workflow.candles("BTCUSDT", "1m", "2024-08-01:2024-08-02", settings=settings).plan()
    for step in plan.steps:
        launcher.submit(step.job, dry_run=True)  # validation and RBAC, nothing stored
    assert launcher.list(plan.queue_id) == []
    for step in plan.steps:
        assert launcher.submit(step.job) == step.job_name
        stored = launcher.get(step.job_name)
        assert _subset(step.job["metadata"], stored["metadata"])
        assert _subset(step.job["spec"], stored["spec"]), step.target
    jobs = launcher.list(plan.queue_id)
    assert sorted((j.name, j.target) for j in jobs) == sorted(
        (s.job_name, s.target) for s in plan.steps
    )
    assert launcher.delete(plan.queue_id) == [j.name for j in jobs]
    assert launcher.list(plan.queue_id) == []


@pytest.mark.kube
def test_workflow_launch_on_kubernetes(
    settings: Settings, as_notebook: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMFORGE_HOME", str(tmp_path))
    store = f"local://{tmp_path / 'store'}"
    wf = Workflow.candles("ETHUSDT", "5m", "2024-08-01:2024-08-02", settings=settings, store=store)
    plan = wf.plan()
    with wf.launch("kubernetes", namespace="stf", api_client=as_notebook) as queue:
        jobs = queue.jobs()
        assert sorted(jobs.index) == sorted(s.job_name for s in plan.steps)
        assert set(jobs["state"]) == {"pending"}  # stored; no kubelet runs them here
        # Start commands went to queue-control; no Pod ran, so no telemetry came back.
        assert list(queue.events()) == []
    listed = Queue.list(store, settings=settings)
    assert listed.loc[plan.queue_id, "launcher"] == "kubernetes"
    assert KubernetesLauncher("stf", api_client=as_notebook).delete(plan.queue_id)


@pytest.mark.kube
def test_the_notebook_account_cannot_launch_elsewhere(settings: Settings, as_notebook: Any) -> None:
    plan = Workflow.candles(
        "BTCUSDT", "1h", "2024-08-01:2024-08-02", settings=settings, namespace="default"
    ).plan()
    launcher = KubernetesLauncher("default", api_client=as_notebook)
    with pytest.raises(StreamForgeError, match="Kubernetes said 403"):
        launcher.submit(plan.steps[0].job)


def _subset(expected: Any, actual: Any) -> bool:
    """Tell whether every field we set is stored as we set it (the server adds defaults)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _subset(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


# -- issue 13: a Job's reasons from its conditions and Pods (the client's own models) -----------
def _job(status: Any, name: str = "job-loader-candles-btcusdt-abc123") -> Any:
    from kubernetes import client

    container = client.V1Container(
        name="loader-candles",
        env=[client.V1EnvVar(name="TELEMETRY_PRODUCER_ID", value="loader-candles__abc123")],
    )
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name, labels={"target": "loader-candles"}),
        spec=client.V1JobSpec(
            template=client.V1PodTemplateSpec(spec=client.V1PodSpec(containers=[container]))
        ),
        status=status,
    )


def _pod(waiting: Any = None, terminated: Any = None, conditions: Any = None) -> Any:
    from kubernetes import client

    state = client.V1ContainerState(waiting=waiting, terminated=terminated)
    statuses = [
        client.V1ContainerStatus(
            name="loader-candles", image="x", image_id="", ready=False, restart_count=0,
            state=state,
        )
    ]  # fmt: skip
    return client.V1Pod(
        status=client.V1PodStatus(container_statuses=statuses, conditions=conditions)
    )


def test_kubernetes_reasons_map_to_job_states() -> None:
    import datetime as dt

    from kubernetes import client

    from streamforge_nb.workflow.kubernetes import _job_status

    pulling = _job_status(
        _job(client.V1JobStatus(active=1)),
        "q",
        [_pod(waiting=client.V1ContainerStateWaiting(
            reason="ImagePullBackOff", message='Back-off pulling image "nope:1"'))],
    )  # fmt: skip
    assert (pulling.state, pulling.producer) == ("active", "loader-candles__abc123")
    assert pulling.detail == 'ImagePullBackOff: Back-off pulling image "nope:1"'

    unschedulable = _job_status(
        _job(client.V1JobStatus()),
        "q",
        [_pod(conditions=[client.V1PodCondition(
            type="PodScheduled", status="False", reason="Unschedulable",
            message="0/1 nodes are available")])],
    )  # fmt: skip
    assert unschedulable.state == "pending"
    assert unschedulable.detail == "Unschedulable: 0/1 nodes are available"

    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    failed = client.V1JobCondition(
        type="Failed", status="True", reason="BackoffLimitExceeded",
        message="Job has reached the specified backoff limit", last_transition_time=when,
    )  # fmt: skip
    oom = _job_status(
        _job(client.V1JobStatus(failed=3, conditions=[failed])),
        "q",
        [_pod(terminated=client.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled"))],
    )
    assert oom.state == "failed"
    assert oom.ended_at == when.timestamp()
    assert oom.detail == (
        "BackoffLimitExceeded: Job has reached the specified backoff limit; "
        "OOMKilled (exit code 137)"
    )

    deadline = client.V1JobCondition(
        type="Failed", status="True", reason="DeadlineExceeded",
        message="Job was active longer than specified deadline",
    )  # fmt: skip
    late = _job_status(_job(client.V1JobStatus(failed=1, conditions=[deadline])), "q")
    assert (late.state, late.detail) == (
        "failed", "DeadlineExceeded: Job was active longer than specified deadline"
    )  # fmt: skip


def test_a_pod_that_cannot_start_fails_its_job_after_the_grace() -> None:
    import datetime as dt

    from kubernetes import client

    from streamforge_nb.workflow.kubernetes import _job_status

    def waiting_since(seconds: float, **state: Any) -> Any:
        pod = _pod(**state)
        created = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
        pod.metadata = client.V1ObjectMeta(creation_timestamp=created)
        return pod

    pull = client.V1ContainerStateWaiting(reason="ErrImagePull", message="no such host")
    young = _job_status(
        _job(client.V1JobStatus(active=1)), "q", [waiting_since(30, waiting=pull)], grace=60
    )
    assert (young.state, young.detail) == ("active", "ErrImagePull: no such host")
    old = _job_status(
        _job(client.V1JobStatus(active=1)), "q", [waiting_since(90, waiting=pull)], grace=60
    )
    assert old.state == "failed"
    assert old.detail.startswith("ErrImagePull: no such host (for 90 s, past the 60 s grace")
    assert old.ended_at is not None and old.ended_at < dt.datetime.now(dt.UTC).timestamp()

    unschedulable = client.V1PodCondition(
        type="PodScheduled", status="False", reason="Unschedulable", message="0/1 nodes"
    )
    waiting = _job_status(
        _job(client.V1JobStatus()), "q", [waiting_since(90, conditions=[unschedulable])], grace=60
    )
    # A cluster may still get a node: reported, not failed.
    assert (waiting.state, waiting.detail) == ("pending", "Unschedulable: 0/1 nodes (for 90 s)")
