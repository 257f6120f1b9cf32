"""A whole partition file as the store's schema, read by its layout (`store.layouts`).

`scan` decoded every file of a many-series read or resample with pyarrow: ~2 ms CPU a month
of 1m in the two threads of a resample of 50 series. A file as the store writes it needs no
decode (`store.series_read` reads one series' files so): its PLAIN values are read into new
buffers and its times filled. `read_table` does that for `scan`, finding the file's layout
on its first read (and keeping it, as `series_read` does); any other file gives None, and
pyarrow decodes it as before, so a damaged file still gets pyarrow's error. A resample keeps
nothing of a file: `mapped_arrays` gives it the file's map by its layout, each column a view
of the map where it is one page (as the store writes a partition), else copied into a
scratch (new memory costs its page faults every time, and the scratches, `scratch`, are
kept for the next one).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamforge_nb.store import layouts

__all__ = ["Scratch", "mapped_arrays", "read_table", "scratch"]

# Where the OS reads into many buffers at once (`layouts.read_into`); elsewhere pyarrow.
_PREADV = hasattr(os, "preadv")
_INTS = ("open_time", "close_time", "number_of_trades")
_TIMES = ("open_time", "close_time")  # as `Layout.runs` holds them


def read_table(path: str, schema: pa.Schema) -> pa.Table | None:
    """Return the file at `path` as a table of `schema` (the store's: 8-byte values, no
    nulls), read by its layout into new buffers; None if it has none (not as the store
    writes it, or it changed under a kept one): decode it."""
    buffers: dict[str, pa.Buffer] = {}

    def new(rows: int) -> dict[str, np.ndarray[Any, Any]]:
        buffers.update((name, pa.allocate_buffer(8 * rows)) for name in schema.names)
        return {name: np.frombuffer(b, _dtype(name)) for name, b in buffers.items()}

    rows = _read(path, new)
    if rows is None:
        return None
    columns = [pa.Array.from_buffers(f.type, rows, [None, buffers[f.name]]) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def mapped_arrays(
    path: str, schema: pa.Schema, scratch: Scratch
) -> dict[str, np.ndarray[Any, Any]] | None:
    """Return the file at `path` as arrays of `schema`'s columns (times as int64 ms) from its
    map, by its layout, or None as `read_table` (no layout: decode it). Where each PLAIN
    column is one page (as the store writes a partition) those columns are views of the
    map (read only; no copy: a resample aggregates them where they lie, a year of 1m to 1h
    in ~11 ms against ~18 copied first); else they are copied into `scratch`. The times
    are filled into `scratch`, which its next use overwrites. For a read that keeps
    nothing (a resample): new memory would cost more than the read (page faults)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not st.st_size:
            return None
        key = layouts.version(st)  # the version opened: a replace since changes nothing here
        mapped = layouts.map_file(fd)  # holds the file: the arrays' views keep it mapped
    finally:
        os.close(fd)
    layout = layouts.get(path, key)
    if layout is not None and not layouts.matches(layout, mapped):
        layout = None  # not the bytes it was found in: found again from these
    if layout is None:
        layout = _planned(path, key, mapped)
        if layout is None:
            layouts.drop(path)
            return None
    rows, pages = layout.rows, _pages(layout)
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    if pages is not None:
        times = scratch.of(16 * rows)
        for name in schema.names:
            if name in _TIMES:
                i = _TIMES.index(name)
                arrays[name] = times[8 * rows * i : 8 * rows * (i + 1)].view(np.int64)
                layouts.fill(arrays[name], layout.runs[i])
            else:
                arrays[name] = np.frombuffer(mapped, _dtype(name), rows, pages[name])
        return arrays
    data = scratch.of(8 * rows * len(schema))
    for i, name in enumerate(schema.names):
        arrays[name] = data[8 * rows * i : 8 * rows * (i + 1)].view(_dtype(name))
    layouts.read_values(layout, arrays, -1, mapped)
    return arrays if _older_trades(layout, mapped, arrays) else None


def _pages(layout: layouts.Layout) -> dict[str, int] | None:
    """Where each PLAIN column's values begin if each is one page of all the file's rows and
    the trades are among them (then every column but the times is a view); else None."""
    found: dict[str, int] = {}
    fours = iter(layout.segments)
    for offset, n, row, value in zip(fours, fours, fours, fours, strict=True):
        if row >= 0:
            name = layout.columns[row]
            if name in found or value or n != 8 * layout.rows:
                return None
            found[name] = offset
    return found if "number_of_trades" in found else None


