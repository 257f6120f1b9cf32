"""One exception hierarchy for the library, and the mapping of backend errors onto it.

Every error a user can meet names the problem in its message: the field, the name, the broker
address or the cause. Backend exceptions (kafka-python, pydantic) are translated here and only
here, so callers catch `StreamForgeError` and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "ApiProblem",
    "ArchiveError",
    "AuthenticationFailed",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "DashboardError",
    "DummyFailure",
    "ExchangeBanned",
    "ExchangeError",
    "ExchangeUnavailable",
    "InputProblem",
    "InvalidName",
    "KubeTestError",
    "LocalBrokerError",
    "MessageError",
    "MissingOption",
    "NotAllowed",
    "NotAuthorized",
    "NotReady",
    "ProcessExited",
    "ProcessLog",
    "QueueExists",
    "QueueTimeout",
    "StartTimeout",
    "StopRequested",
    "StoreAuthError",
    "StoreCertificateError",
    "StoreError",
    "StoreUnavailable",
    "StreamForgeError",
    "UnknownSymbol",
    "acl_refusal",
    "describe_validation_error",
    "is_passing_kafka_error",
    "kafka_error_of",
    "kafka_errors",
    "map_confluent_error",
    "map_kafka_error",
    "map_store_error",
    "map_topic_error",
    "store_errors",
]


class StreamForgeError(Exception):
    """Base of every error raised by streamforge-nb."""


class ConfigError(StreamForgeError):
    """A setting is missing or malformed."""


class InvalidName(StreamForgeError, ValueError):
    """A platform name (queue id, topic, collection, Job...) breaks a naming rule."""


class NotAllowed(StreamForgeError, ValueError):
    """A request names a path or URL the server was not started to allow (`serve-api`)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class ApiProblem(StreamForgeError):
    """An answer of the queue-manager API other than success: status, sentence, members."""

    def __init__(
        self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: object
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers or {}, extra


class InputProblem(StreamForgeError, ValueError):
    """Bad input the library found (an unknown interval, a range backwards): 422."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


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


class ProcessLog(Protocol):
    """The log a `NotReady` error carries (`streamforge_nb.process.LogFile`).

    Told here as a protocol so this bottom module imports nothing of the package.
    """

    @property
    def path(self) -> Path: ...

    def read(self) -> str: ...

    def tail(self, lines: int = 30, *, missing: str = "(no log)") -> str: ...


class NotReady(StreamForgeError):
    """A started process did not become ready; `tail` is the end of its log at that moment."""

    def __init__(
        self, message: str, *, what: str, log: ProcessLog, tail: str, returncode: int | None
    ) -> None:
        super().__init__(message)
        self.what = what
        self.log = log
        self.tail = tail
        self.returncode = returncode


class ProcessExited(NotReady):
    """The process ended while starting (`returncode` says how)."""


class StartTimeout(NotReady):
    """The process still runs but was not ready in time (it is left running)."""


class MissingOption(ConfigError):
    """A required worker option was given by none of its sources."""


class DummyFailure(RuntimeError):
    """The failure the dummy service's `--fail-after` simulates (a crash, not our error)."""


class QueueTimeout(StreamForgeError, TimeoutError):
    """The queue did not answer in time."""


class DashboardError(StreamForgeError):
    """The Voila server did not start, or a page's parameters are wrong."""


class KubeTestError(StreamForgeError):
    """The local API server or etcd is missing, did not start, or did not become ready."""


class QueueExists(StreamForgeError):
    """The queue id was launched already: one launch per queue id. `record` is the first
    launch's queue-state record (as far as it could be read)."""

    def __init__(self, queue_id: str, record: Mapping[str, Any] | None = None) -> None:
        from datetime import UTC, datetime

        self.queue_id = queue_id
        self.record = dict(record or {})
        created: Any = self.record.get("created_at")
        try:
            when = f"{datetime.fromtimestamp(float(created), UTC):%Y-%m-%d %H:%M:%S} UTC"
        except (TypeError, ValueError, OverflowError, OSError):
            when = "an unknown time"
        options = self.record.get("launcher_options") or {}
        where = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
        by = f"the {self.record.get('launcher') or 'unknown'} launcher"
        by += f" ({where})" if where else ""
        status = self.record.get("status")
        hint = (
            "reopen it with Batch.open(batch_id) to go on"
            if self.record.get("kind") == "batch"
            else "make a new Workflow (a new short id) to load its range again, or follow "
            "the running one with Queue(queue_id)"
        )
        super().__init__(
            f"queue {queue_id} was launched already, at {when} by {by}"
            + (f", status {status}" if status else "")
            + f": a queue id is launched once; {hint}"
        )


class StopRequested(Exception):  # a request, not an error
    """A `stop` command arrived: raised by `Worker.check_stop()` to unwind the work.

    Control flow, not a failure: it is deliberately not a `StreamForgeError`, so an
    `except StreamForgeError` around the work never swallows a stop.
    """


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


def acl_refusal(
    user: str | None,
    operation: str,
    topic: str,
    *,
    where: str = "",
    cause: str = "",
    hint: str = "",
) -> NotAuthorized:
    """Return the error for `operation` on `topic`, which the broker's ACLs refuse `user`."""
    at = f" at {where}" if where else ""
    code = f"{cause} on topic {topic}" if cause else f"topic {topic}"
    return NotAuthorized(
        f"{user or 'ANONYMOUS'} may not {operation} {topic}: an ACL refusal by the broker{at} "
        f"({code})" + (f"; {hint}" if hint else "")
    )


def map_topic_error(
    exc: BaseException,
    *,
    user: str | None,
    topic: str,
    operation: str,
    where: str = "",
    hint: str = "",
) -> StreamForgeError:
    """Translate a kafka-python error about one topic (its metadata, or a request on it).

    Kafka answers TOPIC_AUTHORIZATION_FAILED for a topic the user may not describe, whether
    it exists or not (ACLs hide which): that is an ACL refusal, never a missing topic.
    """
    from kafka import errors as kerr

    if isinstance(exc, kerr.TopicAuthorizationFailedError | kerr.ClusterAuthorizationFailedError):
        cause = "TOPIC_AUTHORIZATION_FAILED"
        if isinstance(exc, kerr.ClusterAuthorizationFailedError):
            cause = "CLUSTER_AUTHORIZATION_FAILED"
        return acl_refusal(user, operation, topic, where=where, cause=cause, hint=hint)
    if isinstance(exc, kerr.UnknownTopicOrPartitionError):
        at = f" at {where}" if where else ""
        return BrokerError(f"topic {topic} does not exist{at} (`streamforge-nb topics`)")
    return map_kafka_error(exc, what=f"{operation} {topic}", bootstrap=where)


def map_confluent_error(exc: BaseException, *, what: str, settings: Any) -> StreamForgeError:
    """Translate a confluent-kafka (librdkafka) exception into our hierarchy."""
    from confluent_kafka import KafkaError

    error = kafka_error_of(exc)
    code = error.code() if error is not None else None
    detail = error.str() if error is not None else str(exc)
    where = f" at {settings.kafka_bootstrap_servers}"
    if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return AuthenticationFailed(
            f"{what}: the broker{where} refused user {settings.kafka_user!r} "
            f"({settings.kafka_sasl_mechanism}): wrong password or unknown user"
        )
    if code == KafkaError._SSL or "certificate verify failed" in detail:
        return AuthenticationFailed(
            f"{what}: the TLS certificate{where} is not trusted "
            f"(CA_PATH={settings.kafka_ca_path or 'unset'})"
        )
    if code in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,  # an idempotent producer without the ACL
    ) or (code == KafkaError._FATAL and "authorization failed" in detail.lower()):
        user = settings.kafka_user or "ANONYMOUS"
        return NotAuthorized(
            f"{what}: an ACL refusal: the broker{where} does not authorize {user} ({detail})"
        )
    if code in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT):
        return BrokerUnavailable(f"{what}: no usable broker{where} ({detail})")
    return BrokerError(f"{what}: {detail}")


