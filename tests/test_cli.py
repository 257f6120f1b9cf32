"""The command line: local up/status/down, check, one-line errors, one style, a light --help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import command_lines

from streamforge_nb import workers
from streamforge_nb.api.models import PongItem, StopResponse
from streamforge_nb.cli import ExitCode, cli, main
from streamforge_nb.exceptions import ConfigError, MissingOption
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
    return [
        pid
        for pid, cmdline in command_lines()
        if b"kafka.Kafka" in cmdline and str(home).encode() in cmdline
    ]


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
    assert result.returncode == ExitCode.NOT_RUNNING
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

    as_json = run("check", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)  # one object
    assert report["ok"] is True
    assert report["bootstrap_servers"] == good.kafka_bootstrap_servers
    assert report["security_protocol"] == "SASL_SSL"
    assert report["sasl_mechanism"] == "SCRAM-SHA-512"
    assert report["user"] == "user-streamforge"
    assert {"queue-control", "queue-events"} <= set(report["topics"])
    assert good.kafka_password.get_secret_value() not in as_json.stdout


def test_check_json_on_a_dead_broker_is_one_object_and_one_error_line(tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "STREAMFORGE_HOME": str(tmp_path)}
    result = run("check", "--json", env=env)
    assert result.returncode == ExitCode.NOT_RUNNING
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["bootstrap_servers"] == "127.0.0.1:1"
    assert "no Kafka broker reachable" in report["error"]
    assert result.stderr.startswith("streamforge-nb: error:")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("command", "committed"),
    [("manifests", ROOT / "manifests"), ("schemas", ROOT / "streamforge_nb" / "schemas")],
)
def test_generators_reproduce_the_committed_files(
    command: str, committed: Path, tmp_path: Path
) -> None:
    result = run(command, str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = sorted(tmp_path.iterdir())
    assert written
    for path in written:
        assert path.read_text() == (committed / path.name).read_text(), path.name


def test_writers_need_a_dir_or_dash_for_stdout() -> None:
    import yaml

    from streamforge_nb.platform.topics import strimzi_manifests

    package_schemas = ROOT / "streamforge_nb" / "schemas"
    before = {p.name: p.stat().st_mtime_ns for p in package_schemas.iterdir()}
    for command in ("schemas", "manifests"):
        bare = run(command)
        assert bare.returncode == ExitCode.USAGE and "Missing argument 'DIR'" in bare.stderr
    assert {p.name: p.stat().st_mtime_ns for p in package_schemas.iterdir()} == before

    schemas = run("schemas", "-")
    assert schemas.returncode == 0, schemas.stderr
    for name, schema in json.loads(schemas.stdout).items():
        assert schema == json.loads((package_schemas / f"{name}.schema.json").read_text())
    manifests = run("manifests", "-")
    assert manifests.returncode == 0, manifests.stderr
    committed = [
        doc for name in strimzi_manifests()
        for doc in yaml.safe_load_all((ROOT / "manifests" / name).read_text())
    ]  # fmt: skip
    assert sorted(map(json.dumps, yaml.safe_load_all(manifests.stdout))) == sorted(
        map(json.dumps, committed)
    )


def test_manifests_cluster_namespace_and_api_version(tmp_path: Path) -> None:
    from streamforge_nb.platform.topics import STRIMZI_API_VERSIONS

    option = next(p for p in cli.commands["manifests"].params if p.name == "api_version")
    assert isinstance(option.type, click.Choice)
    assert set(option.type.choices) == set(STRIMZI_API_VERSIONS)
    args = ["--cluster", "c9", "--namespace", "strimzi", "--api-version", "v1beta2"]
    result = run("manifests", str(tmp_path), *args)
    assert result.returncode == 0, result.stderr
    topics = (tmp_path / "kafka-topics.yaml").read_text()
    assert "apiVersion: kafka.strimzi.io/v1beta2" in topics
    assert "strimzi.io/cluster: c9" in topics and "namespace: strimzi" in topics
    assert "kafka.strimzi.io/v1\n" not in topics
    bad = run("manifests", str(tmp_path), "--api-version", "v1alpha1")
    assert bad.returncode == 2 and "v1alpha1" in bad.stderr


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

    # One kind of object per line: one per ping, its pongs in the API's PongItem shape.
    as_json = run("ping", "--queue-id", queue_id, "--json", "--count", "2", env=env)
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [row["seq"] for row in rows] == [1, 2]
    keys = {"seq", "queue_id", "pongs", "error", "sent", "partition", "offset"}
    assert {frozenset(row) for row in rows} == {frozenset(keys)}
    for row in rows:
        assert row["error"] is None and row["queue_id"] == queue_id
        (pong,) = [PongItem.model_validate(p) for p in row["pongs"]]
        assert pong.round_trip_ms > 0 and pong.producer.startswith("dummy__")

    stopped = run("stop", "--queue-id", queue_id, "--json", env=env)
    assert stopped.returncode == 0, stopped.stderr
    answer = json.loads(stopped.stdout)
    assert answer["error"] is None
    assert StopResponse.model_validate(answer).acknowledged[0].startswith("dummy__")
    assert proc.wait(timeout=20) == 0

    listed = run("events", "--queue-id", queue_id, "--json", env=env)
    statuses = [json.loads(line)["status"] for line in listed.stdout.splitlines()]
    assert statuses == ["started", *["pong"] * 5, "interrupted"]


def test_ping_nobody_is_a_timeout_with_expect_pong(broker: LocalBroker) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.settings().kafka_bootstrap_servers}
    result = run(
        "ping", "--queue-id", unique_name("wf-nobody"), "--timeout", "1", "--expect-pong", env=env
    )
    assert result.returncode == ExitCode.TIMEOUT
    assert "no pong from queue" in result.stdout


def test_stop_nobody_is_one_error_line_and_a_json_answer(broker: LocalBroker) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.settings().kafka_bootstrap_servers}
    queue_id = unique_name("wf-nobody")
    result = run("stop", "--queue-id", queue_id, "--timeout", "1", env=env)
    assert result.returncode == ExitCode.TIMEOUT
    assert result.stderr.startswith("streamforge-nb: error: no worker of queue")
    assert "Traceback" not in result.stderr
    # A script reading stdout gets an answer on a timeout too.
    as_json = run("stop", "--queue-id", queue_id, "--timeout", "1", "--json", env=env)
    assert as_json.returncode == ExitCode.TIMEOUT
    answer = json.loads(as_json.stdout)
    assert StopResponse.model_validate(answer).acknowledged == []
    assert answer["queue_id"] == queue_id
    assert answer["error"].startswith("no worker of queue")


# -- one style for every command ------------------------------------------------------------
def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, (*prefix, name)))
    return paths


def test_every_command_has_click_help(capsys: pytest.CaptureFixture[str]) -> None:
    paths = command_paths(cli)
    assert {("dummy",), ("loader",), ("sink",), ("check",), ("local", "up")} <= set(paths)
    for path in paths:
        for flag in ("--help", "-h"):
            assert main([*path, flag]) == 0, path
            out = capsys.readouterr().out
            assert out.startswith(f"Usage: streamforge-nb {' '.join(path)} "), out
            assert "-h, --help  " in out and "Show this message and exit." in out


@pytest.mark.parametrize(
    ("command", "envvars"),
    [
        ("dummy", ["QUEUE_ID", "TELEMETRY_PRODUCER_ID", "STREAMFORGE_DEBUG"]),
        ("loader", ["QUEUE_ID", "SYMBOL", "TYPE", "TIME_RANGE", "KAFKA_TOPIC",
                    "TELEMETRY_PRODUCER_ID"]),
        ("sink", ["QUEUE_ID", "KAFKA_TOPIC", "TELEMETRY_PRODUCER_ID", "STREAMFORGE_STORE_URL"]),
        ("ping", ["QUEUE_ID"]),
        ("stop", ["QUEUE_ID"]),
        ("events", ["QUEUE_ID"]),
    ],
)  # fmt: skip
def test_platform_variables_are_bound_and_shown(
    command: str, envvars: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bound = {p.envvar for p in cli.commands[command].params if isinstance(p, click.Option)}
    assert set(envvars) <= bound
    assert main([command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # undo the wrapping
    for envvar in envvars:
        assert f"env var: {envvar}" in out


def test_a_worker_takes_the_same_options_from_argv_env_and_a_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("QUEUE_ID", "SYMBOL", "INTERVAL", "TYPE", "TIME_RANGE", "STREAMFORGE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    argv = ["--queue-id", "wf-a", "--symbol", "ETHUSDT", "--interval", "5m",
            "--time-range", "2024-08-01:2024-08-02", "--archive", "x.zip", "--archive", "y.zip",
            "--report-every", "0.5"]  # fmt: skip
    mapping = {
        "queue_id": "wf-a", "symbol": "ETHUSDT", "interval": "5m",
        "time_range": "2024-08-01:2024-08-02", "archives": ["x.zip", "y.zip"],
        "report_every": 0.5, "debug": None, "unrelated": object(),
    }  # fmt: skip
    from_argv = workers.from_argv("loader", argv)
    assert from_argv == workers.from_mapping("loader", mapping)
    assert from_argv.archives == ("x.zip", "y.zip") and from_argv.report_every == 0.5

    # The platform's variables, and TYPE gives the interval.
    monkeypatch.setenv("QUEUE_ID", "wf-a")
    monkeypatch.setenv("SYMBOL", "ETHUSDT")
    monkeypatch.setenv("TYPE", "api_candles_5m")
    monkeypatch.setenv("TIME_RANGE", "2024-08-01:2024-08-02")
    rest = ["--archive", "x.zip", "--archive", "y.zip", "--report-every", "0.5"]
    assert workers.from_argv("loader", rest) == from_argv
    assert workers.from_mapping("loader", {**mapping, "queue_id": None, "symbol": ""}) == (
        from_argv
    )
    # Given values beat the environment, on both paths.
    assert workers.from_argv("loader", [*rest, "--symbol", "SOLUSDT"]).symbol == "SOLUSDT"
    assert workers.from_mapping("loader", {**mapping, "symbol": "SOLUSDT"}).symbol == "SOLUSDT"


def test_worker_definitions_match_their_options_classes() -> None:
    import dataclasses

    for entry in workers.WORKERS.values():
        options_class, _run = entry.load()
        fields = {f.name: f.default for f in dataclasses.fields(options_class)}
        names = {o.name for o in entry.options} - {"type"}  # TYPE only derives the interval
        assert names == set(fields), entry.name
        for option in entry.options:
            if option.default is not None and option.name in fields:
                assert option.default == fields[option.name], (entry.name, option.name)


def test_a_missing_option_names_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUEUE_ID", raising=False)
    message = "--queue-id (QUEUE_ID, or the notebook parameter queue_id) is required"
    with pytest.raises(MissingOption, match=re.escape(message)):
        workers.from_mapping("sink", {"queue_id": ""})
    with pytest.raises(click.UsageError, match=re.escape(message)):
        workers.from_argv("sink", [])


def test_debug_is_an_option_of_the_group(capsys: pytest.CaptureFixture[str]) -> None:
    debug = next(p for p in cli.params if p.name == "debug")
    assert isinstance(debug, click.Option) and debug.is_flag
    assert main(["--help"]) == 0
    assert "--debug" in capsys.readouterr().out
    # Not a scan of argv: after a command name it is that command's business.
    assert main(["check", "--debug"]) == 2
    assert "No such option '--debug'" in capsys.readouterr().err


# -- a light --help -------------------------------------------------------------------------
HEAVY = ("kafka", "confluent_kafka", "pandas", "numpy", "pydantic", "cryptography", "pyarrow")


@pytest.mark.parametrize("args", [["--help"], ["loader", "--help"], ["check", "--help"]])
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "streamforge_nb.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "streamforge_nb.cli" in imported and "click" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert heavy == [], heavy


# -- issue 11: input refused before any side effect, one line naming the value and the rule --
QID = "wf-btcusdt-api_candles_1m-20240801-abc123"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sink", "--queue-id", QID, "--batch-size", "0"],
         "Invalid value for '--batch-size': 0 is not in the range x>=1."),
        (["dummy", "--queue-id", QID, "--metrics-port", "70000"],
         "70000 is not in the range 0<=x<=65535."),
        (["ping", "--queue-id", QID, "--count", "-5"],
         "Invalid value for '--count': -5 is not in the range x>=1."),
        (["ping", "--queue-id", QID, "--timeout", "nan"],
         "Invalid value for '--timeout': 'nan' is not a finite number of seconds"),
        (["ping", "--queue-id", QID, "--timeout", "0"],
         "Invalid value for '--timeout': 0.0 is not in the range x>0."),
        (["dashboard", "--port", "70000"],
         "Invalid value for '--port': 70000 is not in the range 0<=x<=65535."),
        (["dashboard", "--host", "256.0.0.1"],
         "Invalid value for '--host': '256.0.0.1' is not an IP address or host name "
         "(IPv4 parts are 0..255)"),
        (["local", "up", "--port", "65535"],
         "Invalid value for '--port': 65535 is not in the range 0<=x<=65533."),
        (["quickstart", "--pings", "0"], "Invalid value for '--pings': 0 is not in the range"),
        (["ping", "--queue-id", ""], "Invalid value for '--queue-id' (env var: 'QUEUE_ID'): "
         "invalid queue id '': 1..63 characters of A-Z a-z 0-9 . _ -"),
        (["sink", "--queue-id", "bad id"], "invalid queue id 'bad id': 1..63 characters"),
    ],
)  # fmt: skip
def test_cli_numbers_hosts_and_queue_ids_are_checked(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_worker_option_ranges_hold_for_mappings_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match=r"batch_size: 0 is not in the range x>=1"):
        workers.from_mapping("sink", {"queue_id": QID, "batch_size": 0})
    with pytest.raises(ConfigError, match=r"metrics_port: 70000 is not in the range"):
        workers.from_mapping("dummy", {"queue_id": QID, "metrics_port": 70000})
    with pytest.raises(ConfigError, match=r"batch_seconds: 'inf' is not a finite number"):
        workers.from_mapping("sink", {"queue_id": QID, "batch_seconds": "inf"})
    monkeypatch.setenv("QUEUE_ID", "bad id")
    with pytest.raises(ConfigError, match=r"queue_id: invalid queue id 'bad id'"):
        workers.from_mapping("sink", {})


def test_a_taken_metrics_port_is_one_line(broker: LocalBroker) -> None:
    import socket

    # A second dummy on the default metrics port (8000): hold it as the first dummy would.
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("", 8000))
        holder.listen()
    except OSError:
        pass  # something else holds it already: the same situation
    try:
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.settings().kafka_bootstrap_servers}
        result = run("dummy", "--queue-id", unique_name("wf-port"), env=env, timeout=60)
    finally:
        holder.close()
    assert result.returncode == ExitCode.USAGE  # a setting that cannot be used: choose another
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    record = json.loads(lines[0])
    assert record["level"] == "error"
    assert "metrics port 8000 cannot be used (Address already in use)" in record["msg"]


def test_dashboard_without_a_token_only_on_loopback(tmp_path: Path) -> None:
    from streamforge_nb.exceptions import DashboardError
    from streamforge_nb.ui.dashboard import start_dashboard

    with pytest.raises(DashboardError, match=r"refusing to serve on 0\.0\.0\.0 without a token"):
        start_dashboard(tmp_path, host="0.0.0.0", token="")
    result = run(
        "dashboard", "--no-token", "--host", "0.0.0.0", env={"STREAMFORGE_HOME": str(tmp_path)}
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "streamforge-nb: error: refusing to serve on 0.0.0.0 without a token: any machine that "
        "reaches it could launch and stop workflows (without a token only 127.0.0.1 or ::1)"
    ]
    both = run("dashboard", "--no-token", "--token", "abc")
    assert both.returncode == 2 and "--token and --no-token exclude each other" in both.stderr


def test_a_future_range_is_refused_before_any_side_effect(
    broker: LocalBroker, tmp_path: Path
) -> None:
    from streamforge_nb.kafka.clients import make_admin

    settings = broker.settings()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "STREAMFORGE_HOME": str(tmp_path),
    }
    # The command reads the real clock: next year is in the future whenever this runs.
    future = datetime.now(UTC).year + 1
    for time_range, rule in [
        (f"{future}-01-01:{future}-01-02", "after the last closed 1m candle"),
        ("1990-01-01:1990-01-02", "before the exchange's first candles (2017-07-14)"),
    ]:
        result = run(
            "candles", "--symbol", "BTCUSDT", "--interval", "1m", "--time-range", time_range,
            "--no-wait", env=env,
        )  # fmt: skip
        assert result.returncode == ExitCode.USAGE
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"streamforge-nb: error: time range '{time_range}' ")
        assert rule in line
    # No queue state (store), no Job, no runs folder, no topic.
    assert list(tmp_path.iterdir()) == []
    admin = make_admin(settings)
    try:
        topics = admin.list_topics()
    finally:
        admin.close()
    assert not [
        t
        for t in topics
        if t.startswith((f"wf-btcusdt-api_candles_1m-{future}", "wf-btcusdt-api_candles_1m-1990"))
    ]


def test_candles_plan_holds_no_arango_password(tmp_path: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "ARANGO_URL": "http://root:pw-Vb64tY@arangodb.example:8529",
        "STREAMFORGE_HOME": str(tmp_path),
    }
    result = run(
        "candles", "--symbol", "BTCUSDT", "--interval", "1m",
        "--time-range", "2024-08-01:2024-08-02", "--plan", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pw-Vb64tY" not in result.stdout + result.stderr
    plan = json.loads(result.stdout)
    sink = plan["jobs"][1]["spec"]["template"]["spec"]["containers"][0]
    params = {e["name"]: e["value"] for e in sink["env"]}["STREAMFORGE_PARAMETERS"]
    assert json.loads(params) == {"store_url": "http://arangodb.example:8529"}
    assert list(tmp_path.iterdir()) == []


def test_a_viewer_stop_names_the_acl(broker: LocalBroker) -> None:
    viewer = broker.settings("user-streamforge-viewer")
    assert viewer.kafka_password is not None
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": viewer.kafka_bootstrap_servers,
        "KAFKA_USER": "user-streamforge-viewer",
        "KAFKA_PASSWORD": viewer.kafka_password.get_secret_value(),
        "CA_PATH": str(viewer.kafka_ca_path),
    }
    result = run("stop", "--queue-id", unique_name("wf-viewer"), "--timeout", "5", env=env)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("streamforge-nb: error: NotAuthorized: "), line
    assert "user-streamforge-viewer" in line and "queue-control" in line


def test_an_unanswered_ping_says_where_it_was_delivered(broker: LocalBroker) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.settings().kafka_bootstrap_servers}
    queue_id = unique_name("wf-nobody")
    result = run("ping", "--queue-id", queue_id, "--timeout", "1", "--json", env=env)
    assert result.returncode == 0, result.stderr  # delivered, unanswered, no --expect-pong
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert set(row) == {"seq", "queue_id", "pongs", "error", "sent", "partition", "offset"}
    assert row["sent"] is True and row["queue_id"] == queue_id and row["pongs"] == []
    assert isinstance(row["partition"], int) and isinstance(row["offset"], int)


# -- interfaces machines rely on (issue 23) ----------------------------------------------------
def _exit_code_rows(text: str) -> list[tuple[int, str]]:
    row = re.compile(r"^\s*\|?\s*`?(\d+)`?\s*\|?\s+([a-z][^|\n]*)", re.M)
    return [(int(m[1]), m[2]) for m in row.finditer(text)]


def test_exit_codes_are_one_table_in_help_and_the_readme() -> None:
    helped = run("--help")
    assert helped.returncode == 0
    table = helped.stdout.split("Exit codes:", 1)[1].split("\n\n", 1)[0]
    codes = {code: meaning.split(" (")[0].strip() for code, meaning in _exit_code_rows(table)}
    assert codes == {
        0: "ok", 1: "failed", 2: "usage or bad input", 3: "not running or unreachable",
        4: "timeout", 130: "interrupted",
    }  # fmt: skip
    assert {code.value for code in ExitCode} <= set(codes)
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    in_readme = {code: meaning.split(" (")[0].strip() for code, meaning in _exit_code_rows(section)}
    assert in_readme == codes


@pytest.mark.parametrize(
    "args",
    [
        ["ping", "--queue-id", "bad id!"],
        ["candles", "--symbol", "BTCUSDT", "--interval", "7m",
         "--time-range", "2024-08-01:2024-08-02", "--plan"],
        ["loader", "--queue-id", "wf-a", "--symbol", "BTCUSDT", "--interval", "7m",
         "--time-range", "2024-08-01:2024-08-02"],
        ["messages", "queue-events", "--since", "yesterday"],
        ["check", "-X", "no.such.setting=1"],
    ],
)  # fmt: skip
def test_bad_input_is_the_usage_code_before_any_connection(args: list[str], tmp_path: Path) -> None:
    # A broker that does not exist: bad input must be named before anything connects.
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "STREAMFORGE_HOME": str(tmp_path)}
    result = run(*args, env=env, timeout=60)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "Traceback" not in result.stderr and "reachable" not in result.stderr


# Every command that lists or reports something a script may read.
REPORTERS = [
    ("check",), ("topics",), ("local", "up"), ("local", "status"), ("local", "cluster", "status"),
    ("ping",), ("stop",), ("cancel",), ("cleanup",), ("notebooks",), ("events",), ("queues",),
    ("dlq", "show"), ("dlq", "redrive"), ("lag",), ("candles",), ("doctor",),
]  # fmt: skip


@pytest.mark.parametrize("path", REPORTERS, ids=" ".join)
def test_every_command_that_reports_has_json(path: tuple[str, ...]) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    flags = {opt for p in command.params for opt in p.opts}
    assert "--json" in flags


def test_every_option_is_bound_to_an_env_var_shown_in_help() -> None:
    from streamforge_nb.cli import ENV_PREFIX

    unbound = []
    for path in command_paths(cli):
        command: click.Command = cli
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        if isinstance(command, click.Group):
            continue
        ctx = click.Context(command, info_name=path[-1], auto_envvar_prefix=ENV_PREFIX)
        for param in command.params:
            if not isinstance(param, click.Option) or param.name == "help" or param.hidden:
                continue
            extra = param.get_help_extra(ctx)
            if not param.show_envvar or not extra.get("envvars"):
                unbound.append(f"{' '.join(path)} {param.opts[0]}")
    assert unbound == []
    # Bound, not only shown: the candle workflow's options from the platform's variables.
    env = {"SYMBOL": "ETHUSDT", "INTERVAL": "5m", "TIME_RANGE": "2024-08-01:2024-08-02"}
    planned = run("candles", "--plan", env={**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["names"]["queue_id"].startswith(
        "wf-ethusdt-api_candles_5m-20240801-"
    )


def test_the_store_option_has_one_spelling_and_the_old_one_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spellings = set()
    for path in command_paths(cli):
        assert main([*path, "--help"]) == 0
        spellings |= set(re.findall(r"--store(?:-url)?\b", capsys.readouterr().out))
    assert spellings == {"--store-url"}
    store = f"local://{tmp_path / 'store'}"
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    plan = ["candles", "--symbol", "BTCUSDT", "--interval", "1m", "--time-range",
            "2024-08-01:2024-08-02", "--plan"]  # fmt: skip
    old = run(*plan, "--store", store, env=env)
    new = run(*plan, "--store-url", store, env=env)
    assert old.returncode == new.returncode == 0, old.stderr + new.stderr
    for planned in (old, new):
        sink = json.loads(planned.stdout)["jobs"][1]["spec"]["template"]["spec"]
        env_vars = {e["name"]: e["value"] for e in sink["containers"][0]["env"]}
        assert json.loads(env_vars["STREAMFORGE_PARAMETERS"])["store_url"] == store


def test_bootstrap_servers_and_kafka_settings_on_the_command_line(
    broker: LocalBroker, tmp_path: Path
) -> None:
    plain = broker.settings()
    sasl: Settings = broker.settings("user-streamforge")
    assert sasl.kafka_password is not None
    # No broker in the environment and an empty home: only -b says where it is.
    env = {"STREAMFORGE_HOME": str(tmp_path)}
    checked = run("check", "--json", "-b", plain.kafka_bootstrap_servers, env=env)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["bootstrap_servers"] == plain.kafka_bootstrap_servers

    # kcat's -X names; the password only from the environment.
    password = sasl.kafka_password.get_secret_value()
    settings = [
        "-X", f"bootstrap.servers={sasl.kafka_bootstrap_servers}",
        "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
        "-X", "sasl.username=user-streamforge", "-X", f"ssl.ca.location={sasl.kafka_ca_path}",
    ]  # fmt: skip
    over_sasl = run("check", "--json", *settings, env={**env, "KAFKA_PASSWORD": password})
    assert over_sasl.returncode == 0, over_sasl.stderr
    report = json.loads(over_sasl.stdout)
    assert report["security_protocol"] == "SASL_SSL" and report["user"] == "user-streamforge"

    on_argv = run("check", *settings, "-X", f"sasl.password={password}", env=env)
    assert on_argv.returncode == ExitCode.USAGE
    assert "KAFKA_PASSWORD" in on_argv.stderr and password not in on_argv.stderr


def _strict_json(line: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant} in {line}")

    return json.loads(line, parse_constant=refuse)


def test_queues_json_is_strict_json_in_the_apis_shape(broker: LocalBroker, tmp_path: Path) -> None:
    from streamforge_nb.api.models import QueueSummary
    from streamforge_nb.store.candles import CandleStore

    store = f"local://{tmp_path / 'store'}"
    # Records as launches leave them: fields one has and another lacks (pandas' NaN).
    records = [
        {"queue_id": unique_name("wf-json-a"), "symbol": "BTCUSDT", "type": "api_candles_1m",
         "status": "failed", "error_message": "boom", "created_at": 1722470400.5,
         "updated_at": 1722470460.0, "records_written": 7, "targets": ["loader-candles"]},
        {"queue_id": unique_name("wf-json-b"), "status": "launched", "created_at": 1722470500.0},
    ]  # fmt: skip
    with CandleStore.open(store) as opened:
        for record in records:
            opened.save_queue_state(record)
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.settings().kafka_bootstrap_servers}
    listed = run("queues", "--json", "--store-url", store, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [_strict_json(line) for line in listed.stdout.splitlines()]
    assert [row["queue_id"] for row in rows] == [r["queue_id"] for r in records]
    for row in rows:
        assert set(row) == set(QueueSummary.model_fields)  # the API's shape, nothing else
    assert rows[0]["created_at"] == "2024-08-01T00:00:00.500000Z"
    assert rows[0]["error_message"] == "boom" and rows[0]["records_written"] == 7
    assert rows[1]["error_message"] is None and rows[1]["updated_at"] is None
    assert rows[1]["symbol"] is None


def test_doctor_names_what_is_missing_and_how_to_get_it(tmp_path: Path) -> None:
    # A machine with Python only: no java or mvn on PATH, no jars cached, no kubeconfig.
    bare = {
        "PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"), "KUBECONFIG": "",
    }  # fmt: skip
    result = run("doctor", "--for", "local-broker", "--for", "kubernetes", env=bare)
    assert result.returncode == ExitCode.FAILED
    assert "MISSING java" in result.stdout and "openjdk-17" in result.stdout
    assert "MISSING maven" in result.stdout and "apt-get install maven" in result.stdout
    assert "MISSING kubeconfig" in result.stdout
    as_json = run("doctor", "--json", "--for", "local-broker", env=bare)
    checks = {row["check"]: row for row in map(_strict_json, as_json.stdout.splitlines())}
    assert set(checks) == {"java", "maven"} and not checks["java"]["ok"]
    assert checks["java"]["how"] and checks["java"]["needed_for"] == ["local-broker"]

    # A cluster user: a kubeconfig is all it takes.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    user = run("doctor", "--for", "kubernetes", env={**bare, "KUBECONFIG": str(kubeconfig)})
    assert user.returncode == 0, user.stdout
    assert f"ok      kubeconfig: {kubeconfig}" in user.stdout


def test_shell_completion_works_as_the_help_says() -> None:
    helped = run("--help").stdout
    assert "_STREAMFORGE_NB_COMPLETE=bash_source streamforge-nb" in helped
    assert "_STREAMFORGE_NB_COMPLETE=bash_source streamforge-nb" in (ROOT / "README.md").read_text()
    script = run(env={"_STREAMFORGE_NB_COMPLETE": "bash_source"})
    assert script.returncode == 0 and "complete -o nosort -F" in script.stdout
    words = run(
        env={"_STREAMFORGE_NB_COMPLETE": "bash_complete", "COMP_WORDS": "streamforge-nb que",
             "COMP_CWORD": "1"},
    )  # fmt: skip
    assert "plain,queues" in words.stdout.splitlines()


def test_a_home_too_deep_for_the_clusters_sockets_is_one_line_before_anything_is_made(
    tmp_path: Path,
) -> None:
    # Before, the background service started etcd and the API server, then containerd
    # refused its socket path, and `up` showed the service's traceback.
    home = tmp_path / ("h" * max(1, 100 - len(str(tmp_path))))
    result = run("local", "cluster", "up", env={"STREAMFORGE_HOME": str(home)}, timeout=60)
    run_dir = home / "cluster" / "run"
    socket = run_dir / "containerd" / "containerd.sock.ttrpc"
    assert result.returncode != 0
    assert result.stderr == (
        f"streamforge-nb: error: the node's directory {run_dir} is too long: containerd's "
        f"socket {socket} would take {len(str(socket))} bytes, over the 104 a Unix socket's "
        "path may; use a shorter directory\n"
    )
    assert not (home / "cluster").exists()
