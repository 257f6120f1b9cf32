"""Where a workflow's Jobs run: local processes or Kubernetes, behind one small interface.

`local` runs each Job's exact container command and environment as a process on this machine
(the ConfigMap and Secret a Pod would get come from the current Settings instead); it is the
embedded default. `kubernetes` submits the Job as it is to the API server (in-cluster config,
else kubeconfig). Both find a queue's Jobs by its `queue_id` label.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamforge_nb.exceptions import ConfigError, StreamForgeError
from streamforge_nb.local.process import pid_alive, spawn, terminate_group
from streamforge_nb.settings import Settings, local_home

__all__ = [
    "JobStatus",
    "KubernetesLauncher",
    "Launcher",
    "LocalLauncher",
    "get_launcher",
    "launcher_for",
    "register_launcher",
]


@dataclass(frozen=True)
class JobStatus:
    """One Job of a queue: its name, target and state (pending, active, succeeded, failed,
    unknown), `detail` (why: "exit code 1", "killed by SIGKILL", "ImagePullBackOff: ..."),
    the producer id its worker reports as, and when it ended (Unix seconds), if known."""

    name: str
    queue_id: str
    target: str
    state: str
    detail: str = ""
    producer: str = ""
    ended_at: float | None = None


class Launcher(ABC):
    """Submit, list, delete Jobs and read their logs."""

    name: str = ""

    @abstractmethod
    def submit(self, job: dict[str, Any]) -> str:
        """Start `job` (a Kubernetes Job manifest); return its name."""

    @abstractmethod
    def list(self, queue_id: str) -> list[JobStatus]:
        """Return the Jobs labelled with `queue_id`."""

    @abstractmethod
    def delete(self, queue_id: str, *, grace: float = 30.0) -> builtins.list[str]:
        """Delete (and stop) the Jobs of `queue_id`; return their names.

        `grace`: seconds a Job's process gets between SIGTERM and SIGKILL.
        """

    @abstractmethod
    def logs(self, job_name: str) -> str:
        """Return what the Job's process printed."""

    def options(self) -> dict[str, Any]:
        """What another process needs to reattach this launcher (saved in queue state)."""
        return {}


def launcher_for(kind: str, options: dict[str, Any] | None = None) -> Launcher:
    """Reattach the launcher a queue-state record names (`launcher`, `launcher_options`)."""
    return get_launcher(kind, **(options or {}))


_LAUNCHERS: dict[str, Callable[..., Launcher]] = {}


def register_launcher(name: str, factory: Callable[..., Launcher]) -> None:
    """Make a launcher available to `Workflow.launch(name)`."""
    _LAUNCHERS[name] = factory


def get_launcher(name: str | Launcher, **options: Any) -> Launcher:
    """Return the launcher registered as `name` (a Launcher passes through)."""
    if isinstance(name, Launcher):
        return name
    if name not in _LAUNCHERS:
        raise ConfigError(f"unknown launcher {name!r}; known: {', '.join(sorted(_LAUNCHERS))}")
    return _LAUNCHERS[name](**options)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


