"""Where a workflow's Jobs run: local processes or Kubernetes, behind one small interface.

`local` runs each Job's exact container command and environment as a process on this machine
(the ConfigMap and Secret a Pod would get come from the current Settings instead); it is the
embedded default. `kubernetes` submits the Job as it is to the API server (in-cluster config,
else kubeconfig). Both find a queue's Jobs by its `queue_id` label.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamforge_nb.exceptions import ConfigError

__all__ = ["JobStatus", "Launcher", "get_launcher", "launcher_for", "register_launcher"]


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


def _local(**options: Any) -> Launcher:
    from streamforge_nb.workflow.processes import LocalLauncher

    return LocalLauncher(**options)


NODE_HOST_PATHS_ENV = "STREAMFORGE_NODE_HOST_PATHS"
"""Set (a JSON list of paths) in the local hub's single-user Pods: there `kubernetes` shapes
Jobs for the local node (`NodeLauncher`: host network, those host paths mounted)."""


def _kubernetes(**options: Any) -> Launcher:
    import json
    import os

    from streamforge_nb.workflow.kubernetes import KubernetesLauncher

    host_paths = os.environ.get(NODE_HOST_PATHS_ENV)
    if host_paths is not None:
        from pathlib import Path

        from streamforge_nb.local.cluster.node import NodeLauncher

        paths = json.loads(host_paths)
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ConfigError(f"{NODE_HOST_PATHS_ENV} must be a JSON list of paths")
        return NodeLauncher(host_paths=[Path(p) for p in paths], **options)
    return KubernetesLauncher(**options)


# Each launcher's module is imported when first used: the kubernetes client is heavy.
register_launcher("local", _local)
register_launcher("kubernetes", _kubernetes)
