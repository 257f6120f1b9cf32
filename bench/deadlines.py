"""How long calls given a time take past it, and a message's round trip, against anchors.

The real-clock bounds the functional tests once asserted (tests/test_queue.py,
tests/test_clients.py, tests/test_dummy.py) are measured here instead, each beside an anchor
from the same run:

- `Queue.ping(timeout=1)` to a queue nobody serves (the test bound: under 5 s), and
  `Queue.stop(timeout=1)` likewise; anchor: the 1 s asked for;
- a command to a missing queue-control topic, refused (the test bound: under 30 s); anchor:
  kafka-python's producer with its defaults, which blocks `max_block_ms` (60 s) on it
  (`--anchor-missing` to measure it);
- the dummy service with `--exit-after 1`, process start to exit 0 (the test bound: under
  15 s); anchor: `python -c "import streamforge_nb.workers.dummy"`, the interpreter and
  imports every worker process pays, plus the 1 s asked for;
- a produce/consume round trip through the broker (the test bound: under 5 s); anchor: the
  ping round trip of bench/ping.py (run it for the full comparison).

Starts a local broker in a temporary directory (or uses `--bootstrap`, PLAINTEXT). Prints
median and slowest of `--tries` per case; always exits 0.

    .venv/bin/python bench/deadlines.py [--tries 5] [--anchor-missing] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ping import broker_settings

from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import StreamForgeError
from streamforge_nb.kafka.send import send_command
from streamforge_nb.platform.contract import StopCommand
from streamforge_nb.settings import Settings
from streamforge_nb.testing import round_trips, unique_name


def timed(call: Callable[[], object]) -> float:
    """Seconds `call` took; an error it raises is what it is expected to end with."""
    started = time.perf_counter()
    with contextlib.suppress(StreamForgeError, TimeoutError):
        call()
    return time.perf_counter() - started


def ping_nobody(settings: Settings) -> None:
    with Queue(unique_name("wf-nobody"), settings) as queue:
        queue.ping(timeout=1)


def stop_nobody(settings: Settings) -> None:
    with Queue(unique_name("wf-nobody"), settings) as queue:
        queue.stop(timeout=1)


def missing_topic(settings: Settings) -> None:
    missing = settings.model_copy(update={"queue_control_topic": unique_name("no-such-topic")})
    send_command(missing, StopCommand(queue_id="q"))


def kafka_python_missing_topic(settings: Settings) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        producer.send(unique_name("no-such-topic"), b"{}").get(timeout=120)
    except KafkaError:
        pass
    finally:
        producer.close()


def dummy_floor(settings: Settings) -> None:
    """The anchor of the dummy's exit: its imports in a new interpreter, plus the 1 s asked."""
    run(settings, "-c", "import streamforge_nb.workers.dummy")
    time.sleep(1)


def run(settings: Settings, *command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    subprocess.run([sys.executable, *command], env=env, check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--anchor-missing", action="store_true")
    parser.add_argument("--bootstrap", help="use this PLAINTEXT broker instead of a local one")
    args = parser.parse_args()
    with broker_settings(args.bootstrap) as (settings, how):
        print(f"broker: {settings.kafka_bootstrap_servers} ({how})")
        dummy = ["-m", "streamforge_nb.workers.dummy", "--metrics-port", "0", "--exit-after", "1"]
        cases: dict[str, tuple[Callable[[], object], Callable[[], object] | None, str]] = {
            "ping(timeout=1), nobody serves": (
                lambda: ping_nobody(settings),
                lambda: time.sleep(1),
                "the 1 s asked",
            ),
            "stop(timeout=1), nobody serves": (
                lambda: stop_nobody(settings),
                lambda: time.sleep(1),
                "the 1 s asked",
            ),
            "a command to a missing topic": (
                lambda: missing_topic(settings),
                (lambda: kafka_python_missing_topic(settings)) if args.anchor_missing else None,
                "kafka-python's defaults",
            ),
            "dummy --exit-after 1, start to exit": (
                lambda: run(settings, *dummy, "--queue-id", unique_name("wf-exit")),
                lambda: dummy_floor(settings),
                "python + imports + 1 s",
            ),
        }
        print(f"{'case':<38} {'median':>8} {'slowest':>8} {'anchor':>8}  anchor is")
        for name, (ours, anchor, what) in cases.items():
            times = [timed(ours) for _ in range(args.tries)]
            base = f"{statistics.median(timed(anchor) for _ in range(2)):>6.2f} s" if anchor else (
                "     -  ")  # fmt: skip
            print(f"{name:<38} {statistics.median(times):>6.2f} s {max(times):>6.2f} s "
                  f"{base}  {what}")  # fmt: skip
        rtts = round_trips(settings, 20)
        print(f"{'produce/consume round trip':<38} {statistics.median(rtts):>6.3f} s "
              f"{max(rtts):>6.3f} s {'':>8}  see bench/ping.py")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
