"""Helpers for tests, ours and users': a real local Kafka broker per test session.

from streamforge_nb.testing import local_broker

with local_broker(tmp_path) as broker:
    settings = broker.settings()           # PLAINTEXT, anonymous super user
    platform = broker.settings("user-streamforge")  # SASL_SSL + SCRAM, ACLs enforced
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .broker import LocalBroker

__all__ = ["local_broker", "unique_name"]


@contextmanager
def local_broker(home: Path, *, timeout: float = 120.0) -> Iterator[LocalBroker]:
    """Start a broker on free ports in `home`; stop it on exit.

    A broker that does not start raises `LocalBrokerError` carrying the broker's log tail.
    """
    broker = LocalBroker(home)
    try:
        broker.up(port=0, timeout=timeout)
        yield broker
    finally:
        broker.down()


def unique_name(prefix: str = "wf-test") -> str:
    """Return a topic or queue name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
