"""Sink: a leaf of the graph that stores records instead of passing them on."""

from __future__ import annotations

from pipeline.core.node import ClosedError, Logger, Node


class Sink(Node):
    """A leaf node: formats and stores records (a file, a terminal, a tracking service).

    A sink has no children. `flush()` pushes its buffered output to storage; `close()`
    flushes and releases the file or connection; writing after `close()` raises ClosedError.
    """

    def connect(self, *children: Node | Logger) -> Node:
        raise TypeError(f"{type(self).__name__} is a sink: it has no children")

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"{self!r} is closed; it takes no more records")
