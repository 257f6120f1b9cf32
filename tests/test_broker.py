"""The local broker: idempotent start, status, env file, clear start failures."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streamforge_nb.exceptions import LocalBrokerError
from streamforge_nb.kafka.clients import check_connection
from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.settings import Settings, read_env_file


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


def test_unknown_user_has_no_password(broker: LocalBroker) -> None:
    with pytest.raises(LocalBrokerError, match="no SCRAM user 'nobody'"):
        broker.password("nobody")
