"""`Queue`: ping, stop, events, status and wait, against the real broker and real workers."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from conftest import subprocess_env, wait_for_status

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.telemetry import ProducerState, fold, rtt_summary
from streamforge_nb.control.worker import Worker
from streamforge_nb.exceptions import InvalidName, NotAuthorized, QueueTimeout
from streamforge_nb.kafka.clients import make_producer
from streamforge_nb.platform.contract import Finished, Loading, Pong, Started
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name

T0 = 1_700_000_000.0  # a time within the contract's window


def test_fold_keeps_status_on_pong_and_never_loses_records() -> None:
    states: dict[str, ProducerState] = {}
    states = fold(states, Loading(queue_id="q", producer="p", records_written=500, timestamp=T0))
    states = fold(
        states,
        Pong(queue_id="q", producer="p", correlation_id="c", ping_timestamp=T0, timestamp=T0 + 2),
    )
    assert states["p"].status == "loading"
    assert states["p"].last_seen == T0 + 2
    finished = Finished(queue_id="q", producer="p", records_written=900, timestamp=T0 + 3)
    states = fold(states, finished)
    assert states["p"] == ProducerState("p", "finished", 900, T0 + 3, None)
    assert states["p"].terminal


def test_rtt_summary_in_milliseconds() -> None:
    stats = rtt_summary([0.001 * i for i in range(1, 101)])
    assert stats["min"] == pytest.approx(1)
    assert stats["p50"] == pytest.approx(50)
    assert stats["p99"] == pytest.approx(99)
    assert stats["max"] == pytest.approx(100)


def test_ping_to_a_queue_nobody_serves_times_out_clearly(settings: Settings) -> None:
    queue_id = unique_name("wf-nobody")
    # How long past the 1 s it ends: bench/deadlines.py.
    with (
        Queue(queue_id, settings) as queue,
        pytest.raises(QueueTimeout, match=f"no pong from queue {queue_id} within 1 s"),
    ):
        queue.ping(timeout=1)


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
        assert list(final.columns) == [
            "status",
            "records_written",
            "last_seen",
            "age_s",
            "message",
            "dead_letters",
            "anomalies",
        ]
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
        with Queue(queue_id, settings) as queue:
            # The state so far includes the history: read it first (status() waits for it).
            assert queue.status().loc["dummy__slow01", "status"] == "started"
            with pytest.raises(QueueTimeout, match="dummy__slow01 started"):
                queue.wait(timeout=1, progress=False)


def test_events_skip_malformed_telemetry(settings: Settings) -> None:
    queue_id = unique_name("wf-events")
    producer = make_producer(settings)
    topic = settings.queue_events_topic
    key = queue_id.encode()  # keyed by queue id, as the contract says: the queue's partition
    producer.send(topic, Started(queue_id=queue_id, producer="p").model_dump_json().encode(), key)
    producer.send(topic, b'{"queue_id": "' + key + b'", "status": "loading"}', key)
    producer.send(topic, b"garbage", key)
    producer.send(topic, b"garbage " + key, key)
    producer.send(topic, Finished(queue_id=queue_id, producer="p").model_dump_json().encode(), key)
    producer.flush()
    producer.close()
    with Queue(queue_id, settings) as queue:
        assert [e.status for e in queue.events()] == ["started", "finished"]


def test_unkeyed_events_are_seen_from_the_queue_start(settings: Settings) -> None:
    """A service that does not key by queue id: its events land on any partition."""
    queue_id = unique_name("wf-unkeyed")
    since = time.time()
    producer = make_producer(settings)
    for status in (Started, Finished):
        producer.send(
            settings.queue_events_topic,
            status(queue_id=queue_id, producer="p").model_dump_json().encode(),
        )
    producer.flush()
    producer.close()
    with Queue(queue_id, settings, since=since) as queue:
        assert [e.status for e in queue.events()] == ["started", "finished"]
        assert queue.status().loc["p", "status"] == "finished"


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


# A second real worker process of another target than the dummy's: it serves until stopped.
_LOADER = """
import sys
from streamforge_nb.control.worker import Worker
from streamforge_nb.settings import Settings
with Worker(Settings.from_env(), queue_id=sys.argv[1], producer_id="loader-candles__tgt001",
            target="loader-candles") as worker:
    worker.run(lambda w: w.sleep(600))
