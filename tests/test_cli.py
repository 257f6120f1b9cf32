"""The command line end to end: local up/status/down, check, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from streamforge_nb.local.broker import LocalBroker
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name

ROOT = Path(__file__).resolve().parent.parent


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "streamforge_nb.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def broker_processes(home: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"kafka.Kafka" in cmdline and str(home).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def test_local_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    env = {"STREAMFORGE_HOME": str(tmp_path)}
    up = run("local", "up", "--port", "0", env=env)
    assert up.returncode == 0, up.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:" in up.stdout
    try:
        status = run("local", "status", env=env)
        assert status.returncode == 0
        assert "running" in status.stdout
        again = run("local", "up", env=env)
        assert again.returncode == 0 and "already running" in again.stderr
        check = run("check", env=env)  # finds the broker through the env file alone
        assert check.returncode == 0, check.stderr
        assert "queue-control" in check.stdout
    finally:
        down = run("local", "down", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert broker_processes(tmp_path) == []
    status = run("local", "status", env=env)
    assert status.returncode == 3 and "stopped" in status.stdout

    # A broker that cannot start fails with its own log tail, not a hang or a traceback.
    props = tmp_path / "config" / "server.properties"
    props.write_text(props.read_text().replace("node.id=1", "node.id=not-a-number"))
    broken = run("local", "up", "--timeout", "60", env=env)
    assert broken.returncode == 1
    assert "streamforge-nb: error: the Kafka broker exited" in broken.stderr
    assert "Invalid value not-a-number" in broken.stderr
    assert "Traceback" not in broken.stderr
    assert broker_processes(tmp_path) == []


def test_dead_broker_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = run(
        "check", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "STREAMFORGE_HOME": str(tmp_path)}
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("streamforge-nb: error:")
    assert "no Kafka broker reachable at 127.0.0.1:1" in lines[0]


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run("--debug", "check", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_wrong_password_is_one_clear_line(broker: LocalBroker, tmp_path: Path) -> None:
    good = broker.settings("user-streamforge")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": good.kafka_bootstrap_servers,
        "KAFKA_USER": "user-streamforge",
        "KAFKA_PASSWORD": "definitely-wrong",
        "CA_PATH": str(good.kafka_ca_path),
    }
    result = run("check", env=env)
    assert result.returncode == 1
    assert "refused user 'user-streamforge'" in result.stderr
    assert "definitely-wrong" not in result.stderr + result.stdout


def test_check_over_sasl_ssl(broker: LocalBroker) -> None:
    good: Settings = broker.settings("user-streamforge")
    assert good.kafka_password is not None
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": good.kafka_bootstrap_servers,
        "KAFKA_USER": "user-streamforge",
        "KAFKA_PASSWORD": good.kafka_password.get_secret_value(),
        "CA_PATH": str(good.kafka_ca_path),
    }
    result = run("check", env=env)
    assert result.returncode == 0, result.stderr
    assert "SASL_SSL as user-streamforge" in result.stdout


@pytest.mark.parametrize("args", [["manifests"], ["schemas"]])
def test_generators_reproduce_the_committed_files(args: list[str], tmp_path: Path) -> None:
    result = run(*args, str(tmp_path))
    assert result.returncode == 0, result.stderr
    committed = ROOT / args[0]
    for path in tmp_path.iterdir():
        assert path.read_text() == (committed / path.name).read_text(), path.name


def test_ping_stop_events_against_a_real_dummy(
    broker: LocalBroker, start_dummy: Callable[..., subprocess.Popen[str]]
) -> None:
    queue_id = unique_name("wf-cli")
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.settings().kafka_bootstrap_servers}
    proc = start_dummy(queue_id)

    pinged = run("ping", "--queue-id", queue_id, "--count", "3", "--expect-pong", env=env)
    assert pinged.returncode == 0, pinged.stderr
    lines = pinged.stdout.splitlines()
    assert len([ln for ln in lines if ln.startswith("pong from dummy__")]) == 3
    assert re.search(r"3 pongs for 3 pings: min [\d.]+ ms, p50 [\d.]+ ms, p99 [\d.]+ ms", lines[-1])

    as_json = run("ping", "--queue-id", queue_id, "--json", env=env)
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert rows[0]["rtt_ms"] > 0 and rows[-1]["pongs"] == 1

    stopped = run("stop", "--queue-id", queue_id, "--json", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["interrupted"][0].startswith("dummy__")
    assert proc.wait(timeout=20) == 0

    listed = run("events", "--queue-id", queue_id, "--json", env=env)
    statuses = [json.loads(line)["status"] for line in listed.stdout.splitlines()]
    assert statuses == ["started", "pong", "pong", "pong", "pong", "interrupted"]


def test_ping_nobody_exits_1_with_expect_pong(broker: LocalBroker) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.settings().kafka_bootstrap_servers}
    result = run(
        "ping", "--queue-id", unique_name("wf-nobody"), "--timeout", "1", "--expect-pong", env=env
    )
    assert result.returncode == 1
    assert "no pong from queue" in result.stdout


def test_stop_nobody_is_one_error_line(broker: LocalBroker) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.settings().kafka_bootstrap_servers}
    result = run("stop", "--queue-id", unique_name("wf-nobody"), "--timeout", "1", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("streamforge-nb: error: no worker of queue")
    assert "Traceback" not in result.stderr
