"""Batches: the plan without side effects, input refused first, a bounded parallel launch that
stores exactly the exchange's candles, reopening in a new object, parallel sinks."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import InvalidName, QueueExists
from streamforge_nb.kafka.clients import make_consumer
from streamforge_nb.platform.names import parse_time_range
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import read_topic, topic_exists, unique_name
from streamforge_nb.testing.exchange import ExchangeServer
from streamforge_nb.ui.batch_panel import BatchPanel
from streamforge_nb.workflow.batch import Batch
from streamforge_nb.workflow.launchers import Launcher
from streamforge_nb.workflow.plan import Workflow
from streamforge_nb.workflow.processes import LocalLauncher
from streamforge_nb.workflow.shards import SHARD_CANDLES, candle_count, shard_ranges

NOW = datetime(2026, 12, 2, 3, 17, 30, tzinfo=UTC)
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMFORGE_HOME", str(tmp_path))
    return tmp_path


def test_plan_shows_the_whole_batch_and_touches_nothing(settings: Settings, home: Path) -> None:
    batch = Workflow.candles(
        SYMBOLS, ["1m", "1h"], "2024-06-01:now", settings=settings, now=NOW,
        store=f"local://{home / 'store'}",
    )  # fmt: skip
    assert isinstance(batch, Batch)
    plan = batch.plan()
    frame = plan.frame()
    # A year of 1m fits one shard: 2024 from June, 2025, 2026 until now; all of 1h in one.
    assert frame.groupby("interval").size().to_dict() == {"1h": 3, "1m": 9}
    minutes = int((datetime(2026, 12, 2, 3, 17, tzinfo=UTC) - datetime(2024, 6, 1, tzinfo=UTC))
                  .total_seconds()) // 60  # fmt: skip
    for (_symbol, interval), rows in frame.groupby(["symbol", "interval"]):
        spans = [parse_time_range(r) for r in rows["time_range"]]
        assert spans[0].start == datetime(2024, 6, 1, tzinfo=UTC)
        assert all(a.end == b.start for a, b in itertools.pairwise(spans))
        assert all((s.start.month, s.start.day, s.start.hour) == (1, 1, 0) for s in spans[1:])
        assert rows["candles"].sum() == (minutes if interval == "1m" else minutes // 60)
        assert rows["candles"].max() <= settings.max_candles_per_queue
    assert plan.candles == 3 * (minutes + minutes // 60)
    assert plan.requests == sum(-(-c // 1000) for c in frame["candles"])
    assert plan.weight == 2 * plan.requests
    assert plan.seconds_at_limit == pytest.approx(plan.weight / 6000 * 60)
    assert plan.summary()["jobs"] == 24 and batch.batch_id in batch._repr_html_()
    # No side effects: no topic, no queue state, no Jobs, no notebooks.
    assert not topic_exists(settings, f"{plan.shards[0].queue_id}-data")
    assert list(home.iterdir()) == []


def test_a_batchs_status_reads_and_refreshes_only_its_own_queues(
    settings: Settings, home: Path
) -> None:
    """Months of queue state must not make a batch's view slower: other queues' unfinished
    records are neither read from telemetry nor saved by `Batch.status()`."""
    from streamforge_nb.control.state import new_record
    from streamforge_nb.kafka.send import send_event
    from streamforge_nb.platform.contract import Finished

    store_url = f"local://{home / 'store'}"
    other = unique_name("wf-other")
    record = new_record(
        queue_id=other, symbol="BTCUSDT", type_="api_candles_1h", targets=["dummy"],
        parameters={}, data_topic=f"{other}-data", outputs={}, launcher="", jobs=[],
    )  # fmt: skip
    with CandleStore.open(store_url) as store:
        store.save_queue_state(record)
    send_event(settings, Finished(queue_id=other, producer="dummy__abc123"))
    batch = Workflow.candles(SYMBOLS, "1h", "2024-08-01:2024-08-03", settings=settings,
                             now=NOW, store=store_url)  # fmt: skip
    assert set(batch.status()["status"]) == {"waiting"}
    with CandleStore.open(store_url) as store:
        assert store.queue_state(other)["status"] == "launched"  # untouched
    # The full list does refresh it: the telemetry says finished.
    assert Queue.list(store_url, settings=settings).loc[other, "status"] == "finished"


def test_shards_hold_at_most_the_limit_on_calendar_boundaries() -> None:
    def day(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    span = parse_time_range("2024-01-15:2024-03-10")
    assert shard_ranges(span, "1m", SHARD_CANDLES) == [(span.start, span.end)]  # a year fits
    # 50,000 1m candles: a month (at most 44,640) per shard, cut to the range at both ends.
    assert shard_ranges(span, "1m", 50_000) == [
        (day("2024-01-15"), day("2024-02-01")), (day("2024-02-01"), day("2024-03-01")),
        (day("2024-03-01"), day("2024-03-10")),
    ]  # fmt: skip
    # 200,000 1s candles: two days (172,800) per shard, from the range's first day.
    seconds = shard_ranges(span, "1s", 200_000)
    assert seconds[0] == (day("2024-01-15"), day("2024-01-17")) and seconds[-1][1] == span.end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(seconds))
    assert all(candle_count("1s", a, b) <= 200_000 for a, b in seconds)
    # Not even an hour fits: fixed counts of candles.
    hour = parse_time_range("2024-01-01T00:00:00Z/2024-01-01T01:00:00Z")
    assert [candle_count("1s", a, b) for a, b in shard_ranges(hour, "1s", 1000)] == [
        1000, 1000, 1000, 600,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("symbols", "intervals", "options", "match"),
    [
        (SYMBOLS, ["1h", "7m"], {}, "7m"),
        ([], ["1h"], {}, "no symbols given"),
        (SYMBOLS, [], {}, "no intervals given"),
        (["BTCUSDT", "ETHUSDT", "BTCUSDT"], ["1h"], {}, "symbols named more than once: BTCUSDT"),
        (SYMBOLS, ["1h", "4h", "1h"], {}, "intervals named more than once: 1h"),
        (["BTCUSDT", "btc-usdt"], ["1h"], {}, "btc-usdt"),
        (SYMBOLS, ["1h"], {"sinks": 0}, "sinks must be a whole number >= 1"),
        (SYMBOLS, ["1h"], {"time_range": "2030-01-01:now"}, "2030-01-01"),
        (SYMBOLS, ["1h"], {"mystery": 1}, "unknown batch option(s): mystery"),
    ],
)
def test_bad_input_is_refused_before_any_side_effect(
    settings: Settings, home: Path, symbols: list[str], intervals: list[str],
    options: dict[str, object], match: str,
) -> None:  # fmt: skip
    options = dict(options)
    time_range = str(options.pop("time_range", "2024-08-01:2024-08-03"))
    with pytest.raises(InvalidName, match=re.escape(match)):
        Workflow.candles(
            symbols, intervals, time_range, settings=settings, now=NOW,
            store=f"local://{home / 'store'}", **options,
        )  # fmt: skip
    batch = Batch.candles(SYMBOLS, "1h", "2024-08-01:2024-08-03", settings=settings, now=NOW,
                          store=f"local://{home / 'store'}")  # fmt: skip
    with pytest.raises(InvalidName, match="max_parallel must be a whole number >= 1, not 0"):
        batch.launch("local", max_parallel=0)
    assert list(home.iterdir()) == []


@pytest.mark.parametrize(
    ("symbols", "intervals", "options", "message"),
    [
        (None, "1h", {}, "symbols must be a string or a list of strings, not NoneType None"),
        (5, "1h", {}, "symbols must be a string or a list of strings, not int 5"),
        (SYMBOLS, [None], {}, "intervals must be a string or a list of strings, not list [None]"),
        (SYMBOLS, "1h", {"max_candles": "x"}, "max_candles must be a whole number >= 1"),
        (SYMBOLS, "1h", {"now": "2026-12-02"}, "now must be a datetime, not str '2026-12-02'"),
        (SYMBOLS, "1h", {"settings": 5}, "settings must be a Settings, not int 5"),
    ],
)
def test_bad_argument_types_are_named_before_anything(
    home: Path, symbols: object, intervals: object, options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidName, match=re.escape(message)):
        Batch.candles(
            symbols, intervals, "2024-08-01:2024-08-03",  # type: ignore[arg-type]
            store=f"local://{home / 'store'}", **options,  # type: ignore[arg-type]
        )  # fmt: skip
    assert list(home.iterdir()) == []


class _LoaderWatch:
    """Count the loader Jobs running at once, as the launcher's records show them."""

    def __init__(self, launcher: Launcher, queue_ids: list[str]) -> None:
        self.launcher, self.queue_ids = launcher, queue_ids
        self.most = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.1):
            running = sum(
                1
                for qid in self.queue_ids
                for job in self.launcher.list(qid)
                if job.target == "loader-candles" and job.state == "active"
            )
            self.most = max(self.most, running)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)