def _labels(job: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = job["metadata"]["labels"]
    return labels


def _producer(container: dict[str, Any]) -> str:
    """The producer id a Job's worker reports as (its TELEMETRY_PRODUCER_ID)."""
    for item in container.get("env") or []:
        name = item.get("name") if isinstance(item, dict) else getattr(item, "name", None)
        value = item.get("value") if isinstance(item, dict) else getattr(item, "value", None)
        if name == "TELEMETRY_PRODUCER_ID" and value:
            return str(value)
    return ""


def _exit_reason(code: int) -> str:
    """Return "exit code 1", or "killed by SIGKILL" when a signal ended the process."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), so a reused pid is not ours."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class LocalLauncher(Launcher):
    """Run Jobs as local processes; their records and logs live in `$STREAMFORGE_HOME/jobs`.

    Each Job's record (`<name>.json`) holds its pid, labels, producer id and, once the
    process ended, its exit code and end time: a watcher thread of the process that
    started it writes them, so any other process reading the record knows how it ended
    ("exit code 1", "killed by SIGKILL"). A process whose starter is gone too is known
    only to have ended.
    """

    name = "local"

    def __init__(self, home: Path | str | None = None, settings: Settings | None = None) -> None:
        self.base = Path(home) if home is not None else local_home()
        self.home = self.base / "jobs"
        self.settings = settings or Settings.from_env()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def options(self) -> dict[str, Any]:
        return {"home": str(self.base)}

    def submit(self, job: dict[str, Any]) -> str:
        name = job["metadata"]["name"]
        container = _container(job)
        command = list(container["command"])
        if command[0] == "python":  # the image's Python is this environment's
            command[0] = sys.executable
        env = {**os.environ, **self._from_config_and_secret()}
        env.update({e["name"]: e["value"] for e in container.get("env", [])})
        log_path = self.home / f"{name}.log"
        process, _ = spawn(command, log_path, env=env)
        self._processes[name] = process
        record = {
            "name": name, "pid": process.pid, "labels": _labels(job), "log": str(log_path),
            "producer": _producer(container), "started": _start_ticks(process.pid),
        }  # fmt: skip
        path = self.home / f"{name}.json"
        path.write_text(json.dumps(record))
        threading.Thread(
            target=self._watch, args=(process, path, record), name=f"job-{name}", daemon=True
        ).start()
        return str(name)

    @staticmethod
    def _watch(process: subprocess.Popen[bytes], path: Path, record: dict[str, Any]) -> None:
        """Record how the process ended, for every process that reads the record."""
        code = process.wait()
        if path.is_file():  # a deleted Job's record stays deleted
            ended = {**record, "exit_code": code, "ended_at": time.time()}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(ended))
            tmp.replace(path)

    def _from_config_and_secret(self) -> dict[str, str]:
        """What the ConfigMap and Secret give a Pod, from this machine's settings."""
        s = self.settings
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
            "QUEUE_CONTROL_TOPIC": s.queue_control_topic,
            "QUEUE_EVENTS_TOPIC": s.queue_events_topic,
        }
        optional = {
            "KAFKA_USER": s.kafka_user,
            "KAFKA_PASSWORD": s.kafka_password.get_secret_value() if s.kafka_password else None,
            "CA_PATH": s.kafka_ca_path,
            "KAFKA_SECURITY_PROTOCOL": s.kafka_security_protocol,
            "ARANGO_URL": s.arango_url,
            # The Secret's ArangoDB credentials: never in the URL, parameters or commands.
            "ARANGO_USER": s.arango_user,
            "ARANGO_PASSWORD": s.arango_password.get_secret_value() if s.arango_password else None,
        }
        env.update({k: v for k, v in optional.items() if v})
        return env

    def _records(self, queue_id: str) -> builtins.list[dict[str, Any]]:
        records = []
        for path in sorted(self.home.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):  # being replaced or deleted
                record = json.loads(path.read_text())
                if record["labels"].get("queue_id") == queue_id:
                    records.append(record)
        return records

    def _alive(self, record: dict[str, Any]) -> bool:
        """Tell whether the record's pid is still its process (not a reused pid)."""
        pid = int(record["pid"])
        started = record.get("started")
        return pid_alive(pid) and (started is None or _start_ticks(pid) == started)

    def _state(self, record: dict[str, Any]) -> tuple[str, str, float | None]:
        process = self._processes.get(record["name"])
        code: int | None
        ended_at = record.get("ended_at")
        if process is not None:
            code = process.poll()
            if code is not None and ended_at is None:
                ended_at = time.time()  # the watcher is writing it
        elif "exit_code" in record:
            code = record["exit_code"]
        elif self._alive(record):
            code = None
        else:  # its starter is gone too: only the end is known
            return "unknown", "the process ended (its exit code is not known here)", None
        if code is None:
            return "active", "", None
        if code == 0:
            return "succeeded", "exit code 0", ended_at
        return "failed", _exit_reason(code), ended_at

    def list(self, queue_id: str) -> list[JobStatus]:
        jobs = []
        for record in self._records(queue_id):
            state, detail, ended_at = self._state(record)
            labels = record["labels"]
            jobs.append(
                JobStatus(
                    record["name"], queue_id, labels.get("target", ""), state, detail,
                    record.get("producer", ""), ended_at,
                )
            )  # fmt: skip
        return jobs

    def wait(self, job_name: str, timeout: float | None = None) -> int:
        """Wait for a Job started by this launcher; return its exit code."""
        return self._processes[job_name].wait(timeout)

    def delete(self, queue_id: str, *, grace: float = 30.0) -> builtins.list[str]:
        """Terminate each Job's process group; remove its record; return the Jobs' names.

        SIGTERM to the runner only, as the kubelet does to a Pod's main process: it asks
        its worker to stop and lets papermill save the notebook. After `grace` s the whole
        group (the kernel too) gets SIGKILL. Works from any process: a Job started by
        another one is found by its recorded pid (checked against its start time).
        """
        names = []
        for record in self._records(queue_id):
            process = self._processes.pop(record["name"], None)
            path = self.home / f"{record['name']}.json"
            path.unlink(missing_ok=True)  # first: the watcher must not write it back
            if process is not None:
                terminate_group(process, grace=grace, leader_only=True)
            elif "exit_code" not in record and self._alive(record):
                terminate_group(
                    int(record["pid"]), grace=grace, leader_only=True,
                    gone=lambda r=record: not self._alive(r),  # type: ignore[misc]
                )  # fmt: skip
            names.append(record["name"])
        return names

    def logs(self, job_name: str) -> str:
        path = self.home / f"{job_name}.log"
        if not path.is_file():
            raise StreamForgeError(f"no local Job named {job_name} (looked in {self.home})")
        return path.read_text(errors="replace")


