"""Where a partition file's values are, kept per file version: its layout.

A file as the store writes it is read without decoding (`series_read`): its floats and
trades are PLAIN pages copied from the file, its times runs of one step filled in place
(`store.pages`). Finding that means reading its footer and page headers in Python, ~0.2 ms a
file with the GIL held, which the threads copying other files wait for. The layout of a file
version never changes (every write replaces a partition with a new file), so it is kept here
under the version's identity (device, inode, size, mtime), as its decoded table is in
`store.scan`. A later first read of the file hands it to a reading thread at once, which
reads it by its layout (`read_into`): its PLAIN values straight into the frame and its other
bytes into an image of the file, with one `preadv` (Linux, the BSDs, macOS), so it is neither
mapped, populated nor unmapped; its times are filled (`fill`). (Older files' trades are
delta-encoded: pyarrow decodes them from the image.)

A key is not proof: a partition rewritten within the clock's tick, the same size, on an inode
freed by the write before, has the same one. So a layout also keeps a digest of every byte
finding it looked at (the footer, the time chunks, the PLAIN chunks but for their values),
and `read_into` checks the bytes it read there: a file that differs is read again from its
bytes. The layout is a function of those bytes alone, so one that matches is the layout
reading the file's headers again would give.

Dropping the decoded tables (`scan.clear`) keeps the layouts: they are what a reader knows of
a file's shape, not its values, which are read from the file every time. `clear` drops them.
"""

from __future__ import annotations

import bisect
import hashlib
import mmap
import os
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamforge_nb.store import pages
from streamforge_nb.store.frames import COLUMNS, FLOAT_COLUMNS

__all__ = [
    "Layout", "clear", "drop", "fill", "get", "image", "map_file", "matches", "plan", "planned",
    "put", "read_into", "read_values", "version",
]  # fmt: skip

# File versions kept: a year of 1m for 200 symbols is 2,400. A month's layout takes ~3.5 KB
# (measured with tracemalloc), so at most ~14 MB.
_KEPT = 4096
_DIGEST = 16  # bytes of blake2b: ~10 us a month's file
_TIMES = ("open_time", "close_time")
_IOV = 512  # buffers a `preadv` (IOV_MAX is 1024 on Linux)


class Layout(NamedTuple):
    """A store file's values: its rows, its times as runs (`pages.steady_runs`: open times,
    close times), where its bytes and its PLAIN values are (`segments`)."""

    rows: int
    columns: tuple[str, ...]  # placed from the file, in `segments`' row order
    runs: list[list[tuple[int, int, int]]]
    size: int  # of the file
    # Flat int64s, not tuples (with tuples a month's layout took ~13 KB, not ~3.5):
    read: array[int]  # (offset, bytes) pairs of what finding it read
    digest: bytes  # of those bytes, in order
    # The file from its first column chunk on, in order, as (offset, bytes, column, value)
    # fours: a PLAIN column's values (its index in `columns`, its first value) or other
    # bytes (-1).
    segments: array[int]


def planned(data: memoryview, metadata: pq.FileMetaData, plain: dict[str, str]) -> Layout | None:
    """The layout of a file (`data`: all of its bytes) as the store writes it: `plain`
    (name: physical type) PLAIN, times runs of one step (months without holes); else None."""
    runs = pages.steady_runs(data, metadata, _TIMES)
    spans = None if runs is None else pages.plain_spans(data, metadata, plain)
    if runs is None or spans is None:
        return None
    read = _read(data, metadata, list(plain), spans)
    segments = _segments(spans, read, len(data))
    if segments is None:
        return None
    digest = _digest(data, read)
    return Layout(
        metadata.num_rows, tuple(plain), runs, len(data), _flat(read), digest, _flat(segments)
    )


_PLAIN_FLOATS = {name: "DOUBLE" for name in COLUMNS if name in FLOAT_COLUMNS}
# A layout places the trades too where they are PLAIN (the store's files; older ones have
# them delta-encoded, and pyarrow decodes them). Trades first: an older file fails on them.
_PLAIN_WAYS = ({"number_of_trades": "INT64", **_PLAIN_FLOATS}, _PLAIN_FLOATS)


def plan(data: memoryview, metadata: pq.FileMetaData) -> Layout | None:
    """The layout of a file as the store writes it (`planned`: its floats PLAIN, its trades
    too if they are), or None."""
    for plain in _PLAIN_WAYS:
        layout = planned(data, metadata, plain)
        if layout is not None:
            return layout
    return None


