"""Workflow: plan without side effects, validation first, local launch end to end."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import InvalidName
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import topic_exists
from streamforge_nb.testing.exchange import ExchangeServer
from streamforge_nb.workflow.plan import Workflow


@pytest.fixture(scope="module")
def exchange() -> Iterator[ExchangeServer]:
    with ExchangeServer() as server:
        yield server


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMFORGE_HOME", str(tmp_path))
    return tmp_path


def test_plan_has_every_name_in_the_platform_shape(settings: Settings) -> None:
    wf = Workflow.candles(
        "BTCUSDT", "1m", "2024-08-01:2024-08-02", settings=settings, short_id="abc123"
    )
    names = wf.plan().names()
    assert names == {
        "queue_id": "wf-btcusdt-api_candles_1m-20240801-abc123",
        "data_topic": "wf-btcusdt-api_candles_1m-20240801-abc123-data",
        "collection": "btcusdt_api_candles_1m_2024_08_01",
        "producer_ids": {
            "loader-candles": "loader-candles__abc123",
            "arango-candles": "arango-candles__abc123",
        },
        "job_names": {
            "loader-candles": "job-loader-candles-btcusdt-abc123",
            "arango-candles": "job-arango-candles-btcusdt-abc123",
        },
    }
    job = wf.plan().steps[1].job
    assert job["metadata"]["namespace"] == "stf"
    assert job["metadata"]["labels"]["queue_id"] == names["queue_id"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["nodeSelector"] == {"streamforge-worker": "true"}
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["ttlSecondsAfterFinished"] == 3600
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["TELEMETRY_PRODUCER_ID"] == "arango-candles__abc123"
    assert env["COLLECTION_NAME"] == "btcusdt_api_candles_1m_2024_08_01"
    assert "abc123" in wf._repr_html_()


def test_plan_touches_nothing(settings: Settings, home: Path) -> None:
    wf = Workflow.candles("ETHUSDT", "5m", "2024-08-01:2024-08-02", settings=settings)
    plan = wf.plan()
    assert not topic_exists(settings, plan.data_topic)
    assert not (home / "runs").exists() and not (home / "jobs").exists()
    with Queue(plan.queue_id, settings) as queue:
        assert list(queue.events()) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"symbol": "btc-usdt"}, "btc-usdt"),
        ({"interval": "7m"}, "7m"),
        ({"time_range": "2024-08-02:2024-08-01"}, "2024-08-02"),
        ({"targets": ["loader-candles", "mystery"]}, "mystery"),
        ({"image": "Registry/UPPER:tag"}, "image"),
        ({"namespace": "Not_A_Namespace"}, "Not_A_Namespace"),
    ],
)
def test_validation_comes_before_any_side_effect(
    settings: Settings, home: Path, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {
        "symbol": "BTCUSDT",
        "interval": "1m",
        "time_range": "2024-08-01:2024-08-02",
        "targets": ["loader-candles", "arango-candles"],
        **kwargs,
    }
    with pytest.raises(InvalidName, match=re.escape(match)):
        Workflow(settings=settings, **args)  # type: ignore[arg-type]
    assert list(home.iterdir()) == []


def test_local_launch_runs_the_notebooks_to_finished(
    settings: Settings, home: Path, exchange: ExchangeServer
) -> None:
    store_url = f"local://{home / 'store'}"
    wf = Workflow.candles(
        "BTCUSDT",
        "15m",
        "2024-08-01:2024-08-03",
        base_url=exchange.base_url,
        store=store_url,
        settings=settings,
    )
    plan = wf.plan()
    with wf.launch("local", settings=settings) as queue:
        final = queue.wait(
            timeout=180, targets=["loader-candles", "arango-candles"], progress=False
        )
        jobs = queue.jobs()
    assert set(final["status"]) == {"finished"}
    with CandleStore.open(store_url) as store:
        stored = len(store.load("BTCUSDT", "15m", "2024-08-01", "2024-08-03"))
    assert stored == 192
    assert final.loc[plan.steps[1].producer_id, "records_written"] == stored
    assert set(jobs["state"]) == {"succeeded"}

    # The executed notebooks are the run's record, with their outputs.
    for step in plan.steps:
        notebook = nbformat.read(step.output, as_version=4)
        texts = [o.get("text", "") for c in notebook.cells for o in c.get("outputs", [])]
        assert any("ended normally" in t for t in texts), step.target

    listed = Queue.list(store_url, settings=settings)
    row = listed.loc[plan.queue_id]
    assert row["status"] == "finished" and row["records_written"] == 192
    assert row["outputs"] == {s.target: s.output for s in plan.steps}
    assert row["data_topic"] == plan.data_topic


def test_backfill_loads_exactly_the_gaps(
    settings: Settings, home: Path, exchange: ExchangeServer
) -> None:
    store_url = f"local://{home / 'store'}"
    wf = Workflow.candles(
        "ETHUSDT",
        "1h",
        "2024-08-01:2024-08-03",
        base_url=exchange.base_url,
        store=store_url,
        settings=settings,
    )
    with CandleStore.open(store_url) as store:
        # Store the first and last 12 hours by hand: the gap is the middle day.
        from streamforge_nb.exchange.binance import KlinesClient

        rows = KlinesClient(exchange.base_url).klines("ETHUSDT", "1h", 1722470400000, 1722643200000)
        from streamforge_nb.platform.contract import Candle

        candles = [Candle.from_kline("ETHUSDT", "1h", r) for r in rows]
        store.write(candles[:12] + candles[36:])
        queues = wf.backfill(store, settings=settings)
        assert len(queues) == 1
        with queues[0] as queue:
            queue.wait(timeout=180, targets=["loader-candles", "arango-candles"], progress=False)
        assert store.gaps("ETHUSDT", "1h", "2024-08-01", "2024-08-03").empty
        assert len(store.load("ETHUSDT", "1h", "2024-08-01", "2024-08-03")) == 48
