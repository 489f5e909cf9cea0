"""Value conversions shared by filters and sinks: what counts as a number, and plain forms."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _int_to_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def to_float(value: Any) -> float | None:
    """The value as a Python float if it is a real number scalar, else None.

    Numbers are: bool, int, float, numpy scalars of kind b/i/u/f, and 0-d arrays or tensors
    (numpy, jax, torch) holding one of those. An int too large for a float becomes +-inf.
    Strings, None, complex numbers, arrays with elements, and other objects are not numbers.
    """
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return,unused-ignore]
    if kind is int or kind is bool:
        return _int_to_float(value)
    if isinstance(value, (str, bytes)) or value is None:
        return None
    if isinstance(value, int):
        return _int_to_float(value)
    if isinstance(value, float):
        return float(value)
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        if getattr(value, "ndim", None) != 0 and getattr(value, "shape", None) != ():
            return None
        kind_char = getattr(dtype, "kind", None)
        if kind_char is not None and kind_char not in "biuf":
            return None
        item = getattr(value, "item", None)
        if item is None:
            return None
        try:
            return to_float(item())
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def plain(value: Any) -> Any:
    """The value as plain Python data: numpy/jax/torch scalars and 0-d arrays become Python
    scalars, arrays become nested lists, mappings and sequences are converted element-wise.
    Anything else is returned as it is.

    numpy floats narrower than 64 bits become the Python float of their shortest decimal
    text (`np.float32(0.1)` -> `0.1`, not `0.10000000149011612`): written as text, it reads
    back to the same float32."""
    kind = type(value)
    if kind in (float, int, str, bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray | np.floating) and value.dtype.kind == "f":
        if value.dtype.itemsize < 8:
            value = value.astype(str).astype(np.float64)
        return value.tolist()
    tolist = getattr(value, "tolist", None)
    if tolist is not None and getattr(value, "dtype", None) is not None:
        try:
            return plain(tolist())
        except (TypeError, ValueError, RuntimeError):
            return value
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == ():
        try:
            return plain(item())
        except (TypeError, ValueError, RuntimeError):
            return value
    return value


def is_finite_number(value: Any) -> bool:
    """True for a real number scalar that is neither NaN nor infinite."""
    number = to_float(value)
    return number is not None and math.isfinite(number)
