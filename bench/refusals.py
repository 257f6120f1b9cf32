"""How long a wrong password or an untrusted certificate takes to be told, against kafka-python.

kafka-python retries a refused login and an untrusted certificate until its bootstrap timeout;
the library's clients give up at the first refusal (`kafka.clients._construct`). One run
against a local broker (SASL_SSL + SCRAM): `--tries` calls of `check_connection` per case, and
the anchor, kafka-python's own `KafkaAdminClient` with the same settings and the library's
bootstrap timeout, `--anchor-tries` times. Prints per case the library's median and slowest
time, the anchor's median, and their ratio. Always exits 0.

    .venv/bin/python bench/refusals.py [--tries 10] [--anchor-tries 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaAdminClient
from pydantic import SecretStr

from streamforge_nb.kafka.clients import _CONNECT_TIMEOUT_MS, check_connection
from streamforge_nb.settings import Settings
from streamforge_nb.testing import local_broker


def timed(call: Callable[[], object]) -> tuple[float, str]:
    """Run `call`, which should fail: (seconds, the error's class)."""
    started = time.monotonic()
    try:
        call()
        outcome = "no error"
    except Exception as exc:
        outcome = type(exc).__name__
    return time.monotonic() - started, outcome


def anchor(settings: Settings) -> KafkaAdminClient:
    config = {**settings.kafka_client_config(), "bootstrap_timeout_ms": _CONNECT_TIMEOUT_MS}
    return KafkaAdminClient(**config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--anchor-tries", type=int, default=1)
    args = parser.parse_args()
    with local_broker(Path(tempfile.mkdtemp(prefix="bench-refusals-"))) as broker:
        platform = broker.settings("user-streamforge")
        cases = {
            "wrong password": platform.model_copy(
                update={"kafka_password": SecretStr("not-the-password")}
            ),
            "untrusted certificate": platform.model_copy(update={"kafka_ca_path": None}),
        }
        print(f"{'case':<22} {'library median':>15} {'slowest':>8} {'kafka-python':>13} ratio")
        for name, bad in cases.items():
            ours = [timed(lambda bad=bad: check_connection(bad)) for _ in range(args.tries)]
            theirs = [timed(lambda bad=bad: anchor(bad)) for _ in range(args.anchor_tries)]
            median = statistics.median(t for t, _ in ours)
            slowest = max(t for t, _ in ours)
            base = statistics.median(t for t, _ in theirs)
            errors = sorted({e for _, e in ours} | {e for _, e in theirs})
            print(
                f"{name:<22} {median:>13.2f} s {slowest:>6.2f} s {base:>11.2f} s "
                f"{base / median:>5.0f}x  ({', '.join(errors)})"
            )


if __name__ == "__main__":
    main()
