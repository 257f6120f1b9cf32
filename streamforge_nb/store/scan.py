"""Reads of the embedded store's partition files: each file version decoded once and kept.

Decoding is what a read costs: a year of 1m candles is 12 Parquet files whose decode takes
~2x the CPU of ArcticDB's read of the same rows (zstd files, the format before: ~6x), and a
notebook reads the same series again and again (a cell run again, a month after the year,
a resample after a load). So the decoded Arrow table of each file version stays in memory,
least recently used first out, within `STREAMFORGE_READ_CACHE_MB` (default 512; 0 turns
the cache off).

A file version is its path plus (device, inode, size, mtime ns), as `footers` keys footers:
every write replaces a partition with a new file (`os.replace`), so a replaced partition is
a miss and read again. The identity is taken BEFORE the file is opened: a file replaced in
between is kept under the old identity, which no later `stat` matches, so a stale table is
never served. Tables are immutable. A one-series pandas load (`store.series_read`) keeps
views of the frame it built instead of the decoded tables.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamforge_nb.exceptions import ConfigError, store_errors
from streamforge_nb.store import layouts, planned_read
from streamforge_nb.store.frames import COLUMNS

if TYPE_CHECKING:
    import pyarrow.dataset as ds

    from streamforge_nb.store.local import LocalBackend

__all__ = [
    "SCHEMA", "cache_bytes", "clear", "column_chunks", "concat_numpy", "decoded", "file_arrays",
    "read_table",
]  # fmt: skip

TS = pa.timestamp("ms", tz="UTC")


def _field(name: str) -> pa.Field:
    if name == "close_time":
        return pa.field(name, TS)
    return pa.field(name, pa.int64() if name == "number_of_trades" else pa.float64())


# The columns of a partition file as every read returns them, as the writer stores them
# (`store.local` writes with it and imports this module; this one names it only in types).
SCHEMA = pa.schema([pa.field("open_time", TS), *map(_field, COLUMNS)])

_ENV = "STREAMFORGE_READ_CACHE_MB"
_READERS = 2  # files decoded at once on a miss: pyarrow decodes without the GIL; 2 cores
_MAX_OPEN = 256  # files `column_chunks` holds open at once (the rest are read whole)

_Key = tuple[int, int, int, int]  # device, inode, size, mtime ns


class _Cache:
    """Decoded tables per path and file version, least recently used first. A table may be
    a view of a frame `series_read` built (its `origin`: that frame and the table's first row
    in it), so a load of the same rows can hand out the frame again instead of a copy."""

    def __init__(self) -> None:
        self._tables: OrderedDict[str, tuple[_Key, pa.Table, Any]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: str, key: _Key) -> pa.Table | None:
        hit = self.entry(path, key)
        return None if hit is None else hit[0]

    def entry(self, path: str, key: _Key) -> tuple[pa.Table, Any] | None:
        """The table kept of this file version and its origin (None: decoded on its own)."""
        with self._lock:
            hit = self._tables.get(path)
            if hit is None or hit[0] != key:
                return None
            self._tables.move_to_end(path)
            return hit[1], hit[2]

    def put(
        self,
        path: str,
        key: _Key,
        table: pa.Table,
        budget: int,
        origin: Any = None,
        size: int | None = None,
    ) -> None:
        """Keep `table` (of `size` bytes if the caller knows: `nbytes` of a slice takes ~25 us)."""
        size = table.nbytes if size is None else size
        with self._lock:
            old = self._tables.pop(path, None)
            if old is not None:
                self._bytes -= old[1].nbytes
            if size > budget:
                return
            self._tables[path] = (key, table, origin)
            self._bytes += size
            while self._bytes > budget:
                _, (_, dropped, _) = self._tables.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes


_CACHE = _Cache()


def clear() -> None:
    """Drop every decoded table kept (the files are untouched)."""
    _CACHE.clear()


def cache_bytes() -> int:
    """Return the bytes of decoded tables kept now."""
    return _CACHE.nbytes


def _budget() -> int:
    raw = os.environ.get(_ENV, "").strip()
    if not raw:
        return 512 * 2**20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise ConfigError(f"{_ENV} must be a number of megabytes >= 0 (0: no cache), got {raw!r}")
    return int(mb * 2**20)


def _key(path: str) -> _Key:
    return _stat_key(os.stat(path))


def _stat_key(st: os.stat_result) -> _Key:
    return layouts.version(st)


def _pool() -> pa.MemoryPool:
    """jemalloc where pyarrow has it: a column decoded there reuses the buffers the last one
    freed (`column_chunks`; in the default mimalloc pool a long load of 50 symbols peaked
    at 1.6x its frame, not 1.3x)."""
    try:
        return pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError):  # a build without it
        return pa.default_memory_pool()


@functools.cache
def _parquet_format() -> ds.ParquetFileFormat:
    # Imported on first use: pyarrow.dataset imports pandas (~0.2 s), which a sink never needs.
    import pyarrow.dataset as ds

    return ds.ParquetFileFormat()


def _decode(path: str, names: Sequence[str] | None) -> pa.Table:
    # A whole file as the store writes it is read by its layout, not decoded (~2 ms CPU a
    # month of 1m less in a 50-series resample); any other file is decoded by pyarrow.
    if names is None and (table := planned_read.read_table(path, SCHEMA)) is not None:
        return table
    return _pyarrow_decode(path, names)


def _pyarrow_decode(path: str, names: Sequence[str] | None) -> pa.Table:
    # One map opened here: a file replaced meanwhile stays readable through it (POSIX
    # keeps the old inode). The files hold one thread's work each; several decode at once.
    # ParquetFile, not a dataset fragment: 30% less CPU a year (its scanner's overhead).
    with mapped(path) as source:
        return decoded(pq.ParquetFile(source, pre_buffer=False), names)


def mapped(path: str) -> pa.MemoryMappedFile:
    """Open a partition file as a memory map: its pages are decoded from the page cache where
    they are, not first read into fresh buffers (a year of 1m read first in a new process:
    ~10 ms less CPU of ~55). A partition is replaced by a rename, never rewritten in place,
    so a mapped file does not change under a reader (a file rewritten in place by another
    tool while mapped could crash the reading process: SIGBUS)."""
    return pa.memory_map(path, "r")


def decoded(file: pq.ParquetFile, names: Sequence[str] | None = None) -> pa.Table:
    """Decode `names` (None: every column) of an open partition file, as `SCHEMA` types them."""
    table = file.read(columns=None if names is None else list(names), use_threads=False)
    schema = SCHEMA if names is None else pa.schema([SCHEMA.field(n) for n in names])
    return table.select(schema.names).cast(schema)


def _tables(
    files: list[tuple[int, int, str]], start_ms: int, end_ms: int, names: Sequence[str] | None
) -> list[pa.Table]:
    """The rows of `files` ((start, end, path) of partitions, by time) in `[start_ms, end_ms)`,
    one table per file: `names` only (None: every column)."""
    return list(_table_stream(files, start_ms, end_ms, names))


def _table_stream(
    files: list[tuple[int, int, str]], start_ms: int, end_ms: int, names: Sequence[str] | None
) -> Iterator[pa.Table]:
    """`_tables`, each file's table given as soon as it and those before it are read: the
    files not kept are decoded two at a time meanwhile (pyarrow decodes without the GIL)."""
    budget = _budget()
    found: list[pa.Table | None] = []
    misses: list[tuple[int, str, _Key]] = []
    for i, (_, _, path) in enumerate(files):
        key = _key(path)
        table = _CACHE.get(path, key) if budget else None
        found.append(table if table is None or names is None else table.select(list(names)))
        if table is None:
            misses.append((i, path, key))
    # A subset of columns is read as such (column pushdown), and kept only as a whole file.
    keep = budget > 0 and names is None

    def miss(item: tuple[int, str, _Key]) -> pa.Table:
        _, path, key = item
        table = _decode(path, names)
        if keep:
            _CACHE.put(path, key, table, budget)
        return table

    with ExitStack() as stack:
        if len(misses) > 1:
            pool = stack.enter_context(ThreadPoolExecutor(min(_READERS, len(misses))))
            # Cancelled if the reader stops early (an error): none left running for it.
            futures = {m[0]: pool.submit(miss, m) for m in misses}
            stack.callback(lambda: [f.cancel() for f in futures.values()])
        else:
            futures = {}
            for m in misses:
                found[m[0]] = miss(m)
        for i, (lo, hi, _) in enumerate(files):
            table = found[i] if i not in futures else futures[i].result()
            assert table is not None
            if lo < start_ms or hi > end_ms:  # a partition the range cuts
                t = _ms(table.column("open_time"))
                first, last = np.searchsorted(t, [start_ms, end_ms])
                table = table.slice(int(first), int(last - first))
            yield table


def file_arrays(
    files: list[tuple[int, int, str]], start_ms: int, end_ms: int
) -> Iterator[dict[str, np.ndarray[Any, Any]]]:
    """Each of `files`' rows in `[start_ms, end_ms)` as arrays of every column (times as int64
    ms), for a read that keeps nothing of its own (a resample), each valid until the next is
    asked for: a file's kept table where there is one, else the file's map by its layout
    (`planned_read.mapped_arrays`: its columns views of the map where each is one page, as
    the store writes a partition, else copied into scratch), else decoded (and kept, as
    `_tables` does).

    All in the caller's thread. With the next two files read ahead in threads (as before the
    views), a year of 1m to 1h as views took 17-22 ms against 12-13 (three rounds,
    `/tmp/rsync2.py`): each unmap then stops both cores (the process's map is shared), and
    each of the caller's small numpy calls handed the GIL over. Files of a column in pages
    (the format before), copied into scratch, take 17-21 ms against 16-21 read ahead."""
    budget = _budget()
    with planned_read.scratch(1) as (scratch,):
        for lo, hi, path in files:
            key = _key(path)
            table = _CACHE.get(path, key) if budget else None
            arrays = None
            if table is None:
                arrays = planned_read.mapped_arrays(path, SCHEMA, scratch)
                if arrays is None:
                    table = _pyarrow_decode(path, None)  # no layout: `mapped_arrays` looked
                    if budget:
                        _CACHE.put(path, key, table, budget)
            if arrays is None:
                assert table is not None
                arrays = {
                    name: _ms(column) if pa.types.is_timestamp(column.type) else column.to_numpy()
                    for name, column in zip(table.column_names, table.columns, strict=True)
                }
            if lo < start_ms or hi > end_ms:  # a partition the range cuts
                first, last = np.searchsorted(arrays["open_time"], [start_ms, end_ms])
                arrays = {name: values[first:last] for name, values in arrays.items()}
            yield arrays


def _ms(column: pa.ChunkedArray | pa.Array) -> np.ndarray[Any, Any]:
    if column.type != _MS or not isinstance(column, pa.Array):
        return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)
    # A time in ms is its int64 as it is (a view; a cast costs ~30 us a column in pyarrow).
    return np.asarray(column.view(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _spanned(
    backend: LocalBackend, symbol: str, interval: str, start_ms: int, end_ms: int
) -> list[tuple[int, int, str]]:
    parts = backend._partitions(symbol, interval)
    return [(lo, hi, str(p)) for lo, hi, p in parts if hi > start_ms and lo < end_ms]


def column_chunks(
    backend: LocalBackend,
    series: Sequence[tuple[str, str]],
    start_ms: int,
    end_ms: int,
    names: Sequence[str],
) -> Iterator[tuple[pa.Field, list[list[pa.Array]]]]:
    """Yield `open_time`, then each of `names`, of `[start_ms, end_ms)`: per series, its chunks.

    A file the read cache keeps gives its decoded table's column; any other is read one
    column at a time, not kept. A caller that copies each column and drops it before asking
    for the next never holds all the files decoded (the next column's decode reuses their
    freed buffers): a long pandas frame of 50 symbols x a month peaked at 2x its size.
    Every file is opened before the first column is read, so all of a file's columns come
    from the version opened, even if a writer replaces it meanwhile."""
    budget = _budget()
    fields = [SCHEMA.field("open_time"), *(SCHEMA.field(n) for n in names)]
    where = str(backend.root / "candles")
    with store_errors("cannot read candles", where), ExitStack() as stack:
        parts: list[tuple[int, pa.Table | ds.Fragment, bool]] = []  # series, source, cut
        for i, (sym, iv) in enumerate(series):
            for lo, hi, path in _spanned(backend, sym, iv, start_ms, end_ms):
                table = _CACHE.get(path, _key(path)) if budget else None
                if table is None and len(parts) < _MAX_OPEN:
                    source: pa.Table | ds.Fragment = _parquet_format().make_fragment(
                        stack.enter_context(pa.OSFile(path, "rb"))
                    )
                else:  # cached, or more files than are held open: read whole, as _tables
                    source = table if table is not None else _decode(path, None)
                parts.append((i, source, lo < start_ms or hi > end_ms))
        bounds: dict[int, tuple[int, int]] = {}

        def read(j: int, field: pa.Field) -> pa.ChunkedArray:
            _, source, cut = parts[j]
            if isinstance(source, pa.Table):
                column = source.column(field.name)
            else:
                # Into jemalloc: the next column's decode reuses the buffers this one
                # freed (with ParquetFile's pool the peak was 1.6x the frame, not 1.3x).
                got = source.to_table(columns=[field.name], memory_pool=_pool())
                column = got.column(0).cast(field.type)
            if cut:  # a partition the range cuts: its rows in range, found by open time
                if field.name == "open_time":
                    first, last = np.searchsorted(_ms(column), [start_ms, end_ms])
                    bounds[j] = (int(first), int(last - first))
                column = column.slice(*bounds[j])
            return column

        with ThreadPoolExecutor(_READERS) as pool:
            for field in fields:
                columns = list(pool.map(lambda j, f=field: read(j, f), range(len(parts))))
                per: list[list[pa.Array]] = [[] for _ in series]
                for (i, _, _), column in zip(parts, columns, strict=True):
                    per[i].extend(column.chunks)
                del columns
                yield field, per


def concat_numpy(
    chunks: Sequence[pa.Array], pool: pa.MemoryPool | None = None
) -> np.ndarray[Any, Any]:
    """Copy numeric `chunks` (at least one, no nulls) into one writable numpy array, in a
    buffer of `pool` (None: the pool files are decoded into, which holds freed decoded
    buffers to reuse)."""
    parts = [c.to_numpy(zero_copy_only=False) for c in chunks]
    # Into a writable buffer of Arrow's pool (it keeps freed pages): numpy's malloc gives a
    # year's 46 MB back to the OS after each frame, and faulting it in again took longer
    # than the copy itself.
    size = sum(len(p) for p in parts)
    buffer = pa.allocate_buffer(size * parts[0].itemsize, memory_pool=pool or _pool())
    return np.concatenate(parts, out=np.frombuffer(buffer, dtype=parts[0].dtype))


def read_table(
    backend: LocalBackend,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int,
    fields: Sequence[str],
) -> pa.Table:
    """Read `open_time` and `fields` of `[start_ms, end_ms)` of one series (pushdown)."""
    names = ["open_time", *fields]
    directory = backend.series_dir(symbol, interval)
    with store_errors(f"cannot read {symbol} {interval} candles", str(directory)):
        files = _spanned(backend, symbol, interval, start_ms, end_ms)
        every = list(fields) == SCHEMA.names[1:]
        tables = _tables(files, start_ms, end_ms, None if every else names)
    if not tables:
        return pa.schema([SCHEMA.field(n) for n in names]).empty_table()
    return pa.concat_tables(tables)


_MS = pa.timestamp("ms", tz="UTC")
