"""The ArangoDB candle backend: the platform's own collections, through python-arango.

Collections follow the platform's naming: one per workflow, named for its
start day, e.g. `btcusdt_api_candles_1m_2024_08_01`. Writes go to the collection of each
candle's UTC day (as a day-long workflow would write it; `1d` and longer candles to the
collection of January 1st, else each would get its own). Reads find every collection of the
series by name, so collections the platform's workers wrote are read too, whatever days they
span; when two hold the same open time, the later-named collection wins.

Documents are the platform's candle messages: `_key` `SYMBOL_interval_opentime`, decimal
strings for prices and volumes, integers for times and trades. Writes are
`insert_many(overwrite_mode="replace", sync=True)` in chunks: one request per chunk,
idempotent, durable on return (waitForSync; the sink commits Kafka offsets next), and never
`import_bulk(overwrite=True)`, which would first delete the collection's documents.
Queries take values and collection names only as bind parameters (`@@col`).

Ranges the exchange confirmed empty live in the collection `exchange_empty`, one document per
recorded range (`_key` `SYMBOL_interval_start_end`), inserted with `overwrite_mode="ignore"`:
recording a range again is a no-op and concurrent sinks never read-modify-write one document.
Reads merge them (`base.merge_ranges`).

Requests (docs/operations.md, "ArangoDB"): the collection listing is read once per process
and kept, with the collections this process creates or finds added; a name it does not hold
is asked for by name before anything is created, so a user without rights to create
collections works on collections that exist. A load asks the server for the series' names
(`COLLECTIONS()`, filtered there) and reads the collections named before its end in one AQL
(more only past `_MAX_PER_QUERY` collections or `_READ_BUDGET` candles). `coverage()` is one
listing and one AQL per `_STATS_PER_QUERY` candle collections: counts from the collections'
statistics (`LENGTH`), first and last from the ends of the open_time index.

Connections are made in `store.arango_connect` (re-exported here), the collections named,
listed and created in `store.arango_collections` (`ArangoCollections`, this backend's base).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from streamforge_nb.exceptions import InvalidName, StoreError, store_errors
from streamforge_nb.platform.intervals import DAY_MS, INTERVALS, interval_ms
from streamforge_nb.platform.names import parse_collection_name
from streamforge_nb.store.arango_collections import ArangoCollections
from streamforge_nb.store.arango_connect import (
    CONNECT_ATTEMPTS,
    ArangoTarget,
    arango_client,
    parse_arango_url,
)
from streamforge_nb.store.base import CandleBackend
from streamforge_nb.store.frames import (
    COLUMNS,
    FLOAT_COLUMNS,
    empty_coverage,
    empty_frame,
    frame_from_arrays,
    utc_index,
)

__all__ = [
    "CONNECT_ATTEMPTS",
    "EXCHANGE_EMPTY",
    "QUEUE_STATE",
    "ArangoBackend",
    "ArangoTarget",
    "arango_client",
    "parse_arango_url",
]

_FIELDS = ("open_time", *COLUMNS)
# One subquery per collection, `{i}` the collection's place (later collections win).
_READ_PART = (
    "(FOR d IN @@c{i} FILTER d.open_time >= @start AND d.open_time < @end "
    "RETURN [{i}, " + ", ".join(f"d.{f}" for f in _FIELDS) + "])"
)
# The count comes from the collection's statistics; first/last walk the open_time index.
_STATS_PART = (
    "{{rows: LENGTH(@@c{i}), "
    "first: FIRST(FOR d IN @@c{i} SORT d.open_time ASC LIMIT 1 RETURN d.open_time), "
    "last: FIRST(FOR d IN @@c{i} SORT d.open_time DESC LIMIT 1 RETURN d.open_time)}}"
)
_MAX_PER_QUERY = 64  # collections one read query names at most
_READ_BUDGET = 200_000  # candles one read query is expected to return at most
_STATS_PER_QUERY = 100  # collections one coverage query names
_ERR_UNIQUE_CONSTRAINT = 1210  # a document of that _key exists
QUEUE_STATE = "queue_state"
"""The platform's collection of queue records."""
EXCHANGE_EMPTY = "exchange_empty"
"""Ranges the exchange confirmed empty, one document per recorded range."""
EXCHANGE_EMPTY_INDEX = ("symbol", "interval", "start_ms")
_EMPTY_QUERY = (
    "FOR r IN @@col FILTER r.symbol == @symbol AND r.interval == @interval "
    "AND r.start_ms < @end AND r.end_ms > @start RETURN [r.start_ms, r.end_ms]"
)


def _format_decimals(values: np.ndarray[Any, Any]) -> list[str]:
    """Render floats as the shortest decimal strings that read back exactly, no exponent."""
    text = values.astype(str)
    out: list[str] = text.tolist()
    # numpy writes 1e-05 for tiny volumes; Binance (and so the platform) never uses exponents.
    for i in np.flatnonzero(np.char.find(text, "e") >= 0):
        out[i] = np.format_float_positional(values[i], trim="-")
    return out


