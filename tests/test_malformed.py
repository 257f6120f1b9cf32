"""Malformed telemetry on queue-events: every skipped message is in exactly one notice."""

from __future__ import annotations

import re
import time

import pytest

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.telemetry import MALFORMED, MalformedCounter
from streamforge_nb.kafka.clients import make_producer
from streamforge_nb.platform.contract import Started
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name

NOTICE = re.compile(
    r"skipped (\d+) malformed telemetry message\(s\) since the last report \((\d+) in all\)"
)


def notices(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    """(skipped since the last report, in all) of each notice logged."""
    found = (NOTICE.match(r.getMessage()) for r in caplog.records)
    return [(int(m[1]), int(m[2])) for m in found if m]


def assert_exact(reported: list[tuple[int, int]], skipped: int, before: int) -> None:
    """The notices add up to `skipped`, and each one's total is the running total."""
    assert sum(count for count, _ in reported) == skipped, reported
    running = before
    for count, total in reported:
        running += count
        assert total == running, reported


def test_every_malformed_message_of_a_queue_is_reported_with_exact_counts(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    queue_id = unique_name("wf-malformed")
    key = queue_id.encode()
    malformed = [
        b'{"status": "loading", "queue_id": "%s"}' % key,  # no producer
        b'{"status": "exploded", "queue_id": "%s", "producer": "p"}' % key,
        b'{"queue_id": "%s", "producer": "p"' % key,  # cut short
        b"not json, and no queue id in it: only its key says whose it is",
    ]
    producer = make_producer(settings)
    for raw in [Started(queue_id=queue_id, producer="p").model_dump_json().encode(), *malformed]:
        producer.send(settings.queue_events_topic, raw, key)
    producer.flush()
    producer.close()
    MALFORMED.flush()  # what earlier tests skipped is reported before ours

    with Queue(queue_id, settings) as queue:
        for read in (lambda: list(queue.events()), queue.status):
            before = MALFORMED.total
            caplog.clear()
            with caplog.at_level("WARNING", logger="streamforge_nb.control.telemetry"):
                read()
                MALFORMED.flush()
            assert MALFORMED.total == before + len(malformed)
            assert_exact(notices(caplog), len(malformed), before)


def test_messages_skipped_inside_a_window_are_reported_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = MalformedCounter(every_s=0.5)
    with caplog.at_level("WARNING", logger="streamforge_nb.control.telemetry"):
        for i in range(4):
            counter.note(f"bad event {i}")
        # Nothing else is skipped: the window's end alone reports the other three.
        deadline = time.monotonic() + 60
        while sum(c for c, _ in notices(caplog)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert notices(caplog) == [(1, 1), (3, 4)]
    assert "latest: bad event 3" in caplog.records[-1].getMessage()
