"""Binance REST klines client: paging, rate-limit manners, retries and error mapping.

The same code talks to the real Binance (`https://api.binance.com`) and to the local
`streamforge_nb.testing.exchange` in tests, so everything here follows Binance's wire format:

    client = KlinesClient()
    for page in client.candles("BTCUSDT", "1m", tr.start_ms, tr.end_ms):
        ...  # list[Candle], at most 1000 per page

Our ranges are half-open, `[start_ms, end_ms)`; Binance's `endTime` is inclusive, so the client
sends `endTime=end_ms-1`. Pages follow each other with `startTime = last open_time + 1`, which
leaves neither a gap nor an overlap because klines are identified by their open time.

Manners (FACTS.md, Binance): the exchange counts request weight per IP in fixed windows and
reports the count in every answer (`X-MBX-USED-WEIGHT-1M`). Before its first request to a base
URL, a process asks the exchange's clock (`/api/v3/time`) and limits (`/api/v3/exchangeInfo`,
falling back to Binance's published 6000 per minute), then every client of that URL in the
process paces from one `WeightBudget` (see `weight.py`): many loader processes on one IP stay
under the limit together with no other coordination than the exchange's counter. HTTP 429 and
418 are honoured by sleeping `Retry-After` seconds; a ban longer than `max_ban_wait` raises
`ExchangeBanned` instead of sleeping for days. Network errors and 5xx are retried with
exponential backoff and jitter, then raise `ExchangeUnavailable` naming the URL.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import requests

from streamforge_nb.exceptions import (
    ExchangeBanned,
    ExchangeError,
    ExchangeUnavailable,
    InvalidName,
    UnknownSymbol,
)
from streamforge_nb.exchange.weight import (
    BINANCE_WEIGHT_LIMIT,
    EXCHANGE_COUNTS,
    RateLimit,
    WeightBudget,
    budget_for,
    parse_rate_limits,
    used_weight_header,
)
from streamforge_nb.platform.contract import Candle
from streamforge_nb.platform.intervals import check_interval, close_time
from streamforge_nb.platform.names import check_symbol

__all__ = [
    "BINANCE_API_URL",
    "EXCHANGE_INFO_PATH",
    "KLINES_LIMIT",
    "KLINES_PATH",
    "TIME_PATH",
    "KlinesClient",
    "check_range",
]

log = logging.getLogger(__name__)

BINANCE_API_URL = "https://api.binance.com"
KLINES_PATH = "/api/v3/klines"
EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
TIME_PATH = "/api/v3/time"
KLINES_LIMIT = 1000
"""Binance's maximum `limit` for klines; a shorter page means the range is exhausted."""

# Binance's request weights (klines: 2 whatever the limit).
_KLINES_WEIGHT, _INFO_WEIGHT, _TIME_WEIGHT = 2, 20, 1
_UNKNOWN_SYMBOL = -1121
# Backoff for network errors and 5xx: 0.5 s, 1 s, 2 s, ... capped, with jitter.
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 30.0
# A 418 without Retry-After: Binance's shortest ban is 2 minutes.
_DEFAULT_BAN_SECONDS = 120.0


