"""What a candle backend is, and the registry `CandleStore.open` builds backends from.

A backend implements the seven abstract methods of `CandleBackend` (and, to record ranges the
exchange confirmed empty, the two with defaults); `CandleStore` does the checking, conversion
and de-duplication once, so a backend only ever sees valid, sorted frames without duplicate
open times, and merged, non-empty ranges. A URL scheme maps to a factory:
`register_backend("mirror", factory)` makes `CandleStore.open("mirror://...")` call
`factory(url, settings)`.

The built-in factories are registered by `streamforge_nb.plugins` and import their backend
module when first called, never here: the backends import this module (and `frames`), so
nothing in the store imports in a circle, and python-arango loads only for an ArangoDB store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from streamforge_nb.exceptions import ConfigError, StoreCapabilityError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from streamforge_nb.settings import Settings

__all__ = [
    "BackendFactory",
    "CandleBackend",
    "backend_for",
    "merge_ranges",
    "register_backend",
]


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return half-open `[start, end)` ranges sorted, overlapping and touching ones joined.

    Empty and reversed ranges are dropped. Merging is idempotent and order-free, so a range
    recorded twice, or by two sinks at once, is recorded once.
    """
    merged: list[tuple[int, int]] = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges if int(e) > int(s)):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


class CandleBackend(ABC):
    """Where candles live. Gets checked arguments and sorted, duplicate-free frames only."""

    url: str = ""
    """Where the backend points, without credentials."""

    @abstractmethod
    def write_frame(self, symbol: str, interval: str, frame: pd.DataFrame) -> int:
        """Store `frame` (replacing candles of the same open time); return rows written."""

    @abstractmethod
    def read(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Return candles with `start_ms <= open time < end_ms`, sorted, canonical layout."""

    @abstractmethod
    def coverage(self) -> pd.DataFrame:
        """Return one row per stored series: symbol, interval, first, last, rows."""

    @abstractmethod
    def save_queue_state(self, record: Mapping[str, Any]) -> None:
        """Insert or replace one queue's state (`record["queue_id"]` is its identity)."""

    @abstractmethod
    def create_queue_state(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """Insert `record` only if its queue id has none, atomically; return None if inserted,
        else the record already there (compare-and-set: of racing creates, one wins)."""

    @abstractmethod
    def queue_states(self) -> list[dict[str, Any]]:
        """Return every stored queue state."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and handles."""

    # Ranges the exchange confirmed empty (maintenance windows). A backend that does not
    # record them keeps the old behaviour: `gaps()` calls such windows `missing`.
    def write_exchange_empty(
        self, symbol: str, interval: str, ranges: Sequence[tuple[int, int]]
    ) -> int:
        """Record `ranges` (ms, merged, non-empty) as exchange-empty; return how many were given.

        Idempotent: recording a range again, or one overlapping it, changes nothing else.
        Durable on return, like `write_frame`. The default records nothing and returns 0.
        """
        return 0

    def exchange_empty(
        self, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        """Return recorded exchange-empty ranges overlapping `[start_ms, end_ms)` (any order)."""
        return []

    # Market-wide reads. The defaults work on any backend through `read` and `coverage`;
    # the embedded store overrides them to read only the columns and footers it needs.
    def series(self) -> list[tuple[str, str]]:
        """Return (symbol, interval) of every stored series."""
        found = self.coverage()
        return list(zip(found["symbol"], found["interval"], strict=True))

    def read_table(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, fields: Sequence[str]
    ) -> pa.Table:
        """Return `open_time` (timestamp ms UTC) and `fields` of the range as an Arrow table."""
        import pyarrow as pa

        frame = self.read(symbol, interval, start_ms, end_ms)[list(fields)]
        return pa.Table.from_pandas(frame.reset_index(), preserve_index=False)

    def partition_rows(self, symbol: str, interval: str) -> list[tuple[int, int, int, int, int]]:
        """Return (start, end, rows, first open, last open) in ms per stored partition, from
        statistics only (no candle is read)."""
        raise StoreCapabilityError(
            f"{type(self).__name__} keeps no per-partition row counts "
            "(coverage by month needs the embedded store, or store.arango_query for ArangoDB)"
        )


BackendFactory = Callable[[str, "Settings"], CandleBackend]
"""Builds a backend from the store URL and the settings (credentials live in the settings)."""

_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Make `CandleStore.open` build URLs `<scheme>://...` with `factory(url, settings)`."""
    _BACKENDS[scheme.lower()] = factory


def backend_for(url: str, settings: Settings) -> CandleBackend:
    """Build the backend of `url` (a path without `scheme://` is the embedded store)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else "local"
    factory = _BACKENDS.get(scheme)
    if factory is None:
        known = ", ".join(sorted(_BACKENDS))
        raise ConfigError(f"no candle store backend for scheme {scheme!r} (known: {known})")
    return factory(url, settings)
