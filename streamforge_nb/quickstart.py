"""The README's main job on the local default: start the broker, prove a round trip through it."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from .broker import LocalBroker
from .clients import make_consumer, make_producer
from .contract import PingCommand, decode_command, encode, message_key
from .exceptions import BrokerError, kafka_errors
from .settings import Settings, local_home

__all__ = ["run_quickstart"]


def run_quickstart(*, count: int = 5, echo: Callable[[str], None] = print) -> list[float]:
    """Start the local broker, send `count` pings on queue-control and read each one back."""
    broker = LocalBroker(local_home())
    broker.up(progress=echo)
    settings = Settings.from_env()
    echo(f"using {settings.describe()} (settings from {settings.source})")
    rtts = round_trips(settings, count)
    for i, rtt in enumerate(rtts, 1):
        echo(f"round trip {i}: {rtt * 1000:.1f} ms through {settings.queue_control_topic}")
    echo(f"median {statistics.median(rtts) * 1000:.1f} ms over {len(rtts)} round trips")
    echo(f"the broker keeps running; `streamforge-nb local down` stops it ({broker.home})")
    return rtts


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
