"""A Job's metrics on the node, scraped where its `started` event says they are.

The node's Pods share the host's network, so no fixed port serves two workers: the node's
ConfigMap asks for port 0 (a free one), each worker names its `host:port` in its `started`
event, and lingers after its work so a scrape still sees its last counts.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NAMESPACE, NOTEBOOK_SA
from prometheus_client.parser import text_string_to_metric_families

from streamforge_nb.local.cluster.node import LocalNode
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing.exchange import ExchangeServer
from streamforge_nb.testing.image import BuiltImage
from streamforge_nb.workflow.plan import Workflow

pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]

LINGER_S = 300  # longer than the test needs: its Jobs are deleted once scraped


@pytest.fixture
def exchange() -> Iterator[ExchangeServer]:
    with ExchangeServer() as server:
        yield server


def records_written(address: str, worker: str) -> float:
    """The `streamforge_records_written_total` of `worker` served at `address` (host:port)."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "streamforge_records_written_total"
        and sample.labels.get("worker") == worker
    ]
    assert len(found) == 1, text[:2000]
    return found[0]


def test_a_jobs_metrics_are_scraped_where_its_started_event_says(
    node: LocalNode,
    node_image: BuiltImage,
    stf: Path,
    platform_settings: Settings,
    exchange: ExchangeServer,
) -> None:
    from kubernetes import client

    # This test's Jobs linger after their work, as worker-config.yaml makes them in production.
    client.CoreV1Api(node.api_client()).patch_namespaced_config_map(
        "streamforge-config", NAMESPACE,
        {"data": {"STREAMFORGE_METRICS_LINGER_SECONDS": str(LINGER_S)}},
    )  # fmt: skip
    store_url = f"local://{stf / 'store'}"
    wf = Workflow.candles(
        "BTCUSDT", "15m", "2024-08-01:2024-08-03", base_url=exchange.base_url, store=store_url,
        image=node_image.ref, output_dir=str(stf / "runs"), settings=platform_settings,
    )  # fmt: skip
    plan = wf.plan()
    as_notebook = node.service_account_client(NAMESPACE, NOTEBOOK_SA)
    launcher = node.launcher(api_client=as_notebook, host_paths=[stf])
    try:
        with wf.launch(launcher) as queue:
            # Not queue.wait(): it waits for the Jobs to exit too, after their linger.
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                states = {p: s.status for p, s in queue.producers().items()}
                if len(states) == 2 and set(states.values()) <= {"finished", "error", "failed"}:
                    break
                time.sleep(0.5)
            started = {e.producer: e for e in queue.events() if e.status == "started"}
        assert set(states.values()) == {"finished"}, states
        with CandleStore.open(store_url) as store:
            stored = len(store.load("BTCUSDT", "15m", "2024-08-01", "2024-08-03"))
        assert stored == 192
        for step in plan.steps:
            address = (started[step.producer_id].model_extra or {}).get("metrics_address")
            assert isinstance(address, str), started[step.producer_id]
            # Both Pods are on the host's network: two ports, each a worker's own.
            assert records_written(address, step.target) == stored
        addresses = {(started[s.producer_id].model_extra or {})["metrics_address"]
                     for s in plan.steps}  # fmt: skip
        assert len(addresses) == len(plan.steps)
    finally:
        launcher.delete(plan.queue_id)
        # The patch above made this test a field manager of the ConfigMap: the next test's
        # server-side apply of worker-config.yaml would conflict on the linger (409).
        client.CoreV1Api(node.api_client()).delete_namespaced_config_map(
            "streamforge-config", NAMESPACE
        )
