"""NoneFilter: drops keys whose value is None."""

from __future__ import annotations

from pipeline.node import Columns, Node, Record


class NoneFilter(Node):
    """Removes every key whose value is None; a record with no None passes as it is (no copy).

    A record whose every value is None becomes an empty record, which is still passed on, so
    downstream counts of writes stay true.
    """

    def write(self, data: Record) -> None:
        for value in data.values():
            if value is None:
                self.emit({key: v for key, v in data.items() if v is not None})
                return
        self.emit(data)

    def write_batch(self, columns: Columns) -> None:
        # A column may hold None in some rows only: those rows need the per-row rule.
        for column in columns.values():
            if getattr(column, "dtype", None) is None and any(v is None for v in column):
                super().write_batch(columns)
                return
        for child in self._children:
            child.write_batch(columns)