def map_file(fd: int) -> pa.Buffer:
    """An open file of some bytes, mapped and populated as it is made (MAP_POPULATE: one
    call maps every page; a cold file is read whole). Touched a page at a time instead, the
    faults of two reading threads serialized on the process's memory map lock. The map stays
    while the buffer or any buffer read from it lives."""
    populate = getattr(mmap, "MAP_POPULATE", 0)  # Linux; elsewhere pages fault in
    region = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ)
    return pa.py_buffer(region)


def read_values(
    layout: Layout, arrays: Mapping[str, np.ndarray[Any, Any]], fd: int, mapped: Any
) -> Any:
    """Read a file by `layout` into `arrays` (column name: the file's rows of it, 8-byte
    values): its PLAIN columns copied from `mapped` (its map, if mapped) or read by
    `read_into` from `fd`, its times filled. Return the file's bytes as read (its map, or
    this thread's image of it: where pyarrow finds an older file's trades), or None if they
    are not the bytes the layout was found in (then drop it and read the file again)."""
    placed = [arrays[name] for name in layout.columns]
    if mapped is not None:
        copy_from(mapped, layout, placed)
        data = mapped
    else:
        image_ = image(layout.size)
        if not read_into(fd, layout, placed, image_):
            return None
        data = pa.py_buffer(image_[: layout.size])
    for name, runs in zip(_TIMES, layout.runs, strict=True):
        fill(arrays[name], runs)
    return data


