"""Real Binance klines are the truth: stored exactly through every path, never refused.

The rows are in tests/data/binance_real_klines.csv (their sources are named there); the
anomalies each must show are written there too, from what the row is, not from the code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from streamforge_nb.control.queue import Queue
from streamforge_nb.platform.checks import candle_anomalies, decode_and_check
from streamforge_nb.platform.contract import Candle, encode
from streamforge_nb.platform.names import candle_type, new_short_id, queue_id
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.testing import ExchangeServer
from streamforge_nb.workers.loader import LoaderOptions, run_loader
from streamforge_nb.workers.sink import SinkOptions, run_sink

REAL = Path(__file__).parent / "data" / "binance_real_klines.csv"
NOW_MS = 1_765_000_000_000  # 2025-12-06: a fixed "now", after every row
DECIMALS = {1: "open", 2: "high", 3: "low", 4: "close", 5: "volume", 7: "quote_asset_volume",
            9: "taker_buy_base_asset_volume", 10: "taker_buy_quote_asset_volume"}  # fmt: skip


@dataclass(frozen=True)
class RealRow:
    symbol: str
    interval: str
    source: str
    anomalies: frozenset[str]
    kline: list[Any]  # Binance's 12 fields: ints for the times and the count, strings else


def real_rows(interval: str | None = None) -> list[RealRow]:
    rows = []
    for line in REAL.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        symbol, iv, source, odd, *fields = line.split(",")
        kline: list[Any] = [int(f) if i in (0, 6, 8) else f for i, f in enumerate(fields)]
        kinds = frozenset() if odd == "-" else frozenset(odd.split(";"))
        if interval is None or iv == interval:
            rows.append(RealRow(symbol, iv, source, kinds, kline))
    return rows


def test_the_real_rows_hold_every_kind_of_oddity_and_regular_ones() -> None:
    found = set().union(*(row.anomalies for row in real_rows()))
    assert found == {"close_time", "off_grid", "zero_volume", "flat"}
    assert any(not row.anomalies for row in real_rows())
    assert all(len(row.kline) == 12 for row in real_rows())


@pytest.mark.parametrize("row", real_rows(), ids=lambda r: f"{r.interval}-{r.kline[0]}")
def test_no_real_candle_is_refused_and_its_anomalies_are_found(row: RealRow) -> None:
    candle = Candle.from_kline(row.symbol, row.interval, row.kline)
    value = encode(candle)
    table, refused = decode_and_check([value], [candle.key.encode()], row.symbol, row.interval,
                                      NOW_MS, span=(row.kline[0], row.kline[0] + 1))  # fmt: skip
    assert refused == []
    assert table.num_rows == 1
    kinds, odd = candle_anomalies(table, row.interval)
    assert (set(kinds), odd) == (set(row.anomalies), 1 if row.anomalies else 0)
    # Without the queue's series either (a hand-made queue: each row's own).
    assert set(candle_anomalies(table, None)[0]) == row.anomalies


def test_quality_lists_the_real_anomalies_and_gaps_see_no_hole_at_shifted_minutes(
    tmp_path: Path,
) -> None:
    rows = real_rows("1m")
    with CandleStore.open(f"local://{tmp_path}") as store:
        store.write([Candle.from_kline(r.symbol, r.interval, r.kline) for r in rows])
        found = store.quality("BTCUSDT", "1m")
        expected = sorted(
            (pd.Timestamp(r.kline[0], unit="ms", tz="UTC"), kind)
            for r in rows
            for kind in r.anomalies
        )
        assert sorted(zip(found["open_time"], found["kind"], strict=True)) == expected
        assert "20.799 s into the 1m slot" in " ".join(found["detail"])
        # 2017-12-18 09:59:20.799 and 10:00:20.799: the exchange's minutes 09:59 and 10:00.
        gaps = store.gaps("BTCUSDT", "1m", "2017-12-18T09:59:00Z", "2017-12-18T10:01:00Z")
        assert gaps.empty, gaps
        # The data itself is untouched by the findings.
        frame = store.load("BTCUSDT", "1m")
    assert frame.index.as_unit("ms").asi8.tolist() == [r.kline[0] for r in rows]


def _series_range(rows: list[RealRow]) -> str:
    first = pd.Timestamp(rows[0].kline[0], unit="ms", tz="UTC").normalize()
    last = pd.Timestamp(rows[-1].kline[0], unit="ms", tz="UTC")
    end = (last + pd.offsets.MonthBegin(1)).normalize()
    return f"{first:%Y-%m-%d}:{end:%Y-%m-%d}"


def _load_and_store(
    settings: Settings, exchange: ExchangeServer, qid: str, interval: str, time_range: str,
    store_url: str, source: str = "api",
) -> pd.DataFrame:  # fmt: skip
    """Run the loader and the sink of queue `qid` as a workflow does; return the sink's status."""
    loader = LoaderOptions(
        queue_id=qid,
        symbol="BTCUSDT",
        interval=interval,
        time_range=time_range,
        base_url=exchange.base_url,
        source=source,
    )
    sink_options = SinkOptions(queue_id=qid, store_url=store_url, time_range=time_range)
    codes: list[int] = []
    sink = threading.Thread(target=lambda: codes.append(run_sink(sink_options, settings)))
    sink.start()
    assert run_loader(loader, settings) == 0
    sink.join(timeout=120)
    assert codes == [0]
    with Queue(qid, settings) as queue:
        final = queue.status()
    return final[final.index.str.startswith("arango-candles__")]


