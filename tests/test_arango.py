"""The ArangoDB backend's requests, connections and `store init`.

No ArangoDB server can run here. These tests check what the library SENDS, with
python-arango's real client, against `Recorder`: a tiny HTTP server on 127.0.0.1 that records
each request and answers the few JSON bodies python-arango needs to go on. It keeps nothing
and is never a database: no test here claims anything about how a server behaves. What a
server does is checked by the tests at the end, which run only where
STREAMFORGE_TEST_ARANGO_URL is set (with STREAMFORGE_TEST_ARANGO_USER/PASSWORD of an admin).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pydantic import SecretStr

from streamforge_nb.cli import main
from streamforge_nb.exceptions import (
    ConfigError,
    StoreAuthError,
    StoreCertificateError,
    StoreError,
    StoreUnavailable,
)
from streamforge_nb.platform.contract import Candle
from streamforge_nb.settings import Settings
from streamforge_nb.store.arango_init import init_store
from streamforge_nb.store.candles import CandleStore

MIN = 60_000
AUG1 = 1_722_470_400_000  # 2024-08-01 00:00 UTC
DAY = 86_400_000
ARANGO_URL = os.environ.get("STREAMFORGE_TEST_ARANGO_URL", "")
REAL_SERVER = pytest.mark.skipif(
    not ARANGO_URL,
    reason="STREAMFORGE_TEST_ARANGO_URL is not set: what a real ArangoDB server does is "
    "checked only against one (plus STREAMFORGE_TEST_ARANGO_USER/PASSWORD of an admin); "
    "it is never faked",
)


def day_names(symbol: str, days: int, first: date = date(2024, 8, 1)) -> list[str]:
    return [f"{symbol}_api_candles_1m_{first + timedelta(d):%Y_%m_%d}" for d in range(days)]


def candles(start_ms: int, n: int) -> list[Candle]:
    fields = {"open": "1.5", "high": "2.5", "low": "1.0", "close": "2.0", "volume": "3",
              "quote_asset_volume": "4", "taker_buy_base_asset_volume": "1",
              "taker_buy_quote_asset_volume": "2", "number_of_trades": 5}  # fmt: skip
    return [
        Candle.model_validate(
            {"_key": f"BTCUSDT_1m_{t}", "open_time": t, "close_time": t + MIN - 1, **fields}
        )
        for t in range(start_ms, start_ms + n * MIN, MIN)
    ]


# --- the recording stub ---------------------------------------------------------------------


@dataclass
class Seen:
    """One request: method, path (`/_db/<db>/_api/...`), query, JSON body, basic-auth user."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    user: str

    @property
    def api(self) -> str:
        """The path without `/_db/<db>`."""
        return "/_api/" + self.path.split("/_api/", 1)[1]


