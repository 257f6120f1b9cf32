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


# --- the weight limit, 429s and bans -----------------------------------------------------------


class Clock:
    """A settable clock for the server."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def klines(server: ExchangeServer) -> requests.Response:
    return get(server, symbol="BTCUSDT", interval="1m", startTime=START, limit=1)


def test_over_the_limit_is_429_with_the_rest_of_the_window_as_retry_after() -> None:
    clock = Clock(1_800_000_015.25)  # 15.25 s into a minute
    with ExchangeServer(clock=clock, weight_limit=4) as server:
        assert [klines(server).status_code for _ in range(2)] == [200, 200]
        refused = klines(server)
        assert refused.status_code == 429
        assert refused.headers["X-MBX-USED-WEIGHT-1M"] == "6"
        assert refused.headers["Retry-After"] == "45"  # whole seconds, rounded up
        assert refused.json()["code"] == -1003
        clock.now += 45  # waited it out: a new minute, a new count, no ban
        fresh = klines(server)
        assert (fresh.status_code, fresh.headers["X-MBX-USED-WEIGHT-1M"]) == (200, "2")
        assert (server.served(429), server.served(418)) == (1, 0)


def test_sending_before_retry_after_has_passed_bans_the_ip_longer_each_time() -> None:
    clock = Clock(1_800_000_000.0)
    with ExchangeServer(clock=clock, weight_limit=2) as server:
        klines(server)
        assert klines(server).status_code == 429
        clock.now += 1  # ignored the 429's Retry-After (60 s)
        banned = klines(server)
        assert banned.status_code == 418
        assert banned.headers["Retry-After"] == "120"  # Binance's first ban: 2 minutes
        assert "banned" in banned.json()["msg"]
        clock.now += 100
        assert klines(server).headers["Retry-After"] == "20"  # still banned, 20 s to go
        clock.now += 20
        assert klines(server).status_code == 200  # the ban is over, a new minute
        assert klines(server).status_code == 429
        assert klines(server).headers["Retry-After"] == "240"  # the second ban: twice as long
        assert (server.served(429), server.served(418)) == (2, 3)


def test_time_scale_shrinks_windows_and_bans_and_exchange_info_says_so() -> None:
    clock = Clock(1_800_000_000.0)
    with ExchangeServer(clock=clock, weight_limit=30, time_scale=1 / 60) as server:
        info = requests.get(f"{server.base_url}/api/v3/exchangeInfo", timeout=10)
        assert info.headers["X-MBX-USED-WEIGHT-1S"] == "20"  # exchangeInfo weighs 20
        body = info.json()
        assert body["serverTime"] == 1_800_000_000_000
        weight = [r for r in body["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT"]
        assert weight == [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1, "limit": 30}
        ]
        assert [(s["symbol"], s["status"], s["baseAsset"], s["quoteAsset"])
                for s in body["symbols"]] == [
            ("BTCUSDT", "TRADING", "BTC", "USDT"), ("ETHUSDT", "TRADING", "ETH", "USDT")
        ]  # fmt: skip
        time_ = requests.get(f"{server.base_url}/api/v3/time", timeout=10)
        assert time_.json() == {"serverTime": 1_800_000_000_000}
        assert time_.headers["X-MBX-USED-WEIGHT-1S"] == "21"
        for _ in range(4):
            klines(server)
        refused = klines(server)  # 31 > 30
        assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")
        clock.now += 0.25
        banned = klines(server)
        assert (banned.status_code, banned.headers["Retry-After"]) == (418, "2")  # 120 s / 60


def test_exchange_info_for_one_symbol_or_a_list() -> None:
    with ExchangeServer(symbols=["BTCUSDT", "ETHUSDT", "ETHBTC"]) as server:
        url = f"{server.base_url}/api/v3/exchangeInfo"
        one = requests.get(url, params={"symbol": "ETHBTC"}, timeout=10).json()
        assert [(s["symbol"], s["baseAsset"], s["quoteAsset"]) for s in one["symbols"]] == [
            ("ETHBTC", "ETH", "BTC")
        ]
        some = requests.get(url, params={"symbols": '["BTCUSDT","ETHBTC"]'}, timeout=10).json()
        assert [s["symbol"] for s in some["symbols"]] == ["BTCUSDT", "ETHBTC"]
        unknown = requests.get(url, params={"symbol": "DOGEUSDT"}, timeout=10)
        assert (unknown.status_code, unknown.json()["code"]) == (400, -1121)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"time_scale": 1 / 120}, "whole number of seconds"),
        ({"time_scale": 0}, "whole number of seconds"),
        ({"weight_limit": 0}, "weight_limit must be a positive int"),
        ({"ban_after": 0}, "ban_after must be a positive int"),
        ({"latency": -1}, "latency must be >= 0"),
    ],
)
def test_bad_limit_settings_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ExchangeServer(**kwargs)
