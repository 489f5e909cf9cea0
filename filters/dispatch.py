"""Dispatcher: fans every record out to several children."""

from __future__ import annotations

from pipeline.node import Columns, Node, Record


class Dispatcher(Node):
    """Sends every record, unchanged and in order, to each of its children (sinks, filters or
    pipelines). The same record object goes to every child, which is safe because no node
    mutates what it receives."""

    def __init__(self, *children: Node) -> None:
        super().__init__()
        if children:
            self.connect(*children)

    def write(self, data: Record) -> None:
        self.emit(data)

    def write_batch(self, columns: Columns) -> None:
        for child in self._children:
            child.write_batch(columns)

    def __repr__(self) -> str:
        return f"Dispatcher({len(self._children)} children)"
