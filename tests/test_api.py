"""The queue-manager API as a client meets it: `serve-api` processes on a free port, called
over HTTP against the local broker, exchange server and dummy service.

The workflow's own cases (a run to finished, the first answer of a fresh server, the list's
pages and filters, Idempotency-Key) are in test_api_queues.py; schemathesis in
test_api_schema.py; the shared server fixture in api_server.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_server import AUTH, TOKEN, Api, StartDummy, lines_of, serve
from conftest import subprocess_env
from openapi_spec_validator import validate

from streamforge_nb.api.openapi import DEFAULT_SERVER, OPENAPI_FILE, openapi_document, write_openapi
from streamforge_nb.platform.schemas import render_schema, schemas_dir
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name
from streamforge_nb.testing.exchange import ExchangeServer

PROBLEM = "application/problem+json"
START = {"symbol": "BTCUSDT", "interval": "1m", "time_range": "2024-08-01:2024-08-02"}
ROUTES = [
    ("GET", "/queues"), ("POST", "/queues"), ("GET", "/queues/wf-x"),
    ("POST", "/queues/wf-x/stop"), ("POST", "/queues/wf-x/cancel"),
    ("POST", "/queues/wf-x/ping"),
]  # fmt: skip


@pytest.fixture(scope="module")
def api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("api")
    with ExchangeServer() as exchange, serve(settings, home, exchange_url=exchange.base_url) as api:
        yield api


def _problem(reply: requests.Response, status: int) -> dict[str, object]:
    """The RFC 9457 body of an error reply of `status` (asserted)."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["content-type"] == PROBLEM
    body = reply.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    assert TOKEN not in reply.text
    return dict(body)


def _fields(body: dict[str, object]) -> set[str]:
    errors = body.get("errors")
    assert isinstance(errors, list), body
    return {str(e["field"]) for e in errors}


def test_the_shipped_document_is_current_and_valid_openapi(tmp_path: Path) -> None:
    document = openapi_document()
    shipped = schemas_dir() / OPENAPI_FILE
    assert shipped.read_bytes() == render_schema(document), (
        "stale: regenerate with python -m streamforge_nb.api.openapi"
    )
    assert write_openapi(tmp_path).read_bytes() == shipped.read_bytes()
    validate(document)  # raises on anything the 3.1 specification forbids
    assert document["openapi"].startswith("3.1.")
    assert document["servers"] == [{"url": DEFAULT_SERVER}]
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert operations == {
        ("get", "/openapi.json"), ("get", "/healthz"), ("get", "/metrics"),
        ("post", "/queues"), ("get", "/queues"),
        ("get", "/queues/{queue_id}"), ("post", "/queues/{queue_id}/stop"),
        ("post", "/queues/{queue_id}/cancel"), ("post", "/queues/{queue_id}/ping"),
    }  # fmt: skip
    schemas = document["components"]["schemas"]
    assert {"StartRequest", "QueueDetail", "PingResponse", "Pong", "Problem"} <= set(schemas)
    assert schemas["StartRequest"]["required"] == ["symbol", "interval", "time_range"]
    # The contract's Pong is the same model as its JSON Schema (pong.schema.json).
    pong = json.loads((schemas_dir() / "pong.schema.json").read_text())
    assert set(schemas["Pong"]["properties"]) == set(pong["properties"])


def test_the_served_document_names_the_real_server_and_every_status(api: Api) -> None:
    document = requests.get(api.url + "/openapi.json", timeout=30).json()
    assert document["servers"] == [{"url": api.url}]
    assert document["paths"] == openapi_document()["paths"]
    paths = document["paths"]
    declared = {
        (method, path): set(op["responses"]) for path, item in paths.items()
        for method, op in item.items()
    }  # fmt: skip
    assert {"201", "401", "405", "409", "413", "422", "502", "503"} <= declared["post", "/queues"]
    assert {"200", "401", "404", "405", "422"} <= declared["get", "/queues/{queue_id}"]
    assert {"404", "409", "504"} <= declared["post", "/queues/{queue_id}/stop"]
    start = paths["/queues"]["post"]["responses"]
    assert "Location" in start["201"]["headers"]
    assert "WWW-Authenticate" in start["401"]["headers"]
    assert "Allow" in start["405"]["headers"]
    assert set(start["422"]["content"]) == {PROBLEM}


