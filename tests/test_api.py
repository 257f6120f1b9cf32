"""The queue-manager API: its OpenAPI document, and the app served by uvicorn on a free port,
called with a real HTTP client against the local broker, exchange server and dummy service."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import subprocess_env
from openapi_spec_validator import validate

from streamforge_nb.api.app import QueueManagerApp
from streamforge_nb.api.openapi import OPENAPI_FILE, openapi_document, write_openapi
from streamforge_nb.api.server import ApiServer
from streamforge_nb.platform.schemas import render_schema, schemas_dir
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name
from streamforge_nb.testing.exchange import ExchangeServer

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
StartDummy = Callable[..., subprocess.Popen[str]]


class Api:
    """The served app: its URL and a session carrying the token."""

    def __init__(self, url: str, store: str) -> None:
        self.url, self.store = url, store
        self.session = requests.Session()
        self.session.headers.update(AUTH)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=60)

    def post(self, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return self.session.post(self.url + path, json=body, timeout=120)


@pytest.fixture(scope="module")
def exchange() -> Iterator[ExchangeServer]:
    with ExchangeServer() as server:
        yield server


@pytest.fixture(scope="module")
def api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("api-home")
    store = f"local://{home / 'store'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREAMFORGE_HOME", str(home))  # the local launcher's runs and Jobs
        app = QueueManagerApp(TOKEN, settings, store=store)
        with ApiServer(app, "127.0.0.1", 0) as server:
            yield Api(server.url, store)


def test_the_shipped_document_is_current_and_valid_openapi(tmp_path: Path) -> None:
    document = openapi_document()
    shipped = schemas_dir() / OPENAPI_FILE
    assert shipped.read_bytes() == render_schema(document), (
        "stale: regenerate with python -m streamforge_nb.api.openapi"
    )
    assert write_openapi(tmp_path).read_bytes() == shipped.read_bytes()
    validate(document)  # raises on anything the 3.1 specification forbids
    assert document["openapi"] == "3.1.0"
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert operations == {
        ("get", "/openapi.json"), ("post", "/queues"), ("get", "/queues"),
        ("get", "/queues/{queue_id}"), ("post", "/queues/{queue_id}/stop"),
        ("post", "/queues/{queue_id}/cancel"), ("post", "/queues/{queue_id}/ping"),
    }  # fmt: skip
    schemas = document["components"]["schemas"]
    assert {"StartRequest", "QueueDetail", "PingResponse", "Pong", "ErrorResponse"} <= set(schemas)
    assert schemas["StartRequest"]["required"] == ["symbol", "interval", "time_range"]
    # The contract's Pong is the same model as its JSON Schema (pong.schema.json).
    pong = json.loads((schemas_dir() / "pong.schema.json").read_text())
    assert set(schemas["Pong"]["properties"]) == set(pong["properties"])


def test_every_route_but_the_document_needs_the_token(api: Api) -> None:
    routes = [
        ("GET", "/queues"), ("POST", "/queues"), ("GET", "/queues/wf-x"),
        ("POST", "/queues/wf-x/stop"), ("POST", "/queues/wf-x/cancel"),
        ("POST", "/queues/wf-x/ping"),
    ]  # fmt: skip
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path in routes:
            reply = requests.request(method, api.url + path, headers=headers, timeout=30)
            assert reply.status_code == 401, (method, path, headers)
            assert "bearer token" in reply.json()["error"]
            assert TOKEN not in reply.text
    document = requests.get(api.url + "/openapi.json", timeout=30)
    assert document.status_code == 200 and document.json() == openapi_document()


def test_bad_input_is_400_naming_it_before_anything_is_created(api: Api) -> None:
    before = api.get("/queues").json()["queues"]
    bad = {"symbol": "BTCUSDT", "interval": "7m", "time_range": "2024-08-01:2024-08-02"}
    reply = api.post("/queues", bad)
    assert reply.status_code == 400 and "7m" in reply.json()["error"]
    reply = api.post("/queues", {**bad, "interval": "1m", "sinkz": 2})
    assert reply.status_code == 400 and "sinkz" in reply.json()["error"]
    reply = api.post("/queues", {"symbol": "BTCUSDT"})
    assert reply.status_code == 400 and "interval" in reply.json()["error"]
    reply = api.session.post(api.url + "/queues", data=b"{not json", timeout=30)
    assert reply.status_code == 400 and "error" in reply.json()
    assert api.get("/queues").json()["queues"] == before
    reply = api.post("/queues/wf-x/ping", {"timeout": 0})
    assert reply.status_code == 400 and "timeout" in reply.json()["error"]


def test_an_unknown_queue_is_404_and_a_malformed_id_400(api: Api) -> None:
    unknown = f"wf-btcusdt-api_candles_1m-20240801-{unique_name('q')[-6:]}"
    for method, path in [("GET", ""), ("POST", "/stop"), ("POST", "/ping")]:
        reply = api.session.request(method, f"{api.url}/queues/{unknown}{path}", timeout=60)
        assert reply.status_code == 404, path
        assert unknown in reply.json()["error"]
    reply = api.get("/queues/-bad-")
    assert reply.status_code == 400 and "invalid queue id" in reply.json()["error"]
    assert api.get("/nothing").status_code == 404
    assert api.session.delete(api.url + "/queues", timeout=30).status_code == 405


def test_ping_and_stop_a_running_dummy_then_a_ping_times_out(
    api: Api, start_dummy: StartDummy
) -> None:
    queue_id = unique_name("wf-dummy")
    proc = start_dummy(queue_id)
    reply = api.post(f"/queues/{queue_id}/ping", {"timeout": 10})
    assert reply.status_code == 200, reply.text
    (pong,) = reply.json()["pongs"]
    assert pong["producer"].startswith("dummy__") and pong["round_trip_ms"] > 0
    assert pong["pong"]["status"] == "pong" and pong["pong"]["queue_id"] == queue_id
    detail = api.get(f"/queues/{queue_id}").json()
    assert [p["producer"] for p in detail["producers"]] == [pong["producer"]]
    assert detail["status"] == "running" and detail["ended"] is False
    reply = api.post(f"/queues/{queue_id}/stop", {"timeout": 20})
    assert reply.status_code == 200, reply.text
    assert reply.json()["acknowledged"] == [pong["producer"]]
    assert proc.wait(timeout=20) == 0
    detail = api.get(f"/queues/{queue_id}").json()
    assert detail["producers"][0]["status"] == "interrupted"
    reply = api.post(f"/queues/{queue_id}/ping", {"timeout": 1})
    assert reply.status_code == 504 and "no pong" in reply.json()["error"]


def test_cancel_stops_a_running_dummy(api: Api, start_dummy: StartDummy) -> None:
    queue_id = unique_name("wf-dummy")
    proc = start_dummy(queue_id)
    reply = api.post(f"/queues/{queue_id}/cancel", {"grace": 20, "kill_grace": 5})
    assert reply.status_code == 200, reply.text
    (producer,) = reply.json()["producers"]
    assert producer["producer"].startswith("dummy__")
    assert (producer["status"], producer["cancel"]) == ("interrupted", "stopped")
    assert proc.wait(timeout=20) == 0


def test_a_started_candle_workflow_runs_to_finished(api: Api, exchange: ExchangeServer) -> None:
    request = {
        "symbol": "BTCUSDT",
        "interval": "15m",
        "time_range": "2024-08-01:2024-08-03",
        "base_url": exchange.base_url,
    }
    reply = api.post("/queues", request)
    assert reply.status_code == 201, reply.text
    started = reply.json()
    queue_id = started["queue_id"]
    assert started["targets"] == ["loader-candles", "arango-candles"]
    assert started["data_topic"] == f"{queue_id}-data"
    deadline = time.monotonic() + 240
    detail = api.get(f"/queues/{queue_id}").json()
    while not detail["ended"]:
        assert time.monotonic() < deadline, f"not ended within 240 s: {detail}"
        time.sleep(0.5)
        detail = api.get(f"/queues/{queue_id}").json()
    assert detail["status"] == "finished", detail
    written = {p["producer"]: p["records_written"] for p in detail["producers"]}
    assert written == {p: 192 for p in started["producers"]}  # 2 days of 15m candles
    listed = {q["queue_id"]: q for q in api.get("/queues").json()["queues"]}
    assert listed[queue_id]["status"] == "finished"
    assert listed[queue_id]["records_written"] == 192


def test_serve_api_refuses_a_public_host_without_a_token(settings: Settings) -> None:
    env = subprocess_env(settings)
    env.pop("STREAMFORGE_API_TOKEN", None)
    command = [sys.executable, "-m", "streamforge_nb.cli", "serve-api", "--host", "0.0.0.0"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0" in done.stderr


def _lines(proc: subprocess.Popen[bytes], count: int, timeout: float = 60) -> list[str]:
    """The first `count` lines `proc` prints, or fail at `timeout`."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        # Raw reads: a buffered readline could hold lines select() no longer reports.
        while seen.count(b"\n") < count:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, f"serve-api printed only {seen!r}"
            if selector.select(left):
                seen += os.read(proc.stdout.fileno(), 65536)
    return seen.decode().splitlines()[:count]


@pytest.mark.parametrize("given", [True, False])
def test_serve_api_prints_its_url_and_serves_with_the_token(
    settings: Settings, tmp_path: Path, given: bool
) -> None:
    env = {**subprocess_env(settings), "STREAMFORGE_HOME": str(tmp_path)}
    env.pop("STREAMFORGE_API_TOKEN", None)
    if given:
        env["STREAMFORGE_API_TOKEN"] = TOKEN
    command = [sys.executable, "-m", "streamforge_nb.cli", "serve-api", "--port", "0"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
    try:
        lines = _lines(proc, 2 if given else 3)
        url = re.search(r"at (http://127\.0\.0\.1:\d+) ", lines[0])
        assert url is not None, lines
        token = TOKEN if given else lines[1].split()[1]
        assert given or len(token) >= 32
        assert all(TOKEN not in line for line in lines)  # a given token is never printed
        reply = requests.get(
            url[1] + "/queues", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        assert reply.status_code == 200 and reply.json() == {"queues": []}
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert proc.stdout is not None
        proc.stdout.close()
