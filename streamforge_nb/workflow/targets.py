"""Workflow targets (worker kinds) and the Kubernetes Job that runs each as a notebook.

A target names its payload notebook and the platform variables it reads; `job_spec` shapes
the platform's Job around `python -m streamforge_nb.workflow.runner run <notebook>`. The notebooks
ship inside the package (`streamforge_nb/notebooks/`); `STREAMFORGE_NOTEBOOKS` overrides them.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from streamforge_nb.exceptions import ConfigError
from streamforge_nb.platform.names import check_parameters
from streamforge_nb.settings import local_home
from streamforge_nb.workflow.podsecurity import (
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    writable_volumes,
)

__all__ = [
    "CONFIG_MAP",
    "DEADLINE_MARGIN_S",
    "OUTPUT_ENV",
    "PARAMETERS_ENV",
    "SECRET",
    "TARGETS",
    "TIMEOUT_ENV",
    "JobTarget",
    "default_output",
    "job_parameters",
    "job_resources",
    "job_spec",
    "job_target",
    "notebook_path",
    "notebooks_dir",
    "register_target",
    "runs_volume",
]

CONFIG_MAP = "streamforge-config"
SECRET = "streamforge-secrets"
KAFKA_CA_SECRET = "kafka-cluster-ca"
KAFKA_CA_DIR = "/etc/kafka-ca"
PARAMETERS_ENV = "STREAMFORGE_PARAMETERS"
RUNNER_COMMAND = ("python", "-m", "streamforge_nb.workflow.runner", "run")
OUTPUT_ENV = "STREAMFORGE_OUTPUT"
TIMEOUT_ENV = "STREAMFORGE_TIMEOUT"
TARGET_ENV = "STREAMFORGE_TARGET"
"""A user's own target, as JSON, in its Jobs: the runner is another process, where only the
package's targets are registered."""
DEADLINE_MARGIN_S = 120
"""activeDeadlineSeconds = timeout + this: papermill's own timeout fires first, so the
notebook is saved with the reason; the deadline is the backstop for a runner that hangs."""

# Requests and limits that fit the platform's 1G single-user guarantee (PLATFORM.md): no Job
# may grow past what a user's own server is promised, and the requests leave room for several
# Jobs on a worker node. Memory limit = request would make a sink's Arrow batches OOM early.
_SMALL = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
_WORKER = {"requests": {"cpu": "100m", "memory": "384Mi"}, "limits": {"memory": "1Gi"}}


@dataclass(frozen=True)
class JobTarget:
    """A worker kind: which notebook it runs and which platform variables it reads."""

    name: str
    notebook: str
    # Environment variable -> notebook parameter.
    env_parameters: tuple[tuple[str, str], ...] = (
        ("QUEUE_ID", "queue_id"),
        ("TELEMETRY_PRODUCER_ID", "producer_id"),
    )
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: _WORKER)
    """Kubernetes requests and limits of the target's container."""
    timeout_s: int = 6 * 3600
    """How long one run may take: papermill's execution timeout and the Job's deadline."""


_COMMON = JobTarget("", "").env_parameters
TARGETS: dict[str, JobTarget] = {}


def register_target(target: JobTarget) -> None:
    """Make `target` available to workflows and the Job runner."""
    TARGETS[target.name] = target


register_target(JobTarget("loader-candles", "loader_candles.ipynb", (
    *_COMMON, ("SYMBOL", "symbol"), ("TIME_RANGE", "time_range"), ("KAFKA_TOPIC", "kafka_topic"),
)))  # fmt: skip
register_target(JobTarget("arango-candles", "arango_candles.ipynb", (
    *_COMMON, ("KAFKA_TOPIC", "kafka_topic"), ("TIME_RANGE", "time_range"),
)))  # fmt: skip
register_target(JobTarget("dummy", "dummy_service.ipynb", resources=_SMALL, timeout_s=86_400))
_BUILT_IN = frozenset(TARGETS)


def notebooks_dir() -> Path:
    """The payload notebooks: $STREAMFORGE_NOTEBOOKS if set, else those inside the package."""
    override = os.environ.get("STREAMFORGE_NOTEBOOKS")
    if override:
        return Path(override)
    # Package data, so an installed wheel finds them wherever it is run from.
    return Path(str(resources.files("streamforge_nb").joinpath("notebooks")))


def notebook_path(name: str) -> Path:
    """Return the path of payload notebook `name`, or raise `FileNotFoundError` naming where."""
    path = notebooks_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"notebook {name} not found in {path.parent}")
    return path