"""


@pytest.mark.timeout(120)  # a stop that waits for the other target would hang to its timeout
def test_stop_with_a_target_stops_only_that_targets_producers(
    settings: Settings, start_dummy: Callable[..., subprocess.Popen[str]]
) -> None:
    queue_id = unique_name("wf-target")
    dummy = start_dummy(queue_id)
    loader = subprocess.Popen(
        [sys.executable, "-c", _LOADER, queue_id], env=subprocess_env(settings), text=True
    )
    try:
        with Queue(queue_id, settings) as queue:
            # `started` is sent once the worker listens to queue-control.
            while "loader-candles__tgt001" not in queue.producers():
                assert loader.poll() is None, "the loader process ended"
                time.sleep(0.1)
            (acked,) = queue.stop("dummy", timeout=600)
            assert acked.startswith("dummy__")
            assert dummy.wait(timeout=20) == 0
            # The loader heard nothing: it still runs and answers.
            assert loader.poll() is None
            states = queue.producers()
            assert states["loader-candles__tgt001"].status == "started"
            assert states[acked].status == "interrupted"
            assert [r.producer for r in queue.ping(timeout=10)] == ["loader-candles__tgt001"]
            assert queue.stop("loader-candles", timeout=600) == ["loader-candles__tgt001"]
        assert loader.wait(timeout=20) == 0
    finally:
        if loader.poll() is None:
            loader.kill()
            loader.wait()


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


# -- hostile telemetry and refusals ------------------------------------------------------------
def test_an_extreme_event_leaves_every_reader_working(settings: Settings, tmp_path: Path) -> None:
    """Issue 10: one schema-valid 1e20 timestamp once broke events, status and queues."""
    from streamforge_nb.control.state import new_record
    from streamforge_nb.control.telemetry import event_line
    from streamforge_nb.store.candles import CandleStore
    from streamforge_nb.ui.panel import QueuePanel

    queue_id = unique_name("wf-extreme")
    since = time.time()
    producer = make_producer(settings)
    topic, key = settings.queue_events_topic, queue_id.encode()
    extreme = b'{"status":"loading","queue_id":"%s","producer":"x","timestamp":1e20}' % key
    for raw in (
        Started(queue_id=queue_id, producer="p").model_dump_json().encode(),
        extreme,
        b'{"status":"loading","queue_id":"%s","producer":"x","records_written":-1}' % key,
        b'{"status":"loading","queue_id":"%s","producer":"x","records_written":1e30}' % key,
        b'{"status":"loading","queue_id":"%s","producer":"x","big":123456789012345678901234}' % key,
        b'{"status":"loading","queue_id":"%s","producer":"%s"}' % (key, b"y" * 100_000),
        Loading(queue_id=queue_id, producer="p", message="a\x1b[2Jb\nc").model_dump_json().encode(),
    ):
        producer.send(topic, raw, key)
    producer.flush()
    producer.close()
    store_dir = tmp_path / "store"
    with CandleStore.open(store_dir) as store:
        record = new_record(
            queue_id=queue_id, symbol="BTCUSDT", type_="api_candles_1m", targets=["p"],
            parameters={}, data_topic=queue_id + "-data", outputs={}, launcher="local", jobs=[],
        )  # fmt: skip
        store.save_queue_state(record)
        # A record saved before the contract bounded times (the value stays in queue state).
        store.save_queue_state({**record, "queue_id": queue_id + "-old", "status": "finished",
                                "updated_at": 1e20, "created_at": 1e20})  # fmt: skip
    with Queue(queue_id, settings) as queue:
        events = list(queue.events())
        assert [e.status for e in events] == ["started", "loading"]
        lines = [event_line(e) for e in events]
        assert "\x1b" not in lines[1] and "\n" not in lines[1] and "\\x1b[2Jb\\nc" in lines[1]
        status = queue.status()
        assert status.loc["p", "status"] == "loading"
        assert "x" not in status.index
        panel = QueuePanel(queue, refresh_s=0.05)
        try:
            for event in events:
                panel._on_event(event)
            panel.refresh()
            assert "\\x1b[2Jb" in panel.log.value
        finally:
            panel.close()
    listed = Queue.list(str(store_dir), settings=settings)
    assert listed.loc[queue_id, "status"] == "running"
    assert listed.loc[queue_id + "-old", "updated_at"] is pd.NaT or pd.isna(
        listed.loc[queue_id + "-old", "updated_at"]
    )
    del since


def test_a_viewer_stop_is_refused_naming_the_acl(viewer_settings: Settings) -> None:
    with (
        Queue(unique_name("wf-viewer"), viewer_settings) as queue,
        pytest.raises(NotAuthorized, match="user-streamforge-viewer may not write queue-control"),
    ):
        queue.stop(timeout=5)


def test_a_ping_to_a_missing_topic_is_refused(settings: Settings) -> None:
    from streamforge_nb.exceptions import BrokerError
    from streamforge_nb.kafka.send import send_command
    from streamforge_nb.platform.contract import StopCommand

    missing = settings.model_copy(update={"queue_control_topic": unique_name("no-such-topic")})
    # Refused, not left to block (how long it takes: bench/deadlines.py).
    with pytest.raises(BrokerError, match="no-such-topic"):
        send_command(missing, StopCommand(queue_id="q"))


def test_a_too_large_command_is_refused(settings: Settings) -> None:
    from streamforge_nb.exceptions import BrokerError
    from streamforge_nb.kafka.send import send_command
    from streamforge_nb.platform.contract import StopCommand

    with pytest.raises(BrokerError, match="too large"):
        send_command(settings, StopCommand(queue_id="q", padding="x" * 3_000_000))


def test_malformed_telemetry_is_counted_and_summarised_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from streamforge_nb.control.telemetry import MalformedCounter

    counter = MalformedCounter(every_s=60)
    with caplog.at_level("WARNING"):
        for i in range(1000):
            counter.note(f"bad event {i}\x1b[31m")
    assert counter.total == 1000
    lines = [r for r in caplog.records if "malformed telemetry" in r.getMessage()]
    assert len(lines) == 1
    assert "\x1b" not in lines[0].getMessage()


# -- issue 13: one status from telemetry and the launcher ------------------------------------
def test_merge_jobs_fails_a_producer_whose_job_ended_first() -> None:
    from streamforge_nb.control.telemetry import merge_jobs, queue_status
    from streamforge_nb.workflow.launchers import JobStatus

    def job(state: str, detail: str = "", ended: float | None = T0) -> JobStatus:
        return JobStatus("job-x", "q", "loader-candles", state, detail, "loader-candles__a", ended)

    assert merge_jobs({}, [job("active", ended=None)], now=T0)["loader-candles__a"].status == (
        "active"
    )
    # Ended a moment ago: its last events may still be on their way.
    assert merge_jobs({}, [job("failed", "exit code 1")], now=T0 + 1) == {}
    merged = merge_jobs({}, [job("failed", "exit code 1")], now=T0 + 10)
    assert merged["loader-candles__a"].status == "failed"
    assert merged["loader-candles__a"].message == (
        "exit code 1 before any telemetry (no terminal event came from its worker)"
    )
    assert queue_status(merged, ["loader-candles"]) == "failed"
    loading = fold({}, Loading(queue_id="q", producer="loader-candles__a", timestamp=T0))
    killed = merge_jobs(loading, [job("failed", "killed by SIGKILL")], now=T0 + 10)
    assert killed["loader-candles__a"].message.startswith("killed by SIGKILL after loading")
    # A terminal event wins over the launcher.
    done = fold(loading, Finished(queue_id="q", producer="loader-candles__a", timestamp=T0))
    assert merge_jobs(done, [job("failed", "exit code 1")], now=T0 + 10) == done


def test_the_first_error_of_a_producer_is_kept() -> None:
    from streamforge_nb.platform.contract import Error

    states = fold({}, Error(queue_id="q", producer="p", message="the loader's reason"))
    states = fold(states, Error(queue_id="q", producer="p", message="cell 3 failed", cell=3))
    assert (states["p"].status, states["p"].message) == ("error", "the loader's reason")


def test_a_job_failure_the_worker_could_not_see_is_told() -> None:
    from streamforge_nb.control.telemetry import merge_jobs
    from streamforge_nb.platform.contract import Error, Interrupted
    from streamforge_nb.workflow.launchers import JobStatus

    deadline = JobStatus(
        "job-x", "q", "dummy", "failed", "DeadlineExceeded: Job was active longer than "
        "specified deadline", "dummy__a", T0,
    )  # fmt: skip
    stopped = fold({}, Interrupted(queue_id="q", producer="dummy__a", message="stop requested"))
    merged = merge_jobs(stopped, [deadline], now=T0 + 10)["dummy__a"]
    assert merged.status == "failed"
    assert merged.message == (
        "DeadlineExceeded: Job was active longer than specified deadline "
        "(the worker said: stop requested)"
    )
    oom = JobStatus("job-x", "q", "dummy", "failed", "OOMKilled (exit code 1)", "dummy__a", T0)
    died = fold({}, Error(queue_id="q", producer="dummy__a", message="DeadKernelError: died"))
    merged = merge_jobs(died, [oom], now=T0 + 10)["dummy__a"]
    assert (merged.status, merged.message) == (
        "error", "DeadKernelError: died [Job: OOMKilled (exit code 1)]"
    )  # fmt: skip
    # An exit code the runner has already reported adds nothing.
    plain = JobStatus("job-x", "q", "dummy", "failed", "exit code 1", "dummy__a", T0)
    assert merge_jobs(died, [plain], now=T0 + 10) == died


def test_queue_accepts_and_refuses_ids_as_the_cli_does(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused id fails before anything reaches queue-control; hand-made ids the CLI
    accepts (a dummy service's) stay usable."""
    from streamforge_nb.cli import main
    from streamforge_nb.testing import read_topic
    from streamforge_nb.workers import QUEUE_ID

    sent = len(read_topic(settings, settings.queue_control_topic))
    refused: list[object] = ["очередь", "", " wf-a", "wf a", "-wf-a", "wf-a.", "wf-a\n", "q" * 64]
    for bad in [*refused, "wf/a", None, 7]:
        if isinstance(bad, str):  # the CLI refuses it as a usage error, naming the rule
            assert main(["ping", "--queue-id", bad, "--timeout", "1"]) == 2
            assert f"invalid queue id {bad!r}: 1..63 characters" in capsys.readouterr().err
        with pytest.raises(InvalidName, match=re.escape(f"invalid queue id {bad!r}: 1..63")):
            Queue(bad, settings).ping(timeout=1)  # type: ignore[arg-type]
    assert len(read_topic(settings, settings.queue_control_topic)) == sent
    for hand_made in ("a", "wf-dummy-3f2a9c", "My.Queue_1", "q" * 63):
        assert QUEUE_ID.convert(hand_made, None, None) == hand_made  # `--queue-id` takes it
        with Queue(hand_made, settings) as queue:
            assert queue.queue_id == hand_made


