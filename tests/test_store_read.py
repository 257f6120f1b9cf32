"""Reads of the embedded store through `store.scan`: the same rows as a plain per-file Parquet
read on any range, each file version decoded once, a replaced partition read again.

Real Parquet files under tmp_path; GENERATED candles (`testing.CandleGenerator`, not market
data)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_market import AUG1, MIN, generated  # tests/ is on sys.path (rootdir, no package)

from streamforge_nb.exceptions import ConfigError
from streamforge_nb.store import local, planned_read, scan, series_read
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.frames import COLUMNS, MAX_MS, empty_frame, frame_from_arrays

DAY = 86_400_000
START, END = AUG1 - 3 * DAY, AUG1 + 2 * DAY  # July and August partitions, holes inside


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CandleStore:
    store = CandleStore.open(tmp_path_factory.mktemp("read") / "store")
    for a, b in ((START, AUG1 - DAY), (AUG1 - DAY + 7 * MIN, AUG1 + 90 * MIN), (AUG1 + DAY, END)):
        store.write(generated("BTCUSDT", "1m", a, b), "BTCUSDT", "1m")
    store.close()  # as a sink leaves them
    return store


def reference(store: CandleStore, start_ms: int, end_ms: int) -> pd.DataFrame:
    """The read before `store.scan`: each partition file read whole, then cut and joined."""
    directory: Path = store.backend.root / "candles" / "BTCUSDT" / "1m"  # type: ignore[attr-defined]
    tables = [pq.read_table(p) for p in sorted(directory.glob("[0-9]*.parquet"))]
    table = pa.concat_tables(tables)
    times = table.column("open_time").cast(pa.int64()).to_numpy()
    table = table.filter(pa.array((times >= start_ms) & (times < end_ms)))
    if table.num_rows == 0:
        return empty_frame()
    columns = {
        n: table.column(n).cast(pa.int64()).to_numpy() if n == "close_time" else
        table.column(n).to_numpy() for n in COLUMNS
    }  # fmt: skip
    return frame_from_arrays(table.column("open_time").cast(pa.int64()).to_numpy(), columns)


times = st.integers(START - DAY, END + DAY)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=times, b=times, fields=st.lists(st.sampled_from(COLUMNS), min_size=1, unique=True))
def test_any_range_reads_the_rows_a_plain_parquet_read_gives(
    store: CandleStore, a: int, b: int, fields: list[str]
) -> None:
    lo, hi = min(a, b), max(a, b)
    want = reference(store, lo, hi)
    for cached in (False, True):  # first read (decoded now), then from the decoded tables
        if not cached:
            scan.clear()
        got = store.load("BTCUSDT", "1m", lo, hi)
        pd.testing.assert_frame_equal(got, want, check_freq=False)
    if a % 2:  # columns read from the files themselves (pushdown), not the decoded tables
        scan.clear()
    part = store.backend.read_table("BTCUSDT", "1m", lo, hi, fields)
    assert part.column_names == ["open_time", *fields]
    for name in fields:
        column = part.column(name)
        column = column.cast(pa.int64()) if name == "close_time" else column
        expected = want[name]
        expected = pd.DatetimeIndex(expected).asi8 if name == "close_time" else expected.to_numpy()
        np.testing.assert_array_equal(column.to_numpy(), expected)


def test_a_load_again_decodes_only_the_partition_a_write_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CandleStore.open(tmp_path / "store")
    store.write(generated("BTCUSDT", "1m", AUG1 - DAY, AUG1 + DAY), "BTCUSDT", "1m")
    first = store.load("BTCUSDT", "1m")
    decoded: list[str] = []

    def spying(real: Any) -> Any:
        def spy(source: pq.ParquetFile, *names: Any) -> pa.Table:
            table = real(source, *names)
            if "open_time" in table.column_names:  # else a planned read's trades (below)
                month = table.column("open_time")[0].as_py().strftime("%Y-%m")
                decoded.append(f"{month}.parquet")
            return table

        return spy

    # A partition a load reads whole is read by its plan, copied from its bytes or decoded
    # by series_read, one it cuts is decoded by scan.
    monkeypatch.setattr(scan, "decoded", spying(scan.decoded))
    monkeypatch.setattr(series_read, "_decoded", spying(series_read._decoded))
    real_plain = series_read._plain_into

    def copying(out: Any, file: Any, columns: Any) -> bool:  # read from its bytes, not decoded
        copied = real_plain(out, file, columns)
        if copied and len(columns) == len(series_read._PLAIN_ALL):
            decoded.append(Path(file.path).name)
        return bool(copied)

    monkeypatch.setattr(series_read, "_plain_into", copying)
    real_planned = series_read._planned_into

    def planned(plan: Any, floats: Any, ints: Any, file: Any) -> None:  # the store's months
        decoded.append(Path(file.path).name)
        real_planned(plan, floats, ints, file)

    monkeypatch.setattr(series_read, "_planned_into", planned)
    again = store.load("BTCUSDT", "1m")
    pd.testing.assert_frame_equal(again, first)
    assert decoded == []  # nothing changed: nothing decoded
    # The same rows with other values: a file of the same size, in the same second.
    changed = generated("BTCUSDT", "1m", AUG1, AUG1 + DAY)
    changed["close"] = changed["close"] * 2
    store.write(changed, "BTCUSDT", "1m")
    now = store.load("BTCUSDT", "1m")
    assert decoded == ["2024-08.parquet"]
    np.testing.assert_array_equal(now["close"].to_numpy()[1440:], changed["close"].to_numpy())
    pd.testing.assert_frame_equal(now.iloc[:1440], first.iloc[:1440])


def test_partitions_another_tool_typed_otherwise_load_as_the_canonical_frame(
    store: CandleStore, tmp_path: Path
) -> None:
    # A file decoded for a load is copied column by column as read, not cast as a whole:
    # a column of another type (close times in us, counts as int32) is converted first.
    source: Path = store.backend.root / "candles" / "BTCUSDT" / "1m"  # type: ignore[attr-defined]
    other = tmp_path / "other" / "candles" / "BTCUSDT" / "1m"
    other.mkdir(parents=True)
    types = {"close_time": pa.timestamp("us", tz="UTC"), "number_of_trades": pa.int32()}
    for path in sorted(source.glob("[0-9]*.parquet")):
        table = pq.read_table(path)
        for name, kind in types.items():
            at = table.schema.get_field_index(name)
            table = table.set_column(at, name, table.column(name).cast(kind))
        pq.write_table(table, other / path.name, write_statistics=["open_time"])
    assert pq.ParquetFile(other / path.name).schema_arrow.field("close_time").type.unit == "us"
    for span in ((0, MAX_MS), (AUG1, AUG1 + 30 * MIN)):  # whole files, then a cut one
        scan.clear()
        got = CandleStore.open(tmp_path / "other").load("BTCUSDT", "1m", *span)
        pd.testing.assert_frame_equal(got, reference(store, *span), check_freq=False)


def test_a_frame_spanning_partitions_is_the_callers_to_change(store: CandleStore) -> None:
    got = store.load("BTCUSDT", "1m")
    got.iloc[0, got.columns.get_loc("close")] = -1.0
    assert store.load("BTCUSDT", "1m")["close"].iloc[0] != -1.0


@pytest.mark.parametrize("span", [(START, END), (AUG1, END), (AUG1 + DAY, AUG1 + DAY + 9 * MIN)])
def test_a_loaded_frame_is_the_callers_to_change_and_nobody_elses(
    store: CandleStore, span: tuple[int, int]
) -> None:
    # Frames of one partition were views of read-only Arrow memory (assignment raised);
    # now every frame is writable, and shares the read cache's memory only until written.
    scan.clear()
    want = reference(store, *span)
    first = store.load("BTCUSDT", "1m", *span)
    again = store.load("BTCUSDT", "1m", *span)  # from what the first load kept
    first.iloc[0, first.columns.get_loc("close")] = -1.0
    again.loc[again.index[-1], "volume"] = -2.0
    assert first["close"].iloc[0] == -1.0 and again["volume"].iloc[-1] == -2.0
    pd.testing.assert_frame_equal(store.load("BTCUSDT", "1m", *span), want, check_freq=False)
    kept = store.backend.read_table("BTCUSDT", "1m", *span, ["close", "volume"])
    np.testing.assert_array_equal(kept.column("close").to_numpy(), want["close"].to_numpy())
    np.testing.assert_array_equal(kept.column("volume").to_numpy(), want["volume"].to_numpy())


def test_a_cache_size_that_is_not_a_number_is_refused(
    store: CandleStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMFORGE_READ_CACHE_MB", "lots")
    with pytest.raises(ConfigError, match="STREAMFORGE_READ_CACHE_MB"):
        store.load("BTCUSDT", "1m")
    monkeypatch.setenv("STREAMFORGE_READ_CACHE_MB", "0")  # off: read straight from the files
    scan.clear()
    pd.testing.assert_frame_equal(store.load("BTCUSDT", "1m"), reference(store, 0, 2**53 - 1))
    assert scan.cache_bytes() == 0


def duckdb_resample(store: CandleStore, symbols: list[str], rule: str, start: int, end: int) -> Any:
    """`resample_many` as DuckDB computes it over the same files (the path before scan)."""
    from streamforge_nb.store import query
    from streamforge_nb.store.footers import partition_paths

    backend = store.backend
    files = [p for s in symbols for p in partition_paths(backend, s, "1m", start, end)]  # type: ignore[arg-type]
    bounds = {
        "start": pd.Timestamp(start, unit="ms", tz="UTC").to_pydatetime(),
        "end": pd.Timestamp(end, unit="ms", tz="UTC").to_pydatetime(),
    }
    sql = query.resample_sql(files, "1m", rule)
    return query.run_sql(backend, sql, bounds, "arrow")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("names", "cache", "loaded"),
    [
        (["ETHUSDT", "BTCUSDT"], "512", False),  # each file mapped or read, then aggregated
        (["ETHUSDT", "BTCUSDT"], "512", True),  # what loads kept (frame views, cut files)
        (["BTCUSDT"], "512", False),  # one series, file by file too: nothing kept
        (["BTCUSDT"], "512", True),  # one series a load kept: its frame, at once
        (["BTCUSDT"], "0", False),  # no read cache: file by file
        (["BTCUSDT"], "0.01", False),  # files larger than the read cache: the same
    ],
    ids=[
        "two series",
        "two series, loaded before",
        "one series",
        "one series, loaded before",
        "one series, no read cache",
        "one series, over the cache",
    ],
)
@pytest.mark.parametrize("rule", ["1m", "5m", "1h", "1d", "1w", "1M"])
def test_resample_many_gives_exactly_what_duckdb_gives(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rule: str,
    names: list[str],
    cache: str,
    loaded: bool,
) -> None:
    monkeypatch.setenv("STREAMFORGE_READ_CACHE_MB", cache)
    # The module (`streamforge_nb.store.resample` is also a function's name there).
    resample = importlib.import_module("streamforge_nb.store.resample")
    read_whole: list[str] = []  # series read whole, as `load` reads them

    def read_frame(backend: Any, symbol: str, *args: Any) -> pd.DataFrame:
        read_whole.append(symbol)
        return series_read.read_frame(backend, symbol, *args)

    monkeypatch.setattr(resample, "read_frame", read_frame)
    read_how: dict[str, set[str]] = {"views": set(), "scratch": set()}  # series of files read
    real = planned_read.mapped_arrays

    def mapped_arrays(path: str, *args: Any) -> Any:
        arrays = real(path, *args)
        if arrays is not None:  # views of the map are read only; scratch is not
            how = "scratch" if arrays["close"].flags.writeable else "views"
            read_how[how].add(Path(path).parts[-3])
        return arrays

    monkeypatch.setattr(planned_read, "mapped_arrays", mapped_arrays)
    store = CandleStore.open(tmp_path / "store")
    store.write(generated("BTCUSDT", "1m", START, AUG1 + 90 * MIN), "BTCUSDT", "1m")
    # ETHUSDT's columns in pages of 1,000 values, as pyarrow cut them before the store asked
    # for one page a column (times too): copied into scratch, not views.
    with monkeypatch.context() as pages:
        pages.setitem(local._WRITE_OPTIONS, "data_page_size", 8_000)
        store.write(generated("ETHUSDT", "1m", AUG1 - DAY + 7, END), "ETHUSDT", "1m")
        store.write(generated("ETHUSDT", "1m", AUG1 - 3 * MIN, AUG1 + 5 * MIN), "ETHUSDT", "1m")
    # Whole days of BTCUSDT too: every slot of 5m or 1h the same count (added column-wise).
    spans = ((START, END), (AUG1 - DAY + 11 * MIN, AUG1 + 61 * MIN), (END, END + DAY))
    for lo, hi in (*spans, (AUG1 - DAY, AUG1)):
        for sym in names if loaded else ():  # the read cache keeps what each load read
            store.load(sym, "1m", lo, hi)
        want = duckdb_resample(store, names, rule, lo, hi)
        got = store.resample_many(names, "1m", rule, lo, hi, backend="arrow")
        assert got.schema.equals(want.schema, check_metadata=False)
        frame = store.resample_many(names, "1m", rule, lo, hi)
        if rule != "1w":
            assert got.equals(want)  # bit for bit: sums in time order, as DuckDB adds
            pd.testing.assert_frame_equal(frame, want.to_pandas(), check_exact=True)
        else:  # weeks span months: DuckDB adds the files' partial sums in its threads' order
            pd.testing.assert_frame_equal(frame, want.to_pandas(), rtol=1e-13)
    # A series whose files the read cache keeps (loaded; or decoded by a weeks' pass, where
    # they fit) is aggregated from them at once.
    if rule != "1w" or loaded:
        assert bool(read_whole) == (names == ["BTCUSDT"] and loaded)
    # Weeks may span two files: those series are decoded whole (scan.read_table) instead.
    # After loads every file's rows are kept: none is read again. Otherwise the store's
    # files are views of their maps, and the files in pages are copied into scratch.
    file_by_file = rule != "1w" and not loaded
    assert read_how["views"] == ({"BTCUSDT"} if file_by_file else set())
    assert read_how["scratch"] == ({"ETHUSDT"} & set(names) if file_by_file else set())


def added_one_by_one(values: np.ndarray[Any, Any], starts: np.ndarray[Any, Any]) -> list[float]:
    """Each slot's sum as DuckDB adds it: from 0.0, each value in time order."""
    sums = []
    for lo, hi in zip(starts, [*starts[1:], len(values)], strict=True):
        total = 0.0
        for value in values[lo:hi].tolist():
            total += value
        sums.append(total)
    return sums


