"""Helpers for column batches (`write_batch`): lengths, slices, numeric columns, emitting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.node import Columns, Node


def batch_length(columns: Columns) -> int:
    """The number of rows of a batch (0 for no columns); columns of unequal length are a
    ValueError, as in `pipeline.node.iter_rows`."""
    if not columns:
        return 0
    lengths = {key: len(column) for key, column in columns.items()}
    length = next(iter(lengths.values()))
    if any(n != length for n in lengths.values()):
        raise ValueError(f"write_batch needs columns of equal length, got {lengths}")
    return length


def numeric(column: Any) -> np.ndarray | None:
    """The column itself if it is a 1-d numpy array of bools, ints or floats, else None."""
    dtype = getattr(column, "dtype", None)
    if (
        dtype is not None
        and isinstance(column, np.ndarray)
        and column.ndim == 1
        and dtype.kind in "biuf"
    ):
        return column
    return None


def none_mask(column: Any, length: int) -> np.ndarray | None:
    """A boolean mask of the rows where the column holds None, or None if it holds none."""
    if numeric(column) is not None:
        return None
    if isinstance(column, np.ndarray) and column.dtype.kind != "O":
        return None
    mask = np.fromiter((value is None for value in column), dtype=bool, count=length)
    return mask if mask.any() else None


def rows_slice(columns: Columns, start: int, stop: int) -> dict[str, Sequence[Any]]:
    """Rows `start:stop` of a batch, as a batch."""
    return {key: column[start:stop] for key, column in columns.items()}


def row(columns: Columns, index: int) -> dict[str, Any]:
    """Row `index` of a batch, as a record (the values `iter_rows` gives)."""
    return {key: column[index] for key, column in columns.items()}


def emit_batch(node: Node, columns: Columns) -> None:
    """Sends a batch to each child of `node`, as `emit` sends a record (a node with no
    children raises, as `emit` does)."""
    children = node._children
    if not children:
        node._emit_nowhere(columns)
    for child in children:
        child.write_batch(columns)
