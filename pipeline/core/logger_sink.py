"""LoggerSink: any logger as a leaf of the graph."""

from __future__ import annotations

import weakref
from typing import Any

from pipeline.core.node import ClosedError, Logger, Node, Record
from pipeline.core.values import snapshot_record


class LoggerSink(Node):
    """A leaf that hands each record to a logger that is not a Node: any object with a
    `write(record)` method (an Acme logger such as `InMemoryLogger` or `TFSummaryLogger`, a
    user's own), calling its `flush()` and `close()` too when it has them.

    The logger receives a snapshot of each record as a plain dict (`snapshot_record`), so one
    that keeps what it receives keeps what was written. It sits behind the same failure
    isolation as any sink.
    `Node.connect` (and so `Pipeline.to`) wraps such a logger automatically, once per logger,
    so the same logger under two branches is one leaf (a join).
    """

    def __init__(self, logger: Any) -> None:
        super().__init__()
        if isinstance(logger, Node) or not callable(getattr(logger, "write", None)):
            raise TypeError(
                f"LoggerSink takes a logger with a write(record) method that is not a Node, "
                f"got {type(logger).__name__}"
            )
        self.logger = logger
        self._write = logger.write

    @classmethod
    def of(cls, logger: Any) -> LoggerSink:
        """The one LoggerSink of `logger` (made on first use)."""
        sink = _sinks.get(id(logger))
        if sink is None or sink.logger is not logger:
            sink = _sinks[id(logger)] = cls(logger)
        return sink

    def connect(self, *children: Node | Logger) -> Node:
        raise TypeError(f"{self!r} is a leaf: it has no children")

    def write(self, data: Record) -> None:
        if self.closed:
            raise ClosedError(f"{self!r} is closed; it takes no more records")
        self._write(snapshot_record(data))

    def on_flush(self) -> None:
        flush = getattr(self.logger, "flush", None)
        if callable(flush):
            flush()

    def on_close(self) -> None:
        close = getattr(self.logger, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"LoggerSink({type(self.logger).__name__})"


_sinks: weakref.WeakValueDictionary[int, LoggerSink] = weakref.WeakValueDictionary()
