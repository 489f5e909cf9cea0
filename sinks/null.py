"""NullSink: takes records and keeps nothing but a count (a floor for benchmarks)."""

from __future__ import annotations

from typing import Any

from pipeline.core.columns import Columns, batch_length
from pipeline.core.node import Record
from sinks.base import Sink


class NullSink(Sink):
    """Discards every record, counting them in `.count`; the cheapest possible leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def write(self, data: Record) -> None:
        if self.closed:
            self._check_open()
        self.count += 1

    takes_absent = True

    def write_batch(self, columns: Columns) -> None:
        """Counts the batch's rows (a `MaskedColumns` row is a record too)."""
        if self.closed:
            self._check_open()
        self.count += batch_length(columns)

    def state_key(self) -> str:
        return "NullSink()"

    def fresh(self) -> bool:
        """Nothing written yet, or nothing since a state was loaded (see MemorySink)."""
        return self.count == (self._restored or 0)

    def node_state(self) -> dict[str, Any]:
        state = super().node_state()
        state["count"] = self.count
        return state

    def load_node_state(self, state: dict[str, Any]) -> None:
        if self._restore_once(state["count"]):
            return
        super().load_node_state(state)
        self.count = state["count"]

    def __repr__(self) -> str:
        return f"NullSink({self.count} records)"
