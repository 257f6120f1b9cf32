"""kafka-ui's Kafka user against a real broker with ACLs: it browses, it writes nothing.

The ACLs are KAFKA_UI_ACLS (platform/topics.py), the same the Strimzi KafkaUser in
manifests/kafka-users.yaml grants; the calls are those kafbat's pages make (cluster,
brokers' configs, topics, messages, consumer-group offsets), with librdkafka.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import date
from typing import Any

import pytest

from streamforge_nb.kafka.clients import make_admin
from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.platform.names import data_topic, queue_id
from streamforge_nb.platform.topics import KAFKA_UI_ACLS, KAFKA_UI_USER, VIEWER_USER, ensure_acls
from streamforge_nb.settings import Settings


def kafka_ui_config(broker: LocalBroker, password: str) -> dict[str, Any]:
    sasl = broker.settings(VIEWER_USER)  # the SASL_SSL listener and its CA
    return {
        "bootstrap.servers": sasl.kafka_bootstrap_servers,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": KAFKA_UI_USER,
        "sasl.password": password,
        "ssl.ca.location": sasl.kafka_ca_path,
    }


@pytest.fixture(scope="module")
def kafka_ui(broker: LocalBroker, settings: Settings) -> dict[str, Any]:
    """librdkafka config of a SCRAM user with exactly KAFKA_UI_ACLS (made by the super user)."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    password = secrets.token_urlsafe(18)
    upsert = UserScramCredentialUpsertion(
        KAFKA_UI_USER, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), password.encode()
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    kafka_admin = make_admin(settings)
    try:
        ensure_acls(kafka_admin, KAFKA_UI_USER, KAFKA_UI_ACLS)
    finally:
        kafka_admin.close()
    return kafka_ui_config(broker, password)


def test_kafka_ui_user_browses_topics_and_lag_but_writes_nothing(
    kafka_ui: dict[str, Any], settings: Settings
) -> None:
    from confluent_kafka import (
        Consumer,
        ConsumerGroupTopicPartitions,
        KafkaException,
        Producer,
        TopicPartition,
    )
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

    qid = queue_id("BTCUSDT", "api_candles_1m", date(2024, 8, 1), uuid.uuid4().hex[:6])
    topic = data_topic(qid)
    group = f"{qid}-sink"
    plain = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    super_user = AdminClient(plain)  # kept: a dropped handle cancels its futures
    for future in super_user.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)
    producer = Producer(plain)
    producer.produce(topic, b'{"open_time": 1}', key=b"BTCUSDT")
    assert producer.flush(30) == 0
    sink = Consumer({**plain, "group.id": group, "enable.auto.commit": False})
    sink.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    sink.close()

    admin = AdminClient(kafka_ui)
    # SCRAM credentials reach the SASL listener shortly after they are written.
    deadline = time.monotonic() + 30
    while True:
        try:
            metadata = admin.list_topics(timeout=10)
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert {"queue-control", "queue-events", topic} <= set(metadata.topics)
    admin.describe_cluster().result(timeout=30)
    broker_id = str(next(iter(metadata.brokers)))
    for resource in (ConfigResource(ResourceType.BROKER, broker_id),
                     ConfigResource(ResourceType.TOPIC, topic)):  # fmt: skip
        admin.describe_configs([resource])[resource].result(timeout=30)
    # Lag: the group's committed offset against the end.
    (offsets,) = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)]).values()
    assert [(tp.topic, tp.offset) for tp in offsets.result(timeout=30).topic_partitions] == [
        (topic, 1)
    ]
    # Browsing: assigned partitions, no group joined. librdkafka still looks the group id's
    # coordinator up (Describe on the group): one under a prefix the user may describe, as
    # the library's own readers use, or an authorization error races the first message.
    browser = Consumer(
        {**kafka_ui, "group.id": "streamforge-kafka-ui-browse", "enable.auto.commit": False}
    )
    browser.assign([TopicPartition(topic, 0, 0)])
    message = None
    deadline = time.monotonic() + 30
    while message is None and time.monotonic() < deadline:
        message = browser.poll(1.0)
    browser.close()
    assert message is not None and message.error() is None, message and message.error()
    assert message.value() == b'{"open_time": 1}'

    # Read-only: no produce, no topic.
    writer = Producer({**kafka_ui, "message.timeout.ms": 10000})
    errors: list[Any] = []
    writer.produce(topic, b"x", on_delivery=lambda error, _msg: errors.append(error))
    writer.flush(30)
    assert [e.name() for e in errors] == ["TOPIC_AUTHORIZATION_FAILED"]
    (created,) = admin.create_topics([NewTopic(f"{qid}-other", 1, 1)]).values()
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        created.result(timeout=30)
