"""The control loop every worker shares, against the real broker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.worker import Worker
from streamforge_nb.exceptions import QueueTimeout
from streamforge_nb.kafka.clients import make_producer
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name


@pytest.fixture
def queue_id() -> str:
    return unique_name("wf-worker")


@pytest.fixture
def worker(settings: Settings, queue_id: str) -> Iterator[Worker]:
    with Worker(
        settings,
        queue_id=queue_id,
        producer_id="loader-candles__abc123",
        target="loader-candles",
        symbol="BTCUSDT",
        type="api_candles_1m",
    ) as w:
        yield w


def statuses(settings: Settings, queue_id: str) -> list[str]:
    with Queue(queue_id, settings) as queue:
        return [e.status for e in queue.events()]


def test_run_sends_started_then_finished(settings: Settings, worker: Worker) -> None:
    def work(w: Worker) -> str:
        w.loading(10)
        return "done"

    assert worker.run(work) == "done"
    with Queue(worker.queue_id, settings) as queue:
        events = list(queue.events())
    assert [e.status for e in events] == ["started", "loading", "finished"]
    assert events[-1].records_written == 10
    assert all(e.producer == "loader-candles__abc123" and e.symbol == "BTCUSDT" for e in events)


def test_busy_worker_answers_ping_and_stops_on_stop(settings: Settings, worker: Worker) -> None:
    begun = threading.Event()

    def work(w: Worker) -> None:
        begun.set()
        w.sleep(60)

    runner = threading.Thread(target=worker.run, args=(work,))
    runner.start()
    # A worker answers pings from the moment it exists; ping once it is busy, after `started`
    # (a ping racing the start could be answered first, and the order below would not hold).
    assert begun.wait(10)
    with Queue(worker.queue_id, settings) as queue:
        replies = queue.ping(timeout=10)
        assert [r.producer for r in replies] == ["loader-candles__abc123"]
        assert replies[0].pong.records_written == 0
        assert 0 < replies[0].round_trip_s < 5
        assert queue.stop(timeout=10) == ["loader-candles__abc123"]
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert statuses(settings, worker.queue_id) == ["started", "pong", "interrupted"]


def test_target_filters_commands(settings: Settings, worker: Worker) -> None:
    with Queue(worker.queue_id, settings) as queue:
        with pytest.raises(QueueTimeout, match="target arango-candles"):
            queue.ping("arango-candles", timeout=1)
        assert queue.ping("loader-candles", timeout=10)


def test_commands_for_other_queues_and_garbage_are_ignored(
    settings: Settings, worker: Worker
) -> None:
    producer = make_producer(settings)
    producer.send(settings.queue_control_topic, b"{not json")
    producer.send(
        settings.queue_control_topic, b'{"command": "stop", "queue_id": "wf-someone-else"}'
    )
    producer.flush()
    producer.close()
    with Queue(worker.queue_id, settings) as queue:
        assert queue.ping(timeout=10)  # the control loop survived the garbage
    assert not worker.stop_requested


def test_exception_sends_error_with_the_reason_then_propagates(
    settings: Settings, worker: Worker
) -> None:
    def work(_w: Worker) -> None:
        raise ValueError("exchange said no")

    with pytest.raises(ValueError, match="exchange said no"):
        worker.run(work)
    with Queue(worker.queue_id, settings) as queue:
        last = list(queue.events())[-1]
    assert last.status == "error"
    assert last.message == "ValueError: exchange said no"
    assert getattr(last, "error_type", None) == "ValueError"


def test_close_ends_the_control_thread(settings: Settings, queue_id: str) -> None:
    w = Worker(settings, queue_id=queue_id, producer_id="dummy__000001", target="dummy")
    name = "control-dummy__000001"
    assert any(t.name == name for t in threading.enumerate())
    w.close()
    # The thread ends on its own within one poll; joined here so the check does not race it.
    for thread in threading.enumerate():
        if thread.name == name:
            thread.join(timeout=30)
    assert not any(t.name == name for t in threading.enumerate())


def test_close_does_not_wait_for_the_control_thread(settings: Settings, queue_id: str) -> None:
    """A worker's exit is not held by its control thread: `close()` returns while that thread
    is still busy with a command (it used to join it, ~0.1 s of every sink's exit)."""
    handling = threading.Event()
    close_returned = threading.Event()
    outcome: list[bool] = []

    def on_ping(_: object) -> None:
        handling.set()
        # Released by `close()` returning; a close that waits for this thread is not released
        # until this gives up (2 s, well under the old join's 5 s bound).
        outcome.append(close_returned.wait(2))

    w = Worker(settings, queue_id=queue_id, producer_id="dummy__000002", target="dummy",
               on_ping=on_ping)  # fmt: skip
    w.run(lambda _: None)
    with Queue(queue_id, settings) as queue:
        queue.ping(timeout=30)
    assert handling.wait(30)
    w.close()
    close_returned.set()
    w._thread.join(timeout=30)
    assert outcome == [True]
    with Queue(queue_id, settings) as queue:
        assert "finished" in [e.status for e in queue.events()]


def test_a_pong_being_handed_over_as_close_begins_goes_out_before_close_returns(
    settings: Settings, queue_id: str
) -> None:
    """A ping answered while the worker closes: its pong is handed to the (real) sender
    before `close()` flushes it, or not at all; nothing is sent once `close()` returned."""
    w = Worker(settings, queue_id=queue_id, producer_id="dummy__000003", target="dummy")
    real_send = w._pongs.send_nowait
    handing, go = threading.Event(), threading.Event()
    order: list[str] = []

    def slow_send(pong: Any) -> Any:  # the real send, held at its start until released
        handing.set()
        go.wait(10)
        done = real_send(pong)
        order.append("pong handed over")
        return done

    w._pongs.send_nowait = slow_send  # type: ignore[method-assign]
    w.run(lambda _: None)
    answers: list[str] = []
    pinger = threading.Thread(target=lambda: answers.append(_ping(settings, queue_id)))
    pinger.start()
    assert handing.wait(30)
    closing = threading.Thread(target=lambda: (w.close(), order.append("close returned")))
    closing.start()
    closing.join(0.5)  # a close that does not wait for the pong being handed over is done
    go.set()
    closing.join(30)
    pinger.join(60)
    assert order == ["pong handed over", "close returned"]
    assert answers == ["dummy__000003"]  # flushed by close: the ping got its pong


def _ping(settings: Settings, queue_id: str) -> str:
    with Queue(queue_id, settings) as queue:
        return queue.ping(timeout=30)[0].producer


def test_other_partition_counts_still_work(settings: Settings) -> None:
    """A cluster whose service topics have other partition counts: the partition is computed
    from the real count, by senders and readers alike; old commands are not replayed."""
    from streamforge_nb.kafka.clients import make_admin
    from streamforge_nb.kafka.send import send_command
    from streamforge_nb.platform.contract import StopCommand
    from streamforge_nb.platform.topics import TopicSpec, ensure_topics

    control, events = unique_name("control"), unique_name("events")
    admin = make_admin(settings)
    try:
        ensure_topics(admin, (TopicSpec(control, partitions=3), TopicSpec(events, partitions=5)))
    finally:
        admin.close()
    odd = settings.model_copy(update={"queue_control_topic": control, "queue_events_topic": events})
    queue_id = unique_name("wf-odd")
    sent = send_command(odd, StopCommand(queue_id=queue_id))  # before the worker: not for it
    with Worker(odd, queue_id=queue_id, producer_id="dummy__odd", target="dummy") as w:
        assert not w.stop_requested
        with Queue(queue_id, odd) as queue:
            [reply] = queue.ping(timeout=10)
            assert reply.producer == "dummy__odd"
        assert not w.stop_requested
    from streamforge_nb.kafka.partitions import partition_for

    assert sent.partition == partition_for(queue_id, 3)


def test_stop_with_a_target_stops_only_that_targets_worker(
    settings: Settings, queue_id: str
) -> None:
    """`stop --target arango-candles` ends the sink of the queue, never its loader."""
    from streamforge_nb.kafka.send import send_command
    from streamforge_nb.platform.contract import StopCommand

    def worker(target: str, short: str) -> Worker:
        return Worker(settings, queue_id=queue_id, producer_id=f"{target}__{short}", target=target)

    with worker("loader-candles", "l1") as loader, worker("arango-candles", "s1") as sink:
        runners = {
            w.target: threading.Thread(target=w.run, args=(lambda w: w.sleep(60),))
            for w in (loader, sink)
        }
        for runner in runners.values():
            runner.start()
        send_command(settings, StopCommand(queue_id=queue_id, target="arango-candles"))
        runners["arango-candles"].join(timeout=30)
        assert not runners["arango-candles"].is_alive()
        with Queue(queue_id, settings) as queue:
            # The ping follows the stop on the queue's partition: once the loader answers it,
            # it has read (and passed over) the stop.
            [reply] = queue.ping("loader-candles", timeout=10)
            assert reply.producer == "loader-candles__l1"
            assert not loader.stop_requested and runners["loader-candles"].is_alive()
            assert "loader-candles__l1" in queue.stop("loader-candles", timeout=30)
        runners["loader-candles"].join(timeout=30)
        assert not runners["loader-candles"].is_alive()
    with Queue(queue_id, settings) as queue:
        by_producer = {(e.producer, e.status) for e in queue.events()}
    assert ("arango-candles__s1", "interrupted") in by_producer
    assert ("loader-candles__l1", "interrupted") in by_producer