def copy_from(data: Any, layout: Layout, rows: Sequence[np.ndarray[Any, Any]]) -> None:
    """Copy the PLAIN values of a file's bytes `data` (its map) into `rows` (one array of
    8-byte values a column of `layout.columns`, in order) by `layout`."""
    fours = iter(layout.segments)
    for offset, n, row, value in zip(fours, fours, fours, fours, strict=True):
        if row >= 0:
            out = rows[row]
            out[value : value + n // 8] = np.frombuffer(data, out.dtype, n // 8, offset)


def matches(layout: Layout, data: Any) -> bool:
    """Whether a file's bytes `data` (its map) are those `layout` was found in."""
    if len(data) != layout.size:
        return False
    pairs = iter(layout.read)
    return _digest(memoryview(data).cast("B"), zip(pairs, pairs, strict=True)) == layout.digest


def read_into(fd: int, layout: Layout, rows: Sequence[np.ndarray[Any, Any]], image: Any) -> bool:
    """Read the file `fd` by `layout`: its PLAIN values straight into `rows` (the frame's
    arrays of this file, in `layout.columns`' order), every other byte into `image` (a
    writable buffer of at least the file's size) at its offset, with `preadv` (no map to
    make, fill or unmap); return whether the bytes `layout` was found in are the same (if
    not, `rows` hold whatever the file has there)."""
    out = [row.data.cast("B") for row in rows]
    place = memoryview(image).cast("B")
    fours = iter(layout.segments)
    buffers = [
        place[offset : offset + n] if row < 0 else out[row][8 * value : 8 * value + n]
        for offset, n, row, value in zip(fours, fours, fours, fours, strict=True)
    ]
    at = layout.segments[0] if layout.segments else layout.size
    for first in range(0, len(buffers), _IOV):
        part = buffers[first : first + _IOV]
        want = sum(len(b) for b in part)
        if os.preadv(fd, part, at) != want:  # the file is shorter than the layout's
            return False
        at += want
    pairs = iter(layout.read)
    return at == layout.size and _digest(place, zip(pairs, pairs, strict=True)) == layout.digest


def _flat(items: tuple[tuple[int, ...], ...]) -> array[int]:
    return array("q", (value for item in items for value in item))


def _segments(
    spans: list[list[tuple[int, int]]], read: tuple[tuple[int, int], ...], size: int
) -> tuple[tuple[int, int, int, int], ...] | None:
    """`Layout.segments` of a file of `size` bytes, or None if its PLAIN values overlap one
    another or what finding the layout read (a damaged footer's column chunks): one read
    in file order cannot place such bytes twice. Such a file is mapped and copied page by
    page, each from its own offset, as pyarrow reads it."""
    pages = []
    for row, found in enumerate(spans):
        value = 0
        for offset, values in found:
            pages.append((offset, 8 * values, row, value))
            value += values
    pages.sort()
    segments, at = [], min(offset for offset, _ in read)
    for offset, n, row, value in pages:
        if offset < at:
            return None
        if offset > at:
            segments.append((at, offset - at, -1, 0))
        segments.append((offset, n, row, value))
        at = offset + n
    if at > size:
        return None
    if size > at:
        segments.append((at, size - at, -1, 0))
    starts = [offset for offset, *_ in segments]
    for offset, n in read:  # each inside one segment of other bytes, not a column's values
        i = bisect.bisect_right(starts, offset) - 1
        if i < 0 or segments[i][2] >= 0 or offset + n > starts[i] + segments[i][1]:
            return None
    return tuple(segments)


def _read(
    data: memoryview,
    metadata: pq.FileMetaData,
    plain: list[str],
    spans: list[list[tuple[int, int]]],
) -> tuple[tuple[int, int], ...]:
    """The bytes `planned` reads, as (offset, bytes): the footer (and its length and magic),
    the time chunks, and the PLAIN chunks but for their values (their page headers)."""
    size = len(data)
    footer = int.from_bytes(data[size - 8 : size - 4], "little")
    read = [(size - 8 - footer, footer + 8)]
    group, names = metadata.row_group(0), metadata.schema.names
    for name in (*_TIMES, *plain):
        chunk = group.column(names.index(name))  # each is there: `pages` found them
        start, end = chunk.data_page_offset, chunk.data_page_offset + chunk.total_compressed_size
        if name in _TIMES:
            read.append((start, end - start))
            continue
        at = start
        for offset, values in spans[plain.index(name)]:
            read.append((at, offset - at))
            at = offset + 8 * values
        read.append((at, end - at))
    return tuple((offset, n) for offset, n in read if n)


def _digest(data: memoryview, read: Iterable[tuple[int, int]]) -> bytes:
    digest = hashlib.blake2b(digest_size=_DIGEST)
    for offset, n in read:
        digest.update(data[offset : offset + n])
    return digest.digest()


_IMAGES = threading.local()
_IMAGE_KEPT = 16 * 2**20  # bytes of a reading thread's image kept for its next file


def image(size: int) -> np.ndarray[Any, Any]:
    """A writable buffer of at least `size` bytes, this thread's own: a month of 1m is ~3 MB,
    kept for the next file (only the pages written are ever touched)."""
    image: np.ndarray[Any, Any] | None = getattr(_IMAGES, "image", None)
    if image is None or len(image) < size:
        image = np.empty(size, dtype=np.uint8)
        if size <= _IMAGE_KEPT:
            _IMAGES.image = image
    return image


def fill(out: np.ndarray[Any, Any], runs: list[tuple[int, int, int]]) -> None:
    """Write each run's `first + step * i` into `out`, one after another."""
    at = 0
    for first, step, values in runs:
        # In int64: wrapping in between is exact, as every value is in range (store.pages).
        np.add(_ramp(step, values), first, out=out[at : at + values])
        at += values


_RAMPS: dict[int, np.ndarray[Any, Any]] = {}
_RAMPS_KEPT = 8  # steps kept: a store's intervals and their close-time runs


def _ramp(step: int, values: int) -> np.ndarray[Any, Any]:
    """0, step, ... step * (values - 1) as int64 (wrapping), one array kept per step and
    never written: a fill is then one pass over the frame, not two (arange, then add)."""
    ramp = _RAMPS.get(step)
    if ramp is None or len(ramp) < values:
        ramp = np.arange(max(values, 0 if ramp is None else 2 * len(ramp)), dtype=np.int64)
        ramp *= step  # wraps as int64 arithmetic does; each value is then exact mod 2**64
        ramp.flags.writeable = False
        if len(_RAMPS) >= _RAMPS_KEPT:
            _RAMPS.clear()
        _RAMPS[step] = ramp
    return ramp[:values]


def version(st: os.stat_result) -> tuple[int, int, int, int]:
    """A file version's identity (device, inode, size, mtime ns): what layouts, and the read
    cache's tables (`store.scan`), are kept under."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _Layouts:
    """Layouts per path and file version, least recently used first."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, tuple[Any, Layout]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, key: Any) -> Layout | None:
        with self._lock:
            hit = self._kept.get(path)
            if hit is None or hit[0] != key:
                return None
            self._kept.move_to_end(path)
            return hit[1]

    def put(self, path: str, key: Any, layout: Layout) -> None:
        with self._lock:
            self._kept.pop(path, None)
            self._kept[path] = (key, layout)
            while len(self._kept) > _KEPT:
                self._kept.popitem(last=False)

    def drop(self, path: str) -> None:
        with self._lock:
            self._kept.pop(path, None)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


_LAYOUTS = _Layouts()
get = _LAYOUTS.get
put = _LAYOUTS.put
drop = _LAYOUTS.drop


def clear() -> None:
    """Drop every layout kept (the next read of each file reads its headers again)."""
    _LAYOUTS.clear()
