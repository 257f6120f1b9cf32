"""Kafka clients made from `Settings`, with backend errors mapped to ours.

kafka-python reports a wrong password or a dead broker in many shapes (NoBrokersAvailable at
construction, a SaslAuthenticationFailedError in a later poll, a timeout on send). Building every
client here keeps that knowledge in one place.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerr

from streamforge_nb.exceptions import (
    AuthenticationFailed,
    BrokerUnavailable,
    StreamForgeError,
    kafka_errors,
    map_confluent_error,
    map_topic_error,
)
from streamforge_nb.kafka.positions import resolved
from streamforge_nb.logs import guard_secrets
from streamforge_nb.settings import Settings

__all__ = [
    "check_connection",
    "make_admin",
    "make_assigned_consumer",
    "make_assigned_reader",
    "make_bulk_consumer",
    "make_bulk_producer",
    "make_consumer",
    "make_producer",
    "topic_partitions",
]

# kafka-python retries a refused login until its bootstrap timeout (30 s by default): keep the
# wait for a wrong password or an untrusted certificate short.
_CONNECT_TIMEOUT_MS = 10_000
log = logging.getLogger(__name__)
_Client = TypeVar("_Client", KafkaAdminClient, KafkaConsumer, KafkaProducer)


def _base(settings: Settings) -> dict[str, Any]:
    # No pinned api_version: unpinned, every client bootstraps in its constructor, bounded by
    # bootstrap_timeout_ms, so a refused login fails there with its cause. Pinned, producers
    # and consumers connect lazily and a wrong password surfaces later as a bare timeout.
    config = settings.kafka_client_config()
    config["bootstrap_timeout_ms"] = _CONNECT_TIMEOUT_MS
    # Every client is built from this: its constructor logs the config, password included.
    guard_secrets(settings)
    return config


class _BootstrapFailures(logging.Handler):
    """Collect the exceptions kafka-python logs (and retries) while bootstrapping.

    Only from threads started after it: another client of this process (one given up on and
    still retrying, another thread's) logs to the same loggers.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[BaseException] = []
        self._others = {thread.ident for thread in threading.enumerate()}
        # Set on a refusal no retry fixes: a refused login or an untrusted certificate.
        self.refused = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread in self._others:
            return
        args = record.args if isinstance(record.args, tuple) else ()
        found = [a for a in args if isinstance(a, BaseException)]
        if not found:
            # Some of kafka-python's messages are f-strings: only their text tells the cause.
            text = record.getMessage()
            if "SaslAuthenticationFailed" in text or "Authentication failed" in text:
                found.append(kerr.SaslAuthenticationFailedError(text))
            elif "disconnected" in text:
                found.append(kerr.KafkaConnectionError(text))
        # The final "bootstrap timed out" is the symptom we are explaining, not a cause.
        self.errors.extend(e for e in found if not isinstance(e, kerr.KafkaTimeoutError))
        if any(_refusal(e) for e in found):
            self.refused.set()


def _refusal(error: BaseException) -> bool:
    # Only what no retry changes: an EOF in a TLS handshake may just be a busy broker.
    login = isinstance(error, kerr.SaslAuthenticationFailedError)
    return login or "CERTIFICATE_VERIFY_FAILED" in str(error)


def _construct(what: str, settings: Settings, factory: Callable[[], _Client]) -> _Client:
    """Build a kafka-python client, failing at the first refusal no retry can fix.

    kafka-python retries a refused login or an untrusted certificate until its bootstrap
    timeout; Kafka's own clients treat both as fatal, and a user should not wait 10 s to
    learn of a wrong password. The constructor runs in a helper thread while this one
    watches kafka-python's log; a client built after the refusal is closed at once.
    """
    lock = threading.Lock()
    outcome: list[Any] = []
    gave_up = threading.Event()
    done = threading.Event()

    def build() -> None:
        try:
            result: Any = factory()
        except BaseException as exc:  # handed to the caller's thread
            result = exc
        with lock:
            if gave_up.is_set() and not isinstance(result, BaseException):
                result.close()
            outcome.append(result)
        done.set()

    with _connecting(what, settings) as watcher:
        threading.Thread(target=build, name="kafka-connect", daemon=True).start()
        try:
            while not done.wait(0.05):
                if watcher.refused.is_set():
                    # Mapped to its cause (login or TLS) like kafka-python's own timeout.
                    raise kerr.KafkaTimeoutError("refused; not retried")
        except BaseException:  # that refusal or the user's interrupt: no client may leak
            with lock:
                gave_up.set()
                built = [r for r in outcome if not isinstance(r, BaseException)]
            for late in built:
                late.close()
            raise
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        client: _Client = outcome[0]
        return client


@contextmanager
def _connecting(what: str, settings: Settings) -> Iterator[_BootstrapFailures]:
    """Map a failed client construction to its real cause: dead broker, login or TLS."""
    bootstrap = settings.kafka_bootstrap_servers
    if not any(_accepts_tcp(address) for address in bootstrap.split(",")):
        raise BrokerUnavailable(
            f"{what}: no Kafka broker reachable at {bootstrap} (from {settings.source}); "
            "is it running? (`streamforge-nb local up` starts a local one)"
        )
    watcher = _BootstrapFailures()
    logger = logging.getLogger("kafka.net.manager")
    logger.addHandler(watcher)
    try:
        with kafka_errors(what, bootstrap):
            try:
                yield watcher
            except kerr.KafkaTimeoutError:
                _raise_cause(what, settings, watcher.errors)
                raise
    finally:
        logger.removeHandler(watcher)


def _raise_cause(what: str, settings: Settings, errors: list[BaseException]) -> None:
    if (
        settings.security_protocol.startswith("SASL")
        and errors
        and all(
            isinstance(e, kerr.KafkaConnectionError) and "disconnected" in str(e) for e in errors
        )
    ):
        # The TCP probe passed, yet every attempt was cut during the login. A broker that
        # rejects SCRAM credentials closes the connection after a delay; when the close wins
        # the race against its error response, this is all kafka-python sees.
        raise AuthenticationFailed(
            f"{what}: the broker at {settings.kafka_bootstrap_servers} refused user "
            f"{settings.kafka_user!r} ({settings.kafka_sasl_mechanism}): it closed every "
            "login attempt (wrong password or unknown user?)"
        )
    for error in errors:
        if isinstance(error, kerr.SaslAuthenticationFailedError):
            raise AuthenticationFailed(
                f"{what}: the broker at {settings.kafka_bootstrap_servers} refused user "
                f"{settings.kafka_user!r} ({settings.kafka_sasl_mechanism}): wrong password "
                "or unknown user"
            )
        if isinstance(error, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(error):
            raise AuthenticationFailed(
                f"{what}: the TLS certificate of {settings.kafka_bootstrap_servers} is not "
                f"trusted (CA_PATH={settings.kafka_ca_path or 'unset'})"
            )


def _accepts_tcp(address: str) -> bool:
    host, _, port = address.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=3):
            return True
    except (OSError, ValueError):
        return False


def make_producer(settings: Settings, **config: Any) -> KafkaProducer:
    """Return a producer for `settings`; `config` overrides kafka-python defaults."""
    options = {"max_block_ms": _CONNECT_TIMEOUT_MS, **_base(settings), **config}
    return _construct("connecting a producer", settings, lambda: KafkaProducer(**options))


def make_consumer(settings: Settings, *topics: str, **config: Any) -> KafkaConsumer:
    """Return a consumer for `settings`, subscribed to `topics` when any are given."""
    options = {**_base(settings), **config}
    return _construct("connecting a consumer", settings, lambda: KafkaConsumer(*topics, **options))


def make_assigned_consumer(
    settings: Settings, topic: str, *, start: str = "beginning", **config: Any
) -> tuple[KafkaConsumer, list[TopicPartition]]:
    """Return a group-less consumer assigned every partition of `topic`, at `start`.

    `start` is "beginning" (replay history) or "end" (only what is sent from now on; the
    position is resolved here, so a message sent right after this returns is not missed).
    Reading by assignment skips the group join that would delay the first message.
    """
    options = {"enable_auto_commit": False, "fetch_max_wait_ms": 100, **config}
    consumer = make_consumer(settings, **options)
    try:
        numbers = topic_partitions(consumer, topic, settings)
        with kafka_errors("reading " + topic, settings.kafka_bootstrap_servers):
            partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
            consumer.assign(partitions)
            if start == "end":
                consumer.seek_to_end(*partitions)
                resolved(consumer, partitions, "reading " + topic)
            else:
                consumer.seek_to_beginning(*partitions)
    except BaseException:
        consumer.close()
        raise
    return consumer, partitions


def topic_partitions(
    consumer: KafkaConsumer, topic: str, settings: Settings, *, operation: str = "read"
) -> set[int]:
    """Return the partition numbers of `topic`; raise why it has none for this user.

    A consumer's metadata lists only the topics the user may describe, so a topic behind an
    ACL looks absent. Metadata asked for that one topic tells an ACL refusal from a missing
    topic (and sees a topic created meanwhile).
    """
    where = settings.kafka_bootstrap_servers
    with kafka_errors(f"{operation} {topic}", where):
        numbers = consumer.partitions_for_topic(topic)
    if numbers:
        return set(numbers)
    admin = make_admin(settings)
    try:
        with kafka_errors(f"describing {topic}", where):
            (found,) = admin.describe_topics([topic])
    finally:
        admin.close()
    error = kerr.for_code(found["error_code"])
    if error is kerr.NoError and found["partitions"]:
        return {p["partition_index"] for p in found["partitions"]}
    if error is kerr.NoError:
        error = kerr.UnknownTopicOrPartitionError
    raise map_topic_error(
        error(topic), user=settings.kafka_user, topic=topic, operation=operation, where=where
    )


def make_admin(settings: Settings, **config: Any) -> KafkaAdminClient:
    """Return an admin client for `settings`."""
    options = {"request_timeout_ms": _CONNECT_TIMEOUT_MS, **_base(settings), **config}
    return _construct("connecting an admin client", settings, lambda: KafkaAdminClient(**options))


def check_connection(settings: Settings) -> list[str]:
    """Connect and authenticate; return the topic names the user may see."""
    admin = make_admin(settings)
    try:
        with kafka_errors("listing topics", settings.kafka_bootstrap_servers):
            return sorted(admin.list_topics())
    finally:
        admin.close()


def make_bulk_consumer(settings: Settings, topic: str, **config: Any) -> Any:
    """Return a librdkafka (confluent-kafka) consumer subscribed to `topic`, for bulk reads.

    The data plane reads millions of candles: librdkafka fetches an order of magnitude faster
    than kafka-python (bench/ingest.py), so the sink's data-topic consumer is this one. The
    control plane stays on kafka-python. `config` uses librdkafka's property names.

    Let go of it by dropping the last reference, never with `close()`: librdkafka's close
    serves a pending rebalance itself, the binding then waits on librdkafka holding the GIL,
    and with the group mid-rebalance that wait can last forever (librdkafka#4884), freezing
    the whole process (seen with py-spy on finished sinks, after an unsubscribe too). The
    binding destroys a dropped consumer without the close; the group expires the member
    after its session, as it does a closed static member.
    """
    from confluent_kafka import Consumer

    errors: list[Any] = []
    options = {
        **_librdkafka_config(settings),
        # librdkafka retries a refused login in the background; collect what it reports so
        # the failure names its cause, and route its log lines through `logging`.
        "error_cb": errors.append,
        "logger": logging.getLogger("streamforge_nb.librdkafka"),
        **config,
    }
    what = f"connecting a bulk consumer to {topic}"
    with _connecting(what, settings):
        pass  # the TCP probe: a dead broker fails at once, not after librdkafka's retries
    consumer = Consumer(options)
    try:
        _prove_access(consumer, topic, errors, what, settings)
    except StreamForgeError:
        consumer.close()
        raise
    consumer.subscribe([topic])
    return consumer


def _prove_access(
    client: Any, topic: str, errors: list[Any], what: str, settings: Settings
) -> None:
    """Ask for `topic`'s metadata; raise the library's error for what librdkafka reported.

    It proves the login and TLS trust before the first message, and that the ACLs let this
    user see the topic (a missing one may still be created). `errors` are those the
    client's `error_cb` collected: a refused login is only told there.
    """
    from confluent_kafka import KafkaError, KafkaException

    try:
        metadata = client.list_topics(topic, timeout=_CONNECT_TIMEOUT_MS / 1000)
        refused = metadata.topics[topic].error if topic in metadata.topics else None
        if refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            raise KafkaException(refused)
    except KafkaException as exc:
        cause = next((e for e in errors if e.code() == exc.args[0].code()), None)
        cause = next((e for e in errors if "SSL" in e.str() or "SASL" in e.str()), cause)
        raise map_confluent_error(
            KafkaException(cause) if cause is not None else exc, what=what, settings=settings
        ) from None


def make_bulk_producer(settings: Settings, topic: str, **config: Any) -> Any:
    """Return a librdkafka (confluent-kafka) producer for bulk writes to `topic`.

    The loader publishes millions of candles: librdkafka batches, checksums and partitions
    in C, where kafka-python does each per message in Python (issue 20: 37% of its time in
    pure-Python CRC32C, 11% in murmur2). Keys land where kafka-python's and Java's
    partitioner put them (`murmur2_random` is their murmur2 for a non-null key). Metadata for
    `topic` proves the login, TLS trust and the user's view of the topic before any send.
    `config` uses librdkafka's property names; its `error_cb` gets every error after ours.
    """
    from confluent_kafka import Producer

    what = f"connecting a producer to {topic}"
    with _connecting(what, settings):
        pass  # the TCP probe: a dead broker fails at once, not after librdkafka's retries
    errors: list[Any] = []
    theirs = config.pop("error_cb", None)

    def reported(error: Any) -> None:
        # Both: a refused login is told only here, and a caller needs the cause of a later
        # fatal error (librdkafka's produce and flush say only "_FATAL").
        errors.append(error)
        if theirs is not None:
            theirs(error)

    producer = Producer(
        {
            **_librdkafka_config(settings),
            "partitioner": "murmur2_random",
            "error_cb": reported,
            "logger": logging.getLogger("streamforge_nb.librdkafka"),
            **config,
        }
    )
    _prove_access(producer, topic, errors, what, settings)
    return producer


def make_assigned_reader(settings: Settings, topic: str, **config: Any) -> Any:
    """Return a librdkafka consumer that joins no group, for reading `topic` by assignment.

    Not `make_bulk_consumer`: its subscription's rebalance, served during a later `consume`,
    would take back an assignment made after it (seen: a read that never got a message).
    Nothing is committed; the group id only satisfies librdkafka. `config`: librdkafka
    settings over these (a reader that seeks often fetches less ahead).
    """
    from confluent_kafka import Consumer, KafkaException

    what = f"connecting a reader to {topic}"
    with _connecting(what, settings):
        pass  # the TCP probe: a dead broker fails at once, not after librdkafka's retries
    consumer = Consumer(
        {
            **_librdkafka_config(settings),
            "group.id": f"streamforge-reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "queued.max.messages.kbytes": 16 * 1024,
            "fetch.wait.max.ms": 100,
            "logger": logging.getLogger("streamforge_nb.librdkafka"),
            **config,
        }
    )
    try:  # proves the login, TLS trust and ACLs before the first read
        consumer.list_topics(topic, timeout=10)
    except KafkaException as exc:
        consumer.close()
        raise map_confluent_error(exc, what=what, settings=settings) from None
    return consumer


def _librdkafka_config(settings: Settings) -> dict[str, Any]:
    # librdkafka masks sasl.password in its own config dump; our filter covers the rest.
    guard_secrets(settings)
    python = settings.kafka_client_config()
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(python["bootstrap_servers"]),
        "security.protocol": python["security_protocol"].lower(),
    }
    if "sasl_mechanism" in python:
        config["sasl.mechanisms"] = python["sasl_mechanism"]
        config["sasl.username"] = python["sasl_plain_username"]
        config["sasl.password"] = python["sasl_plain_password"]
    if python.get("ssl_cafile"):
        config["ssl.ca.location"] = python["ssl_cafile"]
    return config
