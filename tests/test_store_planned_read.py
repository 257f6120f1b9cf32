"""A whole partition file read by its layout (`store.planned_read`, `scan`'s reads of many
series) is the table pyarrow decodes, or nothing: then pyarrow decodes it.

Real Parquet files written with the store's options (and the format before), read through
`scan._decode`; pyarrow's own decode, cast to the store's schema, is the reference.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_store_layouts import keep_under_its_key
from test_store_pages import (  # tests/ is on sys.path (rootdir, no package)
    CANDLES,
    DAMAGED,
    DELTA_INTS,
    PLAIN,
    damaged,
    series_dir,
    write_as,
)

from streamforge_nb.store import layouts, planned_read, scan


def files(root: Path) -> list[Path]:
    return sorted(series_dir(root).glob("*.parquet"))


def pyarrows(path: Path) -> pa.Table:
    return pq.read_table(path).cast(scan.SCHEMA)


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
        assert scan._decode(str(path), None).equals(pyarrows(path))


def test_a_rewritten_file_under_a_kept_layouts_key_is_decoded_by_pyarrow(
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
    assert planned_read.read_table(str(path), scan.SCHEMA) is None
    assert layouts.get(str(path), scan._key(str(path))) is None  # dropped
    assert scan._decode(str(path), None).equals(pyarrows(path))


def test_a_damaged_trades_header_is_left_to_pyarrow(tmp_path: Path) -> None:
    # The format before: floats by the layout, trades by pyarrow, which reads this damaged
    # header as no values at all (and refuses the file when it reads all of it).
    write_as(tmp_path, CANDLES, column_encoding=DELTA_INTS)
    path = damaged(tmp_path, DAMAGED["number_of_trades"], "a dictionary page")
    layouts.clear()
    assert planned_read.read_table(str(path), scan.SCHEMA) is None
    with pytest.raises(pa.ArrowInvalid, match="number_of_trades"):  # pyarrow's refusal
        scan._decode(str(path), None)
