"""Kafka clients against the real broker: PLAINTEXT, SASL_SSL + SCRAM, ACLs, dead brokers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import subprocess_env
from pydantic import SecretStr

from streamforge_nb.control.follower import Follower
from streamforge_nb.exceptions import (
    AuthenticationFailed,
    BrokerError,
    BrokerUnavailable,
    NotAuthorized,
    kafka_errors,
)
from streamforge_nb.kafka.clients import (
    check_connection,
    make_admin,
    make_assigned_consumer,
    make_bulk_consumer,
    make_consumer,
    make_producer,
)
from streamforge_nb.kafka.partitions import partition_count
from streamforge_nb.platform.topics import TopicSpec, ensure_topics
from streamforge_nb.settings import Settings
from streamforge_nb.testing import round_trips, unique_name


def test_round_trip_over_plaintext(settings: Settings) -> None:
    rtts = round_trips(settings, 3)
    assert len(rtts) == 3 and all(rtt > 0 for rtt in rtts)  # how fast: bench/ping.py


def test_round_trip_over_sasl_ssl_as_platform_user(platform_settings: Settings) -> None:
    assert platform_settings.security_protocol == "SASL_SSL"
    assert round_trips(platform_settings, 2)


def test_platform_user_may_create_and_use_a_workflow_topic(platform_settings: Settings) -> None:
    topic = unique_name("wf-acl")
    admin = make_admin(platform_settings)
    try:
        assert ensure_topics(admin, (TopicSpec(topic),)) == [topic]
    finally:
        admin.close()
    producer = make_producer(platform_settings)
    try:
        producer.send(topic, b"payload").get(timeout=10)
    finally:
        producer.close()


# kafka-python retries an untrusted certificate until its bootstrap timeout (10 s); the clients
# give up at the first refusal. How long each refusal takes, beside kafka-python's:
# bench/refusals.py.


def test_wrong_password_is_refused_with_a_clear_error(platform_settings: Settings) -> None:
    wrong = platform_settings.model_copy(update={"kafka_password": SecretStr("not-the-password")})
    with pytest.raises(AuthenticationFailed, match="refused user 'user-streamforge'") as info:
        check_connection(wrong)
    assert "not-the-password" not in str(info.value)
    with pytest.raises(AuthenticationFailed):
        make_consumer(wrong)


def test_untrusted_certificate_is_refused(platform_settings: Settings) -> None:
    no_ca = platform_settings.model_copy(update={"kafka_ca_path": None})
    with pytest.raises(AuthenticationFailed, match="not trusted"):
        check_connection(no_ca)
    # The client given up on still retries in the background for a while: the next one, with
    # the CA set, must not take its failures for its own.
    assert "queue-events" in check_connection(platform_settings)


def test_user_without_acl_is_refused(viewer_settings: Settings) -> None:
    # The viewer may read telemetry but has no ACL on queue-control.
    assert check_connection(viewer_settings) == ["queue-events"]
    producer = make_producer(viewer_settings)
    try:
        with (
            pytest.raises(NotAuthorized, match="not authorized"),
            kafka_errors("sending a command"),
        ):
            producer.send("queue-control", b"{}").get(timeout=10)
    finally:
        producer.close()


def test_a_topic_hidden_by_acls_is_an_acl_refusal_not_a_missing_topic(
    platform_settings: Settings, viewer_settings: Settings
) -> None:
    # The viewer may not describe queue-control: the broker leaves it out of the viewer's
    # metadata exactly as if it did not exist.
    refused = r"user-streamforge-viewer may not read queue-control: an ACL refusal"
    consumer = make_consumer(viewer_settings)
    try:
        with pytest.raises(NotAuthorized, match=refused):
            partition_count(consumer, "queue-control", viewer_settings)
    finally:
        consumer.close()
    with pytest.raises(NotAuthorized, match=refused):
        make_assigned_consumer(viewer_settings, "queue-control")
    hidden = viewer_settings.model_copy(update={"queue_events_topic": "queue-control"})
    follower = Follower("wf-viewer", hidden, None)
    try:
        with pytest.raises(NotAuthorized, match=refused):
            follower.follow()
    finally:
        follower.close()
    # The data consumer (librdkafka) is refused when built, not at its first batch.
    topic = unique_name("wf-acl")
    admin = make_admin(platform_settings)
    try:
        ensure_topics(admin, (TopicSpec(topic),))
    finally:
        admin.close()
    with pytest.raises(NotAuthorized, match=r"ACL refusal.*user-streamforge-viewer"):
        make_bulk_consumer(viewer_settings, topic, **{"group.id": "streamforge-viewer-acl"})
    # A topic the user may describe, and absent, is still called missing.
    with pytest.raises(BrokerError, match="does not exist") as missing:
        make_assigned_consumer(platform_settings, unique_name("wf-absent"))
    assert not isinstance(missing.value, NotAuthorized)


def test_a_viewers_sink_is_told_of_the_acl_refusal(
    viewer_settings: Settings, tmp_path: Path
) -> None:
    sink = ["sink", "--queue-id", unique_name("wf-viewer"), "--store-url", f"local://{tmp_path}"]
    result = subprocess.run(
        [sys.executable, "-m", "streamforge_nb.cli", *sink],
        env=subprocess_env(viewer_settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "user-streamforge-viewer may not read queue-control: an ACL refusal" in output
    assert "does not exist" not in output


def test_dead_broker_is_reported_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}")
    with pytest.raises(BrokerUnavailable, match=f"no Kafka broker reachable at 127.0.0.1:{port}"):
        make_producer(dead)


@pytest.mark.parametrize(
    ("code", "fatal", "passing"),
    [
        ("_TIMED_OUT", False, True),
        ("NOT_COORDINATOR", False, True),
        ("LEADER_NOT_AVAILABLE", False, True),
        ("TOPIC_AUTHORIZATION_FAILED", False, False),
        ("GROUP_AUTHORIZATION_FAILED", False, False),
        ("_FATAL", True, False),
        ("_TIMED_OUT", True, False),
    ],
)
def test_only_a_passing_broker_error_is_asked_again(code: str, fatal: bool, passing: bool) -> None:
    """A timeout or a moving coordinator is asked again; a refusal or a fatal error is not."""
    from confluent_kafka import KafkaError, KafkaException

    from streamforge_nb.exceptions import is_passing_kafka_error

    error = KafkaError(getattr(KafkaError, code), "as the broker said", fatal=fatal)
    assert is_passing_kafka_error(KafkaException(error)) is passing
    assert not is_passing_kafka_error(RuntimeError("not a Kafka error"))


def test_a_dropped_bulk_consumer_hands_its_partitions_over_mid_rebalance(
    settings: Settings,
) -> None:
    """A finished sink lets go of its consumer while another member joins: dropping it
    returns at once (librdkafka's own close froze sinks there, librdkafka#4884) and the
    member that stays takes every partition and reads what was never committed."""
    import gc

    from streamforge_nb.kafka.clients import make_bulk_consumer

    topic, group = unique_name("wf-drop"), unique_name("wf-drop-sink")
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(topic, partitions=4),))
    finally:
        admin.close()
    producer = make_producer(settings)
    for i in range(400):
        producer.send(topic, key=str(i).encode(), value=b"candle")
    producer.flush(timeout=30)
    producer.close()

    def member(name: str) -> Any:
        return make_bulk_consumer(settings, topic, **{
            "group.id": group, "group.instance.id": name, "session.timeout.ms": 6000,
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
        })  # fmt: skip

    first = member("sink-1")
    while not first.assignment():
        first.consume(100, timeout=0.2)
    second = member("sink-2")
    second.consume(100, timeout=0.5)  # its join starts a rebalance
    del first
    gc.collect()
    read: set[bytes] = set()
    deadline = time.monotonic() + 60
    while (len(read) < 400 or len(second.assignment()) < 4) and time.monotonic() < deadline:
        read |= {m.key() for m in second.consume(500, timeout=0.2) if m.error() is None}
    assert {tp.partition for tp in second.assignment()} == {0, 1, 2, 3} and len(read) == 400
