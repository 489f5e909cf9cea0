"""Value conversions shared by filters and sinks: what counts as a number, and plain forms."""

from __future__ import annotations

import array
import collections
import copy
import decimal
import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np


def _int_to_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _is_masked(value: Any) -> bool:
    """Whether `value` is numpy's masked constant (no value); numpy.ma is not imported for
    it (a one-off import of tens of milliseconds on the first write)."""
    ma = sys.modules.get("numpy.ma")
    return ma is not None and value is ma.masked


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
    if isinstance(value, (str, bytes)) or value is None or _is_masked(value):
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
            scalar = item()
            # numpy's longdouble (and similar) has no Python type: item() returns itself
            return float(scalar) if type(scalar) is kind else to_float(scalar)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            return None
    return None


def plain(value: Any, clashed: list[str] | None = None) -> Any:
    """The value as plain Python data: numpy/jax/torch scalars and 0-d arrays become Python
    scalars, arrays become nested lists, mappings (their keys as text) and sequences are
    converted element-wise. Anything else is returned as it is.

    Two keys of a nested mapping with one text (`1` and `"1"`) are one key in plain data: the
    earlier is kept (the rule of `pipeline.core.keys.clashes`), and the later's text is
    appended to `clashed`, if given, for the caller to count.

    numpy floats narrower than 64 bits become the Python float of their shortest decimal
    text (`np.float32(0.1)` -> `0.1`, not `0.10000000149011612`): written as text, it reads
    back to the same float32."""
    kind = type(value)
    if kind in (float, int, str, bool) or value is None:
        return value
    if _is_masked(value):
        return None
    if isinstance(value, dict):
        mark = 0 if clashed is None else len(clashed)
        out = {str(k): plain(v, clashed) for k, v in value.items()}
        if len(out) == len(value):
            return out
        if clashed is not None:
            del clashed[mark:]  # noted again by _first_wins
        return _first_wins(value, clashed)
    if isinstance(value, (list, tuple)):
        return [plain(v, clashed) for v in value]
    if isinstance(value, np.ndarray | np.floating) and value.dtype.kind == "f":
        if value.dtype.itemsize < 8:
            value = value.astype(str).astype(np.float64)
        return value.tolist()
    if isinstance(value, np.ndarray | np.integer | np.bool_) and value.dtype.kind in "biu":
        return value.tolist()  # Python ints and bools already
    tolist = getattr(value, "tolist", None)
    if tolist is not None and getattr(value, "dtype", None) is not None:
        try:
            return plain(tolist(), clashed)
        except (TypeError, ValueError, RuntimeError):
            return value
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == ():
        try:
            return plain(item(), clashed)
        except (TypeError, ValueError, RuntimeError):
            return value
    return value


def _first_wins(mapping: dict[Any, Any], clashed: list[str] | None) -> dict[str, Any]:
    """`plain` of a mapping two of whose keys have one text: the earlier kept, the later's
    text appended to `clashed`."""
    out: dict[str, Any] = {}
    for key, item in mapping.items():
        name = str(key)
        if name in out:
            if clashed is not None:
                clashed.append(name)
        else:
            out[name] = plain(item, clashed)
    return out


def is_finite_number(value: Any) -> bool:
    """True for a real number scalar that is neither NaN nor infinite."""
    number = to_float(value)
    return number is not None and math.isfinite(number)


IMMUTABLE_TYPES = frozenset({float, int, str, bool, bytes, type(None)})
"""Value types a caller cannot change in place: held as they are."""


COPIED_TYPES = frozenset({dict, np.ndarray, list, tuple})
"""The exact types `snapshot` always copies (its fast path); other mutable values (tensors,
subclasses, buffers, sets) it copies after slower checks."""


def snapshot(value: Any) -> Any:
    """A copy of `value` that later changes by the caller cannot reach: numpy arrays (of any
    subclass) are copied (an object array element-wise, so the arrays or lists it holds are
    copied too: gymnasium's `final_observation`), torch tensors cloned (detached), lists,
    tuples and dicts (`OrderedDict`, `defaultdict`, any subclass: the same type) copied
    element-wise, `bytearray`, `array.array`, `set` and `deque` copied; scalars and other
    objects are returned as they are. For a node that holds a record past `write`.

    The exact built-in types are checked first; the slower checks run only for other types."""
    kind = type(value)
    if kind in IMMUTABLE_TYPES:
        return value
    if kind is dict:
        return {key: snapshot(item) for key, item in value.items()}
    if kind is np.ndarray:
        return _array_copy(value)
    if kind is list:
        return [snapshot(item) for item in value]
    if kind is tuple:
        return tuple(snapshot(item) for item in value)
    if isinstance(value, np.generic) or kind in _HELD:
        return value
    return _snapshot_other(value)


