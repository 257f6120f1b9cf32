"""What a queue leaves behind: its data topics' shape, their cleanup, its notebooks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import subprocess_env
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.structs import OffsetAndMetadata

from streamforge_nb.control.queue import Queue
from streamforge_nb.control.state import new_record
from streamforge_nb.exceptions import ConfigError, StreamForgeError
from streamforge_nb.kafka.clients import make_admin, make_producer
from streamforge_nb.platform.names import new_short_id, queue_id
from streamforge_nb.platform.topics import ensure_queue_topics
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import topic_exists


def _queue(settings: Settings, store: str, outputs: dict[str, str] | None = None) -> str:
    import datetime as dt

    qid = queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 1), new_short_id())
    with CandleStore.open(store) as opened:
        opened.save_queue_state(
            new_record(
                queue_id=qid, symbol="BTCUSDT", type_="api_candles_1m",
                targets=["loader-candles", "arango-candles"], parameters={},
                data_topic=f"{qid}-data", outputs=outputs or {}, launcher="local", jobs=[],
            )
        )  # fmt: skip
    return qid


def _topics_holding(settings: Settings, counts: dict[str, int]) -> None:
    """Create each topic (a queue's shape) with `count` messages in partition 0."""
    admin = make_admin(settings)
    try:
        ensure_queue_topics(admin, settings, *counts)
    finally:
        admin.close()
    producer = make_producer(settings)
    for topic, count in counts.items():
        for i in range(count):
            producer.send(topic, key=b"k", value=b"%d" % i, partition=0)
    producer.flush()
    producer.close()


def _config(settings: Settings, topic: str) -> dict[str, Any]:
    admin = make_admin(settings)
    try:
        answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    (by_name,) = answer.values()
    configs: dict[str, Any] = by_name[topic]
    return configs


def test_data_topics_get_the_clusters_replication_and_a_retention(settings: Settings) -> None:
    topic = f"wf-lifecycle-{new_short_id()}-data"
    admin = make_admin(settings)
    try:
        week = settings.model_copy(update={"topic_retention_ms": 3_600_000})
        assert ensure_queue_topics(admin, week, topic, partitions=3) == [topic]
        described = admin.describe_topics([topic])[0]
        with pytest.raises(ConfigError, match=r"TOPIC_REPLICAS=2, but the cluster has 1 broker"):
            ensure_queue_topics(admin, settings.model_copy(update={"topic_replicas": 2}), "wf-x")
    finally:
        admin.close()
    assert len(described["partitions"]) == 3
    assert {len(p["replica_nodes"]) for p in described["partitions"]} == {1}  # min(3, 1 broker)
    assert _config(settings, topic)["retention.ms"]["value"] == "3600000"
    assert not topic_exists(settings, "wf-x")


def test_cleanup_waits_for_the_sinks_commit_and_keeps_a_dlq_with_rejects(
    settings: Settings, tmp_path: Path
) -> None:
    store = f"local://{tmp_path / 'store'}"
    qid = _queue(settings, store)
    topic, dlq = f"{qid}-data", f"{qid}-data-dlq"
    _topics_holding(settings, {topic: 3, dlq: 1})
    queue = Queue(qid, settings, store=store)
    with pytest.raises(StreamForgeError, match=r"has not committed the end .*partition 0: 0 of 3"):
        queue.cleanup()
    assert topic_exists(settings, topic)
    refused = _cli(settings, "cleanup", "--queue-id", qid, "--store", store)
    assert refused.returncode == 1
    assert "has not committed the end" in refused.stderr and "Traceback" not in refused.stderr

    sink = KafkaConsumer(group_id=f"{qid}-sink", **settings.kafka_client_config())
    sink.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
    sink.close()
    assert queue.cleanup() == {topic: "deleted", dlq: "kept: 1 rejected message(s) to look at"}
    assert not topic_exists(settings, topic) and topic_exists(settings, dlq)
    queue.close()


def test_cleanup_force_deletes_what_the_sink_has_not_committed(
    settings: Settings, tmp_path: Path
) -> None:
    store = f"local://{tmp_path / 'store'}"
    qid = _queue(settings, store)
    topic = f"{qid}-data"
    _topics_holding(settings, {topic: 2})
    # The sink group never committed: refused, naming the lag, and the topic stays.
    refused = _cli(settings, "cleanup", "--queue-id", qid, "--store", store)
    assert refused.returncode == 1
    assert f"has not committed the end of {topic} (partition 0: 0 of 2)" in refused.stderr
    assert topic_exists(settings, topic)

    forced = _cli(settings, "cleanup", "--queue-id", qid, "--store", store, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout) == {"queue_id": qid, "topics": {topic: "deleted"}}
    assert not topic_exists(settings, topic)


def test_notebooks_say_where_and_open_or_name_what_is_missing(
    settings: Settings, tmp_path: Path
) -> None:
    import nbformat

    saved = tmp_path / "runs" / "loader.ipynb"
    saved.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), saved)
    lost = str(tmp_path / "runs" / "sink.ipynb")
    store = f"local://{tmp_path / 'store'}"
    qid = _queue(settings, store, {"loader-candles": str(saved), "arango-candles": lost})
    with Queue(qid, settings, store=store) as queue:
        table = queue.notebooks()
        assert table.loc["loader-candles", "saved"] and not table.loc["arango-candles", "saved"]
        assert queue.notebook("loader-candles").cells[0].source == "1"
        with pytest.raises(StreamForgeError, match=r"not at .*sink.ipynb.*STREAMFORGE_RUNS_VOLUME"):
            queue.notebook("arango-candles")
        with pytest.raises(StreamForgeError, match=r"has no target 'dummy'"):
            queue.notebook("dummy")
    listed = _cli(settings, "notebooks", "--queue-id", qid, "--store", store, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line) for line in listed.stdout.splitlines()] == [
        {"target": "arango-candles", "location": lost, "saved": False},
        {"target": "loader-candles", "location": str(saved), "saved": True},
    ]


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamforge_nb.cli", *args],
        env=subprocess_env(settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
