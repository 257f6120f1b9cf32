"""The runner inside every Job: execute the target's notebook with papermill.

Every step runs `python -m streamforge_nb.workflow.runner run <notebook>`: papermill executes the
target's notebook (package data; `STREAMFORGE_NOTEBOOKS` overrides) with the Job's parameters,
and the executed notebook is the run's record. The parameters come from the platform's
environment variables (QUEUE_ID, SYMBOL, TIME_RANGE, KAFKA_TOPIC, TELEMETRY_PRODUCER_ID, ...)
plus `STREAMFORGE_PARAMETERS` (JSON) for the rest; the output goes to `STREAMFORGE_OUTPUT`
(any papermill URL: a mounted path, `s3://`, ...).

Every failure is reported before the runner exits 1: an `error` event with the reason (a
failed cell names the cell; a notebook that cannot be found, parameters that are not JSON,
a kernel that died, any papermill error name themselves) and, whenever execution got that
far, where the saved notebook is. A worker that already sent its own `error` keeps it: the
queue's status shows the first error of a producer, never the runner's wrapper of it.

On SIGTERM (a deleted Job or Pod) it asks its own worker to stop through `queue-control`,
because papermill passes no signal to the kernel: the worker ends with `interrupted` and the
notebook is saved.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from streamforge_nb.settings import Settings
from streamforge_nb.workflow.targets import (
    OUTPUT_ENV,
    PARAMETERS_ENV,
    TARGETS,
    TIMEOUT_ENV,
    default_output,
    job_parameters,
    job_target,
    notebook_path,
)

__all__ = ["kernel_over_ipc", "main", "run_job"]

log = logging.getLogger(__name__)


def run_job(notebook: str, env: Mapping[str, str] | None = None) -> int:
    """Execute a payload notebook with the Job's parameters; return the exit code.

    Never raises (but for KeyboardInterrupt/SystemExit): any failure is sent as an `error`
    event with its reason, then 1 is returned.
    """
    env = os.environ if env is None else env
    # Who to report as, even when nothing else can be read.
    parameters: dict[str, Any] = {
        "queue_id": env.get("QUEUE_ID") or "",
        "producer_id": env.get("TELEMETRY_PRODUCER_ID") or "",
    }
    name = Path(notebook).stem.replace("_", "-")
    output: str | None = None
    timeout: int | None = None
    began = time.monotonic()
    try:
        target = job_target(notebook, env)
        if target is None:
            raise LookupError(f"no target runs {notebook}; known: {', '.join(sorted(TARGETS))}")
        name = target.name
        try:
            parameters.update(job_parameters(target, env))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad parameters in {PARAMETERS_ENV}: {exc}") from None
        queue_id = parameters.get("queue_id", "")
        source = str(notebook_path(Path(notebook).name))
        destination = env.get(OUTPUT_ENV) or default_output(queue_id, target.name)
        papermill = _import_papermill(hdfs=destination.startswith("hdfs://"))
        if "://" not in destination:
            Path(destination).parent.mkdir(parents=True, exist_ok=True)
        timeout = _timeout(env)
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm(queue_id, target.name))
        log.info("running %s", notebook, extra={"queue_id": queue_id, "output": destination})
        try:
            output = destination  # from here on papermill saves what it executed
            with tempfile.TemporaryDirectory(prefix="streamforge-kernel-") as sockets:
                papermill.execute_notebook(
                    source,
                    destination,
                    parameters=parameters,
                    kernel_name="python3",
                    progress_bar=False,
                    # Cell output goes to the Pod's log too (`kubectl logs`, Queue.logs()).
                    log_output=True,
                    execution_timeout=timeout,
                    config=kernel_over_ipc(sockets),
                )
        finally:
            signal.signal(signal.SIGTERM, previous)
    except Exception as exc:
        cell = None
        if type(exc).__name__ == "PapermillExecutionError":
            cell = exc.cell_index  # type: ignore[attr-defined]
            ename, evalue = exc.ename, exc.evalue  # type: ignore[attr-defined]
            reason = f"cell {cell} failed: {ename}: {evalue}"
        else:
            ename, reason = type(exc).__name__, f"{type(exc).__name__}: {exc}"
        if ename == "DeadKernelError" and _out_of_memory():
            reason += " (out of memory: the container hit its memory limit)"
        elif timeout is not None and time.monotonic() - began >= timeout:
            reason += f" (the run passed its {timeout} s timeout, {TIMEOUT_ENV})"
        _report_failure(parameters, name, reason + _saved(output), ename, cell)
        return 1
    return 0


def _import_papermill(*, hdfs: bool = False) -> Any:
    """Import papermill without jsonschema's IRI checker, and without its HDFS handler
    unless `hdfs` (the notebook is saved on HDFS).

    nbformat imports jsonschema, whose format checkers import `rfc3987_syntax` when it is
    installed, and that module builds a Lark grammar on import: 1.0-1.4 s of CPU in every
    Job's runner, two Jobs per queue (issue 20: a 5-symbol batch starts ten at once). The
    notebook schemas nbformat validates against check no IRI format, so nothing the runner
    does needs it; anything imported already is kept. `papermill.iorw` imports pyarrow for
    its HDFS handler only (0.15 s of CPU per Job, a third of papermill's import); without it
    that handler says pyarrow is missing, and pyarrow stays importable for anything after.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    left_out = not hdfs and "pyarrow" not in sys.modules
    if left_out:
        sys.modules["pyarrow"] = None  # type: ignore[assignment]
    try:
        import papermill
    finally:
        if left_out and "pyarrow" in sys.modules and sys.modules["pyarrow"] is None:
            del sys.modules["pyarrow"]
    return papermill


def kernel_over_ipc(folder: str) -> Any:
    """Configuration that makes the kernel talk over Unix sockets in `folder`, not TCP ports.

    jupyter_client picks a kernel's five TCP ports by binding port 0 and closing the socket;
    the kernel binds them seconds later. Kernels started at once on one host (the local
    launcher's Jobs, Pods on the host network) race for those ports, and now and then one
    dies with "ZMQError: Address already in use" before its first cell (papermill#511).
    Sockets in a folder of the run's own cannot collide, and nothing listens on the network.
    """
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = os.path.join(folder, "kernel")  # sockets: kernel-1 ... kernel-5
    return config


def _timeout(env: Mapping[str, str]) -> int | None:
    """Papermill's per-cell execution timeout: the Job's timeout (one cell runs the worker)."""
    value = env.get(TIMEOUT_ENV)
    try:
        return int(value) if value else None
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={value!r} is not a whole number of seconds") from None


# The OOM killer's count in this container's memory cgroup: v2, then v1.
_OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")


def _out_of_memory() -> bool:
    """Whether the OOM killer has killed a process of this container (the kernel, say)."""
    for name in _OOM_FILES:
        try:
            lines = Path(name).read_text().splitlines()
        except OSError:
            continue
        counts = dict(line.split(maxsplit=1) for line in lines if " " in line)
        return counts.get("oom_kill", "0").strip() not in ("", "0")
    return False


def _saved(output: str | None) -> str:
    """Where the executed notebook is, when execution got that far."""
    if output is None:
        return " (no notebook executed)"
    if "://" in output or Path(output).is_file():
        return f" (notebook saved: {output})"
    return " (no notebook saved)"


def _report_failure(
    parameters: Mapping[str, Any], target: str, reason: str, ename: str, cell: int | None
) -> None:
    from streamforge_nb.kafka.send import send_event
    from streamforge_nb.platform.contract import Error

    log.error(reason)
    event = Error(
        queue_id=parameters.get("queue_id") or "unknown",
        producer=parameters.get("producer_id") or target,
        message=reason[:4000],
        error_type=ename[:100],
        cell=cell,
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
