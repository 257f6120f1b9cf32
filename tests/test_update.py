"""Exchange downtime and incremental updates, end to end: local exchange, broker, local Jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from streamforge_nb.control.queue import Queue
from streamforge_nb.settings import Settings
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.frames import empty_coverage
from streamforge_nb.store.update import plan_updates
from streamforge_nb.testing.exchange import ExchangeServer
from streamforge_nb.workflow.plan import Workflow

HOUR = 3_600_000
AUG1 = 1722470400000  # 2024-08-01T00:00:00Z
TARGETS = ["loader-candles", "arango-candles"]


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STREAMFORGE_HOME", str(tmp_path))
    return f"local://{tmp_path / 'store'}"


def finish(queues: list[Queue]) -> list[int]:
    """Wait for each queue; return the candles each one's sink stored."""
    written = []
    for queue in queues:
        with queue:
            final = queue.wait(timeout=240, targets=TARGETS, progress=False)
        assert set(final["status"]) == {"finished"}, final.to_dict("index")
        sinks = final.loc[final.index.str.startswith("arango-"), "records_written"]
        written.append(int(sinks.iloc[0]))
    return written


def open_times(store: CandleStore, symbol: str, interval: str, start: int, end: int) -> list[int]:
    return store.load(symbol, interval, start, end).index.as_unit("ms").asi8.tolist()