@dataclass
class Recorder:
    """Records requests; answers as a server holding `collections`, `databases`, `users`.

    `refuse` maps (method, api prefix) to (HTTP status, ArangoDB error number); `refuse_user`
    answers 401 to every request made as that user. Nothing a request sends changes what it
    answers: it is not a database.
    """

    collections: set[str] = field(default_factory=set)
    databases: set[str] = field(default_factory=lambda: {"_system"})
    users: set[str] = field(default_factory=set)
    permissions: dict[str, Any] = field(default_factory=dict)
    indexes: dict[str, list[list[str]]] = field(default_factory=dict)
    refuse: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    refuse_user: str | None = None
    seen: list[Seen] = field(default_factory=list)

    def answer(self, seen: Seen) -> tuple[int, Any]:
        method, api = seen.method, seen.api
        if seen.user == self.refuse_user:
            return 401, {"error": True, "code": 401, "errorNum": 401, "errorMessage": "no"}
        for (m, prefix), (status, errnum) in self.refuse.items():
            if m == method and api.startswith(prefix):
                return status, {"error": True, "code": status, "errorNum": errnum,
                                "errorMessage": f"refused ({errnum})"}  # fmt: skip
        parts = api.split("/")[2:]  # after "/_api/"
        if api == "/_api/collection" and method == "GET":
            return 200, {"result": [{"id": str(i), "name": n, "isSystem": False, "type": 2}
                                    for i, n in enumerate(sorted(self.collections))]}  # fmt: skip
        if parts[0] == "collection" and parts[-1] == "count":
            return 200, {"count": 0}
        if parts[0] == "collection" and len(parts) == 3:
            if parts[1] not in self.collections:
                return 404, {"error": True, "code": 404, "errorNum": 1203,
                             "errorMessage": "collection or view not found"}  # fmt: skip
            return 200, {"id": "1", "name": parts[1], "count": 0, "type": 2}
        if api == "/_api/collection" and method == "POST":
            return 200, {"id": "9", "name": seen.body["name"], "type": 2}
        if api == "/_api/index" and method == "GET":
            fields = self.indexes.get(seen.query["collection"][0], [])
            return 200, {"indexes": [{"id": f"x/{i}", "type": "persistent", "fields": f}
                                     for i, f in enumerate([["_key"], *fields])]}  # fmt: skip
        if api == "/_api/index":
            return 201, {"id": "x/9", "isNewlyCreated": True, "code": 201, "error": False,
                         **seen.body}  # fmt: skip
        if parts[0] == "document" and method == "POST":
            docs = seen.body if isinstance(seen.body, list) else [seen.body]
            made = [{"_id": f"{parts[1]}/{d['_key']}", "_key": d["_key"], "_rev": "1"}
                    for d in docs]  # fmt: skip
            return 202, made if isinstance(seen.body, list) else made[0]
        if api == "/_api/cursor":
            return 201, {"result": self._query(seen.body), "hasMore": False, "error": False}
        if api == "/_api/database" and method == "GET":
            return 200, {"result": sorted(self.databases)}
        if api == "/_api/database":
            return 201, {"result": True}
        if parts[0] == "user" and len(parts) == 2 and method == "GET":
            if parts[1] not in self.users:
                return 404, {"error": True, "code": 404, "errorNum": 1703,
                             "errorMessage": "user not found"}  # fmt: skip
            return 200, {"user": parts[1], "active": True, "extra": {}}
        if parts[0] == "user" and len(parts) <= 2:
            return 201, {"user": seen.body.get("user", parts[-1]), "active": True, "extra": {}}
        if parts[0] == "user" and method == "GET":
            return 200, {"result": self.permissions}
        if parts[0] == "user":
            return 200, {"result": {}}
        return 404, {"error": True, "code": 404, "errorNum": 404, "errorMessage": "no route"}

    def _query(self, body: dict[str, Any]) -> Any:
        query, binds = body["query"], body.get("bindVars", {})
        if "COLLECTIONS()" in query:
            return [n for n in sorted(self.collections) if n.startswith(binds["head"])]
        if query.startswith("RETURN ["):  # coverage: one entry per collection named
            return [[{"rows": 0, "first": None, "last": None} for k in binds if k[0] == "@"]]
        return []

    def of(self, method: str, api: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.api.startswith(api)]

    def kinds(self) -> list[tuple[str, str]]:
        return [(s.method, s.api) for s in self.seen]


@dataclass
class Stub:
    recorder: Recorder
    url: str
    server: ThreadingHTTPServer


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization", "")
            user = ""
            if auth.startswith("Basic "):
                user = base64.b64decode(auth[6:]).decode().partition(":")[0]
            seen = Seen(self.command, unquote(parts.path), parse_qs(parts.query),
                        json.loads(raw) if raw else None, user)  # fmt: skip
            recorder.seen.append(seen)
            status, body = recorder.answer(seen)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def start_stub(recorder: Recorder, tls: ssl.SSLContext | None = None) -> Stub:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    scheme = "http"
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Stub(recorder, f"{scheme}://127.0.0.1:{server.server_address[1]}", server)


@pytest.fixture
def stub() -> Iterator[Stub]:
    made = start_stub(Recorder())
    yield made
    made.server.shutdown()
    made.server.server_close()


def open_store(stub: Stub, **settings: Any) -> CandleStore:
    values = {"arango_user": "sf", "arango_password": "pw-Qx81", **settings}
    return CandleStore.open(f"{stub.url}/_db/streamforge", Settings(**values))


# --- request fan-out ------------------------------------------------------------------------


