"""Workflow targets (worker kinds) and the Kubernetes Job that runs each as a notebook.

A target names its payload notebook and the platform variables it reads; `job_spec` shapes
the seed's Job around `python -m streamforge_nb.workflow.runner run <notebook>`. The notebooks
ship inside the package (`streamforge_nb/notebooks/`); `STREAMFORGE_NOTEBOOKS` overrides them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from streamforge_nb.settings import local_home

__all__ = [
    "CONFIG_MAP",
    "OUTPUT_ENV",
    "PARAMETERS_ENV",
    "SECRET",
    "TARGETS",
    "JobTarget",
    "default_output",
    "job_parameters",
    "job_spec",
    "notebook_path",
    "notebooks_dir",
    "register_target",
]

CONFIG_MAP = "streamforge-config"
SECRET = "streamforge-secrets"
KAFKA_CA_SECRET = "kafka-cluster-ca"
KAFKA_CA_DIR = "/etc/kafka-ca"
PARAMETERS_ENV = "STREAMFORGE_PARAMETERS"
RUNNER_COMMAND = ("python", "-m", "streamforge_nb.workflow.runner", "run")
OUTPUT_ENV = "STREAMFORGE_OUTPUT"


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


_COMMON = JobTarget("", "").env_parameters
TARGETS: dict[str, JobTarget] = {}


def register_target(target: JobTarget) -> None:
    """Make `target` available to workflows and the Job runner."""
    TARGETS[target.name] = target


register_target(JobTarget("loader-candles", "loader_candles.ipynb", (
    *_COMMON, ("SYMBOL", "symbol"), ("TIME_RANGE", "time_range"), ("KAFKA_TOPIC", "kafka_topic"),
)))  # fmt: skip
register_target(JobTarget("arango-candles", "arango_candles.ipynb", (
    *_COMMON, ("KAFKA_TOPIC", "kafka_topic"),
)))  # fmt: skip
register_target(JobTarget("dummy", "dummy_service.ipynb"))


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
) -> dict[str, Any]:
    """Return the Kubernetes Job of one workflow step, shaped like the seed's (PLATFORM.md)."""
    notebook = TARGETS[target].notebook
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
            "template": {
                "metadata": {"labels": {"app": "streamforge", "queue_id": queue_id}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": target,
                        "image": image,
                        "command": [*RUNNER_COMMAND, notebook],
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                        "envFrom": [
                            {"configMapRef": {"name": CONFIG_MAP}},
                            {"secretRef": {"name": SECRET}},
                        ],
                        "volumeMounts": [
                            {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
                        ],
                    }],
                    # The cluster CA that CA_PATH (ConfigMap) points into; optional so a
                    # PLAINTEXT cluster needs no such Secret.
                    "volumes": [{"name": "kafka-ca", "secret": {
                        "secretName": KAFKA_CA_SECRET, "optional": True}}],
                    "nodeSelector": dict(node_selector or {"streamforge-worker": "true"}),
                },
            },
        },
    }  # fmt: skip


def job_parameters(target: JobTarget, env: Mapping[str, str]) -> dict[str, Any]:
    """Return the notebook parameters a Job's environment gives `target`."""
    parameters: dict[str, Any] = {
        parameter: env[var] for var, parameter in target.env_parameters if env.get(var)
    }
    if env.get(PARAMETERS_ENV):
        parameters.update(json.loads(env[PARAMETERS_ENV]))
    return parameters


def default_output(queue_id: str, target: str) -> str:
    """Where an executed notebook goes when the Job names no output: the local home."""
    return str(local_home() / "runs" / queue_id / f"{target}.ipynb")


