"""Workflow: plan without side effects, validation first, local launch end to end."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
import pytest
from pydantic import SecretStr

from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import InvalidName, StreamForgeError
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
    assert set(final["status"]) == {"finished"}, final.to_dict("index")
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

    # In another kernel: where the notebooks are, opened; then the data topic goes.
    with Queue(plan.queue_id, settings, store=store_url) as again:
        saved = again.notebooks()
        assert saved.to_dict("index") == {
            s.target: {"location": s.output, "saved": True} for s in plan.steps
        }
        assert again.notebook("arango-candles").metadata["papermill"]["exception"] is not True
        assert topic_exists(settings, plan.data_topic)
        assert again.cleanup() == {
            plan.data_topic: "deleted", f"{plan.data_topic}-dlq": "deleted"
        }  # fmt: skip
    assert not topic_exists(settings, plan.data_topic)


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
        cleanup=True,  # each piece's sink deletes its data topic once stored
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
    topic = f"{queues[0].queue_id}-data"
    assert not topic_exists(settings, topic) and not topic_exists(settings, f"{topic}-dlq")


# -- issue 26: the README's plain wait(), a user's own target ---------------------------------
@pytest.mark.timeout(240)  # a wait() that never returns fails here, not at the suite's end
def test_the_readmes_plain_wait_returns_the_final_status(
    settings: Settings, home: Path, exchange: ExchangeServer
) -> None:
    store_url = f"local://{home / 'store'}"
    wf = Workflow.candles(
        "BTCUSDT", "1d", "2024-08-01:2024-08-04", base_url=exchange.base_url, store=store_url,
        settings=settings,
    )  # fmt: skip
    sink = wf.plan().steps[1].producer_id
    q = wf.launch()
    try:
        final = q.wait()  # as the README has it: a progress bar, no targets
    finally:
        q.close()
    assert set(final["status"]) == {"finished"} and len(final) == 2, final.to_dict("index")
    assert final.loc[sink, "records_written"] == 3
    with CandleStore.open(store_url) as store:
        assert len(store.load("BTCUSDT", "1d", "2024-08-01", "2024-08-04")) == 3


GREETER = """
from streamforge_nb.control.worker import Worker
from streamforge_nb.settings import Settings

with Worker(Settings.from_env(), queue_id=queue_id, producer_id=producer_id,
            target="greeter", symbol=symbol) as worker:
    worker.run(lambda w: w.loading(len(symbol), f"{greeting} {symbol}"))
