"""Notebook payloads under papermill, against the real broker: no mocks.

The kernel papermill starts inherits this process's environment, so the broker address goes
in through KAFKA_BOOTSTRAP_SERVERS exactly as a Job's Pod spec would give it.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from streamforge_nb import PongReply, Queue
from streamforge_nb.exceptions import QueueTimeout
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name
from streamforge_nb.workflow.targets import notebook_path

DUMMY_NOTEBOOK = notebook_path("dummy_service.ipynb")
# Kernel start plus imports is a few seconds on the 2-core CI machine; leave ample room.
KERNEL_UP_S = 60.0
CELL_TIMEOUT_S = 120


@pytest.fixture
def broker_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Point the kernels papermill starts at the test broker."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    return settings


def run_notebook(output: Path, **parameters: Any) -> Any:
    return papermill.execute_notebook(
        str(DUMMY_NOTEBOOK),
        str(output),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=CELL_TIMEOUT_S,
    )


def ping_until_answered(queue: Queue, run: Future[Any]) -> list[PongReply]:
    """Ping until the kernel's dummy answers; fail if papermill ends first or time runs out."""
    deadline = time.monotonic() + KERNEL_UP_S
    while time.monotonic() < deadline:
        if run.done():
            run.result()  # re-raises papermill's error, if any
            pytest.fail("papermill finished before the dummy answered a ping")
        try:
            return queue.ping(timeout=2.0)
        except QueueTimeout:
            continue
    pytest.fail(f"no pong from the notebook's dummy within {KERNEL_UP_S:g} s")


def stop_until_done(queue: Queue, run: Future[Any], timeout: float = 30.0) -> None:
    """Send `stop` until papermill's run ends (the dummy may not be listening yet)."""
    deadline = time.monotonic() + timeout
    while not run.done() and time.monotonic() < deadline:
        with contextlib.suppress(QueueTimeout):
            queue.stop(timeout=2.0)


def statuses(queue: Queue) -> list[str]:
    return [event.status for event in queue.events()]


@pytest.mark.parametrize(
    ("notebook", "worker"),
    [("dummy_service.ipynb", "dummy"), ("loader_candles.ipynb", "loader"),
     ("arango_candles.ipynb", "sink")],
)  # fmt: skip
def test_payload_parameters_are_the_worker_options(notebook: str, worker: str) -> None:
    """A payload's parameters cell lists its worker's options, with their defaults or None."""
    import ast

    from streamforge_nb import workers

    cells = nbformat.read(DUMMY_NOTEBOOK.parent / notebook, as_version=4).cells
    (parameters,) = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    values = {
        target.id: ast.literal_eval(node.value)
        for node in ast.parse(parameters.source).body
        if isinstance(node, ast.Assign) and isinstance(target := node.targets[0], ast.Name)
    }
    options = {o.name: o for o in workers.WORKERS[worker].options}
    assert list(values) == list(options)
    for name, value in values.items():
        default = options[name].default
        assert value is None or value == default or (value == [] and options[name].multiple), name
    code = [c.source for c in cells if c.cell_type == "code" and c is not parameters]
    body = f'from streamforge_nb.workers import run_notebook\n\nrun_notebook("{worker}", globals())'
    assert code == [body]  # thin: the worker's one entry does the rest


@pytest.mark.parametrize("notebook", sorted(p.name for p in DUMMY_NOTEBOOK.parent.glob("*.ipynb")))
def test_papermill_lists_every_parameter(notebook: str) -> None:
    """`papermill --help-notebook` shows every parameter: papermill skips a line with two `=`
    (one in its comment) and says only "Unable to parse line" at each run."""
    import ast

    path = DUMMY_NOTEBOOK.parent / notebook
    cells = nbformat.read(path, as_version=4).cells
    (parameters,) = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assigned = [
        target.id
        for node in ast.parse(parameters.source).body
        if isinstance(node, ast.Assign) and isinstance(target := node.targets[0], ast.Name)
    ]
    assert assigned
    assert list(papermill.inspect_notebook(str(path))) == assigned