def _wait_until(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_batch_runs_at_most_max_parallel_loaders_and_stores_the_exchange_candles(
    settings: Settings, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_url = f"local://{home / 'store'}"
    symbols = ["BTCUSDT", "SOLUSDT"]  # of the three the exchange serves
    # Maintenance on 2024-08-02, 06:00-10:00: no 1h candle opens then, nor the 4h one of 08:00.
    down = (1722578400000, 1722592800000)
    with ExchangeServer(symbols=SYMBOLS, downtime=[down]) as server:
        batch = Workflow.candles(
            symbols, ["1h", "4h"], "2024-08-01:2024-08-03", base_url=server.base_url,
            store=store_url, settings=settings, shard_candles=24,
        )  # fmt: skip
        plan = batch.plan()
        # 1h: a day (24 candles) per shard; 4h: both days (12 candles) in one.
        assert len(plan.shards) == 6
        ids = [s.queue_id for s in plan.shards]
        runner = LocalLauncher(settings=settings)
        watch = _LoaderWatch(LocalLauncher(settings=settings), ids)
        try:
            batch.launch(runner, max_parallel=2)
            # Pause after the first launches; a new Batch object resumes the rest.
            _wait_until(lambda: len(batch.launched()) >= 2, 120)
            batch.pause()
            first = batch.launched()
            assert not batch.launching and 2 <= len(first) < len(ids)
            reopened = Batch(batch.batch_id, store_url, settings=settings)
            assert reopened.plan() == plan
            reopened.launch(runner, max_parallel=2)
            final = reopened.wait(timeout=900, progress=False)
        finally:
            watch.stop()
        assert set(final["status"]) == {"finished"}, final.to_dict("index")
        assert 1 <= watch.most <= 2
        # Every queue launched once: one loader Job each.
        for qid in ids:
            assert [j.target for j in runner.list(qid)].count("loader-candles") == 1
        with CandleStore.open(store_url) as store:
            for symbol in symbols:
                for interval in ("1h", "4h"):
                    stored = store.load(symbol, interval, "2024-08-01", "2024-08-03")
                    expected = server.expected_rows(symbol, interval, 1722470400000, 1722643200000)
                    assert len(stored) == len(expected) > 0, (symbol, interval)
    assert final["candles"].sum() == 2 * (48 + 12)  # planned: the exchange's grid
    assert final["records_written"].sum() == 2 * (44 + 11)  # what the exchange has

    # The downtime is known as such: no gap to backfill, nothing asked again.
    with CandleStore.open(store_url) as store:
        for symbol in symbols:
            for interval in ("1h", "4h"):
                gaps = store.gaps(symbol, interval, "2024-08-01", "2024-08-03")
                assert list(gaps["kind"]) == ["exchange_empty"], (symbol, interval, gaps)
                again = Workflow.candles(
                    symbol, interval, "2024-08-01:2024-08-03", base_url="http://127.0.0.1:9",
                    store=store_url, settings=settings,
                )  # fmt: skip
                assert again.backfill(store) == []

    # A new object (as in a new kernel) reports the same; the batch is no queue.
    again = Batch.open(batch.batch_id, store_url, settings=settings)
    assert again.status()[["status", "records_written"]].equals(
        final[["status", "records_written"]]
    )
    listed = Queue.list(store_url, settings=settings)
    assert batch.batch_id not in listed.index and set(ids) <= set(listed.index)
    assert again.stop() == {}  # nothing is running any more

    # The batch view: every queue's row; from it, a queue's own panel and its chart.
    panel = BatchPanel(again, refresh_s=60)
    try:
        panel.refresh()
        assert all(qid in panel.table.value for qid in ids)
        assert "110 of 120 candles; 6 finished" in panel.summary.value
        queue_widget = panel.show_queue(ids[0])
        assert panel.detail.children == (queue_widget,)
        panel.picker.value = ids[0]
        panel.chart_button.click()
        assert panel.wait(60)
        (bundle,) = panel.chart.outputs
        assert "application/vnd.plotly.v1+json" in bundle["data"], panel.message.value
    finally:
        panel.close()
        again.close()

    # The dashboard page shows the same panel for a batch id.
    import papermill

    from streamforge_nb.workflow.targets import notebook_path

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    executed = papermill.execute_notebook(
        str(notebook_path("batch_panel.ipynb")), str(home / "page.ipynb"), kernel_name="python3",
        parameters={"batch_id": batch.batch_id, "store": store_url}, progress_bar=False,
        execution_timeout=120,
    )  # fmt: skip
    shown = [o for c in executed.cells for o in c.get("outputs", [])]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in shown)


@pytest.fixture(scope="module")
def exchange() -> Iterator[ExchangeServer]:
    with ExchangeServer() as server:
        yield server


def test_two_sinks_share_four_partitions_and_store_every_candle_once(
    settings: Settings, home: Path, exchange: ExchangeServer
) -> None:
    store_url = f"local://{home / 'store'}"
    wf = Workflow.candles(
        "BTCUSDT", "1m", "2024-08-01:2024-08-02", base_url=exchange.base_url, store=store_url,
        settings=settings, sinks=2, partitions=4,
    )  # fmt: skip
    plan = wf.plan()
    sinks = [s.producer_id for s in plan.steps if s.target == "arango-candles"]
    assert len(set(sinks)) == 2 and len({s.job_name for s in plan.steps}) == 3
    with wf.launch("local", settings=settings) as queue:
        final = queue.wait(timeout=200, targets=["loader-candles", "arango-candles"],
                           progress=False)  # fmt: skip
        jobs = queue.jobs()
    assert set(final["status"]) == {"finished"}, final.to_dict("index")
    assert set(jobs["state"]) == {"succeeded"} and len(jobs) == 3
    consumer = make_consumer(settings)
    try:
        assert consumer.partitions_for_topic(plan.data_topic) == {0, 1, 2, 3}
    finally:
        consumer.close()
    messages = read_topic(settings, plan.data_topic)
    assert len(messages) == 1440 and {m.partition for m in messages} == {0, 1, 2, 3}
    # Every sink reported; between them they stored all (a rebalance may replay a batch).
    assert final.loc[sinks, "records_written"].sum() >= 1440
    with CandleStore.open(store_url) as store:
        stored = store.load("BTCUSDT", "1m", "2024-08-01", "2024-08-02")
    expected = exchange.expected_rows("BTCUSDT", "1m", 1722470400000, 1722556800000)
    assert len(stored) == len(expected) == 1440


def test_cancel_ends_every_running_queue_and_launches_no_more(
    settings: Settings, home: Path
) -> None:
    store_url = f"local://{home / 'store'}"
    # A slow exchange (2 s per answer, 1m pages): the loaders are still loading when cancelled.
    with ExchangeServer(symbols=SYMBOLS, latency=2.0) as server:
        batch = Workflow.candles(
            SYMBOLS, ["1m"], "2024-08-01:2024-08-05", base_url=server.base_url,
            store=store_url, settings=settings,
        )  # fmt: skip
        ids = [s.queue_id for s in batch.plan().shards]
        assert len(ids) == 3
        runner = LocalLauncher(settings=settings)
        batch.launch(runner, max_parallel=2)
        _wait_until(lambda: len(batch.launched()) == 2, 120)
        first = set(batch.launched())
        _wait_until(lambda: set(batch.status().loc[sorted(first), "status"]) == {"running"}, 120)
        results = batch.cancel(grace=10)
        final = batch.status()
    assert set(results) == first, results
    for queue_id in first:
        # Each producer either answered the stop or had its Job deleted; none is left running.
        assert "loader-candles" in results[queue_id], results
        assert set(final.loc[queue_id, ["status"]]) <= {"interrupted", "finished"}, final
        assert [j.state for j in runner.list(queue_id)] == []
    (never,) = set(ids) - first
    assert final.loc[never, "status"] == "waiting"
    assert not batch.launching and batch.launched() == first
    batch.close()


def test_a_batch_id_is_launched_once(settings: Settings, home: Path) -> None:
    """Two new Batch objects of one batch id (one short id, one day): the second launch is
    refused, naming the first, before it records or starts anything."""
    store_url = f"local://{home / 'store'}"
    first, second = (
        Batch.candles(["BTCUSDT"], "1h", "2024-08-01:2024-08-03", settings=settings, now=NOW,
                      store=store_url, short_id="once01", base_url="http://127.0.0.1:9")
        for _ in range(2)
    )  # fmt: skip
    assert first.batch_id == second.batch_id
    (queue_id,) = (s.queue_id for s in first.plan().shards)
    runner = LocalLauncher(home / "first", settings=settings)
    first.launch(runner, max_parallel=1)
    try:
        first.pause()
        with pytest.raises(
            QueueExists,
            match=rf"queue {first.batch_id} was launched already, at .* UTC by the local "
            rf"launcher \(home={home / 'first'}\), status .*: .*Batch\.open\(batch_id\)",
        ):
            second.launch(LocalLauncher(home / "second", settings=settings))
        assert not second.launching and second.launched() == set()
        assert not (home / "second").exists()
        with CandleStore.open(store_url) as store:
            assert store.queue_state(first.batch_id)["queues"][0]["queue_id"] == queue_id
    finally:
        runner.delete(queue_id, grace=5)
        first.close()


def test_a_jobs_runner_starts_papermill_without_building_the_iri_grammar() -> None:
    # Every Job's runner imports papermill; jsonschema's IRI checker (`rfc3987_syntax`) builds a
    # grammar on import, about a second of CPU per Job, ten Jobs at once in a 5-symbol batch.
    script = (
        "import sys\n"
        "from streamforge_nb.workflow import runner\n"
        "papermill = runner._import_papermill()\n"
        "assert callable(papermill.execute_notebook)\n"
        "print('rfc3987_syntax' in sys.modules and sys.modules['rfc3987_syntax'] is not None)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    assert done.stdout.strip() == "False"


def test_a_jobs_runner_starts_papermill_without_pyarrow_unless_the_notebook_goes_to_hdfs() -> None:
    # papermill's HDFS handler imports pyarrow, a third of papermill's import in every Job.
    script = (
        "import sys\n"
        "from streamforge_nb.workflow import runner\n"
        "papermill = runner._import_papermill()\n"
        "print('pyarrow' in sys.modules)\n"
        "import pyarrow.fs\n"  # still there for whatever needs it after
        "print(papermill.iorw.papermill_io.get_handler('x.ipynb').__class__.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    assert done.stdout.split() == ["False", "LocalHandler"]
    hdfs = script.replace("_import_papermill()", "_import_papermill(hdfs=True)")
    done = subprocess.run([sys.executable, "-c", hdfs], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    assert done.stdout.split() == ["True", "LocalHandler"]
