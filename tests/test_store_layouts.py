"""A first load reuses a file version's layout (`store.layouts`) only for the bytes it was found
in: a rewritten partition, even one whose key a kept layout claims, loads as pyarrow decodes it.

Real Parquet files written with the store's options, read through `CandleStore.load`;
pyarrow's own decode is the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_market import AUG1
from test_store_pages import (  # tests/ is on sys.path (rootdir, no package)
    CANDLES,
    DELTA_INTS,
    FLOATS,
    SERIES,
    assert_same_bits,
    first_load,
    pyarrow_frame,
    series_dir,
    write_as,
)

from streamforge_nb.store import layouts, scan
from streamforge_nb.store.candles import CandleStore


def kept(path: Path) -> layouts.Layout | None:
    return layouts.get(str(path), scan._key(str(path)))


def kept_after_a_first_load(root: Path) -> dict[Path, layouts.Layout]:
    """Write the two months of CANDLES, load them once; return each file's layout kept."""
    write_as(root, CANDLES)
    layouts.clear()
    first_load(root)
    found = {p: kept(p) for p in sorted(series_dir(root).glob("*.parquet"))}
    assert len(found) == 2
    return {p: layout for p, layout in found.items() if layout is not None}


def keep_under_its_key(path: Path, layout: layouts.Layout) -> None:
    layouts.put(str(path), scan._key(str(path)), layout)


def test_a_layout_kept_from_a_first_load_reads_the_next_one_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(kept_after_a_first_load(tmp_path)) == 2  # headers read, each layout kept
    read: list[bool] = []

    def read_into(*args: Any) -> bool:
        read.append(real(*args))
        return read[-1]

    real = layouts.read_into
    monkeypatch.setattr(layouts, "read_into", read_into)
    again = first_load(tmp_path)  # decoded tables dropped, layouts kept
    assert read == [True, True]  # each file read by its layout, not mapped and planned
    assert_same_bits(again, pyarrow_frame(tmp_path))


@pytest.mark.parametrize(
    ("options", "placed"),
    [({}, ("number_of_trades", *FLOATS)), ({"column_encoding": DELTA_INTS}, tuple(FLOATS))],
    ids=["the stores files", "trades delta-encoded (the format before)"],
)
def test_a_layout_places_the_trades_where_they_are_plain_and_pyarrow_decodes_them_elsewhere(
    tmp_path: Path, options: dict[str, Any], placed: tuple[str, ...]
) -> None:
    write_as(tmp_path, CANDLES, **options)
    layouts.clear()
    assert_same_bits(first_load(tmp_path), pyarrow_frame(tmp_path))  # mapped, headers read
    files = sorted(series_dir(tmp_path).glob("*.parquet"))
    found = [kept(p) for p in files]
    assert [layout.columns if layout else None for layout in found] == [placed] * len(files)
    assert_same_bits(first_load(tmp_path), pyarrow_frame(tmp_path))  # by the kept layouts


def test_a_series_half_in_the_format_before_loads_exactly_after_a_batch_rewrote_one_month(
    tmp_path: Path,
) -> None:
    # A store written before the trades were PLAIN; a sink of this version then adds a batch
    # to the second month, which rewrites that month in today's format.
    write_as(tmp_path, CANDLES, column_encoding=DELTA_INTS)
    second = CANDLES[CANDLES.index >= pd.Timestamp(AUG1, unit="ms", tz="UTC")]
    store = CandleStore.open(tmp_path)
    store.write(second.iloc[-10:], *SERIES)
    store.close()
    layouts.clear()
    assert_same_bits(first_load(tmp_path), pyarrow_frame(tmp_path))  # mapped, headers read
    files = sorted(series_dir(tmp_path).glob("*.parquet"))
    found = [kept(p) for p in files]
    assert [len(layout.columns) if layout else None for layout in found] == [8, 9]
    assert_same_bits(first_load(tmp_path), pyarrow_frame(tmp_path))  # by the kept layouts


def test_a_rewritten_file_under_a_kept_layouts_key_loads_as_pyarrow_decodes_it(
    tmp_path: Path,
) -> None:
    # The same key for other bytes: a rewrite within the clock's tick, of the same size, on
    # the same inode. Forced here by keeping the old layout under the new file's key.
    old = kept_after_a_first_load(tmp_path)
    files = sorted(old)
    sizes = {p: p.stat().st_size for p in files}
    # Other close times (still one step: the same bytes but for each page's first value)
    # and other prices; the same sizes, so offsets alone cannot tell the files apart.
    other = CANDLES.copy()
    close = other["close_time"].array.asi8 - 1
    other["close_time"] = pd.Series(close.view("datetime64[ms]"), other.index).dt.tz_localize("UTC")
    other["close"] = other["close"] * 2
    write_as(tmp_path, other)
    assert {p: p.stat().st_size for p in files} == sizes
    for path, layout in old.items():
        keep_under_its_key(path, layout)
    loaded = first_load(tmp_path)
    assert_same_bits(loaded, pyarrow_frame(tmp_path))
    assert (loaded["close_time"] == other["close_time"]).all()
    for path in files:  # the rewrite's own layout replaced the stale one
        now = kept(path)
        assert now is not None and now.runs != old[path].runs


def test_a_shorter_file_under_a_kept_layouts_key_loads_as_pyarrow_decodes_it(
    tmp_path: Path,
) -> None:
    # A file's layout kept under the key of a file holding less of that month.
    old = kept_after_a_first_load(tmp_path)
    for path in old:
        path.unlink()
    write_as(tmp_path, CANDLES.iloc[: len(CANDLES) // 3])  # the first month only, cut short
    (path,) = sorted(series_dir(tmp_path).glob("*.parquet"))
    assert path.stat().st_size < old[path].size
    keep_under_its_key(path, old[path])
    assert_same_bits(first_load(tmp_path), pyarrow_frame(tmp_path))


def test_a_layout_reads_a_file_in_one_pass_only_where_no_bytes_are_placed_twice() -> None:
    # Two float columns of 2 values, each page after a 4-byte header; a footer of 10 bytes.
    spans = [[(8, 2)], [(28, 2)]]
    read = ((4, 4), (24, 4), (44, 10))
    segments = layouts._segments(spans, read, 54)
    assert segments == (
        (4, 4, -1, 0),
        (8, 16, 0, 0),
        (24, 4, -1, 0),
        (28, 16, 1, 0),
        (44, 10, -1, 0),
    )
    # Float pages that overlap (a damaged footer's chunks), or a header read inside a
    # float's values: no single pass places those bytes; the file is mapped instead.
    assert layouts._segments([[(8, 2)], [(20, 2)]], read, 54) is None
    assert layouts._segments(spans, ((4, 4), (12, 4), (44, 10)), 54) is None
    assert layouts._segments(spans, read, 40) is None  # values past the file's end


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
def test_first_loads_by_map_and_by_layout_leave_no_file_open(tmp_path: Path) -> None:
    write_as(tmp_path, CANDLES)
    layouts.clear()
    before = len(list(Path("/proc/self/fd").iterdir()))
    first_load(tmp_path)  # mapped, headers read
    first_load(tmp_path)  # read by the kept layouts
    scan.clear()  # the kept frames hold no file either
    assert len(list(Path("/proc/self/fd").iterdir())) == before
