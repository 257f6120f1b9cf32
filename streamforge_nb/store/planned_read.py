"""A whole partition file as the store's schema, read by its layout (`store.layouts`).

`scan` decoded every file of a many-series read or resample with pyarrow: ~2 ms CPU a month
of 1m in the two threads of a resample of 50 series. A file as the store writes it needs no
decode (`store.series_read` reads one series' files so): its PLAIN values are read into new
buffers and its times filled. `read_table` does that for `scan`, finding the file's layout
on its first read (and keeping it, as `series_read` does); any other file gives None, and
pyarrow decodes it as before, so a damaged file still gets pyarrow's error.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamforge_nb.store import layouts

__all__ = ["read_table"]

# Where the OS reads into many buffers at once (`layouts.read_into`); elsewhere pyarrow.
_PREADV = hasattr(os, "preadv")


def read_table(path: str, schema: pa.Schema) -> pa.Table | None:
    """Return the file at `path` as a table of `schema` (the store's: 8-byte values, no
    nulls), read by its layout; None if it has none (not as the store writes it, or it
    changed under a kept one): decode it."""
    if not _PREADV:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        # The layout is kept under the version opened: a replace since changes nothing here.
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        layout = layouts.get(path, key)
        mapped = None
        if layout is None:
            if not st.st_size:
                return None
            mapped = layouts.map_file(fd)
            try:
                metadata = pq.ParquetFile(pa.BufferReader(mapped)).metadata
            except (OSError, pa.ArrowException):  # pyarrow's decode says what is wrong
                return None
            layout = layouts.plan(memoryview(mapped).cast("B"), metadata)
            if layout is None:
                return None
            layouts.put(path, key, layout)
        return _read(fd, mapped, layout, path, schema)
    finally:
        os.close(fd)


def _read(
    fd: int, mapped: pa.Buffer | None, layout: layouts.Layout, path: str, schema: pa.Schema
) -> pa.Table | None:
    rows = layout.rows
    buffers = {f.name: pa.allocate_buffer(8 * rows) for f in schema}
    arrays: dict[str, np.ndarray[Any, Any]] = {
        f.name: np.frombuffer(
            buffers[f.name], np.float64 if pa.types.is_floating(f.type) else np.int64
        )
        for f in schema
    }
    data = layouts.read_values(layout, arrays, fd, mapped)
    if data is None:
        layouts.drop(path)  # not the bytes it was found in: decode the file
        return None
    if "number_of_trades" not in layout.columns:  # delta-encoded (older files)
        file = pq.ParquetFile(pa.BufferReader(data))
        trades = file.read(["number_of_trades"], use_threads=False).column(0)
        if len(trades) != rows:  # a damaged header pyarrow reads as no values: decode it
            return None
        arrays["number_of_trades"][:] = trades.cast(pa.int64()).to_numpy()
    columns = [pa.Array.from_buffers(f.type, rows, [None, buffers[f.name]]) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)
