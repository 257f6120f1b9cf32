"""The README's main job on the local default: start the broker, ping a real worker through it."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from .broker import LocalBroker
from .clients import make_consumer, make_producer
from .contract import PingCommand, decode_command, encode, message_key
from .exceptions import BrokerError, kafka_errors
from .names import new_short_id
from .queue import Queue, QueueTimeout
from .settings import Settings, local_home

__all__ = ["run_quickstart"]


def run_quickstart(*, count: int = 5, echo: Callable[[str], None] = print) -> list[float]:
    """Start the local broker and a dummy worker; ping it `count` times, then stop it."""
    broker = LocalBroker(local_home())
    broker.up(progress=echo)
    settings = Settings.from_env()
    echo(f"using {settings.describe()} (settings from {settings.source})")
    queue_id = f"wf-quickstart-{new_short_id()}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    command = [
        sys.executable,
        "-m",
        "streamforge_nb.workers.dummy",
        "--queue-id",
        queue_id,
        "--metrics-port",
        "0",
    ]
    echo(f"starting a dummy worker for queue {queue_id}")
    worker = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    rtts: list[float] = []
    try:
        with Queue(queue_id, settings) as queue:
            _first_pong(queue, timeout=60)
            for i in range(1, count + 1):
                (reply,) = queue.ping(timeout=10)
                rtts.append(reply.round_trip_s)
                echo(f"pong {i} from {reply.producer}: {reply.round_trip_s * 1000:.1f} ms")
            echo(f"median round trip {statistics.median(rtts) * 1000:.1f} ms over {count} pings")
            echo("stopped: " + ", ".join(queue.stop(timeout=30)))
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    echo(f"the broker keeps running; `streamforge-nb local down` stops it ({broker.home})")
    return rtts


def _first_pong(queue: Queue, timeout: float) -> None:
    """Ping until the freshly started worker answers (its start-up is not a round trip)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            queue.ping(timeout=1)
            return
        except QueueTimeout:
            if time.monotonic() > deadline:
                raise


def round_trips(settings: Settings, count: int, timeout: float = 10.0) -> list[float]:
    """Produce `count` ping commands and time each until a consumer reads it back."""
    topic = settings.queue_control_topic
    partition = TopicPartition(topic, 0)
    consumer = make_consumer(settings, fetch_max_wait_ms=10, enable_auto_commit=False)
    producer = make_producer(settings, linger_ms=0)
    queue_id = f"wf-quickstart-{uuid.uuid4().hex[:6]}"
    rtts = []
    try:
        with kafka_errors("round trip through " + topic, settings.kafka_bootstrap_servers):
            consumer.assign([partition])
            consumer.seek_to_end(partition)
            consumer.position(partition)
            for _ in range(count):
                ping = PingCommand(
                    queue_id=queue_id, correlation_id=uuid.uuid4().hex, timestamp=time.time()
                )
                started = time.perf_counter()
                producer.send(topic, key=message_key(ping), value=encode(ping))
                producer.flush()
                rtts.append(_read_back(consumer, ping.correlation_id, started, timeout))
    finally:
        producer.close()
        consumer.close()
    return rtts


def _read_back(
    consumer: KafkaConsumer, correlation_id: str, started: float, timeout: float
) -> float:
    deadline = started + timeout
    while time.perf_counter() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            for record in records:
                command = decode_command(record.value)
                if getattr(command, "correlation_id", None) == correlation_id:
                    return time.perf_counter() - started
    raise BrokerError(f"the message did not come back within {timeout:.0f} s")
