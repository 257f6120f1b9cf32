"""Where a partition file's values are, kept per file version: its layout.

A file as the store writes it is read without decoding but for its trades (`series_read`):
its floats are PLAIN pages copied from the file, its times runs of one step filled in place
(`store.pages`). Finding that means reading its footer and page headers in Python, ~0.2 ms a
file with the GIL held, which the threads copying other files wait for. The layout of a file
version never changes (every write replaces a partition with a new file), so it is kept here
under the version's identity (device, inode, size, mtime), as its decoded table is in
`store.scan`, and a later first read of the file hands it to a reading thread at once.

A key is not proof: a partition rewritten within the clock's tick, the same size, on an inode
freed by the write before, has the same one. So a layout also keeps a digest of every byte
its reading looked at (the footer, the time chunks, the float chunks but for their values);
a file whose bytes there differ is read again. The layout is a function of those bytes
alone, so one that matches is the layout reading the file again would give.

Dropping the decoded tables (`scan.clear`) keeps the layouts: they are what a reader knows of
a file's shape, not its values, which are read from the file every time. `clear` drops them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, NamedTuple

import pyarrow.parquet as pq

from streamforge_nb.store import pages

__all__ = ["Layout", "clear", "get", "matches", "planned", "put"]

_KEPT = 8192  # file versions: a year of 1m for 200 symbols is 2,400; each is ~2 KB
_DIGEST = 16  # bytes of blake2b: ~10 us a month's file
_TIMES = ("open_time", "close_time")


class Layout(NamedTuple):
    """A store file's values: its rows, its times as runs (`pages.steady_runs`: open times,
    close times), its floats' PLAIN pages (`pages.plain_spans`, in `columns` order)."""

    rows: int
    runs: list[list[tuple[int, int, int]]]
    spans: list[list[tuple[int, int]]]
    size: int  # of the file
    read: tuple[tuple[int, int], ...]  # (offset, bytes) of what finding it read
    digest: bytes  # of those bytes, in order


def planned(data: memoryview, metadata: pq.FileMetaData, floats: dict[str, str]) -> Layout | None:
    """The layout of a file (`data`: all of its bytes) as the store writes it: `floats`
    (name: physical type) PLAIN, times runs of one step (months without holes); else None."""
    runs = pages.steady_runs(data, metadata, _TIMES)
    spans = None if runs is None else pages.plain_spans(data, metadata, floats)
    if runs is None or spans is None:
        return None
    read = _read(data, metadata, list(floats), spans)
    return Layout(metadata.num_rows, runs, spans, len(data), read, _digest(data, read))


def matches(layout: Layout, data: memoryview) -> bool:
    """Whether `data` (a file's bytes) is what `layout` was found in, where it was read."""
    return len(data) == layout.size and _digest(data, layout.read) == layout.digest


def _read(
    data: memoryview,
    metadata: pq.FileMetaData,
    floats: list[str],
    spans: list[list[tuple[int, int]]],
) -> tuple[tuple[int, int], ...]:
    """The bytes `planned` reads, as (offset, bytes): the footer (and its length and magic),
    the time chunks, and the float chunks but for their values (their page headers)."""
    size = len(data)
    footer = int.from_bytes(data[size - 8 : size - 4], "little")
    read = [(size - 8 - footer, footer + 8)]
    group, names = metadata.row_group(0), metadata.schema.names
    for name in (*_TIMES, *floats):
        chunk = group.column(names.index(name))  # each is there: `pages` found them
        start, end = chunk.data_page_offset, chunk.data_page_offset + chunk.total_compressed_size
        if name in _TIMES:
            read.append((start, end - start))
            continue
        at = start
        for offset, values in spans[floats.index(name)]:
            read.append((at, offset - at))
            at = offset + 8 * values
        read.append((at, end - at))
    return tuple((offset, n) for offset, n in read if n)


def _digest(data: memoryview, read: tuple[tuple[int, int], ...]) -> bytes:
    digest = hashlib.blake2b(digest_size=_DIGEST)
    for offset, n in read:
        digest.update(data[offset : offset + n])
    return digest.digest()


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

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


_LAYOUTS = _Layouts()
get = _LAYOUTS.get
put = _LAYOUTS.put


def clear() -> None:
    """Drop every layout kept (the next read of each file reads its headers again)."""
    _LAYOUTS.clear()
