"""A whole market from the embedded store: many series per load, DuckDB queries, coverage.

Real Parquet files under tmp_path, written through CandleStore; GENERATED candles
(`testing.CandleGenerator`, not market data)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from streamforge_nb.exceptions import ConfigError, InvalidName, StoreCapabilityError, StoreError
from streamforge_nb.store import planned_read, scan
from streamforge_nb.store.base import CandleBackend
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.frames import COLUMNS, frame_from_arrays
from streamforge_nb.store.local import LocalBackend
from streamforge_nb.testing import CandleGenerator

MIN = 60_000
AUG1 = 1_722_470_400_000  # 2024-08-01 00:00 UTC
GEN = CandleGenerator(seed=7)


def generated(symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
    """GENERATED candles of one series as a canonical frame."""
    rows = list(zip(*GEN.rows(symbol, interval, start_ms, end_ms), strict=True))
    columns = {
        name: np.asarray(values, dtype=np.int64 if name in ("close_time", "number_of_trades")
                         else np.float64)
        for name, values in zip(COLUMNS, rows[1:11], strict=True)
    }  # fmt: skip
    return frame_from_arrays(np.asarray(rows[0], dtype=np.int64), columns)


def utc(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


@pytest.fixture
def market(tmp_path: Path) -> CandleStore:
    """BTCUSDT 1m: 20 minutes with minutes 5-7 missing; ETHUSDT 1m minutes 2..11 with an
    exchange-empty window over minutes 0-1; BTCEUR 1m; BTCUSDT 1h: 3 hours."""
    store = CandleStore.open(tmp_path / "store")
    btc = generated("BTCUSDT", "1m", AUG1, AUG1 + 20 * MIN)
    store.write(btc.drop(btc.index[5:8]), "BTCUSDT", "1m")
    store.write(generated("ETHUSDT", "1m", AUG1 + 2 * MIN, AUG1 + 12 * MIN), "ETHUSDT", "1m")
    store.write(generated("BTCEUR", "1m", AUG1, AUG1 + 4 * MIN), "BTCEUR", "1m")
    store.write(generated("BTCUSDT", "1h", AUG1, AUG1 + 180 * MIN), "BTCUSDT", "1h")
    store.write_exchange_empty("ETHUSDT", "1m", [(AUG1, AUG1 + 2 * MIN)])
    return store


# --- 1. many series in one call ------------------------------------------------------------


def test_a_list_or_pattern_loads_a_long_frame_equal_to_single_loads(market: CandleStore) -> None:
    long = market.load("*USDT", "1m", AUG1, AUG1 + 30 * MIN)
    assert list(long.columns) == ["symbol", "interval", "open_time", *COLUMNS]
    assert sorted(long["symbol"].unique()) == ["BTCUSDT", "ETHUSDT"]  # not BTCEUR
    for sym in ("BTCUSDT", "ETHUSDT"):
        one = market.load(sym, "1m", AUG1, AUG1 + 30 * MIN)  # the single-series frame
        part = long[long["symbol"] == sym].set_index("open_time")[list(COLUMNS)]
        pd.testing.assert_frame_equal(part, one, check_names=False, check_freq=False)
    listed = market.load(["ethusdt", "BTCUSDT"], ["1m", "1h"])
    assert listed.groupby(["symbol", "interval"], observed=True).size().to_dict() == {
        ("BTCUSDT", "1h"): 3, ("BTCUSDT", "1m"): 17, ("ETHUSDT", "1m"): 10,
    }  # fmt: skip


def test_fields_are_the_only_columns_read_and_returned(market: CandleStore) -> None:
    long = market.load(["BTCUSDT"], "1m", fields=["close", "number_of_trades"])
    assert list(long.columns) == ["symbol", "interval", "open_time", "close", "number_of_trades"]
    assert long["number_of_trades"].dtype == np.int64
    table = market.backend.read_table("BTCUSDT", "1m", AUG1, AUG1 + 3 * MIN, ["volume"])
    assert table.column_names == ["open_time", "volume"] and table.num_rows == 3


def test_wide_aligns_symbols_on_the_grid_and_marks_what_is_not_stored(market: CandleStore) -> None:
    wide = market.load("*USDT", "1m", AUG1, AUG1 + 15 * MIN, fields=["close"], how="wide",
                       missing="nan")  # fmt: skip
    assert len(wide) == 15 and wide.index[0] == utc(AUG1) and wide.index.freq is None
    assert list(wide.columns.get_level_values("field").unique()) == ["close", "status", "filled"]
    eth = wide["status"]["ETHUSDT"].tolist()
    assert eth[:2] == ["exchange_empty"] * 2 and eth[2:12] == ["stored"] * 10
    assert eth[12:] == ["missing"] * 3
    btc = wide[("status", "BTCUSDT")]
    assert btc.iloc[5:8].tolist() == ["missing"] * 3
    assert wide[("close", "BTCUSDT")].iloc[5:8].isna().all()
    assert not wide["filled"].to_numpy().any()  # "nan" fills nothing


def test_ffill_fills_holes_flat_and_says_so_per_row(market: CandleStore) -> None:
    stored = market.load("BTCUSDT", "1m", AUG1, AUG1 + 20 * MIN)
    got = market.load(["BTCUSDT"], "1m", AUG1, AUG1 + 20 * MIN, missing="ffill")
    holes = got[got["filled"]]
    assert holes["open_time"].tolist() == [utc(AUG1 + m * MIN) for m in (5, 6, 7)]
    last_close = stored["close"].iloc[4]
    for col in ("open", "high", "low", "close"):
        assert (holes[col] == last_close).all()
    assert (holes["volume"] == 0).all() and (holes["number_of_trades"] == 0).all()
    assert (holes["status"] == "missing").all()
    kept = got[~got["filled"]].set_index("open_time")[list(COLUMNS)]
    pd.testing.assert_frame_equal(kept, stored, check_names=False, check_freq=False)
    # Before the first candle there is nothing to carry: the window stays empty, unfilled.
    eth = market.load(["ETHUSDT"], "1m", AUG1, AUG1 + 3 * MIN, missing="ffill")
    assert eth["filled"].tolist() == [False] * 3 and eth["close"].isna().tolist()[:2] == [True] * 2


def test_arrow_and_polars_results_hold_the_same_rows(market: CandleStore) -> None:
    frame = market.load("*USDT", "1m", fields=["close"])
    table = market.load("*USDT", "1m", fields=["close"], backend="arrow")
    assert isinstance(table, pa.Table) and table.num_rows == len(frame)
    assert table.column("close").to_pylist() == frame["close"].tolist()
    wide = market.load("*USDT", "1m", fields=["close"], how="wide", backend="arrow")
    assert wide.column_names == ["open_time", "close_BTCUSDT", "close_ETHUSDT"]
    try:
        import polars
    except ImportError:
        with pytest.raises(ConfigError, match="polars"):
            market.load("*USDT", "1m", backend="polars")
    else:
        assert (
            market.load("*USDT", "1m", backend="polars").height == len(market.load("*USDT", "1m"))
            and polars
        )


def test_one_series_with_options_keeps_the_time_index(market: CandleStore) -> None:
    got = market.load("BTCUSDT", "1m", AUG1, AUG1 + 10 * MIN, fields=["close"], missing="nan")
    assert list(got.columns) == ["close", "status", "filled"] and got.index.name == "open_time"
    assert len(got) == 10 and got["status"].iloc[5] == "missing"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("*USDT", "1m"), {"how": "tall"}, "how must be one of"),
        (("*USDT", "1m"), {"missing": "zero"}, "missing must be one of"),
        (("*USDT", "1m"), {"fields": ["close", "price"]}, "unknown candle field"),
        (("*USDT", "1m"), {"backend": "spark"}, "backend must be one of"),
        (("*USDT", ["1m", "1h"]), {"how": "wide"}, "one interval"),
        (("*USDC", "1m"), {}, "no stored series matches '[*]USDC'"),
        ((["BTC-USDT"], "1m"), {}, "BTC-USDT"),
        ((["BTCUSDT"], "7m"), {}, "7m"),
        ((None, "1m"), {}, "symbols must be a name, a pattern or a list of them, got None"),
        ((["BTCUSDT", 7], "1m"), {}, "symbols must be .* got \\['BTCUSDT', 7\\]"),
        (([b"BTCUSDT"], "1m"), {}, "symbols must be"),
        (("BTCUSDT", 60), {}, "intervals must be a name, a pattern or a list of them, got 60"),
    ],
)
def test_bad_arguments_are_library_errors(
    market: CandleStore, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidName, match=message):
        market.load(*args, **kwargs)


class PlainBackend(LocalBackend):
    """The embedded files read only through the base class's defaults (as ArangoDB would)."""

    read_table = CandleBackend.read_table
    series = CandleBackend.series
    partition_rows = CandleBackend.partition_rows


