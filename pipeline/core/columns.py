"""Column batches (`write_batch`): a batch is `{key: sequence}` with one value per row.

One home for what every node's batch path needs: the length check, rows, slices and the
numeric test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import repeat
from operator import is_
from typing import Any

import numpy as np

from pipeline.core.values import IMMUTABLE_TYPES, plain, snapshot

Columns = Mapping[str, Any]
"""A batch of records as columns: metric name -> sequence (or 1-d array) of values."""


def batch_length(columns: Columns) -> int:
    """The number of rows of a batch (0 for no columns).

    Raises ValueError when the columns are not all of the same length, naming each length.
    """
    if not columns:
        return 0
    lengths = set(map(len, columns.values()))
    if len(lengths) > 1:
        lengths_by_key = {key: len(column) for key, column in columns.items()}
        raise ValueError(f"write_batch needs columns of equal length, got {lengths_by_key}")
    return lengths.pop()


def iter_rows(columns: Columns) -> Iterator[dict[str, Any]]:
    """The rows of a batch as records, in order (after checking the lengths)."""
    length = batch_length(columns)
    keys = list(columns)
    values: list[Sequence[Any]] = [columns[key] for key in keys]
    for i in range(length):
        yield {key: column[i] for key, column in zip(keys, values, strict=True)}


def batch_rows(columns: Columns, *, python_scalars: bool = False) -> list[dict[str, Any]]:
    """The rows of a batch as dicts, in order, built at C speed; the values `iter_rows` gives,
    as snapshots (`pipeline.core.values.snapshot`): the caller may reuse its buffers.

    With `python_scalars`, numeric numpy columns give the Python bools, ints and floats that
    `plain` makes of their values instead of numpy scalars (for sinks that turn values into
    plain Python data anyway: same output).
    """
    if not batch_length(columns):
        return []
    values = []
    for column in columns.values():
        if python_scalars and numeric(column) is not None:
            values.append(plain(column))
        elif numeric(column) is not None:
            values.append(list(column))  # numpy scalars: copies already
        elif IMMUTABLE_TYPES.issuperset(map(type, column)):
            values.append(list(column))
        else:
            values.append(list(map(snapshot, column)))
    if len(values) > _WIDEST_DISPLAY:
        keys = list(columns)
        return [dict(zip(keys, row, strict=True)) for row in zip(*values, strict=True)]
    return _rows_of(len(values))(tuple(columns), values)


_WIDEST_DISPLAY = 256
"""Batches with more columns than this build their rows with dict(zip(...))."""


@lru_cache(maxsize=64)
def _rows_of(width: int) -> Callable[[tuple[Any, ...], list[Any]], list[dict[Any, Any]]]:
    """A function that zips `width` equal-length columns into row dicts under their keys: a
    dict display per row, about twice as fast as `dict(zip(keys, row))`."""
    keys = [f"k{index}" for index in range(width)]
    values = [f"v{index}" for index in range(width)]
    pairs = ", ".join(f"{key}: {value}" for key, value in zip(keys, values, strict=True))
    source = (
        f"def rows(keys, columns):\n"
        f"    {', '.join(keys)}, = keys\n"
        f"    return [{{{pairs}}} for {', '.join(values)}, in zip(*columns)]"
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    rows: Callable[[tuple[Any, ...], list[Any]], list[dict[Any, Any]]] = namespace["rows"]
    return rows


def numeric(column: Any) -> np.ndarray | None:
    """The column itself if it is a 1-d numpy array of bools, ints or floats, else None. A
    numpy masked array is not one: its masked entries (`np.ma.masked`, as its rows give
    them) are no numbers, whatever its data holds under the mask."""
    if (
        isinstance(column, np.ndarray)
        and column.ndim == 1
        and column.dtype.kind in "biuf"
        and not isinstance(column, np.ma.MaskedArray)
    ):
        return column
    return None


def holds_none(column: Any) -> bool:
    """Whether the column holds None in some row (`none_mask` is not None): the scan stops at
    the first None, and makes no mask."""
    if isinstance(column, np.ndarray) and column.dtype.kind != "O":
        return False
    return any(map(is_, column, repeat(None)))


def none_mask(column: Any, length: int) -> np.ndarray | None:
    """A boolean mask of the rows where the column holds None, or None if it holds none."""
    if isinstance(column, np.ndarray) and column.dtype.kind != "O":
        return None
    mask = np.fromiter(map(is_, column, repeat(None)), dtype=bool, count=length)
    return mask if mask.any() else None


def rows_slice(columns: Columns, start: int, stop: int) -> dict[str, Sequence[Any]]:
    """Rows `start:stop` of a batch, as a batch."""
    return {key: column[start:stop] for key, column in columns.items()}


def row(columns: Columns, index: int) -> dict[str, Any]:
    """Row `index` of a batch, as a record (the values `iter_rows` gives)."""
    return {key: column[index] for key, column in columns.items()}


class MaskedColumns(dict[str, Any]):
    """A batch whose None cells mean "the key is absent in that row" (not a None value): what
    `NoneFilter` passes on whole, instead of cutting it into runs, to a graph below whose
    every node says it takes it (`Node.absent_ok`). A row whose every cell is None is an empty
    record."""

    __slots__ = ()


def present(record: Mapping[str, Any]) -> dict[str, Any]:
    """A row of a `MaskedColumns` batch as the record it stands for: without its None cells."""
    return {key: value for key, value in record.items() if value is not None}


def present_rows(columns: Columns) -> Iterator[dict[str, Any]]:
    """The rows of a batch as records (`iter_rows`), without the None cells of a
    `MaskedColumns` batch (keys absent in that row)."""
    if type(columns) is MaskedColumns:
        return map(present, iter_rows(columns))
    return iter_rows(columns)


def write_present(
    columns: Columns,
    length: int,
    write_batch: Callable[[Columns], None],
    write: Callable[[dict[str, Any]], None],
) -> None:
    """Writes a batch as row by row would with each row's None values dropped: its runs of
    rows with None in the same columns (`absent_runs`), each without those columns, to
    `write_batch`; a run whose every value is None as empty records to `write`, one a row."""
    for part, start, stop in absent_runs(columns, length):
        if part:
            write_batch(part)
        else:
            for _ in range(start, stop):
                write({})


def absent_runs(columns: Columns, length: int) -> Iterator[tuple[dict[str, Any], int, int]]:
    """The batch cut into runs of rows with None in the same columns, each run without those
    columns, as (part, start, stop): row by row, the same records as dropping each row's None
    values. A part may be empty (every value of its rows None: empty records). A batch without
    None is one run, as it is."""
    masks = {
        key: mask
        for key, column in columns.items()
        if (mask := none_mask(column, length)) is not None
    }
    if not masks:
        yield dict(columns), 0, length
        return
    # One row pattern per distinct set of None columns: rows as tuples of flags.
    flags = np.stack(list(masks.values()), axis=1)
    change = np.flatnonzero((flags[1:] != flags[:-1]).any(axis=1)) + 1
    starts = [0, *change.tolist()]
    stops = [*change.tolist(), length]
    names = list(masks)
    for start, stop in zip(starts, stops, strict=True):
        dropped = {name for name, flag in zip(names, flags[start], strict=True) if flag}
        part = {key: column[start:stop] for key, column in columns.items() if key not in dropped}
        yield part, start, stop


_LIST_CODE, _FLOAT_CODE, _NONE_CODE = b"[", ord("g"), ord("N")
"""marshal's codes (format 2) of a list, a float (its 8 bytes follow, little-endian) and None."""


