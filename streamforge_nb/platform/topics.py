"""The service topics and the platform user's ACLs, defined once for laptop and cluster.

`SERVICE_TOPICS` and `PLATFORM_ACLS` are what the local broker creates at start and what
`manifests/kafka-topics.yaml` / `manifests/kafka-user.yaml` (Strimzi KafkaTopic, KafkaUser)
are rendered from; a test keeps the committed manifests equal to this module's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from kafka import errors as kerr
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
)

from streamforge_nb.exceptions import kafka_errors

__all__ = [
    "PLATFORM_ACLS",
    "PLATFORM_USER",
    "SERVICE_TOPICS",
    "VIEWER_ACLS",
    "VIEWER_USER",
    "AclRule",
    "TopicSpec",
    "ensure_acls",
    "ensure_topics",
    "strimzi_manifests",
]

PLATFORM_USER = "user-streamforge"
# A read-only user for dashboards (kafka-ui, notebooks that only watch telemetry).
VIEWER_USER = "user-streamforge-viewer"
STRIMZI_CLUSTER = "k3"
NAMESPACE_KAFKA = "kafka"


@dataclass(frozen=True)
class TopicSpec:
    """A topic's name, partitions and topic-level configs."""

    name: str
    partitions: int = 1
    replicas: int = 1
    config: dict[str, str] = field(default_factory=dict)

    def create_request(self) -> dict[str, Any]:
        """Return kafka-python's `create_topics` options for this topic."""
        return {
            "num_partitions": self.partitions,
            "replication_factor": self.replicas,
            "configs": dict(self.config),
        }


# One partition each: commands and telemetry for a queue must stay in order, and the volume is
# tiny. Telemetry is kept a week so a reopened Queue can replay a finished run.
SERVICE_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("queue-control", config={"retention.ms": str(24 * 3600 * 1000)}),
    TopicSpec("queue-events", config={"retention.ms": str(7 * 24 * 3600 * 1000)}),
)


@dataclass(frozen=True)
class AclRule:
    """Operations a user may do on a resource (LITERAL or PREFIXED name)."""

    resource: str  # "topic" | "group" | "cluster"
    name: str
    operations: tuple[str, ...]
    pattern: str = "literal"  # "literal" | "prefix"


# Workers and notebooks: the service topics, every workflow's data/DLQ topics (prefix `wf-`)
# and consumer groups named after queues or the library.
PLATFORM_ACLS: tuple[AclRule, ...] = (
    AclRule("topic", "queue-control", ("Read", "Write", "Describe")),
    AclRule("topic", "queue-events", ("Read", "Write", "Describe")),
    AclRule("topic", "wf-", ("All",), "prefix"),
    AclRule("group", "wf-", ("Read", "Describe"), "prefix"),
    AclRule("group", "streamforge", ("Read", "Describe"), "prefix"),
)

VIEWER_ACLS: tuple[AclRule, ...] = (
    AclRule("topic", "queue-events", ("Read", "Describe")),
    AclRule("group", "streamforge-viewer", ("Read", "Describe"), "prefix"),
)

_RESOURCE = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "cluster": ResourceType.CLUSTER,
}
_PATTERN = {"literal": ACLResourcePatternType.LITERAL, "prefix": ACLResourcePatternType.PREFIXED}
_OPERATION = {
    "All": ACLOperation.ALL,
    "Read": ACLOperation.READ,
    "Write": ACLOperation.WRITE,
    "Create": ACLOperation.CREATE,
    "Describe": ACLOperation.DESCRIBE,
}


def ensure_topics(
    admin: KafkaAdminClient, topics: tuple[TopicSpec, ...] = SERVICE_TOPICS
) -> list[str]:
    """Create the missing `topics`; return the names created. Safe to call repeatedly."""
    with kafka_errors("listing topics"):
        existing = set(admin.list_topics())
    missing = {t.name: t.create_request() for t in topics if t.name not in existing}
    if not missing:
        return []
    with kafka_errors("creating topics"):
        result = admin.create_topics(missing, raise_errors=False)
    created = []
    for topic in result["topics"]:
        error = kerr.for_code(topic["error_code"])
        if error is kerr.NoError:
            created.append(topic["name"])
        elif error is not kerr.TopicAlreadyExistsError:
            with kafka_errors(f"creating topic {topic['name']}"):
                raise error(topic.get("error_message") or "")
    if created:
        with kafka_errors("waiting for new topics"):
            admin.wait_for_topics(created)
    return created


def acl_entries(user: str, rules: tuple[AclRule, ...]) -> list[ACL]:
    """Translate `rules` for `user` into kafka-python ACL objects."""
    acls = []
    for rule in rules:
        pattern = ResourcePattern(_RESOURCE[rule.resource], rule.name, _PATTERN[rule.pattern])
        for op in rule.operations:
            acls.append(ACL(f"User:{user}", "*", _OPERATION[op], ACLPermissionType.ALLOW, pattern))
    return acls


def ensure_acls(admin: KafkaAdminClient, user: str, rules: tuple[AclRule, ...]) -> None:
    """Grant `user` the `rules` (creating an ACL that exists is a no-op in Kafka)."""
    with kafka_errors(f"creating ACLs for {user}"):
        result = admin.create_acls(acl_entries(user, rules))
    failed = result.get("failed", [])
    if failed:
        acl, error = failed[0]
        with kafka_errors(f"creating ACL {acl} for {user}"):
            raise error


def strimzi_manifests() -> dict[str, list[dict[str, Any]]]:
    """Return Strimzi KafkaTopic and KafkaUser resources, keyed by manifest file name."""
    labels = {"strimzi.io/cluster": STRIMZI_CLUSTER}
    topics = [
        {
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaTopic",
            "metadata": {"name": t.name, "namespace": NAMESPACE_KAFKA, "labels": labels},
            "spec": {"partitions": t.partitions, "replicas": 3, "config": dict(t.config)},
        }
        for t in SERVICE_TOPICS
    ]
    users = [
        _kafka_user(PLATFORM_USER, PLATFORM_ACLS, labels),
        _kafka_user(VIEWER_USER, VIEWER_ACLS, labels),
    ]
    return {"kafka-topics.yaml": topics, "kafka-users.yaml": users}


def _kafka_user(user: str, rules: tuple[AclRule, ...], labels: dict[str, str]) -> dict[str, Any]:
    acls = [
        {
            "resource": {"type": r.resource, "name": r.name, "patternType": r.pattern},
            "operations": list(r.operations),
        }
        for r in rules
    ]
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaUser",
        "metadata": {"name": user, "namespace": NAMESPACE_KAFKA, "labels": labels},
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": acls},
        },
    }


def render_manifest(resources: list[dict[str, Any]]) -> str:
    """Render resources as one multi-document YAML file."""
    header = (
        "# Generated by `streamforge-nb manifests` from streamforge_nb/topics.py; do not edit.\n"
    )
    return header + str(yaml.safe_dump_all(resources, sort_keys=False))
