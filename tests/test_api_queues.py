"""Queues started through the API and run to their end: Idempotency-Key and Location, the
first answer of a fresh server process, the list's pages and filters."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from api_server import TOKEN, Api, serve

from streamforge_nb.settings import Settings
from streamforge_nb.testing.exchange import ExchangeServer


@pytest.fixture(scope="module")
def exchange() -> Iterator[ExchangeServer]:
    with ExchangeServer() as server:
        yield server


def _ended(api: Api, location: str, timeout: float = 240) -> dict[str, Any]:
    """Poll a queue's detail as a client waiting for completion would; return the last."""
    deadline = time.monotonic() + timeout
    detail = api.get(location).json()
    while not detail["ended"]:
        assert time.monotonic() < deadline, f"not ended within {timeout} s: {detail}"
        time.sleep(0.5)
        detail = api.get(location).json()
    return dict(detail)


def _ids(reply: requests.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [q["queue_id"] for q in reply.json()["queues"]]


def test_queues_started_once_per_key_then_a_fresh_server_lists_and_reports_them(
    settings: Settings, tmp_path: Path, exchange: ExchangeServer
) -> None:
    home = tmp_path / "api"
    minutes = {
        "symbol": "BTCUSDT", "interval": "15m", "time_range": "2024-08-01:2024-08-03",
        "base_url": exchange.base_url,
    }  # fmt: skip
    days = {**minutes, "symbol": "ETHUSDT", "interval": "1d"}
    with serve(settings, home, exchange_url=exchange.base_url) as api:
        reply = api.post("/queues", minutes, **{"Idempotency-Key": "run-1"})
        assert reply.status_code == 201, reply.text
        first = reply.json()
        assert reply.headers["Location"] == f"/queues/{first['queue_id']}"
        assert first["targets"] == ["loader-candles", "arango-candles"]
        assert first["data_topic"] == f"{first['queue_id']}-data"
        # A retry with the key: the same queue, nothing started again.
        replay = api.post("/queues", minutes, **{"Idempotency-Key": "run-1"})
        assert (replay.status_code, replay.json()) == (201, first)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.headers["Location"] == reply.headers["Location"]
        reused = api.post("/queues", days, **{"Idempotency-Key": "run-1"})
        assert reused.status_code == 409 and reused.headers["content-type"].startswith(
            "application/problem+json"
        )
        assert "run-1" in reused.json()["detail"] and TOKEN not in reused.text
        # Two retries racing each other: still one queue.
        with ThreadPoolExecutor(2) as pool:
            raced = list(
                pool.map(lambda _: api.post("/queues", days, **{"Idempotency-Key": "run-2"}), "ab")
            )
        assert [r.status_code for r in raced] == [201, 201]
        assert raced[0].json() == raced[1].json()
        second = raced[0].json()
        assert sorted(r.headers.get("Idempotent-Replayed", "") for r in raced) == ["", "true"]
        assert set(_ids(api.get("/queues"))) == {first["queue_id"], second["queue_id"]}
        for started, count in ((first, 192), (second, 2)):  # 2 days of 15m candles; of 1d
            detail = _ended(api, f"/queues/{started['queue_id']}")
            assert detail["status"] == "finished", detail
            written = {p["producer"]: p["records_written"] for p in detail["producers"]}
            assert written == {p: count for p in started["producers"]}

    # A new server process over the same store: its first answer of each queue is the end
    # the telemetry says (it said `failed`, "exit code 0 before any telemetry", or
    # `launched`, until it had read the queue's history).
    with serve(settings, home, exchange_url=exchange.base_url) as fresh:
        for started in (first, second):
            detail = fresh.get(f"/queues/{started['queue_id']}").json()
            assert (detail["status"], detail["ended"]) == ("finished", True), detail
            assert all(p["status"] == "finished" for p in detail["producers"]), detail

        listed = fresh.get("/queues").json()["queues"]
        assert [q["queue_id"] for q in listed] == [first["queue_id"], second["queue_id"]]
        assert [q["status"] for q in listed] == ["finished", "finished"]
        assert [q["records_written"] for q in listed] == [192, 2]
        assert [(q["symbol"], q["interval"]) for q in listed] == [
            ("BTCUSDT", "15m"),
            ("ETHUSDT", "1d"),
        ]
        created = [datetime.fromisoformat(q["created_at"]) for q in listed]
        assert all(c.utcoffset() == timedelta(0) for c in created)

        page = fresh.get("/queues?limit=1").json()
        assert [q["queue_id"] for q in page["queues"]] == [first["queue_id"]]
        assert page["next_cursor"]
        last = fresh.get(f"/queues?limit=1&cursor={page['next_cursor']}").json()
        assert [q["queue_id"] for q in last["queues"]] == [second["queue_id"]]
        assert last["next_cursor"] is None
        both = [first["queue_id"], second["queue_id"]]
        assert _ids(fresh.get("/queues?status=finished")) == both
        assert _ids(fresh.get("/queues?limit=1&status=finished")) == both[:1]
        assert _ids(fresh.get("/queues?status=failed")) == []
        assert _ids(fresh.get("/queues?symbol=ethusdt")) == both[1:]
        assert _ids(fresh.get("/queues?interval=15m")) == both[:1]
        after = quote(listed[0]["created_at"])
        assert _ids(fresh.get(f"/queues?created_after={after}")) == both[1:]
