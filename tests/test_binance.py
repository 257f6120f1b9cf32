"""The klines client against a real local HTTP server speaking Binance's wire format."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from streamforge_nb.exceptions import (
    ExchangeBanned,
    ExchangeError,
    ExchangeUnavailable,
    InvalidName,
    UnknownSymbol,
)
from streamforge_nb.exchange.binance import EXCHANGE_INFO_PATH, KLINES_PATH, KlinesClient
from streamforge_nb.exchange.weight import BINANCE_WEIGHT_LIMIT, RateLimit
from streamforge_nb.platform.contract import Candle
from streamforge_nb.platform.intervals import close_time, open_times
from streamforge_nb.testing.exchange import DROP, ExchangeServer

START = 1722470400000  # 2024-08-01 00:00 UTC
MINUTE = 60_000


class FakeClock:
    """A clock that only moves when someone sleeps: shared by client and server."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def server() -> Iterator[ExchangeServer]:
    with ExchangeServer() as srv:
        yield srv


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(server: ExchangeServer, sleeps: list[float]) -> Iterator[KlinesClient]:
    # rng=0.5 makes the backoff jitter predictable; sleeping is recorded, not done.
    with KlinesClient(server.base_url, sleep=sleeps.append, rng=lambda: 0.5, max_retries=3) as c:
        yield c


def klines_requests(server: ExchangeServer) -> list[Any]:
    return [r for r in server.requests if r.path == "/api/v3/klines"]


# --- paging -----------------------------------------------------------------------------------


def test_paging_across_page_boundaries_is_exact(
    server: ExchangeServer, client: KlinesClient
) -> None:
    end = START + 2500 * MINUTE
    pages = list(client.pages("BTCUSDT", "1m", START, end))
    assert [len(p) for p in pages] == [1000, 1000, 500]
    rows = [row for page in pages for row in page]
    assert rows == server.expected_rows("BTCUSDT", "1m", START, end)
    opens = [row[0] for row in rows]
    assert opens == list(range(START, end, MINUTE))  # no gap, no overlap
    reqs = klines_requests(server)
    assert len(reqs) == 3
    assert [int(r.params["startTime"]) for r in reqs] == [
        START,
        opens[999] + 1,
        opens[1999] + 1,
    ]
    assert {r.params["endTime"] for r in reqs} == {str(end - 1)}  # our end is exclusive
    assert {r.params["limit"] for r in reqs} == {"1000"}


def test_a_range_of_exactly_two_pages_takes_two_requests(
    server: ExchangeServer, client: KlinesClient
) -> None:
    end = START + 2000 * MINUTE
    assert client.klines("BTCUSDT", "1m", START, end) == server.expected_rows(
        "BTCUSDT", "1m", START, end
    )
    assert len(klines_requests(server)) == 2


def test_unaligned_range_keeps_only_open_times_inside(
    server: ExchangeServer, client: KlinesClient
) -> None:
    start, end = START + 30_000, START + 10 * MINUTE + 1
    rows = client.klines("ETHUSDT", "1m", start, end)
    assert [r[0] for r in rows] == [START + i * MINUTE for i in range(1, 11)]
    assert rows == server.expected_rows("ETHUSDT", "1m", start, end)


@pytest.mark.parametrize("interval", ["1s", "5m", "1h", "1d", "1w", "1M"])
def test_every_interval_pages_exactly(
    server: ExchangeServer, client: KlinesClient, interval: str
) -> None:
    span = {"1s": 1_500_000, "5m": 4 * 86_400_000, "1h": 50 * 86_400_000}
    end = START + span.get(interval, 300 * 86_400_000)
    rows = client.klines("BTCUSDT", interval, START, end)
    assert rows == server.expected_rows("BTCUSDT", interval, START, end)
    assert [r[0] for r in rows] == list(open_times(interval, START, end))
    assert all(r[6] == close_time(interval, r[0]) for r in rows)


def test_candles_are_contract_candles(client: KlinesClient) -> None:
    pages = list(client.candles("BTCUSDT", "1m", START, START + 1500 * MINUTE))
    assert [len(p) for p in pages] == [1000, 500]
    first = pages[0][0]
    assert isinstance(first, Candle)
    assert first.key == f"BTCUSDT_1m_{START}"
    assert first.close_time == START + MINUTE - 1


# --- rate limits and retries ------------------------------------------------------------------


