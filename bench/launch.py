"""Launch latency: from `Workflow.launch("local")` to the Job's first telemetry event.

The Job is a real local notebook Job (the dummy target: papermill starts a kernel, the
notebook's worker sends `started`). The anchor, measured in the same run: a bare
`papermill` run of an empty notebook (process start, kernel start, one cell, save) -- the
floor any notebook Job pays. Targets: at most 3 s, and at most 1.5x the anchor.

    .venv/bin/python bench/launch.py [--runs 5] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from streamforge_nb.control.queue import Queue
from streamforge_nb.platform.contract import BaseEvent
from streamforge_nb.settings import Settings
from streamforge_nb.testing import local_broker
from streamforge_nb.workflow.plan import Workflow


@contextlib.contextmanager
def broker_settings(bootstrap: str | None, tmp: Path) -> Iterator[Settings]:
    if bootstrap:
        yield Settings(kafka_bootstrap_servers=bootstrap)
        return
    with local_broker(tmp / "kafka") as broker:
        yield broker.settings()


def bare_papermill(tmp: Path) -> float:
    notebook = new_notebook(cells=[new_code_cell("x = 1")])
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp / "empty.ipynb"
    nbformat.write(notebook, path)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(path),
            str(tmp / "empty-out.ipynb"),
            "--kernel",
            "python3",
            "--no-progress-bar",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def launch_to_first_event(settings: Settings, tmp: Path) -> float:
    workflow = Workflow(
        "BTCUSDT",
        "1m",
        "2024-08-01:2024-08-02",
        ["dummy"],
        settings=settings,
        store=f"local://{tmp / 'store'}",
        output_dir=str(tmp / "runs"),
    )
    first = threading.Event()

    def on_event(_event: BaseEvent) -> None:
        first.set()

    with Queue(workflow.plan().queue_id, settings) as watch:
        watch.subscribe(on_event)
        watch.producers()  # following before the launch: the wait below is the Job's alone
        started = time.perf_counter()
        with workflow.launch("local", settings=settings, home=tmp) as queue:
            if not first.wait(60):
                raise SystemExit("the Job sent no telemetry within 60 s:\n" + queue.logs())
            took = time.perf_counter() - started
            queue.stop(timeout=30)
            queue.wait(timeout=60, progress=False)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as name:
        tmp = Path(name)
        os.environ["STREAMFORGE_HOME"] = str(tmp)
        with broker_settings(args.bootstrap, tmp) as settings:
            anchor, launch = [], []
            for _ in range(args.runs):  # interleaved: both see the same machine state
                anchor.append(bare_papermill(tmp))
                launch.append(launch_to_first_event(settings, tmp))
    a, b = statistics.median(anchor), statistics.median(launch)
    print(f"runs: {args.runs} each, interleaved")
    print(
        f"anchor, bare papermill of an empty notebook: median {a:.2f} s "
        f"(min {min(anchor):.2f}, max {max(anchor):.2f})"
    )
    print(
        f"launch('local') -> first telemetry event:   median {b:.2f} s "
        f"(min {min(launch):.2f}, max {max(launch):.2f}), {b / a:.2f}x the anchor"
    )
    print(
        f"targets: <= 3 s {'met' if b <= 3 else 'MISSED'}; "
        f"<= 1.5x anchor {'met' if b <= 1.5 * a else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
