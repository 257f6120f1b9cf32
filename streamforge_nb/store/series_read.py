"""One series' candle frame from its partition files (`CandleStore.load` of one series).

A first read decodes each file into a scratch table, copies its rows into the frame's own
arrays and lets the table go, so the next file's decode reuses that memory: a year of 1m
needs 46 MB of frame, not also 46 MB of decoded tables. In a new process each fresh page is
zeroed by the kernel before use, and that zeroing was most of a first read's CPU; the frame's
arrays come from Arrow's pool, which keeps the pages a dropped frame freed for the next one.

A file as the store writes it is not decoded at all: this thread plans it (`store.pages`:
where its float and trades pages are, its times as runs of one step) and hands it to a
reading thread, which copies the floats and trades from the map and fills the times, while
this thread plans the next file. Planned in the reading threads, the page headers read in
Python held the GIL the other thread's copies waited for. Files written before the trades
were PLAIN (delta-encoded, like the times) have pyarrow decode their trades.

A file's layout (where those pages and runs are) is kept per file version (`store.layouts`),
so a later first read of the file (its decoded table dropped) neither maps it nor reads its
headers here: this thread opens it and hands it over, and the reader reads its floats and
trades into place and its other bytes into an image of the file with one `preadv`, checks
those bytes against the digest the layout keeps (a stale layout is dropped and the load
starts again) and fills the times.

The read cache (`store.scan`) then keeps, per file, an Arrow view of the frame's rows, and
through them the frame itself (the "keeper", never handed out). A later load of rows the
keeper holds (the year again, a month of it) is a slice of it, not a copy.

Why no caller can see another's writes (pandas Copy-on-Write, always on from pandas 3; on
pandas 2 without it a caller gets a copy): a caller gets a new frame sharing the keeper's
arrays. The keeper lives while any view of it does (their buffers own it), and while it
lives pandas copies a block before a caller's write lands in it. Every
frame returned is writable like any pandas frame (`df.iloc[0, 0] = x`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streamforge_nb.exceptions import store_errors
from streamforge_nb.store import layouts, pages, scan
from streamforge_nb.store.frames import COLUMNS, FLOAT_COLUMNS, empty_frame

if TYPE_CHECKING:
    from streamforge_nb.store.local import LocalBackend

__all__ = ["read_frame"]

_FLOATS = [n for n in COLUMNS if n in FLOAT_COLUMNS]  # the float block's rows, frame order
_INTS = ["open_time", "close_time", "number_of_trades"]
# What `store.pages` may find PLAIN in a file, by physical type: every column (the store's
# files), else the floats alone (files written before its ints were PLAIN). Ints first: a
# file of delta ints fails on its first column, before its float pages are read.
_PLAIN_ALL = {**dict.fromkeys(_INTS, "INT64"), **dict.fromkeys(_FLOATS, "DOUBLE")}
_PLAIN_FLOATS = dict.fromkeys(_FLOATS, "DOUBLE")
_BLOCKS = (
    np.array([COLUMNS.index(n) for n in _FLOATS]),
    np.array([COLUMNS.index("close_time")]),
    np.array([COLUMNS.index("number_of_trades")]),
)
_UTC_MS = pd.DatetimeTZDtype("ms", "UTC")
# Where the OS reads into many buffers at once (Linux, the BSDs, macOS): else files are mapped.
_PREADV = hasattr(os, "preadv")
_ROW_BYTES = sum(f.type.bit_width // 8 for f in scan.SCHEMA)  # a row's bytes in a kept view
_PANDAS_3 = int(pd.__version__.split(".", 1)[0]) >= 3


def _shared() -> bool:
    """Whether a frame handed out may share the kept frame's arrays: only with Copy-on-Write
    (always on from pandas 3, an option in 2.x), where a write copies first. Else a copy."""
    return _PANDAS_3 or pd.get_option("mode.copy_on_write") is True


class _Origin(NamedTuple):
    """Where a kept table's rows are in a keeper frame."""

    keeper: pd.DataFrame
    row: int


