"""One request-weight budget at the exchange, shared by clients that only see its counter.

Binance counts request weight per IP in fixed windows aligned to the epoch (a 1 MINUTE window
resets at each minute's start) and reports the count so far in every answer's
`X-MBX-USED-WEIGHT-<n><unit>` header. Parallel loaders on one IP (Jobs in Pods on one node)
share that count and nothing else, so each paces itself from it:

- the limit and window come from exchangeInfo's `rateLimits` (`REQUEST_WEIGHT`), learned once
  per base URL per process (`KlinesClient` does that and keeps the budget in `budget_for`);
- the exchange's clock, from `/api/v3/time` (offset at the round trip's midpoint, uncertain by
  half of it): a window counts as started only `guard` seconds after its start by our estimate,
  so a request meant for a fresh window never lands in the full one before it;
- a request goes out only if the count last seen in this window, plus our own requests in
  flight, plus its weight stays within `headroom * limit`, and within `limit` leaving room for
  twice what the others add during one of our round trips (measured from the header's growth
  between two of our answers). When N clients all see "just under" and fire at once, each of
  them sends at most one request on stale news before seeing the new count; that room is theirs;
- otherwise it waits for the next window, plus the guard and a little jitter so that N clients
  do not all land on the same instant. A window we have no news of counts as fresh.

A newcomer knows nothing of the limit before exchangeInfo (weight 20): if `/api/v3/time`
(weight 1) shows others at work in this window, it asks in the next one, among the first
requests. N newcomers in the same instant still need about 21 * N of room (Binance: 6000).
"""

from __future__ import annotations

import math
import random
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BINANCE_WEIGHT_LIMIT",
    "EXCHANGE_COUNTS",
    "ExchangeCounts",
    "RateLimit",
    "WeightBudget",
    "budget_for",
    "parse_rate_limits",
    "used_weight_header",
]

_UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_LETTERS = {name[0]: seconds for name, seconds in _UNIT_SECONDS.items()}
_HEADER = re.compile(r"^x-mbx-used-weight-(\d+)([smhd])$", re.IGNORECASE)
# Beyond the clock's uncertainty: timer and scheduling slop, so we land after the reset.
_GUARD_S = 0.005
# A window's jitter: at most 2% of it and never more than 0.1 s.
_JITTER_SHARE, _JITTER_MAX = 0.02, 0.1
# `others` follows rises at once and falls back slowly, so one calm round trip is not trusted.
_OTHERS_DECAY = 0.8
# Room left in the window: this many times what the others add during one of our round trips,
# each of those measured at most a quarter of the limit (so at worst we aim at half of it).
_OTHERS_ROOM, _OTHERS_CAP = 2.0, 0.25


@dataclass(frozen=True)
class RateLimit:
    """One REQUEST_WEIGHT limit: `limit` weight per `interval_num` `interval`s, per IP."""

    limit: int
    interval: str = "MINUTE"
    interval_num: int = 1

    @property
    def seconds(self) -> int:
        """The window's length in seconds."""
        return _UNIT_SECONDS[self.interval] * self.interval_num

    @property
    def header(self) -> str:
        """The answer header carrying this window's count, e.g. `X-MBX-USED-WEIGHT-1M`."""
        return f"X-MBX-USED-WEIGHT-{self.interval_num}{self.interval[0]}"

    def __str__(self) -> str:
        return f"{self.limit} weight per {self.interval_num}{self.interval[0]}"


BINANCE_WEIGHT_LIMIT = RateLimit(6000, "MINUTE", 1)
"""Binance's published spot REQUEST_WEIGHT limit, used when exchangeInfo cannot be read."""


