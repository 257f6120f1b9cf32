"""Service topics and ACLs: one definition for the local broker and the Strimzi manifests."""

from __future__ import annotations

from pathlib import Path

from streamforge_nb.kafka.clients import make_admin
from streamforge_nb.platform.topics import (
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
    for name, resources in strimzi_manifests().items():
        committed = (MANIFESTS / name).read_text()
        assert committed == render_manifest(resources), (
            f"manifests/{name} is stale: run `streamforge-nb manifests`"
        )


def test_strimzi_topics_carry_the_same_configs() -> None:
    rendered = {r["metadata"]["name"]: r for r in strimzi_manifests()["kafka-topics.yaml"]}
    for spec in SERVICE_TOPICS:
        assert rendered[spec.name]["spec"]["config"] == spec.config
        assert rendered[spec.name]["spec"]["partitions"] == spec.partitions
