"""A first load reuses a file version's layout (`store.layouts`) only for the bytes it was found
in: a rewritten partition, even one whose key a kept layout claims, loads as pyarrow decodes it.

Real Parquet files written with the store's options, read through `CandleStore.load`;
pyarrow's own decode is the reference.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from test_store_pages import (  # tests/ is on sys.path (rootdir, no package)
    CANDLES,
    assert_same_bits,
    first_load,
    pyarrow_frame,
    series_dir,
    write_as,
)

from streamforge_nb.store import layouts, scan


def kept(path: Path) -> layouts.Layout | None:
    return layouts.get(str(path), scan._key(str(path)))


def test_a_layout_kept_from_a_first_load_reads_the_next_one_exactly(tmp_path: Path) -> None:
    write_as(tmp_path, CANDLES)
    layouts.clear()
    before = first_load(tmp_path)  # reads the headers, keeps each file's layout
    files = sorted(series_dir(tmp_path).glob("*.parquet"))
    assert len(files) == 2 and all(kept(p) is not None for p in files)
    again = first_load(tmp_path)  # decoded tables dropped, layouts kept
    assert_same_bits(again, pyarrow_frame(tmp_path))
    assert_same_bits(again, before)


def test_a_rewritten_file_under_a_kept_layouts_key_loads_as_pyarrow_decodes_it(
    tmp_path: Path,
) -> None:
    # The same key for other bytes: a rewrite within the clock's tick, of the same size, on
    # the same inode. Forced here by keeping the old layout under the new file's key.
    write_as(tmp_path, CANDLES)
    layouts.clear()
    first_load(tmp_path)
    files = sorted(series_dir(tmp_path).glob("*.parquet"))
    old = {p: kept(p) for p in files}
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
        assert layout is not None
        layouts.put(str(path), scan._key(str(path)), layout)
    loaded = first_load(tmp_path)
    assert_same_bits(loaded, pyarrow_frame(tmp_path))
    assert (loaded["close_time"] == other["close_time"]).all()
    for path in files:  # the rewrite's own layout replaced the stale one
        now = kept(path)
        assert now is not None and now.runs != old[path].runs  # type: ignore[union-attr]