def test_a_load_asks_for_the_series_names_then_reads_the_range_in_one_query(stub: Stub) -> None:
    rec = stub.recorder
    # A month of the series, a month of another symbol, and the platform's collections.
    rec.collections = {*day_names("btcusdt", 30), *day_names("ethusdt", 30), "queue_state"}
    with open_store(stub) as store:
        store.load("BTCUSDT", "1m", AUG1 + 9 * DAY, AUG1 + 11 * DAY + 5 * MIN)
    # Two cursors: the series' names (filtered by the server), then one query over them.
    assert rec.kinds() == [("POST", "/_api/cursor")] * 2, rec.kinds()
    names_query, read_query = (s.body for s in rec.seen)
    assert "COLLECTIONS()" in names_query["query"]
    assert names_query["bindVars"] == {"head": "btcusdt_api_candles_1m_"}
    # Every collection named before the end (a workflow's may hold later days), none after.
    named = sorted(v for k, v in read_query["bindVars"].items() if k.startswith("@"))
    assert named == day_names("btcusdt", 12)
    assert read_query["bindVars"]["start"] == AUG1 + 9 * DAY


def test_a_load_of_one_second_candles_keeps_each_query_bounded(stub: Stub) -> None:
    stub.recorder.collections = set(day_names("btcusdt", 7))
    stub.recorder.collections = {n.replace("_1m_", "_1s_") for n in stub.recorder.collections}
    with open_store(stub) as store:
        store.load("BTCUSDT", "1s", AUG1, AUG1 + 7 * DAY)
    reads = stub.recorder.of("POST", "/_api/cursor")[1:]
    # 86,400 candles a day: two collections per query, four queries for seven days.
    assert [sum(k.startswith("@") for k in s.body["bindVars"]) for s in reads] == [2, 2, 2, 1]


def test_coverage_is_one_listing_and_one_query_per_hundred_collections(stub: Stub) -> None:
    stub.recorder.collections = {*day_names("btcusdt", 150), *day_names("ethusdt", 100),
                                 "queue_state", "exchange_empty", "notes"}  # fmt: skip
    with open_store(stub) as store:
        assert store.coverage().empty  # the stub holds no candles: nothing to claim
        listing, cursor = ("GET", "/_api/collection"), ("POST", "/_api/cursor")
        assert stub.recorder.kinds() == [listing, cursor, cursor, cursor]
        queries = stub.recorder.of("POST", "/_api/cursor")
        assert sum(len([k for k in q.body["bindVars"] if k[0] == "@"]) for q in queries) == 250


def test_ten_queue_state_saves_list_the_collections_once(stub: Stub) -> None:
    stub.recorder.collections = {"queue_state", *day_names("btcusdt", 300)}
    with open_store(stub) as store:
        for i in range(10):
            store.save_queue_state({"queue_id": f"wf-q{i}", "status": "running"})
    listing, insert = ("GET", "/_api/collection"), ("POST", "/_api/document/queue_state")
    assert stub.recorder.kinds() == [listing] + [insert] * 10


def test_a_collection_made_by_another_process_is_asked_for_by_name(stub: Stub) -> None:
    # This process listed before exchange_empty existed; a later write asks for it by name
    # (found: nothing is created) and the created-by-us path is never taken.
    rec = stub.recorder
    rec.collections = {"queue_state"}
    with open_store(stub) as store:
        store.save_queue_state({"queue_id": "wf-q0"})
        rec.collections.add("exchange_empty")
        store.backend.write_exchange_empty("BTCUSDT", "1m", [(AUG1, AUG1 + MIN)])
    assert rec.kinds() == [
        ("GET", "/_api/collection"),
        ("POST", "/_api/document/queue_state"),
        ("GET", "/_api/collection/exchange_empty/properties"),
        ("POST", "/_api/document/exchange_empty"),
    ]


