"""NullSink: takes records and keeps nothing but a count (a floor for benchmarks)."""

from __future__ import annotations

from pipeline.node import Columns, Record
from sinks.base import Sink


class NullSink(Sink):
    """Discards every record, counting them in `.count`; the cheapest possible leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def write(self, data: Record) -> None:
        self.count += 1

    def write_batch(self, columns: Columns) -> None:
        lengths = {len(column) for column in columns.values()}
        if len(lengths) > 1:
            raise ValueError(
                "write_batch needs columns of equal length, got "
                f"{ {key: len(column) for key, column in columns.items()} }"
            )
        self.count += lengths.pop() if lengths else 0

    def __repr__(self) -> str:
        return f"NullSink({self.count} records)"