class KubernetesLauncher(Launcher):
    """Submit Jobs to Kubernetes (in-cluster config, else kubeconfig)."""

    name = "kubernetes"

    def __init__(
        self, namespace: str = "stf", api_client: Any = None, context: str | None = None
    ) -> None:
        from kubernetes import client, config

        self.namespace = namespace
        self.context = context
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
        return {"namespace": self.namespace, "context": self.context}

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
        return [_job_status(job, queue_id, by_job.get(job.metadata.name, [])) for job in jobs.items]

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


def _job_status(job: Any, queue_id: str, pods: Sequence[Any] = ()) -> JobStatus:
    """A Job's state from its conditions (Complete, Failed: BackoffLimitExceeded,
    DeadlineExceeded) and its Pods' container states (waiting and termination reasons)."""
    status = job.status
    conditions = {c.type: c for c in status.conditions or [] if c.status == "True"}
    pod_reasons = [r for r in (_pod_reason(p) for p in pods) if r]
    ended_at: Any = None
    if "Complete" in conditions or (status.succeeded and not status.active):
        state = "succeeded"
        ended_at = status.completion_time
    elif "Failed" in conditions or (status.failed and not status.active):
        state = "failed"
        failed = conditions.get("Failed")
        ended_at = failed.last_transition_time if failed is not None else None
    elif status.active:
        state = "active"
    else:
        state = "pending"
    if state == "failed":
        failed = conditions.get("Failed")
        why = f"{failed.reason}: {failed.message}" if failed is not None else "Job failed"
        detail = "; ".join([why, *pod_reasons[-1:]])
    elif state in ("active", "pending"):
        detail = "; ".join(pod_reasons)
        stuck = [r for r in pod_reasons if r.startswith(_STUCK)]
        detail = "; ".join(stuck) or detail
    else:
        detail = ""
    labels = job.metadata.labels or {}
    containers = job.spec.template.spec.containers if job.spec and job.spec.template else []
    producer = _producer(_as_dict(containers[0])) if containers else ""
    return JobStatus(
        job.metadata.name, queue_id, labels.get("target", ""), state, detail, producer,
        ended_at.timestamp() if hasattr(ended_at, "timestamp") else None,
    )  # fmt: skip


def _as_dict(container: Any) -> dict[str, Any]:
    if isinstance(container, dict):
        return container
    return {"env": list(container.env or [])}


register_launcher("local", LocalLauncher)
register_launcher("kubernetes", KubernetesLauncher)