def test_a_missing_day_collection_is_created_with_its_index_once(stub: Stub) -> None:
    with open_store(stub) as store:
        store.write(candles(AUG1, 3))
        store.write(candles(AUG1 + 3 * MIN, 3))
    assert stub.recorder.kinds() == [
        ("GET", "/_api/collection"),
        ("GET", "/_api/collection/btcusdt_api_candles_1m_2024_08_01/properties"),
        ("POST", "/_api/collection"),
        ("POST", "/_api/index"),
        ("POST", "/_api/document/btcusdt_api_candles_1m_2024_08_01"),
        ("POST", "/_api/document/btcusdt_api_candles_1m_2024_08_01"),
    ]
    assert stub.recorder.of("POST", "/_api/index")[0].body["fields"] == ["open_time"]


# --- refusals -------------------------------------------------------------------------------


def test_a_user_without_database_rights_writes_into_existing_collections(stub: Stub) -> None:
    rec = stub.recorder
    rec.collections = {"btcusdt_api_candles_1m_2024_08_01", "queue_state"}
    rec.refuse = {("POST", "/_api/collection"): (403, 11), ("POST", "/_api/index"): (403, 11)}
    with open_store(stub) as store:
        assert store.write(candles(AUG1, 3)) == 3
        store.save_queue_state({"queue_id": "wf-q0"})
        # A collection that does not exist: the refusal says what creating one needs.
        with pytest.raises(StoreAuthError) as info:
            store.write(candles(AUG1 + DAY, 1))
    text = str(info.value)
    assert "cannot create collection btcusdt_api_candles_1m_2024_08_02" in text
    assert "needs rw on database streamforge for user sf" in text
    assert "error 11" in text and "ERROR_FORBIDDEN" in text and "pw-Qx81" not in text
    assert len(rec.of("POST", "/_api/collection")) == 1


@pytest.mark.parametrize(
    ("status", "errnum", "kind", "words"),
    [
        (404, 1228, StoreError, "the database does not exist; `streamforge-nb store init`"),
        (401, 401, StoreAuthError, "wrong user or password (ARANGO_USER / ARANGO_PASSWORD)"),
        (403, 11, StoreAuthError, "ERROR_FORBIDDEN: the user lacks the rights"),
    ],
)
def test_refusals_are_named(stub: Stub, status: int, errnum: int, kind: type, words: str) -> None:
    refusal = (status, errnum)
    stub.recorder.refuse = {("GET", "/_api/"): refusal, ("POST", "/_api/"): refusal}
    with open_store(stub) as store, pytest.raises(kind) as info:
        store.save_queue_state({"queue_id": "wf-q0"})
    assert words in str(info.value) and f"error {errnum}" in str(info.value)


# --- TLS and unreachable servers ------------------------------------------------------------


