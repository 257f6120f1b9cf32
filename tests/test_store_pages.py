"""A first load copies PLAIN values straight from a partition file's bytes (`store.pages`):
the floats of the store's files (their times and counts are delta-encoded and decoded),
every column of a file written all PLAIN; the frame is bit for bit the one pyarrow decodes,
for the store's files and any other (older codecs, OPTIONAL columns, dictionaries, several
pages a column, other time units), and a damaged file gives a `StoreError` or pyarrow's own
values, never bytes from elsewhere.

Real Parquet files under tmp_path, written by the store or by pyarrow as other versions and
tools write them; GENERATED candles (`testing.CandleGenerator`, not market data)."""

from __future__ import annotations

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

from streamforge_nb.exceptions import StoreError
from streamforge_nb.store import layouts, pages, scan
from streamforge_nb.store.candles import CandleStore
from streamforge_nb.store.frames import COLUMNS, FLOAT_COLUMNS, MAX_MS, frame_from_arrays
from streamforge_nb.store.local import _REQUIRED, _WRITE_OPTIONS

DAY = 86_400_000
FLOATS = [n for n in COLUMNS if n in FLOAT_COLUMNS]
INTS = ["open_time", "close_time", "number_of_trades"]
ALL = {**dict.fromkeys(INTS, "INT64"), **dict.fromkeys(FLOATS, "DOUBLE")}
FLOAT_TYPES = dict.fromkeys(FLOATS, "DOUBLE")
COUNTED = {"number_of_trades": "INT64", **FLOAT_TYPES}  # the floats and the trades
DELTA_INTS = {  # the format before: trades delta-encoded like the times
    **dict.fromkeys(INTS, "DELTA_BINARY_PACKED"),
    **dict.fromkeys(FLOATS, "PLAIN"),
}
PLAIN = dict.fromkeys(["open_time", *COLUMNS], "PLAIN")  # every column (a format not kept)
SERIES = ("BTCUSDT", "1m")


def series_dir(root: Path) -> Path:
    return root / "candles" / "BTCUSDT" / "1m"


def pyarrow_frame(root: Path, start_ms: int = 0, end_ms: int = MAX_MS) -> pd.DataFrame:
    """The frame of the series' files as pyarrow decodes them, cut to `[start_ms, end_ms)`."""
    tables = [pq.read_table(p) for p in sorted(series_dir(root).glob("[0-9]*.parquet"))]
    table = pa.concat_tables([t.cast(scan.SCHEMA) for t in tables])  # times in ms
    times = table.column("open_time").cast(pa.int64()).to_numpy()
    table = table.filter(pa.array((times >= start_ms) & (times < end_ms)))
    columns = {
        n: table.column(n).cast(pa.int64()).to_numpy() if n == "close_time" else
        table.column(n).to_numpy() for n in COLUMNS
    }  # fmt: skip
    return frame_from_arrays(table.column("open_time").cast(pa.int64()).to_numpy(), columns)