class _File(NamedTuple):
    path: str
    key: Any  # the file version read (scan._key)
    cut: bool  # the range cuts this partition
    table: pa.Table | None  # decoded already (kept, or a cut partition)
    source: pq.ParquetFile | None  # open, to decode
    mapped: pa.NativeFile | None  # the map `source` reads
    rows: tuple[int, int]  # the rows of the file in range
    layout: layouts.Layout | None  # where its values are, kept from an earlier read
    fd: int  # the file opened (-1: kept decoded), read by `layouts.read_into` if not mapped


class _Stale(Exception):
    """A kept layout that the file's bytes do not match (it is dropped: read them again)."""


def read_frame(
    backend: LocalBackend, symbol: str, interval: str, start_ms: int, end_ms: int
) -> pd.DataFrame:
    """Return the candle frame of `[start_ms, end_ms)` of one series (`LocalBackend.read`)."""
    try:
        return _read_frame(backend, symbol, interval, start_ms, end_ms, by_layouts=True)
    except _Stale:  # read again from every file's headers: this cannot be stale
        return _read_frame(backend, symbol, interval, start_ms, end_ms, by_layouts=False)


def _read_frame(
    backend: LocalBackend, symbol: str, interval: str, start_ms: int, end_ms: int, by_layouts: bool
) -> pd.DataFrame:
    directory = backend.series_dir(symbol, interval)
    where = str(directory)
    with store_errors(f"cannot read {symbol} {interval} candles", where), ExitStack() as stack:
        spanned = scan._spanned(backend, symbol, interval, start_ms, end_ms)
        budget = scan._budget()
        # Each file's identity before it is opened, to find what is kept of it; a file read
        # is kept under the identity of the version opened.
        keys = [scan._key(path) for _, _, path in spanned]
        hits = [
            scan._CACHE.entry(p, k) if budget else None
            for (_, _, p), k in zip(spanned, keys, strict=True)
        ]
        files = []
        for (lo, hi, path), key, hit in zip(spanned, keys, hits, strict=True):
            cut = lo < start_ms or hi > end_ms
            table: pa.Table | None = None if hit is None else hit[0]
            source: pq.ParquetFile | None = None
            mapped: pa.NativeFile | None = None
            layout: layouts.Layout | None = None
            fd = -1
            if table is None:
                fd = os.open(path, os.O_RDONLY)
                try:
                    # Kept under the version opened: a replace since the stat above changes
                    # neither what is read nor its key.
                    key = scan._stat_key(os.fstat(fd))
                    if by_layouts and _PREADV and not cut:
                        layout = layouts.get(path, key)
                    if layout is None:  # mapped (the map holds the file): one fd a file
                        mapped = stack.enter_context(_map_whole(fd))
                finally:
                    if layout is None:
                        os.close(fd)
                        fd = -1
                    else:  # its reader reads it by `fd`, open until the load ends
                        stack.callback(os.close, fd)
            if layout is not None:  # nothing more to do here: its reader reads it
                count = layout.rows
            elif mapped is not None:
                source = pq.ParquetFile(mapped, pre_buffer=False)
                count = source.metadata.num_rows
                if cut:  # its rows in range are known once its times are
                    table = scan.decoded(source)
            else:
                assert table is not None
                count = table.num_rows
            rows = _in_range(table, start_ms, end_ms) if cut else (0, count)
            files.append(_File(path, key, cut, table, source, mapped, rows, layout, fd))
        kept = _kept(files, hits)
        if kept is not None:
            return kept
        frame, arrays = _copied(files)
    if not len(frame) or not budget:
        return frame
    whole = _view(frame, arrays)
    for file, hit, row in zip(files, hits, _offsets(files), strict=True):
        if not file.cut:  # kept as a view of the frame: a later load of it is a slice
            view = whole.slice(row, file.rows[1])
            size = view.num_rows * _ROW_BYTES  # as view.nbytes, without its ~25 us
            scan._CACHE.put(file.path, file.key, view, budget, _Origin(frame, row), size)
        elif hit is None:  # decoded whole for its times: kept as decoded
            scan._CACHE.put(file.path, file.key, file.table, budget)
    return frame.copy(deep=not _shared())