@pytest.fixture
def tls_stub(tmp_path: Path) -> Iterator[tuple[Stub, Path]]:
    from streamforge_nb.local.tls import make_server_certificate

    made = make_server_certificate(organization="arango test", common_name="127.0.0.1",
                                   ip_addresses=["127.0.0.1"], dns_names=[])  # fmt: skip
    (tmp_path / "ca.crt").write_bytes(made.ca_pem)
    (tmp_path / "server.pem").write_bytes(made.cert_pem + made.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem")
    stub = start_stub(Recorder(collections={"queue_state"}), tls=context)
    yield stub, tmp_path / "ca.crt"
    stub.server.shutdown()
    stub.server.server_close()


def test_an_untrusted_certificate_is_named_and_arango_ca_path_trusts_it(
    tls_stub: tuple[Stub, Path],
) -> None:
    stub, ca = tls_stub
    with open_store(stub) as store, pytest.raises(StoreCertificateError) as info:
        store.queue_states()
    text = str(info.value)
    assert "certificate not trusted" in text and "ARANGO_CA_PATH unset" in text
    assert "certificate verify failed" in text and "127.0.0.1" in text, text
    assert stub.recorder.seen == []  # no request got through
    with open_store(stub, arango_ca_path=str(ca)) as store:
        assert store.queue_states() == []
    assert stub.recorder.kinds() == [("GET", "/_api/collection"), ("POST", "/_api/cursor")]


def test_a_missing_ca_file_is_a_config_error_before_any_request(stub: Stub, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ARANGO_CA_PATH .*not a readable file"):
        open_store(stub, arango_ca_path=str(tmp_path / "absent.crt"))
    assert stub.recorder.seen == []


def test_the_arango_settings_come_from_the_environment() -> None:
    env = {"ARANGO_CA_PATH": "/etc/arango/ca.crt", "ARANGO_CONNECT_TIMEOUT": "2.5",
           "ARANGO_REQUEST_TIMEOUT": "120", "KAFKA_BOOTSTRAP_SERVERS": "x:1"}  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.arango_ca_path == "/etc/arango/ca.crt"
    assert (settings.arango_connect_timeout, settings.arango_request_timeout) == (2.5, 120)
    with pytest.raises(ConfigError, match="arango_connect_timeout"):
        Settings.from_env({**env, "ARANGO_CONNECT_TIMEOUT": "0"})


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose SYNs go unanswered: a listener (backlog 0) whose queue is full."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    held = []
    for _ in range(8):
        client = socket.socket()
        client.settimeout(0.3)
        try:
            client.connect(("127.0.0.1", port))
        except OSError:
            client.close()
            break
        held.append(client)
    else:
        pytest.fail("the listener's queue never filled: no black hole")
    yield port
    for client in held:
        client.close()
    server.close()


def test_a_black_holed_server_is_named_unreachable(black_hole: int) -> None:
    password = SecretStr("pw-Qx81")
    settings = Settings(arango_user="sf", arango_password=password, arango_connect_timeout=0.5)
    began = time.monotonic()
    store = CandleStore.open(f"http://127.0.0.1:{black_hole}", settings)
    with store, pytest.raises(StoreUnavailable) as info:
        store.load("BTCUSDT", "1m", AUG1, AUG1 + DAY)
    # The figure, for the record (docs/operations.md derives the bound: 2 x 0.5 s here).
    print(f"black-holed server: unreachable after {time.monotonic() - began:.2f} s")
    text = str(info.value)
    assert "no ArangoDB server reachable" in text and f"127.0.0.1:{black_hole}" in text
    assert "ARANGO_CONNECT_TIMEOUT" in text and "pw-Qx81" not in text


# --- store init -----------------------------------------------------------------------------


def init_settings(stub: Stub, **extra: Any) -> Settings:
    values = {"arango_url": stub.url, "arango_db": "candles", "arango_user": "sf",
              "arango_password": "pw-Qx81", **extra}  # fmt: skip
    return Settings(**values)


def test_store_init_on_a_fresh_server_creates_everything_as_the_admin(stub: Stub) -> None:
    report = init_store(init_settings(stub), root_user="root", root_password="rootpw-Zz9")
    rec = stub.recorder
    writes = [(s.method, s.path) for s in rec.seen if s.method != "GET"]
    assert writes == [
        ("POST", "/_db/_system/_api/database"),
        ("POST", "/_db/_system/_api/user"),
        ("PUT", "/_db/_system/_api/user/sf/database/candles"),
        ("PUT", "/_db/_system/_api/user/sf/database/candles/*"),
        ("POST", "/_db/candles/_api/collection"),
        ("POST", "/_db/candles/_api/collection"),
        ("POST", "/_db/candles/_api/index"),
    ]
    bodies = [s.body for s in rec.seen if s.method != "GET"]
    assert bodies[0] == {"name": "candles"}
    assert bodies[1]["user"] == "sf" and bodies[1]["passwd"] == "pw-Qx81"
    assert bodies[2] == bodies[3] == {"grant": "rw"}
    assert [bodies[4]["name"], bodies[5]["name"]] == ["queue_state", "exchange_empty"]
    assert bodies[6]["fields"] == ["symbol", "interval", "start_ms"]
    assert rec.of("POST", "/_api/index")[0].query == {"collection": ["exchange_empty"]}
    # Everything as the admin, except the last request: the user logs in and reads.
    assert {s.user for s in rec.seen[:-1]} == {"root"}
    assert (rec.seen[-1].user, rec.seen[-1].api) == ("sf", "/_api/collection/queue_state/count")
    lines = report.lines()
    assert len(lines) == 7 and "created database candles" in lines[0]
    assert not any("pw-Qx81" in line or "rootpw" in line for line in lines)


def test_store_init_a_second_time_changes_nothing_and_says_so(stub: Stub) -> None:
    # The answers a server gives once the first run is done.
    rec = stub.recorder
    rec.databases |= {"candles"}
    rec.users = {"sf"}
    rec.permissions = {"candles": {"permission": "rw", "collections": {"*": "rw"}}}
    rec.collections = {"queue_state", "exchange_empty", *day_names("btcusdt", 3)}
    rec.indexes = {"exchange_empty": [["symbol", "interval", "start_ms"]]}
    report = init_store(init_settings(stub), root_user="root", root_password="rootpw-Zz9")
    assert {s.method for s in rec.seen} == {"GET"}
    assert report.changed == ()
    (line,) = report.lines()
    assert line.startswith(f"nothing to change at {stub.url}/_db/candles: database candles")
    assert "sf has rw on candles/*" in line and "collection queue_state exists" in line


def test_store_init_grants_a_reader_read_only_rights(stub: Stub) -> None:
    rec = stub.recorder
    rec.databases |= {"candles"}
    rec.users = {"sf"}
    rec.permissions = {"candles": {"permission": "rw", "collections": {"*": "undefined"}}}
    rec.collections = {"queue_state", "exchange_empty"}
    rec.indexes = {"exchange_empty": [["symbol", "interval", "start_ms"]]}
    report = init_store(init_settings(stub), root_user="root", root_password="x", access="ro")
    puts = rec.of("PUT", "/_api/user")
    assert [(s.path, s.body) for s in puts] == [
        ("/_db/_system/_api/user/sf/database/candles", {"grant": "ro"}),
        ("/_db/_system/_api/user/sf/database/candles/*", {"grant": "ro"}),
    ]
    assert report.changed == ("granted sf ro on database candles (was rw)",
                              "granted sf ro on candles/* (was undefined)")  # fmt: skip


def test_store_init_names_a_wrong_admin_password_and_stops(stub: Stub) -> None:
    stub.recorder.refuse_user = "root"
    with pytest.raises(StoreAuthError) as info:
        init_store(init_settings(stub), root_user="root", root_password="rootpw-Zz9")
    text = str(info.value)
    assert "refused ARANGO_ROOT_USER='root': wrong ARANGO_ROOT_PASSWORD" in text
    assert "rootpw" not in text and "pw-Qx81" not in text
    assert stub.recorder.kinds() == [("GET", "/_api/database")]


def test_store_init_names_an_admin_without_rights(stub: Stub) -> None:
    stub.recorder.refuse = {("GET", "/_api/database"): (403, 11)}
    with pytest.raises(StoreAuthError, match=r"needs the server's admin user, e\.g\. root"):
        init_store(init_settings(stub), root_user="ops", root_password="x")
    assert len(stub.recorder.seen) == 1


def test_store_init_names_an_existing_user_with_another_password(stub: Stub) -> None:
    rec = stub.recorder
    rec.databases |= {"candles"}
    rec.users = {"sf"}
    rec.refuse_user = "sf"
    with pytest.raises(StoreAuthError, match="another password than ARANGO_PASSWORD; "
                       "`streamforge-nb store init --update-password`"):  # fmt: skip
        init_store(init_settings(stub), root_user="root", root_password="x")
    assert not rec.of("PATCH", "/_api/user")
    rec.refuse_user = None  # what the server answers once the password is set
    init_store(init_settings(stub), root_user="root", root_password="x", update_password=True)
    (patch,) = rec.of("PATCH", "/_api/user/sf")
    assert patch.body == {"passwd": "pw-Qx81"}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"arango_password": None}, "ARANGO_PASSWORD is not set"),
        ({"arango_user": "root"}, "ARANGO_USER must name the library's own user"),
        ({"arango_db": "9-bad"}, "invalid ArangoDB database name '9-bad'"),
        ({"arango_url": None}, "no ArangoDB URL"),
    ],
)
def test_store_init_refuses_bad_settings_before_any_request(
    stub: Stub, extra: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        init_store(init_settings(stub, **extra), root_user="root", root_password="x")
    assert stub.recorder.seen == []


def test_store_init_command_hands_off_and_never_prints_a_password(
    stub: Stub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"ARANGO_URL": stub.url, "ARANGO_DB": "candles", "ARANGO_USER": "sf",
           "ARANGO_PASSWORD": "pw-Qx81", "ARANGO_ROOT_PASSWORD": "rootpw-Zz9",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["store", "init"]) == 0
    out = capsys.readouterr()
    assert "created database candles" in out.out and "created user sf" in out.out
    assert "pw-Qx81" not in out.out + out.err and "rootpw" not in out.out + out.err
    monkeypatch.delenv("ARANGO_ROOT_PASSWORD")
    assert main(["store", "init"]) == 2  # a setting missing: bad input, by the exit-code table
    assert capsys.readouterr().err.startswith(
        "streamforge-nb: error: ARANGO_ROOT_PASSWORD is not set: store init runs as"
    )
    stub.recorder.refuse_user = "root"
    monkeypatch.setenv("ARANGO_ROOT_PASSWORD", "rootpw-Zz9")
    assert main(["store", "init"]) == 1
    err = capsys.readouterr().err
    assert "refused ARANGO_ROOT_USER='root'" in err and "rootpw" not in err


# --- against a real server (STREAMFORGE_TEST_ARANGO_URL) ------------------------------------


@pytest.fixture
def real_init() -> Iterator[tuple[Settings, str, str]]:
    """A throwaway database and user on the real server; dropped afterwards."""
    from streamforge_nb.store.arango import arango_client, parse_arango_url

    root_user = os.environ.get("STREAMFORGE_TEST_ARANGO_USER", "root")
    root_password = os.environ.get("STREAMFORGE_TEST_ARANGO_PASSWORD", "")
    name = f"sf_init_{uuid.uuid4().hex[:10]}"
    settings = Settings(arango_url=ARANGO_URL, arango_db=name, arango_user=name,
                        arango_password=SecretStr(f"pw-{uuid.uuid4().hex}"))  # fmt: skip
    yield settings, root_user, root_password
    client = arango_client(parse_arango_url(ARANGO_URL, settings).hosts, settings)
    system = client.db("_system", username=root_user, password=root_password)
    system.delete_database(name, ignore_missing=True)
    system.delete_user(name, ignore_missing=True)
    client.close()


@REAL_SERVER
def test_real_store_init_is_idempotent_and_its_user_stores_candles(
    real_init: tuple[Settings, str, str],
) -> None:
    settings, root_user, root_password = real_init
    first = init_store(settings, root_user=root_user, root_password=root_password)
    assert first.changed
    second = init_store(settings, root_user=root_user, root_password=root_password)
    assert second.changed == ()
    with CandleStore.open(settings.arango_url or "", settings) as store:
        assert store.write(candles(AUG1, 5)) == 5  # creates a day collection: needs rw
        assert len(store.load("BTCUSDT", "1m", AUG1, AUG1 + DAY)) == 5
        assert store.coverage()["rows"].tolist() == [5]
        store.save_queue_state({"queue_id": "wf-q0", "status": "running"})
        assert store.queue_states() == [{"queue_id": "wf-q0", "status": "running"}]


@REAL_SERVER
def test_real_read_only_user_loads_but_may_not_write(
    real_init: tuple[Settings, str, str],
) -> None:
    settings, root_user, root_password = real_init
    init_store(settings, root_user=root_user, root_password=root_password)
    with CandleStore.open(settings.arango_url or "", settings) as store:
        store.write(candles(AUG1, 5))
    init_store(settings, root_user=root_user, root_password=root_password, access="ro")
    with CandleStore.open(settings.arango_url or "", settings) as store:
        assert len(store.load("BTCUSDT", "1m", AUG1, AUG1 + DAY)) == 5
        with pytest.raises(StoreAuthError):
            store.write(candles(AUG1 + DAY, 1))


@REAL_SERVER
def test_real_wrong_admin_password_is_named() -> None:
    settings = Settings(arango_url=ARANGO_URL, arango_db="sf_never", arango_user="sf_never",
                        arango_password=SecretStr("x"))  # fmt: skip
    with pytest.raises(StoreAuthError, match="wrong ARANGO_ROOT_PASSWORD"):
        init_store(settings, root_user="root", root_password=f"wrong-{uuid.uuid4().hex}")
