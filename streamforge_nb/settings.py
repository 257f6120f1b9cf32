"""Settings read from the platform's environment variables, with the local broker as default.

Precedence, highest first: explicit keyword arguments, the process environment, the file that
`streamforge-nb local up` writes (`$STREAMFORGE_HOME/local.env`), built-in defaults. So a
notebook on a laptop finds the local broker with no set-up, and a Job in the cluster uses only
what its Pod spec gives it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from streamforge_nb.exceptions import ConfigError, describe_validation_error

__all__ = ["Settings", "local_home", "read_env_file", "split_url_credentials"]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

# Environment variable -> Settings field. Names are the platform's (PLATFORM.md).
_ENV_FIELDS: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers",
    "KAFKA_USER": "kafka_user",
    "KAFKA_PASSWORD": "kafka_password",
    "KAFKA_SECURITY_PROTOCOL": "kafka_security_protocol",
    "KAFKA_SASL_MECHANISM": "kafka_sasl_mechanism",
    "KAFKA_CA_PATH": "kafka_ca_path",
    "CA_PATH": "kafka_ca_path",
    "QUEUE_CONTROL_TOPIC": "queue_control_topic",
    "QUEUE_EVENTS_TOPIC": "queue_events_topic",
    "ARANGO_URL": "arango_url",
    "ARANGO_DB": "arango_db",
    "ARANGO_USER": "arango_user",
    "ARANGO_PASSWORD": "arango_password",
    "ARANGO_CA_PATH": "arango_ca_path",
    "ARANGO_CONNECT_TIMEOUT": "arango_connect_timeout",
    "ARANGO_REQUEST_TIMEOUT": "arango_request_timeout",
    "STREAMFORGE_MAX_CANDLES_PER_QUEUE": "max_candles_per_queue",
    "STREAMFORGE_IMAGE_PULL_SECRET": "image_pull_secret",
    "STREAMFORGE_RUNS": "runs",
    "STREAMFORGE_RUNS_VOLUME": "runs_volume",
    "STREAMFORGE_TOPIC_REPLICAS": "topic_replicas",
    "STREAMFORGE_TOPIC_RETENTION_MS": "topic_retention_ms",
}

_URL_USERINFO = re.compile(r"(?<=://)[^/@]*@")


def split_url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """Split `scheme://user:password@host...` into (URL without user info, user, password).

    User and password are percent-decoded; either is None when the URL does not give it.
    A URL without user info comes back unchanged with (None, None).
    """
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=hostport))
    return clean, unquote(user) or None, unquote(password) if colon else None


def local_home() -> Path:
    """Return the directory holding the local broker's data, logs and env file."""
    return Path(os.environ.get("STREAMFORGE_HOME") or Path.home() / ".streamforge-nb")


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `KEY=value` file (comments and blank lines ignored)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