def test_the_base_defaults_give_the_same_market_frames(market: CandleStore) -> None:
    plain = CandleStore(PlainBackend(market.backend.root))  # type: ignore[attr-defined]
    for kwargs in ({}, {"fields": ["close", "close_time"], "missing": "ffill"}):
        pd.testing.assert_frame_equal(
            plain.load("*USDT", "1m", AUG1, AUG1 + 20 * MIN, **kwargs),
            market.load("*USDT", "1m", AUG1, AUG1 + 20 * MIN, **kwargs),
        )
    with pytest.raises(StoreCapabilityError, match="per-partition"):
        plain.coverage(by="month")


def test_an_arango_store_says_it_cannot_run_duckdb_before_any_request() -> None:
    """The ArangoDB backend connects lazily: these refusals come without a server."""
    arango = CandleStore.open("arango://127.0.0.1:9/candles")
    for call in (
        lambda: arango.sql("SELECT 1"),
        lambda: arango.resample_many("*USDT", "1m", "1h"),
    ):
        with pytest.raises(StoreCapabilityError, match="arango_query") as caught:
            call()
        assert isinstance(caught.value, StoreError)
        assert isinstance(caught.value, NotImplementedError)


# --- 2. queries the store runs ---------------------------------------------------------------


def test_sql_sees_every_series_with_symbol_interval_and_exchange_empty(market: CandleStore) -> None:
    market.write(generated("BTCUSDT", "1M", AUG1, AUG1 + 40 * 86_400_000), "BTCUSDT", "1M")
    got = market.sql(
        "SELECT symbol, interval, count(*) AS n FROM candles GROUP BY ALL ORDER BY ALL"
    )
    assert list(got.itertuples(index=False, name=None)) == [
        ("BTCEUR", "1m", 4), ("BTCUSDT", "1M", 2), ("BTCUSDT", "1h", 3), ("BTCUSDT", "1m", 17),
        ("ETHUSDT", "1m", 10),
    ]  # fmt: skip
    empty = market.sql("SELECT * FROM exchange_empty")
    assert empty.to_dict("records") == [
        {"symbol": "ETHUSDT", "interval": "1m", "start": utc(AUG1), "end": utc(AUG1 + 2 * MIN)}
    ]
    params = market.sql("SELECT count(*) AS n FROM candles WHERE symbol = ?", ["BTCEUR"])
    assert params["n"].tolist() == [4]
    with pytest.raises(InvalidName, match="query failed"):
        market.sql("SELECT nothing FROM nowhere")


