"""A real local HTTP server speaking Binance's wire format, serving GENERATED candles.

THE DATA IS GENERATED, NOT MARKET DATA: `CandleGenerator` (in `candles.py`) makes it, except
for series given as `rows=` (e.g. real Binance rows), which are served exactly as given.

    with ExchangeServer() as server:
        client = KlinesClient(server.base_url)
        rows = client.klines("BTCUSDT", "1m", start_ms, end_ms)
        assert rows == server.expected_rows("BTCUSDT", "1m", start_ms, end_ms)

It serves `GET /api/v3/klines` (Binance semantics: `startTime`/`endTime` inclusive, `limit`
default 500 and at most 1000), `GET /api/v3/exchangeInfo` and `GET /api/v3/time`, and
`GET /data/spot/{monthly|daily}/klines/...zip[.CHECKSUM]` archives built on the fly from the
same candles. `fail_next` injects 429, 418, 5xx or dropped connections (they bypass the weight
count); `requests` logs every request so tests can check paging.

The request weight limit is enforced as Binance does it (`testing.limiter`): klines weigh 2,
exchangeInfo 20, time 1, counted per client IP in fixed windows aligned to the epoch; every
`/api/` answer carries `X-MBX-USED-WEIGHT-<n><unit>`; above `weight_limit` the answer is 429
with `Retry-After` (the rest of the window); an IP that sends again before that has passed
(`ban_after` times) is banned: 418 with `Retry-After`, 2 minutes for its first ban, doubling up
to 3 days. `time_scale` shrinks windows and bans for tests (`time_scale=1/60`: a "minute" is one
second and a first ban two), and exchangeInfo's `rateLimits` say so. `latency` delays each
`/api/` answer (half before counting, half after) like a round trip to the real exchange.
`served(429)` and `served(418)` count refusals; `total_weight` the weight counted.

`write_archive` (in `archives.py`) saves one such archive and its CHECKSUM to a directory.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from streamforge_nb.exchange.archives import checksum_line, pack_archive, parse_archive_name
from streamforge_nb.platform.intervals import INTERVALS, close_time, longest_ms, open_times
from streamforge_nb.testing.candles import DEFAULT_SEED, CandleGenerator
from streamforge_nb.testing.limiter import WEIGHTS, Limiter, error_body

__all__ = ["DROP", "LISTED_MS", "ExchangeServer", "RequestRecord"]

log = logging.getLogger(__name__)

DROP = "drop"
"""`fail_next(status=DROP)`: close the connection without answering."""
LISTED_MS = 1502928000000
"""2017-08-17 00:00 UTC (BTCUSDT's first day on Binance): no kline ends before it."""


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered (or dropped)."""

    path: str
    params: dict[str, str]
    status: int | str
    time: float


@dataclass
class _Fault:
    status: int | str
    retry_after: float | None
    body: Any
    path: str | None


_NO_SUCH_KEY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>"
)


class ExchangeServer:
    """Serve GENERATED klines and archives over HTTP on 127.0.0.1, like Binance does."""

    def __init__(
        self,
        symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"),
        *,
        seed: int = DEFAULT_SEED,
        host: str = "127.0.0.1",
        port: int = 0,
        weight_limit: int = 6000,
        time_scale: float = 1.0,
        ban_after: int = 1,
        latency: float = 0.0,
        archive_time_unit: str = "auto",
        archive_header: bool = False,
        listed_ms: int = LISTED_MS,
        downtime: Sequence[tuple[int, int]] = (),
        rows: Mapping[tuple[str, str], Sequence[Sequence[Any]]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.symbols = tuple(symbols)
        self.rows = {
            series: sorted((list(row) for row in given), key=lambda row: int(row[0]))
            for series, given in (rows or {}).items()
        }
        """Series served from these kline rows, exactly (e.g. real ones), instead of generated."""
        self.generator = CandleGenerator(seed)
        self.limiter = Limiter(weight_limit, time_scale, ban_after, clock)
        """The request weight limit, per client IP (see `testing.limiter.Limiter`)."""
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
        self.latency = latency
        """Seconds each `/api/` answer takes, like a network round trip to the exchange."""
        self.archive_time_unit = archive_time_unit
        """`auto` (microseconds from 2025 like Binance's spot files), `ms` or `us`."""
        self.archive_header = archive_header
        """Start archive CSVs with a header line, as some newer files do."""
        self.listed_ms = listed_ms
        self.downtime = tuple((int(a), int(b)) for a, b in downtime)
        """Windows `[start_ms, end_ms)` with no klines at all (exchange maintenance)."""
        self._clock = clock
        self._address = (host, port)
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._faults: list[_Fault] = []
        self._served: dict[int, int] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> ExchangeServer:
        """Bind (a free port unless one was given) and serve from a background thread."""
        httpd = _HTTPServer(self._address, _Handler)
        httpd.exchange = self
        self._httpd = httpd
        # A short poll interval makes stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="exchange-server"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> ExchangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`: both the REST base URL and the archive base URL."""
        if self._httpd is None:
            raise RuntimeError("the exchange server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- what tests use -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._log.clear()

    def fail_next(
        self,
        status: int | str = 429,
        retry_after: float | None = 1,
        count: int = 1,
        *,
        body: Any = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `count` requests (to paths starting with `path`) with `status`.

        `status` is an HTTP status (429, 418, 500, 503...) or `DROP` to close the connection
        without an answer. 429 and 418 carry `Retry-After: retry_after` (None: no header).
        """
        with self._lock:
            self._faults.extend(_Fault(status, retry_after, body, path) for _ in range(count))

    @property
    def weight_limit(self) -> int:
        """Request weight allowed per window and IP."""
        return self.limiter.limit

    def preload_weight(self, weight: int, ip: str = "127.0.0.1") -> None:
        """Count `weight` as already used this window (someone else on the same IP)."""
        self.limiter.preload(ip, weight)

    def served(self, status: int) -> int:
        """Return how many answers with HTTP `status` were served since the start."""
        with self._lock:
            return self._served.get(status, 0)

    @property
    def total_weight(self) -> int:
        """Request weight counted since the start, over every IP and window."""
        return self.limiter.total

    def expected_rows(
        self, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> list[list[Any]]:
        """Return the rows the server has with open time in `[start_ms, end_ms)` (end EXCLUSIVE)."""
        now = int(self._clock() * 1000)
        return list(self._rows(symbol, interval, start_ms, min(end_ms, now + 1)))

    def _rows(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> Iterator[list[Any]]:
        """Yield the kline rows served with open time in `[start_ms, end_ms)`, in order."""
        given = self.rows.get((symbol, interval))
        if given is not None:
            return (row for row in given if start_ms <= int(row[0]) < end_ms)
        times = self._times(interval, start_ms, end_ms)
        return (self.generator.row(symbol, interval, t) for t in times)

    def _times(self, interval: str, start_ms: int, end_ms: int) -> Iterator[int]:
        """Yield open times in `[start_ms, end_ms)` of klines that end after the listing."""
        # Skip the years before the listing instead of filtering them one by one.
        times = open_times(
            interval, max(start_ms, self.listed_ms - longest_ms(interval), 0), end_ms
        )
        return (t for t in times if close_time(interval, t) >= self.listed_ms and not self._down(t))

    def _down(self, open_ms: int) -> bool:
        # Binance has no kline opening during a maintenance window (e.g. 2020-02-19 ...).
        return any(start <= open_ms < end for start, end in self.downtime)

    def archive(self, path: str) -> bytes | None:
        """Return the body served at archive `path` (zip or CHECKSUM), or None if absent."""
        path = path.lstrip("/")
        zip_path = path.removesuffix(".CHECKSUM")
        named = parse_archive_name(zip_path)
        if named is None or named.path != zip_path or named.symbol not in self.symbols:
            return None
        # Binance publishes a file only once its period is over.
        if named.end_ms > self._clock() * 1000 or named.end_ms <= self.listed_ms:
            return None
        unit = self.archive_time_unit
        micro = unit == "us" or (unit == "auto" and named.first_day >= date(2025, 1, 1))
        rows = self.expected_rows(named.symbol, named.interval, named.start_ms, named.end_ms)
        zip_name = zip_path.rsplit("/", 1)[-1]
        csv_name = zip_name.removesuffix(".zip") + ".csv"
        data = pack_archive(rows, csv_name, microseconds=micro, header=self.archive_header)
        return checksum_line(data, zip_name).encode() if path != zip_path else data

    # --- request handling (server threads) ----------------------------------------------------

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.path is None or path.startswith(fault.path):
                    return self._faults.pop(i)
        return None

    def _record(self, path: str, params: dict[str, str], status: int | str) -> None:
        with self._lock:
            self._log.append(RequestRecord(path, params, status, self._clock()))
            if isinstance(status, int):
                self._served[status] = self._served.get(status, 0) + 1

    def _api(self, ip: str, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """Answer one `/api/v3/...` request, the weight limit first."""
        if self.latency:
            time.sleep(self.latency / 2)
        try:
            refusal, headers = self.limiter.admit(ip, WEIGHTS[path])
            if refusal is not None:
                return refusal[0], headers, refusal[1]
            if path == "/api/v3/klines":
                status, body = self._klines(params)
            elif path == "/api/v3/exchangeInfo":
                status, body = self._exchange_info(params)
            else:
                status, body = 200, {"serverTime": int(self._clock() * 1000)}
            return status, headers, body
        finally:
            if self.latency:
                time.sleep(self.latency / 2)

    def _exchange_info(self, params: dict[str, str]) -> tuple[int, Any]:
        """Binance's exchangeInfo for our symbols (`symbol=` or `symbols=[...]` narrow it)."""
        names: list[str] = list(self.symbols)
        try:
            if params.get("symbol"):
                names = [params["symbol"]]
            elif params.get("symbols"):
                names = [str(n) for n in json.loads(params["symbols"])]
        except ValueError:
            return 400, error_body(-1100, "Illegal characters found in parameter 'symbols'.")
        if any(n not in self.symbols for n in names):
            return 400, error_body(-1121, "Invalid symbol.")
        return 200, {
            "timezone": "UTC",
            "serverTime": int(self._clock() * 1000),
            "rateLimits": self.limiter.rate_limits(),
            "exchangeFilters": [],
            "symbols": [_symbol_info(n) for n in names],
        }

    def _klines(self, params: dict[str, str]) -> tuple[int, Any]:
        symbol, interval = params.get("symbol", ""), params.get("interval", "")
        try:
            start, end, limit = (
                int(params[k]) if params.get(k) else None for k in ("startTime", "endTime", "limit")
            )
        except ValueError:
            return 400, error_body(-1100, "Illegal characters found in a parameter.")
        if not symbol or not interval:
            return 400, error_body(-1102, "Mandatory parameter was not sent.")
        if interval not in INTERVALS:
            return 400, error_body(-1120, "Invalid interval.")
        if symbol not in self.symbols:
            return 400, error_body(-1121, "Invalid symbol.")
        # Binance clamps limit into 1..1000 (default 500).
        limit = min(max(limit if limit is not None else 500, 1), 1000)
        hi = min(end if end is not None else 2**62, int(self._clock() * 1000))
        # No startTime: the most recent `limit` klines up to endTime (or now).
        lo = start if start is not None else hi - limit * longest_ms(interval)
        rows = self._rows(symbol, interval, lo, hi + 1)
        chosen = list(itertools.islice(rows, limit)) if start is not None else list(rows)[-limit:]
        return 200, chosen


_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


def _symbol_info(symbol: str) -> dict[str, Any]:
    quote = next((q for q in _QUOTES if symbol.endswith(q) and symbol != q), symbol[-4:])
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": symbol.removesuffix(quote),
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [],
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }


_JSON = "application/json;charset=UTF-8"
_FAULT_BODIES = {
    418: error_body(-1003, "Way too many requests; IP(127.0.0.1) banned."),
    429: error_body(-1003, "Too many requests."),
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # A client's idle keep-alive connection must not block stop().
    exchange: ExchangeServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # Keep-alive, as the real API: benchmarks measure paging.
    server_version = "streamforge-exchange"

    def do_GET(self) -> None:
        assert isinstance(self.server, _HTTPServer)
        exchange = self.server.exchange
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        fault = exchange._take_fault(url.path)
        if fault is not None:
            exchange._record(url.path, params, fault.status)
            self._send_fault(fault)
            return
        if url.path in WEIGHTS:
            status, headers, body = exchange._api(self.client_address[0], url.path, params)
            data, kind = json.dumps(body, separators=(",", ":")).encode(), _JSON
        elif (archive := exchange.archive(url.path)) is not None:
            status, headers, data, kind = 200, {}, archive, "application/zip"
        else:
            status, headers, data, kind = 404, {}, _NO_SUCH_KEY, "application/xml"
        # Log before answering: a client that got its answer must find its request logged.
        exchange._record(url.path, params, status)
        self._send(status, data, headers, kind)

    def _send_fault(self, fault: _Fault) -> None:
        if fault.status == DROP:
            self.close_connection = True  # Nothing written: the client sees the peer hang up.
            return
        status = int(fault.status)
        headers = {}
        if status in (418, 429) and fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        body = fault.body
        if body is None:
            body = _FAULT_BODIES.get(status, error_body(-1000, "An unknown error occurred."))
        self._send(status, json.dumps(body).encode(), headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str], kind: str = _JSON) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("exchange server: " + format, *args)
