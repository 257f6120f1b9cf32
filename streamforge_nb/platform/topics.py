"""The service topics and the platform user's ACLs, defined once for laptop and cluster.

`SERVICE_TOPICS` and `PLATFORM_ACLS` are what the local broker creates at start and what
`manifests/kafka-topics.yaml` / `manifests/kafka-users.yaml` (Strimzi KafkaTopic, KafkaUser)
are rendered from; a test keeps the committed manifests equal to this module's output.
"""

from __future__ import annotations

import time
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

from streamforge_nb.exceptions import ConfigError, kafka_errors
from streamforge_nb.platform.names import check_dns1123_label
from streamforge_nb.settings import Settings

__all__ = [
    "KAFKA_UI_ACLS",
    "KAFKA_UI_USER",
    "PLATFORM_ACLS",
    "PLATFORM_USER",
    "SERVICE_TOPICS",
    "STRIMZI_API_VERSIONS",
    "VIEWER_ACLS",
    "VIEWER_USER",
    "AclRule",
    "TopicSpec",
    "broker_count",
    "data_topic_spec",
    "ensure_acls",
    "ensure_queue_topics",
    "ensure_topics",
    "strimzi_manifests",
]

PLATFORM_USER = "user-streamforge"
# A read-only user for dashboards (kafka-ui, notebooks that only watch telemetry).
VIEWER_USER = "user-streamforge-viewer"
STRIMZI_CLUSTER = "k3"
NAMESPACE_KAFKA = "kafka"
STRIMZI_API_VERSIONS = ("v1", "v1beta2")
"""`kafka.strimzi.io` versions `strimzi_manifests` renders: v1 for Strimzi 0.49 and later (1.x
serves nothing else), v1beta2 for Strimzi 0.32 to 0.48 (0.49 to 0.51 serve both and warn)."""


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


# Keyed by queue id, 12 partitions each: one queue's commands and telemetry stay in order in
# one partition (murmur2 of the id), and a reader of one queue reads only its partition from
# the queue's start time, never the other queues' week of history. Readers compute the
# partition from the topic's real count, so a cluster with another count still works.
# Telemetry is kept a week so a reopened Queue can replay a finished run.
SERVICE_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("queue-control", partitions=12, config={"retention.ms": str(24 * 3600 * 1000)}),
    TopicSpec("queue-events", partitions=12, config={"retention.ms": str(7 * 24 * 3600 * 1000)}),
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

