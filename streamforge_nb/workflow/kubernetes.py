"""The `kubernetes` launcher: the Job as planned, submitted to the API server.

In-cluster config, else kubeconfig (and its context); a queue's Jobs are found by their
`queue_id` label, and their conditions and Pods' states become the Job's state and reason.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from streamforge_nb.exceptions import ConfigError, StreamForgeError
from streamforge_nb.workflow.launchers import JobStatus, Launcher, _producer

__all__ = ["STUCK_GRACE_S", "KubernetesLauncher"]

STUCK_GRACE_S = 120.0
"""How long a Pod may wait on its image or config, or for a node, before it is reported:
then a Pod that cannot start by itself (ErrImagePull, CreateContainerConfigError, ...) makes
its Job failed, and an unschedulable one is shown as such while it waits."""


class KubernetesLauncher(Launcher):
    """Submit Jobs to Kubernetes (in-cluster config, else kubeconfig)."""

    name = "kubernetes"

    def __init__(
        self,
        namespace: str = "stf",
        api_client: Any = None,
        context: str | None = None,
        stuck_grace: float = STUCK_GRACE_S,
    ) -> None:
        from kubernetes import client, config

        self.namespace = namespace
        self.context = context
        self.stuck_grace = stuck_grace
        if api_client is None:
            try:
                if context:  # a named kubeconfig context wins over the in-cluster config
                    raise config.ConfigException("a kubeconfig context was named")
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                try:
                    config.load_kube_config(context=context)  # type: ignore[no-untyped-call]
                except config.ConfigException as exc:
                    raise ConfigError(
                        f"no Kubernetes config (in-cluster or kubeconfig): {exc}"
                    ) from None
            api_client = client.ApiClient()
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def options(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "context": self.context,
            "stuck_grace": self.stuck_grace,
        }

    def _call(self, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return func(*args, **kwargs)
        except ApiException as exc:
            reason = exc.reason or ""
            with contextlib.suppress(ValueError, TypeError):
                reason = json.loads(exc.body or "{}").get("message", reason)
            raise StreamForgeError(f"{what}: Kubernetes said {exc.status}: {reason}") from None
        except HTTPError as exc:
            raise StreamForgeError(f"{what}: Kubernetes API unreachable: {exc}") from None

    def submit(self, job: dict[str, Any], *, dry_run: bool = False) -> str:
        namespace = job["metadata"].get("namespace", self.namespace)
        extra = {"dry_run": "All"} if dry_run else {}
        created = self._call(
            f"creating Job {job['metadata']['name']}",
            self.batch.create_namespaced_job,
            namespace,
            job,
            **extra,
        )
        return str(created.metadata.name)

    def get(self, job_name: str) -> dict[str, Any]:
        """Return the Job as the API server stores it (a plain dict)."""
        job = self._call(
            f"reading Job {job_name}", self.batch.read_namespaced_job, job_name, self.namespace
        )
        result: dict[str, Any] = self.batch.api_client.sanitize_for_serialization(job)
        return result

    def list(self, queue_id: str) -> list[JobStatus]:
        jobs = self._call(
            f"listing Jobs of {queue_id}",
            self.batch.list_namespaced_job,
            self.namespace,
            label_selector=f"queue_id={queue_id}",
        )
        if not jobs.items:
            return []
        pods = self._call(
            f"listing Pods of {queue_id}",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=f"queue_id={queue_id}",
        )
        by_job: dict[str, builtins.list[Any]] = {}
        for pod in pods.items:
            by_job.setdefault((pod.metadata.labels or {}).get("job-name", ""), []).append(pod)
        return [
            _job_status(job, queue_id, by_job.get(job.metadata.name, []), grace=self.stuck_grace)
            for job in jobs.items
        ]

    def delete(self, queue_id: str, *, grace: float = 30.0) -> builtins.list[str]:
        """Delete the queue's Jobs with propagation `Background`.

        Background: the API server deletes the Job object at once and the garbage collector
        then deletes its Pods, each with `grace` s between SIGTERM (the runner asks its
        worker to stop, papermill saves the notebook) and SIGKILL. Foreground would keep
        the Job (with a deletionTimestamp) until every Pod is gone, so a cancel of a Pod
        stuck Terminating on a lost node would block, and `list()` would keep showing the
        Job; the Pods of a Pending Job go either way. `cancel()` has already waited its own
        grace for `interrupted`, so nothing is gained by waiting here.
        """
        names = [job.name for job in self.list(queue_id)]
        for name in names:
            self._call(
                f"deleting Job {name}",
                self.batch.delete_namespaced_job,
                name,
                self.namespace,
                propagation_policy="Background",
                grace_period_seconds=max(0, round(grace)),
            )
        return names

    def logs(self, job_name: str) -> str:
        pods = self._call(
            f"finding the Pods of {job_name}",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=f"job-name={job_name}",
        )
        texts = [
            self._call(
                f"reading logs of {pod.metadata.name}",
                self.core.read_namespaced_pod_log,
                pod.metadata.name,
                self.namespace,
            )
            for pod in pods.items
        ]
        return "\n".join(texts)


# Pod waiting reasons that mean the container will not start by itself.
_STUCK = ("ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "CreateContainerConfigError",
          "CreateContainerError", "InvalidImageName", "RunContainerError")  # fmt: skip


def _pod_reason(pod: Any) -> str:
    """Why a Pod is not running, from its container states: "ImagePullBackOff: <message>",
    "OOMKilled (exit code 137)", "Unschedulable: 0/1 nodes ...", or ""."""
    status = pod.status
    if status is None:
        return ""
    for container in status.container_statuses or []:
        state = container.state
        if state is None:
            continue
        if state.waiting is not None and state.waiting.reason not in (None, "ContainerCreating"):
            message = f": {state.waiting.message}" if state.waiting.message else ""
            return f"{state.waiting.reason}{message}"
        if state.terminated is not None and state.terminated.exit_code:
            reason = state.terminated.reason or "Error"
            return f"{reason} (exit code {state.terminated.exit_code})"
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"{condition.reason or 'Unschedulable'}: {condition.message or ''}".rstrip(": ")
    if status.reason:  # e.g. Evicted, DeadlineExceeded on the Pod
        return f"{status.reason}: {status.message or ''}".rstrip(": ")
    return ""


def _job_status(
    job: Any, queue_id: str, pods: Sequence[Any] = (), *, grace: float = STUCK_GRACE_S
) -> JobStatus:
    """A Job's state from its conditions (Complete, Failed: BackoffLimitExceeded,
    DeadlineExceeded) and its Pods' container states (waiting and termination reasons).

    A Job whose Pod has waited past `grace` in a state it cannot leave by itself is `failed`
    (Kubernetes would keep it Pending for ever); an unschedulable one says how long it waits.
    """
    status = job.status
    conditions = {c.type: c for c in status.conditions or [] if c.status == "True"}
    # Each Pod's reason (why it is not running) and how long it has been trying.
    waited = [(r, _waited(p)) for r, p in ((_pod_reason(p), p) for p in pods) if r]
    pod_reasons = [r for r, _w in waited]
    ended_at: Any = None
    if "Complete" in conditions or (status.succeeded and not status.active):
        state = "succeeded"
        ended_at = status.completion_time
    elif "Failed" in conditions:
        # Only the condition: between retries (backoffLimit) a Job has failed Pods and none
        # active, yet it is not over.
        state = "failed"
        failed = conditions.get("Failed")
        ended_at = failed.last_transition_time if failed is not None else None
    elif status.active and not _all_pending(pods):
        state = "active"
    else:  # Kubernetes counts a Pod waiting for a node or its image as active; we do not
        state = "pending"
    if state == "failed":
        failed = conditions.get("Failed")
        why = f"{failed.reason}: {failed.message}" if failed is not None else "Job failed"
        detail = "; ".join([why, *pod_reasons[-1:]])
    elif state in ("active", "pending"):
        blocked = [(r, w) for r, w in waited if r.startswith(_STUCK) and w > grace]
        if blocked:
            reason, seconds = blocked[-1]
            state, ended_at = "failed", time.time() - seconds + grace
            detail = (
                f"{reason} (for {seconds:.0f} s, past the {grace:.0f} s grace; the Job is "
                "still there: cancel() deletes it)"
            )
        else:
            detail = "; ".join(
                f"{r} (for {w:.0f} s)" if w > grace else r
                for r, w in waited
                if r.startswith(_STUCK) or r.startswith("Unschedulable") or w > grace
            ) or "; ".join(pod_reasons)
    else:
        detail = ""
    labels = job.metadata.labels or {}
    containers = job.spec.template.spec.containers if job.spec and job.spec.template else []
    producer = _producer(_as_dict(containers[0])) if containers else ""
    return JobStatus(
        job.metadata.name, queue_id, labels.get("target", ""), state, detail, producer,
        _epoch(ended_at),
    )  # fmt: skip


def _epoch(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    stamp = getattr(value, "timestamp", None)
    return float(stamp()) if callable(stamp) else None


def _all_pending(pods: Sequence[Any]) -> bool:
    return bool(pods) and all(getattr(p.status, "phase", None) == "Pending" for p in pods)


def _waited(pod: Any) -> float:
    """Seconds since the Pod was created (how long it has been trying to start)."""
    created = _epoch(getattr(pod.metadata, "creation_timestamp", None))
    return 0.0 if created is None else max(0.0, time.time() - created)


def _as_dict(container: Any) -> dict[str, Any]:
    if isinstance(container, dict):
        return container
    return {"env": list(container.env or [])}
