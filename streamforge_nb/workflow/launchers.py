"""Where a workflow's Jobs run: local processes or Kubernetes, behind one small interface.

`local` runs each Job's exact container command and environment as a process on this machine
(the ConfigMap and Secret a Pod would get come from the current Settings instead); it is the
embedded default. `kubernetes` submits the Job as it is to the API server (in-cluster config,
else kubeconfig). Both find a queue's Jobs by its `queue_id` label. The interface and the
registry are `streamforge_nb.control.launchers` (the control plane reattaches launchers too);
this module offers them where workflows have always found them, with the launchers' helpers.
"""

from __future__ import annotations

from typing import Any

from streamforge_nb.control.launchers import (
    JobStatus,
    Launcher,
    get_launcher,
    launcher_for,
    register_launcher,
)

__all__ = [
    "NODE_HOST_PATHS_ENV",
    "JobStatus",
    "Launcher",
    "get_launcher",
    "launcher_for",
    "register_launcher",
]


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


NODE_HOST_PATHS_ENV = "STREAMFORGE_NODE_HOST_PATHS"
"""Set (a JSON list of paths) in the local hub's single-user Pods: there `kubernetes` shapes
Jobs for the local node (`NodeLauncher`: host network, those host paths mounted)."""
