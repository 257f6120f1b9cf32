"""Reproducible reads: what a load read (series, range, fields, rows, a content hash), kept
in the notebook that did the analysis and checked against the store later.

    frame, manifest = store.load("*USDT", "1h", "2024-01-01", "2025-01-01", manifest=True)
    store.stamp(manifest)          # into the notebook: a display output with the manifest
    store.verify(manifest)         # later: Verification(ok=False, changed=[...]) if it changed
    recorded("executed.ipynb")     # the manifests a notebook (papermill's output too) holds

Where a stamp lands: a kernel cannot write notebook-level metadata (papermill 2.x dropped
`papermill.record`; scrapbook, its successor, is itself a display output). So `stamp` shows a
display output whose metadata holds the manifest under `streamforge.manifest`; papermill and
nbclient keep outputs and their metadata in the executed notebook, and JupyterLab saves them
with an interactive notebook, so one mechanism serves payload notebooks and sessions alike.

The hash covers the stored rows read, before any hole filling (`missing=`): per series its
symbol, interval and row count, then each column read (`open_time` first) as int64 / float64
bytes, so any changed candle, an added or a removed one changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from streamforge_nb.exceptions import InvalidName
from streamforge_nb.store.frames import COLUMNS

__all__ = ["MIME", "Manifest", "Verification", "recorded", "series_hash", "stamp_output"]

MIME = "application/vnd.streamforge.manifest+json"
"""The display output's data type; its metadata repeats the manifest under `streamforge`."""
_HASH = "blake2b-256"


def series_hash(symbol: str, interval: str, table: pa.Table) -> str:
    """Return the content hash of one series' stored rows (`open_time` plus the fields read)."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(f"{symbol}\0{interval}\0{table.num_rows}\n".encode())
    for name in table.column_names:
        digest.update(name.encode() + b"\0")
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        for chunk in column.chunks:
            # Chunks fed in order hash as one contiguous array would: the split never counts.
            digest.update(np.ascontiguousarray(chunk.to_numpy(zero_copy_only=False)).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What one read saw: the store, series, `[start, end)` in ms, fields, rows and hashes."""

    store: str
    start: int
    end: int
    fields: tuple[str, ...]
    series: tuple[tuple[str, str], ...]
    rows: tuple[int, ...]
    hashes: tuple[str, ...]
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def hash(self) -> str:
        """One hash over every series' hash, in the order read."""
        return hashlib.blake2b("\n".join(self.hashes).encode(), digest_size=32).hexdigest()

    @property
    def total_rows(self) -> int:
        """Rows read over all series."""
        return sum(self.rows)

    @classmethod
    def of_tables(
        cls,
        store: str,
        span: tuple[int, int],
        fields: Sequence[str],
        series: Sequence[tuple[str, str]],
        tables: Sequence[pa.Table],
    ) -> Manifest:
        """Build the manifest of `tables`, the stored rows read of `series` in `span`."""
        return cls(
            store=store,
            start=int(span[0]),
            end=int(span[1]),
            fields=tuple(fields),
            series=tuple((str(s), str(i)) for s, i in series),
            rows=tuple(t.num_rows for t in tables),
            hashes=tuple(series_hash(s, i, t) for (s, i), t in zip(series, tables, strict=True)),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as JSON types (lists for tuples), with its overall hash."""
        out = asdict(self)
        out["series"] = [list(s) for s in self.series]
        for name in ("fields", "rows", "hashes"):
            out[name] = list(out[name])
        return {**out, "hash": self.hash, "hash_kind": _HASH}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Rebuild a manifest from `to_dict()`'s output (read back from a notebook)."""
        try:
            made = cls(
                store=str(data["store"]),
                start=int(data["start"]),
                end=int(data["end"]),
                fields=tuple(str(f) for f in data["fields"]),
                series=tuple((str(s), str(i)) for s, i in data["series"]),
                rows=tuple(int(r) for r in data["rows"]),
                hashes=tuple(str(h) for h in data["hashes"]),
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidName(f"not a candle read manifest: {exc!r} in {dict(data)!r}") from None
        if not (len(made.series) == len(made.rows) == len(made.hashes)):
            raise InvalidName("not a candle read manifest: series, rows and hashes differ")
        wrong = [f for f in made.fields if f not in COLUMNS]
        if wrong:
            raise InvalidName(f"not a candle read manifest: unknown field(s) {wrong!r}")
        if "hash" in data and data["hash"] != made.hash:
            raise InvalidName("manifest's hash does not match its series hashes: it was edited")
        return made

    def _repr_html_(self) -> str:
        first = ", ".join(f"{s} {i}" for s, i in self.series[:5])
        more = f" and {len(self.series) - 5} more" if len(self.series) > 5 else ""
        return (
            f"<b>candle read</b> {len(self.series)} series ({first}{more}), "
            f"{self.total_rows:,} rows, [{_iso(self.start)}, {_iso(self.end)}), "
            f"hash <code>{self.hash[:16]}</code>"
        )


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return "open"


@dataclass(frozen=True)
class Verification:
    """Whether a manifest's data is still what the store holds; `changed` says where not."""

    ok: bool
    changed: list[dict[str, Any]]

    def __bool__(self) -> bool:
        return self.ok


def stamp_output(manifest: Manifest) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the (data, metadata) bundle `stamp` displays: the manifest, readable and as JSON."""
    record = manifest.to_dict()
    text = (
        f"candle read manifest: {len(manifest.series)} series, {manifest.total_rows:,} rows, "
        f"hash {manifest.hash}"
    )
    data = {MIME: record, "text/plain": text, "text/html": manifest._repr_html_()}
    return data, {"streamforge": {"manifest": record}}


def recorded(notebook: str | Path | Mapping[str, Any]) -> list[Manifest]:
    """Return the manifests stamped into a notebook (a path or an nbformat node), in order."""
    if isinstance(notebook, str | Path):
        node: Mapping[str, Any] = json.loads(Path(notebook).read_text(encoding="utf-8"))
    else:
        node = notebook
    found = []
    for cell in node.get("cells", []):
        for output in cell.get("outputs", []) or []:
            record = (output.get("metadata") or {}).get("streamforge", {}).get("manifest")
            if record is not None:
                found.append(Manifest.from_dict(record))
    return found
