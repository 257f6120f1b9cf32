"""The candle workflow on the real node, in a namespace that ENFORCES Pod Security "restricted".

The Jobs run as planned (no hostNetwork, no hostPath volume) in `stf` labelled as
manifests/namespace.yaml ships it. They reach Kafka and the exchange on the node's Pod network
(podnet.py: a bridge; no Service works inside a Pod here), through a broker of this module
that also listens on the bridge's address (listener PODS); the store and the executed
notebooks go to a PersistentVolumeClaim bound to a host directory, where the test reads them.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import MANIFESTS, NAMESPACE, NOTEBOOK_SA
from test_node import as_pod, refusal

from streamforge_nb.exceptions import LocalBrokerError
from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.local.cluster.node import ENFORCE_LABEL, LocalNode, for_node
from streamforge_nb.local.cluster.podnet import POD_SUBNET, host_directory_claim
from streamforge_nb.platform.topics import PLATFORM_USER
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing.exchange import ExchangeServer
from streamforge_nb.testing.image import BuiltImage
from streamforge_nb.workflow.plan import Workflow

pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]

CLAIM = "streamforge-runs"


@pytest.fixture(scope="module")
def pods_broker(node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker with SASL_SSL also on the node's Pod network gateway (listener PODS)."""
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-pods"), pods_address=node.pod_gateway)
    try:
        broker.up(port=0, timeout=120)
    except LocalBrokerError as exc:
        pytest.fail(f"the broker for Pods did not start: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture(scope="module")
def pods_exchange(node: LocalNode) -> Iterator[ExchangeServer]:
    with ExchangeServer(host=node.pod_gateway) as server:
        yield server


@pytest.fixture
def restricted_stf(node: LocalNode, stf: Path, pods_broker: LocalBroker) -> Iterator[Path]:
    """`stf` enforcing "restricted" as namespace.yaml ships it, its ConfigMap and Secrets
    pointing at `pods_broker`'s PODS listener, and the claim CLAIM bound to `stf`'s directory."""
    from kubernetes import client

    core = client.CoreV1Api(node.api_client())
    node.apply(MANIFESTS / "namespace.yaml")
    platform = pods_broker.settings(PLATFORM_USER)
    assert platform.kafka_password and platform.kafka_ca_path
    core.patch_namespaced_config_map("streamforge-config", NAMESPACE, {"data": {
        "KAFKA_BOOTSTRAP_SERVERS": pods_broker.pods_bootstrap(),
    }})  # fmt: skip
    password = platform.kafka_password.get_secret_value().encode()
    core.patch_namespaced_secret("streamforge-secrets", NAMESPACE, {"data": {
        "KAFKA_PASSWORD": base64.b64encode(password).decode(),
    }})  # fmt: skip
    ca = Path(platform.kafka_ca_path).read_bytes()
    core.patch_namespaced_secret("kafka-cluster-ca", NAMESPACE, {"data": {
        "ca.crt": base64.b64encode(ca).decode(),
    }})  # fmt: skip
    volume, claim = host_directory_claim(NAMESPACE, CLAIM, stf)
    node.apply([volume, claim])
    try:
        yield stf
    finally:
        core.delete_namespaced_persistent_volume_claim(CLAIM, NAMESPACE)
        with contextlib.suppress(Exception):  # the volume may still be releasing its claim
            core.delete_persistent_volume(volume["metadata"]["name"])
        # Back as the other node tests' `stf` leaves it (their fixture applies this anyway).
        node.apply_allowing_host_pods(MANIFESTS / "namespace.yaml")


def test_candle_workflow_runs_end_to_end_in_a_namespace_enforcing_restricted(
    node: LocalNode,
    node_image: BuiltImage,
    restricted_stf: Path,
    pods_broker: LocalBroker,
    pods_exchange: ExchangeServer,
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(node.api_client())
    labels = core.read_namespace(NAMESPACE).metadata.labels
    assert labels[ENFORCE_LABEL] == "restricted"
    shared = restricted_stf
    store_url = f"local://{shared / 'store'}"
    platform = pods_broker.settings(PLATFORM_USER)
    wf = Workflow.candles(
        "BTCUSDT",
        "15m",
        "2024-08-01:2024-08-03",
        base_url=pods_exchange.base_url,
        store=store_url,
        image=node_image.ref,
        output_dir=str(shared / "runs"),
        settings=platform.model_copy(update={"runs_volume": f"pvc:{CLAIM}:{shared}"}),
    )
    plan = wf.plan()
    # The same Jobs on the host's network (as other node tests run them) are refused here.
    for step in plan.steps:
        message = refusal(node, as_pod(for_node(step.job), NAMESPACE, step.job_name))
        assert message.split('"restricted:latest": ', 1)[1] == (
            "host namespaces (hostNetwork=true)"
        ), message

    as_notebook = node.service_account_client(NAMESPACE, NOTEBOOK_SA)
    launcher = node.launcher(api_client=as_notebook, host_network=False)
    with wf.launch(launcher) as queue:
        final = queue.wait(
            timeout=300, targets=["loader-candles", "arango-candles"], progress=False
        )
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"queue_id={plan.queue_id}").items
    assert set(final["status"]) == {"finished"}, final.to_dict("index")
    # Each Pod had an address of its own on the Pod network, and the claim as its only volume
    # from outside the Pod.
    assert {p.metadata.labels["job-name"] for p in pods} == {s.job_name for s in plan.steps}
    for pod in pods:
        assert not pod.spec.host_network
        assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(POD_SUBNET)
        kept = [v.persistent_volume_claim.claim_name for v in pod.spec.volumes
                if v.persistent_volume_claim]  # fmt: skip
        assert kept == [CLAIM]
        assert not [v for v in pod.spec.volumes if v.host_path]

    with CandleStore.open(store_url) as store:
        stored = len(store.load("BTCUSDT", "15m", "2024-08-01", "2024-08-03"))
    assert stored == 192
    assert final.loc[plan.steps[1].producer_id, "records_written"] == stored
    for step in plan.steps:
        notebook = nbformat.read(step.output, as_version=4)
        texts = [o.get("text", "") for c in notebook.cells for o in c.get("outputs", [])]
        assert any("ended normally" in t for t in texts), step.target
    launcher.delete(plan.queue_id)