def kafka_error_of(exc: BaseException) -> Any:
    """Return the confluent-kafka KafkaError an exception carries, or None."""
    from confluent_kafka import KafkaError

    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


def is_passing_kafka_error(exc: BaseException) -> bool:
    """Whether a confluent-kafka exception means "not now" (a timeout, a moving leader or
    group coordinator), not "no" (authorization, a fatal error): worth asking again."""
    from confluent_kafka import KafkaError

    error = kafka_error_of(exc)
    if error is None or error.fatal():
        return False
    passing = (
        KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
        KafkaError._WAIT_COORD, KafkaError.REQUEST_TIMED_OUT,
        KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART,
    )  # fmt: skip
    return bool(error.retriable()) or error.code() in passing


def describe_validation_error(exc: Any, *, what: str) -> str:
    """Render a pydantic ValidationError as one line naming each bad field."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<message>"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return f"{what}: " + "; ".join(parts)


class ExchangeError(StreamForgeError):
    """The exchange (Binance) refused a request; `status` and `code` are its HTTP and API codes."""

    def __init__(
        self, message: str, *, status: int | None = None, code: int | None = None, url: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.url = url


class UnknownSymbol(ExchangeError, ValueError):
    """The exchange does not list the symbol (Binance code -1121)."""


class ExchangeUnavailable(ExchangeError):
    """The exchange did not answer usefully after every retry (network errors, 5xx, 429s)."""


class ExchangeBanned(ExchangeError):
    """The exchange banned this IP (HTTP 418) for longer than we are willing to wait."""

    def __init__(self, message: str, *, retry_after: float = 0.0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ArchiveError(StreamForgeError):
    """A public-data archive is unusable: checksum mismatch, bad zip, wrong columns, missing."""


# --- candle store -----------------------------------------------------------------------------


class StoreError(StreamForgeError):
    """Reading or writing stored candles failed (local files or ArangoDB)."""


class StoreUnavailable(StoreError):
    """No ArangoDB server answered at the configured address."""


class StoreAuthError(StoreError):
    """ArangoDB refused the credentials or the operation (HTTP 401/403)."""


class StoreCertificateError(StoreAuthError):
    """ArangoDB's TLS certificate is not trusted (ARANGO_CA_PATH, or the system's CAs)."""


class StoreCapabilityError(StoreError, NotImplementedError):
    """The store's backend cannot do this (yet): e.g. SQL over an ArangoDB store."""