def _bytes(mapped: pa.NativeFile) -> memoryview:
    mapped.seek(0)
    return memoryview(mapped.read_buffer()).cast("B")  # the map itself, no copy


def _map_whole(fd: int) -> pa.NativeFile:
    """Map an open partition file as `scan.mapped` does, for a read of all of it, populated
    at once (`layouts.map_file`: page faults of two reading threads, some with the GIL held,
    serialized on the memory map lock)."""
    if not os.fstat(fd).st_size:  # mmap refuses an empty file; Parquet's reader says why
        return pa.BufferReader(b"")
    return pa.BufferReader(layouts.map_file(fd))


def _in_range(table: pa.Table, start_ms: int, end_ms: int) -> tuple[int, int]:
    times = scan._ms(table.column("open_time"))
    first, last = np.searchsorted(times, [start_ms, end_ms])
    return int(first), int(last)


def _offsets(files: list[_File]) -> list[int]:
    sizes = [f.rows[1] - f.rows[0] for f in files]
    return np.r_[0, np.cumsum(sizes)[:-1]].astype(int).tolist() if files else []


def _kept(files: list[_File], hits: list[tuple[pa.Table, Any] | None]) -> pd.DataFrame | None:
    """A slice of one keeper frame if every file's rows are kept there, in order."""
    if not files or any(h is None or h[1] is None for h in hits):
        return None
    origins: list[_Origin] = [h[1] for h in hits if h is not None]
    keeper = origins[0].keeper
    for origin, hit, after in zip(origins, hits, origins[1:], strict=False):
        assert hit is not None
        if after.keeper is not keeper or origin.row + hit[0].num_rows != after.row:
            return None
    first = origins[0].row + files[0].rows[0]
    last = origins[-1].row + files[-1].rows[1]
    return keeper.iloc[first:last] if _shared() else keeper.iloc[first:last].copy()


