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
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamforge_nb.exceptions import ConfigError, StreamForgeError
from streamforge_nb.local.process import signal_group, spawn, terminate_group
from streamforge_nb.settings import Settings, local_home

__all__ = [
    "JobStatus",
    "KubernetesLauncher",
    "Launcher",
    "LocalLauncher",
    "get_launcher",
    "register_launcher",
]


@dataclass(frozen=True)
class JobStatus:
    """One Job of a queue: its name, target and state (active, succeeded, failed)."""

    name: str
    queue_id: str
    target: str
    state: str
    detail: str = ""


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
    def delete(self, queue_id: str) -> builtins.list[str]:
        """Delete (and stop) the Jobs of `queue_id`; return their names."""

    @abstractmethod
    def logs(self, job_name: str) -> str:
        """Return what the Job's process printed."""


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


class LocalLauncher(Launcher):
    """Run Jobs as local processes; their records and logs live in `$STREAMFORGE_HOME/jobs`."""

    name = "local"

    def __init__(self, home: Path | None = None, settings: Settings | None = None) -> None:
        self.home = (home or local_home()) / "jobs"
        self.settings = settings or Settings.from_env()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

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
        record = {"name": name, "pid": process.pid, "labels": _labels(job), "log": str(log_path)}
        (self.home / f"{name}.json").write_text(json.dumps(record))
        return str(name)

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
        }
        env.update({k: v for k, v in optional.items() if v})
        return env

    def _records(self, queue_id: str) -> builtins.list[dict[str, Any]]:
        records = []
        for path in sorted(self.home.glob("*.json")):
            record = json.loads(path.read_text())
            if record["labels"].get("queue_id") == queue_id:
                records.append(record)
        return records

    def _state(self, record: dict[str, Any]) -> tuple[str, str]:
        process = self._processes.get(record["name"])
        if process is not None:
            code = process.poll()
        elif "exit_code" in record:
            code = record["exit_code"]
        else:  # started by another Python process: only liveness is known
            alive = Path(f"/proc/{record['pid']}").exists()
            return ("active", "") if alive else ("unknown", "exited; exit code not known here")
        if code is None:
            return "active", ""
        return ("succeeded", "exit code 0") if code == 0 else ("failed", f"exit code {code}")

    def list(self, queue_id: str) -> list[JobStatus]:
        jobs = []
        for record in self._records(queue_id):
            state, detail = self._state(record)
            labels = record["labels"]
            jobs.append(
                JobStatus(record["name"], queue_id, labels.get("target", ""), state, detail)
            )
        return jobs

    def wait(self, job_name: str, timeout: float | None = None) -> int:
        """Wait for a Job started by this launcher; return its exit code."""
        return self._processes[job_name].wait(timeout)

    def delete(self, queue_id: str) -> builtins.list[str]:
        names = []
        for record in self._records(queue_id):
            process = self._processes.pop(record["name"], None)
            # SIGTERM to the runner only, as the kubelet does to a Pod's main process: it asks
            # its worker to stop and lets papermill save the notebook. The group (the kernel
            # too) is killed only if that takes too long.
            if process is not None:
                terminate_group(process, grace=30, leader_only=True)
            else:  # started by another Python process: ask, as a Pod is asked
                signal_group(record["pid"], signal.SIGTERM, leader_only=True)
            (self.home / f"{record['name']}.json").unlink(missing_ok=True)
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

    def __init__(self, namespace: str = "stf", api_client: Any = None) -> None:
        from kubernetes import client, config

        self.namespace = namespace
        if api_client is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                try:
                    config.load_kube_config()  # type: ignore[no-untyped-call]
                except config.ConfigException as exc:
                    raise ConfigError(
                        f"no Kubernetes config (in-cluster or kubeconfig): {exc}"
                    ) from None
            api_client = client.ApiClient()
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

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
        return [_job_status(job, queue_id) for job in jobs.items]

    def delete(self, queue_id: str) -> builtins.list[str]:
        names = [job.name for job in self.list(queue_id)]
        for name in names:
            self._call(
                f"deleting Job {name}",
                self.batch.delete_namespaced_job,
                name,
                self.namespace,
                propagation_policy="Background",
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


def _job_status(job: Any, queue_id: str) -> JobStatus:
    status = job.status
    if status.succeeded:
        state = "succeeded"
    elif status.failed and not status.active:
        state = "failed"
    elif status.active:
        state = "active"
    else:
        state = "pending"
    labels = job.metadata.labels or {}
    detail = (
        f"active {status.active or 0}, succeeded {status.succeeded or 0}, "
        f"failed {status.failed or 0}"
    )
    return JobStatus(job.metadata.name, queue_id, labels.get("target", ""), state, detail)


register_launcher("local", LocalLauncher)
register_launcher("kubernetes", KubernetesLauncher)
