"""A whole partition file read by its layout (`store.planned_read`, `scan`'s reads of many
series) is the table pyarrow decodes, or nothing: then pyarrow decodes it.

Real Parquet files written with the store's options (and the format before), read through
`scan._decode`; pyarrow's own decode, cast to the store's schema, is the reference.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_store_layouts import keep_under_its_key
from test_store_pages import (  # tests/ is on sys.path (rootdir, no package)
    CANDLES,
    CUT,
    DAMAGED,
    DELTA_INTS,
    FORMATS,
    MAX_MS,
    PLAIN,
    damaged,
    series_dir,
    write_as,
)

from streamforge_nb.store import layouts, planned_read, scan
from streamforge_nb.store.planned_read import Scratch


def files(root: Path) -> list[Path]:
    return sorted(series_dir(root).glob("*.parquet"))


def pyarrows(path: Path) -> pa.Table:
    return pq.read_table(path).cast(scan.SCHEMA)


def assert_arrays_are(arrays: dict[str, np.ndarray[Any, Any]] | None, table: pa.Table) -> None:
    """`arrays` (`mapped_arrays`: times as int64 ms) hold `table`'s values, bit for bit."""
    assert arrays is not None and list(arrays) == table.column_names
    for name, column in zip(table.column_names, table.columns, strict=True):
        want = column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column
        assert arrays[name].dtype == want.type.to_pandas_dtype()
        np.testing.assert_array_equal(arrays[name].view(np.int64), want.to_numpy().view(np.int64))


@pytest.mark.parametrize(
    "options",
    [{}, {"column_encoding": DELTA_INTS}],
    ids=["the stores files", "trades delta-encoded (the format before)"],
)
def test_a_store_file_read_by_its_layout_is_pyarrows_table(
    tmp_path: Path, options: dict[str, object]
) -> None:
    write_as(tmp_path, CANDLES, **options)
    layouts.clear()
    for path in files(tmp_path):
        first = planned_read.read_table(str(path), scan.SCHEMA)  # mapped, its layout found
        assert first is not None and first.equals(pyarrows(path))
        again = planned_read.read_table(str(path), scan.SCHEMA)  # by the kept layout
        assert again is not None and again.equals(pyarrows(path))
        assert scan._decode(str(path), None).equals(pyarrows(path))
        # From its map (a resample's read): the same values, as arrays.
        assert_arrays_are(planned_read.mapped_arrays(str(path), scan.SCHEMA, Scratch()), first)


def views(arrays: dict[str, np.ndarray[Any, Any]] | None) -> bool:
    """Whether `mapped_arrays` gave views of the file's map (read only), not scratch."""
    assert arrays is not None
    return not arrays["close"].flags.writeable


def test_the_stores_files_are_views_of_their_maps_with_pyarrows_values(tmp_path: Path) -> None:
    write_as(tmp_path, CANDLES)
    for found in (False, True):  # the layout found from the map, then the kept one
        if not found:
            layouts.clear()
        for path in files(tmp_path):
            arrays = planned_read.mapped_arrays(str(path), scan.SCHEMA, Scratch())
            assert_arrays_are(arrays, pyarrows(path))
            assert arrays is not None and views(arrays)
            for name in scan.SCHEMA.names[1:]:  # the file's bytes, never written
                assert arrays[name].flags.writeable == (name == "close_time")
    # A column in pages (the files pyarrow cut at 20,000 rows), or the trades delta-encoded
    # (the format before; pyarrow decodes them): copied into scratch, the same values.
    for kind, options in (
        ("pages", {"data_page_size": 4096}),
        ("before", {"column_encoding": DELTA_INTS}),
    ):
        write_as(tmp_path / kind, CANDLES, **options)
        for path in files(tmp_path / kind):
            arrays = planned_read.mapped_arrays(str(path), scan.SCHEMA, Scratch())
            assert_arrays_are(arrays, pyarrows(path))
            assert not views(arrays)


def test_a_partition_the_store_writes_is_one_page_a_column(tmp_path: Path) -> None:
    # A whole month of 1m (44,640 rows): past the 20,000 rows a page newer pyarrow cuts at.
    from test_market import generated

    from streamforge_nb.store.candles import CandleStore
    from streamforge_nb.store.local import _WRITE_OPTIONS

    if "max_rows_per_page" not in _WRITE_OPTIONS:
        pytest.skip("this pyarrow takes no max_rows_per_page: pages are as it cuts them")
    month = generated("BTCUSDT", "1m", 1_706_745_600_000, 1_709_251_200_000)  # 2024-02
    store = CandleStore.open(tmp_path)
    store.write(month, "BTCUSDT", "1m")
    (path,) = files(tmp_path)
    arrays = planned_read.mapped_arrays(str(path), scan.SCHEMA, Scratch())
    assert arrays is not None and len(arrays["close"]) == len(month)
    assert views(arrays), "a column in pages: each is one page as the store writes it"