def parse_rate_limits(info: Any) -> tuple[RateLimit, ...]:
    """Return the REQUEST_WEIGHT limits of an exchangeInfo answer; raise ValueError if none."""
    entries = info.get("rateLimits") if isinstance(info, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("exchangeInfo has no rateLimits list")
    limits = []
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("rateLimitType") != "REQUEST_WEIGHT":
            continue
        limit, interval, num = entry.get("limit"), entry.get("interval"), entry.get("intervalNum")
        if not (isinstance(limit, int) and limit > 0 and isinstance(num, int) and num > 0):
            raise ValueError(f"malformed REQUEST_WEIGHT rate limit {entry!r}")
        if interval not in _UNIT_SECONDS:
            raise ValueError(f"unknown rate limit interval {interval!r}")
        limits.append(RateLimit(limit, str(interval), num))
    if not limits:
        raise ValueError("exchangeInfo lists no REQUEST_WEIGHT rate limit")
    return tuple(limits)


def used_weight_header(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """Return `(count, window seconds)` from the first used-weight header, or None."""
    for name, value in headers.items():
        match = _HEADER.match(name)
        if match and value.strip().isdigit():
            return int(value), int(match[1]) * _LETTERS[match[2].upper()]
    return None


@dataclass
class _Window:
    rate: RateLimit
    index: int = -1  # the exchange's window our latest news is from
    used: int = 0  # the count that news told
    others: float = 0.0  # weight others add during one of our round trips
    last: int | None = None  # the count after our previous answer, if nothing came between


class WeightBudget:
    """What one process knows of its IP's request weight at one exchange (thread-safe)."""

    def __init__(
        self,
        limits: Iterable[RateLimit],
        *,
        offset: float = 0.0,
        uncertainty: float = 0.0,
        headroom: float = 0.9,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.limits = tuple(limits)
        if not self.limits:
            raise ValueError("a weight budget needs at least one rate limit")
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom!r}")
        self.offset = offset
        """The exchange's clock minus ours, in seconds."""
        self.guard = abs(uncertainty) + _GUARD_S
        """Seconds after a window's estimated start before we count it as started."""
        self.headroom = headroom
        self._rng = rng
        self._windows = [_Window(rate) for rate in self.limits]
        self._inflight = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        limits = ", ".join(map(str, self.limits))
        return f"WeightBudget({limits}, offset={self.offset:+.3f}s, guard={self.guard:.3f}s)"

    def wait(self, weight: int, now: float) -> tuple[float, int, RateLimit]:
        """Return `(seconds to wait, count seen, limit)` before sending `weight`; 0 means go."""
        longest, seen, binding = 0.0, 0, self.limits[0]
        with self._lock:
            for window in self._windows:
                secs = window.rate.seconds
                at = now + self.offset - self.guard
                index = math.floor(at / secs)
                used = window.used if window.index >= index else 0
                planned = used + self._inflight + weight
                room = window.rate.limit - _OTHERS_ROOM * window.others
                within = planned <= self.headroom * window.rate.limit and planned <= room
                # A request too heavy even for an empty window cannot do better by waiting.
                if within or (used == 0 and self._inflight == 0):
                    continue
                start = max(index, window.index) + 1
                jitter = self._rng() * min(_JITTER_SHARE * secs, _JITTER_MAX)
                wait = start * secs - at + jitter
                if wait > longest:
                    longest, seen, binding = wait, used, window.rate
        return longest, seen, binding

    def next_window(self, now: float) -> float:
        """Return seconds until the first window has surely started (plus jitter)."""
        secs = self.limits[0].seconds
        at = now + self.offset - self.guard
        return (
            (math.floor(at / secs) + 1) * secs
            - at
            + self._rng() * min(_JITTER_SHARE * secs, _JITTER_MAX)
        )

    def waited(self) -> None:
        """Say we slept: the next answer's rise is not one round trip of the others."""
        with self._lock:
            for window in self._windows:
                window.last = None

    def sending(self, weight: int) -> None:
        """Count a request of ours as in flight."""
        with self._lock:
            self._inflight += weight

    def answered(
        self,
        weight: int,
        headers: Mapping[str, str],
        sent_at: float,
        received_at: float,
        *,
        inflight: bool = True,
    ) -> None:
        """Take the counts an answer reports; release its weight from in flight."""
        with self._lock:
            if inflight:
                self._inflight = max(0, self._inflight - weight)
            for window in self._windows:
                value = headers.get(window.rate.header)
                if value is not None and value.strip().isdigit():
                    self._observe(window, int(value), weight, sent_at, received_at)

    def _observe(
        self, window: _Window, used: int, weight: int, sent_at: float, received_at: float
    ) -> None:
        secs = window.rate.seconds
        lo = math.floor((sent_at + self.offset - self.guard) / secs)
        hi = math.floor((received_at + self.offset + self.guard) / secs)
        if lo == hi:
            index = lo
        elif window.index == lo and used >= window.used:
            index = lo  # the count went on rising: still the window we had news of
        else:
            index = hi  # a reset, or no way to tell: the later window is the careful guess
        if index < window.index:
            return  # a late answer from a window already over
        if index == window.index:
            if window.last is not None:
                # Capped: a burst from elsewhere on the IP must not stall us for long.
                sample = min(used - window.last - weight, _OTHERS_CAP * window.rate.limit)
                if sample >= 0:
                    window.others = max(float(sample), _OTHERS_DECAY * window.others)
            window.used = max(window.used, used)
        else:
            window.index, window.used = index, used
            window.others *= _OTHERS_DECAY  # a new window: the old news fades a little
        window.last = used


class ExchangeCounts:
    """What this process asked of the exchange and how it answered, for its metrics.

    Plain counters (no Prometheus here): `streamforge_nb.workers.metrics` reads them at
    each scrape. Thread-safe; counts only grow.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.weight_sent = 0
        """Request weight of every request sent (answered or not)."""
        self.used_weight: int | None = None
        """The IP's count the exchange last reported (`X-MBX-USED-WEIGHT-1M` on Binance)."""
        self.weight_limit: int | None = None
        """The first REQUEST_WEIGHT limit learned (None before exchangeInfo)."""
        self.answers: dict[int, int] = {}
        """Answers by HTTP status (429: rate-limited, 418: banned)."""
        self.errors: dict[str, int] = {}
        """Failed requests by kind: `network`, `server` (5xx), `client` (other 4xx)."""

    def sent(self, weight: int) -> None:
        with self._lock:
            self.weight_sent += weight

    def answered(self, status: int, used_weight: int | None) -> None:
        with self._lock:
            self.answers[status] = self.answers.get(status, 0) + 1
            if used_weight is not None:
                self.used_weight = used_weight

    def failed(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def limited(self, limit: int) -> None:
        with self._lock:
            self.weight_limit = limit

    def snapshot(self) -> dict[str, Any]:
        """Return a consistent copy of the counts."""
        with self._lock:
            return {
                "weight_sent": self.weight_sent,
                "used_weight": self.used_weight,
                "weight_limit": self.weight_limit,
                "answers": dict(self.answers),
                "errors": dict(self.errors),
            }


EXCHANGE_COUNTS = ExchangeCounts()
"""This process's counts at the exchange (every `KlinesClient` adds to them)."""

_BUDGETS: dict[str, WeightBudget] = {}
_LOCKS: dict[str, threading.Lock] = {}
_REGISTRY = threading.Lock()


def budget_for(base_url: str, learn: Callable[[], WeightBudget]) -> WeightBudget:
    """Return this process's budget for `base_url`, calling `learn()` the first time only."""
    with _REGISTRY:
        budget = _BUDGETS.get(base_url)
        if budget is not None:
            return budget
        lock = _LOCKS.setdefault(base_url, threading.Lock())
    with lock:  # one learner per exchange; others of the same URL wait for its answer
        budget = _BUDGETS.get(base_url)
        if budget is None:
            budget = learn()
            with _REGISTRY:
                _BUDGETS[base_url] = budget
        return budget
