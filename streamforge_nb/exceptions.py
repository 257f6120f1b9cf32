"""One exception hierarchy for the library, and the mapping of backend errors onto it.

Every error a user can meet names the problem in its message: the field, the name, the broker
address or the cause. Backend exceptions (kafka-python, pydantic) are translated here and only
here, so callers catch `StreamForgeError` and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "AuthenticationFailed",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "InvalidName",
    "LocalBrokerError",
    "MessageError",
    "NotAuthorized",
    "StreamForgeError",
    "kafka_errors",
    "map_kafka_error",
]


class StreamForgeError(Exception):
    """Base of every error raised by streamforge-nb."""


class ConfigError(StreamForgeError):
    """A setting is missing or malformed."""


class InvalidName(StreamForgeError, ValueError):
    """A platform name (queue id, topic, collection, Job...) breaks a naming rule."""


class MessageError(StreamForgeError, ValueError):
    """A Kafka message does not follow the platform's contract."""


class BrokerError(StreamForgeError):
    """Talking to Kafka failed."""


class BrokerUnavailable(BrokerError):
    """No broker answered at the bootstrap address."""


class AuthenticationFailed(BrokerError):
    """The broker refused the credentials (wrong user or password, or TLS trust)."""


class NotAuthorized(BrokerError):
    """The broker's ACLs refuse this user the operation."""


class LocalBrokerError(StreamForgeError):
    """The local Kafka broker could not be fetched, formatted, started or stopped."""


def map_kafka_error(exc: BaseException, *, what: str, bootstrap: str = "") -> StreamForgeError:
    """Translate a kafka-python exception raised while doing `what` into our hierarchy."""
    from kafka import errors as kerr

    where = f" at {bootstrap}" if bootstrap else ""
    name = type(exc).__name__
    detail = str(exc) or name
    if isinstance(exc, kerr.SaslAuthenticationFailedError):
        return AuthenticationFailed(f"{what}: the broker{where} refused the credentials ({detail})")
    if isinstance(
        exc,
        kerr.TopicAuthorizationFailedError
        | kerr.GroupAuthorizationFailedError
        | kerr.ClusterAuthorizationFailedError
        | kerr.TransactionalIdAuthorizationFailedError,
    ):
        return NotAuthorized(f"{what}: not authorized by the broker's ACLs{where} ({name})")
    if isinstance(exc, kerr.KafkaConnectionError):
        return BrokerUnavailable(
            f"{what}: no Kafka broker reachable{where}; is it running? "
            "(`streamforge-nb local up` starts a local one)"
        )
    if isinstance(exc, kerr.KafkaTimeoutError):
        return BrokerUnavailable(f"{what}: timed out waiting for the broker{where} ({detail})")
    return BrokerError(f"{what}: {name}: {detail}")


@contextmanager
def kafka_errors(what: str, bootstrap: str = "") -> Iterator[None]:
    """Re-raise kafka-python exceptions from the block as `StreamForgeError`s."""
    from kafka import errors as kerr

    try:
        yield
    except kerr.KafkaError as exc:
        raise map_kafka_error(exc, what=what, bootstrap=bootstrap) from exc


def describe_validation_error(exc: Any, *, what: str) -> str:
    """Render a pydantic ValidationError as one line naming each bad field."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<message>"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return f"{what}: " + "; ".join(parts)
