"""Settings from the platform's environment variables, the local env file, and secret masking."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from streamforge_nb.exceptions import ConfigError
from streamforge_nb.settings import Settings

CLUSTER_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "k3-kafka-bootstrap.kafka:9093",
    "KAFKA_USER": "user-streamforge",
    "KAFKA_PASSWORD": "s3cr3t-value",
    "CA_PATH": "/etc/kafka/ca.crt",
    "ARANGO_URL": "http://root:arango-pass@arangodb:8529",
    "ARANGO_PASSWORD": "arango-pass",
}


def test_cluster_environment_means_sasl_ssl_with_scram() -> None:
    settings = Settings.from_env(CLUSTER_ENV)
    assert settings.kafka_bootstrap_servers == "k3-kafka-bootstrap.kafka:9093"
    assert settings.security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_ca_path == "/etc/kafka/ca.crt"
    assert settings.source == "environment"


def test_secrets_never_show_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env(CLUSTER_ENV)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info(
            "settings: %r / %s / %s", settings, settings, settings.describe()
        )
    for text in (repr(settings), str(settings), settings.describe(), caplog.text):
        assert "s3cr3t-value" not in text
        assert "arango-pass" not in text
    assert settings.kafka_password is not None
    assert settings.kafka_password.get_secret_value() == "s3cr3t-value"


def test_kafka_ca_path_is_an_alias_of_ca_path() -> None:
    env = {**CLUSTER_ENV, "KAFKA_CA_PATH": "/other/ca.crt"}
    del env["CA_PATH"]
    assert Settings.from_env(env).kafka_ca_path == "/other/ca.crt"


def test_local_env_file_is_the_default(tmp_path: Path) -> None:
    env_file = tmp_path / "local.env"
    env_file.write_text("# comment\nKAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092\n")
    settings = Settings.from_env({}, local_file=env_file)
    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.source == str(env_file)


def test_environment_wins_over_the_local_file(tmp_path: Path) -> None:
    env_file = tmp_path / "local.env"
    env_file.write_text("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092\n")
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "broker:9092"}, local_file=env_file)
    assert settings.kafka_bootstrap_servers == "broker:9092"


def test_no_file_no_env_means_localhost_9092(tmp_path: Path) -> None:
    settings = Settings.from_env({}, local_file=tmp_path / "missing.env")
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.source == "defaults"


def test_sasl_without_password_names_the_missing_variables() -> None:
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:9093", "KAFKA_USER": "u"})
    with pytest.raises(ConfigError, match="KAFKA_USER and KAFKA_PASSWORD"):
        settings.kafka_client_config()


def test_bad_security_protocol_names_the_field() -> None:
    with pytest.raises(ConfigError, match="kafka_security_protocol"):
        Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "KAFKA_SECURITY_PROTOCOL": "TLS"})


def test_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    env = {**CLUSTER_ENV, "CA_PATH": str(tmp_path / "nope.crt")}
    with pytest.raises(ConfigError, match=r"nope\.crt"):
        Settings.from_env(env).kafka_client_config()


# -- issue 11: a URL with user info is split into URL + secret at the boundary ---------------
def test_arango_url_user_info_is_split_into_url_and_secret() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "ARANGO_URL": "http://root:P%40W@host:8529/_db/x"}
    settings = Settings.from_env(env)
    assert settings.arango_url == "http://host:8529/_db/x"
    assert settings.arango_user == "root"
    assert settings.arango_password is not None
    assert settings.arango_password.get_secret_value() == "P@W"
    assert "P@W" not in repr(settings) and "P%40W" not in repr(settings)
    assert "P@W" not in settings.model_dump_json()
    # ARANGO_USER / ARANGO_PASSWORD given as well win over the URL's user info.
    both = Settings.from_env({**env, "ARANGO_USER": "alice", "ARANGO_PASSWORD": "other"})
    assert both.arango_url == "http://host:8529/_db/x" and both.arango_user == "alice"
    assert both.arango_password is not None and both.arango_password.get_secret_value() == "other"
    plain = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "ARANGO_URL": "http://h:1"})
    assert plain.arango_url == "http://h:1" and plain.arango_password is None


def test_max_candles_per_queue_comes_from_the_environment() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "STREAMFORGE_MAX_CANDLES_PER_QUEUE": "500"}
    assert Settings.from_env(env).max_candles_per_queue == 500
    with pytest.raises(ConfigError, match="max_candles_per_queue"):
        Settings.from_env({**env, "STREAMFORGE_MAX_CANDLES_PER_QUEUE": "0"})