def _array_copy(value: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    copied = value.copy()
    if value.dtype.kind == "O":
        flat = copied.reshape(-1)  # a view of the copy: filled in place
        for index, item in enumerate(flat):
            if type(item) not in IMMUTABLE_TYPES:
                flat[index] = snapshot(item)
    return copied


_HELD: set[type] = set()
"""Types `_snapshot_other` found to need no copy (held as they are), so that a value of one
is held at the cost of a set lookup next time."""

_COPIED = (bytearray, array.array, set, collections.deque)
"""Mutable containers of values a caller may change in place: copied (a shallow copy: their
items are numbers, bytes or hashable)."""


def _snapshot_other(value: Any) -> Any:
    """`snapshot` for a value of a type other than the exact built-in ones."""
    try:
        if isinstance(value, np.ndarray):  # a subclass: np.matrix, a masked array
            return _array_copy(value)
        if isinstance(value, dict):  # OrderedDict, defaultdict: copy.copy keeps the type
            copied = copy.copy(value)
            for key, item in copied.items():
                if type(item) not in IMMUTABLE_TYPES:
                    copied[key] = snapshot(item)
            return copied
        if isinstance(value, list):
            items = copy.copy(value)
            items[:] = [snapshot(item) for item in value]
            return items
        if isinstance(value, _COPIED):
            return copy.copy(value)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor):
            return value.detach().clone()
    except Exception:  # a subclass whose copy fails: held as it is, as before
        return value
    if len(_HELD) < 1024:
        _HELD.add(type(value))
    return value


def snapshot_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A dict copy of a record whose values the caller can no longer change (see
    `snapshot`); costs a dict copy when every value is a scalar."""
    out = dict(record)
    if not IMMUTABLE_TYPES.issuperset(map(type, out.values())):
        for key, value in out.items():
            if type(value) not in IMMUTABLE_TYPES:
                out[key] = snapshot(value)
    return out


def text(value: Any) -> str:
    """`str(value)`, for any value, never raising: an int beyond Python's digit limit gives
    its exact digits all the same; an object whose `__str__` raises gives its `repr`, or
    `<unprintable TYPE>` if that raises too."""
    try:
        return str(value)
    except ValueError:
        if isinstance(value, int):
            return str(decimal.Decimal(value))
    except Exception:
        pass
    try:
        return repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def shown(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, for messages; never raises."""
    try:
        text_ = repr(value)
    except Exception:
        text_ = text(value)
    return text_ if len(text_) <= limit else text_[: limit - 3] + "..."


_DIGIT_BITS = 14_000
"""Ints with more bits than this may be beyond Python's int-to-text digit limit (4300)."""


class BeyondFloat(Exception):
    """A longdouble that no float64 holds (`json_number` cannot make it a float)."""


def json_number(value: Any) -> Any:
    """`json.dumps`'s `default` for plain values (the one rule JSON Lines files and CSV cells
    holding lists or mappings share): a `np.longdouble` (scalar, 0-d array or array element,
    which `plain` leaves as it is) becomes the float64 nearest to it, a JSON number; one
    beyond float64's range (which float64 would make infinite or zero) raises BeyondFloat;
    any other object becomes its `text`."""
    if isinstance(value, np.floating):
        with np.errstate(over="ignore", under="ignore"):
            number = float(value)
        if (math.isinf(number) or number == 0.0) and np.isfinite(value) and value != 0:
            raise BeyondFloat
        return number
    return text(value)


def exact_json(value: Any) -> str:
    """The JSON text of a plain value, a longdouble beyond float64's range written with all
    its digits as a JSON number (`json.loads(..., parse_float=decimal.Decimal)` reads it
    back exactly)."""
    if isinstance(value, dict):
        return "{" + ", ".join(
            f"{json.dumps(key)}: {exact_json(item)}" for key, item in value.items()
        ) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(exact_json, value)) + "]"
    try:
        return json.dumps(value, default=json_number)
    except BeyondFloat:
        return np.format_float_scientific(value, unique=True, trim="0")


_PAIRED = re.compile("[\ud800-\udbff][\udc00-\udfff]")
"""A high and a low lone surrogate side by side."""


def paired_surrogates(value: Any) -> int:
    """How many texts (keys and values, nested ones too) of `value` hold a high and a low
    lone surrogate side by side: JSON has no text that reads back as those two characters
    (`json.loads` joins their escapes into one), so a JSON writer counts them as changed."""
    if isinstance(value, str):
        return 1 if _PAIRED.search(value) else 0
    if isinstance(value, dict):
        return sum(map(paired_surrogates, value)) + sum(map(paired_surrogates, value.values()))
    if isinstance(value, (list, tuple)):
        return sum(map(paired_surrogates, value))
    return 0


def jsonable(value: Any, clashed: list[str] | None = None) -> Any:
    """`plain(value)` in a form `json.dumps` always takes: keys as text, and what JSON cannot
    hold as it is (an int too long for Python to print, an object) as its `text`. Nested
    keys with one text: see `plain` (the earlier kept, the later's text put in `clashed`)."""
    value = plain(value, clashed)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}  # text keys (plain)
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, (float, str)):
        return value
    if isinstance(value, int):
        return value if value.bit_length() < _DIGIT_BITS else text(value)
    if isinstance(value, np.floating):  # a longdouble: a number, as in `json_number`
        try:
            return json_number(value)
        except BeyondFloat:
            return text(value)
    return text(value)
