"""What a written value reads back as: the documented normalisation of each storage, stated
here on its own (docs/guarantees.md's table), not computed with rlpipe's own converters.

`form(value)` is the plain form a value is promised to be stored as; `same_json` and
`same_cell` tell whether what a tool's reader gives back holds that form; `same_object`
whether a value kept in memory is the value written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Float:
    """A float to read back as the same value at `width` bits (float16/32 are written as
    their shortest text; a longdouble as the float64 nearest to it)."""

    value: float
    width: int

    def holds(self, read: Any) -> bool:
        if isinstance(read, bool) or not isinstance(read, (int, float)):
            return False
        if math.isnan(self.value):
            return math.isnan(read)
        if self.width == 16:
            return bool(np.float16(read) == np.float16(self.value))
        if self.width == 32:
            return bool(np.float32(read) == np.float32(self.value))
        return float(read) == self.value


@dataclass(frozen=True)
class Histogram:
    """An array as a tracking tool stores it: a histogram of `count` values, whose bins run
    from `low` to `high` (TensorBoard: the data's min and max; W&B and neptune-scale: the
    first and last bin edges)."""

    count: float
    low: float
    high: float


@dataclass(frozen=True)
class Text:
    """A value stored as its text (an object; a complex number)."""

    text: str


def form(value: Any) -> Any:
    """The plain form `value` is stored as: None, bool, int, `Float`, str, `Text`, lists and
    dicts with text keys."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float):
        return Float(value, 64)
    if isinstance(value, np.floating):
        bits = value.dtype.itemsize * 8
        return Float(float(value), bits if bits in (16, 32) else 64)
    if isinstance(value, (complex, np.complexfloating)):
        return Text(str(complex(value)))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return form(value[()])
        return [form(item) for item in value]
    if isinstance(value, (list, tuple)):
        return [form(item) for item in value]
    if hasattr(value, "__array__") and hasattr(value, "dtype"):  # a torch or jax array
        return form(np.asarray(value))
    if isinstance(value, dict):  # of two keys with one text the earlier is stored
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.setdefault(str(key), form(item))
        return out
    try:
        return Text(str(value))
    except Exception:
        return Text(repr(value))


def same_json(expected: Any, read: Any) -> bool:
    """Whether a value read by `json.loads` holds the form `expected`."""
    if isinstance(expected, Float):
        return expected.holds(read)
    if isinstance(expected, Text):
        return read == expected.text
    if isinstance(expected, bool) or expected is None:
        return read is expected
    if isinstance(expected, int):
        return type(read) is int and read == expected
    if isinstance(expected, str):
        return read == expected
    if isinstance(expected, list):
        return (
            isinstance(read, list)
            and len(read) == len(expected)
            and all(same_json(e, r) for e, r in zip(expected, read, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(read, dict)
            and list(read) == list(expected)
            and all(same_json(expected[key], read[key]) for key in expected)
        )
    return False


def same_cell(expected: Any, cell: str) -> bool:
    """Whether a CSV cell (text, as the csv module reads it) holds the form `expected`:
    None is an empty cell, bools `True`/`False`, ints their digits, floats a text that parses
    back to the value, lists and dicts JSON."""
    if expected is None:
        return cell == ""
    if isinstance(expected, bool):
        return cell == str(expected)
    if isinstance(expected, int):
        return cell == str(expected)
    if isinstance(expected, Float):
        try:
            return expected.holds(float(cell))
        except ValueError:
            return False
    if isinstance(expected, Text):
        return cell == expected.text
    if isinstance(expected, str):
        return cell == expected
    try:
        return same_json(expected, json.loads(cell))
    except ValueError:
        return False


def same_object(written: Any, kept: Any) -> bool:
    """Whether a value kept in memory (a MemorySink's record, a logger's) is the value
    written: equal, of the same type, NaN where NaN was, arrays of the same dtype and shape."""
    if isinstance(written, np.ndarray):
        if not isinstance(kept, np.ndarray) or kept.dtype != written.dtype:
            return False
        if kept.shape != written.shape:
            return False
        if written.dtype == object:
            return all(
                same_object(w, k) for w, k in zip(written.flat, kept.flat, strict=True)
            )
        return bool(np.array_equal(written, kept, equal_nan=written.dtype.kind in "fc"))
    if type(written) is not type(kept):
        return False
    if hasattr(written, "__array__") and hasattr(written, "dtype"):  # a torch or jax array
        return same_object(np.asarray(written), np.asarray(kept))
    if isinstance(written, dict):
        return list(written) == list(kept) and all(
            same_object(written[key], kept[key]) for key in written
        )
    if isinstance(written, (list, tuple)):
        return len(written) == len(kept) and all(
            same_object(w, k) for w, k in zip(written, kept, strict=True)
        )
    numbers = (float, np.floating, complex, np.complexfloating)
    if isinstance(written, numbers) and written != written:  # NaN
        return bool(kept != kept)
    try:
        return bool(written == kept) or written is kept
    except Exception:
        return written is kept


# -- tracking services: numbers as floats, strings as text ------------------------------------

FLOAT64_MAX = 1.7976931348623157e308


def _as_float(expected: Any) -> float | None:
    """The float a tracking service is sent for a number's form (an int beyond float range
    as +-inf), or None for a form that is not a number."""
    if isinstance(expected, Float):
        return expected.value
    if isinstance(expected, bool):
        return float(expected)
    if isinstance(expected, int):
        try:
            return float(expected)
        except OverflowError:
            return math.inf if expected > 0 else -math.inf
    return None


def _numbers(expected: Any) -> list[float]:
    """The numbers of an array's form (nested lists), flat; [] if one is not a number."""
    if not isinstance(expected, list):
        number = _as_float(expected)
        return [] if number is None else [number]
    flat: list[float] = []
    for item in expected:
        numbers = _numbers(item)
        if not numbers:
            return []
        flat.extend(numbers)
    return flat


def same_point(expected: Any, read: Any, *, width: int = 64, texts: bool = True,
               infinite: float | None = None) -> bool:
    """Whether a tracking service's point holds the form `expected`: a number as a float
    (read back at `width` bits: TensorBoard's scalars are float32; `infinite`: the value a
    store keeps for +-inf, MLflow's SQL stores +-FLOAT64_MAX), a string (where the tool stores
    text, `texts`) as the same text, an array of numbers (its form: nested lists) as a
    `Histogram` of as many values whose bins span them. Anything else is not a point
    (dropped, counted)."""
    if isinstance(read, Histogram):
        numbers = _numbers(expected)
        return bool(numbers) and read.count == len(numbers) and (
            read.low <= min(numbers) and max(numbers) <= read.high
        )
    if isinstance(expected, str):
        return texts and isinstance(read, str) and read == expected
    number = _as_float(expected)
    if number is None or isinstance(read, (bool, str)) or not isinstance(read, (int, float)):
        return False
    if math.isinf(number) and infinite is not None:
        return float(read) == math.copysign(infinite, number)
    if isinstance(expected, Float) and expected.width < width:
        width = expected.width  # a float16 value read back as float32 or float64
    with np.errstate(over="ignore"):  # beyond float32: stored as +-inf (TensorBoard)
        return Float(number, width).holds(read)
