"""The plain-data form of arrays that cross the process boundary (JSON, never pickle).

Both sides use it: the child encodes what it observed, the grader decodes and validates it.
Pickle is never used on data a child sends, because unpickling runs code.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from grader.errors import ObservationError

_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64}
MAX_ARRAY_ELEMENTS = 4_000_000


def encode_array(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array)
    if array.dtype.name not in _DTYPES:
        array = array.astype(np.float32)
    return {
        "dtype": array.dtype.name,
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def decode_array(value: Any, *, what: str = "array") -> np.ndarray:
    """Decode and validate an encoded array; ObservationError says what is wrong with it."""
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data"}:
        raise ObservationError(f"{what}: not an encoded array")
    dtype = _DTYPES.get(value["dtype"]) if isinstance(value["dtype"], str) else None
    shape = value["shape"]
    if dtype is None:
        raise ObservationError(f"{what}: unsupported dtype {value['dtype']!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ObservationError(f"{what}: invalid shape {shape!r}")
    count = int(np.prod(shape)) if shape else 1
    if count > MAX_ARRAY_ELEMENTS:
        raise ObservationError(f"{what}: {count} elements is more than the {MAX_ARRAY_ELEMENTS} allowed")
    if not isinstance(value["data"], str):
        raise ObservationError(f"{what}: data is not base64 text")
    try:
        raw = base64.b64decode(value["data"], validate=True)
    except ValueError:
        raise ObservationError(f"{what}: data is not valid base64") from None
    if len(raw) != count * np.dtype(dtype).itemsize:
        raise ObservationError(f"{what}: {len(raw)} bytes do not fit shape {shape}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)