def _copied(files: list[_File]) -> tuple[pd.DataFrame, list[np.ndarray[Any, Any]] | None]:
    """A new frame of the files' rows in range, each file decoded (if not yet) and let go,
    and its arrays in `scan.SCHEMA` order if the frame holds them as they are (else None)."""
    offsets = _offsets(files)
    n = offsets[-1] + files[-1].rows[1] - files[-1].rows[0] if files else 0
    if n == 0:
        return empty_frame(), None
    floats = _fresh((len(_FLOATS), n), np.float64)
    open_ms, close_ms, trades = (_fresh((n,), np.int64) for _ in range(3))

    def copy(item: tuple[_File, int, layouts.Layout | None]) -> None:
        file, at, plan = item
        lo, hi = file.rows
        span = slice(at, at + hi - lo)
        ints = [open_ms[span], close_ms[span], trades[span]]
        if plan is not None:
            _planned_into(plan, floats[:, span], ints, file)
            return
        # A file read whole and not decoded yet: its values straight from its bytes where
        # they are PLAIN (`store.pages`): all of them (nothing decoded), or its floats only.
        if file.table is None and _plain_into([*ints, *floats[:, span]], file, _PLAIN_ALL):
            return
        plain = file.table is None and _plain_into(list(floats[:, span]), file, _PLAIN_FLOATS)
        # As read, not cast to `scan.SCHEMA` as a whole (a table's cast costs a year ~1 ms):
        # `_into` casts only a column of another type (files of older versions).
        if file.table is not None:
            table = file.table
        else:
            table = _decoded(file.source, _INTS if plain else None)
        table = table.slice(lo, hi - lo)
        _into(open_ms[span], table, "open_time")
        _into(close_ms[span], table, "close_time")
        _into(trades[span], table, "number_of_trades")
        for row, name in enumerate([] if plain else _FLOATS):
            _into(floats[row, span], table, name)

    # Two files at a time: pyarrow decodes and numpy copies without the GIL; 2 cores.
    items = ((file, at, _plan(file)) for file, at in zip(files, offsets, strict=True))
    if len(files) > 1:
        pool = _readers()
        # Each file planned here (unless its layout is kept), then handed over: the readers
        # copy one while this thread reads the next one's headers. Every reader ends before
        # this returns or raises: the files they read close then, and a retry reopens them.
        futures: list[Future[None]] = []
        try:
            for item in items:
                futures.append(pool.submit(copy, item))
        finally:
            wait(futures)
        for future in futures:
            future.result()
    else:
        copy(next(items))
    # int64 ms as UTC times without a copy (pyarrow's own to_pandas does the same): through
    # a naive datetime64 array pandas copied and converted 8 MB, ~7 ms of a year's read.
    close_time = pd.array(close_ms, dtype=_UTC_MS, copy=False)
    open_time = pd.array(open_ms, dtype=_UTC_MS, copy=False)
    index = pd.DatetimeIndex(open_time, name="open_time", copy=False)
    if not _PANDAS_3:  # no create_dataframe_from_blocks: pandas 2 consolidates (a copy)
        data = {name: floats[row] for row, name in enumerate(_FLOATS)}
        data.update(close_time=close_time, number_of_trades=trades)
        return pd.DataFrame(data, index=index, columns=list(COLUMNS), copy=False), None
    from pandas.api.internals import create_dataframe_from_blocks

    blocks = [(floats, _BLOCKS[0]), (close_time, _BLOCKS[1]), (trades.reshape(1, -1), _BLOCKS[2])]
    frame = create_dataframe_from_blocks(blocks, index=index, columns=pd.Index(COLUMNS))
    rows = dict(zip(_FLOATS, floats, strict=True))
    rows.update(close_time=close_ms, number_of_trades=trades)
    return frame, [open_ms, *(rows[name] for name in COLUMNS)]


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _readers() -> ThreadPoolExecutor:
    """The threads files are read by, started once per process, not per load (two thread
    starts were ~0.3 ms of a year's first load)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(scan._READERS, "streamforge-read")
        return _POOL


def _forget_pool() -> None:
    """In a forked child: the parent's threads (and a lock they held) do not exist there."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _fresh(shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray[Any, Any]:
    """A writable array in Arrow's default pool, not numpy's malloc: the pool keeps the pages
    a dropped frame freed, where malloc hands a year's 46 MB back to the OS and the next
    frame faults them in again (a year of 1m read first in a warm process: ~5 ms CPU of 35;
    in a new process every page is fresh either way)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buffer = pa.allocate_buffer(size)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def _decoded(source: pq.ParquetFile | None, names: list[str] | None = None) -> pa.Table:
    assert source is not None  # a file not decoded yet is open
    return source.read(columns=names, use_threads=False)


def _plain_into(out: Sequence[np.ndarray[Any, Any]], file: _File, columns: dict[str, str]) -> bool:
    """Copy `columns` of `file` (whole, open) into the arrays of `out`, in order, straight
    from the file's bytes, if `store.pages` finds them PLAIN; else copy nothing, False."""
    assert file.source is not None and file.mapped is not None
    file.mapped.seek(0)
    data = file.mapped.read_buffer()  # the map itself, no copy
    spans = pages.plain_spans(memoryview(data), file.source.metadata, columns)
    if spans is None:
        return False
    _copy_spans(out, data, spans)
    return True


def _plan(file: _File) -> layouts.Layout | None:
    """The layout of a file (whole, not decoded yet) if it is as the store writes it (kept,
    or read from its headers here and kept); else None."""
    if file.layout is not None or file.table is not None:
        return file.layout
    if file.source is None or file.mapped is None:
        return None
    layout = layouts.plan(_bytes(file.mapped), file.source.metadata)
    if layout is not None:
        layouts.put(file.path, file.key, layout)
    return layout