def test_downtime_is_exchange_empty_and_backfill_asks_only_for_missing(
    settings: Settings, store_url: str
) -> None:
    down = (AUG1 + 30 * HOUR, AUG1 + 36 * HOUR)  # six hours of maintenance on Aug 2
    with ExchangeServer(downtime=[down]) as exchange:
        options = {"base_url": exchange.base_url, "store": store_url, "settings": settings}
        first = Workflow.candles("ETHUSDT", "1h", "2024-08-01:2024-08-03", **options)
        assert finish([first.launch("local", settings=settings)]) == [48 - 6]
        with CandleStore.open(store_url) as store:
            rows = exchange.expected_rows("ETHUSDT", "1h", AUG1, AUG1 + 72 * HOUR)
            expected = [row[0] for row in rows]
            assert open_times(store, "ETHUSDT", "1h", AUG1, AUG1 + 48 * HOUR) == expected[:42]
            gaps = store.gaps("ETHUSDT", "1h", "2024-08-01", "2024-08-03")
            assert [(g.start.value // 10**6, g.end.value // 10**6, g.missing, g.kind)
                    for g in gaps.itertuples()] == [(*down, 6, "exchange_empty")]  # fmt: skip
            assert first.backfill(store, settings=settings) == []  # nothing missing

            # A longer range: Aug 3 is really missing, the downtime is not.
            longer = Workflow.candles("ETHUSDT", "1h", "2024-08-01:2024-08-04", **options)
            gaps = store.gaps("ETHUSDT", "1h", "2024-08-01", "2024-08-04")
            assert gaps["kind"].tolist() == ["exchange_empty", "missing"]
            queues = longer.backfill(store, settings=settings)
            assert len(queues) == 1 and finish(queues) == [24]
            assert open_times(store, "ETHUSDT", "1h", AUG1, AUG1 + 72 * HOUR) == expected
            assert store.gaps("ETHUSDT", "1h", "2024-08-01", "2024-08-04")["kind"].tolist() == [
                "exchange_empty"
            ]
            assert longer.backfill(store, settings=settings) == []


def test_update_fetches_exactly_the_new_candles(settings: Settings, store_url: str) -> None:
    clock = [datetime(2024, 8, 2, 0, 30, tzinfo=UTC).timestamp()]
    with ExchangeServer(clock=lambda: clock[0]) as exchange:
        first = Workflow.candles(
            "BTCUSDT", "1h", "2024-08-01:now", base_url=exchange.base_url, store=store_url,
            settings=settings, now=datetime.fromtimestamp(clock[0], UTC),
        )  # fmt: skip
        assert finish([first.launch("local", settings=settings)]) == [24]
        clock[0] = datetime(2024, 8, 2, 5, 10, tzinfo=UTC).timestamp()  # five more hours
        later = datetime.fromtimestamp(clock[0], UTC)
        with CandleStore.open(store_url) as store:
            updated = store.update(
                ["BTCUSDT"], ["1h", "4h"], now=later, base_url=exchange.base_url, settings=settings
            )
            notes = {s.interval: s.note for s in updated.series}
            assert notes["4h"].startswith("nothing stored")  # and no since: not loaded
            assert notes["1h"].startswith("load 2024-08-02T00:00:00+00:00 to 2024-08-02T05:00")
            assert len(updated) == 1 and finish(updated) == [5]
            expected = exchange.expected_rows("BTCUSDT", "1h", AUG1, AUG1 + 29 * HOUR)
            assert open_times(store, "BTCUSDT", "1h", 0, AUG1 + 100 * HOUR) == [
                r[0] for r in expected
            ]
            again = store.update("BTCUSDT", "1h", now=later, settings=settings)
            assert list(again) == [] and again.series[0].note.startswith("up to date")


def test_plan_updates_ranges_per_series() -> None:
    now = datetime(2024, 8, 2, 5, 10, tzinfo=UTC)
    coverage = pd.DataFrame(
        {
            "symbol": ["BTCUSDT", "BTCUSDT"],
            "interval": ["1h", "1M"],
            "first": pd.to_datetime([AUG1, AUG1], unit="ms", utc=True),
            "last": pd.to_datetime([AUG1 + 23 * HOUR, AUG1], unit="ms", utc=True),
            "rows": [24, 1],
        }
    )
    plans = plan_updates(coverage, ["BTCUSDT", "ETHUSDT"], ["1h", "1M"], now, since="2024-07-31")
    assert [(p.symbol, p.interval, p.needed, p.time_range) for p in plans] == [
        ("BTCUSDT", "1h", True, "2024-08-02T00:00:00+00:00/2024-08-02T05:00:00+00:00"),
        ("BTCUSDT", "1M", False, ""),  # August is not closed yet
        ("ETHUSDT", "1h", True, "2024-07-31T00:00:00+00:00/2024-08-02T05:00:00+00:00"),
        ("ETHUSDT", "1M", False, ""),  # since July 31: the first month opens Aug 1
    ]
    assert plan_updates(empty_coverage(), ["BTCUSDT"], ["1h"], now)[0].needed is False


def test_plan_updates_skips_what_the_exchange_already_said_is_empty() -> None:
    now = datetime(2024, 8, 2, 5, 10, tzinfo=UTC)
    coverage = pd.DataFrame(
        {
            "symbol": ["BTCUSDT"],
            "interval": ["1h"],
            "first": pd.to_datetime([AUG1], unit="ms", utc=True),
            "last": pd.to_datetime([AUG1 + 23 * HOUR], unit="ms", utc=True),
            "rows": [24],
        }
    )
    after = {("BTCUSDT", "1h"): [(AUG1 + 24 * HOUR, AUG1 + 26 * HOUR)]}
    (plan,) = plan_updates(coverage, ["BTCUSDT"], ["1h"], now, exchange_empty=after)
    assert plan.time_range == "2024-08-02T02:00:00+00:00/2024-08-02T05:00:00+00:00"
    assert "exchange-empty until 2024-08-02T02:00" in plan.note
    beyond = {("BTCUSDT", "1h"): [(AUG1 + 20 * HOUR, AUG1 + 30 * HOUR)]}
    (plan,) = plan_updates(coverage, ["BTCUSDT"], ["1h"], now, exchange_empty=beyond)
    assert not plan.needed and plan.note.startswith("up to date")
    # A range elsewhere changes nothing.
    elsewhere = {("BTCUSDT", "1h"): [(AUG1, AUG1 + 5 * HOUR)]}
    (plan,) = plan_updates(coverage, ["BTCUSDT"], ["1h"], now, exchange_empty=elsewhere)
    assert plan.time_range.startswith("2024-08-02T00:00:00")