@pytest.mark.parametrize("pages", [None, 256], ids=["views", "copies"])
def test_scratch_is_reused_file_after_file_and_holds_each_files_values(
    tmp_path: Path, pages: int | None
) -> None:
    write_as(tmp_path, CANDLES, data_page_size=pages)
    paths = files(tmp_path)
    shorter = tmp_path / "shorter"  # a file of fewer rows read in between
    write_as(shorter, CANDLES.iloc[:100], data_page_size=pages)
    paths.insert(1, files(shorter)[0])
    short = series_dir(shorter)
    layouts.clear()
    scratch = Scratch()
    held = []
    for path in [*paths, *paths]:  # found, then by the kept layouts
        arrays = planned_read.mapped_arrays(str(path), scan.SCHEMA, scratch)
        assert_arrays_are(arrays, pyarrows(path))
        # pyarrow cuts pages between its batches of 1,024 rows: the shorter file is one page.
        assert arrays is not None and views(arrays) == (pages is None or path.parent == short)
        held.append(arrays["open_time"].__array_interface__["data"][0])  # its start
    # One allocation, grown at most once (by the first file, a quarter over its size), is
    # written by every read after it: nothing new is allocated file after file.
    assert len(set(held)) == 1


def test_scratches_are_kept_for_the_next_read_and_given_out_once(tmp_path: Path) -> None:
    with planned_read.scratch(2) as pair:
        pair[0].of(1000)
        assert len({id(s) for s in pair}) == 2
        with planned_read.scratch(2) as other:  # a second read meanwhile: others
            assert not {id(s) for s in other} & {id(s) for s in pair}
    with planned_read.scratch(2) as again:  # kept, and handed out again
        assert {id(s) for s in again} & {id(s) for s in pair}
        assert max(s.nbytes for s in again) >= 1000


@pytest.mark.parametrize(
    "options",
    [{"compression": "lz4"}, {"column_encoding": PLAIN}, {"data_page_version": "2.0"}],
    ids=["lz4", "all PLAIN (times too)", "data page v2"],
)
def test_other_files_are_left_to_pyarrow(tmp_path: Path, options: dict[str, object]) -> None:
    write_as(tmp_path, CANDLES, **options)
    layouts.clear()
    for path in files(tmp_path):
        assert planned_read.read_table(str(path), scan.SCHEMA) is None
        assert planned_read.mapped_arrays(str(path), scan.SCHEMA, Scratch()) is None
        assert scan._decode(str(path), None).equals(pyarrows(path))


