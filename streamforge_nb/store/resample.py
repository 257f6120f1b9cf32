"""Candles of many series aggregated to a longer interval over the partitions
(`query.resample_many`'s result where each partition is one file): one sorted pass per
series, each file aggregated as it is read (`scan.file_arrays`: the store's files as views
of their maps) where no longer candle spans two files. One series whose files the read
cache keeps (a `load` of it ran) is aggregated from them at once.

Sums are added in time order from 0.0 (`_Sums`), as DuckDB adds them: the result
is bit for bit the SQL path's (tests/test_store_read.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from streamforge_nb.exceptions import store_errors
from streamforge_nb.store.scan import (
    _CACHE,
    _READERS,
    SCHEMA,
    _budget,
    _key,
    _ms,
    _spanned,
    file_arrays,
    read_table,
)
from streamforge_nb.store.series_read import read_frame

if TYPE_CHECKING:
    from streamforge_nb.store.local import LocalBackend

__all__ = ["resample"]

# How each field of a longer candle comes from its candles (as `query._AGG` in DuckDB).
_FIRST, _LAST, _MAX, _MIN = ("open",), ("close",), ("high", "close_time"), ("low",)
_TIMES = ("open_time", "close_time")


def resample(
    backend: LocalBackend, series: list[tuple[str, str]], rule: str, span: tuple[int, int]
) -> pa.Table:
    """Aggregate each series' candles in `span` to `rule` candles: one sorted pass per series
    over the decoded tables (`query.resample_many`'s result, where each partition is one file).

    Rows by symbol, then open time: symbol, open_time, the candle fields, `candles` (merged).
    """
    from streamforge_nb.platform.intervals import WEEK_OFFSET_MS, interval_ms

    step = interval_ms(rule)
    offset = WEEK_OFFSET_MS if rule == "1w" else 0
    # Slots that never span two partition files: calendar months, or a step dividing a day
    # (partitions are days, months or years, each beginning at a UTC midnight).
    aligned = step is None or (not offset and _DAY_MS % step == 0)

    def slots_of(times: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if step is None:  # calendar months
            months = times.view("M8[ms]").astype("M8[M]").astype("M8[ms]")
            return np.asarray(months.view(np.int64))
        slots: np.ndarray[Any, Any] = times - (times - offset) % step  # % floors, as the SQL
        return slots

    def groups(times: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Each non-empty slot of sorted `times` and its first row: found by binary search of
        the slots' bounds, not a slot computed per row (a year of 1m to 1h: 8,760 searches
        instead of 525,600 divisions)."""
        first, last = slots_of(times[[0, -1]]).tolist()
        if step is None:
            lo, hi = (np.datetime64(t, "ms").astype("M8[M]") for t in (first, last))
            months = np.arange(lo, hi + 1)
            bounds = months.astype("M8[ms]").view(np.int64)
        elif (last - first) // step < len(times):
            bounds = np.arange(first, last + 1, step, dtype=np.int64)
            k, extra = divmod(len(times), len(bounds))
            if not extra and np.array_equal(times[::k], bounds):
                # Each slot's first candle at its start, k apart (times rise): every slot
                # holds k candles, a grid without holes. No search (~0.1 ms a month of 1m).
                return bounds, np.arange(0, len(times), k)
        else:  # fewer rows than slots: per row
            slots = slots_of(times)
            starts = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
            return slots[starts], starts
        at = np.searchsorted(times, bounds)
        filled = at < np.r_[at[1:], len(times)]
        return bounds[filled], at[filled]

    def spanning(sym: str, iv: str) -> list[_Part]:
        """A series whose longer candles may span two files (weeks across a month's end):
        its decoded files aggregated one by one unless one does."""
        table = read_table(backend, sym, iv, span[0], span[1], SCHEMA.names[1:])
        batches = [b for b in table.to_batches() if b.num_rows]
        if not batches:
            return []
        edges = [int(slots_of(_ms(b.column(0))[[0, -1]])[k]) for b in batches for k in (0, 1)]
        if any(edges[i] == edges[i + 1] for i in range(1, len(edges) - 1, 2)):
            batches = table.combine_chunks().to_batches()
        return [aggregate(sym, b) for b in batches]

    def files_of(sym: str, iv: str) -> list[tuple[int, int, str]]:
        with store_errors(f"cannot read {sym} {iv} candles", str(backend.series_dir(sym, iv))):
            return _spanned(backend, sym, iv, span[0], span[1])

    def by_file(items: list[tuple[str, str, tuple[int, int, str]]]) -> Iterator[_Part]:
        """Each file's candles aggregated as soon as it is read (`scan.file_arrays`: views
        of its map or scratch, nothing kept): no slot of `rule` spans two partitions (all
        begin at a UTC midnight)."""
        read = file_arrays([file for *_, file in items], span[0], span[1])
        for sym, iv, file in items:
            with store_errors(f"cannot read {sym} {iv} candles", file[2]):
                arrays = next(read)
            if len(arrays["open_time"]):
                yield aggregate_values(sym, arrays["open_time"], arrays.__getitem__)

    def whole(sym: str, iv: str) -> list[_Part]:
        """One series whose files the read cache keeps, read as `load` reads it (a slice of
        the frame kept) and aggregated in one pass: each column one numpy call or a few,
        not a few for each file."""
        frame = read_frame(backend, sym, iv, *span)
        if not len(frame):
            return []
        times = np.asarray(frame.index.asi8)

        def values(name: str) -> np.ndarray[Any, Any]:
            array = frame[name].array
            return np.asarray(array.asi8 if name == "close_time" else array)

        return [aggregate_values(sym, times, values)]

    def aggregate(sym: str, batch: pa.RecordBatch) -> _Part:
        def values(name: str) -> np.ndarray[Any, Any]:
            column = batch.column(name)
            if pa.types.is_timestamp(column.type):
                column = column.view(pa.int64())
            return np.asarray(column.to_numpy(zero_copy_only=False))

        return aggregate_values(sym, _ms(batch.column(0)), values)

    def aggregate_values(
        sym: str, times: np.ndarray[Any, Any], values_of: Callable[[str], np.ndarray[Any, Any]]
    ) -> _Part:
        """`sym`'s candles at sorted `times` aggregated: each column of the result by name
        (times in ms), and the candles merged into each."""
        slots, starts = groups(times)
        ends = np.r_[starts[1:], len(times)]
        sums = _Sums(starts, ends)
        out = {"open_time": slots}
        for name in SCHEMA.names[1:]:
            values = values_of(name)
            if name in _FIRST:
                got = values[starts]
            elif name in _LAST:
                got = values[ends - 1]
            elif name in _MAX:
                got = np.maximum.reduceat(values, starts)
            elif name in _MIN:
                got = np.minimum.reduceat(values, starts)
            elif values.dtype.kind == "f":  # added in time order one by one, as DuckDB's sum
                got = sums(values)
            else:
                got = np.add.reduceat(values, starts)
            out[name] = got
        out["candles"] = (ends - starts).astype(np.int64, copy=False)
        return sym, out

    order = sorted(series)  # by symbol, as the SQL orders
    if len(order) == 1 and _kept(backend, *order[0], span):
        parts = whole(*order[0])
    elif aligned:
        parts = list(by_file([(*item, file) for item in order for file in files_of(*item)]))
    else:
        with ThreadPoolExecutor(_READERS) as pool:
            parts = [
                part for found in pool.map(lambda item: spanning(*item), order) for part in found
            ]
    return _table(parts)


# A series' candles aggregated: its symbol, and each column of the result by name (times in
# ms), the candles merged into each last.
_Part = tuple[str, dict[str, np.ndarray[Any, Any]]]


def _table(parts: list[_Part]) -> pa.Table:
    """The result of `resample`: `parts` in order, as one table (each column joined once:
    a table a part cost ~0.2 ms a month of 1m)."""
    if not parts:
        return _empty_resample()
    columns = {name: np.concatenate([p[name] for _, p in parts]) for name in parts[0][1]}
    counts = [len(p["candles"]) for _, p in parts]
    out: dict[str, Any] = {"symbol": _repeated([sym for sym, _ in parts], counts)}
    for name, values in columns.items():
        if name in _TIMES:
            out[name] = pa.array(values * 1000, pa.int64()).view(_US)
        else:
            out[name] = values
    return pa.table(out)


_US = pa.timestamp("us", tz="UTC")
_DAY_MS = 86_400_000
# Slots summed by k numpy adds (`_Sums`): at most this many candles a slot, at least this
# many slots. Each add is a numpy call: with fewer slots one `bincount` costs less. A month
# of 1m to 1h (744 slots, 60 candles): 48 us a column against bincount's 114; when two
# threads aggregated at once the adds waited for each other (50 x a month ~20% longer),
# so one thread aggregates.
_ROWS_A_LOOP = 256
_SLOTS_A_LOOP = 256
# At most this many values transposed at once for a sum (`_Sums`): a month of 1m to 1h
# (44,640) in 27 us against 48 us of k adds; past ~90k the copy leaves the cache, so longer
# runs of slots go a chunk of this many values at a time.
_TRANSPOSED_MAX = 2**16
# At most this many candles a slot, with many slots in the cache, k adds beat the copy
# (1m to 5m, a month: 27 us against 34; a year: 1,024 us against 632).
_FEW_ROWS = 16


class _Sums:
    """Each slot's values (rows `starts[i]:ends[i]`, covering the values) added in time order
    from 0.0, one by one, as DuckDB's sum adds them: bit for bit its result (numpy's own sum
    adds pairwise). Where every slot holds the same k candles (no holes): copied so each
    slot is a column, up to `transposed` values at a time, and reduced down the columns (a
    month of 1m to 1d: 56 us a column against bincount's 149, to 1h 32 against k adds' 51);
    with few candles a slot and `min_slots` slots in the cache, k adds of one value of every
    slot each. Else one `bincount`. One per aggregation: the slots are looked at once for
    all its sums."""

    def __init__(
        self,
        starts: np.ndarray[Any, Any],
        ends: np.ndarray[Any, Any],
        min_slots: int = _SLOTS_A_LOOP,
        transposed: int = _TRANSPOSED_MAX,
    ) -> None:
        self._counts = ends - starts
        slots, k = len(starts), int(self._counts[0])
        regular = bool((self._counts == k).all())
        adds = regular and slots >= min_slots and k <= _ROWS_A_LOOP
        self._k = k if adds else 0
        self._chunks: list[tuple[int, int]] = []
        # Not one slot to a chunk: numpy drops an axis of one, and a reduce along the
        # inner axis is pairwise.
        few = adds and k <= _FEW_ROWS and slots * k <= transposed
        if regular and slots > 1 and transposed and not few:
            per = max(2, transposed // k)
            bounds = [*range(0, slots, per), slots]
            if bounds[-1] - bounds[-2] == 1:
                del bounds[-2]  # the last chunk one slot: joined to the chunk before
            self._chunks = list(itertools.pairwise(bounds))
            self._rows = np.empty((k, min(per + 1, slots)))
        self._group: np.ndarray[Any, Any] | None = None

    def __call__(self, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        slots = len(self._counts)
        if self._chunks:
            columns = values.reshape(slots, -1)
            sums = np.empty(slots)
            with np.errstate(over="ignore", invalid="ignore"):
                for lo, hi in self._chunks:
                    rows = self._rows[:, : hi - lo]
                    np.copyto(rows, columns[lo:hi].T)
                    # Over the outer axis numpy adds row after row into the columns' sums.
                    np.add.reduce(rows, axis=0, initial=0.0, out=sums[lo:hi])
            return sums
        if self._k:
            rows = values.reshape(slots, self._k)
            sums = np.zeros(slots)
            with np.errstate(over="ignore", invalid="ignore"):  # inf, NaN: as bincount, silent
                for i in range(self._k):
                    sums += rows[:, i]
            return sums
        if self._group is None:
            self._group = np.repeat(np.arange(slots), self._counts)
        return np.bincount(self._group, weights=values, minlength=slots)


def _kept(backend: LocalBackend, symbol: str, interval: str, span: tuple[int, int]) -> bool:
    """Whether every file of a series in `span` is kept by the read cache (a `load` of it
    ran): it is then aggregated from the frame kept, as one (a year of 1m to 1h ~6 ms), not
    file by file. Otherwise its files are read for the resample alone and nothing is kept:
    the store's files as views of their maps (a year ~11 ms against ~20 read whole as `load`
    reads it), and memory follows a file, not the series."""
    if not _budget():
        return False
    try:
        files = _spanned(backend, symbol, interval, *span)
        return bool(files) and all(_CACHE.get(path, _key(path)) is not None for *_, path in files)
    except OSError:  # a file gone meanwhile: the reads that follow say what is wrong
        return False


def _repeated(texts: list[str], counts: list[int]) -> pa.StringArray:
    """Each of `texts` its count of times, as an Arrow string array from its buffers (`pa.array`
    of a numpy object array: ~45 us a month's hours)."""
    raws = [text.encode() for text in texts]
    data = b"".join(raw * count for raw, count in zip(raws, counts, strict=True))
    if len(data) >= 2**31:  # past int32 offsets: not a resample's groups, but exact
        return pa.array([t for t, n in zip(texts, counts, strict=True) for _ in range(n)])
    lengths = np.repeat(np.array([len(raw) for raw in raws], np.int32), counts)
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(data))


def _empty_resample() -> pa.Table:
    """The result of `resample` with no rows."""
    fields = [pa.field("symbol", pa.string()), pa.field("open_time", _US)]
    for f in SCHEMA:
        if f.name != "open_time":
            fields.append(pa.field(f.name, _US if f.name == "close_time" else f.type))
    return pa.schema([*fields, pa.field("candles", pa.int64())]).empty_table()
