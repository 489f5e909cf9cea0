"""Rows of a column batch, built at C speed, for sinks that store records one by one."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.node import Columns


def batch_rows(columns: Columns, *, python_scalars: bool = False) -> list[dict[str, Any]]:
    """The rows of a batch as dicts, in order, each with the values `iter_rows` gives.

    With `python_scalars`, numeric numpy columns give Python bools, ints and floats instead of
    numpy scalars (for sinks that turn values into plain Python data anyway: same output).
    Columns of unequal length are a ValueError, as in `pipeline.node.iter_rows`.
    """
    if not columns:
        return []
    keys = list(columns)
    lengths = {key: len(column) for key, column in columns.items()}
    length = lengths[keys[0]]
    if any(n != length for n in lengths.values()):
        raise ValueError(f"write_batch needs columns of equal length, got {lengths}")
    values = []
    for column in columns.values():
        if (
            python_scalars
            and isinstance(column, np.ndarray)
            and column.ndim == 1
            and column.dtype.kind in "biuf"
        ):
            values.append(column.tolist())
        else:
            values.append(column if isinstance(column, (list, tuple)) else list(column))
    return [dict(zip(keys, row, strict=True)) for row in zip(*values, strict=True)]