def assert_same_floats(got: np.ndarray[Any, Any], want: list[float]) -> None:
    """The same values bit for bit (-0.0 apart from 0.0), NaN where NaN."""
    expected = np.array(want, dtype=np.float64)
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.int64), expected[~nan].view(np.int64))


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(1, 300),
    slots=st.integers(1, 40),
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 1e308, 1e-308]),
        min_size=1,
        max_size=64,
    ),
    cuts=st.lists(st.integers(1, 10**6), max_size=8),
    chunk=st.integers(1, 2**16),
)
def test_resamples_sums_are_added_one_by_one_in_time_order(
    k: int, slots: int, values: list[float], cuts: list[int], chunk: int
) -> None:
    from streamforge_nb.store.resample import _Sums

    data = np.resize(np.array(values, dtype=np.float64), k * slots)
    starts = np.arange(slots) * k  # every slot k values (a year of 1m to 1h, no holes)
    want = added_one_by_one(data, starts)
    # Transposed and reduced a chunk of slots at a time (`chunk` values, at least two
    # slots; one slot: bincount), added k times a column, and by bincount.
    for min_slots, transposed in ((10**9, chunk), (10**9, 2**16), (1, 0), (10**9, 0)):
        assert_same_floats(_Sums(starts, starts + k, min_slots, transposed)(data), want)
    # Slots of other counts (holes), as `cuts` divides the values.
    starts = np.unique(np.array([0, *(c % len(data) for c in cuts)], dtype=np.int64))
    ends = np.r_[starts[1:], len(data)]
    assert_same_floats(_Sums(starts, ends, 1)(data), added_one_by_one(data, starts))


