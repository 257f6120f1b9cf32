"""Prometheus metrics of the loader and the sink, scraped from real worker processes.

The loader and the sink run as processes (`python -m streamforge_nb.workers.<name>`) on the
local broker with `STREAMFORGE_METRICS_PORT`; their /metrics must tell the candles the store
holds, the exchange's 429 answers, and the sink's last lag sample.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import subprocess_env
from prometheus_client.parser import text_string_to_metric_families

from streamforge_nb.control.metrics import WorkerMetrics, metrics_linger, metrics_port
from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import ConfigError
from streamforge_nb.exchange.binance import KLINES_PATH
from streamforge_nb.platform.contract import Loading, PartitionLag
from streamforge_nb.platform.names import candle_type, new_short_id, queue_id
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import ExchangeServer

TIME_RANGE = "2024-01-01:2024-01-02"  # 1440 minutes: two pages of klines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    """Return every sample at http://host:port/metrics by (name, labels)."""
    text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    """Return the one sample `name` whose labels include `labels`."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _wait_finished(settings: Settings, qid: str, count: int) -> dict[str, str]:
    """Block until `count` producers of `qid` finished; fail on an error event."""
    deadline = time.monotonic() + 120
    with Queue(qid, settings) as queue:
        while time.monotonic() < deadline:
            states = {name: p.status for name, p in queue.producers().items()}
            assert "error" not in states.values(), states
            if list(states.values()).count("finished") == count:
                return states
            time.sleep(0.1)
    pytest.fail(f"{qid}: {count} producers did not finish in 120 s")


def test_loader_and_sink_metrics_count_the_candles_stored(
    settings: Settings, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    qid = queue_id("BTCUSDT", candle_type("1m"), pd.Timestamp("2024-01-01").date(),
                   new_short_id())  # fmt: skip
    store_url = f"local://{tmp_path}"
    ports = {"loader": _free_port(), "sink": _free_port()}

    def start(name: str, *args: str, port: int) -> None:
        # Lingering: the test reads the last counts after the work ended, as a scrape would.
        env = subprocess_env(settings, STREAMFORGE_METRICS_PORT=str(port),
                             STREAMFORGE_METRICS_LINGER_SECONDS="600")  # fmt: skip
        command = [sys.executable, "-m", f"streamforge_nb.workers.{name}", "--queue-id", qid]
        processes.append(subprocess.Popen([*command, *args], env=env))

    with ExchangeServer(("BTCUSDT",)) as exchange:
        exchange.fail_next(429, retry_after=0.1, count=2, path=KLINES_PATH)
        start("sink", "--store-url", store_url, "--time-range", TIME_RANGE, "--report-every",
              "0", port=ports["sink"])  # fmt: skip
        start("loader", "--symbol", "BTCUSDT", "--interval", "1m", "--time-range", TIME_RANGE,
              "--base-url", exchange.base_url, port=ports["loader"])  # fmt: skip
        _wait_finished(settings, qid, 2)
        served_429, served_200 = exchange.served(429), exchange.served(200)
    with CandleStore.open(store_url) as store:
        stored = len(store.load("BTCUSDT", "1m"))
    assert stored == 1440

    loader, sink = scrape(ports["loader"]), scrape(ports["sink"])
    assert value(loader, "streamforge_records_written_total", worker="loader-candles",
                 queue_id=qid) == stored  # fmt: skip
    assert value(sink, "streamforge_records_written_total", worker="arango-candles") == stored
    assert value(sink, "streamforge_dead_letters_total") == 0
    for samples in (loader, sink):
        assert value(samples, "streamforge_worker_status", status="finished") == 1
        assert value(samples, "streamforge_events_total", status="finished") == 1
        assert value(samples, "streamforge_last_event_timestamp_seconds") > 1.7e9
    # The exchange's answers as the loader saw them, and as the exchange served them.
    assert served_429 == 2
    assert value(loader, "streamforge_exchange_answers_total", code="429") == 2
    assert value(loader, "streamforge_exchange_answers_total", code="418") == 0
    assert value(loader, "streamforge_exchange_answers_total", code="200") == served_200
    assert value(loader, "streamforge_exchange_weight_sent_total") > 0
    # The sink's lag gauge is its last lag sample on queue-events.
    with Queue(qid, settings) as queue:
        history = queue.lag()
    last = history.iloc[-1]
    assert value(sink, "streamforge_lag_messages", group=last["group"],
                 partition=str(last["partition"])) == last["messages_behind"]  # fmt: skip


def test_port_0_serves_on_a_free_port_named_in_the_started_event(
    settings: Settings, processes: list[subprocess.Popen[bytes]]
) -> None:
    # Pods sharing a host's network cannot all bind one port: 0 picks a free one, and the
    # started event tells a scraper where it is.
    qid = queue_id("BTCUSDT", candle_type("1m"), pd.Timestamp("2024-01-01").date(),
                   new_short_id())  # fmt: skip
    env = subprocess_env(settings, STREAMFORGE_METRICS_PORT="0",
                         STREAMFORGE_METRICS_LINGER_SECONDS="600")  # fmt: skip
    command = [sys.executable, "-m", "streamforge_nb.workers.dummy", "--queue-id", qid,
               "--exit-after", "0.5"]  # fmt: skip
    processes.append(subprocess.Popen(command, env=env))
    _wait_finished(settings, qid, 1)
    with Queue(qid, settings) as queue:
        (started,) = [e for e in queue.events() if e.status == "started"]
    address = (started.model_extra or {}).get("metrics_address")
    assert isinstance(address, str), started
    host, port = address.rsplit(":", 1)
    samples = scrape(int(port), host)
    assert value(samples, "streamforge_events_total", status="finished", queue_id=qid) == 1


def test_counts_are_totals_so_only_their_rises_are_added() -> None:
    metrics = WorkerMetrics("q1", "arango-candles")
    lag = [PartitionLag(partition=0, committed=5, end=9, messages=4, seconds=2.0)]
    sink = {"queue_id": "q1", "producer": "arango-candles__x", "dead_letters": 2}
    metrics.sent(Loading.model_validate({**sink, "records_written": 10, "timestamp": 1.7e9}))
    metrics.sent(Loading.model_validate({**sink, "records_written": 30, "timestamp": 1.7e9 + 2,
                                         "group": "q1-sink", "lag": lag}))  # fmt: skip
    reg = metrics.registry
    labels = {"queue_id": "q1", "worker": "arango-candles"}
    assert reg.get_sample_value("streamforge_records_written_total", labels) == 30
    assert reg.get_sample_value("streamforge_dead_letters_total", labels) == 2
    assert reg.get_sample_value("streamforge_records_per_second", labels) == 10
    where = {**labels, "group": "q1-sink", "partition": "0"}
    assert reg.get_sample_value("streamforge_lag_messages", where) == 4
    assert reg.get_sample_value("streamforge_lag_seconds", where) == 2


@pytest.mark.parametrize("env", [{"STREAMFORGE_METRICS_PORT": "80000"},
                                 {"STREAMFORGE_METRICS_PORT": "http"},
                                 {"STREAMFORGE_METRICS_LINGER_SECONDS": "-1"},
                                 {"STREAMFORGE_METRICS_LINGER_SECONDS": "nan"}])  # fmt: skip
def test_a_bad_metrics_setting_is_a_config_error_naming_it(env: dict[str, str]) -> None:
    (name,) = env
    with pytest.raises(ConfigError, match=name):
        metrics_port(env)
        metrics_linger(env)