class Scratch:
    """Bytes for a file's columns, reused file after file (a month of 1m: ~4.3 MB copied;
    its times alone, ~0.7 MB, where the other columns are views of the file's map)."""

    def __init__(self) -> None:
        self._data = np.empty(0, np.uint8)

    def of(self, size: int) -> np.ndarray[Any, Any]:
        """At least `size` bytes (what they held before is lost)."""
        if len(self._data) < size:
            # A quarter more: months of 28 to 31 days alike, not grown again (new memory
            # costs page faults: ~2 ms a month of 1m here).
            self._data = np.empty(size + size // 4, np.uint8)
        return self._data

    @property
    def nbytes(self) -> int:
        return len(self._data)


_KEPT_SCRATCH: list[Scratch] = []
_KEPT_LOCK = threading.Lock()
_SCRATCH_KEPT = 4  # at most, each up to `_SCRATCH_BYTES`: four resamples' one at once
_SCRATCH_BYTES = 16 * 2**20  # a day of 1s takes ~8.3 MB


def _forget_lock() -> None:
    """In a forked child: a lock a thread of the parent held then is never released there."""
    global _KEPT_LOCK
    _KEPT_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_lock)


@contextmanager
def scratch(count: int) -> Iterator[list[Scratch]]:
    """`count` scratches, kept for the next read when it is done (a resample's new memory
    otherwise costs its page faults every call)."""
    with _KEPT_LOCK:
        taken = [_KEPT_SCRATCH.pop() for _ in range(min(count, len(_KEPT_SCRATCH)))]
    taken += [Scratch() for _ in range(count - len(taken))]
    try:
        yield taken
    finally:
        with _KEPT_LOCK:
            for each in taken:
                if len(_KEPT_SCRATCH) < _SCRATCH_KEPT and each.nbytes <= _SCRATCH_BYTES:
                    _KEPT_SCRATCH.append(each)


def _dtype(name: str) -> Any:
    return np.int64 if name in _INTS else np.float64


def _read(path: str, new: Callable[[int], dict[str, np.ndarray[Any, Any]]]) -> int | None:
    """Read the file at `path` by its layout into `new(rows)` (column name: an array of the
    file's rows, every column of the store's); return its rows, or None if it has no
    layout."""
    if not _PREADV:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        # The layout is kept under the version opened: a replace since changes nothing here.
        st = os.fstat(fd)
        key = layouts.version(st)
        layout = layouts.get(path, key)
        mapped = None
        if layout is None:
            if not st.st_size:
                return None
            mapped = layouts.map_file(fd)
            layout = _planned(path, key, mapped)
            if layout is None:
                return None
        rows = layout.rows
        arrays = new(rows)
        data = layouts.read_values(layout, arrays, fd, mapped)
        if data is None:
            layouts.drop(path)  # not the bytes it was found in: decode the file
            return None
        return rows if _older_trades(layout, data, arrays) else None
    finally:
        os.close(fd)


def _planned(path: str, key: Any, mapped: pa.Buffer) -> layouts.Layout | None:
    """The layout of a file from its bytes `mapped`, kept under `key`; None if it has none."""
    try:
        metadata = pq.ParquetFile(pa.BufferReader(mapped)).metadata
    except (OSError, pa.ArrowException):  # pyarrow's decode says what is wrong
        return None
    layout = layouts.plan(memoryview(mapped).cast("B"), metadata)
    if layout is not None:
        layouts.put(path, key, layout)
    return layout


def _older_trades(
    layout: layouts.Layout, data: Any, arrays: dict[str, np.ndarray[Any, Any]]
) -> bool:
    """Decode an older file's delta-encoded trades from its bytes `data` into `arrays` (a
    layout places PLAIN trades itself); False if pyarrow reads a damaged header as no values
    (then the file is decoded whole, and pyarrow says what is wrong)."""
    if "number_of_trades" in layout.columns:
        return True
    file = pq.ParquetFile(pa.BufferReader(data))
    trades = file.read(["number_of_trades"], use_threads=False).column(0)
    if len(trades) != layout.rows:
        return False
    arrays["number_of_trades"][:] = trades.cast(pa.int64()).to_numpy()
    return True