def test_sql_returns_an_arrow_table(store: CandleStore) -> None:
    got = store.sql("SELECT count(*) AS n FROM candles", backend="arrow")
    assert isinstance(got, pa.Table) and got.column("n").to_pylist() == [
        len(reference(store, 0, 2**53 - 1))
    ]


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> CandleStore:
    """Three symbols over July and August with holes, one with 5m too."""
    store = CandleStore.open(tmp_path_factory.mktemp("market") / "store")
    for sym, a, b in (("BTCUSDT", START, AUG1 + 90 * MIN), ("ETHUSDT", AUG1 - DAY + 7 * MIN, END),
                      ("SOLUSDT", START, END)):  # fmt: skip
        store.write(generated(sym, "1m", a, b), sym, "1m")
    store.write(generated("ETHUSDT", "5m", START, END), "ETHUSDT", "5m")
    store.close()
    return store


@pytest.mark.parametrize("cache", ["512", "0"])
@pytest.mark.parametrize(
    "options",
    [{}, {"fields": ["close"]}, {"fields": ["close_time", "number_of_trades", "open"]},
     {"missing": "nan"}, {"missing": "ffill"}],
)  # fmt: skip
def test_a_long_pandas_load_is_the_arrow_tables_frame(
    market: CandleStore, monkeypatch: pytest.MonkeyPatch, cache: str, options: dict[str, Any]
) -> None:
    # The long pandas frame is built a column at a time from the files (or the decoded
    # tables a read cache keeps): the same frame Arrow's own conversion of the table gives.
    monkeypatch.setenv("STREAMFORGE_READ_CACHE_MB", cache)
    names = ["SOLUSDT", "BTCUSDT", "ETHUSDT"]
    for lo, hi in ((START, END), (AUG1 - DAY + 11 * MIN, AUG1 + 61 * MIN), (END, END + DAY)):
        for warm in (False, True):
            scan.clear()
            if warm:  # some files decoded and kept, the others read from disk
                market.load("BTCUSDT", "1m")
            got = market.load(names, ["1m", "5m"], lo, hi, **options)
            want = market.load(names, ["1m", "5m"], lo, hi, backend="arrow", **options)
            pd.testing.assert_frame_equal(got, want.to_pandas(), check_exact=True)