class FloatsText:
    """A list as `marshal.dumps(column, 2)` writes it, read at C speed to tell whether the
    list holds exactly floats and None: marshal writes a float (the type itself) as `g` and
    its 8 bytes, None as `N`, an int, a bool or text under other codes, and refuses a float
    subclass (numpy's float64 too), a numpy scalar or any other object. One pass over the
    list, about half the time of a type scan (`map(type, column)`)."""

    __slots__ = ("data", "length", "nones")

    def __init__(self, data: np.ndarray, length: int, nones: int) -> None:
        self.data = data
        self.length = length
        self.nones = nones
        """How many Nones the list holds if it holds floats and None alone (each float
        takes 9 bytes, each None 1)."""

    @classmethod
    def of(cls, column: list[Any]) -> FloatsText | None:
        """The list's text, or None when the list surely holds more than floats and None
        (marshal refuses an element, the first is neither, the text's length fits no count
        of Nones)."""
        import marshal

        try:
            text = marshal.dumps(column, 2)
        except Exception:  # ValueError: an element marshal cannot write
            return None
        length = len(column)
        nones, rest = divmod(9 * length + 5 - len(text), 8)
        if (
            not length
            or rest
            or not 0 <= nones <= length
            or text[:1] != _LIST_CODE
            or text[5] not in (_FLOAT_CODE, _NONE_CODE)
            or int.from_bytes(text[1:5], "little") != length
        ):
            return None
        return cls(np.frombuffer(text, dtype=np.uint8), length, nones)

    def floats(self) -> np.ndarray | None:
        """The list's values as a float64 array when it holds floats alone (no None), else
        None."""
        if self.nones or not (self.data[5::9] == _FLOAT_CODE).all():
            return None
        return np.ndarray(
            (self.length,), dtype="<f8", buffer=self.data, offset=6, strides=(9,)
        ).astype(np.float64)

    def holds(self, nones: np.ndarray) -> bool:
        """Whether the list holds None exactly where the boolean mask `nones` says (as many
        as the text's length counts) and a float everywhere else. Each element's code is
        read where the elements before it put it: the first at byte 5, each next one 9
        bytes on after a float, 1 after a None."""
        where = np.flatnonzero(nones)
        if len(where) != self.nones:
            return False
        data = self.data
        # the i-th None (from 0) at element e: 5 + 9e - 8i; the j-th float at element e: 5 + e + 8j
        if len(where) and not (data[5 + 9 * where - 8 * np.arange(len(where))] == _NONE_CODE).all():
            return False
        floats = np.flatnonzero(~nones)
        return bool((data[5 + floats + 8 * np.arange(len(floats))] == _FLOAT_CODE).all())
