"""The embedded candle store: partitioned Parquet files, one writer per partition at a time.

Layout under the store root (Binance spells the month interval `1mo` in its archives; we do
the same so `1m` and `1M` cannot collide on case-insensitive file systems):

    candles/<SYMBOL>/<interval>/<YYYY-MM-DD>.parquet   1s          (86,400 rows a day)
    candles/<SYMBOL>/<interval>/<YYYY-MM>.parquet      1m .. 12h   (44,640 1m rows a month)
    candles/<SYMBOL>/<interval>/<YYYY>.parquet         1d .. 1M    (365 1d rows a year)

Why Parquet partitions, not DuckDB or SQLite (DuckDB and SQLite figures: measured for this
project on a 2-vCPU VM; ours: `bench/read.py` on a 2-vCPU VM):

- A notebook must read while a sink process writes (live charts). DuckDB allows one
  read-write process or many read-only ones, never both. Here readers take no lock: every
  partition is replaced atomically (`os.replace` of a fully written, fsynced temporary), so
  a reader sees the old file or the new one, never half of one.
- Reads are the hot path: a year of 1m candles (525,600 rows) read first loads in ~11 ms
  (~12 ms CPU on two threads, mostly copying the files' pages into the frame;
  `store.series_read`), and again in well under 1 ms (a slice of the frame the first read
  kept). SQLite needs ~2.9 s for 1M rows.
- Writes merge a batch into the partitions it touches: read the partition, drop the rows the
  batch replaces, append, sort, write a temporary, fsync it, rename it over the partition;
  then the directory is fsynced once for the batch. Idempotent (the open time is a
  candle's identity; the later write wins) and durable when `write_frame` returns, so a
  sink may commit its Kafka offsets then. An exclusive `flock` per partition serialises
  writers (processes and threads alike; on one host, or a network file system with working
  flock), so concurrent writers never lose each other's rows.
- What a crash (process, OS or power) can lose: nothing a returned write stored. A write
  cut short leaves each partition it touched as it was before or as it is after (never a
  half file); a batch spanning two partitions may be in one and not yet in the other, and
  a `.<name>.tmp` may be left, which the next writer overwrites and readers never list.
  The caller did not get a return, so it has not committed: the sink replays the batch,
  and the replay overwrites itself.
- A sink fills a partition batch by batch, and each batch rewrites the whole partition (one
  file a partition keeps every reader simple and every replace atomic). The re-read made
  that dear, so the last `_HOT_PARTITIONS` partitions a backend wrote stay "hot": kept in
  memory (the merge reads nothing while the file is the one this backend wrote: same inode,
  size and mtime).
- Files are encoded for the read, the hot path (`_WRITE_OPTIONS`): floats and trades PLAIN,
  times delta-encoded, no codec, columns REQUIRED (no definition levels), each column one
  page (a resample aggregates the values where they lie in the file's map). A first load
  copies the float and trades pages from the file into the frame and fills the times
  (`store.pages`, `store.layouts`): nothing is decoded. A year of 1m takes 36.2 MiB
  (ArcticDB on LMDB: 35.7; trades delta-encoded, the format before: 32.8; LZ4: 27; zstd:
  26; all PLAIN: 44.1; figures at `_WRITE_OPTIONS`). A file is written once in its final
  form. Files of older versions (trades delta-encoded, LZ4, zstd, all PLAIN; OPTIONAL
  columns) read as they are: Parquet names its codec and encodings per column chunk.

A read spanning partitions is consistent per partition, not across them: a batch crossing a
month boundary may show in one month before the other.
"""

from __future__ import annotations

import inspect
import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamforge_nb.exceptions import store_errors
from streamforge_nb.platform.arrow_values import from_numpy, to_numpy
from streamforge_nb.platform.intervals import INTERVALS
from streamforge_nb.store.base import CandleBackend
from streamforge_nb.store.frames import (
    COLUMNS,
    empty_coverage,
)
from streamforge_nb.store.local_state import SqliteState, _locked
from streamforge_nb.store.scan import SCHEMA as _SCHEMA
from streamforge_nb.store.scan import TS as _TS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LocalBackend", "partition_unit"]


