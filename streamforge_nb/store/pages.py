"""Where a partition file's values lie, read from its footer and page headers.

A first read of the store's files spent most of its decode copying PLAIN values out of the
file into scratch buffers, then copied them again into the frame. The values of a file as
`store.local` writes them (no codec, PLAIN, REQUIRED: no levels, one row group) are the
file's own bytes, 8 a value (doubles; int64 counts and times in ms), so `plain_spans` finds
them and a reader copies them straight into the frame. Only those files: anything else (a
codec, a dictionary, delta-encoded ints, OPTIONAL columns, data page v2, another type or
time unit, a header this module does not expect, sizes that do not add up) gives None, and
the reader decodes those columns with pyarrow as before. Every offset is checked against the column
chunk before any byte is copied, so a damaged file never yields values from outside it.

The store's times are DELTA_BINARY_PACKED, and a month without holes is, page by page, one
first value and one step: each block's minimum delta is the step and its miniblocks have
bit width 0. `steady_runs` finds exactly such pages (first, step, values) by comparing the
page body with the bytes that run would have, and the reader fills them instead of decoding.
Any other page (a hole, an odd close time, bits, a value past int64) gives None and pyarrow
decodes the file as before.

Page headers are Thrift compact structs (parquet.thrift `PageHeader`): this module reads
the fields it needs and skips any other, of any type, generically.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TypeVar

import pyarrow.parquet as pq

__all__ = ["plain_spans", "steady_runs"]

_T = TypeVar("_T")

_DATA_PAGE = 0  # PageType.DATA_PAGE (v1); v2 and dictionary pages are not read here
_PLAIN = 0  # Encoding.PLAIN
_DELTA = 5  # Encoding.DELTA_BINARY_PACKED
_INT64 = (-(2**63), 2**63 - 1)
_VALUE = 8  # bytes a value (DOUBLE, INT64)
_DEPTH = 16  # nested structs skipped at most (a page header nests two)

# Thrift compact protocol types.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DBL, _BIN, _LIST, _SET, _MAP, _STRUCT = range(13)


class _Bad(Exception):
    """A header this module does not read: the caller falls back to pyarrow."""


# The readers below take a view ending where the column chunk ends: a read past it is an
# IndexError, turned into `_Bad` by `_chunk_spans`. Plain functions over (view, position),
# not a reader object: a header costs ~4 us here, ~7 through method calls.


def _varint(b: memoryview, pos: int) -> tuple[int, int]:
    value = b[pos]
    if value < 0x80:
        return value, pos + 1
    value &= 0x7F
    shift = 7
    while True:
        pos += 1
        byte = b[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + 1
        shift += 7
        if shift > 63:
            raise _Bad("varint longer than 64 bits")


def _zigzag(b: memoryview, pos: int) -> tuple[int, int]:
    raw, pos = _varint(b, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def _field(b: memoryview, pos: int, last: int) -> tuple[int, int, int]:
    """The next field's id and type (type `_STOP`: the struct ends), and where its value is."""
    head = b[pos]
    kind = head & 0x0F
    if kind == _STOP:
        return 0, _STOP, pos + 1
    if head >> 4:
        return last + (head >> 4), kind, pos + 1
    got, pos = _zigzag(b, pos + 1)
    return got, kind, pos


def _skip(b: memoryview, pos: int, kind: int, depth: int) -> int:
    """Where the value of `kind` at `pos` ends (any Thrift value, nested up to `_DEPTH`)."""
    if depth > _DEPTH:
        raise _Bad("header nests too deep")
    if kind in (_TRUE, _FALSE):
        return pos
    if kind == _BYTE:
        return pos + 1
    if kind in (_I16, _I32, _I64):
        return _varint(b, pos)[1]
    if kind == _DBL:
        return pos + 8
    if kind == _BIN:
        size, pos = _varint(b, pos)
        return pos + size
    if kind in (_LIST, _SET):
        head = b[pos]
        size, pos = (head >> 4, pos + 1) if head >> 4 != 15 else _varint(b, pos + 1)
        inner = head & 0x0F if head & 0x0F not in (_TRUE, _FALSE) else _BYTE  # a byte each
        if size > len(b) - pos:  # each element takes a byte at least: a hostile size
            raise _Bad("list longer than its column chunk")
        for _ in range(size):
            pos = _skip(b, pos, inner, depth + 1)
        return pos
    if kind == _MAP:
        size, pos = _varint(b, pos)
        if 2 * size > len(b) - pos:  # each entry takes two bytes at least
            raise _Bad("map longer than its column chunk")
        if size:
            types = b[pos]
            pos += 1
            for _ in range(size):
                pos = _skip(b, pos, types >> 4, depth + 1)
                pos = _skip(b, pos, types & 0x0F, depth + 1)
        return pos
    if kind == _STRUCT:
        last, kind, pos = _field(b, pos, 0)
        while kind != _STOP:
            pos = _skip(b, pos, kind, depth + 1)
            last, kind, pos = _field(b, pos, last)
        return pos
    raise _Bad(f"unknown Thrift type {kind}")


