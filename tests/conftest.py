"""Shared fixtures: one real Kafka broker (KRaft, from Maven Central jars) per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamforge_nb.broker import LocalBroker
from streamforge_nb.exceptions import LocalBrokerError
from streamforge_nb.settings import Settings
from streamforge_nb.testing import local_broker
from streamforge_nb.topics import PLATFORM_USER, VIEWER_USER


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep tests away from the user's own ~/.streamforge-nb and environment."""
    home = tmp_path_factory.mktemp("streamforge-home")
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("KAFKA_", "ARANGO_"))}
    os.environ["STREAMFORGE_HOME"] = str(home)
    yield home
    os.environ.update(saved)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A running broker; failing to start fails the tests with the broker's log tail."""
    manager = local_broker(tmp_path_factory.mktemp("kafka"))
    try:
        started = manager.__enter__()
    except LocalBrokerError as exc:
        pytest.fail(f"the local Kafka broker did not start: {exc}", pytrace=False)
    try:
        yield started
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def settings(broker: LocalBroker) -> Settings:
    """PLAINTEXT settings (anonymous super user), the local default."""
    return broker.settings()


@pytest.fixture(scope="session")
def platform_settings(broker: LocalBroker) -> Settings:
    """The platform's production shape: SASL_SSL + SCRAM-SHA-512 as user-streamforge."""
    return broker.settings(PLATFORM_USER)


@pytest.fixture(scope="session")
def viewer_settings(broker: LocalBroker) -> Settings:
    """A SCRAM user whose ACLs allow only reading queue-events."""
    return broker.settings(VIEWER_USER)
