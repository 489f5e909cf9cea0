"""Gates by count: EveryNFilter passes every N-th record, LogarithmicFilter passes records at
logarithmically spaced counts (Acme's `GatedFilter.logarithmic`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.core.columns import Columns, batch_length
from pipeline.core.fusion import Gate, Transform
from pipeline.core.node import Record


class _CountGate(Transform):
    """A gate that decides by how many records it has seen: that count is its state."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

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


class EveryNFilter(_CountGate):
    """Passes the 1st, (n+1)-th, (2n+1)-th ... record; the others are dropped by design and
    counted in `counts["dropped"]`. `n=1` passes everything."""

    def __init__(self, n: int) -> None:
        super().__init__()
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        self.n = n

    def transform(self, data: Record) -> Record | None:
        count = self._count
        self._count = count + 1
        if count % self.n == 0:
            return data
        self.counts["dropped"] += 1
        return None

    def passes_all(self) -> bool:
        return self.n == 1

    def gate(self, name: str) -> Gate:
        return Gate(
            decide=[f"{name}_count = {name}._count"],
            condition=f"{name}_count % {name}.n == 0",
            passed=[f"{name}._count = {name}_count + 1"],
            dropped=[f"{name}._count = {name}_count + 1", f'{name}.counts["dropped"] += 1'],
        )

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

    def __repr__(self) -> str:
        return f"EveryNFilter({self.n})"


class LogarithmicFilter(_CountGate):
    """Passes records at logarithmically spaced counts, as Acme's
    `GatedFilter.logarithmic(to, n=base)`: counting records from 0, record `t` passes when
    `t % base**m == 0` with `m = floor(log_base(max(t, 1)))`. With `base=10`: the first 10
    records (0-9), then every 10th up to 100 (10, 20, ..., 90), every 100th up to 1000, and so
    on. The others are dropped by design and counted in `counts["dropped"]`.

    The magnitude is found in integer arithmetic (Acme's uses floating-point logarithms, which
    give the same records).
    """

    def __init__(self, base: int = 10) -> None:
        super().__init__()
        if not isinstance(base, int) or isinstance(base, bool) or base < 2:
            raise ValueError(f"logarithmic base must be an int >= 2, got {base!r}")
        self.base = base
        self._next = 0  # the count of the next record that passes

    def _after(self, count: int) -> int:
        """The count of the first record after `count` that passes."""
        t = count + 1
        step = 1
        while step * self.base <= t:
            step *= self.base
        following = -(-t // step) * step  # the first multiple of step from t on
        return min(following, step * self.base)  # base**(m+1) always passes

    def transform(self, data: Record) -> Record | None:
        count = self._count
        self._count = count + 1
        if count == self._next:
            self._next = self._after(count)
            return data
        self.counts["dropped"] += 1
        return None

    def gate(self, name: str) -> Gate:
        return Gate(
            decide=[f"{name}_count = {name}._count"],
            condition=f"{name}_count == {name}._next",
            passed=[
                f"{name}._count = {name}_count + 1",
                f"{name}._next = {name}._after({name}_count)",
            ],
            dropped=[f"{name}._count = {name}_count + 1", f'{name}.counts["dropped"] += 1'],
        )

    def write_batch(self, columns: Columns) -> None:
        """The rows that row by row would pass, as one batch."""
        length = batch_length(columns)
        if not length:
            return
        start, end = self._count, self._count + length
        passed = []
        t = self._next
        while t < end:
            passed.append(t - start)
            t = self._after(t)
        self._count, self._next = end, t
        self.counts["dropped"] += length - len(passed)
        if len(passed) == length:
            self.emit_batch(columns)
        elif passed:
            self.emit_batch({key: _take(column, passed) for key, column in columns.items()})

    def load_node_state(self, state: dict[str, Any]) -> None:
        super().load_node_state(state)
        self._next = self._after(self._count - 1)

    def __repr__(self) -> str:
        return f"LogarithmicFilter({self.base})"


def _take(column: Any, rows: list[int]) -> Any:
    """The values of `column` at `rows` (increasing): a contiguous run as a slice, else an
    array indexed by the rows, or a list."""
    if rows[-1] - rows[0] + 1 == len(rows):
        return column[rows[0] : rows[-1] + 1]
    if isinstance(column, np.ndarray):
        return column[np.asarray(rows)]
    values: Sequence[Any] = column
    return [values[row] for row in rows]