class Settings(BaseModel):
    """Where Kafka (and later ArangoDB) is and how to talk to it. Secrets are masked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_user: str | None = None
    kafka_password: SecretStr | None = None
    # None means: SASL_SSL when a user is given (as the platform runs), else PLAINTEXT.
    kafka_security_protocol: SecurityProtocol | None = None
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_ca_path: str | None = None
    queue_control_topic: str = "queue-control"
    queue_events_topic: str = "queue-events"
    arango_url: str | None = None
    arango_db: str = "streamforge"
    arango_user: str | None = None
    arango_password: SecretStr | None = None
    # The CA bundle that signed ArangoDB's TLS certificate (an `https://` or `arangos://`
    # URL); None: requests' default CAs. Kafka's CA_PATH is not used for ArangoDB.
    arango_ca_path: str | None = None
    # Seconds to open a connection to ArangoDB, and to wait for an answer once connected.
    # "Unreachable" is said within 2 x arango_connect_timeout per address the host name
    # resolves to (store/arango.py, CONNECT_ATTEMPTS; docs/operations.md derives it).
    arango_connect_timeout: float = Field(default=5.0, gt=0, le=300)
    arango_request_timeout: float = Field(default=60.0, gt=0)
    # The most candles one queue may load; a larger range is refused (split it). 10 million:
    # every 1m candle since 2017 in one queue, or about 115 days of 1s.
    max_candles_per_queue: int = Field(default=10_000_000, ge=1)
    # The Secret Jobs pull their image with (the platform's registry: `regcred`); "" for none.
    image_pull_secret: str = "regcred"
    # Where executed notebooks (each run's record) go: a directory or any papermill URL
    # (`s3://bucket/runs` with `streamforge-nb[s3]`). None: $STREAMFORGE_HOME/runs, which a
    # Pod loses with its Job: on a cluster, name a directory on `runs_volume` instead.
    runs: str | None = None
    # The volume that holds `runs` in Job Pods: `pvc:<claim>:<mount path>` or
    # `hostPath:<path>[:<mount path>]`, e.g. `pvc:gf-projects:/data/project`.
    runs_volume: str | None = None
    # Replicas of a queue's data and DLQ topics; None: min(3, brokers in the cluster).
    topic_replicas: int | None = Field(default=None, ge=1)
    # How long a data topic keeps its candles: 7 days, long enough for any sink to catch up.
    topic_retention_ms: int = Field(default=7 * 86_400_000, ge=60_000)
    # Where these values came from, for error messages ("environment", a file path...).
    source: str = "defaults"

    @model_validator(mode="before")
    @classmethod
    def _split_arango_url(cls, values: Any) -> Any:
        # `http://user:password@host:8529` is a supported ARANGO_URL. The password must not
        # travel with the URL (into plans, queue state, commands, Job parameters), so it is
        # split off here, at the boundary: arango_url keeps host and path only. An
        # ARANGO_USER or ARANGO_PASSWORD given as well wins over the URL's.
        if isinstance(values, dict) and isinstance(values.get("arango_url"), str):
            url, user, password = split_url_credentials(values["arango_url"])
            if url != values["arango_url"]:
                values = {**values, "arango_url": url}
                if user is not None and not values.get("arango_user"):
                    values["arango_user"] = user
                if password is not None and values.get("arango_password") is None:
                    values["arango_password"] = password
        return values

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        local_file: Path | None = None,
        **overrides: Any,
    ) -> Settings:
        """Read settings from `env` (default: os.environ), falling back to the local broker."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        source = "defaults"
        if "KAFKA_BOOTSTRAP_SERVERS" not in env:
            local_file = local_file or local_home() / "local.env"
            if local_file.is_file():
                values.update(_fields_from(read_env_file(local_file)))
                source = str(local_file)
        from_process = _fields_from(env)
        if from_process:
            source = "environment" if source == "defaults" else f"environment + {source}"
        values.update(from_process)
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["source"] = source
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, what="bad settings")) from None

    @property
    def security_protocol(self) -> SecurityProtocol:
        """Return the Kafka security protocol, derived from the credentials when not set."""
        if self.kafka_security_protocol:
            return self.kafka_security_protocol
        return "SASL_SSL" if self.kafka_user else "PLAINTEXT"

    def kafka_client_config(self) -> dict[str, Any]:
        """Return kafka-python connection keyword arguments (holds the password: never log)."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            if not self.kafka_user or self.kafka_password is None:
                raise ConfigError(
                    f"{self.security_protocol} needs KAFKA_USER and KAFKA_PASSWORD "
                    f"(from {self.source})"
                )
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_user
            config["sasl_plain_password"] = self.kafka_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            if self.kafka_ca_path and not Path(self.kafka_ca_path).is_file():
                raise ConfigError(f"CA_PATH {self.kafka_ca_path!r} is not a readable file")
            config["ssl_cafile"] = self.kafka_ca_path
            config["ssl_check_hostname"] = True
        return config

    def describe(self) -> str:
        """Return a one-line, secret-free summary for logs and CLI output."""
        who = f" as {self.kafka_user}" if self.kafka_user else ""
        return f"kafka {self.kafka_bootstrap_servers} ({self.security_protocol}{who})"

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "arango_url" and isinstance(value, str):
                value = _URL_USERINFO.sub("***@", value)
            yield name, value


def _fields_from(env: Mapping[str, str]) -> dict[str, str]:
    return {field: env[var] for var, field in _ENV_FIELDS.items() if env.get(var)}