def test_a_rewritten_file_under_a_kept_layouts_key_is_read_by_its_own_layout(
    tmp_path: Path,
) -> None:
    write_as(tmp_path, CANDLES)
    layouts.clear()
    path = files(tmp_path)[0]
    # The layout of the file as first written.
    old = layouts.plan(memoryview(path.read_bytes()), pq.ParquetFile(path).metadata)
    assert old is not None
    write_as(tmp_path, CANDLES.iloc[: len(CANDLES) // 3])  # the first month, cut short
    keep_under_its_key(path, old)  # the old layout under the new file's key
    # Read into new buffers: not the bytes the layout was found in, so pyarrow decodes it.
    assert planned_read.read_table(str(path), scan.SCHEMA) is None
    assert layouts.get(str(path), scan._key(str(path))) is None  # dropped
    assert scan._decode(str(path), None).equals(pyarrows(path))
    # From its map: the layout found again from the bytes mapped, and the file's values.
    keep_under_its_key(path, old)
    arrays = planned_read.mapped_arrays(str(path), scan.SCHEMA, Scratch())
    assert_arrays_are(arrays, pyarrows(path))
    kept = layouts.get(str(path), scan._key(str(path)))
    assert kept is not None and kept.rows == len(pyarrows(path)) != old.rows


def test_a_damaged_trades_header_is_left_to_pyarrow(tmp_path: Path) -> None:
    # The format before: floats by the layout, trades by pyarrow, which reads this damaged
    # header as no values at all (and refuses the file when it reads all of it).
    write_as(tmp_path, CANDLES, column_encoding=DELTA_INTS)
    path = damaged(tmp_path, DAMAGED["number_of_trades"], "a dictionary page")
    layouts.clear()
    assert planned_read.read_table(str(path), scan.SCHEMA) is None
    assert planned_read.mapped_arrays(str(path), scan.SCHEMA, Scratch()) is None
    with pytest.raises(pa.ArrowInvalid, match="number_of_trades"):  # pyarrow's refusal
        scan._decode(str(path), None)


def spans_of_files(paths: list[Path]) -> list[tuple[int, int, str]]:
    """(start, end, path) as `scan` lists partition files (months here)."""
    out = []
    for path in paths:
        start = pd.Timestamp(path.stem + "-01", tz="UTC")
        out.append(
            (start.value // 10**6, (start + pd.DateOffset(months=1)).value // 10**6, str(path))
        )
    return out


def cut(table: pa.Table, lo: int, hi: int) -> pa.Table:
    times = table.column("open_time").cast(pa.int64()).to_numpy()
    first, last = np.searchsorted(times, [lo, hi])
    return table.slice(int(first), int(last - first))


@pytest.mark.parametrize("name", FORMATS)
def test_a_resamples_reads_are_pyarrows_values_in_every_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    write_as(tmp_path, CANDLES, **FORMATS[name][1])
    paths = files(tmp_path)
    listed = spans_of_files(paths)
    layouts.clear()
    scan.clear()
    read_how: dict[str, list[str]] = {"views": [], "copies": []}
    real = planned_read.mapped_arrays

    def mapped_arrays(path: str, *args: Any) -> Any:
        arrays = real(path, *args)
        if arrays is not None:
            read_how["views" if views(arrays) else "copies"].append(path)
        return arrays

    monkeypatch.setattr(planned_read, "mapped_arrays", mapped_arrays)
    for lo, hi in ((0, MAX_MS), CUT):
        for arrays, path in zip(scan.file_arrays(listed, lo, hi), paths, strict=True):
            assert_arrays_are(arrays, cut(pyarrows(path), lo, hi))
    # The store's own files (a column one page) are views of their maps; in pages, or with
    # the trades delta-encoded (the format before), copied into scratch; neither kept.
    as_views = name in ("page checksums (a header field more)", "page statistics")
    copied = name in ("several pages a column", "trades delta-encoded (the format before)",
                      "trades delta-encoded, several pages")  # fmt: skip
    assert bool(read_how["views"]) == as_views
    assert bool(read_how["copies"]) == copied
    assert (as_views or copied) == (scan.cache_bytes() == 0)  # the others decoded and kept


def test_a_file_without_a_layout_is_looked_at_once_then_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An older store's lz4 files: `mapped_arrays` finds no layout, pyarrow decodes them; its
    # headers must not be mapped and read a second time on the way (~0.2 ms a file).
    write_as(tmp_path, CANDLES, compression="lz4")
    listed = spans_of_files(files(tmp_path))
    layouts.clear()
    scan.clear()
    looked: list[int] = []
    real = layouts.plan

    def plan(*args: Any) -> Any:
        looked.append(1)
        return real(*args)

    monkeypatch.setattr(layouts, "plan", plan)
    for arrays, (*_, path) in zip(scan.file_arrays(listed, 0, MAX_MS), listed, strict=True):
        assert_arrays_are(arrays, pyarrows(Path(path)))
    assert len(looked) == len(listed)


def test_a_resample_reads_kept_tables_not_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_as(tmp_path, CANDLES)
    listed = spans_of_files(files(tmp_path))
    scan.clear()
    kept = [scan._decode(p, None) for *_, p in listed]
    for (*_, path), table in zip(listed, kept, strict=True):
        scan._CACHE.put(path, scan._key(path), table, 2**30)

    def no_read(*args: Any) -> None:
        raise AssertionError("a kept table was read again")

    monkeypatch.setattr(planned_read, "mapped_arrays", no_read)
    for arrays, table in zip(scan.file_arrays(listed, 0, MAX_MS), kept, strict=True):
        assert_arrays_are(arrays, table)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_gets_scratch_while_a_parents_thread_held_the_lock() -> None:
    # A notebook forks (multiprocessing's default on Linux before 3.14) while a resample in
    # another thread holds the lock of the kept scratches: the child must not wait forever.
    with planned_read._KEPT_LOCK:
        pid = os.fork()
        if not pid:  # the child: exit 0 only if scratch is handed out
            code = 1
            try:
                with planned_read.scratch(2) as pair:
                    code = 0 if len(pair) == 2 else 1
            finally:
                os._exit(code)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child waited for a lock its parent's thread held")