def check_range(start_ms: int, end_ms: int) -> None:
    """Raise `InvalidName` unless `[start_ms, end_ms)` is a non-empty range of int milliseconds."""
    for what, value in (("start_ms", start_ms), ("end_ms", end_ms)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidName(f"{what} must be non-negative Unix milliseconds, got {value!r}")
    if end_ms < start_ms:
        raise InvalidName(f"time range [{start_ms}, {end_ms}) ends before it starts")
    if end_ms == start_ms:
        raise InvalidName(f"time range [{start_ms}, {end_ms}) is empty (the end is exclusive)")


class KlinesClient:
    """Fetch klines from Binance's REST API (or anything speaking its wire format)."""

    def __init__(
        self,
        base_url: str = BINANCE_API_URL,
        *,
        session: requests.Session | None = None,
        max_retries: int = 5,
        timeout: float = 10.0,
        weight_headroom: float = 0.9,
        max_ban_wait: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self.session = requests.Session() if session is None else session
        self.max_retries = max_retries
        self.timeout = timeout
        if not 0 < weight_headroom <= 1:
            raise InvalidName(f"weight_headroom must be in (0, 1], got {weight_headroom!r}")
        self.weight_headroom = weight_headroom
        self.max_ban_wait = max_ban_wait
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self.used_weight: int | None = None
        """The last used-weight count the exchange reported (`X-MBX-USED-WEIGHT-1M` on Binance)."""
        self._budget: WeightBudget | None = None

    def __enter__(self) -> KlinesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if the client created it."""
        if self._own_session:
            self.session.close()

    # --- public API ---------------------------------------------------------------------------

    @property
    def budget(self) -> WeightBudget | None:
        """This process's weight budget at the exchange (None before the first request)."""
        return self._budget

    @property
    def rate_limits(self) -> tuple[RateLimit, ...] | None:
        """The exchange's REQUEST_WEIGHT limits, once learned (None before the first request)."""
        return None if self._budget is None else self._budget.limits

    def pages(
        self, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> Iterator[list[list[Any]]]:
        """Yield raw kline rows with open_time in `[start_ms, end_ms)`, one list per request.

        Arguments are checked now, before any request: a bad one raises `InvalidName` here.
        """
        check_symbol(symbol)
        check_interval(interval)
        check_range(start_ms, end_ms)
        return self._pages(symbol, interval, start_ms, end_ms)

    def candles(
        self, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> Iterator[list[Candle]]:
        """Yield `Candle`s with open_time in `[start_ms, end_ms)`, one list per request."""
        pages = self.pages(symbol, interval, start_ms, end_ms)
        return ([Candle.from_kline(symbol, interval, row) for row in page] for page in pages)

    def klines(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list[Any]]:
        """Return every raw kline row with open_time in `[start_ms, end_ms)`."""
        return [row for page in self.pages(symbol, interval, start_ms, end_ms) for row in page]

    # --- paging -------------------------------------------------------------------------------

    def _pages(
        self, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> Iterator[list[list[Any]]]:
        cursor = start_ms
        while True:
            params = {
                "symbol": symbol,
                "interval": interval,
                "startTime": cursor,
                "endTime": end_ms - 1,  # Binance's endTime is inclusive.
                "limit": KLINES_LIMIT,
            }
            raw = self._get_json(KLINES_PATH, params, symbol=symbol)
            if not isinstance(raw, list):
                raise ExchangeError(f"unexpected klines answer (not a list): {str(raw)[:200]}")
            # Never hand out a row outside the range, whatever the server sent.
            rows = [row for row in raw if start_ms <= row[0] < end_ms]
            if rows:
                yield rows
            if len(raw) < KLINES_LIMIT:
                return
            last = int(raw[-1][0])
            if last < cursor:
                # Going backwards would loop forever; a real Binance never does this.
                raise ExchangeError(f"klines page ends at {last}, before its startTime {cursor}")
            # The next kline opens when this one closes: if that is past the end, we are done
            # (and spare a request that would come back empty).
            if close_time(interval, last) + 1 >= end_ms:
                return
            cursor = last + 1

    # --- one request, with manners and retries ------------------------------------------------

    def _get_json(
        self,
        path: str,
        params: dict[str, Any],
        *,
        symbol: str,
        weight: int = _KLINES_WEIGHT,
        paced: bool = True,
    ) -> Any:
        return self._get(path, params, symbol=symbol, weight=weight, paced=paced)[0]

    def _get(
        self, path: str, params: dict[str, Any], *, symbol: str, weight: int, paced: bool
    ) -> tuple[Any, requests.Response, float, float]:
        """Return `(json, response, sent at, received at)` of a successful GET."""
        url = f"{self.base_url}{path}"
        if params:
            url = f"{url}?{urlencode(params)}"
        failures = 0
        while True:
            budget = self._pace(weight, symbol) if paced else self._budget
            sent = self._clock()
            if budget is not None:
                budget.sending(weight)
            EXCHANGE_COUNTS.sent(weight)
            resp: requests.Response | None = None
            try:
                resp = self.session.get(url, timeout=self.timeout)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                EXCHANGE_COUNTS.failed("network")
                failures = self._backoff(url, failures, f"{type(exc).__name__}: {exc}")
                continue
            finally:
                received = self._clock()
                headers = {} if resp is None else resp.headers
                if budget is not None:
                    budget.answered(weight, headers, sent, received)
                self._note_weight(headers)
            status = int(resp.status_code)
            EXCHANGE_COUNTS.answered(status, self.used_weight)
            if status in (418, 429):
                failures = self._rate_limited(url, resp, failures)
                continue
            if status >= 500:
                EXCHANGE_COUNTS.failed("server")
                failures = self._backoff(url, failures, f"HTTP {status}")
                continue
            if status >= 400:
                EXCHANGE_COUNTS.failed("client")
                raise self._client_error(url, resp, symbol)
            try:
                return resp.json(), resp, sent, received
            except ValueError:
                # A 200 with a truncated body: the connection broke mid-answer.
                failures = self._backoff(url, failures, "HTTP 200 with a body that is not JSON")

    def _pace(self, weight: int, symbol: str) -> WeightBudget:
        """Wait until `weight` fits in the exchange's current window; return the budget."""
        if self._budget is None:
            self._budget = budget_for(self.base_url, lambda: self._learn(symbol))
            EXCHANGE_COUNTS.limited(self._budget.limits[0].limit)
        budget = self._budget
        while True:
            wait, used, limit = budget.wait(weight, self._clock())
            if wait <= 0:
                return budget
            # Routine when loaders share the budget, so INFO, not WARNING.
            log.info(
                "request weight %d of %s used (headroom %.0f%%); waiting %.2f s for the next "
                "window",
                used,
                limit,
                budget.headroom * 100,
                wait,
            )
            self._sleep(wait)
            budget.waited()

    def _learn(self, symbol: str) -> WeightBudget:
        """Ask the exchange's clock and weight limits: once per base URL per process."""
        offset, uncertainty, seen = 0.0, 0.0, None
        try:
            body, resp, sent, received = self._get(
                TIME_PATH, {}, symbol=symbol, weight=_TIME_WEIGHT, paced=False
            )
            offset = float(body["serverTime"]) / 1000 - (sent + received) / 2
            uncertainty = (received - sent) / 2
            seen = used_weight_header(resp.headers)
        except (ExchangeError, KeyError, TypeError, ValueError) as exc:
            log.debug("%s%s unavailable (%s); assuming its clock is ours", self.base_url,
                      TIME_PATH, exc)  # fmt: skip
        probe = WeightBudget([BINANCE_WEIGHT_LIMIT], offset=offset, uncertainty=uncertainty,
                             headroom=self.weight_headroom, rng=self._rng)  # fmt: skip
        if seen is not None and _unsure(seen, self.weight_headroom):
            # Others are using this window and we do not know the limit yet: exchangeInfo's
            # weight of 20 lands among the first requests of the next window instead.
            window = WeightBudget([RateLimit(1, "SECOND", seen[1])], offset=offset,
                                  uncertainty=uncertainty, rng=self._rng)  # fmt: skip
            self._sleep(window.next_window(self._clock()))
        try:
            info, resp, sent, received = self._get(
                EXCHANGE_INFO_PATH, {"symbol": symbol}, symbol=symbol, weight=_INFO_WEIGHT,
                paced=False,
            )  # fmt: skip
            limits = parse_rate_limits(info)
        except UnknownSymbol:
            raise  # the klines request would say the same; learn with a symbol it knows
        except (ExchangeError, ValueError) as exc:
            log.debug("exchangeInfo at %s unavailable (%s); assuming Binance's published %s",
                      self.base_url, exc, BINANCE_WEIGHT_LIMIT)  # fmt: skip
            return probe
        budget = WeightBudget(limits, offset=offset, uncertainty=uncertainty,
                              headroom=self.weight_headroom, rng=self._rng)  # fmt: skip
        budget.answered(_INFO_WEIGHT, resp.headers, sent, received, inflight=False)
        log.debug("%s allows %s (clock offset %+.3f s)", self.base_url,
                  ", ".join(map(str, limits)), offset)  # fmt: skip
        return budget

    def _note_weight(self, headers: Any) -> None:
        if self._budget is not None:
            value = headers.get(self._budget.limits[0].header)
            if value is not None and str(value).strip().isdigit():
                self.used_weight = int(value)
            return
        seen = used_weight_header(headers)
        if seen is not None:
            self.used_weight = seen[0]

    def _until_next_window(self) -> float:
        if self._budget is not None:
            return self._budget.next_window(self._clock())
        now = self._clock()
        # A small margin so the request lands in the new window, not at its edge.
        return 60.0 - (now % 60.0) + 0.5

    def _backoff(self, url: str, failures: int, why: str) -> int:
        failures += 1
        if failures > self.max_retries:
            raise ExchangeUnavailable(
                f"GET {url} failed {failures} times; giving up after {self.max_retries} "
                f"retries (last: {why})",
                url=url,
            )
        delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (failures - 1))
        # Equal jitter: keep half the delay, randomise the rest, so clients spread out.
        delay = delay / 2 + self._rng() * delay / 2
        log.warning(
            "GET %s: %s; retry %d/%d in %.2f s", url, why, failures, self.max_retries, delay
        )
        self._sleep(delay)
        return failures

    def _rate_limited(self, url: str, resp: requests.Response, failures: int) -> int:
        status = int(resp.status_code)
        code, msg = _error_body(resp)
        header = resp.headers.get("Retry-After")
        try:
            wait = float(header) if header is not None else None
        except ValueError:
            wait = None
        if wait is None:
            wait = _DEFAULT_BAN_SECONDS if status == 418 else self._until_next_window()
        if wait > self.max_ban_wait:
            what = "banned this IP" if status == 418 else "rate-limited this IP"
            raise ExchangeBanned(
                f"Binance {what} for {wait:.0f} s (HTTP {status}, code {code}: {msg}); "
                f"not waiting longer than {self.max_ban_wait:.0f} s",
                status=status,
                code=code,
                url=url,
                retry_after=wait,
            )
        failures += 1
        if failures > self.max_retries:
            raise ExchangeUnavailable(
                f"GET {url} still rate-limited (HTTP {status}) after {self.max_retries} retries",
                status=status,
                code=code,
                url=url,
            )
        log.warning(
            "GET %s: HTTP %d (%s); sleeping Retry-After %.1f s before retry %d/%d",
            url,
            status,
            msg,
            wait,
            failures,
            self.max_retries,
        )
        self._sleep(wait)
        if self._budget is not None:
            self._budget.waited()
        return failures

    def _client_error(self, url: str, resp: requests.Response, symbol: str) -> ExchangeError:
        status = int(resp.status_code)
        code, msg = _error_body(resp)
        if status == 400 and code == _UNKNOWN_SYMBOL:
            return UnknownSymbol(
                f"the exchange does not know symbol {symbol!r} (Binance code {code}: {msg})",
                status=status,
                code=code,
                url=url,
            )
        return ExchangeError(
            f"Binance refused GET {url}: HTTP {status}, code {code}: {msg}",
            status=status,
            code=code,
            url=url,
        )


def _error_body(resp: requests.Response) -> tuple[int | None, str]:
    """Return Binance's `(code, msg)` from an error answer, or the start of a non-JSON body."""
    try:
        body = resp.json()
    except ValueError:
        return None, (resp.text or resp.reason or "").strip()[:200]
    if isinstance(body, dict):
        code = body.get("code")
        return (code if isinstance(code, int) else None), str(body.get("msg", ""))
    return None, str(body)[:200]


def _unsure(seen: tuple[int, int], headroom: float) -> bool:
    """Whether exchangeInfo's weight could push a window others use past its unknown limit.

    Binance's published limit is trusted for the window it is published for (a minute), so a
    loader joining a busy minute on Binance does not wait up to 60 s; any other window (a
    scaled local exchange) is unknown until exchangeInfo says, so only an idle one is safe.
    """
    used, seconds = seen
    if seconds == BINANCE_WEIGHT_LIMIT.seconds:
        return used + _INFO_WEIGHT > headroom * BINANCE_WEIGHT_LIMIT.limit
    return used > _TIME_WEIGHT + _INFO_WEIGHT
