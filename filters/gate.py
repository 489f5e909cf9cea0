"""EveryNFilter: passes every N-th record."""

from __future__ import annotations

from typing import Any

from pipeline.core.columns import Columns, batch_length
from pipeline.core.fusion import Transform
from pipeline.core.node import Record


class EveryNFilter(Transform):
    """Passes the 1st, (n+1)-th, (2n+1)-th ... record; the others are dropped by design and
    counted in `counts["dropped"]`. `n=1` passes everything."""

    def __init__(self, n: int) -> None:
        super().__init__()
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        self.n = n
        self._count = 0

    def transform(self, data: Record) -> Record | None:
        count = self._count
        self._count = count + 1
        if count % self.n == 0:
            return data
        self.counts["dropped"] += 1
        return None

    def passes_all(self) -> bool:
        return self.n == 1

    def write_batch(self, columns: Columns) -> None:
        """The rows that row by row would pass, as one batch (a strided slice per column)."""
        length = batch_length(columns)
        if not length:
            return
        n = self.n
        first = -self._count % n
        self._count += length
        passed = len(range(first, length, n))
        self.counts["dropped"] += length - passed
        if passed == length:
            self.emit_batch(columns)
        elif passed:
            self.emit_batch({key: column[first::n] for key, column in columns.items()})

    def fresh(self) -> bool:
        return not self._count

    def node_state(self) -> dict[str, Any]:
        state = super().node_state()
        state["count"] = self._count
        return state

    def load_node_state(self, state: dict[str, Any]) -> None:
        super().load_node_state(state)
        self._count = state["count"]

    @property
    def dropped(self) -> int:
        """Records not passed on (`counts["dropped"]`)."""
        return self.counts["dropped"]

    def __repr__(self) -> str:
        return f"EveryNFilter({self.n})"