class ArangoBackend(ArangoCollections, CandleBackend):
    """Candles in the platform's ArangoDB collections (see the module docstring)."""

    # --- writing -------------------------------------------------------------------------

    def write_frame(self, symbol: str, interval: str, frame: pd.DataFrame) -> int:
        """Replace-insert the candles into their day collections, `chunk` per request."""
        open_ms = np.asarray(frame.index.as_unit("ms").asi8, dtype=np.int64)
        docs = self.to_documents(symbol, interval, frame)
        unit = "Y" if interval in ("1d", "3d", "1w", "1M") else "D"
        parts = open_ms.view("M8[ms]").astype(f"M8[{unit}]")
        cuts = [0, *(np.flatnonzero(parts[1:] != parts[:-1]) + 1).tolist(), len(open_ms)]
        with store_errors(f"cannot write {symbol} {interval} candles", self.url):
            for lo, hi in itertools.pairwise(cuts):
                col = self._ensure(self.collection_for(symbol, interval, int(open_ms[lo])))
                for at in range(lo, hi, self.chunk):
                    col.insert_many(
                        docs[at : min(at + self.chunk, hi)],
                        overwrite_mode="replace",
                        # Durable on return (waitForSync): the sink commits offsets next.
                        sync=True,
                        raise_on_document_error=True,
                    )
        return len(docs)

    @staticmethod
    def to_documents(symbol: str, interval: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Return a candle frame as the platform's candle messages (decimal strings, `_key`)."""
        prefix = f"{symbol}_{interval}_"
        cols: dict[str, list[Any]] = {"open_time": frame.index.as_unit("ms").asi8.tolist()}
        for name in COLUMNS:
            if name == "close_time":
                cols[name] = pd.DatetimeIndex(frame[name]).as_unit("ms").asi8.tolist()
            elif name == "number_of_trades":
                cols[name] = frame[name].to_numpy(np.int64).tolist()
            else:
                cols[name] = _format_decimals(frame[name].to_numpy(np.float64))
        keys = [f"{prefix}{t}" for t in cols["open_time"]]
        names = list(cols)
        return [
            {"_key": key, **dict(zip(names, row, strict=True))}
            for key, row in zip(keys, zip(*cols.values(), strict=True), strict=True)
        ]

    # --- reading -------------------------------------------------------------------------

    def read(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Union the range read of every collection of the series; later collections win.

        Only collections named before `end_ms` can hold candles of the range (a workflow's
        collection holds nothing before its start day; it may hold later days).
        """
        names = [n for n in self.collections(symbol, interval) if _day_ms(n) < end_ms]
        per_query = _collections_per_query(interval)
        rows: list[list[Any]] = []
        with store_errors(f"cannot read {symbol} {interval} candles", self.url):
            for at in range(0, len(names), per_query):
                part = names[at : at + per_query]
                subqueries = ", ".join(_READ_PART.format(i=at + i) for i in range(len(part)))
                binds: dict[str, Any] = {f"@c{at + i}": n for i, n in enumerate(part)}
                cursor = self._db.aql.execute(
                    f"FOR r IN UNION({subqueries}, []) RETURN r",
                    bind_vars={**binds, "start": start_ms, "end": end_ms},
                    batch_size=10_000,
                    stream=True,
                )
                rows.extend(cursor)
        if not rows:
            return empty_frame()
        table = list(zip(*rows, strict=True))
        place = np.asarray(table[0], dtype=np.int64)
        open_ms = np.asarray(table[1], dtype=np.int64)
        columns = {}
        try:
            for name, values in zip(COLUMNS, table[2:], strict=True):
                if name in FLOAT_COLUMNS:
                    # Strings as Binance sends them, or numbers if a writer stored numbers.
                    columns[name] = np.asarray(values, dtype=object).astype(np.float64)
                else:
                    columns[name] = np.asarray(values, dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{symbol} {interval} candles at {self.url}: field {name!r} is not a number "
                f"in every document ({exc})"
            ) from None
        # By open time, then collection: keep the last of each open time (later one wins).
        order = np.lexsort((place, open_ms))
        open_ms = open_ms[order]
        keep = np.append(open_ms[1:] != open_ms[:-1], True)
        take = order[keep]
        return frame_from_arrays(open_ms[keep], {k: v[take] for k, v in columns.items()})

    def coverage(self) -> pd.DataFrame:
        """Return symbol, interval, first, last, rows per series (rows summed over collections)."""
        types = {self._type(iv): iv for iv in INTERVALS}
        series: dict[tuple[str, str], list[int]] = {}
        with store_errors("cannot read the ArangoDB coverage", self.url):
            candles: list[tuple[str, tuple[str, str]]] = []
            for name in sorted(self._listing(refresh=True)):
                try:
                    symbol, type_, _day = parse_collection_name(name)
                except InvalidName:
                    continue
                if type_ in types:
                    candles.append((name, (symbol, types[type_])))
            for at in range(0, len(candles), _STATS_PER_QUERY):
                part = candles[at : at + _STATS_PER_QUERY]
                entries = ", ".join(_STATS_PART.format(i=i) for i in range(len(part)))
                cursor = self._db.aql.execute(
                    f"RETURN [{entries}]",
                    bind_vars={f"@c{i}": name for i, (name, _key) in enumerate(part)},
                )
                for (_name, key), stats in zip(part, next(iter(cursor)), strict=True):
                    if not stats["rows"] or stats["first"] is None:
                        continue
                    acc = series.setdefault(key, [stats["first"], stats["last"], 0])
                    acc[0], acc[1] = min(acc[0], stats["first"]), max(acc[1], stats["last"])
                    acc[2] += stats["rows"]
        if not series:
            return empty_coverage()
        order = {iv: i for i, iv in enumerate(INTERVALS)}
        keys = sorted(series, key=lambda k: (k[0], order[k[1]]))
        return pd.DataFrame(
            {
                "symbol": [k[0] for k in keys],
                "interval": [k[1] for k in keys],
                "first": utc_index(np.array([series[k][0] for k in keys]), None),
                "last": utc_index(np.array([series[k][1] for k in keys]), None),
                "rows": np.array([series[k][2] for k in keys], dtype=np.int64),
            }
        )

    def save_queue_state(self, record: Mapping[str, Any]) -> None:
        with store_errors("cannot save queue state", self.url):
            collection = self._ensure_state()
            document = {**json.loads(json.dumps(record, default=str)), "_key": record["queue_id"]}
            collection.insert(document, overwrite=True, overwrite_mode="replace", sync=True)

    def create_queue_state(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """Insert without overwrite: the server refuses a second document of one `_key`."""
        from arango.exceptions import DocumentInsertError

        with store_errors("cannot create queue state", self.url):
            collection = self._ensure_state()
            document = {**json.loads(json.dumps(record, default=str)), "_key": record["queue_id"]}
            try:
                collection.insert(document, sync=True, silent=True)
                return None
            except DocumentInsertError as exc:
                if exc.error_code != _ERR_UNIQUE_CONSTRAINT:
                    raise
            found = collection.get(record["queue_id"])
        # Deleted since its insert refused ours: the first launch is all that is known.
        return {"queue_id": record["queue_id"]} if found is None else _state_of(found)

    def queue_states(self) -> list[dict[str, Any]]:
        with store_errors("cannot read queue state", self.url):
            if not self._exists(QUEUE_STATE):
                return []
            cursor = self._db.aql.execute(
                "FOR s IN @@col SORT s._key RETURN UNSET(s, '_id', '_rev', '_key')",
                bind_vars={"@col": QUEUE_STATE},
            )
            return list(cursor)

    def _ensure_state(self) -> Any:
        return self._ensure(QUEUE_STATE, index=())

    def write_exchange_empty(
        self, symbol: str, interval: str, ranges: Sequence[tuple[int, int]]
    ) -> int:
        """Insert one document per range; an existing one (same `_key`) is left as it is."""
        if not ranges:
            return 0
        docs = [
            {"_key": f"{symbol}_{interval}_{start}_{end}", "symbol": symbol,
             "interval": interval, "start_ms": int(start), "end_ms": int(end)}
            for start, end in ranges
        ]  # fmt: skip
        with store_errors(f"cannot record {symbol} {interval} exchange-empty ranges", self.url):
            col = self._ensure_empty()
            col.insert_many(docs, overwrite_mode="ignore", sync=True, raise_on_document_error=True)
        return len(docs)

    def _ensure_empty(self) -> Any:
        return self._ensure(EXCHANGE_EMPTY, index=EXCHANGE_EMPTY_INDEX)

    def exchange_empty(
        self, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        with store_errors(f"cannot read {symbol} {interval} exchange-empty ranges", self.url):
            if not self._exists(EXCHANGE_EMPTY):
                return []
            cursor = self._db.aql.execute(
                _EMPTY_QUERY,
                bind_vars={"@col": EXCHANGE_EMPTY, "symbol": symbol, "interval": interval,
                           "start": start_ms, "end": end_ms},
            )  # fmt: skip
            return [(int(a), int(b)) for a, b in cursor]

    def close(self) -> None:
        """Close the HTTP sessions."""
        self._client.close()

    def __repr__(self) -> str:
        return f"ArangoBackend({self.url!r}, user={self._target.user!r})"


def _state_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """A queue-state record as saved: without ArangoDB's system fields."""
    return {k: v for k, v in document.items() if k not in ("_id", "_rev", "_key")}


def _collections_per_query(interval: str) -> int:
    """How many collections one read query names: about `_READ_BUDGET` candles at most,
    counting a day of candles per collection (a year for `1d` and longer)."""
    step = interval_ms(interval)
    per_collection = 366 if step is None or step >= DAY_MS else DAY_MS // step
    return max(1, min(_MAX_PER_QUERY, _READ_BUDGET // per_collection))


def _day_ms(name: str) -> int:
    y, m, d = (int(p) for p in name.rsplit("_", 3)[1:])
    return int(datetime(y, m, d, tzinfo=UTC).timestamp() * 1000)