def test_429_sleeps_retry_after_then_the_result_is_still_exact(
    server: ExchangeServer, client: KlinesClient, sleeps: list[float]
) -> None:
    server.fail_next(429, retry_after=3, count=2, path=KLINES_PATH)
    end = START + 2500 * MINUTE
    assert client.klines("BTCUSDT", "1m", START, end) == server.expected_rows(
        "BTCUSDT", "1m", START, end
    )
    assert sleeps == [3.0, 3.0]
    assert [r.status for r in klines_requests(server)] == [429, 429, 200, 200, 200]


def test_429_in_the_middle_of_paging_repeats_only_that_page(
    server: ExchangeServer, client: KlinesClient, sleeps: list[float]
) -> None:
    end = START + 2500 * MINUTE
    pages = client.pages("BTCUSDT", "1m", START, end)
    first = next(pages)
    server.fail_next(429, retry_after=2, path=KLINES_PATH)
    rows = first + [row for page in pages for row in page]
    assert rows == server.expected_rows("BTCUSDT", "1m", START, end)
    starts = [r.params["startTime"] for r in klines_requests(server)]
    assert starts[1] == starts[2]  # the refused page is asked again, unchanged
    assert sleeps == [2.0]


def test_short_418_is_waited_out(
    server: ExchangeServer, client: KlinesClient, sleeps: list[float]
) -> None:
    server.fail_next(418, retry_after=7, path=KLINES_PATH)
    end = START + 10 * MINUTE
    assert client.klines("BTCUSDT", "1m", START, end) == server.expected_rows(
        "BTCUSDT", "1m", START, end
    )
    assert sleeps == [7.0]


def test_long_418_raises_banned_without_sleeping(
    server: ExchangeServer, client: KlinesClient, sleeps: list[float]
) -> None:
    server.fail_next(418, retry_after=3 * 86400, path=KLINES_PATH)
    with pytest.raises(ExchangeBanned, match="banned this IP for 259200 s") as info:
        client.klines("BTCUSDT", "1m", START, START + 10 * MINUTE)
    assert info.value.retry_after == 3 * 86400
    assert info.value.status == 418
    assert sleeps == []


def test_429_without_retry_after_waits_for_the_next_window() -> None:
    clock = FakeClock(1_800_000_040.0)  # 40 s into a minute, on both sides
    with ExchangeServer(clock=clock) as server:
        client = KlinesClient(server.base_url, sleep=clock.sleep, clock=clock, rng=lambda: 0.0)
        server.fail_next(429, retry_after=None, path=KLINES_PATH)
        client.klines("BTCUSDT", "1m", START, START + MINUTE)
    # To the minute's end, plus the guard (the clock's uncertainty, zero here, + 5 ms).
    assert clock.sleeps == [pytest.approx(20.005)]


def test_server_weight_limit_429_is_honoured_end_to_end() -> None:
    # Client and server share a clock that moves only when the client sleeps.
    clock = FakeClock(1_800_000_030.0)
    with ExchangeServer(clock=clock) as server:
        client = KlinesClient(server.base_url, sleep=clock.sleep, clock=clock, rng=lambda: 0.0)
        client.klines("BTCUSDT", "1m", START, START + MINUTE)  # learns the limits
        server.preload_weight(6000)  # someone else on this IP spends the minute's budget
        end = START + 1500 * MINUTE
        assert client.klines("BTCUSDT", "1m", START, end) == server.expected_rows(
            "BTCUSDT", "1m", START, end
        )
        assert [r.status for r in klines_requests(server)] == [200, 429, 200, 200]
        # Retry-After (the rest of the minute), then the guard past the minute's start.
        assert clock.sleeps == [30.0, pytest.approx(0.005, abs=1e-5)]
        assert server.served(418) == 0  # waiting Retry-After out earns no ban


@pytest.mark.parametrize("fault", [500, 502, 503, DROP])
def test_server_errors_and_dropped_connections_are_retried_with_backoff(
    server: ExchangeServer, client: KlinesClient, sleeps: list[float], fault: int | str
) -> None:
    server.fail_next(fault, count=2, path=KLINES_PATH)
    end = START + 1200 * MINUTE
    assert client.klines("BTCUSDT", "1m", START, end) == server.expected_rows(
        "BTCUSDT", "1m", START, end
    )
    # 0.5 s then 1 s, each with equal jitter at rng=0.5: 3/4 of the delay.
    assert sleeps == [0.375, 0.75]


