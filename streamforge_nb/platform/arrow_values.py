"""Arrow scalars and arrays made from their bytes, without pyarrow's Python conversion.

pyarrow converts a Python value (an `int` given to a compute function, `pa.scalar`,
`pa.array`) through a path that imports pandas the first time, when pandas is installed: 0.3
to 0.45 s of a worker's start, in the thread that converts first (issue 20: the loader's
first archive waited for it). Values built here from buffers never take that path, so a
worker that makes its Arrow constants with them never imports pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "FALSE", "binary_array", "binary_scalar", "empty_strings", "from_numpy", "int64_scalar",
    "string_scalar", "to_numpy",
]  # fmt: skip


def int64_scalar(value: int) -> pa.Int64Scalar:
    """Return `value` as an Arrow int64 scalar."""
    data = pa.py_buffer(np.array([value], dtype=np.int64))
    scalar: pa.Int64Scalar = pa.Array.from_buffers(pa.int64(), 1, [None, data])[0]
    return scalar


def string_scalar(value: str) -> pa.StringScalar:
    """Return `value` as an Arrow string scalar."""
    scalar: pa.StringScalar = _one_value(pa.string(), value.encode())
    return scalar


def binary_scalar(value: bytes) -> pa.BinaryScalar:
    """Return `value` as an Arrow binary scalar."""
    scalar: pa.BinaryScalar = _one_value(pa.binary(), value)
    return scalar


def from_numpy(values: Any) -> pa.Array:
    """Return a 1-d array of bools or fixed-width numbers (numpy or a list of bools) as Arrow."""
    array = np.ascontiguousarray(values)
    if array.ndim != 1:
        raise ValueError(f"expected a 1-d array, got {array.ndim} dimensions")
    if array.dtype == np.bool_:
        # Arrow's booleans are bits, least significant first.
        bits = np.packbits(array, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(array), [None, pa.py_buffer(bits)])
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(array.dtype), len(array), [None, pa.py_buffer(array)]
    )


def to_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """Return Arrow numbers, times or bools without nulls as numpy, as `to_numpy` does.

    Numbers and times are views of Arrow's buffers (read-only); anything else (nulls, other
    types) takes pyarrow's own conversion.
    """
    kind = values.type
    if pa.types.is_boolean(kind):
        dtype = np.dtype(np.bool_)
    elif pa.types.is_timestamp(kind):
        dtype = np.dtype(f"M8[{kind.unit}]")
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        dtype = np.dtype(kind.to_pandas_dtype())
    else:
        return _converted(values)
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            return to_numpy(values.chunk(0))
        if values.num_chunks == 0:
            return np.zeros(0, dtype=dtype)
        return np.concatenate([to_numpy(chunk) for chunk in values.chunks])
    if values.null_count:
        return _converted(values)
    if len(values) == 0:
        return np.zeros(0, dtype=dtype)
    if dtype == np.bool_:
        bits = np.frombuffer(values.buffers()[1], dtype=np.uint8)
        unpacked = np.unpackbits(bits, count=values.offset + len(values), bitorder="little")
        return unpacked[values.offset :].astype(np.bool_)
    data = values.buffers()[1]
    start = values.offset * dtype.itemsize
    return np.frombuffer(data, dtype=dtype, count=len(values), offset=start)


def _converted(values: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    converted: np.ndarray[Any, Any] = values.to_numpy(zero_copy_only=False)
    return converted


def binary_array(values: Sequence[bytes | None]) -> pa.BinaryArray:
    """Return `values` as an Arrow binary array (None: null)."""
    bitmap = None
    present: Sequence[bytes] = values  # type: ignore[assignment]
    if None in values:  # rare (a message without a key): the generators only then
        valid = np.fromiter((v is not None for v in values), np.bool_, len(values))
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
        present = [b"" if v is None else v for v in values]
    # map(len) and one join run in C: ~0.04 us a key (pa.array: ~0.017, but it imports pandas).
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, present), np.int64, len(values)), out=offsets[1:])
    data = pa.py_buffer(b"".join(present))
    if offsets[-1] < 2**31:
        array: pa.BinaryArray = pa.Array.from_buffers(
            pa.binary(), len(values), [bitmap, pa.py_buffer(offsets.astype(np.int32)), data]
        )
        return array
    large = pa.Array.from_buffers(
        pa.large_binary(), len(values), [bitmap, pa.py_buffer(offsets), data]
    )
    return large.cast(pa.binary())


def _one_value(type_: pa.DataType, data: bytes) -> pa.Scalar:
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int32))
    return pa.Array.from_buffers(type_, 1, [None, offsets, pa.py_buffer(data)])[0]


def empty_strings() -> pa.StringArray:
    """Return an empty Arrow string array."""
    offsets, data = pa.py_buffer(np.zeros(1, dtype=np.int32)), pa.py_buffer(b"")
    array: pa.StringArray = pa.Array.from_buffers(pa.string(), 0, [None, offsets, data])
    return array


FALSE: pa.BooleanScalar = from_numpy(np.zeros(1, dtype=np.bool_))[0]
"""Arrow's false, for `fill_null` and the like."""
