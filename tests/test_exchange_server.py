"""The local exchange server: Binance's wire format, and consistent GENERATED candles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from streamforge_nb.testing import CandleGenerator, ExchangeServer

START = 1722470400000  # 2024-08-01 00:00 UTC
MINUTE = 60_000


@pytest.fixture(scope="module")
def server() -> Iterator[ExchangeServer]:
    with ExchangeServer() as srv:
        yield srv


def get(server: ExchangeServer, **params: Any) -> requests.Response:
    return requests.get(f"{server.base_url}/api/v3/klines", params=params, timeout=10)


def test_rows_have_binance_types_and_strings_for_decimals(server: ExchangeServer) -> None:
    resp = get(server, symbol="BTCUSDT", interval="1m", startTime=START, limit=2)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.text.startswith(f'[[{START},"')  # compact JSON, like Binance
    row = resp.json()[0]
    assert len(row) == 12
    assert [type(v) for v in row] == [int, *[str] * 5, int, str, int, str, str, str]
    assert all(len(v.split(".")[1]) == 8 for v in (*row[1:6], row[7], row[9], row[10]))
    assert row[6] == START + MINUTE - 1 and row[11] == "0"
    o, h, lo, c = (Decimal(v) for v in row[1:5])
    assert lo <= min(o, c) <= max(o, c) <= h
    assert Decimal(row[9]) <= Decimal(row[5])


def test_start_and_end_are_inclusive_and_limit_defaults_to_500(server: ExchangeServer) -> None:
    rows = get(server, symbol="BTCUSDT", interval="1m", startTime=START,
               endTime=START + 2 * MINUTE).json()  # fmt: skip
    assert [r[0] for r in rows] == [START, START + MINUTE, START + 2 * MINUTE]
    assert len(get(server, symbol="BTCUSDT", interval="1m", startTime=START).json()) == 500
    big = get(server, symbol="BTCUSDT", interval="1m", startTime=START, limit=5000).json()
    assert len(big) == 1000


def test_without_start_time_the_latest_klines_come_back(server: ExchangeServer) -> None:
    rows = get(server, symbol="BTCUSDT", interval="1h", endTime=START, limit=3).json()
    assert [r[0] for r in rows] == [START - 7_200_000, START - 3_600_000, START]


def test_weight_header_counts_two_per_request() -> None:
    with ExchangeServer() as server:
        weights = [
            int(
                get(server, symbol="BTCUSDT", interval="1m", limit=1).headers[
                    "X-MBX-USED-WEIGHT-1M"
                ]
            )
            for _ in range(3)
        ]
    # Unless a minute boundary passed in between, the weight grows by 2 per request.
    assert weights in ([2, 4, 6], [2, 4, 2], [2, 2, 4])


@pytest.mark.parametrize(
    ("params", "code", "msg"),
    [
        ({"symbol": "DOGEUSDT", "interval": "1m"}, -1121, "Invalid symbol."),
        ({"symbol": "BTCUSDT", "interval": "2m"}, -1120, "Invalid interval."),
        ({"interval": "1m"}, -1102, None),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": "x"}, -1100, None),
    ],
)
def test_errors_are_binance_json(
    server: ExchangeServer, params: dict[str, str], code: int, msg: str | None
) -> None:
    resp = get(server, **params)
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == code
    if msg is not None:
        assert body == {"code": code, "msg": msg}


def test_injected_faults_and_request_log() -> None:
    with ExchangeServer() as server:
        server.fail_next(429, retry_after=5)
        server.fail_next(418, retry_after=None)
        first = get(server, symbol="BTCUSDT", interval="1m")
        second = get(server, symbol="BTCUSDT", interval="1m")
        assert (first.status_code, first.headers["Retry-After"]) == (429, "5")
        assert second.status_code == 418 and "Retry-After" not in second.headers
        assert json.loads(second.text)["code"] == -1003
        assert get(server, symbol="BTCUSDT", interval="1m").status_code == 200
        assert [r.status for r in server.requests] == [429, 418, 200]
        assert server.requests[0].params == {"symbol": "BTCUSDT", "interval": "1m"}
        server.clear_requests()
        assert server.requests == []


def test_archives_and_checksums(server: ExchangeServer) -> None:
    base = f"{server.base_url}/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-08-01.zip"
    zipped = requests.get(base, timeout=10)
    checksum = requests.get(base + ".CHECKSUM", timeout=10).text
    assert zipped.status_code == 200 and zipped.content.startswith(b"PK")
    digest, name = checksum.split()
    assert len(digest) == 64 and name == "BTCUSDT-1m-2024-08-01.zip"
    for missing in (
        base.replace("2024-08-01", "2999-08-01"),  # not over yet
        base.replace("BTCUSDT", "DOGEUSDT"),
        base.replace("/daily/", "/monthly/"),  # a daily name in the monthly tree
        base.replace("1m", "1M"),  # months are 1mo in archives
    ):
        resp = requests.get(missing, timeout=10)
        assert resp.status_code == 404 and b"NoSuchKey" in resp.content


# --- the generator ----------------------------------------------------------------------------


def merge(rows: list[list[Any]]) -> list[Any]:
    def total(i: int) -> str:
        return f"{sum(Decimal(r[i]) for r in rows):.8f}"

    return [
        rows[0][0], rows[0][1], max((r[2] for r in rows), key=Decimal),
        min((r[3] for r in rows), key=Decimal), rows[-1][4],
        total(5), rows[-1][6], total(7), sum(r[8] for r in rows), total(9), total(10), "0",
    ]  # fmt: skip


def test_coarse_candles_are_the_fine_ones_merged() -> None:
    gen = CandleGenerator(seed=7)
    ones = gen.rows("ETHUSDT", "1m", START, START + 15 * MINUTE)
    assert gen.rows("ETHUSDT", "15m", START, START + 15 * MINUTE) == [merge(ones)]
    seconds = gen.rows("ETHUSDT", "1s", START, START + MINUTE)
    assert len(seconds) == 60 and merge(seconds) == ones[0]
    hours = gen.rows("ETHUSDT", "1h", START, START + 86_400_000)
    assert gen.rows("ETHUSDT", "1d", START, START + 86_400_000) == [merge(hours)]


def test_generation_is_deterministic_and_seeded() -> None:
    a = CandleGenerator(seed=1).rows("BTCUSDT", "5m", START, START + 3_600_000)
    assert a == CandleGenerator(seed=1).rows("BTCUSDT", "5m", START, START + 3_600_000)
    assert a != CandleGenerator(seed=2).rows("BTCUSDT", "5m", START, START + 3_600_000)
    # Days join up: one day's last close is the next day's first open.
    day = 86_400_000
    two = CandleGenerator().rows("BTCUSDT", "1m", START + day - MINUTE, START + day + MINUTE)
    assert two[0][4] == two[1][1]