def _planned_into(
    plan: layouts.Layout,
    floats: np.ndarray[Any, Any],
    ints: Sequence[np.ndarray[Any, Any]],
    file: _File,
) -> None:
    """Copy `file` by its layout into `floats` (the float block's rows) and `ints` (open
    times, close times, trades): floats and trades copied from the map, times filled (trades
    delta-encoded, in older files: decoded by pyarrow). A file whose layout was kept is not
    mapped: `layouts.read_into` reads its values into place and its other bytes into this
    thread's image of it (where pyarrow finds older files' trades). (Mapped, populating and
    unmapping 12 files took the calling thread ~3 ms of a year's first load, with the GIL
    held for the populating.)"""
    arrays = dict(zip(_FLOATS, floats, strict=True))
    arrays.update(zip(_INTS, ints, strict=True))
    mapped = None
    if file.mapped is not None:
        file.mapped.seek(0)
        mapped = file.mapped.read_buffer()
    data = layouts.read_values(plan, arrays, file.fd, mapped)
    if data is None:
        layouts.drop(file.path)
        raise _Stale(file.path)
    if "number_of_trades" not in plan.columns:  # delta-encoded (older files)
        source = file.source or pq.ParquetFile(pa.BufferReader(data))
        _into(ints[2], _decoded(source, ["number_of_trades"]), "number_of_trades")


def _copy_spans(
    out: Sequence[np.ndarray[Any, Any]], data: pa.Buffer, spans: list[list[tuple[int, int]]]
) -> None:
    """Copy each column's PLAIN values (`spans`: offset and values of its pages in `data`)
    into its array of `out`."""
    for row, found in zip(out, spans, strict=True):
        at = 0
        for offset, values in found:
            row[at : at + values] = np.frombuffer(data, row.dtype, values, offset)
            at += values


def _into(out: np.ndarray[Any, Any], table: pa.Table, name: str) -> None:
    """Copy column `name` of `table` into `out`, cast first if not of `scan.SCHEMA`'s type.
    A column of another length than `out` is refused: pyarrow decoding one column of a
    damaged file gave no values and no error, which left `out` as it was."""
    want = scan.SCHEMA.field(name).type
    column = table.column(name)
    if len(column) != len(out):
        raise pa.ArrowInvalid(f"{name} has {len(column)} values where the file has {len(out)} rows")
    at = 0
    for chunk in column.chunks:
        if chunk.type != want:
            chunk = chunk.cast(want)
        if pa.types.is_timestamp(chunk.type):
            chunk = chunk.view(pa.int64())
        out[at : at + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
        at += len(chunk)


def _columns(keeper: pd.DataFrame) -> list[np.ndarray[Any, Any]]:
    """The arrays of `keeper` in `scan.SCHEMA` order (times as int64), sharing its memory."""
    arrays = [np.asarray(keeper.index.asi8)]
    for name in COLUMNS:
        values = keeper[name].array
        arrays.append(np.asarray(values.asi8 if name == "close_time" else values))
    return arrays


def _view(keeper: pd.DataFrame, columns: list[np.ndarray[Any, Any]] | None) -> pa.Table:
    """`keeper` as an Arrow table of `scan.SCHEMA` sharing its memory (`columns`: its arrays,
    None: taken from it), each file's rows a slice of it (one buffer a column, not one a
    column and file); its buffers own `keeper` and the arrays, so they live while any slice
    does."""
    arrays = []
    for values, field in zip(columns or _columns(keeper), scan.SCHEMA, strict=True):
        # The frame's blocks are these arrays (~0.3 ms less than taking them from it): owned
        # with it all the same, so the slices stay valid even if pandas ever copied them.
        base = (keeper, values)
        buffer = pa.foreign_buffer(values.ctypes.data, values.nbytes, base=base)
        arrays.append(pa.Array.from_buffers(field.type, len(values), [None, buffer]))
    return pa.Table.from_arrays(arrays, schema=scan.SCHEMA)
