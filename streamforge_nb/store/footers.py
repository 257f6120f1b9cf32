"""The embedded store's partitions as coverage needs them: rows and first/last open time per
partition, from Parquet footers cached per file, and every exchange-empty window at once.

A footer is read once per file version: the cache key is the file's inode, mtime and size,
and every write replaces a partition with a new file (`os.replace`), so a changed partition
is a new key and read again. A listing of 200 symbols x 4 intervals then costs a `scandir`
and a `stat` per file; only new or replaced files are opened.

A partition may be several files (`<period>*.parquet`, e.g. a base file plus appended
batches): then its rows are the distinct open times of all of them, read from the
`open_time` column only, since a candle written twice is one candle.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamforge_nb.exceptions import store_errors
from streamforge_nb.store.local import partition_unit

if TYPE_CHECKING:
    from streamforge_nb.store.local import LocalBackend

__all__ = ["Part", "local_parts", "local_series", "partition_paths"]

_STEM = {"D": 10, "M": 7, "Y": 4}  # characters of a partition's period in its file name
_SMALL = 5_000  # open times kept in memory per file: year files of daily candles, not months
_READERS = 4  # footers read at once on a cold cache: pyarrow reads them without the GIL


class Part(NamedTuple):
    """One partition: its period `[lo, hi)`, stored rows, first and last open time (ms)."""

    lo: int
    hi: int
    rows: int
    first: int
    last: int
    times: Callable[[], np.ndarray[Any, Any]]


class _Footer(NamedTuple):
    key: tuple[int, int, int]  # inode, mtime ns, size
    rows: int
    first: int
    last: int
    times: np.ndarray[Any, Any] | None


_CACHE: dict[str, _Footer] = {}
_LOCK = threading.Lock()


def _read_footer(path: str, key: tuple[int, int, int]) -> _Footer:
    with pa.OSFile(path, "rb") as source:
        meta = pq.ParquetFile(source).metadata
    first, last = None, None
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        stats = group.column(0).statistics
        if group.num_rows == 0:
            continue
        if stats is None or not stats.has_min_max:  # no statistics: read the times
            times = _read_times(path)
            return _Footer(key, len(times), int(times.min()), int(times.max()), None)
        lo, hi = int(stats.min_raw), int(stats.max_raw)
        first = lo if first is None else min(first, lo)
        last = hi if last is None else max(last, hi)
    if first is None or last is None:
        return _Footer(key, 0, 0, -1, None)
    return _Footer(key, meta.num_rows, first, last, None)


def _read_times(path: str) -> np.ndarray[Any, Any]:
    # One handle: a file replaced meanwhile stays readable through it (POSIX keeps the inode).
    with pa.OSFile(path, "rb") as source:
        column = pq.read_table(source, columns=["open_time"]).column("open_time")
    return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)


def _footer(path: str, key: tuple[int, int, int]) -> _Footer:
    hit = _CACHE.get(path)
    if hit is not None and hit.key == key:
        return hit
    found = _read_footer(path, key)
    with _LOCK:
        _CACHE[path] = found
    return found


def _times(path: str, key: tuple[int, int, int]) -> np.ndarray[Any, Any]:
    hit = _footer(path, key)
    if hit.times is not None:
        return hit.times
    times = _read_times(path)
    if len(times) <= _SMALL:
        with _LOCK:
            _CACHE[path] = hit._replace(times=times)
    return times


@lru_cache(maxsize=4096)
def _start_ms(period: str, unit: str) -> int | None:
    """The first ms of a partition named `period` (`2024-08`), or None if it is not one."""
    try:
        return int(np.datetime64(period, unit).astype("M8[ms]").astype(np.int64))  # type: ignore[call-overload]
    except ValueError:
        return None


def _listing(backend: LocalBackend, symbol: str, interval: str) -> dict[int, list[tuple[str, Any]]]:
    """Files per partition start (ms) of one series: (path, cache key)."""
    unit = partition_unit(interval)
    width = _STEM[unit]
    directory = backend.series_dir(symbol, interval)
    groups: dict[int, list[tuple[str, Any]]] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return groups
    for entry in entries:
        name = entry.name
        # `<period>.parquet` or `<period><anything not a digit>...parquet`; temporaries and
        # locks start with a dot and never match.
        if not name.endswith(".parquet") or not name[:1].isdigit() or name[width:][:1].isdigit():
            continue
        lo = _start_ms(name[:width], unit)
        if lo is None:
            continue  # not one of ours
        st = entry.stat()
        groups.setdefault(lo, []).append((entry.path, (st.st_ino, st.st_mtime_ns, st.st_size)))
    return groups


def local_parts(backend: LocalBackend, series: list[tuple[str, str]]) -> list[list[Part]]:
    """The partitions of each series of the embedded store, from cached footers."""
    with store_errors("cannot read the candle store's footers", str(backend.root)):
        listings = [_listing(backend, sym, iv) for sym, iv in series]
        cold = [
            f
            for groups in listings
            for files in groups.values()
            for f in files
            if (hit := _CACHE.get(f[0])) is None or hit.key != f[1]
        ]
        if len(cold) > 1:  # a cold cache: footers read in parallel
            with ThreadPoolExecutor(_READERS) as pool:
                list(pool.map(lambda f: _footer(*f), cold))
        return [
            _parts(groups, partition_unit(iv))
            for groups, (_, iv) in zip(listings, series, strict=True)
        ]


def _parts(groups: dict[int, list[tuple[str, Any]]], unit: str) -> list[Part]:
    los = np.array(sorted(groups), dtype=np.int64)
    his = (los.astype("M8[ms]").astype(f"M8[{unit}]") + 1).astype("M8[ms]").astype(np.int64)
    parts = []
    for lo, hi in zip(los.tolist(), his.tolist(), strict=True):
        files = groups[lo]
        if len(files) == 1:
            found = _footer(*files[0])
            if found.rows:
                loader = partial(_times, *files[0])
                parts.append(Part(lo, hi, found.rows, found.first, found.last, loader))
            continue
        times = np.unique(np.concatenate([_times(*f) for f in files]))
        if len(times):
            loader = partial(np.asarray, times)
            parts.append(Part(lo, hi, len(times), int(times[0]), int(times[-1]), loader))
    return parts


def partition_paths(
    backend: LocalBackend, symbol: str, interval: str, start_ms: int, end_ms: int
) -> list[str]:
    """Every file of the partitions of one series that may hold `[start_ms, end_ms)`."""
    unit = partition_unit(interval)
    out = []
    for lo, files in sorted(_listing(backend, symbol, interval).items()):
        hi = int((np.datetime64(lo, "ms").astype(f"M8[{unit}]") + 1).astype("M8[ms]").astype(int))
        if lo < end_ms and hi > start_ms:
            out.extend(sorted(path for path, _ in files))
    return out


def local_series(backend: LocalBackend) -> list[tuple[str, str]]:
    """(symbol, interval) of every series directory holding a partition file, by `scandir`."""
    from streamforge_nb.platform.intervals import INTERVALS

    dirs = {("1mo" if iv == "1M" else iv): iv for iv in INTERVALS}  # as `LocalBackend` names
    found = []
    base = os.path.join(backend.root, "candles")
    with store_errors("cannot list the candle store's series", base):
        try:
            symbols = [e for e in os.scandir(base) if e.is_dir()]
        except FileNotFoundError:
            return []
        for sym in symbols:
            for entry in os.scandir(sym.path):
                interval = dirs.get(entry.name)
                if interval is not None and entry.is_dir() and _has_partition(entry.path):
                    found.append((sym.name, interval))
    return sorted(found)


def _has_partition(directory: str) -> bool:
    with os.scandir(directory) as entries:
        return any(e.name[:1].isdigit() and e.name.endswith(".parquet") for e in entries)
