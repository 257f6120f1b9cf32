"""The market queries in AQL, for a store on the platform's ArangoDB (python-arango).

    from streamforge_nb.store import arango_query
    arango_query.resample(store.backend, "BTCUSDT", "1m", "1h", start_ms, end_ms)
    arango_query.coverage_by_month(store.backend, "BTCUSDT", "1m", start_ms, end_ms)
    arango_query.read_fields(store.backend, "BTCUSDT", "1m", start_ms, end_ms, ["close"])

The same answers as the embedded store's DuckDB versions (`store.query`, `store.coverage`),
computed by the server: a range filter on the persistent `open_time` index of each of the
series' day collections, a first `COLLECT` keeping one candle per open time (the later
collection wins, as `ArangoBackend.read` does), then a `COLLECT ... AGGREGATE` per bucket.
Open and close are the price of the first and last candle in a bucket: `MIN`/`MAX` over
`[open_time, price]` pairs, which AQL compares element by element. Collection names and
values are bind parameters only (`@@c0`, `@start`).

Not run here: no ArangoDB server exists on this machine, and the tests
(tests/test_market.py, `arango` marker) skip unless STREAMFORGE_TEST_ARANGO_URL names one.
`CandleStore.sql`/`resample_many`/`coverage(by=...)` on an ArangoDB store still raise
`StoreCapabilityError`; call these functions directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from streamforge_nb.exceptions import InvalidName, store_errors
from streamforge_nb.platform.intervals import WEEK_OFFSET_MS, check_interval, interval_ms
from streamforge_nb.store.frames import COLUMNS, FLOAT_COLUMNS, check_series, utc_index

__all__ = [
    "coverage_by_month",
    "coverage_query",
    "read_fields",
    "read_query",
    "resample",
    "resample_query",
]

_SUMS = (
    "volume", "quote_asset_volume", "taker_buy_base_asset_volume",
    "taker_buy_quote_asset_volume",
)  # fmt: skip


def _latest(count: int) -> str:
    """AQL yielding `d`: one candle per open time in [@start, @end), the later collection's."""
    parts = ", ".join(
        f"(FOR x IN @@c{i} FILTER x.open_time >= @start AND x.open_time < @end RETURN [{i}, x])"
        for i in range(count)
    )
    return (
        f"FOR r IN UNION({parts}, []) "
        "COLLECT t = r[1].open_time AGGREGATE latest = MAX(r) "
        "LET d = latest[1] "
    )


def _number(field: str) -> str:
    # Documents hold Binance's decimal strings (or numbers if a writer stored numbers).
    return f"TO_NUMBER(d.{field})" if field in FLOAT_COLUMNS else f"d.{field}"


def read_query(count: int, fields: Sequence[str]) -> str:
    """AQL returning [open_time, *fields] rows of `count` collections, sorted by time."""
    values = ", ".join(["d.open_time", *(f"d.{f}" for f in fields)])
    return f"{_latest(count)}SORT d.open_time RETURN [{values}]"


def resample_query(count: int, rule: str) -> str:
    """AQL aggregating the candles of `count` collections to `rule` buckets."""
    step = interval_ms(check_interval(rule))
    if step is None:
        bucket = "DATE_TIMESTAMP(DATE_TRUNC(d.open_time, 'month'))"
    else:
        offset = WEEK_OFFSET_MS if rule == "1w" else 0
        bucket = f"d.open_time - (((d.open_time - {offset}) % {step}) + {step}) % {step}"
    sums = ", ".join(f"{f} = SUM({_number(f)})" for f in _SUMS)
    return (
        f"{_latest(count)}LET bucket = {bucket} "
        "COLLECT open_time = bucket AGGREGATE "
        f"first = MIN([d.open_time, {_number('open')}]), "
        f"last = MAX([d.open_time, {_number('close')}]), "
        f"high = MAX({_number('high')}), low = MIN({_number('low')}), {sums}, "
        "close_time = MAX(d.close_time), number_of_trades = SUM(d.number_of_trades), "
        "candles = COUNT(1) "
        "SORT open_time "
        "RETURN MERGE({open_time, open: first[1], high, low, close: last[1], close_time, "
        f"number_of_trades, candles}}, {{{', '.join(_SUMS)}}})"
    )