print(f"{greeting} {symbol} from {producer_id}")
"""


@pytest.mark.timeout(240)
def test_a_registered_target_runs_its_own_notebook_locally(
    settings: Settings, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamforge_nb.workflow.targets import TARGETS, JobTarget, register_target

    folder = tmp_path / "my-notebooks"
    folder.mkdir()
    params = nbformat.v4.new_code_cell(
        "queue_id = None\nproducer_id = None\nsymbol = None\ngreeting = 'hi'"
    )
    params.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(GREETER)])
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, folder / "greeter.ipynb")
    monkeypatch.setenv("STREAMFORGE_NOTEBOOKS", str(folder))
    common = TARGETS["dummy"].env_parameters
    register_target(JobTarget("greeter", "greeter.ipynb", (*common, ("SYMBOL", "symbol"))))
    try:
        wf = Workflow(
            "ETHUSDT", "1h", "2024-08-01:2024-08-02", ["greeter"], settings=settings,
            store=f"local://{home / 'store'}", parameters={"greeter": {"greeting": "hello"}},
        )  # fmt: skip
        (step,) = wf.plan().steps
        assert (step.target, step.notebook) == ("greeter", "greeter.ipynb")
        assert step.producer_id.startswith("greeter__")
        with wf.launch("local", settings=settings) as queue:
            final = queue.wait(timeout=180, targets=["greeter"], progress=False)
            jobs = queue.jobs()
    finally:
        TARGETS.pop("greeter", None)
    row = final.loc[step.producer_id]
    assert row["status"] == "finished", row["message"]
    assert row["records_written"] == len("ETHUSDT")
    assert list(jobs["state"]) == ["succeeded"]
    executed = nbformat.read(step.output, as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert f"hello ETHUSDT from {step.producer_id}" in printed


# -- issue 11: ranges refused before any side effect; secrets stay out of plans ------------
NOW = datetime(2026, 12, 2, 3, 17, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("interval", "time_range", "match"),
    [
        ("1m", "2030-01-01:2030-01-02", "starts 2030-01-01 00:00:00 UTC, after the last closed"),
        ("1m", "2024-08-01:2030-01-02", "ends 2030-01-02 00:00:00 UTC, after the last closed 1m"),
        ("1m", "2026-12-01:2026-12-02T03:18:00", "after the last closed 1m candle (it ends "
         "2026-12-02 03:17:00 UTC): a range must end by then; '2026-12-01:now' loads until it"),
        ("1d", "2026-12-01:2026-12-02T00:00:01", "it ends 2026-12-02 00:00:00 UTC"),
        ("1m", "9999-01-01:9999-01-02", "after the last closed 1m candle"),
        ("1m", "1990-01-01:1990-01-02",
         "starts 1990-01-01, before the exchange's first candles (2017-07-14)"),
        ("1d", "2017-07-13:2017-07-15", "before the exchange's first candles (2017-07-14)"),
        ("1s", "2005-01-01:2025-01-01", "before the exchange's first candles"),
        ("1s", "2018-01-01:2019-01-01",
         "is 31,536,000 1s candles, more than the 10,000,000 one queue may load "
         "(STREAMFORGE_MAX_CANDLES_PER_QUEUE): split it into 4 or more ranges"),
    ],
)  # fmt: skip
def test_ranges_no_queue_should_load_are_refused_before_any_side_effect(
    settings: Settings, home: Path, interval: str, time_range: str, match: str
) -> None:
    with pytest.raises(InvalidName, match=re.escape(match)) as caught:
        Workflow.candles("BTCUSDT", interval, time_range, settings=settings, now=NOW)
    assert "\n" not in str(caught.value) and repr(time_range) in str(caught.value)
    assert list(home.iterdir()) == []


def test_the_candle_limit_per_queue_is_configurable(settings: Settings, home: Path) -> None:
    day = "2024-08-01:2024-08-02"  # 1,440 1m candles
    with pytest.raises(InvalidName, match=r"1,440 1m candles, more than the 1,000 .* into 2 or"):
        Workflow.candles("BTCUSDT", "1m", day, settings=settings, max_candles=1000)
    limited = settings.model_copy(update={"max_candles_per_queue": 100})
    with pytest.raises(InvalidName, match="more than the 100 one queue may load"):
        Workflow.candles("BTCUSDT", "1m", day, settings=limited)
    assert Workflow.candles("BTCUSDT", "1m", day, settings=settings, max_candles=1440).plan()
    assert list(home.iterdir()) == []


def test_until_now_ends_at_the_last_closed_candle(settings: Settings) -> None:
    def span(interval: str, text: str) -> str:
        wf = Workflow.candles("BTCUSDT", interval, text, settings=settings, now=NOW)
        return str(wf.plan().time_range)

    assert span("1m", "2024-08-01:now") == "2024-08-01T00:00:00Z/2026-12-02T03:17:00Z"
    assert span("5m", "2024-08-01T12:00:00/now") == "2024-08-01T12:00:00Z/2026-12-02T03:15:00Z"
    assert span("1d", "2026-11-01:now") == "2026-11-01:2026-12-02"
    assert span("1w", "2026-11-02:NOW") == "2026-11-02:2026-11-30"  # weeks open on Mondays
    assert span("1M", "2026-01-01:now") == "2026-01-01:2026-12-01"
    with pytest.raises(InvalidName, match="is empty"):
        span("1d", "2026-12-02:now")


def test_arango_credentials_stay_out_of_the_plan(settings: Settings) -> None:
    secret = "pw-Zq81xK"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ARANGO_URL": f"http://root:{secret}@arangodb.example:8529",
    }
    with_url = Settings.from_env(env)
    wf = Workflow.candles("BTCUSDT", "1m", "2024-08-01:2024-08-02", settings=with_url)
    plan = wf.plan()
    assert plan.parameters["store"] == "http://arangodb.example:8529"
    dumped = json.dumps(
        [plan.parameters, [s.start.model_dump() for s in plan.steps], [s.job for s in plan.steps]],
        default=str,
    )
    assert secret not in dumped and "root:" not in dumped
    sink = plan.steps[1].job["spec"]["template"]["spec"]["containers"][0]
    env_vars = {e["name"]: e["value"] for e in sink["env"]}
    assert json.loads(env_vars["STREAMFORGE_PARAMETERS"]) == {
        "store_url": "http://arangodb.example:8529"
    }
    assert {"secretRef": {"name": "streamforge-secrets"}} in sink["envFrom"]
    # A store URL given to the workflow is split the same way; its secret stays in settings.
    explicit = Workflow.candles(
        "BTCUSDT", "1m", "2024-08-01:2024-08-02", settings=settings,
        store=f"http://bob:{secret}@other.example:8529/_db/x",
    )  # fmt: skip
    assert explicit.plan().parameters["store"] == "http://other.example:8529/_db/x"
    assert secret not in json.dumps([s.job for s in explicit.plan().steps])
    assert explicit.settings.arango_user == "bob"
    assert explicit.settings.arango_password is not None
    assert explicit.settings.arango_password.get_secret_value() == secret


def test_a_launch_writes_and_sends_no_credentials(
    settings: Settings, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamforge_nb.testing import read_topic
    from streamforge_nb.workflow.launchers import get_launcher

    secret = "pw-Lk27wQ"
    with_url = settings.model_copy(
        update={"arango_url": "http://arangodb.example:8529", "arango_user": "root",
                "arango_password": SecretStr(secret)}
    )  # fmt: skip
    local_store = f"local://{home / 'store'}"
    real_open = CandleStore.open
    opened: list[object] = []

    def open_local(url: object = None, settings: object = None) -> CandleStore:
        opened.append(url)  # the queue state goes to the embedded store instead
        return real_open(local_store)

    monkeypatch.setattr(CandleStore, "open", open_local)
    wf = Workflow(
        "BTCUSDT", "1m", "2024-08-01:2024-08-02", ["dummy"], settings=with_url,
        parameters={"dummy": {"metrics_port": 0, "exit_after": 1}},
    )  # fmt: skip
    plan = wf.plan()
    runner = get_launcher("local", settings=with_url)
    # The local Job gets the Secret's values from the current settings, not from a plan.
    assert runner._from_config_and_secret()["ARANGO_PASSWORD"] == secret  # type: ignore[attr-defined]
    try:
        with wf.launch(runner):
            pass
    finally:
        runner.delete(plan.queue_id, grace=5)
    monkeypatch.undo()
    assert opened == ["http://arangodb.example:8529"]
    row = Queue.list(local_store, settings=settings).loc[plan.queue_id]
    assert row["parameters"]["store"] == "http://arangodb.example:8529"
    commands = [
        r.value for r in read_topic(settings, settings.queue_control_topic)
        if plan.queue_id.encode() in (r.value or b"")
    ]  # fmt: skip
    assert commands and all(secret.encode() not in c for c in commands)
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any("jobs" in p.parts for p in files)  # the Job's log (its record is deleted)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path


def test_jobs_are_fit_for_the_cluster(settings: Settings) -> None:
    wf = Workflow.candles(
        "BTCUSDT",
        "1m",
        "2024-08-01:2024-08-02",
        settings=settings.model_copy(
            update={"runs": "/data/project/runs", "runs_volume": "pvc:gf-projects:/data/project"}
        ),
        resources={"arango-candles": {"limits": {"memory": "2Gi"}}},
        timeouts={"loader-candles": 600},
    )
    loader, sink = (step.job for step in wf.plan().steps)
    for job in (loader, sink):
        pod = job["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["volumes"][-1] == {
            "name": "runs", "persistentVolumeClaim": {"claimName": "gf-projects"}
        }  # fmt: skip
        assert pod["containers"][0]["volumeMounts"][-1] == {
            "name": "runs", "mountPath": "/data/project"
        }  # fmt: skip
    env = {
        e["name"]: e["value"] for e in loader["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["STREAMFORGE_TIMEOUT"] == "600"
    assert env["STREAMFORGE_OUTPUT"].startswith("/data/project/runs/")
    assert loader["spec"]["activeDeadlineSeconds"] == 600 + 120
    assert sink["spec"]["activeDeadlineSeconds"] == 6 * 3600 + 120
    # Each Job fits the single-user 1G guarantee unless the workflow says otherwise.
    resources = [
        job["spec"]["template"]["spec"]["containers"][0]["resources"] for job in (loader, sink)
    ]
    assert resources[0] == {
        "requests": {"cpu": "100m", "memory": "384Mi"}, "limits": {"memory": "1Gi"}
    }  # fmt: skip
    assert resources[1]["limits"] == {"memory": "2Gi"}
    assert resources[1]["requests"] == {"cpu": "100m", "memory": "384Mi"}

    no_secret = settings.model_copy(update={"image_pull_secret": ""})
    job = Workflow.candles("BTCUSDT", "1m", "2024-08-01:2024-08-02", settings=no_secret)
    assert "imagePullSecrets" not in job.plan().steps[0].job["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeouts": {"dummy": 5}}, r"timeouts for \['dummy'\], which this workflow does not"),
        ({"timeouts": {"loader-candles": 0}}, "timeout of loader-candles must be whole seconds"),
        ({"resources": {"loader-candles": {"limit": {"memory": "1Gi"}}}}, "expected"),
        ({"settings_update": {"runs_volume": "nfs:server:/x"}}, "expected pvc:<claim>"),
        (
            {"settings_update": {"runs": "/elsewhere", "runs_volume": "hostPath:/data"}},
            "is not inside the runs volume",
        ),
    ],
)
def test_bad_job_options_are_named_before_anything(
    settings: Settings, home: Path, options: dict[str, Any], message: str
) -> None:
    update = options.pop("settings_update", {})
    with pytest.raises(StreamForgeError, match=message):
        Workflow.candles(
            "BTCUSDT",
            "1m",
            "2024-08-01:2024-08-02",
            settings=settings.model_copy(update=update),
            **options,
        )
    assert not (home / "runs").exists()


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        ((None, "1m"), {}, "symbol must be a string or a list of strings, not NoneType None"),
        ((1, "1m"), {}, "symbol must be a string or a list of strings, not int 1"),
        (("BTCUSDT", None), {}, "interval must be a string or a list of strings, not NoneType"),
        (("BTCUSDT", "1m"), {"image": None}, "image must be a string, not NoneType None"),
        (("BTCUSDT", "1m"), {"store": 5}, "store must be a store URL or path, not int 5"),
        (("BTCUSDT", "1m"), {"base_url": 5}, "base_url must be a string, not int 5"),
        (("BTCUSDT", "1m"), {"archives": 5}, "archives must be a list of strings, not int 5"),
        (("BTCUSDT", "1m"), {"output_dir": 5}, "output_dir must be a string, not int 5"),
        (("BTCUSDT", "1m"), {"max_candles": "x"}, "max_candles must be a whole number >= 1"),
        (("BTCUSDT", "1m"), {"max_candles": -1}, "max_candles must be a whole number >= 1"),
        (("BTCUSDT", "1m"), {"now": "2024-08-03"}, "now must be a datetime, not str"),
        (("BTCUSDT", "1m"), {"settings": {}}, "settings must be a Settings, not dict {}"),
        (("BTCUSDT", "1m"), {"parameters": 5}, "parameters must be a mapping of target names"),
        (("BTCUSDT", "1m"), {"resources": 5}, "resources must be a mapping of target names"),
        (("BTCUSDT", "1m"), {"timeouts": [600]}, "timeouts must be a mapping of target names"),
        (("BTCUSDT", "1m"), {"cleanup": "no"}, "cleanup must be True or False, not str 'no'"),
        (("BTCUSDT", "1m"), {"sink": 2}, "unknown workflow option(s): sink"),
    ],
)
def test_bad_argument_types_are_named_before_anything(
    home: Path, args: tuple[object, object], options: dict[str, Any], message: str
) -> None:
    """A wrong type is the library's error naming the argument, not a TypeError (or, for
    `cleanup="no"`, a yes) from somewhere inside planning."""
    with pytest.raises(InvalidName, match=re.escape(message)):
        Workflow.candles(*args, "2024-08-01:2024-08-02", **options)  # type: ignore[call-overload]
    assert list(home.iterdir()) == []


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (None, "targets must be a list of strings, not NoneType None"),
        ("loader-candles", "targets must be a list of strings, not str 'loader-candles'"),
    ],
)
def test_targets_must_be_a_list_of_names(home: Path, targets: object, message: str) -> None:
    with pytest.raises(InvalidName, match=re.escape(message)):
        Workflow("BTCUSDT", "1m", "2024-08-01:2024-08-02", targets)  # type: ignore[arg-type]
    assert list(home.iterdir()) == []
