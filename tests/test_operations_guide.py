"""The operations guide: every local command in it runs here, and it names only real commands.

docs/operations.md keeps every command in a ```bash block; a block that needs a real cluster,
a registry or the network starts with `# cluster-only`. Every other block is run here, one
command at a time, against the session's broker, with STREAMFORGE_HOME in a fresh directory
that holds one queue set up the cheap way (a queue-state record, its telemetry, a data topic
whose sink group has committed the end): no workflow is launched.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streamforge_nb.cli import cli
from streamforge_nb.control.state import new_record
from streamforge_nb.kafka.clients import make_admin, make_producer
from streamforge_nb.kafka.send import send_event
from streamforge_nb.platform.contract import Loading, Started
from streamforge_nb.platform.names import new_short_id, queue_id
from streamforge_nb.platform.topics import ensure_queue_topics
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import topic_exists

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"
CLUSTER_ONLY = "# cluster-only"
LOADER, SINK = "loader-candles__ops", "arango-candles__ops"


@dataclass(frozen=True)
class Block:
    line: int  # where the block's fence is in the guide, for failure messages
    commands: list[str]
    cluster_only: bool


def bash_blocks(text: str) -> list[Block]:
    """Return every ```bash block, split into commands (continuation lines joined)."""
    blocks = []
    for match in re.finditer(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        body = match.group(1)
        line = text.count("\n", 0, match.start()) + 1
        joined = re.sub(r"\s*\\\n\s*", " ", body)
        commands = [c for c in joined.splitlines() if c.strip() and not c.lstrip().startswith("#")]
        first = body.lstrip().splitlines()[0].strip() if body.strip() else ""
        marked = first == CLUSTER_ONLY or first.startswith(f"{CLUSTER_ONLY}:")
        blocks.append(Block(line, commands, marked))
    return blocks


BLOCKS = bash_blocks(GUIDE.read_text())
LOCAL = [b for b in BLOCKS if not b.cluster_only]
# The cleanup block deletes the queue's data topic: it runs once, in its own test, last.
CLEANUP = [b for b in LOCAL if any("streamforge-nb cleanup" in c for c in b.commands)]
OTHERS = [b for b in LOCAL if b not in CLEANUP]


@dataclass(frozen=True)
class Site:
    cwd: Path
    home: Path
    env: dict[str, str]
    queue_id: str
    topic: str


@pytest.fixture(scope="module")
def site(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A fresh home with one queue that stalled while loading, and a repository-like cwd."""
    cwd = tmp_path_factory.mktemp("ops-cwd")
    home = tmp_path_factory.mktemp("ops-home")
    for name in ("manifests", "jupyter-image"):  # the guide runs from the repository root
        (cwd / name).symlink_to(ROOT / name)
    qid = queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 1), new_short_id())
    topic = f"{qid}-data"
    with CandleStore.open(f"local://{home / 'store'}") as store:
        store.save_queue_state(
            new_record(
                queue_id=qid, symbol="BTCUSDT", type_="api_candles_1m",
                targets=["loader-candles", "arango-candles"], parameters={}, data_topic=topic,
                outputs={"loader-candles": str(home / "runs" / qid / "loader-candles.ipynb")},
                launcher="local", jobs=[],
            )
        )  # fmt: skip
    admin = make_admin(settings)
    try:
        ensure_queue_topics(admin, settings, topic)
    finally:
        admin.close()
    producer = make_producer(settings)
    for i in range(3):
        producer.send(topic, key=b"k", value=b"%d" % i, partition=0)
    producer.flush()
    producer.close()
    sink = KafkaConsumer(group_id=f"{qid}-sink", **settings.kafka_client_config())
    sink.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
    sink.close()
    # Telemetry of a stalled queue: both steps started, the loader's last progress long ago.
    old = time.time() - 3600
    common: dict[str, Any] = {"queue_id": qid, "symbol": "BTCUSDT", "type": "api_candles_1m"}
    send_event(settings, Started(producer=LOADER, timestamp=old - 60, **common))
    send_event(settings, Started(producer=SINK, timestamp=old - 60, **common))
    send_event(settings, Loading(producer=LOADER, records_written=3, timestamp=old, **common))
    # Executed notebooks of an old and a recent run (STREAMFORGE_RUNS unset: $HOME/runs).
    for run, age_days in (("wf-old-run", 40), (qid, 0)):
        (home / "runs" / run).mkdir(parents=True)
        stamp = time.time() - age_days * 86400
        os.utime(home / "runs" / run, (stamp, stamp))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "ARANGO_", "STREAMFORGE_", "QUEUE_"))
    }
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        STREAMFORGE_HOME=str(home),
        QUEUE_ID=qid,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    yield Site(cwd, home, env, qid, topic)


def run_block(block: Block, site: Site) -> list[subprocess.CompletedProcess[str]]:
    """Run each command of the block in bash, in order; fail naming the first that fails."""
    done = []
    for command in block.commands:
        result = subprocess.run(
            ["bash", "-c", f"set -euo pipefail\n{command}"],
            cwd=site.cwd,
            env=site.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (
            f"docs/operations.md line {block.line}: `{command}` exited {result.returncode}\n"
            f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
        )
        done.append(result)
    return done


def output_of(block: Block, site: Site) -> str:
    return "".join(r.stdout + r.stderr for r in run_block(block, site))


def test_the_guide_has_local_and_cluster_only_blocks() -> None:
    assert len(LOCAL) >= 5 and len(BLOCKS) - len(LOCAL) >= 5
    for block in BLOCKS:
        assert block.commands, f"docs/operations.md line {block.line}: an empty bash block"


def test_block_parser_joins_continuations_and_sees_the_marker() -> None:
    text = "```bash\n# cluster-only: why\nkubectl a \\\n  -f x\n# note\necho b\n```\n"
    (block,) = bash_blocks(text)
    assert block.cluster_only and block.commands == ["kubectl a -f x", "echo b"]
    (plain,) = bash_blocks("x\n```bash\necho c  # cluster-only\n```\n")
    assert not plain.cluster_only and plain.line == 2


