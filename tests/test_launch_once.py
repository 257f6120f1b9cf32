"""One launch per queue id: launches racing on one planned queue id, in two processes, against
the real broker and a store of their own; exactly one runs."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import subprocess_env

from streamforge_nb.exceptions import QueueExists
from streamforge_nb.platform.names import new_short_id
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import read_topic, topic_exists
from streamforge_nb.workflow.plan import Workflow
from streamforge_nb.workflow.processes import LocalLauncher

ROOT = Path(__file__).resolve().parent.parent

# One launcher process: plans the shared queue id, waits for "go", launches with its own
# local launcher (Job records under its own home), says whether it won.
RACER = r"""
import sys
from streamforge_nb.exceptions import QueueExists
from streamforge_nb.settings import Settings
from streamforge_nb.workflow.plan import Workflow
from streamforge_nb.workflow.processes import LocalLauncher

store, home, short = sys.argv[1:]
settings = Settings.from_env()
workflow = Workflow(
    "BTCUSDT", "1m", "2024-08-01:2024-08-02", ["dummy"], settings=settings, store=store,
    short_id=short, output_dir=home + "/runs",
    parameters={"dummy": {"metrics_port": 0, "exit_after": 1}},
)
runner = LocalLauncher(home, settings=settings)
print("ready", workflow.plan().queue_id, flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(2)
try:
    workflow.launch(runner).close()
    print("won", flush=True)
except QueueExists as exc:
    print("lost", exc, flush=True)
"""


def test_two_processes_launching_one_queue_id_start_it_once(
    settings: Settings, tmp_path: Path
) -> None:
    store = f"local://{tmp_path / 'store'}"
    short = new_short_id()
    homes = [tmp_path / "first", tmp_path / "second"]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, store, str(home), short],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(settings),
            cwd=ROOT,
        )
        for home in homes
    ]
    ready = [proc.stdout.readline().split() for proc in racers]  # type: ignore[union-attr]
    assert [r[0] for r in ready] == ["ready", "ready"] and ready[0][1] == ready[1][1]
    qid = ready[0][1]
    for proc in racers:  # both are planned and imported: they launch at once
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    answers = [proc.communicate(timeout=120)[0].strip() for proc in racers]
    assert [proc.returncode for proc in racers] == [0, 0], answers
    assert sorted(a.split()[0] for a in answers) == ["lost", "won"], answers
    won = 0 if answers[0] == "won" else 1
    winner, loser = homes[won], homes[1 - won]
    try:
        with CandleStore.open(store) as opened:
            record = opened.queue_state(qid)
        # The record is the winner's, and the loser's error names that first launch.
        assert record is not None and record["launcher_options"] == {"home": str(winner)}
        when = datetime.fromtimestamp(record["created_at"], UTC)
        assert answers[1 - won] == (
            f"lost queue {qid} was launched already, at {when:%Y-%m-%d %H:%M:%S} UTC by the "
            f"local launcher (home={winner}), status launched: a queue id is launched once; "
            "make a new Workflow (a new short id) to load its range again, or follow the "
            "running one with Queue(queue_id)"
        )
        # One start command, one Job; the loser started no process and made no topic.
        starts = [
            r for r in read_topic(settings, settings.queue_control_topic)
            if qid.encode() in (r.value or b"") and b'"start"' in (r.value or b"")
        ]  # fmt: skip
        assert len(starts) == 1
        assert [j.target for j in LocalLauncher(winner, settings=settings).list(qid)] == ["dummy"]
        assert LocalLauncher(loser, settings=settings).list(qid) == []
        assert not (loser / "jobs").exists() and not (loser / "runs").exists()
        assert not topic_exists(settings, f"{qid}-data")
    finally:
        LocalLauncher(winner, settings=settings).delete(qid, grace=5)


def test_a_workflow_launched_twice_is_refused_the_second_time(
    settings: Settings, tmp_path: Path
) -> None:
    store = f"local://{tmp_path / 'store'}"
    workflow = Workflow(
        "BTCUSDT", "1m", "2024-08-01:2024-08-02", ["dummy"], settings=settings, store=store,
        output_dir=str(tmp_path / "runs"),
        parameters={"dummy": {"metrics_port": 0, "exit_after": 1}},
    )  # fmt: skip
    qid = workflow.plan().queue_id
    runner = LocalLauncher(tmp_path / "home", settings=settings)
    try:
        workflow.launch(runner).close()
        with pytest.raises(QueueExists, match=f"queue {qid} was launched already") as refused:
            workflow.launch(runner)
        assert refused.value.queue_id == qid and refused.value.record["launcher"] == "local"
        assert [j.name for j in runner.list(qid)] == [workflow.plan().steps[0].job_name]
    finally:
        runner.delete(qid, grace=5)