@pytest.mark.parametrize("fault", [500, DROP])
def test_gives_up_after_max_retries_naming_the_url(
    server: ExchangeServer, client: KlinesClient, sleeps: list[float], fault: int | str
) -> None:
    server.fail_next(fault, count=10, path=KLINES_PATH)
    with pytest.raises(ExchangeUnavailable, match=r"GET http://127\.0\.0\.1:\d+/api/v3/klines\?"):
        client.klines("BTCUSDT", "1m", START, START + MINUTE)
    assert len(klines_requests(server)) == 4  # 1 try + max_retries=3
    assert len(sleeps) == 3


def test_nothing_listening_raises_unavailable() -> None:
    with ExchangeServer() as srv:
        url = srv.base_url  # a port that is free again once the server stops
    client = KlinesClient(url, sleep=lambda s: None, max_retries=1, timeout=2)
    with pytest.raises(ExchangeUnavailable, match="ConnectionError"):
        client.klines("BTCUSDT", "1m", START, START + MINUTE)


def test_used_weight_above_headroom_waits_for_the_next_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(1_800_000_010.0)  # 10 s into a minute
    with ExchangeServer(clock=clock) as server:
        client = KlinesClient(server.base_url, sleep=clock.sleep, clock=clock, rng=lambda: 0.0)
        client.klines("BTCUSDT", "1m", START, START + MINUTE)  # time 1 + exchangeInfo 20 + 2
        server.preload_weight(5400)  # after the next page: 5425, above 90% of 6000
        end = START + 2500 * MINUTE
        with caplog.at_level(logging.INFO, logger="streamforge_nb.exchange.binance"):
            rows = client.klines("BTCUSDT", "1m", START, end)
        assert rows == server.expected_rows("BTCUSDT", "1m", START, end)
        assert server.served(429) == 0
    # One wait before page 2, to the minute boundary (+ the guard); the new minute starts afresh.
    assert clock.sleeps == [pytest.approx(50.005)]
    assert "request weight 5425 of 6000 weight per 1M used (headroom 90%)" in caplog.text
    assert client.used_weight == 4


def test_a_newcomer_asks_exchange_info_in_the_next_window_when_others_are_busy() -> None:
    # A 1-second window (a scaled exchange): its limit is unknown until exchangeInfo says.
    clock = FakeClock(1_800_000_045.5)
    with ExchangeServer(clock=clock, weight_limit=40, time_scale=1 / 60) as server:
        server.preload_weight(25)  # exchangeInfo's 20 would not fit in what is left
        client = KlinesClient(server.base_url, sleep=clock.sleep, clock=clock, rng=lambda: 0.0)
        client.klines("BTCUSDT", "1m", START, START + MINUTE)
        assert [r.path for r in server.requests] == [
            "/api/v3/time",
            "/api/v3/exchangeInfo",
            "/api/v3/klines",
        ]
        assert server.served(429) == 0
    assert clock.sleeps == [pytest.approx(0.505, abs=0.01)]
    assert client.rate_limits == (RateLimit(40, "SECOND", 1),)


def test_a_newcomer_joins_a_busy_binance_minute_without_waiting() -> None:
    # Binance's published 6000/min is trusted for its own minute window: a loader Job that
    # starts mid-minute while others load does not wait up to 60 s to learn the limits.
    clock = FakeClock(1_800_000_045.0)
    with ExchangeServer(clock=clock) as server:
        server.preload_weight(3000)
        client = KlinesClient(server.base_url, sleep=clock.sleep, clock=clock, rng=lambda: 0.0)
        client.klines("BTCUSDT", "1m", START, START + MINUTE)
        assert server.served(429) == 0
    assert clock.sleeps == []
    assert client.rate_limits == (RateLimit(6000, "MINUTE", 1),)


def test_limits_and_window_come_from_exchange_info_once_per_process() -> None:
    with ExchangeServer(weight_limit=900, time_scale=1 / 60) as server:
        first = KlinesClient(server.base_url)
        first.klines("BTCUSDT", "1m", START, START + MINUTE)
        assert first.rate_limits == (RateLimit(900, "SECOND", 1),)
        assert first.used_weight is not None and first.used_weight >= 2  # from "...-1S"
        second = KlinesClient(server.base_url)
        second.klines("ETHUSDT", "1m", START, START + MINUTE)
        assert second.rate_limits == first.rate_limits
        paths = [r.path for r in server.requests]
        assert paths.count("/api/v3/exchangeInfo") == 1 and paths.count("/api/v3/time") == 1


