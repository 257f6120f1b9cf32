"""The embedded store's small mutable records in SQLite (WAL) under the store root: queue
state and exchange-empty windows. `LocalBackend` inherits these methods; readers and one
writer work at once across processes, so notebooks and Jobs on one machine see each other's
updates.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from streamforge_nb.exceptions import store_errors
from streamforge_nb.store.base import merge_ranges

__all__ = ["SqliteState"]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # flock, not lockf: flock excludes threads of one process too (each open() is its
        # own lock owner), and Linux maps it onto POSIX locks on NFS.
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _open_sqlite(path: Path, schema: str, **options: Any) -> sqlite3.Connection:
    """Open a SQLite database of the store root in WAL mode, with `schema` made.

    Set up under a file lock: turning a new database to WAL takes an exclusive lock, and
    SQLite answers connections racing for it "database is locked" at once, without waiting
    out the busy timeout (four sinks recording exchange-empty windows at once lost one
    writer to it in CI).
    """
    with _locked(path.with_name(f".{path.name}.lock")):
        db: sqlite3.Connection = sqlite3.connect(path, timeout=30, **options)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(schema)
        except BaseException:
            db.close()
            raise
    return db


class SqliteState:
    """Queue state and exchange-empty windows of an embedded store rooted at `root`."""

    root: Path

    # Queue state is a handful of small mutable records: SQLite (WAL) in the store root, so
    # notebooks and Jobs on this machine see each other's updates.
    def _state_db(self) -> sqlite3.Connection:
        return _open_sqlite(
            self.root / "queue_state.sqlite",
            "CREATE TABLE IF NOT EXISTS queue_state (queue_id TEXT PRIMARY KEY, record TEXT)",
        )

    def save_queue_state(self, record: Mapping[str, Any]) -> None:
        with (
            store_errors("cannot save queue state", str(self.root)),
            closing(self._state_db()) as db,
            db,
        ):
            db.execute(
                "INSERT OR REPLACE INTO queue_state VALUES (?, ?)",
                (record["queue_id"], json.dumps(record, default=str)),
            )

    def create_queue_state(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        # One write transaction: SQLite serialises writers, so of racing creates exactly one
        # inserts and the others read its committed record.
        with (
            store_errors("cannot create queue state", str(self.root)),
            closing(self._state_db()) as db,
            db,
        ):
            inserted = db.execute(
                "INSERT INTO queue_state VALUES (?, ?) ON CONFLICT (queue_id) DO NOTHING",
                (record["queue_id"], json.dumps(record, default=str)),
            ).rowcount
            if inserted:
                return None
            row = db.execute(
                "SELECT record FROM queue_state WHERE queue_id = ?", (record["queue_id"],)
            ).fetchone()
        found: dict[str, Any] = json.loads(row[0])
        return found

    def queue_states(self) -> list[dict[str, Any]]:
        with (
            store_errors("cannot read queue state", str(self.root)),
            closing(self._state_db()) as db,
        ):
            rows = db.execute("SELECT record FROM queue_state ORDER BY queue_id").fetchall()
        return [json.loads(row[0]) for row in rows]

    # Exchange-empty ranges: a few small records per series, merged on write in one SQLite
    # transaction (BEGIN IMMEDIATE), so two sinks recording at once never lose a range.
    def _empty_db(self) -> sqlite3.Connection:
        return _open_sqlite(
            self.root / "exchange_empty.sqlite",
            "CREATE TABLE IF NOT EXISTS exchange_empty (symbol TEXT, interval TEXT, "
            "start_ms INTEGER, end_ms INTEGER, PRIMARY KEY (symbol, interval, start_ms))",
            isolation_level=None,
        )

    def write_exchange_empty(
        self, symbol: str, interval: str, ranges: Sequence[tuple[int, int]]
    ) -> int:
        """Merge `ranges` into the series' recorded ones, atomically and durably."""
        if not ranges:
            return 0
        series = (symbol, interval)
        with (
            store_errors("cannot record exchange-empty ranges", str(self.root)),
            closing(self._empty_db()) as db,
        ):
            db.execute("BEGIN IMMEDIATE")
            try:
                old = db.execute(
                    "SELECT start_ms, end_ms FROM exchange_empty WHERE symbol = ? AND interval = ?",
                    series,
                ).fetchall()
                merged = merge_ranges([*old, *ranges])
                if merged != sorted(old):
                    db.execute(
                        "DELETE FROM exchange_empty WHERE symbol = ? AND interval = ?", series
                    )
                    db.executemany(
                        "INSERT INTO exchange_empty VALUES (?, ?, ?, ?)",
                        [(*series, start, end) for start, end in merged],
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(ranges)

    def exchange_empty(
        self, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        if not (self.root / "exchange_empty.sqlite").exists():
            return []  # reading creates nothing
        with (
            store_errors("cannot read exchange-empty ranges", str(self.root)),
            closing(self._empty_db()) as db,
        ):
            rows = db.execute(
                "SELECT start_ms, end_ms FROM exchange_empty WHERE symbol = ? AND interval = ? "
                "AND start_ms < ? AND end_ms > ? ORDER BY start_ms",
                (symbol, interval, end_ms, start_ms),
            ).fetchall()
        return [(int(a), int(b)) for a, b in rows]
