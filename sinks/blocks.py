"""Rows of column batches held as columns by a file sink's queue: `RowBlock`, and how the
rows taken from the queue are cut back into runs of row dicts and blocks."""

from __future__ import annotations

from itertools import compress, count, repeat
from operator import is_not
from typing import Any

import numpy as np

from pipeline.core.columns import batch_rows, present
from pipeline.core.values import plain

__all__ = ["RowBlock", "held_column", "held_rows", "held_segments"]


class RowBlock:
    """Rows of a column batch held as columns (by a sink that stores columns: see
    `BufferedFileSink._columns_held`).

    `columns` maps each key to a 1-d numpy array of bools, ints or float64 (the copy the sink
    took) or a list of Python values; every column has `length` values. A sink's queue holds
    one reference to the block per row, so the queue's length stays its number of rows;
    the references of a block are contiguous, and `count` of them stand for the block's last
    `count` rows (rows leave the queue from its front only)."""

    __slots__ = ("columns", "finite", "length", "masked", "table")

    def __init__(
        self,
        columns: dict[str, Any],
        length: int,
        masked: bool = False,
        finite: bool = False,
        table: Any = None,
    ) -> None:
        self.columns = columns
        self.length = length
        self.masked = masked
        """Whether a None cell is an absent key (the block of a `MaskedColumns` batch)."""
        self.finite = finite
        """True when the sink that made the block found no float NaN or infinity in it;
        False: not looked for, or found."""
        self.table = table
        """The columns as the sink that made the block formats them, sharing their data (a
        polars DataFrame: its `slice(offset, length)` is taken with the block's), or None."""

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts of Python values: those `write_batch` holds without blocks."""
        rows = batch_rows(self.columns, python_scalars=True)
        return list(map(present, rows)) if self.masked else rows

    def keys(self) -> list[str]:
        """The keys of the rows, in the order row by row meets them first: the columns; in a
        masked block, the columns present in some row, by the first row that has them."""
        if not self.masked:
            return list(self.columns)
        firsts: list[tuple[int, int, str]] = []
        for place, (key, column) in enumerate(self.columns.items()):
            if type(column) is np.ndarray:  # numeric: no None
                firsts.append((0, place, key))
                continue
            first = next(compress(count(), map(is_not, column, repeat(None))), None)
            if first is not None:
                firsts.append((first, place, key))
        return [key for _, _, key in sorted(firsts)]

    def part(self, start: int, stop: int) -> RowBlock:
        """Rows `start:stop` as a block (views of the same columns)."""
        if start == 0 and stop == self.length:
            return self
        return RowBlock(
            {key: column[start:stop] for key, column in self.columns.items()},
            stop - start,
            self.masked,
            self.finite,
            None if self.table is None else self.table.slice(start, stop - start),
        )


def held_segments(items: list[Any]) -> list[list[dict[str, Any]] | RowBlock]:
    """The rows taken from a sink's queue as runs: lists of row dicts, and blocks (each the
    rows its references stand for), in order."""
    out: list[list[dict[str, Any]] | RowBlock] = []
    index, length = 0, len(items)
    rows: list[dict[str, Any]] = []
    while index < length:
        item = items[index]
        if type(item) is not RowBlock:
            rows.append(item)
            index += 1
            continue
        if rows:
            out.append(rows)
            rows = []
        # the block's references run from `index` on, at most `item.length` of them
        low, high = index + 1, min(index + item.length, length)
        if items[high - 1] is not item:  # a run cut short: find its end by bisection
            high -= 1
            while low < high:
                middle = (low + high) // 2
                if items[middle] is item:
                    low = middle + 1
                else:
                    high = middle
        count = high - index
        out.append(item.part(item.length - count, item.length))
        index = high
    if rows:
        out.append(rows)
    return out


def held_rows(items: list[Any]) -> list[dict[str, Any]]:
    """The rows taken from a sink's queue as row dicts, one per row (blocks expanded)."""
    if RowBlock not in set(map(type, items)):
        return items
    out: list[dict[str, Any]] = []
    for segment in held_segments(items):
        out.extend(segment.rows() if isinstance(segment, RowBlock) else segment)
    return out


_LIST_KINDS = frozenset(
    {
        frozenset({float}), frozenset({float, type(None)}), frozenset({type(None)}),
        frozenset({int}), frozenset({int, type(None)}),
    }
)
"""The element type sets of a list column a block holds as it is: floats or ints, with None."""

_FLOATS = frozenset({float})
"""A list column of floats alone, which a block holds as a float64 array."""


def held_column(column: Any) -> Any:
    """The column as a block holds it (a copy: the caller may reuse its arrays and lists), or
    None when a block cannot hold it: a 1-d numpy array of bools, ints or floats (narrower
    floats become the float64 `plain` makes of them) as a copy; a list of floats alone as a
    float64 array; a list of floats or ints with None as a list."""
    kind = type(column)
    if kind is np.ndarray:
        dtype = column.dtype
        if column.ndim != 1 or dtype.kind not in "biuf" or not dtype.isnative:
            return None
        if dtype.kind == "f" and dtype.itemsize != 8:
            if dtype.itemsize > 8:  # longdouble: the row path keeps its digits
                return None
            return np.array(plain(column), dtype=np.float64)
        return column.copy()
    if kind is list:
        kinds = frozenset(map(type, column))
        if kinds == _FLOATS:  # as a float64 array: the same cells, formatted faster
            return np.array(column, dtype=np.float64)
        if kinds in _LIST_KINDS:
            return list(column)
    return None