def test_a_long_load_of_more_files_than_are_held_open_reads_the_rest_whole(
    market: CandleStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "_MAX_OPEN", 2)  # of 8 files: 6 read whole
    scan.clear()
    names = ["SOLUSDT", "BTCUSDT", "ETHUSDT"]
    got = market.load(names, ["1m", "5m"], START, END)
    want = market.load(names, ["1m", "5m"], START, END, backend="arrow")
    pd.testing.assert_frame_equal(got, want.to_pandas(), check_exact=True)


def test_a_long_load_reads_each_file_as_it_was_when_the_load_began(market: CandleStore) -> None:
    # Columns are read one after the other; a write landing in between does not mix
    # versions: every column of a file comes from the version opened.
    scan.clear()
    backend = market.backend
    columns = backend.column_chunks([("SOLUSDT", "1m")], START, END, ["close"])  # type: ignore[attr-defined]
    field, _ = next(columns)
    assert field.name == "open_time"
    before = market.load("SOLUSDT", "1m")
    changed = generated("SOLUSDT", "1m", START, END)
    changed["close"] = changed["close"] * 2
    market.write(changed, "SOLUSDT", "1m")
    try:
        field, per = next(columns)
        assert field.name == "close"
        got = pa.chunked_array(per[0]).to_numpy()
        np.testing.assert_array_equal(got, before["close"].to_numpy())
        columns.close()
    finally:
        market.write(before, "SOLUSDT", "1m")


