"""The real node: cluster start, Job created -> Pod running, launch -> first telemetry event.

Starts a single-node cluster (streamforge_nb.local.cluster.node, the image from
streamforge_nb.testing.image: cached when its inputs did not change) and a local broker, then,
interleaved so both see the same machine state:
  - Job created -> its Pod's container running (the dummy target in the image);
  - `Workflow.launch(...)` -> the Job's first telemetry event, through the node and through
    the local launcher (processes on this machine) in the same run.
Needs root and what `scripts/install-node-deps` and `scripts/build-kube --node` provide.

    .venv/bin/python bench/node.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from streamforge_nb.control.queue import Queue
from streamforge_nb.local.cluster.node import LocalNode, local_node, node_unavailable
from streamforge_nb.platform.contract import BaseEvent
from streamforge_nb.settings import Settings
from streamforge_nb.testing import local_broker
from streamforge_nb.testing.image import build_image
from streamforge_nb.workflow.launchers import Launcher
from streamforge_nb.workflow.plan import Workflow
from streamforge_nb.workflow.targets import PARAMETERS_ENV, job_spec

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"


def deploy(node: LocalNode, settings: Settings) -> None:
    """Namespace, ConfigMap (PLAINTEXT broker) and the Secret the Jobs' envFrom names."""
    node.apply(MANIFESTS / "namespace.yaml")
    node.apply([
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "streamforge-config", "namespace": "stf"},
         "data": {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "streamforge-secrets", "namespace": "stf"},
         "stringData": {"ARANGO_PASSWORD": "unused"}},
    ])  # fmt: skip
    node.wait_service_account("stf")


def job_to_running(node: LocalNode, image: str, index: int) -> float:
    from kubernetes import client

    core = client.CoreV1Api(node.api_client())
    queue_id = f"wf-bench-node-{os.getpid()}-{index}"
    job = job_spec(
        job_name=f"job-bench-{os.getpid()}-{index}", namespace="stf", queue_id=queue_id,
        target="dummy", image=image,
        env={"QUEUE_ID": queue_id, "TELEMETRY_PRODUCER_ID": f"dummy__b{index}",
             PARAMETERS_ENV: json.dumps({"metrics_port": 0, "exit_after": 1})},
    )  # fmt: skip
    launcher = node.launcher()
    started = time.perf_counter()
    launcher.submit(job)
    while time.perf_counter() - started < 120:
        pods = core.list_namespaced_pod("stf", label_selector=f"job-name={job['metadata']['name']}")
        for pod in pods.items:
            for status in (pod.status and pod.status.container_statuses) or []:
                state = status.state
                if state is not None and (state.running or state.terminated):
                    took = time.perf_counter() - started
                    launcher.delete(queue_id)
                    return took
        time.sleep(0.02)
    raise SystemExit(f"the Pod of {job['metadata']['name']} did not run within 120 s")


def launch_to_first_event(
    settings: Settings, tmp: Path, launcher: Launcher | str, image: str
) -> float:
    workflow = Workflow(
        "BTCUSDT", "1m", "2024-08-01:2024-08-02", ["dummy"], settings=settings, image=image,
        store=f"local://{tmp / 'store'}", output_dir=str(tmp / "runs"),
    )  # fmt: skip
    first = threading.Event()

    def on_event(_event: BaseEvent) -> None:
        first.set()

    options: dict[str, Any] = {"settings": settings, "home": tmp} if launcher == "local" else {}
    with Queue(workflow.plan().queue_id, settings) as watch:
        watch.subscribe(on_event)
        watch.producers()
        started = time.perf_counter()
        with workflow.launch(launcher, **options) as queue:
            if not first.wait(120):
                raise SystemExit("the Job sent no telemetry within 120 s:\n" + queue.logs())
            took = time.perf_counter() - started
            queue.stop(timeout=60)
            queue.wait(timeout=120, progress=False)
    return took


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(values):.2f} s "
        f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    reason = node_unavailable()
    if reason:
        raise SystemExit(f"no real node here: {reason}")
    began = time.perf_counter()
    image = build_image()
    image_s = time.perf_counter() - began
    with tempfile.TemporaryDirectory(prefix="bench-node-") as name:
        tmp = Path(name)
        os.chmod(tmp, 0o777)
        os.environ["STREAMFORGE_HOME"] = str(tmp)
        os.umask(0)
        with local_broker(tmp / "kafka") as broker:
            settings = broker.settings()
            began = time.perf_counter()
            with local_node(tmp / "node", images=[image.archive]) as node:
                start_s = time.perf_counter() - began
                deploy(node, settings)
                running, via_node, via_local = [], [], []
                shared = tmp / "shared"
                shared.mkdir()
                for index in range(args.runs):
                    running.append(job_to_running(node, image.ref, index))
                    launcher = node.launcher(host_paths=[shared])
                    via_node.append(launch_to_first_event(settings, shared, launcher, image.ref))
                    via_local.append(launch_to_first_event(settings, tmp, "local", image.ref))
    cached = "cached" if image.cached else f"built in {image.seconds:.0f} s"
    print(f"image {image.ref}: {image.size_bytes / 1e9:.2f} GB ({cached}; {image_s:.1f} s here)")
    print(
        f"cluster start (image imported): {start_s:.1f} s "
        + ", ".join(f"{k} {v:.1f} s" for k, v in node.timings.items())
    )
    print(summary("Job created -> container running", running))
    print(summary("launch(node) -> first telemetry event ", via_node))
    print(summary("launch('local') -> first telemetry event", via_local))


if __name__ == "__main__":
    main()
