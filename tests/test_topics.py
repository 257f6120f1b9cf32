"""Service topics and ACLs: one definition for the local broker and the Strimzi manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streamforge_nb.exceptions import ConfigError, InvalidName
from streamforge_nb.kafka.clients import make_admin
from streamforge_nb.platform.topics import (
    PLATFORM_ACLS,
    SERVICE_TOPICS,
    TopicSpec,
    ensure_topics,
    render_manifest,
    strimzi_manifests,
)
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"


def test_broker_starts_with_the_service_topics(settings: Settings) -> None:
    admin = make_admin(settings)
    try:
        assert {"queue-control", "queue-events"} <= set(admin.list_topics())
        assert ensure_topics(admin) == []  # idempotent: nothing left to create
    finally:
        admin.close()


def test_ensure_topics_creates_only_what_is_missing(settings: Settings) -> None:
    name = unique_name()
    admin = make_admin(settings)
    try:
        assert ensure_topics(admin, (*SERVICE_TOPICS, TopicSpec(name, partitions=3))) == [name]
        assert ensure_topics(admin, (TopicSpec(name, partitions=3),)) == []
        described = admin.describe_topics([name])
        assert len(described[0]["partitions"]) == 3
    finally:
        admin.close()


def test_committed_strimzi_manifests_match_the_definitions() -> None:
    """The committed files are the defaults: Strimzi v1, cluster k3, namespace kafka."""
    for name, resources in strimzi_manifests().items():
        committed = (MANIFESTS / name).read_text()
        assert committed == render_manifest(resources), (
            f"manifests/{name} is stale: run `streamforge-nb manifests`"
        )
        documents = list(yaml.safe_load_all(committed))
        assert {d["apiVersion"] for d in documents} == {"kafka.strimzi.io/v1"}
        assert {d["metadata"]["namespace"] for d in documents} == {"kafka"}
        assert {d["metadata"]["labels"]["strimzi.io/cluster"] for d in documents} == {"k3"}


def keys(node: Any) -> set[str]:
    """Every mapping key anywhere in `node`."""
    if isinstance(node, dict):
        return set(node).union(*map(keys, node.values()))
    if isinstance(node, list):
        return set().union(*map(keys, node))
    return set()


def test_v1beta2_differs_from_v1_only_in_the_api_version() -> None:
    v1 = strimzi_manifests()
    assert strimzi_manifests(api_version="v1") == v1
    v1beta2 = strimzi_manifests(api_version="v1beta2")
    assert v1beta2.keys() == v1.keys()
    for name, resources in v1beta2.items():
        assert {r["apiVersion"] for r in resources} == {"kafka.strimzi.io/v1beta2"}
        assert [{**r, "apiVersion": "v1"} for r in resources] == [
            {**r, "apiVersion": "v1"} for r in v1[name]
        ]
    # v1 has no `operation` (one per rule); both versions carry the list `operations`.
    users = v1["kafka-users.yaml"]
    assert "operation" not in keys(users)
    acls = users[0]["spec"]["authorization"]["acls"]
    assert [tuple(a["operations"]) for a in acls] == [r.operations for r in PLATFORM_ACLS]
    assert all("spec" in r for resources in v1.values() for r in resources)


def test_cluster_and_namespace_are_options() -> None:
    rendered = strimzi_manifests(cluster="prod-kafka", namespace="streaming")
    resources = [r for group in rendered.values() for r in group]
    assert len(resources) == 5  # two topics, three users
    for resource in resources:
        assert resource["metadata"]["namespace"] == "streaming"
        assert resource["metadata"]["labels"] == {"strimzi.io/cluster": "prod-kafka"}
    with pytest.raises(InvalidName, match="Prod_Kafka"):
        strimzi_manifests(cluster="Prod_Kafka")
    with pytest.raises(InvalidName, match="kafka ns"):
        strimzi_manifests(namespace="kafka ns")
    with pytest.raises(ConfigError, match=r"'v1beta1'.*v1, v1beta2"):
        strimzi_manifests(api_version="v1beta1")


def test_strimzi_topics_carry_the_same_configs() -> None:
    rendered = {r["metadata"]["name"]: r for r in strimzi_manifests()["kafka-topics.yaml"]}
    for spec in SERVICE_TOPICS:
        assert rendered[spec.name]["spec"]["config"] == spec.config
        assert rendered[spec.name]["spec"]["partitions"] == spec.partitions
