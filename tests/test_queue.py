"""`Queue`: ping, stop, events, status and wait, against the real broker and real workers."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import wait_for_status

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.telemetry import ProducerState, fold, rtt_summary
from streamforge_nb.control.worker import Worker
from streamforge_nb.exceptions import QueueTimeout
from streamforge_nb.kafka.clients import make_producer
from streamforge_nb.platform.contract import Finished, Loading, Pong, Started
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name


def test_fold_keeps_status_on_pong_and_never_loses_records() -> None:
    states: dict[str, ProducerState] = {}
    states = fold(states, Loading(queue_id="q", producer="p", records_written=500, timestamp=10))
    states = fold(
        states,
        Pong(queue_id="q", producer="p", correlation_id="c", ping_timestamp=11, timestamp=12),
    )
    assert states["p"].status == "loading"
    assert states["p"].last_seen == 12
    states = fold(states, Finished(queue_id="q", producer="p", records_written=900, timestamp=13))
    assert states["p"] == ProducerState("p", "finished", 900, 13, None)
    assert states["p"].terminal


def test_rtt_summary_in_milliseconds() -> None:
    stats = rtt_summary([0.001 * i for i in range(1, 101)])
    assert stats["min"] == pytest.approx(1)
    assert stats["p50"] == pytest.approx(50)
    assert stats["p99"] == pytest.approx(99)
    assert stats["max"] == pytest.approx(100)


def test_ping_to_a_queue_nobody_serves_times_out_clearly(settings: Settings) -> None:
    queue_id = unique_name("wf-nobody")
    with Queue(queue_id, settings) as queue:
        started = time.monotonic()
        with pytest.raises(QueueTimeout, match=f"no pong from queue {queue_id} within 1 s"):
            queue.ping(timeout=1)
        assert time.monotonic() - started < 5


def test_status_wait_and_reopen(settings: Settings) -> None:
    queue_id = unique_name("wf-status")
    worker = Worker(
        settings, queue_id=queue_id, producer_id="loader-candles__a1b2c3", target="loader-candles"
    )

    def work(w: Worker) -> None:
        w.loading(1000)
        w.sleep(0.5)
        w.loading(2000)

    runner = threading.Thread(target=worker.run, args=(work,))
    with Queue(queue_id, settings) as queue:
        runner.start()
        final = queue.wait(timeout=30, progress=False)
        assert final.loc["loader-candles__a1b2c3", "status"] == "finished"
        assert final.loc["loader-candles__a1b2c3", "records_written"] == 2000
        assert list(final.columns) == ["status", "records_written", "last_seen", "age_s", "message"]
        assert "loader-candles__a1b2c3" in queue._repr_html_()
    runner.join()
    worker.close()
    # A new handle (a new kernel) rebuilds the state from the telemetry topic.
    with Queue(queue_id, settings) as reopened:
        assert reopened.status().loc["loader-candles__a1b2c3", "status"] == "finished"


def test_wait_times_out_with_the_state_so_far(settings: Settings) -> None:
    queue_id = unique_name("wf-slow")
    with Worker(settings, queue_id=queue_id, producer_id="dummy__slow01", target="dummy") as w:
        w.started()
        with (
            Queue(queue_id, settings) as queue,
            pytest.raises(QueueTimeout, match="dummy__slow01 started"),
        ):
            queue.wait(timeout=1, progress=False)


def test_events_skip_malformed_telemetry(settings: Settings) -> None:
    queue_id = unique_name("wf-events")
    producer = make_producer(settings)
    topic = settings.queue_events_topic
    producer.send(topic, Started(queue_id=queue_id, producer="p").model_dump_json().encode())
    producer.send(topic, b'{"queue_id": "' + queue_id.encode() + b'", "status": "loading"}')
    producer.send(topic, b"garbage")
    producer.send(topic, Finished(queue_id=queue_id, producer="p").model_dump_json().encode())
    producer.flush()
    producer.close()
    with Queue(queue_id, settings) as queue:
        assert [e.status for e in queue.events()] == ["started", "finished"]


def test_events_follow_sees_new_events(settings: Settings) -> None:
    queue_id = unique_name("wf-follow")
    with Worker(settings, queue_id=queue_id, producer_id="dummy__follow", target="dummy") as w:
        w.started()
        threading.Timer(0.5, w.finished).start()
        with Queue(queue_id, settings) as queue:
            seen = []
            for event in queue.events(follow=True, timeout=10):
                seen.append(event.status)
                if event.status == "finished":
                    break
    assert seen == ["started", "finished"]


def test_close_releases_the_follower_thread(settings: Settings) -> None:
    queue_id = unique_name("wf-close")
    queue = Queue(queue_id, settings)
    queue.producers()
    assert any(t.name == f"queue-{queue_id}" for t in threading.enumerate())
    queue.close()
    assert not any(t.name == f"queue-{queue_id}" for t in threading.enumerate())


def test_stop_with_nobody_listening_times_out(settings: Settings) -> None:
    with (
        Queue(unique_name("wf-nostop"), settings) as queue,
        pytest.raises(QueueTimeout, match="acknowledged stop within 1 s"),
    ):
        queue.stop(timeout=1)


def test_many_producers_are_folded_separately(settings: Settings) -> None:
    queue_id = unique_name("wf-many")
    workers = [
        Worker(settings, queue_id=queue_id, producer_id=f"{t}__abc123", target=t)
        for t in ("loader-candles", "arango-candles")
    ]
    try:
        for w in workers:
            w.started()
        wait_for_status(settings, queue_id, "started")
        with Queue(queue_id, settings) as queue:
            replies = queue.ping(timeout=10, expect=2)
            assert sorted(r.producer for r in replies) == [
                "arango-candles__abc123",
                "loader-candles__abc123",
            ]
    finally:
        for w in workers:
            w.close()