def test_the_exchange_clock_offset_is_learned() -> None:
    clock = FakeClock(1_800_000_010.0)
    with ExchangeServer(clock=lambda: clock() + 7.25) as server:  # the exchange is 7.25 s ahead
        client = KlinesClient(server.base_url, sleep=clock.sleep, clock=clock)
        client.klines("BTCUSDT", "1m", START, START + MINUTE)
    assert client.budget is not None
    assert client.budget.offset == pytest.approx(7.25, abs=0.001)


def test_without_exchange_info_binance_published_limit_is_assumed(
    server: ExchangeServer, client: KlinesClient, caplog: pytest.LogCaptureFixture
) -> None:
    server.fail_next(503, count=4, path=EXCHANGE_INFO_PATH)
    with caplog.at_level(logging.DEBUG, logger="streamforge_nb.exchange.binance"):
        rows = client.klines("BTCUSDT", "1m", START, START + 10 * MINUTE)
    assert rows == server.expected_rows("BTCUSDT", "1m", START, START + 10 * MINUTE)
    assert client.rate_limits == (BINANCE_WEIGHT_LIMIT,)
    assert "assuming Binance's published 6000 weight per 1M" in caplog.text


def test_weight_below_headroom_never_waits(
    server: ExchangeServer, client: KlinesClient, sleeps: list[float]
) -> None:
    client.klines("BTCUSDT", "1m", START, START + 5000 * MINUTE)
    assert sleeps == []
    assert client.used_weight is not None and client.used_weight >= 10


# --- errors -----------------------------------------------------------------------------------


def test_unknown_symbol_raises_before_any_row(server: ExchangeServer, client: KlinesClient) -> None:
    pages = client.pages("DOGEUSDT", "1m", START, START + MINUTE)
    with pytest.raises(UnknownSymbol, match="the exchange does not know symbol 'DOGEUSDT'") as info:
        next(pages)
    assert isinstance(info.value, ValueError)
    assert info.value.code == -1121
    assert [r.status for r in server.requests if r.status != 200] == [400]
    assert klines_requests(server) == []
    # Nothing was cached from the failed learning: a known symbol learns the real limits.
    client.klines("BTCUSDT", "1m", START, START + MINUTE)
    assert client.rate_limits == (RateLimit(6000, "MINUTE", 1),)


def test_other_client_errors_carry_binance_code_and_msg(
    server: ExchangeServer, client: KlinesClient
) -> None:
    server.fail_next(
        400, body={"code": -1100, "msg": "Illegal characters found."}, path=KLINES_PATH
    )
    with pytest.raises(ExchangeError, match=r"HTTP 400, code -1100: Illegal characters") as info:
        client.klines("BTCUSDT", "1m", START, START + MINUTE)
    assert not isinstance(info.value, UnknownSymbol)
    assert (info.value.status, info.value.code) == (400, -1100)


@pytest.mark.parametrize(
    ("symbol", "interval", "start", "end", "match"),
    [
        ("BTCUSDT", "2m", START, START + MINUTE, r"invalid interval '2m': expected one of 1s, 1m"),
        ("BTCUSDT", "1mo", START, START + MINUTE, "invalid interval"),
        ("btcusdt", "1m", START, START + MINUTE, "did you mean 'BTCUSDT'"),
        ("BTCUSDT", "1m", START + MINUTE, START, "ends before it starts"),
        ("BTCUSDT", "1m", START, START, "is empty"),
        ("BTCUSDT", "1m", -5, START, "non-negative"),
        ("BTCUSDT", "1m", float(START), START + MINUTE, "non-negative Unix milliseconds"),
    ],
)
def test_bad_arguments_raise_before_any_request(
    server: ExchangeServer,
    client: KlinesClient,
    symbol: str,
    interval: str,
    start: Any,
    end: int,
    match: str,
) -> None:
    with pytest.raises(InvalidName, match=match):
        client.pages(symbol, interval, start, end)  # raised at the call, not at iteration
    with pytest.raises(InvalidName):
        client.candles(symbol, interval, start, end)
    assert server.requests == []