def job_spec(
    *,
    job_name: str,
    namespace: str,
    queue_id: str,
    target: str,
    image: str,
    env: Mapping[str, str],
    node_selector: Mapping[str, str] | None = None,
    resources: Mapping[str, Mapping[str, str]] | None = None,
    timeout_s: int | None = None,
    pull_secret: str = "regcred",
    volume: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return the Kubernetes Job of one workflow step, shaped like the platform's.

    `resources` overrides the target's requests/limits (merged per key), `timeout_s` its
    timeout; `pull_secret` names the registry Secret ("" for none); `volume` is a
    `(volume, volumeMount)` pair from `runs_volume`, where executed notebooks outlive the Pod.
    """
    spec = TARGETS[target]
    timeout = int(timeout_s or spec.timeout_s)
    env = {**env, TIMEOUT_ENV: str(timeout)}
    if target not in _BUILT_IN:
        own = {"name": spec.name, "notebook": spec.notebook, "env": spec.env_parameters}
        env[TARGET_ENV] = json.dumps(own)
    volumes: list[dict[str, Any]] = [
        # The cluster CA that CA_PATH (ConfigMap) points into; optional so a PLAINTEXT
        # cluster needs no such Secret.
        {"name": "kafka-ca", "secret": {"secretName": KAFKA_CA_SECRET, "optional": True}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
    ]
    # Read-only root filesystem: HOME and /tmp are emptyDirs (podsecurity.py).
    writable, writable_mounts = writable_volumes()
    volumes += writable
    mounts += writable_mounts
    if volume is not None:
        volumes.append(volume[0])
        mounts.append(volume[1])
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "containers": [{
            "name": target,
            "image": image,
            "command": [*RUNNER_COMMAND, spec.notebook],
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "envFrom": [
                {"configMapRef": {"name": CONFIG_MAP}},
                {"secretRef": {"name": SECRET}},
            ],
            "resources": job_resources(target, resources),
            "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
        "nodeSelector": dict(node_selector or {"streamforge-worker": "true"}),
    }  # fmt: skip
    if pull_secret:
        pod["imagePullSecrets"] = [{"name": pull_secret}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "namespace": namespace,
            "labels": {"app": "streamforge", "queue_id": queue_id, "target": target},
        },
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 3600,
            # Counts from the Job's start, across its retries.
            "activeDeadlineSeconds": timeout + DEADLINE_MARGIN_S,
            "template": {
                "metadata": {"labels": {"app": "streamforge", "queue_id": queue_id}},
                "spec": pod,
            },
        },
    }  # fmt: skip


def job_resources(
    target: str, overrides: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, dict[str, str]]:
    """Return `target`'s requests and limits with `overrides` merged in per key."""
    base = TARGETS[target].resources
    merged = {kind: dict(base.get(kind, {})) for kind in ("requests", "limits")}
    for kind, values in (overrides or {}).items():
        if kind not in merged or not isinstance(values, Mapping):
            raise ConfigError(
                f"resources of {target}: expected {{'requests'|'limits': {{...}}}}, "
                f"got {kind!r}: {values!r}"
            )
        merged[kind].update({str(k): str(v) for k, v in values.items()})
    return {kind: values for kind, values in merged.items() if values}


def runs_volume(text: str, runs: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse `pvc:<claim>:<mount path>` or `hostPath:<path>[:<mount path>]` into a
    `(volume, volumeMount)` pair, checking that `runs` (where notebooks go) is inside it."""
    kind, _, rest = text.partition(":")
    source, _, mount = rest.partition(":")
    if kind == "hostPath" and source.startswith("/"):
        volume = {"name": "runs", "hostPath": {"path": source, "type": "DirectoryOrCreate"}}
        mount = mount or source
    elif kind == "pvc" and source and mount:
        volume = {"name": "runs", "persistentVolumeClaim": {"claimName": source}}
    else:
        raise ConfigError(
            f"STREAMFORGE_RUNS_VOLUME {text!r}: expected pvc:<claim>:<mount path> or "
            "hostPath:<absolute path>[:<mount path>]"
        )
    if not mount.startswith("/") or not (runs + "/").startswith(mount.rstrip("/") + "/"):
        raise ConfigError(
            f"STREAMFORGE_RUNS {runs!r} is not inside the runs volume's mount path {mount!r}: "
            "the executed notebooks would not be kept"
        )
    return volume, {"name": "runs", "mountPath": mount}


def job_target(notebook: str, env: Mapping[str, str]) -> JobTarget | None:
    """Return the target that runs `notebook`: a registered one, else the Job's own
    (`STREAMFORGE_TARGET`, written by `job_spec` for a target a user registered)."""
    name = Path(notebook).name
    registered = next((t for t in TARGETS.values() if t.notebook == name), None)
    if registered is not None or not env.get(TARGET_ENV):
        return registered
    try:
        own = json.loads(env[TARGET_ENV])
        target = JobTarget(
            str(own["name"]), str(own["notebook"]), tuple((str(v), str(p)) for v, p in own["env"])
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{TARGET_ENV} is not a target's JSON: {exc!r}") from None
    return target if target.notebook == name else None


def job_parameters(target: JobTarget, env: Mapping[str, str]) -> dict[str, Any]:
    """Return the notebook parameters a Job's environment gives `target`, checked.

    Raises `InvalidName` (a ValueError) for a name papermill could not write safely into
    the parameters cell (`check_parameters`), ValueError for text that is not JSON.
    """
    parameters: dict[str, Any] = {
        parameter: env[var] for var, parameter in target.env_parameters if env.get(var)
    }
    if env.get(PARAMETERS_ENV):
        given = json.loads(env[PARAMETERS_ENV])
        parameters.update(check_parameters(given))
    return check_parameters(parameters)


def default_output(queue_id: str, target: str) -> str:
    """Where an executed notebook goes when the Job names no output: the local home."""
    return str(local_home() / "runs" / queue_id / f"{target}.ipynb")