@pytest.mark.parametrize("source", ["api", "archive"])
@pytest.mark.parametrize("interval", ["1h", "1m"])
def test_real_rows_load_exactly_through_the_loader_and_the_sink(
    settings: Settings, tmp_path: Path, interval: str, source: str
) -> None:
    rows = real_rows(interval)
    time_range = _series_range(rows)
    day = pd.Timestamp(time_range.split(":")[0]).date()
    qid = queue_id("BTCUSDT", candle_type(interval, source), day, new_short_id())
    store_url = f"local://{tmp_path}"
    served = {("BTCUSDT", interval): [r.kline for r in rows]}
    with ExchangeServer(("BTCUSDT",), rows=served) as exchange:
        sinks = _load_and_store(settings, exchange, qid, interval, time_range, store_url, source)
    with CandleStore.open(store_url) as store:
        frame = store.load("BTCUSDT", interval)
    assert frame.index.as_unit("ms").asi8.tolist() == [r.kline[0] for r in rows]
    for (_, got), row in zip(frame.iterrows(), rows, strict=True):
        assert got["close_time"] == pd.Timestamp(row.kline[6], unit="ms", tz="UTC")
        assert got["number_of_trades"] == row.kline[8]
        assert {name: got[name] for name in DECIMALS.values()} == {
            name: float(row.kline[i]) for i, name in DECIMALS.items()
        }
    assert sinks["status"].tolist() == ["finished"]
    assert sinks["dead_letters"].tolist() == [0]
    assert sinks["anomalies"].tolist() == [sum(1 for r in rows if r.anomalies)]


@pytest.mark.parametrize("interval", ["1w", "1M"])
def test_weeks_and_months_go_through_the_loader_and_sink_whole(
    settings: Settings, tmp_path: Path, interval: str
) -> None:
    # Generated candles (not market data) on Binance's grid: weeks open on Mondays, months on
    # the 1st and close at the month's last ms, 28 to 31 days later.
    time_range = "2024-01-01:2025-01-01"
    qid = queue_id("BTCUSDT", candle_type(interval), pd.Timestamp("2024-01-01").date(),
                   new_short_id())  # fmt: skip
    store_url = f"local://{tmp_path}"
    with ExchangeServer(("BTCUSDT",)) as exchange:
        start, end = (int(pd.Timestamp(d, tz="UTC").value // 10**6) for d in time_range.split(":"))
        expected = exchange.expected_rows("BTCUSDT", interval, start, end)
        sinks = _load_and_store(settings, exchange, qid, interval, time_range, store_url)
    assert len(expected) == (12 if interval == "1M" else 53)  # Mondays 2024-01-01 .. 12-30
    with CandleStore.open(store_url) as store:
        frame = store.load("BTCUSDT", interval)
        assert store.quality("BTCUSDT", interval).empty
    assert frame.index.as_unit("ms").asi8.tolist() == [row[0] for row in expected]
    closes = pd.DatetimeIndex(frame["close_time"]).as_unit("ms").asi8.tolist()
    assert closes == [row[6] for row in expected]
    assert sinks[["status", "dead_letters"]].values.tolist() == [["finished", 0]]
