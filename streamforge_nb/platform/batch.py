"""The sink's candle decoder: many messages at once, checked column-wise by Arrow.

The same contract as `decode_candle`, about ten times faster for a sink's batches; per-message
work happens only around the bad messages, so each reject still gets its own reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from streamforge_nb.exceptions import MessageError
from streamforge_nb.platform.contract import (
    DECIMAL_FIELDS,
    DECIMAL_PATTERN,
    KEY_PATTERN,
    Candle,
    decode_candle,
)

__all__ = ["decode_candles"]


def decode_candles(values: Sequence[bytes]) -> tuple[Any, list[tuple[int, str]]]:
    """Decode many candle messages at once: (pyarrow Table of the valid ones, [(index, why)]).

    The same contract as `decode_candle`, checked column-wise by Arrow's JSON reader (about
    ten times faster for a sink's batches); a batch with any bad message falls back to
    `decode_candle` per message, so every reject gets its own reason.
    """
    import pyarrow as pa

    tables: list[Any] = []
    bad: list[tuple[int, str]] = []
    table = _decode_candles_fast(values)
    if table is not None:
        return table, bad
    # Something is wrong in the batch. Messages that are not even JSON objects are found at
    # C speed by orjson; the rest go back through the fast path, halved around the bad ones.
    objects: list[int] = []
    for index, value in enumerate(values):
        try:
            if isinstance(orjson.loads(value), dict):
                objects.append(index)
                continue
        except orjson.JSONDecodeError:
            pass
        bad.append((index, _reason(value)))
    _decode_into([values[i] for i in objects], objects, tables, bad)
    bad.sort()
    if not tables:
        return _candle_table_from_rows([]), bad
    return pa.concat_tables(tables), bad


def _reason(value: bytes) -> str:
    try:
        decode_candle(value)
    except MessageError as exc:
        return str(exc)
    return "invalid candle"  # unreachable: only non-objects get here


def _decode_into(
    values: Sequence[bytes], indices: Sequence[int], tables: list[Any], bad: list[tuple[int, str]]
) -> None:
    table = _decode_candles_fast(values) if values else None
    if table is not None:
        tables.append(table)
    elif len(values) > 64:
        # Halve until the bad messages are cornered: the good halves stay on the fast path.
        middle = len(values) // 2
        _decode_into(values[:middle], indices[:middle], tables, bad)
        _decode_into(values[middle:], indices[middle:], tables, bad)
    elif values:
        good = []
        for index, value in zip(indices, values, strict=True):
            try:
                good.append(decode_candle(value).model_dump(by_alias=True))
            except MessageError as exc:
                bad.append((index, str(exc)))
        tables.append(_candle_table_from_rows(good))


def _candle_arrow_schema() -> Any:
    import pyarrow as pa

    fields = [("_key", pa.string()), ("open_time", pa.int64())]
    for name in Candle.model_fields:
        if name in ("key", "open_time"):
            continue
        kind = pa.int64() if name in ("close_time", "number_of_trades") else pa.string()
        fields.append((name, kind))
    return pa.schema(fields)


def _candle_table_from_rows(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    schema = _candle_arrow_schema()
    return pa.Table.from_pylist([{f: r[f] for f in schema.names} for r in rows], schema=schema)


def _decode_candles_fast(values: Sequence[bytes]) -> Any:
    """Return the batch as a table if every message is valid, else None."""
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    # One message per line: a message with a newline of its own (or none at all) would
    # shift the rows, so such a batch takes the careful path.
    if not values or any(not v or b"\n" in v for v in values):
        return None
    schema = _candle_arrow_schema()
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(io.BytesIO(b"\n".join(values)), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != len(values) or any(col.null_count for col in table.columns):
        return None
    keys = table["_key"]
    suffix = pc.struct_field(pc.extract_regex(keys, r"_(?P<t>[0-9]+)$"), "t")
    checks = [
        pc.match_substring_regex(keys, KEY_PATTERN),
        pc.equal(suffix, pc.cast(table["open_time"], pa.string())),
        *(pc.match_substring_regex(table[name], DECIMAL_PATTERN) for name in DECIMAL_FIELDS),
    ]
    if not all(pc.all(check).as_py() for check in checks):
        return None
    return table