_RSS_CHILD = """
import json, sys
from streamforge_nb.store.candles import CandleStore
store = CandleStore.open(sys.argv[1])
names = json.loads(sys.argv[2])
store.load(names[:1], "1m", int(sys.argv[3]), int(sys.argv[3]) + 60000)  # imports done
def rss(field):
    return int(open("/proc/self/status").read().split(field)[1].split()[0]) * 1024
base = rss("VmRSS:")
frame = store.load(names, "1m", int(sys.argv[3]), int(sys.argv[4]))
print(json.dumps([rss("VmHWM:") - base, int(frame.memory_usage(deep=True).sum())]))
"""


@pytest.mark.parametrize("cache", ["512", "0"])
def test_a_long_load_in_a_new_process_peaks_at_under_1_6x_its_frame(
    tmp_path: Path, cache: str
) -> None:
    # The decoded files and the frame never both exist whole (before: 2.1-2.2x, whether
    # the read cache kept the files or not). 12 symbols x a month of 1m: a 48 MB frame.
    import json
    import os
    import subprocess
    import sys

    store = CandleStore.open(tmp_path / "store")
    month = generated("BTCUSDT", "1m", AUG1, AUG1 + 31 * DAY)
    names = [f"S{i:02d}USDT" for i in range(12)]
    for name in names:
        store.write(month, name, "1m")
    store.close()
    env = {**os.environ, "STREAMFORGE_READ_CACHE_MB": cache}
    command = [sys.executable, "-c", _RSS_CHILD, str(tmp_path / "store"), json.dumps(names),
               str(AUG1), str(AUG1 + 31 * DAY)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    grew, size = json.loads(done.stdout.strip().splitlines()[-1])
    assert size > 40 * 2**20
    assert grew < 1.6 * size, f"peak RSS grew {grew / size:.2f}x the frame"
