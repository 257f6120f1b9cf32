"""Arrow scalars and arrays made from their bytes, without pyarrow's Python conversion.

pyarrow converts a Python value (an `int` given to a compute function, `pa.scalar`,
`pa.array`) through a path that imports pandas the first time, when pandas is installed: 0.3
to 0.45 s of a worker's start, in the thread that converts first (issue 20: the loader's
first archive waited for it). Values built here from buffers never take that path, so a
worker that makes its Arrow constants with them never imports pandas.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["empty_strings", "int64_scalar", "string_scalar"]


def int64_scalar(value: int) -> pa.Int64Scalar:
    """Return `value` as an Arrow int64 scalar."""
    data = pa.py_buffer(np.array([value], dtype=np.int64))
    scalar: pa.Int64Scalar = pa.Array.from_buffers(pa.int64(), 1, [None, data])[0]
    return scalar


def string_scalar(value: str) -> pa.StringScalar:
    """Return `value` as an Arrow string scalar."""
    text = value.encode()
    offsets = pa.py_buffer(np.array([0, len(text)], dtype=np.int32))
    scalar: pa.StringScalar = pa.Array.from_buffers(
        pa.string(), 1, [None, offsets, pa.py_buffer(text)]
    )[0]
    return scalar


def empty_strings() -> pa.StringArray:
    """Return an empty Arrow string array."""
    offsets, data = pa.py_buffer(np.zeros(1, dtype=np.int32)), pa.py_buffer(b"")
    array: pa.StringArray = pa.Array.from_buffers(pa.string(), 0, [None, offsets, data])
    return array
