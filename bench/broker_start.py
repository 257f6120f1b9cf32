"""How long the local broker takes to become usable.

Prints: first start (certificates, SCRAM users, storage format, start, topics, ACLs), restart
of a formatted broker, and stop; plus, as the anchor measured in the same run, a bare JVM
running a Kafka tool with the same classpath (the floor any JVM broker start pays).

    .venv/bin/python bench/broker_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.local.maven import fetch_jars


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    jars = fetch_jars()
    java = shutil.which("java") or "java"
    anchor_cmd = [java, "-cp", f"{jars}/*", "kafka.tools.StorageTool", "random-uuid"]
    anchor, first, restart, stop = [], [], [], []
    for _ in range(runs):
        anchor.append(timed(lambda: subprocess.run(anchor_cmd, capture_output=True, check=True)))
        with tempfile.TemporaryDirectory() as home:
            broker = LocalBroker(Path(home))
            first.append(timed(lambda b=broker: b.up(port=0)))
            stop.append(timed(broker.down))
            restart.append(timed(broker.up))
            broker.down()
    med = statistics.median
    print(f"runs: {runs}")
    print(f"anchor: bare JVM + Kafka classpath (StorageTool random-uuid): {med(anchor):.2f} s")
    print(
        f"first start (format + start + topics + ACLs): {med(first):.2f} s "
        f"({med(first) / med(anchor):.1f}x anchor)"
    )
    print(
        f"restart of a formatted broker:                {med(restart):.2f} s "
        f"({med(restart) / med(anchor):.1f}x anchor)"
    )
    print(f"stop:                                         {med(stop):.2f} s")


if __name__ == "__main__":
    main()
