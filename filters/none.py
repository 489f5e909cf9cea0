"""NoneFilter: drops keys whose value is None."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.columns import Columns, batch_length, none_mask
from pipeline.core.fusion import Special, Transform, transform_of

_DROP_NONE = [
    "for none_value in data.values():",
    "    if none_value is None:",
    "        data = {key: value for key, value in data.items() if value is not None}",
    "        break",
]
"""NoneFilter's transform, as statements (see `transform_of`)."""


class NoneFilter(Transform):
    """Removes every key whose value is None; a record with no None passes as it is (no copy).

    A record whose every value is None becomes an empty record, which is still passed on, so
    downstream counts of writes stay true.
    """

    drops = False
    pure = True

    transform = transform_of(_DROP_NONE)  # written into a fused run, not called

    def specialized(self, keys: tuple[Any, ...], name: str) -> Special:
        """A record of `keys` with no None leaves with `keys`; one with a None bails out."""
        return Special([*_DROP_NONE[:-1], "        bail"], None, {}, keys, removes_none=True)

    def write_batch(self, columns: Columns) -> None:
        """Numeric numpy columns cannot hold None and pass as they are; a batch whose other
        columns hold None in some rows is cut into runs of rows with None in the same
        columns, and each run goes on without those columns (same result as row by row)."""
        length = batch_length(columns)
        if not length:
            return
        masks = {
            key: mask
            for key, column in columns.items()
            if (mask := none_mask(column, length)) is not None
        }
        if not masks:
            self.emit_batch(columns)
            return
        # One row pattern per distinct set of None columns: rows as tuples of flags.
        flags = np.stack(list(masks.values()), axis=1)
        change = np.flatnonzero((flags[1:] != flags[:-1]).any(axis=1)) + 1
        starts = [0, *change.tolist()]
        stops = [*change.tolist(), length]
        names = list(masks)
        for start, stop in zip(starts, stops, strict=True):
            dropped = {name for name, flag in zip(names, flags[start], strict=True) if flag}
            part = {
                key: column[start:stop] for key, column in columns.items() if key not in dropped
            }
            if part:
                self.emit_batch(part)
            else:  # every value None: empty records, one per row
                for _ in range(start, stop):
                    self.emit({})