def coverage_query(count: int) -> str:
    """AQL counting the candles of `count` collections per calendar month (UTC)."""
    return (
        f"{_latest(count)}"
        "COLLECT period = DATE_TIMESTAMP(DATE_TRUNC(d.open_time, 'month')) WITH COUNT INTO stored "
        "SORT period RETURN [period, stored]"
    )


def _run(backend: Any, symbol: str, interval: str, query: Any, start_ms: int, end_ms: int) -> Any:
    """Run `query(count)` over the series' collections named before `end_ms`; yield rows."""
    sym, iv = check_series(symbol, interval)
    names = [n for n in backend.collections(sym, iv) if _day_ms(n) < end_ms]
    if not names:
        return []
    binds: dict[str, Any] = {f"@c{i}": n for i, n in enumerate(names)}
    with store_errors(f"cannot query {sym} {iv} candles", backend.url):
        cursor = backend._db.aql.execute(
            query(len(names)),
            bind_vars={**binds, "start": start_ms, "end": end_ms},
            batch_size=10_000,
            stream=True,
        )
        return list(cursor)


def _day_ms(name: str) -> int:
    """The start (ms) of the day a collection is named for (`..._YYYY_MM_DD`)."""
    y, m, d = name.rsplit("_", 3)[1:]
    return int(np.datetime64(f"{y}-{m}-{d}", "ms").astype(np.int64))


def read_fields(
    backend: Any, symbol: str, interval: str, start_ms: int, end_ms: int, fields: Sequence[str]
) -> pd.DataFrame:
    """Return `fields` of the range, indexed by open time (only those attributes travel)."""
    unknown = [f for f in fields if f not in COLUMNS]
    if unknown:
        raise InvalidName(f"unknown candle field(s) {unknown!r}")
    rows = _run(backend, symbol, interval, lambda n: read_query(n, fields), start_ms, end_ms)
    table = list(zip(*rows, strict=True)) if rows else [()] * (len(fields) + 1)
    data: dict[str, Any] = {}
    for name, values in zip(fields, table[1:], strict=True):
        if name == "close_time":
            data[name] = utc_index(np.asarray(values, dtype=np.int64), None)
        elif name == "number_of_trades":
            data[name] = np.asarray(values, dtype=np.int64)
        else:
            data[name] = np.asarray(values, dtype=object).astype(np.float64)
    return pd.DataFrame(data, index=utc_index(np.asarray(table[0], dtype=np.int64)))


def resample(
    backend: Any, symbol: str, interval: str, rule: str, start_ms: int, end_ms: int
) -> pd.DataFrame:
    """Aggregate the series to `rule` on the server; the frame of `analysis.resample` plus
    `candles` (how many merged)."""
    rows = _run(backend, symbol, interval, lambda n: resample_query(n, rule), start_ms, end_ms)
    frame = pd.DataFrame(rows, columns=["open_time", *COLUMNS, "candles"])
    frame.index = utc_index(frame.pop("open_time").to_numpy(np.int64))
    frame["close_time"] = utc_index(frame["close_time"].to_numpy(np.int64), None)
    return frame.astype({"number_of_trades": np.int64, "candles": np.int64})


def coverage_by_month(
    backend: Any, symbol: str, interval: str, start_ms: int, end_ms: int
) -> pd.DataFrame:
    """Return period (month, UTC) and stored (candles) of the series in the range."""
    rows = _run(backend, symbol, interval, coverage_query, start_ms, end_ms)
    periods = np.asarray([r[0] for r in rows], dtype=np.int64)
    stored = np.asarray([r[1] for r in rows], dtype=np.int64)
    return pd.DataFrame({"period": utc_index(periods, None), "stored": stored})
