"""TimeFilter: passes a record only if enough time passed since the last one it passed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipeline.core.columns import Columns, MaskedColumns, batch_length, present, row
from pipeline.core.fusion import Gate, Transform
from pipeline.core.node import Record
from pipeline.core.values import snapshot_record


class TimeFilter(Transform):
    """Passes a record only if `time_delta` seconds passed (monotonic clock) since the last
    record it passed; the first record always passes. `time_delta=0` passes everything.

    This is a throttle: held-back records are dropped by design and counted in
    `counts["dropped"]`.
    With `keep_last=True` the most recent held-back record is emitted on flush/close, so the
    final state of a run always reaches the sinks.

    In a fused run (see `Transform.gate`) it decides before the nodes above it: a record it
    drops only moves their state (a moving average), no record is made for it.
    """

    def __init__(
        self,
        time_delta: float,
        *,
        keep_last: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.time_delta = time_delta
        self.keep_last = keep_last
        self._clock = clock
        self._last = -float("inf")
        self._held: Record | None = None

    @property
    def time_delta(self) -> float:
        """Seconds that must pass between two records passed on."""
        return self._time_delta

    @time_delta.setter
    def time_delta(self, time_delta: float) -> None:
        if not isinstance(time_delta, (int, float)) or time_delta < 0:
            raise ValueError(f"time_delta must be a number >= 0 seconds, got {time_delta!r}")
        self._time_delta = float(time_delta)
        self._changed()  # a fused run built for the old value is built again

    @property
    def keep_last(self) -> bool:
        """Whether the last held-back record is passed on at flush and close."""
        return self._keep_last

    @keep_last.setter
    def keep_last(self, keep_last: bool) -> None:
        self._keep_last = keep_last
        self._changed()

    def transform(self, data: Record) -> Record | None:
        if not self._time_delta:
            return data
        now = self._clock()
        if now - self._last >= self._time_delta:
            self._last = now
            self._held = None
            return data
        self.counts["dropped"] += 1
        if self._keep_last:
            self._held = snapshot_record(data)
        return None

    def passes_all(self) -> bool:
        return not self._time_delta

    def gate(self, name: str) -> Gate | None:
        if self._keep_last:  # a held-back record is kept: it must be made
            return None
        return Gate(
            decide=[f"{name}_now = {name}_clock()"],
            condition=f"{name}_now - {name}._last >= {name}._time_delta",
            passed=[f"{name}._last = {name}_now", f"{name}._held = None"],
            dropped=[f'{name}_counts["dropped"] += 1'],
            names={f"{name}_clock": self._clock, f"{name}_counts": self.counts},
        )

    def node_state(self) -> dict[str, Any]:
        state = super().node_state()
        state["since_last"] = self._clock() - self._last  # elapsed time survives a new clock
        state["held"] = self._held
        return state

    def load_node_state(self, state: dict[str, Any]) -> None:
        super().load_node_state(state)
        self._last = self._clock() - state["since_last"]
        self._held = state["held"]

    takes_absent = True  # key-agnostic: a MaskedColumns batch passes as it is

    def write_batch(self, columns: Columns) -> None:
        """A batch arrives at one instant (the clock is read once): its first row passes if
        `time_delta` passed since the last record passed, the other rows are dropped (all of
        them pass when `time_delta=0`); the same as row by row under a clock that does not
        move while the batch is written."""
        length = batch_length(columns)
        if not length:
            return
        if not self.time_delta:
            self.emit_batch(columns)
            return
        now = self._clock()
        held = length
        if now - self._last >= self.time_delta:
            self._last = now
            self._held = None
            held -= 1
            first = row(columns, 0)
            self.emit(present(first) if type(columns) is MaskedColumns else first)
        if held:
            self.counts["dropped"] += held
            if self.keep_last:
                last = row(columns, length - 1)
                if type(columns) is MaskedColumns:
                    last = present(last)
                self._held = snapshot_record(last)

    def on_flush(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self.counts["dropped"] -= 1
            self.emit(held)

    @property
    def dropped(self) -> int:
        """Records held back and not passed on (`counts["dropped"]`)."""
        return self.counts["dropped"]

    def __repr__(self) -> str:
        return f"TimeFilter({self.time_delta:g}s)"