def assert_same_bits(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal frames, and every float the same 64 bits (NaN payloads, -0.0 kept)."""
    pd.testing.assert_frame_equal(got, want, check_freq=False)
    for name in FLOATS:
        np.testing.assert_array_equal(
            got[name].to_numpy().view(np.int64), want[name].to_numpy().view(np.int64)
        )


def first_load(root: Path, start_ms: int = 0, end_ms: int = MAX_MS) -> pd.DataFrame:
    scan.clear()  # nothing decoded or kept: the files are read
    return CandleStore.open(root).load(*SERIES, start_ms, end_ms)


def spans_of(path: Path, columns: dict[str, str] = ALL) -> list[list[tuple[int, int]]] | None:
    with pa.memory_map(str(path)) as mapped:
        data = mapped.read_buffer()
        return pages.plain_spans(memoryview(data), pq.ParquetFile(path).metadata, columns)


def straight(path: Path) -> str:
    """Which of a file's values a first load copies from its bytes: all, the floats and the
    trades (by a layout: its times runs of one step), the floats, none."""
    if spans_of(path) is not None:
        return "all"
    with pa.memory_map(str(path)) as mapped:
        data = memoryview(mapped.read_buffer())
        if layouts.planned(data, pq.ParquetFile(path).metadata, COUNTED) is not None:
            return "floats, trades"
    return "floats" if spans_of(path, FLOAT_TYPES) is not None else "none"


def write_as(root: Path, frame: pd.DataFrame, required: bool = True, **options: Any) -> None:
    """Write `frame`'s months as partition files with the store's options and `options`."""
    schema = _REQUIRED if required else pa.schema([f.with_nullable(True) for f in _REQUIRED])
    arrays = [pd.DatetimeIndex(frame.index).asi8]  # NaN stays NaN: not pandas' null
    for name in COLUMNS:
        values = frame[name]
        arrays.append(pd.DatetimeIndex(values).asi8 if name == "close_time" else values.to_numpy())
    table = pa.Table.from_arrays(
        [pa.array(a).cast(f.type) for a, f in zip(arrays, schema, strict=True)], schema=schema
    )
    series_dir(root).mkdir(parents=True, exist_ok=True)
    months = frame.index.strftime("%Y-%m")
    for month in sorted(set(months)):
        part = table.filter(pa.array(months == month))
        pq.write_table(part, series_dir(root) / f"{month}.parquet", **{**_WRITE_OPTIONS, **options})


CANDLES = generated("BTCUSDT", "1m", AUG1 - 2 * DAY, AUG1 + 2 * DAY)  # two partitions
CUT = (AUG1 - DAY + 7 * MIN, AUG1 + 90 * MIN)  # cuts both

# Files as other versions and tools write them: which values are read straight from their
# bytes (all, the floats, none).
FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    "several pages a column": ("floats, trades", {"data_page_size": 4096}),
    "page checksums (a header field more)": ("floats, trades", {"write_page_checksum": True}),
    "page statistics": ("floats, trades", {"write_statistics": True}),
    "trades delta-encoded (the format before)": ("floats", {"column_encoding": DELTA_INTS}),
    "trades delta-encoded, several pages": (
        "floats",
        {"column_encoding": DELTA_INTS, "data_page_size": 4096},
    ),
    "all PLAIN (ints too)": ("all", {"column_encoding": PLAIN}),
    "all PLAIN, several pages": ("all", {"column_encoding": PLAIN, "data_page_size": 4096}),
    "all PLAIN, page statistics": ("all", {"column_encoding": PLAIN, "write_statistics": True}),
    "all PLAIN, times in us": ("floats", {"column_encoding": PLAIN, "coerce_timestamps": "us"}),
    "lz4": ("none", {"compression": "lz4"}),
    "dictionary": ("none", {"use_dictionary": True, "column_encoding": None}),
    "byte-split floats": (
        "none",
        {"column_encoding": {**PLAIN, **dict.fromkeys(FLOATS, "BYTE_STREAM_SPLIT")}},
    ),
    "data page v2": ("none", {"data_page_version": "2.0"}),
    "several row groups": ("none", {"row_group_size": 1000}),
}


def test_the_stores_own_files_load_straight_from_their_bytes_as_pyarrow_decodes_them(
    tmp_path: Path,
) -> None:
    store = CandleStore.open(tmp_path)
    store.write(CANDLES, *SERIES)
    store.close()
    files = sorted(series_dir(tmp_path).glob("*.parquet"))
    assert len(files) == 2 and [straight(p) for p in files] == ["floats, trades"] * 2
    for span in ((0, MAX_MS), CUT, (AUG1, MAX_MS)):  # whole files, cut ones, one whole
        assert_same_bits(first_load(tmp_path, *span), pyarrow_frame(tmp_path, *span))


@pytest.mark.parametrize("name", FORMATS)
def test_files_of_other_versions_and_tools_load_as_pyarrow_decodes_them(
    tmp_path: Path, name: str
) -> None:
    read, options = FORMATS[name]
    write_as(tmp_path, CANDLES, **options)
    files = sorted(series_dir(tmp_path).glob("*.parquet"))
    assert [straight(p) for p in files] == [read] * len(files)
    if "several pages" in name:
        spans = spans_of(files[0], {"all": ALL, "floats, trades": COUNTED}.get(read, FLOAT_TYPES))
        assert spans is not None and all(len(column) > 1 for column in spans)
    for span in ((0, MAX_MS), CUT):
        assert_same_bits(first_load(tmp_path, *span), pyarrow_frame(tmp_path, *span))


def test_optional_columns_load_as_pyarrow_decodes_them(tmp_path: Path) -> None:
    write_as(tmp_path, CANDLES, required=False)
    assert {straight(p) for p in series_dir(tmp_path).glob("*.parquet")} == {"none"}
    assert_same_bits(first_load(tmp_path), pyarrow_frame(tmp_path))


def test_a_frame_read_from_the_bytes_is_the_callers_to_change(tmp_path: Path) -> None:
    write_as(tmp_path, CANDLES)
    first = first_load(tmp_path)
    again = CandleStore.open(tmp_path).load(*SERIES)  # from what the first load kept
    first.iloc[0, first.columns.get_loc("close")] = -1.0
    assert again["close"].iloc[0] != -1.0
    assert_same_bits(CandleStore.open(tmp_path).load(*SERIES), pyarrow_frame(tmp_path))


def first_page_header(path: Path, column: int = 1) -> int:
    """The offset of a column's first page header (1: the first float column)."""
    return int(pq.ParquetFile(path).metadata.row_group(0).column(column).data_page_offset)


# Columns damaged: a float, the open time (statistics end its header: read generically),
# the count (an int's header read as a float's is).
DAMAGED = {"open": 1, "open_time": 0, "number_of_trades": 8}

# A page header as pyarrow writes it: 15 00 (type), 15 + 3 bytes (uncompressed
# size), 15 + 3 bytes (compressed size), 2c 15 + 3 bytes (values), 15 00 (PLAIN), ...
DAMAGES = {
    "sizes that differ": {3: 0x90},
    "sizes past the chunk and the file": {5: 0x7F, 9: 0x7F},
    "one value more than the page holds": {12: 0xC2},
    "a varint cut short": {12: 0x7F},
    "a dictionary page": {1: 0x04},
    # The definition levels' encoding as an i64: Thrift skips a field of another type, then
    # pyarrow refuses the header for a required field missing; so must the store.
    "a required field of another type": {16: 0x16},
    "a required field missing": {16: 0x25},
}


@pytest.mark.parametrize("column", DAMAGED)
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_page_header_gives_a_store_error_or_pyarrows_values_never_others(
    tmp_path: Path, damage: str, column: str
) -> None:
    write_as(tmp_path, CANDLES, column_encoding=PLAIN)  # every column read from its bytes
    path = damaged(tmp_path, DAMAGED[column], damage)
    assert spans_of(path) is None  # not read from its bytes: pyarrow decodes it
    assert_store_error_or_pyarrows_values(tmp_path)


@pytest.mark.parametrize("before", [False, True], ids=["the stores files", "the format before"])
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_trades_header_in_a_stores_file_gives_a_store_error_or_pyarrows_values(
    tmp_path: Path, damage: str, before: bool
) -> None:
    # The floats are read by a layout, the trades (their header damaged) decoded by pyarrow.
    write_as(tmp_path, CANDLES, **({"column_encoding": DELTA_INTS} if before else {}))
    path = damaged(tmp_path, DAMAGED["number_of_trades"], damage)
    assert spans_of(path, COUNTED) is None  # its trades not read from its bytes
    layouts.clear()
    assert_store_error_or_pyarrows_values(tmp_path)


def damaged(root: Path, column: int, damage: str) -> Path:
    """Damage the first page header of `column` in the series' first file."""
    path = sorted(series_dir(root).glob("*.parquet"))[0]
    raw = bytearray(path.read_bytes())
    header = first_page_header(path, column)
    for where, byte in DAMAGES[damage].items():
        raw[header + where] = byte
    path.write_bytes(bytes(raw))
    return path


def assert_store_error_or_pyarrows_values(tmp_path: Path) -> None:
    try:
        want = pyarrow_frame(tmp_path)
    except (OSError, pa.ArrowException):  # pyarrow refuses it: so does the store
        with pytest.raises(StoreError, match="cannot read BTCUSDT 1m candles"):
            first_load(tmp_path)
    else:
        assert_same_bits(first_load(tmp_path), want)


def test_a_truncated_file_gives_a_store_error(tmp_path: Path) -> None:
    write_as(tmp_path, CANDLES)
    path = sorted(series_dir(tmp_path).glob("*.parquet"))[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(StoreError, match="cannot read BTCUSDT 1m candles"):
        first_load(tmp_path)


@pytest.fixture(scope="module")
def one_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A partition file, all PLAIN, with several pages a column."""
    root = tmp_path_factory.mktemp("one")
    write_as(root, CANDLES.iloc[:3000], column_encoding=PLAIN, data_page_size=8192)
    return sorted(series_dir(root).glob("*.parquet"))[0]


@settings(max_examples=60, deadline=None)
@given(
    at=st.integers(0, 200),
    junk=st.binary(min_size=1, max_size=8),
    damaged=st.sampled_from(list(DAMAGED.values())),
)
def test_no_damaged_header_yields_spans_outside_its_column_chunk(
    one_file: Path, at: int, junk: bytes, damaged: int
) -> None:
    raw = bytearray(one_file.read_bytes())
    start = first_page_header(one_file, damaged) + at
    raw[start : start + len(junk)] = junk
    metadata = pq.ParquetFile(one_file).metadata
    spans = pages.plain_spans(memoryview(bytes(raw)), metadata, ALL)
    if spans is None:
        return
    group = metadata.row_group(0)
    for name, column in zip(ALL, spans, strict=True):
        chunk = group.column(metadata.schema.names.index(name))
        lo, hi = chunk.data_page_offset, chunk.data_page_offset + chunk.total_compressed_size
        assert sum(values for _, values in column) == metadata.num_rows
        assert all(lo <= offset and offset + 8 * values <= hi for offset, values in column)


bits = st.integers(0, 2**64 - 1).map(lambda b: np.uint64(b).view(np.float64))
specials = st.sampled_from([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, -2.2e-308])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(st.one_of(bits, specials), min_size=1, max_size=400),
    page=st.sampled_from([1024, 1 << 20]),
)
def test_any_float_values_load_exactly_as_written(
    tmp_path_factory: pytest.TempPathFactory, values: list[float], page: int
) -> None:
    root = tmp_path_factory.mktemp("floats")
    rows = len(values)
    frame = CANDLES.iloc[:rows].copy()
    for k, name in enumerate(FLOATS):
        frame[name] = np.roll(np.asarray(values, dtype=np.float64), k)
    write_as(root, frame, data_page_size=page)
    assert all(spans_of(p, FLOAT_TYPES) is not None for p in series_dir(root).glob("*.parquet"))
    assert_same_bits(first_load(root), pyarrow_frame(root))


def _load_in_child(root: str, want: pd.DataFrame) -> None:
    assert_same_bits(first_load(Path(root)), want)


def test_a_forked_child_loads_after_its_parent_did(tmp_path: Path) -> None:
    # Files are read by threads started once per process: a child forked after a load has
    # none of its parent's threads, and must start its own rather than wait on them.
    import multiprocessing

    write_as(tmp_path, CANDLES)
    want = first_load(tmp_path)
    child = multiprocessing.get_context("fork").Process(
        target=_load_in_child, args=(str(tmp_path), want)
    )
    child.start()
    child.join(60)  # a child waiting on its parent's threads never ends: not a timing
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == 0
