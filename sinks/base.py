"""Sink: a leaf of the graph that stores records instead of passing them on."""

from __future__ import annotations

from pipeline.core.node import ClosedError, Logger, Node


class Sink(Node):
    """A leaf node: formats and stores records (a file, a terminal, a tracking service).

    A sink has no children. `flush()` pushes its buffered output to storage; `close()`
    flushes and releases the file or connection; writing after `close()` raises ClosedError.
    """

    losses: tuple[str, ...] = ("dropped", "lost", "changed")
    """The reasons in `counts` that mean a value was not stored as written."""

    def failure(self) -> str | None:
        """One line naming this sink and what it did not store as written (its `losses`
        counts), or None when it stored everything it took: for `Pipeline.failures()`,
        which otherwise learns only of sinks that raised."""
        counts = self.counts
        parts = [f"{counts[reason]} {reason}" for reason in self.losses if counts[reason]]
        if not parts:
            return None
        return f"{self!r}: {', '.join(parts)} (see .counts.by_key)"

    def connect(self, *children: Node | Logger) -> Node:
        raise TypeError(f"{type(self).__name__} is a sink: it has no children")

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"{self!r} is closed; it takes no more records")