def test_sql_over_an_empty_store_has_the_views(tmp_path: Path) -> None:
    store = CandleStore.open(tmp_path / "empty")
    assert store.sql("SELECT count(*) AS n FROM candles")["n"].tolist() == [0]
    assert store.sql("SELECT * FROM exchange_empty").empty
    assert not (tmp_path / "empty" / "exchange_empty.sqlite").exists()  # queries create nothing


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",  # a file outside the store
        "COPY (SELECT 1) TO '{outside}'",  # writing out of it
        "SET enable_external_access = true",  # lifting the rule
        "INSTALL httpfs",
        "ATTACH '{outside}' AS other",
    ],
)
def test_sql_reads_the_store_and_nothing_else(tmp_path: Path, query: str) -> None:
    store = CandleStore.open(tmp_path / "store")
    store.write(generated("BTCUSDT", "1m", AUG1, AUG1 + 3_600_000), "BTCUSDT", "1m")
    outside = tmp_path / "outside.csv"
    with pytest.raises(InvalidName):
        store.sql(query.format(outside=outside))
    assert not outside.exists()
    assert store.sql("SELECT count(*) AS n FROM candles")["n"].tolist() == [60]


@pytest.mark.parametrize("damage", ["not Parquet at all", "cut short", "gone"])
def test_a_damaged_file_in_a_many_series_resample_names_its_series(
    market: CandleStore, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """Each file is mapped and aggregated in turn: a file that cannot be read must reach
    the caller as a StoreError naming its series and file, give its scratch back, and not
    stop the next resample of the rest."""
    root: Path = market.backend.root  # type: ignore[attr-defined]
    (path,) = (root / "candles" / "ETHUSDT" / "1m").glob("*.parquet")
    scratch_before = len(planned_read._KEPT_SCRATCH)
    if damage == "not Parquet at all":
        path.write_bytes(b"not a parquet file" * 100)
    elif damage == "cut short":
        path.write_bytes(path.read_bytes()[:-100])
    else:  # listed, then removed before it is read
        real = scan._spanned

        def listed_then_gone(*args: Any) -> list[tuple[int, int, str]]:
            files = real(*args)
            for *_, name in files:
                if "ETHUSDT" in name:
                    os.unlink(name)
            return files

        monkeypatch.setattr(resample_module(), "_spanned", listed_then_gone)
    with pytest.raises(StoreError, match=r"ETHUSDT 1m") as caught:
        market.resample_many(["BTCEUR", "BTCUSDT", "ETHUSDT"], "1m", "5m")
    assert path.name in str(caught.value)
    assert not [t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")]
    assert len(planned_read._KEPT_SCRATCH) == max(scratch_before, 1)  # given back
    path.unlink(missing_ok=True)  # the rest resamples as before
    got = market.resample_many(["BTCEUR", "BTCUSDT", "ETHUSDT"], "1m", "5m")
    assert set(got["symbol"]) == {"BTCEUR", "BTCUSDT"}


def resample_module() -> Any:
    import importlib

    return importlib.import_module("streamforge_nb.store.resample")


def test_resample_many_equals_resample_of_each_load(tmp_path: Path) -> None:
    store = CandleStore.open(tmp_path / "store")
    start, end = AUG1 - 2 * 86_400_000, AUG1 + 86_400_000  # across a month boundary
    for sym in ("BTCUSDT", "ETHUSDT"):
        store.write(generated(sym, "1m", start, end), sym, "1m")
    for rule in ("1h", "1d", "1w", "1M"):
        many = store.resample_many(["BTCUSDT", "ETHUSDT"], "1m", rule, start + 7 * MIN, end)
        for sym in ("BTCUSDT", "ETHUSDT"):
            want = store.resample(store.load(sym, "1m", start + 7 * MIN, end), rule)
            got = many[many["symbol"] == sym].set_index("open_time")
            assert got["candles"].sum() == (end - start) // MIN - 7
            pd.testing.assert_frame_equal(
                got[list(COLUMNS)], want, check_names=False, check_freq=False,
                check_index_type=False, check_dtype=False, rtol=1e-12,
            )  # fmt: skip
            assert got["number_of_trades"].dtype == np.int64
    with pytest.raises(InvalidName, match="shorter"):
        store.resample_many("*USDT", "1h", "1m")


def sql_count(store: CandleStore) -> tuple[int, Any]:
    got = store.sql(
        "SELECT count(*) AS n, max(open_time) AS t FROM candles WHERE symbol = 'BTCUSDT'"
    )
    return int(got["n"][0]), got["t"][0]


def resampled_count(store: CandleStore, symbols: list[str]) -> tuple[int, Any]:
    """BTCUSDT's candles counted by a resample to 1h, and the last one's open time."""
    got = store.resample_many(symbols, "1m", "1h")
    btc = got[got["symbol"] == "BTCUSDT"]
    last = btc["open_time"].iloc[-1] + (int(btc["candles"].iloc[-1]) - 1) * pd.Timedelta(MIN, "ms")
    return int(btc["candles"].sum()), last


@pytest.mark.parametrize(
    "count",
    [
        sql_count,
        lambda s: resampled_count(s, ["BTCUSDT", "ETHUSDT"]),
        lambda s: resampled_count(s, ["BTCUSDT"]),
    ],
    ids=["sql", "resample of two series (files into scratch)", "resample of one (read whole)"],
)
def test_queries_while_a_sink_rewrites_a_month_never_fail_or_see_half_a_file(
    tmp_path: Path, count: Callable[[CandleStore], tuple[int, Any]]
) -> None:
    """The writer replaces the August partition of BTCUSDT again and again (adding a batch
    each time); every query must succeed and count one of the sizes the file had."""
    store = CandleStore.open(tmp_path / "store")
    day = generated("BTCUSDT", "1m", AUG1, AUG1 + 86_400_000)
    batch = 60
    store.write(day.iloc[:batch], "BTCUSDT", "1m")
    store.write(generated("ETHUSDT", "1m", AUG1, AUG1 + 3_600_000), "ETHUSDT", "1m")
    done, queried = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def sink() -> None:
        try:
            for lo in range(batch, len(day), batch):
                queried.clear()
                store.write(day.iloc[lo : lo + batch], "BTCUSDT", "1m")
                # Until a query ended after this write: a busy machine may otherwise run all
                # the writes before the first query, and the test would see no rewrite.
                queried.wait(30)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=sink)
    writer.start()
    seen = []
    while not done.is_set() or len(seen) < 5:
        seen.append(count(store))
        queried.set()
    writer.join()
    assert not errors
    for n, last in seen:
        assert n % batch == 0 and 0 < n <= len(day)  # whole batches only
        assert last == utc(AUG1 + (n - 1) * MIN)  # count and content from one file version
    assert len({n for n, _ in seen}) > 2  # queries ran between writes
    assert count(store)[0] == len(day)


# --- 3. coverage at a glance -------------------------------------------------------------------

DAY = 86_400_000


@pytest.fixture
def months(tmp_path: Path) -> CandleStore:
    """BTCUSDT 1m over July 30 .. August 3 with 50 minutes gone on July 30 (20 of them
    exchange-empty); BTCUSDT 1d June 22 .. August 30 (one year file); ETHUSDT 1h in August."""
    store = CandleStore.open(tmp_path / "store")
    minutes = generated("BTCUSDT", "1m", AUG1 - 2 * DAY, AUG1 + 3 * DAY)
    store.write(minutes.drop(minutes.index[100:150]), "BTCUSDT", "1m")
    store.write(generated("BTCUSDT", "1d", AUG1 - 40 * DAY, AUG1 + 30 * DAY), "BTCUSDT", "1d")
    store.write(generated("ETHUSDT", "1h", AUG1, AUG1 + 5 * DAY), "ETHUSDT", "1h")
    jul30 = AUG1 - 2 * DAY
    store.write_exchange_empty("BTCUSDT", "1m", [(jul30 + 100 * MIN, jul30 + 120 * MIN)])
    return store


def rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [
        (s, i, p.strftime("%Y-%m-%d"), e, st, m, x)
        for s, i, p, e, st, m, x in frame.itertuples(index=False, name=None)
    ]


def test_coverage_by_month_counts_expected_stored_missing_and_exchange_empty(
    months: CandleStore,
) -> None:
    got = months.coverage(by="month")
    assert list(got.columns) == [
        "symbol", "interval", "period", "expected", "stored", "missing", "exchange_empty",
    ]  # fmt: skip
    assert rows(got) == [
        ("BTCUSDT", "1m", "2024-07-01", 2 * 1440, 2 * 1440 - 50, 30, 20),
        ("BTCUSDT", "1m", "2024-08-01", 3 * 1440, 3 * 1440, 0, 0),
        ("BTCUSDT", "1d", "2024-06-01", 9, 9, 0, 0),  # the year file, cut per month
        ("BTCUSDT", "1d", "2024-07-01", 31, 31, 0, 0),
        ("BTCUSDT", "1d", "2024-08-01", 30, 30, 0, 0),
        ("ETHUSDT", "1h", "2024-08-01", 120, 120, 0, 0),
    ]
    # Bounds make the whole range expected: what is not stored is missing.
    bounded = months.coverage("BTC*", "1m", by="month", start="2024-07-01", end="2024-09-01")
    assert rows(bounded) == [
        ("BTCUSDT", "1m", "2024-07-01", 31 * 1440, 2 * 1440 - 50, 29 * 1440 + 30, 20),
        ("BTCUSDT", "1m", "2024-08-01", 31 * 1440, 3 * 1440, 28 * 1440, 0),
    ]
    days = months.coverage(["BTCUSDT"], "1m", by="day")
    assert days["stored"].tolist() == [1440 - 50, 1440, 1440, 1440, 1440]
    # A symbol asked for by name and never stored is all missing within bounds.
    none = months.coverage(["SOLUSDT"], "1h", by="month", start="2024-08-01", end="2024-08-02")
    assert rows(none) == [("SOLUSDT", "1h", "2024-08-01", 24, 0, 24, 0)]


def test_plain_coverage_is_unchanged_and_filters_by_series(months: CandleStore) -> None:
    plain = months.coverage()
    assert list(plain.columns) == ["symbol", "interval", "first", "last", "rows"]
    assert plain["rows"].tolist() == [5 * 1440 - 50, 70, 120]
    assert months.coverage("ETH*")["rows"].tolist() == [120]
    with pytest.raises(InvalidName, match="by must be one of"):
        months.coverage(by="week")


def test_coverage_by_month_reads_footers_not_candles(months: CandleStore) -> None:
    """A month file's candle columns are never read: garbage in them cannot change counts.

    The August 1m file is rewritten with its price columns as strings: a load of them
    fails, the footer still says 4320 rows over August."""
    root: Path = months.backend.root  # type: ignore[attr-defined]
    path = root / "candles" / "BTCUSDT" / "1m" / "2024-08.parquet"
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    spoiled = table.set_column(
        table.schema.get_field_index("close"), "close", pa.array(["x"] * table.num_rows)
    )
    pq.write_table(spoiled, path)
    with pytest.raises(Exception):  # noqa: B017 - the point is only that rows cannot be read
        months.load("BTCUSDT", "1m", AUG1, AUG1 + DAY)
    got = months.coverage("BTCUSDT", "1m", by="month")
    assert got["stored"].tolist() == [2 * 1440 - 50, 3 * 1440]


def test_plot_coverage_draws_series_by_period_with_counts(months: CandleStore) -> None:
    from streamforge_nb.store.analysis import plot_coverage

    fig = plot_coverage(months.coverage(by="month"))
    (heat,) = fig.data
    assert list(heat.y) == ["BTCUSDT 1m", "BTCUSDT 1d", "ETHUSDT 1h"]
    assert len(heat.x) == 3  # June, July, August
    z = np.asarray(heat.z, dtype=float)
    assert z[0, 1] == pytest.approx(1 - 30 / 2880) and z[0, 2] == 1.0 and np.isnan(z[2, 0])
    assert "missing 30" in heat.text[0][1] and "exchange-empty 20" in heat.text[0][1]
    with pytest.raises(InvalidName, match="coverage"):
        plot_coverage(months.coverage())


def test_coverage_and_gaps_never_count_a_candle_not_closed_yet_as_missing(
    tmp_path: Path,
) -> None:
    """A range ending in the future (or this month, still open) counts expected candles up to
    the last closed one: the current month is not red, and no backfill of the future is
    offered. Months (1M): the last closed one changes only as a month begins."""
    from streamforge_nb.store.update import closed_end_ms

    store = CandleStore.open(tmp_path / "store")
    now_ms = pd.Timestamp.now(tz="UTC").value // 10**6
    end = closed_end_ms("1M", now_ms)  # this month's first ms: the last closed month's end
    first = (pd.Timestamp(end, unit="ms", tz="UTC") - pd.DateOffset(months=3)).value // 10**6
    store.write(generated("BTCUSDT", "1M", first, end), "BTCUSDT", "1M")
    cov = store.coverage("BTCUSDT", "1M", by="year", start=utc(first), end="2100-01-01")
    assert cov["stored"].sum() == 3 and cov["missing"].sum() == 0
    assert cov["period"].max().year == pd.Timestamp(end - 1, unit="ms").year  # nothing later
    assert store.gaps("BTCUSDT", "1M", utc(first), "2100-01-01").empty
    # A range wholly in the future: nothing expected, nothing missing.
    assert store.coverage("BTCUSDT", "1M", by="year", start="2099-01-01", end="2100-01-01").empty
    assert store.gaps("BTCUSDT", "1M", "2099-01-01", "2100-01-01").empty


def test_coverage_by_period_plots_itself_as_the_heatmap(months: CandleStore) -> None:
    cov = months.coverage(by="month")
    (heat,) = cov.plot().data
    assert list(heat.y) == ["BTCUSDT 1m", "BTCUSDT 1d", "ETHUSDT 1h"]
    assert cov.plot(title="mine").layout.title.text == "mine"
    # A filter is still coverage: its plot is the heatmap of its rows.
    (few,) = cov[cov["symbol"] == "ETHUSDT"].plot().data
    assert list(few.y) == ["ETHUSDT 1h"]
    # pandas' own plotting stays reachable (its accessor's methods, or its arguments).
    assert cov.plot.bar.__func__ is pd.plotting.PlotAccessor.bar
    assert type(months.coverage()).__name__ == "DataFrame"  # the plain listing is unchanged


# --- the ArangoDB versions (AQL) -----------------------------------------------------------------

ARANGO_URL = os.environ.get("STREAMFORGE_TEST_ARANGO_URL", "")
ARANGO_SKIP = pytest.mark.skipif(
    not ARANGO_URL,
    reason="STREAMFORGE_TEST_ARANGO_URL is not set: the AQL market queries need a real "
    "ArangoDB server (none exists on this machine); it is never faked",
)


def test_aql_names_collections_and_values_only_as_bind_parameters() -> None:
    from streamforge_nb.store import arango_query as aq

    for query in (aq.resample_query(3, "1h"), aq.coverage_query(3), aq.read_query(3, ["close"])):
        assert [f"@@c{i}" in query for i in range(4)] == [True, True, True, False]
        assert "@start" in query and "@end" in query and "usdt" not in query.lower()
    with pytest.raises(InvalidName):
        aq.resample_query(1, "90m")


@ARANGO_SKIP
@pytest.mark.arango
def test_aql_resample_coverage_and_fields_match_the_embedded_store(tmp_path: Path) -> None:
    import uuid

    from arango.client import ArangoClient

    from streamforge_nb.settings import Settings
    from streamforge_nb.store import arango_query as aq
    from streamforge_nb.store.arango import parse_arango_url

    get = os.environ.get
    settings = Settings(
        arango_user=get("STREAMFORGE_TEST_ARANGO_USER", "root"),
        arango_password=get("STREAMFORGE_TEST_ARANGO_PASSWORD", ""),
    )
    target = parse_arango_url(ARANGO_URL, settings)
    client = ArangoClient(hosts=target.hosts)
    system = client.db("_system", username=target.user, password=target.password)
    name = f"sf_test_{uuid.uuid4().hex[:12]}"
    system.create_database(name)
    start, end = AUG1 - 2 * DAY, AUG1 + DAY
    frame = generated("BTCUSDT", "1m", start, end)
    local = CandleStore.open(tmp_path / "store")
    local.write(frame, "BTCUSDT", "1m")
    try:
        with CandleStore.open(f"{target.hosts}/_db/{name}", settings) as remote:
            remote.write(frame, "BTCUSDT", "1m")
            for rule in ("1h", "1d", "1M"):
                got = aq.resample(remote.backend, "BTCUSDT", "1m", rule, start, end)
                want = local.resample_many("BTCUSDT", "1m", rule, start, end).set_index("open_time")
                pd.testing.assert_frame_equal(
                    got[[*COLUMNS, "candles"]], want[[*COLUMNS, "candles"]],
                    check_names=False, check_dtype=False, check_index_type=False, rtol=1e-12,
                )  # fmt: skip
            months = aq.coverage_by_month(remote.backend, "BTCUSDT", "1m", start, end)
            assert months["stored"].tolist() == [2 * 1440, 1440]
            fields = aq.read_fields(remote.backend, "BTCUSDT", "1m", start, end, ["close"])
            assert fields["close"].tolist() == frame["close"].tolist()
    finally:
        system.delete_database(name, ignore_missing=True)
        client.close()