# The header of a PLAIN data page as pyarrow writes it: type 0, uncompressed and compressed
# size, a data page header (values, encoding PLAIN, two level encodings, maybe statistics:
# empty, or the open time's 8-byte values, a null count and flags), nothing else. Matched in
# C, it costs ~1 us of the generic read's ~4 (~8 with statistics; a year of 1m has ~400
# pages); any other header is read generically. Each statistics field matched is a whole
# Thrift field (8-byte binary, varint, bool), skipped as the generic read skips it.
_VARINT = rb"([\x80-\xff]{0,9}[\x00-\x7f])"
_STATISTICS = (
    rb"(?:\x1c(?:[\x18\x28\x38\x48]\x08.{8}|[\x16\x26][\x80-\xff]{0,9}[\x00-\x7f]"
    rb"|[\x11\x12\x21\x22])*\x00)?"
)
_COMMON = re.compile(
    rb"\x15\x00\x15" + _VARINT + rb"\x15" + _VARINT + rb"\x2c\x15" + _VARINT
    + rb"\x15([\x00-\x7f])\x15[\x00-\x7f]\x15[\x00-\x7f]" + _STATISTICS + rb"\x00\x00",
    re.DOTALL,
)  # fmt: skip


@lru_cache(maxsize=4096)  # a store's pages repeat a few sizes: a dict look-up, not a loop
def _unzigzag(raw: bytes) -> int:
    value = 0
    for byte in reversed(raw):
        value = value << 7 | byte & 0x7F
    return (value >> 1) ^ -(value & 1)


def _page(b: memoryview) -> tuple[int, int, int, int, int]:
    """Read the page header at the start of `b`: the page's type, compressed size, values,
    their encoding, and where its body starts."""
    head: dict[int, int] = {}  # PageHeader: 1 type, 2 uncompressed size, 3 compressed size
    page: dict[int, int] = {}  # DataPageHeader: 1 num_values, 2 encoding, 3-4 level encodings
    last, kind, pos = _field(b, 0, 0)
    while kind != _STOP:
        if last in (1, 2, 3) and kind == _I32:
            head[last], pos = _zigzag(b, pos)
        elif last == 5 and kind == _STRUCT:
            inner, sub, pos = _field(b, pos, 0)
            while sub != _STOP:
                if inner in (1, 2, 3, 4) and sub == _I32:
                    page[inner], pos = _zigzag(b, pos)
                else:  # statistics, fields of later format versions
                    pos = _skip(b, pos, sub, 1)
                inner, sub, pos = _field(b, pos, inner)
        else:
            pos = _skip(b, pos, kind, 0)
        last, kind, pos = _field(b, pos, last)
    # Thrift's required fields, as pyarrow's reader requires them: a header without one (or
    # with one of another type, which Thrift skips) is one pyarrow refuses, so not read here.
    if len(head) < 3 or (head.get(1) == _DATA_PAGE and len(page) < 4):
        raise _Bad("a required page header field is missing")
    if head[2] != head[3]:  # a page of an uncompressed chunk keeps its size
        raise _Bad("page sizes differ in an uncompressed column chunk")
    return head[1], head[3], page.get(1, -1), page.get(2, -1), pos


def _pages(data: memoryview, start: int, size: int, rows: int) -> list[tuple[int, int, int, int]]:
    """(body offset, body bytes, values, encoding) of each v1 data page of the column chunk
    `data[start:start+size]`, which must hold exactly `rows` values in its pages."""
    end = start + size
    if start < 0 or size < 0 or end > len(data):
        raise _Bad("column chunk outside the file")
    found_pages: list[tuple[int, int, int, int]] = []
    at, found = start, 0
    while found < rows:
        common = _COMMON.match(data, at, end)
        if common is not None:
            raw, length, values, encoding = map(_unzigzag, common.groups())
            kind, body = (_DATA_PAGE if raw == length else -1), common.end()
        else:
            try:
                kind, length, values, encoding, body = _page(data[at:end])
            except IndexError:
                raise _Bad("page header runs past its column chunk") from None
            body += at
        if kind != _DATA_PAGE:
            raise _Bad("not a v1 data page")
        if values <= 0 or length < 0 or body + length > end:
            raise _Bad("a page without values, or running past its chunk")
        found_pages.append((body, length, values, encoding))
        found += values
        at = body + length
    if found != rows or at != end:
        raise _Bad("pages do not hold exactly the chunk's rows")
    return found_pages