# kafka-ui (kafbat, manifests/kafka-ui-values.yaml): read-only. It lists brokers, topics,
# groups and ACLs (cluster Describe) and shows broker configs (cluster DescribeConfigs);
# browses the service and data topics (Read, Describe; DescribeConfigs for the topic page);
# shows group lag from committed offsets (group Describe). No Write, Create, Alter or Delete,
# and no group of its own: it browses with assigned partitions, committing nothing. A user
# of its own: the viewer stays the narrow one notebooks that only watch telemetry get.
KAFKA_UI_USER = "user-streamforge-kafka-ui"
_BROWSE = ("Read", "Describe", "DescribeConfigs")
KAFKA_UI_ACLS: tuple[AclRule, ...] = (
    AclRule("cluster", "kafka-cluster", ("Describe", "DescribeConfigs")),
    AclRule("topic", "queue-control", _BROWSE),
    AclRule("topic", "queue-events", _BROWSE),
    AclRule("topic", "wf-", _BROWSE, "prefix"),
    AclRule("group", "wf-", ("Describe",), "prefix"),
    AclRule("group", "streamforge", ("Describe",), "prefix"),
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
    "DescribeConfigs": ACLOperation.DESCRIBE_CONFIGS,
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
    created = []
    deadline = time.monotonic() + FENCED_WAIT_S
    while missing:
        with kafka_errors("creating topics"):
            result = admin.create_topics(missing, raise_errors=False)
        fenced = {}
        for topic in result["topics"]:
            error = kerr.for_code(topic["error_code"])
            message = topic.get("error_message") or ""
            if error is kerr.NoError:
                created.append(topic["name"])
            elif _fenced(error, message) and time.monotonic() < deadline:
                fenced[topic["name"]] = missing[topic["name"]]
            elif error is not kerr.TopicAlreadyExistsError:
                with kafka_errors(f"creating topic {topic['name']}"):
                    raise error(message)
        missing = fenced
        if missing:
            time.sleep(0.5)
    if created:
        with kafka_errors("waiting for new topics"):
            admin.wait_for_topics(created)
    return created


FENCED_WAIT_S = 30.0
"""How long a topic's creation waits for a fenced broker (KRaft, just restarted) to rejoin."""


def _fenced(error: type[Exception], message: str) -> bool:
    # A KRaft broker that has just (re)started is fenced until the controller hears from it,
    # and creations meanwhile are refused as if replicas were missing ("All brokers are
    # currently fenced"; a sink starting during a broker restart exited 1 on it). Only that
    # wording: a genuine replication shortfall is said at once.
    return error is kerr.InvalidReplicationFactorError and "fenced" in message


def data_topic_spec(
    name: str, *, partitions: int = 1, brokers: int, settings: Settings
) -> TopicSpec:
    """A queue's data (or DLQ) topic: the cluster's replication and the data retention.

    Replicas: `settings.topic_replicas`, else min(3, brokers), so a 3-broker cluster loses
    no candle with a broker and a single local broker still works.
    """
    replicas = settings.topic_replicas or min(3, brokers)
    if replicas > brokers:
        raise ConfigError(
            f"STREAMFORGE_TOPIC_REPLICAS={replicas}, but the cluster has {brokers} broker(s): "
            f"topic {name} cannot be created"
        )
    return TopicSpec(name, partitions, replicas, {"retention.ms": str(settings.topic_retention_ms)})


def ensure_queue_topics(
    admin: KafkaAdminClient, settings: Settings, *names: str, partitions: int = 1
) -> list[str]:
    """Create a queue's missing data/DLQ topics (`data_topic_spec`); return those created."""
    brokers = broker_count(admin)
    specs = tuple(
        data_topic_spec(n, partitions=partitions, brokers=brokers, settings=settings) for n in names
    )
    return ensure_topics(admin, specs)


def broker_count(admin: KafkaAdminClient) -> int:
    """Return how many brokers the cluster has (from metadata: no ACL needed)."""
    with kafka_errors("describing the cluster"):
        return len(admin.describe_cluster()["brokers"])


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


# v1 against v1beta2, from Strimzi's CRDs (0.50 serves both, 1.2 only v1), for what is
# rendered here: KafkaUser v1 drops `spec.authorization.acls[].operation` (one operation per
# rule, deprecated since Strimzi 0.32) and requires the list `operations`, which v1beta2 has
# accepted since 0.32 (Strimzi's upgrade notes ask every KafkaUser to use it before 0.49).
# KafkaTopic's spec (partitions, replicas, config, topicName) is the same in both. v1 makes
# `.spec` required in both kinds. So both renderings carry `operations`, never `operation`,
# and differ only in `apiVersion`.
def strimzi_manifests(
    *, cluster: str = STRIMZI_CLUSTER, namespace: str = NAMESPACE_KAFKA, api_version: str = "v1"
) -> dict[str, list[dict[str, Any]]]:
    """Return Strimzi KafkaTopic and KafkaUser resources, keyed by manifest file name.

    `cluster` is the Strimzi Kafka cluster (label `strimzi.io/cluster`), `namespace` where
    its operators watch; `api_version` one of `STRIMZI_API_VERSIONS`.
    """
    if api_version not in STRIMZI_API_VERSIONS:
        raise ConfigError(
            f"unknown Strimzi API version {api_version!r}: expected one of "
            f"{', '.join(STRIMZI_API_VERSIONS)} (v1 for Strimzi 0.49 and later)"
        )
    check_dns1123_label(cluster)
    check_dns1123_label(namespace)
    group = f"kafka.strimzi.io/{api_version}"
    topics = [
        {
            "apiVersion": group,
            "kind": "KafkaTopic",
            "metadata": _metadata(t.name, cluster, namespace),
            "spec": {"partitions": t.partitions, "replicas": 3, "config": dict(t.config)},
        }
        for t in SERVICE_TOPICS
    ]
    users = [
        _kafka_user(group, user, rules, cluster, namespace)
        for user, rules in (
            (PLATFORM_USER, PLATFORM_ACLS),
            (VIEWER_USER, VIEWER_ACLS),
            (KAFKA_UI_USER, KAFKA_UI_ACLS),
        )
    ]
    return {"kafka-topics.yaml": topics, "kafka-users.yaml": users}


def _metadata(name: str, cluster: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {"strimzi.io/cluster": cluster}}


def _kafka_user(
    group: str, user: str, rules: tuple[AclRule, ...], cluster: str, namespace: str
) -> dict[str, Any]:
    acls = [
        {
            # Strimzi's cluster resource has a type only (Kafka names it kafka-cluster).
            "resource": {"type": r.resource}
            if r.resource == "cluster"
            else {"type": r.resource, "name": r.name, "patternType": r.pattern},
            "operations": list(r.operations),
        }
        for r in rules
    ]
    return {
        "apiVersion": group,
        "kind": "KafkaUser",
        "metadata": _metadata(user, cluster, namespace),
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": acls},
        },
    }


def render_manifest(resources: list[dict[str, Any]]) -> str:
    """Render resources as one multi-document YAML file."""
    header = (
        "# Generated by `streamforge-nb manifests` from streamforge_nb/platform/topics.py; "
        "do not edit.\n"
    )
    return header + str(yaml.safe_dump_all(resources, sort_keys=False))
