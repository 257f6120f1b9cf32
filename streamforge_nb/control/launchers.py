"""Where a queue's Jobs run, as the control plane sees it: the `Launcher` interface and registry.

A Queue reattaches the launcher its queue-state record names (`launcher_for`) to list, stop
and read its Jobs, so the interface lives here, below the workflow layer whose launchers
(`local` processes, `kubernetes`) implement it. `streamforge_nb.plugins` registers those.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamforge_nb.registry import Registry

__all__ = [
    "LAUNCHERS",
    "JobStatus",
    "Launcher",
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


LAUNCHERS: Registry[Callable[..., Launcher]] = Registry("launcher")
"""Launcher factories by name; `streamforge_nb.plugins` registers "local" and "kubernetes"."""


def register_launcher(name: str, factory: Callable[..., Launcher]) -> None:
    """Make a launcher available to `Workflow.launch(name)`."""
    LAUNCHERS.register(name, factory)


def get_launcher(name: str | Launcher, **options: Any) -> Launcher:
    """Return the launcher registered as `name` (a Launcher passes through)."""
    if isinstance(name, Launcher):
        return name
    return LAUNCHERS.get(name)(**options)