def test_dummy_notebook_answers_a_ping_and_finishes(broker_env: Settings, tmp_path: Path) -> None:
    queue_id = unique_name("wf-test-nb")
    output = tmp_path / "dummy_out.ipynb"
    with ThreadPoolExecutor(1) as pool, Queue(queue_id, broker_env) as queue:
        run = pool.submit(
            run_notebook, output, queue_id=queue_id, exit_on_ping=True, metrics_port=0
        )
        replies: list[PongReply] = []
        try:
            replies = ping_until_answered(queue, run)
        finally:
            if not replies:  # no pong: end the kernel's dummy too, not just the test
                stop_until_done(queue, run)
        run.result(timeout=CELL_TIMEOUT_S)  # raises PapermillExecutionError on a failed cell

        assert len(replies) == 1
        assert replies[0].producer.startswith("dummy__")
        assert replies[0].round_trip_s < 5
        assert output.is_file()
        executed = nbformat.read(output, as_version=4)
        assert executed.metadata.papermill.exception is not True
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
        printed = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
        assert f"the dummy service for {queue_id} ended normally" in printed
        seen = statuses(queue)
    assert seen[0] == "started"
    assert seen[-1] == "finished"
    assert "pong" in seen


def test_dummy_notebook_failure_fails_the_run(broker_env: Settings, tmp_path: Path) -> None:
    queue_id = unique_name("wf-test-nb")
    output = tmp_path / "dummy_failed.ipynb"
    started = time.monotonic()
    with pytest.raises(PapermillExecutionError) as failed:
        run_notebook(output, queue_id=queue_id, fail_after=1, metrics_port=0)
    assert time.monotonic() - started < CELL_TIMEOUT_S
    assert failed.value.ename == "RuntimeError"
    assert "exit code 1" in failed.value.evalue

    # papermill writes the notebook, with the failing cell's traceback, before raising
    assert output.is_file()
    executed = nbformat.read(output, as_version=4)
    assert executed.metadata.papermill.exception is True

    with Queue(queue_id, broker_env) as queue:
        events = list(queue.events())
    assert [e.status for e in events] == ["started", "error"]
    error = events[-1]
    assert error.queue_id == queue_id
    assert "fail-after" in (error.message or "")


NOTEBOOKS = DUMMY_NOTEBOOK.parent


def execute(name: str, output: Path, **parameters: Any) -> Any:
    return papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(output),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=CELL_TIMEOUT_S,
    )


def outputs_of(path: Path) -> list[dict[str, Any]]:
    notebook = nbformat.read(str(path), as_version=4)
    return [out for cell in notebook.cells for out in cell.get("outputs", [])]


def test_loader_sink_and_analysis_notebooks(broker_env: Settings, tmp_path: Path) -> None:
    import datetime as dt

    from streamforge_nb.platform.names import new_short_id, queue_id
    from streamforge_nb.store.candles import CandleStore
    from streamforge_nb.testing.exchange import ExchangeServer

    qid = queue_id("BTCUSDT", "api_candles_5m", dt.date(2024, 8, 1), new_short_id())
    store_url = f"local://{tmp_path / 'store'}"
    with ExchangeServer() as exchange, ThreadPoolExecutor(1) as pool:
        sink = pool.submit(
            execute,
            "arango_candles.ipynb",
            tmp_path / "sink.ipynb",
            queue_id=qid,
            store_url=store_url,
        )
        execute(
            "loader_candles.ipynb",
            tmp_path / "loader.ipynb",
            queue_id=qid,
            symbol="BTCUSDT",
            interval="5m",
            time_range="2024-08-01:2024-08-03",
            base_url=exchange.base_url,
        )
        sink.result(timeout=180)
    with CandleStore.open(store_url) as store:
        assert len(store.load("BTCUSDT", "5m", "2024-08-01", "2024-08-03")) == 576
    for name in ("loader.ipynb", "sink.ipynb"):
        texts = [o.get("text", "") for o in outputs_of(tmp_path / name)]
        assert any("ended normally" in t for t in texts), name

    execute(
        "candle_analysis.ipynb",
        tmp_path / "analysis.ipynb",
        symbol="BTCUSDT",
        interval="5m",
        start="2024-08-01",
        end="2024-08-03",
        store_url=store_url,
        resample_rule="1h",
    )
    outputs = outputs_of(tmp_path / "analysis.ipynb")
    assert any("576 BTCUSDT 5m candles" in o.get("text", "") for o in outputs)
    assert any("0 gap(s)" in o.get("text", "") for o in outputs)
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