def test_every_named_command_exists_in_the_cli() -> None:
    text = GUIDE.read_text()
    named = set(re.findall(r"streamforge-nb ((?:local )?[a-z][a-z-]*)", text))
    assert {"check", "topics", "manifests", "queues", "cleanup", "cancel"} <= named
    for name in sorted(named):
        group, _, sub = name.partition(" ")
        assert group in cli.commands, f"the guide names `streamforge-nb {group}`: no such command"
        if sub:
            assert sub in cli.commands[group].commands, f"no `streamforge-nb {name}`"  # type: ignore[attr-defined]


def test_the_readme_links_the_guide() -> None:
    assert "(docs/operations.md)" in README.read_text()


def test_the_guide_links_the_glossary_terms_it_uses() -> None:
    text = GUIDE.read_text()
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^### (.+)$", glossary, flags=re.M)
    }
    linked = re.findall(r"\(glossary\.md#([a-z0-9_-]+)\)", text)
    assert linked, "the guide links no glossary term"
    assert set(linked) <= anchors, sorted(set(linked) - anchors)


@pytest.mark.parametrize("block", OTHERS, ids=[f"line{b.line}" for b in OTHERS])
def test_local_block_runs(block: Block, site: Site) -> None:
    output = output_of(block, site)
    text = " ".join(block.commands)
    # Where the output matters, it says what the guide says it says.
    if "streamforge-nb check" in text:
        assert "queue-control" in output and "queue-events" in output
    if "streamforge-nb manifests out/" in text:
        assert (site.cwd / "out" / "kafka-topics.yaml").is_file()
    if "--api-version v1beta2" in text:
        assert "kafka.strimzi.io/v1beta2" in output and "kafka.strimzi.io/v1\n" not in output
    if "streamforge-nb queues" in text:  # the stalled queue: running, 3 records, no more
        assert re.search(rf"{site.queue_id}\s+BTCUSDT\s+api_candles_1m\s+running\s+3\b", output)
    if "streamforge-nb events" in text:
        assert LOADER in output and "loading" in output
    if "streamforge-nb ping" in text:
        assert f"no pong from queue {site.queue_id} within 2 s" in output, output
    if "cp -a" in text:
        assert (site.cwd / "backup" / "store" / "queue_state.sqlite").is_file()
    if "-mtime +30" in text:
        assert not (site.home / "runs" / "wf-old-run").exists()
        assert (site.home / "runs" / site.queue_id).is_dir()


def test_cleanup_block_deletes_the_queues_data_topic(site: Site, settings: Settings) -> None:
    (block,) = CLEANUP
    assert topic_exists(settings, site.topic)
    output = output_of(block, site)
    assert site.topic in output and "deleted" in output
    assert not topic_exists(settings, site.topic)
