"""A first load fills a partition's times where they are runs of one step (`pages.steady_runs`):
the frame must hold exactly what pyarrow decodes, for any times a file can hold.

Real Parquet files written by pyarrow with the store's options (times DELTA_BINARY_PACKED), read
through `CandleStore.load` and `store.pages`; pyarrow's own decode is the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_market import MIN  # tests/ is on sys.path (rootdir, no package)
from test_store_pages import (
    CANDLES,
    CUT,
    DAY,
    assert_same_bits,
    first_load,
    pyarrow_frame,
    series_dir,
    write_as,
)

from streamforge_nb.store import layouts, pages
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.frames import MAX_MS
from streamforge_nb.store.local import _WRITE_OPTIONS

INT64 = (-(2**63), 2**63 - 1)
TIMES = ("open_time", "close_time")


def runs_of(path: Path, names: tuple[str, ...] = TIMES) -> list[list[tuple[int, int, int]]] | None:
    with pa.memory_map(str(path)) as mapped:
        data = mapped.read_buffer()
        return pages.steady_runs(memoryview(data), pq.ParquetFile(path).metadata, names)


def filled(runs: list[tuple[int, int, int]]) -> np.ndarray:
    out = np.empty(sum(values for *_, values in runs), dtype=np.int64)
    layouts.fill(out, runs)
    return out


def test_the_stores_own_months_fill_their_times_and_load_as_pyarrow_decodes_them(
    tmp_path: Path,
) -> None:
    store = CandleStore.open(tmp_path)
    store.write(CANDLES, "BTCUSDT", "1m")
    store.close()
    files = sorted(series_dir(tmp_path).glob("*.parquet"))
    assert len(files) == 2 and all(runs_of(p) is not None for p in files)
    for path in files:  # each run is the minutes of a page: first, 60 s, count
        runs = runs_of(path)
        assert runs is not None
        times = pq.read_table(path, columns=list(TIMES))
        for name, found in zip(TIMES, runs, strict=True):
            assert {step for _, step, _ in found} == {MIN}
            want = times.column(name).cast(pa.int64()).to_numpy()
            np.testing.assert_array_equal(filled(found), want)
    for span in ((0, MAX_MS), CUT, (CANDLES.index[0].value // 10**6 + DAY, MAX_MS)):
        assert_same_bits(first_load(tmp_path, *span), pyarrow_frame(tmp_path, *span))


def test_months_with_holes_or_odd_close_times_load_as_pyarrow_decodes_them(
    tmp_path: Path,
) -> None:
    # A hole (minutes the exchange never served), and a close time the exchange served
    # early: neither is a run of one step, and each is stored and read exactly.
    frame = CANDLES.drop(CANDLES.index[100:107]).copy()
    close = frame["close_time"].array.asi8.copy()
    close[3000] -= 17
    frame["close_time"] = close.view("datetime64[ms]")
    frame["close_time"] = frame["close_time"].dt.tz_localize("UTC")
    write_as(tmp_path, frame)
    first, second = sorted(series_dir(tmp_path).glob("*.parquet"))
    assert runs_of(first) is None and runs_of(second) is None
    assert runs_of(second, ("open_time",)) is not None  # its times steady, its close not
    assert_same_bits(first_load(tmp_path), pyarrow_frame(tmp_path))


def write_times(root: Path, times: list[int], page: int) -> Path:
    """One file of `open_time` (ms) and `close_time` (`times` + 1) as the store writes ints."""
    values = np.asarray(times, dtype=np.int64)
    table = pa.table(
        {
            "open_time": pa.array(values).cast(pa.timestamp("ms", tz="UTC")),
            "close_time": pa.array(values + np.int64(1)).cast(pa.timestamp("ms", tz="UTC")),
        },
        schema=pa.schema(
            [pa.field(n, pa.timestamp("ms", tz="UTC"), nullable=False) for n in TIMES]
        ),
    )
    options = {**_WRITE_OPTIONS, "column_encoding": dict.fromkeys(TIMES, "DELTA_BINARY_PACKED")}
    options["write_statistics"] = ["open_time"]
    path = root / "times.parquet"
    pq.write_table(table, path, data_page_size=page, **options)
    return path


steps = st.one_of(st.sampled_from([MIN, 1000, 3_600_000, 0, -MIN]), st.integers(-(2**40), 2**40))


@st.composite
def time_lists(draw: st.DrawFn) -> tuple[list[int], bool]:
    """Times of one step (True), or of one step but one value moved or cut short (False)."""
    values = draw(st.integers(1, 3000))
    step = draw(steps)
    lo, hi = INT64[0] - min(0, step * (values - 1)), INT64[1] - 1 - max(0, step * (values - 1))
    if lo > hi:
        values, lo, hi = 1, INT64[0], INT64[1] - 1
    first = draw(st.one_of(st.integers(lo, hi), st.just(max(lo, min(hi, 1_722_470_400_000)))))
    times = [first + step * i for i in range(values)]
    if draw(st.booleans()) or values < 2:
        return times, True
    at = draw(st.integers(1, values - 1))
    moved = times[at] + draw(st.integers(-(2**20), 2**20).filter(bool))
    if not INT64[0] <= moved < INT64[1]:
        return times, True
    times[at] = moved
    return times, False


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=time_lists(), page=st.sampled_from([64, 1024, 1 << 20]))
def test_any_times_are_filled_exactly_or_left_to_pyarrow(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[list[int], bool], page: int
) -> None:
    times, steady = case
    path = write_times(tmp_path_factory.mktemp("times"), times, page)
    runs = runs_of(path)
    if steady:
        assert runs is not None  # one step: filled, nothing decoded
    if runs is None:
        return
    table = pq.read_table(path)
    for name, found in zip(TIMES, runs, strict=True):
        np.testing.assert_array_equal(filled(found), table.column(name).cast(pa.int64()).to_numpy())


@settings(max_examples=80, deadline=None)
@given(at=st.integers(0, 120), junk=st.binary(min_size=1, max_size=6))
def test_damaged_times_are_filled_as_pyarrow_decodes_them_or_left_to_it(
    tmp_path_factory: pytest.TempPathFactory, at: int, junk: bytes
) -> None:
    path = write_times(tmp_path_factory.mktemp("damaged"), list(range(0, 300 * MIN, MIN)), 1024)
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    raw = bytearray(path.read_bytes())
    at %= chunk.total_compressed_size  # in the open times' chunk: its header and deltas
    start = chunk.data_page_offset + at
    raw[start : start + len(junk)] = junk[: chunk.total_compressed_size - at]
    path.write_bytes(bytes(raw))
    runs = runs_of(path)
    if runs is None:
        return  # pyarrow decodes it (or refuses it), as for any file the store did not write
    table = pq.read_table(path)  # a file whose runs are read is one pyarrow reads, the same
    for name, found in zip(TIMES, runs, strict=True):
        np.testing.assert_array_equal(filled(found), table.column(name).cast(pa.int64()).to_numpy())
