"""A read to the end of partitions (`kafka.positions`) ends: with every record, by its deadline,
or with the reason when its positions stop moving. Real broker, real kafka-python consumer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kafka import TopicPartition

from streamforge_nb.exceptions import BrokerUnavailable
from streamforge_nb.kafka import positions as positions_module
from streamforge_nb.kafka.clients import (
    make_admin,
    make_assigned_consumer,
    make_consumer,
    make_producer,
)
from streamforge_nb.kafka.positions import positions, read_to_end, resolved
from streamforge_nb.platform.topics import TopicSpec, ensure_topics
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name


def topic_of(settings: Settings, records: int) -> tuple[str, list[TopicPartition]]:
    """A new topic of 2 partitions holding `records` records."""
    topic = unique_name("wf-positions")
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(topic, partitions=2),))
    finally:
        admin.close()
    producer = make_producer(settings)
    for i in range(records):
        producer.send(topic, key=str(i).encode(), value=b"event", partition=i % 2)
    producer.flush(timeout=30)
    producer.close()
    return topic, [TopicPartition(topic, p) for p in (0, 1)]


@contextmanager
def placed(settings: Settings, partitions: list[TopicPartition]) -> Iterator[Any]:
    """A consumer assigned `partitions`, at their beginning; closed after."""
    consumer = make_consumer(settings, enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        yield consumer
    finally:
        consumer.close()


def in_thread(read: Any) -> tuple[list[Any], float]:
    """Run `read` where a wait without end fails the test instead of hanging it."""
    out: list[Any] = []
    began = time.monotonic()

    def run() -> None:
        try:
            out.append(read())
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the read did not end"
    return out, time.monotonic() - began


def test_a_read_to_the_end_hands_over_every_record_once(settings: Settings) -> None:
    topic, partitions = topic_of(settings, 300)
    with placed(settings, partitions) as consumer:
        seen: list[Any] = []
        end = consumer.end_offsets(partitions)
        left = read_to_end(consumer, end, seen.extend, what="reading " + topic)
        assert left == []
        assert sorted(int(r.key) for r in seen) == list(range(300))


def test_a_read_whose_positions_stop_moving_ends_with_the_partitions_and_offsets(
    settings: Settings,
) -> None:
    # An end the log never reaches: what a fetcher that stopped fetching looks like to the
    # loop (its positions stay below the end). Before, such a loop polled forever.
    topic, partitions = topic_of(settings, 10)
    with placed(settings, partitions) as consumer:
        end = {tp: at + 7 for tp, at in consumer.end_offsets(partitions).items()}
        out, took = in_thread(
            lambda: read_to_end(consumer, end, lambda _: None, what="reading " + topic, stall_s=1)
        )
        assert isinstance(out[0], BrokerUnavailable), out
        assert str(out[0]) == (
            f"reading {topic} made no progress for 1 s (partition 0: 5 of 12, 1: 5 of 12)"
        )
        assert took < 30


def test_a_read_past_its_deadline_returns_the_partitions_not_read_to_their_end(
    settings: Settings,
) -> None:
    _, partitions = topic_of(settings, 10)
    with placed(settings, partitions) as consumer:
        end = {**consumer.end_offsets(partitions), partitions[1]: 10**6}
        seen: list[Any] = []
        deadline = time.monotonic() + 2
        left = read_to_end(consumer, end, seen.extend, what="reading", deadline=deadline)
        assert left == [partitions[1]] and len(seen) == 10


def test_a_consumer_placed_at_the_end_reads_what_is_sent_next(settings: Settings) -> None:
    topic, _ = topic_of(settings, 4)
    consumer, partitions = make_assigned_consumer(settings, topic, start="end")
    try:
        producer = make_producer(settings)
        producer.send(topic, key=b"after", value=b"event", partition=1)
        producer.flush(timeout=30)
        producer.close()
        end = consumer.end_offsets(partitions)
        seen: list[Any] = []
        assert read_to_end(consumer, end, seen.extend, what="reading " + topic) == []
        assert [r.key for r in seen] == [b"after"]
    finally:
        consumer.close()


def test_positions_the_broker_never_gives_cost_one_bound_not_one_a_partition(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A topic the broker does not have (it creates none on request): no offset of any of its
    # partitions ever comes. Before, `positions` waited its bound for each of the 6 (6 s here,
    # 24 s a poll at the default) before a read to the end could see its stall.
    monkeypatch.setattr(positions_module, "STALL_S", 1.0)
    monkeypatch.setattr(positions_module, "POSITION_MS", 1_000)
    missing = [TopicPartition(unique_name("wf-never-created"), p) for p in range(6)]
    with placed(settings, missing) as consumer:
        out, took = in_thread(lambda: resolved(consumer, missing, "reading the missing topic"))
        assert isinstance(out[0], BrokerUnavailable), out
        assert str(out[0]) == (
            "reading the missing topic: the broker gave no offset of partition 0 in 1 s"
        )
        assert took < 4, took
        known = {tp: tp.partition for tp in missing}
        out, took = in_thread(lambda: positions(consumer, missing, known))
        assert out == [known]
        assert took < 4, took