_DIRNAMES = {iv: ("1mo" if iv == "1M" else iv) for iv in INTERVALS}
_INTERVAL_OF_DIR = {d: iv for iv, d in _DIRNAMES.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Measured on a year of 1m of generated candles, read first (`load`, decoded tables dropped;
# 20 interleaved runs): CPU min/median / size / the year's encode CPU. Floats byte-split,
# all LZ4 (two formats before): 23.3/25.0 ms / 27.1 MiB / 44 ms; floats PLAIN with no codec,
# ints delta + LZ4: 18.4/21.6 / 32.8 / 33; ints delta, no codec (the format before):
# 18.0/20.5 / 32.8 / 34; all PLAIN, no codec (decoded by pyarrow): 19.1/20.5 / 44.1 / 31
# (zstd-1, before LZ4: ~90 ms / 25.7 MiB). LZ4 found only a float's exponent and high
# mantissa bytes (split out): 17% of the disk for a fifth of the read's CPU. Deltas of a
# grid's times and of counts bit-pack to near nothing; a codec adds nothing to them.
# Dictionaries only slow float columns. ArcticDB (LMDB, its defaults): 35.7 MiB.
# With `store.pages` copying PLAIN pages straight into the frame, all PLAIN (ints too) was
# measured against this format: three interleaved `bench/analytics.py --cases read --runs
# 20` pairs (min/median/max of the runs' medians) gave a first load of 10.2/11.0/11.0 ms
# wall against 11.2/11.5/11.5, CPU 11.9/12.2/12.9 ms against 14.7/15.0/16.1, but 44.1 MiB a
# year against 32.8 (more than ArcticDB's 35.7) and ~3% fewer rows/s written. Still short
# of ArcticDB's read either way, so the third more disk (2.2 GiB a year of 200 symbols' 1m)
# is not paid: times stay delta-encoded (filled as runs of one step, never decoded).
# Trades PLAIN: once a file's layout is kept (`store.layouts`), the trades were all a first
# load still had pyarrow decode, and with them gone the readers call no pyarrow at all.
# Three `bench/analytics.py --cases read,write --runs 9` runs alternating with the format
# before (each on a cache it wrote): a first load 0.74/0.78/0.66x ArcticDB `read` against
# 1.12/1.14/1.31x, CPU 13.8/16.4/16.9 ms against 24.8/25.2/28.8; 36.2 MiB a year against
# 32.8 (ArcticDB: 35.7). `bench/store_format.py` (both formats alternating in one process,
# 3 rounds of 15 runs): the write 1.04/0.98/1.02x the format before's time, a first load
# 0.68/0.71/0.70x.
_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "none",
    "use_dictionary": False,
    "column_encoding": {
        **{f.name: "PLAIN" for f in _SCHEMA if pa.types.is_floating(f.type)},
        "number_of_trades": "PLAIN",
        **dict.fromkeys(["open_time", "close_time"], "DELTA_BINARY_PACKED"),
    },
    "write_statistics": ["open_time"],
}
# A column one page (up to 2**17 rows: pyarrow's 1 MiB page of 8-byte values; a month of
# 1m is 44,640, a day of 1s 86,400): a resample aggregates its values where they lie in the
# file's map (`planned_read.mapped_arrays`), no copy. Newer pyarrow cuts pages at 20,000 rows
# unless told (apache/arrow#47090, #48101); older ones cut a page by its size alone.
if "max_rows_per_page" in inspect.signature(pq.ParquetWriter.__init__).parameters:
    _WRITE_OPTIONS["max_rows_per_page"] = 2**17
_REQUIRED = pa.schema([field.with_nullable(False) for field in _SCHEMA])
_HOT_PARTITIONS = 4
"""Partitions a backend keeps in memory: a sink's current one and the one a batch crossed from."""


def partition_unit(interval: str) -> Literal["D", "M", "Y"]:
    """Return the numpy datetime unit of one partition file: `D`, `M` or `Y`."""
    if interval == "1s":
        return "D"
    return "Y" if interval in ("1d", "3d", "1w", "1M") else "M"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_file(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    # One handle opened here: a file replaced meanwhile stays readable through it (POSIX
    # keeps the old inode), and size and data come from the same file.
    with pa.OSFile(str(path), "rb") as source:
        return pq.read_table(source, columns=None if columns is None else list(columns))


def _times(table: pa.Table) -> np.ndarray[Any, Any]:
    return _ms_of(table.column("open_time"))


def _as(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    return column if column.type == kind else column.cast(kind)


def _ms_of(column: pa.ChunkedArray | pa.Array) -> np.ndarray[Any, Any]:
    """Open times as int64 ms: the store's own type is viewed, not cast (a cast is a pyarrow
    call, ~10 us a column, several a batch on the sink's path)."""
    if column.type == _TS:
        return to_numpy(column).view(np.int64)
    return np.asarray(to_numpy(column.cast(pa.int64())), dtype=np.int64)


class LocalBackend(SqliteState, CandleBackend):
    """Candles in partitioned Parquet files under `root` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = f"local://{self.root}"
        # path: (the file's identity when this backend wrote it, its rows), oldest first.
        self._hot: OrderedDict[Path, tuple[tuple[int, ...], pa.Table]] = OrderedDict()
        self._hot_lock = threading.Lock()  # the dict's; files are guarded by their flock
        with store_errors("cannot create the candle store", str(self.root)):
            self.root.mkdir(parents=True, exist_ok=True)

    def series_dir(self, symbol: str, interval: str) -> Path:
        """Return the directory holding the partitions of one series."""
        return self.root / "candles" / symbol / _DIRNAMES[interval]

    # --- writing -------------------------------------------------------------------------

    def write_frame(self, symbol: str, interval: str, frame: pd.DataFrame) -> int:
        """Merge `frame` into its partitions, one partition lock at a time; return its rows."""
        return self._write_partitions(symbol, interval, self._to_table(frame))

    def write_arrow(self, symbol: str, interval: str, table: pa.Table) -> int:
        """Merge a table of one series' decoded candles (`platform.checks.check_candles`'
        columns) as `write_frame` merges a frame; the sink's path, with no pandas on it."""
        if table.num_rows == 0:
            return 0
        times = _ms_of(table["open_time"])
        if not np.all(np.diff(times) > 0):
            # Unique over the reversed times keeps the LAST of duplicates, as normalize_frame.
            _, first_in_rev = np.unique(times[::-1], return_index=True)
            table = table.take(from_numpy(len(times) - 1 - first_in_rev))
        columns = [_as(table[f.name], f.type) for f in _SCHEMA]
        rows = pa.Table.from_arrays(columns, schema=_SCHEMA)
        return self._write_partitions(symbol, interval, rows)

    def _write_partitions(self, symbol: str, interval: str, table: pa.Table) -> int:
        """Merge `table` (sorted, one row per open time) into the partitions it spans."""
        times = _times(table)
        unit = partition_unit(interval)
        parts = times[[0, -1]].view("M8[ms]").astype(f"M8[{unit}]")
        if parts[0] == parts[-1]:  # a sink's usual batch: one partition, no row converted
            cuts = [0, len(times)]
        else:
            parts = times.view("M8[ms]").astype(f"M8[{unit}]")
            # Rows come sorted, so each partition is one contiguous slice.
            cuts = [0, *(np.flatnonzero(parts[1:] != parts[:-1]) + 1).tolist(), len(times)]
        directory = self.series_dir(symbol, interval)
        with store_errors(f"cannot write {symbol} {interval} candles", str(directory)):
            self._makedirs(directory)
            for lo, hi in itertools.pairwise(cuts):
                path = directory / f"{parts[lo]}.parquet"
                self._merge(path, table.slice(lo, hi - lo))
            # The renames are durable once their directory is synced: once for all the
            # partitions of this batch (one directory), before the write returns.
            _fsync_dir(directory)
            while (coldest := self._coldest(_HOT_PARTITIONS)) is not None:
                self._forget(coldest)
        return len(times)

    def _makedirs(self, directory: Path) -> None:
        if directory.is_dir():
            return
        directory.mkdir(parents=True, exist_ok=True)
        # New directory entries are durable only once their parents are synced.
        for parent in (directory, *directory.parents):
            _fsync_dir(parent)
            if parent == self.root:
                break

    @staticmethod
    def _to_table(frame: pd.DataFrame) -> pa.Table:
        import pandas as pd

        arrays = [pa.array(frame.index.as_unit("ms").asi8, pa.int64()).cast(_TS)]
        for name in COLUMNS:
            col = frame[name]
            if name == "close_time":
                arrays.append(pa.array(pd.DatetimeIndex(col).as_unit("ms").asi8).cast(_TS))
            else:
                arrays.append(pa.array(col.to_numpy(), _SCHEMA.field(name).type))
        return pa.Table.from_arrays(arrays, schema=_SCHEMA)

    def _merge(self, path: Path, batch: pa.Table) -> None:
        """Replace `path` by its rows plus `batch` (batch wins), atomically and durably."""
        with _locked(path.with_name(f".{path.name}.lock")):
            old = self._hot_rows(path)
            if old is None and path.exists():
                old = _read_file(path).select(_SCHEMA.names).cast(_SCHEMA)
            if old is not None and old.num_rows:
                old_t, new_t = _times(old), _times(batch)
                if old_t[-1] < new_t[0]:  # a sink's usual batch: after the rows stored
                    merged = pa.concat_tables([old, batch])
                else:
                    pos = np.searchsorted(new_t, old_t).clip(max=len(new_t) - 1)
                    keep = new_t[pos] != old_t
                    merged = pa.concat_tables([old.filter(from_numpy(keep)), batch])
                    merged_t = _times(merged)
                    if np.any(np.diff(merged_t) < 0):
                        merged = merged.take(from_numpy(np.argsort(merged_t, kind="stable")))
            else:
                merged = batch
            if merged.column(0).num_chunks > 64:  # kept hot batch after batch: chunks pile up
                merged = merged.combine_chunks()
            identity = _replace(path, merged, _WRITE_OPTIONS)
            with self._hot_lock:
                self._hot[path] = (identity, merged)
                self._hot.move_to_end(path)

    def _coldest(self, keep: int) -> Path | None:
        """Return the least recently written hot partition beyond the `keep` newest."""
        with self._hot_lock:
            return next(iter(self._hot)) if len(self._hot) > keep else None

    def _hot_rows(self, path: Path) -> pa.Table | None:
        """Return the rows of `path` if it is still the file this backend wrote last."""
        with self._hot_lock:
            entry = self._hot.get(path)
        if entry is None:
            return None
        try:
            same = _identity(path) == entry[0]
        except FileNotFoundError:
            same = False
        if not same:  # another writer replaced it (or a user deleted it): read it again
            with self._hot_lock:
                self._hot.pop(path, None)
            return None
        return entry[1]

    def _forget(self, path: Path) -> None:
        """Drop the rows kept of a hot partition (its file is already in its final form)."""
        with self._hot_lock:
            self._hot.pop(path, None)

    # --- reading -------------------------------------------------------------------------

    def _partitions(self, symbol: str, interval: str) -> list[tuple[int, int, Path]]:
        """Return (start ms, end ms, path) of each partition file, sorted by time."""
        unit = partition_unit(interval)
        found = []
        directory = self.series_dir(symbol, interval)
        if not directory.is_dir():
            return []
        for path in directory.glob("[0-9]*.parquet"):
            try:
                start = np.datetime64(path.stem, unit)
            except ValueError:
                continue  # not one of ours
            end = start + np.timedelta64(1, unit)
            found.append((_ms(start), _ms(end), path))
        return sorted(found, key=lambda p: p[0])

    def read(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Return candles with `start_ms <= open time < end_ms` from the partitions they span."""
        from streamforge_nb.store import series_read  # frames kept per file version

        return series_read.read_frame(self, symbol, interval, start_ms, end_ms)

    def partition_files(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Path]:
        """Return the partition files that may hold candles of `[start_ms, end_ms)`."""
        parts = self._partitions(symbol, interval)
        return [p for lo, hi, p in parts if lo < end_ms and hi > start_ms]

    def read_table(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, fields: Sequence[str]
    ) -> pa.Table:
        """Read `open_time` and `fields` only (column pushdown) of the partitions spanned."""
        from streamforge_nb.store import scan

        return scan.read_table(self, symbol, interval, start_ms, end_ms, fields)

    def column_chunks(
        self, series: Sequence[tuple[str, str]], start_ms: int, end_ms: int, fields: Sequence[str]
    ) -> Iterator[tuple[pa.Field, list[list[pa.Array]]]]:
        """Yield `open_time` and `fields` of `series` a column at a time (`scan.column_chunks`)."""
        from streamforge_nb.store import scan

        return scan.column_chunks(self, series, start_ms, end_ms, fields)

    def series(self) -> list[tuple[str, str]]:
        """Return (symbol, interval) of every series directory holding a partition."""
        base = self.root / "candles"
        if not base.is_dir():
            return []
        found = []
        with store_errors("cannot list the candle store's series", str(base)):
            for iv_dir in base.glob("*/*"):
                interval = _INTERVAL_OF_DIR.get(iv_dir.name)
                if interval is not None and any(iv_dir.glob("[0-9]*.parquet")):
                    found.append((iv_dir.parent.name, interval))
        return sorted(found)

    def partition_rows(self, symbol: str, interval: str) -> list[tuple[int, int, int, int, int]]:
        """Return (start, end, rows, first, last) per partition file (ms), from its footer."""
        out = []
        with store_errors(f"cannot read {symbol} {interval} footers", str(self.root)):
            for lo, hi, path in self._partitions(symbol, interval):
                with pa.OSFile(str(path), "rb") as source:
                    meta = pq.ParquetFile(source).metadata
                first, last = hi, lo - 1
                for i in range(meta.num_row_groups):
                    stats = meta.row_group(i).column(0).statistics
                    if stats is None or not stats.has_min_max:
                        first, last = lo, hi - 1  # no statistics: assume the whole partition
                        continue
                    first = min(first, _stat_ms(stats.min_raw))
                    last = max(last, _stat_ms(stats.max_raw))
                if meta.num_rows:
                    out.append((lo, hi, meta.num_rows, first, last))
        return out

    def coverage(self) -> pd.DataFrame:
        """Return symbol, interval, first, last, rows per series, from the files' footers."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        base = self.root / "candles"
        with store_errors("cannot read the candle store's coverage", str(base)):
            if not base.is_dir():
                return empty_coverage()
            for sym_dir in sorted(p for p in base.iterdir() if p.is_dir()):
                for iv_dir in sorted(p for p in sym_dir.iterdir() if p.is_dir()):
                    interval = _INTERVAL_OF_DIR.get(iv_dir.name)
                    if interval is None:
                        continue
                    row = self._series_coverage(sym_dir.name, interval)
                    if row is not None:
                        rows.append(row)
        if not rows:
            return empty_coverage()
        out = pd.DataFrame(rows)
        for col in ("first", "last"):
            out[col] = pd.DatetimeIndex(out[col].to_numpy(np.int64).view("M8[ms]")).tz_localize(UTC)
        order = {iv: i for i, iv in enumerate(INTERVALS)}
        out["_order"] = out["interval"].map(order)
        return out.sort_values(["symbol", "_order"]).drop(columns="_order").reset_index(drop=True)

    def _series_coverage(self, symbol: str, interval: str) -> dict[str, Any] | None:
        first = last = None
        total = 0
        for _, _, path in self._partitions(symbol, interval):
            with pa.OSFile(str(path), "rb") as source:
                meta = pq.ParquetFile(source).metadata
            for i in range(meta.num_row_groups):
                group = meta.row_group(i)
                stats = group.column(0).statistics
                if group.num_rows == 0 or stats is None or not stats.has_min_max:
                    continue
                # Raw int64 ms: a far-future time would overflow a Python datetime.
                lo, hi = _stat_ms(stats.min_raw), _stat_ms(stats.max_raw)
                first = lo if first is None else min(first, lo)
                last = hi if last is None else max(last, hi)
                total += group.num_rows
        if first is None:
            return None
        return {"symbol": symbol, "interval": interval, "first": first, "last": last, "rows": total}

    def close(self) -> None:
        """Drop the rows kept of hot partitions; every call opens and closes its own files."""
        while (path := self._coldest(0)) is not None:
            self._forget(path)

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"


def _replace(path: Path, table: pa.Table, options: dict[str, Any]) -> tuple[int, ...]:
    """Write `table` to `path` atomically; return the new file's identity. Durable once the
    caller has synced `path`'s directory (the rename's entry).

    The caller holds the partition's lock: only it writes this temporary, so a leftover from
    a crashed writer is simply overwritten; readers list `*.parquet` and never see it.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    if not any(column.null_count for column in table.columns):
        # Candles have no nulls: REQUIRED columns carry no definition levels to decode
        # (a year of 1m: ~15% less read CPU). Older files' OPTIONAL ones read the same.
        table = table.cast(_REQUIRED)
    with pa.OSFile(str(tmp), "wb") as sink:  # a path would be resolved to a file system first
        pq.write_table(table, sink, **options)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
        identity = _identity_of(os.fstat(fd))
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return identity


def _identity(path: Path) -> tuple[int, ...]:
    return _identity_of(os.stat(path))


def _identity_of(stat: os.stat_result) -> tuple[int, ...]:
    # A replace by anyone makes a new inode and a new mtime: both must match.
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _ms(value: np.datetime64) -> int:
    return int(value.astype("M8[ms]").astype(np.int64))


def _stat_ms(value: Any) -> int:
    if isinstance(value, datetime):
        return (value - _EPOCH) // timedelta(milliseconds=1)
    return int(value)