def test_every_route_but_the_public_ones_needs_the_token(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path in ROUTES:
            reply = requests.request(method, api.url + path, headers=headers, timeout=30)
            body = _problem(reply, 401)
            assert "bearer token" in str(body["detail"]), (method, path, headers)
            challenge = reply.headers["WWW-Authenticate"]
            assert challenge.startswith("Bearer realm="), challenge
            # RFC 6750: an error code only for a bearer token that is wrong.
            assert ("invalid_token" in challenge) == (
                headers.get("Authorization") == "Bearer wrong"
            )
    health = requests.get(api.url + "/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    metrics = requests.get(api.url + "/metrics", timeout=30)
    assert metrics.status_code == 200
    assert 'streamforge_api_requests_total{method="GET",route="/queues",status="401"}' in (
        metrics.text
    )


def test_routing_errors_are_problems_with_their_headers(api: Api) -> None:
    _problem(api.get("/nothing"), 404)
    reply = api.session.delete(api.url + "/queues", timeout=30)
    _problem(reply, 405)
    assert set(reply.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    reply = api.session.put(api.url + "/queues/wf-x/stop", timeout=30)
    assert _problem(reply, 405) and reply.headers["Allow"] == "POST"
    before = api.get("/queues").json()["queues"]
    big = {**START, "archives": ["x" * 10_000_000]}  # 10 MB
    body = _problem(api.post("/queues", big), 413)
    assert "over" in str(body["detail"])
    # A body streamed without a Content-Length is cut off at the limit too.
    chunks = (b"x" * 65536 for _ in range(40))
    reply = api.session.post(api.url + "/queues", data=chunks, timeout=60)
    _problem(reply, 413)
    assert api.get("/queues").json()["queues"] == before


def test_bad_input_is_422_naming_each_field_before_anything_is_created(api: Api) -> None:
    before = api.get("/queues").json()["queues"]
    body = _problem(api.post("/queues", {**START, "interval": "7m"}), 422)
    assert "7m" in str(body["detail"])
    assert _fields(_problem(api.post("/queues", {**START, "sinkz": 2}), 422)) == {"body.sinkz"}
    assert "body.interval" in _fields(_problem(api.post("/queues", {"symbol": "BTCUSDT"}), 422))
    assert _fields(_problem(api.post("/queues", {**START, "sinks": "2"}), 422)) == {"body.sinks"}
    reply = api.session.post(api.url + "/queues", data=b"{not json", timeout=30)
    _problem(reply, 422)
    # Not UTF-8 at all: FastAPI's own answer was an undocumented 400 (found by schemathesis).
    json_type = {"Content-Type": "application/json"}
    reply = api.session.post(api.url + "/queues", data=b"\xffQ", headers=json_type, timeout=30)
    assert _fields(_problem(reply, 422)) == {"body"}
    assert api.get("/queues").json()["queues"] == before
    timeout = _problem(api.post("/queues/wf-x/ping", {"timeout": 0}), 422)
    assert _fields(timeout) == {"body.timeout"}
    for query in ("limit=0", "limit=x", "status=done", "created_after=yesterday", "cursor=%%"):
        body = _problem(api.get(f"/queues?{query}"), 422)
        assert _fields(body) == {"query." + query.split("=")[0]}, query


def test_server_paths_and_urls_only_from_the_allow_list(api: Api) -> None:
    before = api.get("/queues").json()["queues"]
    refused: list[tuple[dict[str, object], str]] = [
        ({"source": "archive", "archives": ["/etc/passwd"]}, "body.archives[0]"),
        ({"source": "archive", "archives": ["file:///etc/passwd"]}, "body.archives[0]"),
        # Inside by its text, outside once resolved.
        ({"source": "archive", "archives": [f"{api.archives}/../x.zip"]}, "body.archives[0]"),
        ({"source": "archive", "archives": ["http://127.0.0.1:9/x.zip"]}, "body.archives[0]"),
        ({"base_url": "http://127.0.0.1:9"}, "body.base_url"),
        ({"base_url": api.exchange_url + "/evil"}, "body.base_url"),
    ]
    for extra, field in refused:
        body = _problem(api.post("/queues", {**START, **extra}), 422)
        assert _fields(body) == {field}, extra
        assert "allow" in str(body["detail"]) or "not accepted" in str(body["detail"])
    assert api.get("/queues").json()["queues"] == before


def test_a_server_without_kubeconfig_answers_503_and_records_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    env = {"KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    with serve(settings, tmp_path, env=env) as api:
        reply = api.post("/queues", {**START, "launcher": "kubernetes"})
        body = _problem(reply, 503)
        assert "Kubernetes config" in str(body["detail"])
        assert api.get("/queues").json()["queues"] == []


def test_an_unknown_queue_is_404_and_a_malformed_id_422(api: Api) -> None:
    unknown = f"wf-btcusdt-api_candles_1m-20240801-{unique_name('q')[-6:]}"
    for method, path in [("GET", ""), ("POST", "/stop"), ("POST", "/ping")]:
        reply = api.session.request(method, f"{api.url}/queues/{unknown}{path}", timeout=60)
        assert unknown in str(_problem(reply, 404)["detail"]), path
    body = _problem(api.get("/queues/-bad-"), 422)
    assert _fields(body) == {"path.queue_id"} and "invalid queue id" in str(body["detail"])


def test_ping_and_stop_a_running_dummy_then_stop_again_is_409(
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
    assert detail["producers"][0]["last_seen"].endswith("Z")  # ISO 8601, UTC
    reply = api.post(f"/queues/{queue_id}/stop", {"timeout": 20})
    assert reply.status_code == 200, reply.text
    assert reply.json()["acknowledged"] == [pong["producer"]]
    assert proc.wait(timeout=20) == 0
    detail = api.get(f"/queues/{queue_id}").json()
    assert detail["producers"][0]["status"] == "interrupted"
    # Stopping a stopped queue: a conflict with its state, at once, not a 504 after 30 s.
    again = _problem(api.post(f"/queues/{queue_id}/stop", {"timeout": 30}), 409)
    assert again["queue_status"] == "interrupted" and "has ended" in str(again["detail"])
    body = _problem(api.post(f"/queues/{queue_id}/ping", {"timeout": 1}), 504)
    assert "no pong" in str(body["detail"])


def test_cancel_stops_a_running_dummy(api: Api, start_dummy: StartDummy) -> None:
    queue_id = unique_name("wf-dummy")
    proc = start_dummy(queue_id)
    reply = api.post(f"/queues/{queue_id}/cancel", {"grace": 20, "kill_grace": 5})
    assert reply.status_code == 200, reply.text
    (producer,) = reply.json()["producers"]
    assert producer["producer"].startswith("dummy__")
    assert (producer["status"], producer["cancel"]) == ("interrupted", "stopped")
    assert proc.wait(timeout=20) == 0


def test_the_access_log_has_a_json_line_per_request_and_never_the_token(
    settings: Settings, tmp_path: Path
) -> None:
    with serve(settings, tmp_path) as api:
        sent = [api.get("/queues"), api.get("/healthz"), api.get("/nothing")]
        sent.append(requests.get(api.url + "/queues", headers={"Authorization": TOKEN}, timeout=30))
        sent.append(api.session.delete(api.url + "/queues", timeout=30))
        request_ids = [reply.headers["x-request-id"] for reply in sent]
    text = api.log.read_text()
    assert TOKEN not in text
    access = [
        entry for entry in map(json.loads, text.splitlines())
        if entry["logger"] == "streamforge_nb.api.access"
    ]  # fmt: skip
    assert [e["request_id"] for e in access] == request_ids
    assert [(e["http_method"], e["path"], e["status"]) for e in access] == [
        ("GET", "/queues", 200), ("GET", "/healthz", 200), ("GET", "/nothing", 404),
        ("GET", "/queues", 401), ("DELETE", "/queues", 405),
    ]  # fmt: skip
    assert access[0]["route"] == "/queues" and access[2]["route"] == "unmatched"
    assert all(e["duration_ms"] >= 0 and e["bytes"] > 0 for e in access)


def test_serve_api_refuses_a_public_host_without_a_token(settings: Settings) -> None:
    env = subprocess_env(settings)
    env.pop("STREAMFORGE_API_TOKEN", None)
    command = [sys.executable, "-m", "streamforge_nb.cli", "serve-api", "--host", "0.0.0.0"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0" in done.stderr


def test_serve_api_prints_a_random_token_when_none_is_given(
    settings: Settings, tmp_path: Path
) -> None:
    env = {**subprocess_env(settings), "STREAMFORGE_HOME": str(tmp_path)}
    env.pop("STREAMFORGE_API_TOKEN", None)
    command = [sys.executable, "-m", "streamforge_nb.cli", "serve-api", "--port", "0"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        lines = lines_of(proc, 3)
        url = lines[0].split(" at ", 1)[1].split()[0]
        token = lines[1].split()[1]
        assert len(token) >= 32
        reply = requests.get(
            url + "/queues", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        assert reply.status_code == 200 and reply.json() == {"queues": [], "next_cursor": None}
        assert requests.get(url + "/queues", headers=AUTH, timeout=60).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert proc.stdout is not None
        proc.stdout.close()
