"""The runner inside every Job: execute the target's notebook with papermill.

Every step runs `python -m streamforge_nb.workflow.runner run <notebook>`: papermill executes the
target's notebook (package data; `STREAMFORGE_NOTEBOOKS` overrides) with the Job's parameters,
and the executed notebook is the run's record. The parameters come from the platform's
environment variables (QUEUE_ID, SYMBOL, TIME_RANGE, KAFKA_TOPIC, TELEMETRY_PRODUCER_ID, ...)
plus `STREAMFORGE_PARAMETERS` (JSON) for the rest; the output goes to `STREAMFORGE_OUTPUT`
(any papermill URL: a mounted path, `s3://`, ...).

When a cell fails, papermill has already saved the output notebook; the runner sends an
`error` event naming the cell and the exception and exits non-zero. On SIGTERM (a deleted Job
or Pod) it asks its own worker to stop through `queue-control`, because papermill passes no
signal to the kernel: the worker ends with `interrupted` and the notebook is saved.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from streamforge_nb.settings import Settings
from streamforge_nb.workflow.targets import (
    OUTPUT_ENV,
    TARGETS,
    default_output,
    job_parameters,
    notebook_path,
)

__all__ = ["main", "run_job"]

log = logging.getLogger(__name__)


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
    from streamforge_nb.kafka.send import send_event
    from streamforge_nb.platform.contract import Error

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
        from streamforge_nb.kafka.send import send_command
        from streamforge_nb.platform.contract import StopCommand

        log.warning("SIGTERM: asking %s of %s to stop", target, queue_id)
        send_command(Settings.from_env(), StopCommand(queue_id=queue_id, target=target))

    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m streamforge_nb.workflow.runner run <notebook>`: the command of every Job."""
    from streamforge_nb.logs import configure_json_logging

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "run":
        usage = "usage: python -m streamforge_nb.workflow.runner run <notebook.ipynb>"
        print(usage, file=sys.stderr)
        return 2
    configure_json_logging(bool(os.environ.get("STREAMFORGE_DEBUG")))
    return run_job(args[1])


if __name__ == "__main__":
    sys.exit(main())
