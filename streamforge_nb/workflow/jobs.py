"""Notebooks as Job payloads: the Job spec of a workflow step, and the runner inside it.

Every step runs `python -m streamforge_nb.jobs run <notebook>`: papermill executes the
target's notebook from `notebooks/` with the Job's parameters, and the executed notebook is
the run's record. The parameters come from the platform's environment variables (QUEUE_ID,
SYMBOL, TIME_RANGE, KAFKA_TOPIC, TELEMETRY_PRODUCER_ID, ...) plus `STREAMFORGE_PARAMETERS`
(JSON) for the rest; the output goes to `STREAMFORGE_OUTPUT` (any papermill URL: a mounted
path, `s3://`, ...).

When a cell fails, papermill has already saved the output notebook; the runner sends an
`error` event naming the cell and the exception and exits non-zero. On SIGTERM (a deleted Job
or Pod) it asks its own worker to stop through `queue-control`, because papermill passes no
signal to the kernel: the worker ends with `interrupted` and the notebook is saved.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .settings import Settings, local_home

__all__ = [
    "CONFIG_MAP",
    "SECRET",
    "TARGETS",
    "JobTarget",
    "job_spec",
    "main",
    "notebook_path",
    "register_target",
    "run_job",
]

log = logging.getLogger("streamforge_nb.jobs")

CONFIG_MAP = "streamforge-config"
SECRET = "streamforge-secrets"
KAFKA_CA_SECRET = "kafka-cluster-ca"
KAFKA_CA_DIR = "/etc/kafka-ca"
PARAMETERS_ENV = "STREAMFORGE_PARAMETERS"
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


def notebook_path(name: str) -> Path:
    """Find a payload notebook: $STREAMFORGE_NOTEBOOKS, the repo's notebooks/, the image's."""
    candidates = [
        Path(os.environ["STREAMFORGE_NOTEBOOKS"])
        if os.environ.get("STREAMFORGE_NOTEBOOKS")
        else None,
        Path(__file__).resolve().parent.parent / "notebooks",
        Path.cwd() / "notebooks",
    ]
    for folder in candidates:
        if folder is not None and (folder / name).is_file():
            return folder / name
    looked = ", ".join(str(c) for c in candidates if c is not None)
    raise FileNotFoundError(f"notebook {name} not found (looked in {looked})")


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
                        "command": ["python", "-m", "streamforge_nb.jobs", "run", notebook],
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


def run_job(notebook: str, env: Mapping[str, str] | None = None) -> int:
    """Execute a payload notebook with the Job's parameters; return the exit code."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    env = os.environ if env is None else env
    target = next((t for t in TARGETS.values() if t.notebook == Path(notebook).name), None)
    if target is None:
        raise SystemExit(f"no target runs {notebook}; known: {', '.join(sorted(TARGETS))}")
    parameters = job_parameters(target, env)
    queue_id = parameters.get("queue_id", "")
    output = env.get(OUTPUT_ENV) or default_output(queue_id, target.name)
    if "://" not in output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm(queue_id, target.name))
    log.info("running %s", notebook, extra={"queue_id": queue_id, "output": output})
    try:
        papermill.execute_notebook(
            str(notebook_path(Path(notebook).name)),
            output,
            parameters=parameters,
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
        )
    except PapermillExecutionError as exc:
        _report_cell_failure(parameters, target.name, exc, output)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _report_cell_failure(parameters: Mapping[str, Any], target: str, exc: Any, output: str) -> None:
    from .contract import Error
    from .worker import send_event

    reason = f"cell {exc.cell_index} failed: {exc.ename}: {exc.evalue} (notebook saved: {output})"
    log.error(reason)
    event = Error(
        queue_id=parameters.get("queue_id") or "unknown",
        producer=parameters.get("producer_id") or target,
        message=reason,
        error_type=exc.ename,
        cell=exc.cell_index,
    )
    try:
        send_event(Settings.from_env(), event)
    except Exception as send_failure:  # the notebook is saved; the exit code still tells
        log.error("could not send the error event: %s", send_failure)


def _stop_on_sigterm(queue_id: str, target: str) -> Any:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        from .contract import StopCommand
        from .worker import send_command

        log.warning("SIGTERM: asking %s of %s to stop", target, queue_id)
        send_command(Settings.from_env(), StopCommand(queue_id=queue_id, target=target))

    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m streamforge_nb.jobs run <notebook>`: the command of every Job."""
    from .logs import configure_json_logging

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "run":
        print("usage: python -m streamforge_nb.jobs run <notebook.ipynb>", file=sys.stderr)
        return 2
    configure_json_logging(bool(os.environ.get("STREAMFORGE_DEBUG")))
    return run_job(args[1])


if __name__ == "__main__":
    sys.exit(main())
