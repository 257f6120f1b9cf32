"""The local broker: idempotent start, status, env file, clear start failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamforge_nb.exceptions import LocalBrokerError
from streamforge_nb.kafka.clients import check_connection, make_admin, make_producer
from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.platform.topics import PLATFORM_USER, VIEWER_USER, ensure_queue_topics
from streamforge_nb.process import free_port
from streamforge_nb.settings import Settings, read_env_file
from streamforge_nb.testing import read_topic, topic_exists, unique_name


def test_up_is_idempotent(broker: LocalBroker) -> None:
    before = broker.status()
    again = broker.up()
    assert before.running and again.running
    assert again.pid == before.pid


def test_status_names_both_listeners(broker: LocalBroker) -> None:
    status = broker.status()
    text = "\n".join(status.lines())
    assert "running" in text
    assert status.plaintext and status.plaintext in text
    assert status.sasl_ssl and status.sasl_ssl in text
    assert status.ca_path is not None and status.ca_path.is_file()


def test_env_file_leads_every_command_to_the_broker(broker: LocalBroker) -> None:
    settings = Settings.from_env({}, local_file=broker.env_file)
    assert settings.kafka_bootstrap_servers == broker.status().plaintext
    assert "queue-control" in check_connection(settings)


def test_sasl_env_file_is_private_and_complete(broker: LocalBroker) -> None:
    assert broker.sasl_env_file.stat().st_mode & 0o077 == 0
    values = read_env_file(broker.sasl_env_file)
    settings = Settings.from_env(values)
    assert settings.security_protocol == "SASL_SSL"
    assert {"queue-control", "queue-events"} <= set(check_connection(settings))


def test_everything_lives_under_home(broker: LocalBroker) -> None:
    for sub in ("config/server.properties", "data", "logs/broker.log", "tls/ca.crt", "local.env"):
        assert (broker.home / sub).exists(), sub
    # The whole log: its tail is whatever the broker did last (topics of other tests).
    assert "KafkaRaftServer" in (broker.home / "logs/broker.log").read_text(errors="replace")


def test_repr_shows_no_secret(broker: LocalBroker) -> None:
    password = broker.password("user-streamforge")
    assert password not in repr(broker)
    assert password not in repr(broker.status())
    assert password not in repr(broker.settings("user-streamforge"))


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalBrokerError, match=f"{port} already in use"):
            LocalBroker(tmp_path).up(port=port)


def test_free_ports_come_from_below_the_range_outgoing_connections_draw_from() -> None:
    # A port bind(0) gave was taken by a client's outgoing connection before the broker
    # bound it ("Address already in use"): a chosen port must not be one a connection can get.
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(20_000 <= port < min(low, 30_000) for port in ports), (ports, low)
    assert len(ports) > 1  # chosen, not one fixed port
    for port in ports:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen()


def test_unknown_user_has_no_password(broker: LocalBroker) -> None:
    with pytest.raises(LocalBrokerError, match="no SCRAM user 'nobody'"):
        broker.password("nobody")


def _local(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `streamforge-nb local ...` as a user would, with `home` as STREAMFORGE_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env["STREAMFORGE_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "streamforge_nb.cli", "local", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def _produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = make_producer(settings)
    try:
        for value in values:
            producer.send(topic, value=value).get(timeout=30)
    finally:
        producer.close()


def test_restart_on_free_ports_keeps_messages_and_scram_users(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path)
    up = _local(tmp_path, "up", "--port", "0")
    assert up.returncode == 0, up.stderr
    try:
        data_topic = unique_name("wf-restart") + "-data"
        admin = make_admin(broker.settings())
        try:
            ensure_queue_topics(admin, broker.settings(), data_topic)
        finally:
            admin.close()
        candles = [b'{"candle": 1}', b'{"candle": 2}', b'{"candle": 3}']
        events = [b'{"event": "a"}', b'{"event": "b"}']
        _produce(broker.settings(), data_topic, candles)
        _produce(broker.settings(), "queue-events", events)
        passwords = json.loads((tmp_path / "credentials.json").read_text())
        old_port = broker.status().plaintext
    finally:
        _local(tmp_path, "down")
    assert old_port is not None

    # The old PLAINTEXT port is taken meanwhile: --port 0 moves all three listeners.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(old_port.rsplit(":", 1)[1])))
        taken.listen()
        again = _local(tmp_path, "up", "--port", "0")
        assert again.returncode == 0, again.stderr
        try:
            assert f"kept data in {tmp_path / 'data'}: 3 topics" in again.stderr
            assert broker.status().plaintext != old_port
            assert read_env_file(broker.env_file)["KAFKA_BOOTSTRAP_SERVERS"] != old_port
            assert [r.value for r in read_topic(broker.settings(), data_topic)] == candles
            # queue-events has several partitions: no order across them.
            assert sorted(r.value for r in read_topic(broker.settings(), "queue-events")) == events
            # The SCRAM users authenticate with their first passwords, over SASL_SSL, and the
            # viewer's ACLs still let it read queue-events.
            assert json.loads((tmp_path / "credentials.json").read_text()) == passwords
            assert "queue-control" in check_connection(broker.settings(PLATFORM_USER))
            viewer = broker.settings(VIEWER_USER)
            assert sorted(r.value for r in read_topic(viewer, "queue-events")) == events
        finally:
            _local(tmp_path, "down")

    # broker.json gone: the data is not formatted over without being asked.
    (tmp_path / "broker.json").unlink()
    refused = _local(tmp_path, "up", "--port", "0")
    assert refused.returncode == 1
    assert "formatted broker but broker.json is missing" in refused.stderr
    assert "--reset" in refused.stderr
    assert (tmp_path / "data" / "meta.properties").is_file()

    reset = _local(tmp_path, "up", "--port", "0", "--reset")
    assert reset.returncode == 0, reset.stderr
    try:
        assert f"reset: deleting the data in {tmp_path / 'data'} (3 topics" in reset.stderr
        assert not topic_exists(broker.settings(), data_topic)
        assert read_topic(broker.settings(), "queue-events") == []
        assert json.loads((tmp_path / "credentials.json").read_text()) != passwords
        assert "queue-control" in check_connection(broker.settings(PLATFORM_USER))
    finally:
        _local(tmp_path, "down")


def test_reset_refuses_a_running_broker(broker: LocalBroker) -> None:
    pid = broker.status().pid
    with pytest.raises(LocalBrokerError, match=r"while it runs .*local down` first"):
        broker.up(reset=True)
    assert broker.status().pid == pid
    assert "queue-events" in check_connection(broker.settings())


def test_a_listener_for_pods_serves_the_platform_users_on_that_address(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """`pods_address` (the local node's Pod network gateway, tests/test_node_restricted.py):
    SASL_SSL there too, advertised with that address and named by the certificate; the
    default broker has none; a home set up without it is refused before anything starts."""
    with pytest.raises(LocalBrokerError, match="no listener for Pods"):
        broker.pods_bootstrap()
    home = tmp_path / "pods"
    pods = LocalBroker(home, pods_address="127.0.0.2")
    pods.up(port=0)
    try:
        address = pods.pods_bootstrap()
        assert address.rsplit(":", 1)[0] == "127.0.0.2"
        via_pods = pods.settings(PLATFORM_USER).model_copy(
            update={"kafka_bootstrap_servers": address}
        )
        assert "queue-events" in check_connection(via_pods)
    finally:
        pods.down()
    with pytest.raises(LocalBrokerError, match=r"address '127.0.0.2', not None.*--reset"):
        LocalBroker(home).up(port=0)
    assert not LocalBroker(home).status().running
