"""Binance's request weight limit, as the local exchange enforces it (`ExchangeServer`).

Klines weigh 2, exchangeInfo 20, time 1, counted per client IP in fixed windows aligned to the
epoch; above the limit the answer is 429 with `Retry-After` (the rest of the window); an IP
that sends again before that has passed (`ban_after` times) is banned: 418, 2 minutes for its
first ban, doubling up to 3 days. `time_scale` shrinks windows and bans for tests.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["WEIGHTS", "Limiter", "error_body"]


def error_body(code: int, msg: str) -> dict[str, Any]:
    """Return an error answer in Binance's shape."""
    return {"code": code, "msg": msg}


WEIGHTS = {"/api/v3/klines": 2, "/api/v3/exchangeInfo": 20, "/api/v3/time": 1}
"""Binance's request weight per endpoint (klines: 2 whatever the limit)."""
_UNITS = (("DAY", "D", 86400), ("HOUR", "H", 3600), ("MINUTE", "M", 60), ("SECOND", "S", 1))
# Binance: bans "scale in duration for repeat offenders, from 2 minutes to 3 days".
_FIRST_BAN_S = 120
_LONGEST_BAN_S = 3 * 86400


@dataclass
class _Ip:
    window: int = -1
    used: int = 0
    refused_until: float = 0.0  # a 429's Retry-After has not passed before this
    ignored: int = 0  # requests sent anyway since that 429
    banned_until: float = 0.0
    bans: int = 0


class Limiter:
    """Binance's REQUEST_WEIGHT limit: `limit` per fixed window per IP, 429s, then bans.

    A "minute" lasts `60 * time_scale` seconds (a whole number of seconds, so exchangeInfo can
    state it); windows are aligned to the epoch, as Binance's reset at each minute's start.
    """

    def __init__(
        self, limit: int, time_scale: float, ban_after: int, clock: Callable[[], float]
    ) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"weight_limit must be a positive int, got {limit!r}")
        seconds = 60 * time_scale
        if not (time_scale > 0 and seconds >= 1 and abs(seconds - round(seconds)) < 1e-6):
            raise ValueError(
                f"time_scale={time_scale!r} makes the weight window {seconds!r} s; it must be "
                "a whole number of seconds (e.g. time_scale=1/60 for 1 s)"
            )
        if not isinstance(ban_after, int) or ban_after < 1:
            raise ValueError(f"ban_after must be a positive int, got {ban_after!r}")
        self.limit = limit
        self.scale = time_scale
        self.seconds = round(seconds)
        self.ban_after = ban_after
        self.total = 0
        self.per_window: dict[int, int] = {}
        """Weight counted per window (index: window start // seconds), over every IP."""
        self._clock = clock
        self._lock = threading.Lock()
        self._ips: dict[str, _Ip] = {}
        name, letter, size = next(u for u in _UNITS if self.seconds % u[2] == 0)
        self.interval, self.interval_num = name, self.seconds // size
        self.header = f"X-MBX-USED-WEIGHT-{self.interval_num}{letter}"

    def rate_limits(self) -> list[dict[str, Any]]:
        """Return exchangeInfo's `rateLimits` (the ORDERS ones are Binance's, not enforced)."""
        return [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": self.interval,
             "intervalNum": self.interval_num, "limit": self.limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        ]  # fmt: skip

    def preload(self, ip: str, weight: int) -> None:
        """Count `weight` as used by `ip` in the current window."""
        with self._lock:
            self._count(self._ips.setdefault(ip, _Ip()), self._clock(), weight)

    def admit(self, ip: str, weight: int) -> tuple[tuple[int, Any] | None, dict[str, str]]:
        """Count a request; return `((status, body) or None to serve it, headers)`."""
        now = self._clock()
        with self._lock:
            state = self._ips.setdefault(ip, _Ip())
            if now < state.refused_until:
                state.ignored += 1
                if state.ignored >= self.ban_after:
                    state.bans += 1
                    ban = min(_FIRST_BAN_S * 2 ** (state.bans - 1), _LONGEST_BAN_S)
                    state.banned_until = now + ban * self.scale
                    state.refused_until, state.ignored = 0.0, 0
            if now < state.banned_until:
                wait = _seconds(state.banned_until - now)
                msg = (
                    f"Way too many requests; IP({ip}) banned until {state.banned_until * 1000:.0f}."
                )
                return (418, error_body(-1003, msg)), {"Retry-After": wait}
            used = self._count(state, now, weight)
        headers = {self.header: str(used)}
        if used <= self.limit and now >= state.refused_until:
            return None, headers
        # Retry-After: the rest of the window, in whole (scaled) seconds as Binance sends it.
        rest = (state.window + 1) * self.seconds - now
        retry = max(math.ceil(rest / self.scale - 1e-9), 1) * self.scale
        with self._lock:
            state.refused_until = max(state.refused_until, now + retry)
        headers["Retry-After"] = _seconds(retry)
        msg = (
            f"Too much request weight used; current limit is {self.limit} request weight per "
            f"{self.interval_num} {self.interval}."
        )
        return (429, error_body(-1003, msg)), headers

    def _count(self, state: _Ip, now: float, weight: int) -> int:
        window = int(now // self.seconds)
        if window != state.window:
            state.window, state.used = window, 0
        state.used += weight
        self.total += weight
        self.per_window[window] = self.per_window.get(window, 0) + weight
        return state.used


def _seconds(value: float) -> str:
    """Format a Retry-After: whole seconds as Binance does, fractions only when scaled."""
    return f"{value:.3f}".rstrip("0").rstrip(".")
