"""NoneFilter: drops keys whose value is None."""

from __future__ import annotations

from typing import Any

from pipeline.core.columns import (
    Columns,
    MaskedColumns,
    batch_length,
    holds_none,
    write_present,
)
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

    takes_absent = True
    _absent: bool | None = None  # whether the graph below takes MaskedColumns: see _changed

    def _changed(self) -> None:
        self._absent = None  # asked again at the next batch
        super()._changed()

    def write_batch(self, columns: Columns) -> None:
        """Numeric numpy columns cannot hold None and pass as they are. A batch whose other
        columns hold None in some rows goes on whole as `MaskedColumns` (None: the key is
        absent in that row) when every node below takes it (`absent_ok`, asked once per
        change of the graph); otherwise it is cut into runs of rows with None in the same
        columns, and each run goes on without those columns. Same result as row by row."""
        length = batch_length(columns)
        if not length:
            return
        if any(map(holds_none, columns.values())):
            absent = self._absent
            if absent is None:
                absent = self._absent = all(child.absent_ok() for child in self._children)
            if absent:
                self.emit_batch(MaskedColumns(columns))
                return
        write_present(columns, length, self.emit_batch, self.emit)
