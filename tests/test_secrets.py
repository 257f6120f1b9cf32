"""No secret in a log at any level, nor on a command line: debug logs under SASL, `local up`."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from conftest import command_lines, subprocess_env, wait_for_status

from streamforge_nb.control.state import new_record
from streamforge_nb.exchange.archives import SAMPLE_ARCHIVE
from streamforge_nb.kafka.clients import make_admin, make_consumer, make_producer
from streamforge_nb.platform.names import new_short_id, queue_id
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore

CLI = [sys.executable, "-m", "streamforge_nb.cli"]


def _password(settings: Settings) -> str:
    assert settings.kafka_password is not None
    return settings.kafka_password.get_secret_value()


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_debug_logs_of_every_kafka_command_hold_no_password(
    platform_settings: Settings, tmp_path: Path
) -> None:
    password = _password(platform_settings)
    env = subprocess_env(platform_settings, STREAMFORGE_HOME=str(tmp_path))
    store = f"local://{tmp_path / 'store'}"
    qid = queue_id("BTCUSDT", "api_candles_1m", dt.date(2024, 8, 1), new_short_id())
    with CandleStore.open(store) as opened:  # what `queues`, `cancel` and `cleanup` look up
        opened.save_queue_state(
            new_record(
                queue_id=qid, symbol="BTCUSDT", type_="api_candles_1m",
                targets=["loader-candles", "arango-candles", "dummy"], parameters={},
                data_topic=f"{qid}-data", outputs={}, launcher="local", jobs=[],
            )
        )  # fmt: skip
    q = ["--queue-id", qid]
    outputs: dict[str, str] = {}

    def run(name: str, *args: str) -> None:
        result = _run(env, *args)
        outputs[name] = result.stdout + result.stderr
        assert result.returncode == 0, f"{name}: {outputs[name][-3000:]}"

    run("check", "--debug", "check")
    run("topics", "--debug", "topics")
    loader = ("loader", "--debug", *q, "--symbol", "BTCUSDT", "--interval", "1m")
    run(
        "loader", *loader, "--time-range", "2024-08-01:2024-08-02",
        "--source", "archive", "--archive", str(SAMPLE_ARCHIVE),
    )  # fmt: skip
    run("sink", "sink", "--debug", *q, "--store-url", store)  # ends: the loader finished
    log = tmp_path / "dummy.log"  # a file: a pipe nobody reads fills and blocks the dummy
    with log.open("w") as output:
        dummy = subprocess.Popen(
            [*CLI, "dummy", "--debug", *q, "--metrics-port", "0"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_status(platform_settings, qid, "started")
        run("ping", "--debug", "ping", *q, "--target", "dummy", "--expect-pong")
        run("events", "--debug", "events", *q)
        run("queues", "--debug", "queues", "--store", store)
        run("stop", "--debug", "stop", *q, "--target", "dummy", "--timeout", "30")
        assert dummy.wait(timeout=60) == 0
    finally:
        if dummy.poll() is None:
            dummy.kill()
            dummy.wait()
    outputs["dummy"] = log.read_text()
    run("cancel", "--debug", "cancel", *q, "--grace", "1", "--store", store)
    run("cleanup", "--debug", "cleanup", *q, "--store", store)

    for name, text in outputs.items():
        assert password not in text, f"{name} printed the password"
        assert "DEBUG" in text or '"level": "debug"' in text, f"{name}: no debug logs"
    # kafka-python's admin client dumps its configuration: the key is there, the value is not.
    assert "'sasl_plain_password': '***'" in outputs["check"]
    assert "'sasl_plain_password': '***'" in outputs["sink"]


def test_a_users_own_logging_gets_no_password(platform_settings: Settings) -> None:
    # A notebook user turns kafka-python's debug logs on with a handler of their own.
    password = _password(platform_settings)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    kafka_logger = logging.getLogger("kafka")
    level = kafka_logger.level
    logging.getLogger().addHandler(handler)
    kafka_logger.setLevel(logging.DEBUG)
    try:
        make_admin(platform_settings).close()
        make_producer(platform_settings).close()
        make_consumer(platform_settings).close()
    finally:
        logging.getLogger().removeHandler(handler)
        kafka_logger.setLevel(level)
    text = stream.getvalue()
    assert "'sasl_plain_password': '***'" in text
    assert password not in text


def _cmdlines_with(needle: bytes) -> list[bytes]:
    return [cmdline for _, cmdline in command_lines() if needle in cmdline]


def test_local_up_puts_no_scram_password_on_a_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    argfile = home / "config" / "storage-format.args"
    seen: set[bytes] = set()
    modes: set[int] = set()
    done = threading.Event()

    def sample() -> None:
        # Every command line that names the home, while `local up` formats and starts.
        while not done.is_set():
            seen.update(_cmdlines_with(str(home).encode()))
            with contextlib.suppress(OSError):
                modes.add(argfile.stat().st_mode & 0o777)

    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env["STREAMFORGE_HOME"] = str(home)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        up = _run(env, "local", "up", "--port", "0")
    finally:
        done.set()
        sampler.join()
    try:
        assert up.returncode == 0, up.stderr
        credentials = json.loads((home / "credentials.json").read_text())
        assert set(credentials) == {"admin", "user-streamforge", "user-streamforge-viewer"}
        # The storage was formatted while sampled (its command line names the tool or the file).
        assert any(b"StorageTool" in c or b"storage-format.args" in c for c in seen)
        assert any(b"kafka.Kafka" in c for c in seen)
        for user, password in credentials.items():
            assert all(password.encode() not in c for c in seen), f"{user}'s password"
            assert password not in up.stdout + up.stderr
        assert not argfile.exists()
        assert modes <= {0o600}
    finally:
        _run(env, "local", "down")