def test_a_history_read_that_stops_moving_is_renewed_then_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kafka import TopicPartition

    from streamforge_nb.control import follower
    from streamforge_nb.exceptions import BrokerUnavailable

    monkeypatch.setattr(follower, "HISTORY_STALL_S", 0.0)
    tp = TopicPartition("queue-events", 2)
    stall = follower._Stall(follower._ReadPlan([tp], {tp: 0}, {tp: 10}))
    assert not stall.stalled({tp: 3})  # moved: no stall
    renewed = [stall.stalled({tp: 3}) for _ in range(follower.HISTORY_RENEWALS)]
    assert renewed == [True] * follower.HISTORY_RENEWALS
    with pytest.raises(BrokerUnavailable, match="partition 2: 3 of 10"):
        stall.stalled({tp: 3})


def test_a_ping_with_a_wrong_password_names_the_refused_login(platform_settings: Settings) -> None:
    # The ping path is librdkafka, which retries a refused login in the background: a first
    # version of it said "no usable broker" after 10 s, where kafka-python's clients said why.
    from pydantic import SecretStr

    from streamforge_nb.exceptions import AuthenticationFailed

    wrong = "not-the-password-" + unique_name("pw")
    bad = platform_settings.model_copy(update={"kafka_password": SecretStr(wrong)})
    with (
        Queue(unique_name("wf-login"), bad) as queue,
        pytest.raises(AuthenticationFailed, match="refused user 'user-streamforge'") as raised,
    ):
        queue.ping(timeout=1)
    assert wrong not in str(raised.value)