def _chunk_spans(data: memoryview, start: int, size: int, rows: int) -> list[tuple[int, int]]:
    """(offset, values) of each data page's values in the column chunk `data[start:start+size]`."""
    spans = []
    for body, length, values, encoding in _pages(data, start, size, rows):
        if encoding != _PLAIN or length != values * _VALUE:
            raise _Bad("not PLAIN, or its values do not fill the page")
        spans.append((body, values))
    return spans


def _steady(data: memoryview, start: int, size: int, rows: int) -> list[tuple[int, int, int]]:
    """(first, step, values) of each data page of the DELTA_BINARY_PACKED column chunk
    `data[start:start+size]` whose values are `first + step * i`: every block's miniblocks
    of bit width 0 and one minimum delta. Any other page is `_Bad`."""
    runs = []
    for body, length, values, encoding in _pages(data, start, size, rows):
        if encoding != _DELTA:
            raise _Bad("not DELTA_BINARY_PACKED")
        end = body + length
        block, pos = _varint(data, body)
        minis, pos = _varint(data, pos)
        total, pos = _varint(data, pos)
        first, pos = _zigzag(data, pos)
        if (
            total != values
            or not minis
            or not block
            or block % 128
            or block % minis
            or (block // minis % 32)
        ):
            raise _Bad("a delta header this reader does not expect")
        blocks = -(-(values - 1) // block)
        step, after = _zigzag(data, pos) if blocks else (0, pos)
        unit = bytes(data[pos:after]) + bytes(minis)  # the minimum delta, widths all 0
        if end - pos != len(unit) * blocks or data[pos:end] != unit * blocks:
            raise _Bad("deltas that are not one step")
        if not _INT64[0] <= first + step * (values - 1) <= _INT64[1]:
            raise _Bad("values outside int64")  # pyarrow would wrap them; it decodes these
        runs.append((first, step, values))
    return runs


def _plain_type(column: pq.ColumnSchema, physical: str) -> bool:
    """Whether `column`'s values are 8-byte `physical` values as the frame holds them: a
    double, or an int64 that is a plain integer or a time in ms (another time unit is not)."""
    if column.physical_type != physical:
        return False
    logical = column.logical_type
    if logical.type == "NONE":
        return True
    unit = logical.to_json() if logical.type == "TIMESTAMP" else ""
    return physical == "INT64" and '"timeUnit":"milliseconds"' in unit


def plain_spans(
    data: memoryview, metadata: pq.FileMetaData, columns: Mapping[str, str]
) -> list[list[tuple[int, int]]] | None:
    """Return, per column of `columns` (name: physical type, "DOUBLE" or "INT64"), (byte
    offset, values) of each of its pages in `data` (the whole file), or None if any of them
    is not uncompressed PLAIN REQUIRED values of that type in the file's only row group, or
    its headers do not add up."""
    return _per_chunk(data, metadata, columns, _chunk_spans)


def steady_runs(
    data: memoryview, metadata: pq.FileMetaData, names: Sequence[str]
) -> list[list[tuple[int, int, int]]] | None:
    """Return, per int64 column of `names`, (first, step, values) of each of its pages in
    `data` (the whole file), each page's values being `first + step * i` (times of a series
    without holes: one step, no bits), or None if any page is not such a run of uncompressed
    DELTA_BINARY_PACKED REQUIRED values in the file's only row group."""
    return _per_chunk(data, metadata, dict.fromkeys(names, "INT64"), _steady)


def _per_chunk(
    data: memoryview,
    metadata: pq.FileMetaData,
    columns: Mapping[str, str],
    read: Callable[[memoryview, int, int, int], list[_T]],
) -> list[list[_T]] | None:
    """`read` of each column chunk of `columns` (name: physical type) as (data, start, size,
    rows), in order, or None if a column is not REQUIRED values of that type, uncompressed
    and without a dictionary, in the file's only row group, or `read` finds it `_Bad`."""
    if metadata.num_row_groups != 1:
        return None
    data = data.cast("B")  # bytes as 0-255 (a pyarrow buffer's view is signed)
    schema, group, rows = metadata.schema, metadata.row_group(0), metadata.num_rows
    where = {name: i for i, name in enumerate(schema.names)}  # leaf names (paths: checked)
    out = []
    try:
        for name, physical in columns.items():
            i = where.get(name)
            if i is None:
                return None
            column, chunk = schema.column(i), group.column(i)
            if (
                column.path != name
                or not _plain_type(column, physical)
                or column.max_definition_level
                or column.max_repetition_level
                or chunk.compression != "UNCOMPRESSED"
                or chunk.has_dictionary_page
                or chunk.num_values != rows
            ):
                return None
            out.append(read(data, chunk.data_page_offset, chunk.total_compressed_size, rows))
    except (_Bad, IndexError):  # IndexError: a varint or header running past the file
        return None
    return out
