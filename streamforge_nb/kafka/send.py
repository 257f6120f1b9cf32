"""One-off sends on the service topics, each waiting for the broker's answer (bounded)."""

from __future__ import annotations

from streamforge_nb.exceptions import kafka_errors
from streamforge_nb.kafka.clients import make_producer
from streamforge_nb.platform.contract import BaseCommand, BaseEvent, encode, message_key
from streamforge_nb.settings import Settings

__all__ = ["send_command", "send_event"]


def send_event(settings: Settings, event: BaseEvent) -> None:
    """Send one telemetry event from outside a Worker (e.g. a Job runner's last word)."""
    _send_once(settings, settings.queue_events_topic, event)


def send_command(settings: Settings, command: BaseCommand) -> None:
    """Send one command on queue-control (start, stop or ping)."""
    _send_once(settings, settings.queue_control_topic, command)


def _send_once(settings: Settings, topic: str, message: BaseEvent | BaseCommand) -> None:
    producer = make_producer(settings, acks=1, enable_idempotence=False)
    try:
        with kafka_errors(f"sending to {topic}", settings.kafka_bootstrap_servers):
            producer.send(topic, key=message_key(message), value=encode(message)).get(timeout=10)
    finally:
        producer.close(timeout=5)