# ArangoDB error numbers worth a sentence of their own (arangod's errors.dat).
_ARANGO_HINTS: dict[int, str] = {
    11: "ERROR_FORBIDDEN: the user lacks the rights; `streamforge-nb store init` grants the "
    "ones the library needs",
    1203: "ERROR_ARANGO_DATA_SOURCE_NOT_FOUND: the collection does not exist",
    1207: "ERROR_ARANGO_DUPLICATE_NAME: a collection of that name exists already",
    1210: "ERROR_ARANGO_UNIQUE_CONSTRAINT_VIOLATED: a document of that key exists",
    1228: "ERROR_ARANGO_DATABASE_NOT_FOUND: the database does not exist; "
    "`streamforge-nb store init` creates it",
    1703: "ERROR_USER_NOT_FOUND: no such user",
}
_ARANGO_HTTP_HINTS: dict[int, str] = {
    401: "wrong user or password (ARANGO_USER / ARANGO_PASSWORD)",
    403: "the user lacks the rights",
}


def _store_error_classes() -> tuple[type[BaseException], ...]:
    # Only backends already imported can have raised: importing python-arango (and requests)
    # or pyarrow here just to catch their errors would slow every local store call down.
    import sys

    classes: list[type[BaseException]] = [OSError]
    arango_exc = sys.modules.get("arango.exceptions")
    if arango_exc is not None:
        classes += [arango_exc.ArangoServerError, arango_exc.ArangoClientError]
    pyarrow_lib = sys.modules.get("pyarrow.lib")
    if pyarrow_lib is not None:
        classes.append(pyarrow_lib.ArrowException)
    return tuple(classes)


def map_store_error(exc: BaseException, *, what: str, where: str = "") -> StoreError:
    """Translate a python-arango, pyarrow or OS error raised while doing `what`.

    `where` names the server (no credentials) or the file; messages never carry passwords.
    """
    import sys

    at = f" at {where}" if where else ""
    name = type(exc).__name__
    arango_exc = sys.modules.get("arango.exceptions")
    if arango_exc is not None and isinstance(exc, arango_exc.ArangoServerError):
        code, http = exc.error_code, exc.http_code
        detail = exc.error_message or name
        hint = _ARANGO_HINTS.get(code) or _ARANGO_HTTP_HINTS.get(http, "")
        text = f"{what}: ArangoDB{at} answered HTTP {http}, error {code}: {detail}"
        text += f" ({hint})" if hint else ""
        if http in (401, 403) or code == 11:
            return StoreAuthError(text)
        return StoreError(text)
    requests_exc = sys.modules.get("requests.exceptions")
    if arango_exc is not None and isinstance(exc, arango_exc.ArangoClientError):
        # store/arango.py's HTTP client raises this from requests' SSLError, so that
        # python-arango does not retry it as a lost connection (SSLError is a ConnectionError).
        cause = exc.__cause__
        if requests_exc is not None and isinstance(cause, requests_exc.SSLError):
            reason = _tls_reason(str(cause))
            if "certificate verify failed" in reason.lower():
                return StoreCertificateError(
                    f"{what}: certificate not trusted: {exc.message}{at}: {reason}"
                )
            return StoreUnavailable(f"{what}: TLS failed: {exc.message}{at}: {reason}")
        return StoreError(f"{what}: python-arango{at}: {exc.message}")
    if requests_exc is not None and isinstance(exc, requests_exc.ReadTimeout):
        return StoreUnavailable(
            f"{what}: ArangoDB{at} accepted the connection but did not answer in time "
            "(ARANGO_REQUEST_TIMEOUT)"
        )
    if isinstance(exc, ConnectionError) or (
        requests_exc is not None and isinstance(exc, requests_exc.RequestException)
    ):
        return StoreUnavailable(
            f"{what}: no ArangoDB server reachable{at}; is it running and is the URL right? "
            f"({name}; each connection attempt waits ARANGO_CONNECT_TIMEOUT)"
        )
    if isinstance(exc, OSError):
        path = exc.filename or where
        reason = exc.strerror or str(exc) or name
        return StoreError(f"{what}: {reason}" + (f": {path}" if path else ""))
    return StoreError(f"{what}{at}: unreadable or invalid data ({name}: {exc})")


def _tls_reason(text: str) -> str:
    """The OpenSSL reason out of requests' nested SSLError text."""
    import re

    found = re.search(r"\[SSL: [A-Z_]+\] ([^(')]+)", text)
    return found.group(1).strip() if found else text


@contextmanager
def store_errors(what: str, where: str = "") -> Iterator[None]:
    """Re-raise backend (python-arango, pyarrow, OS) errors from the block as `StoreError`s."""
    try:
        yield
    except StreamForgeError:
        raise
    except Exception as exc:
        if isinstance(exc, _store_error_classes()):
            raise map_store_error(exc, what=what, where=where) from exc
        raise
