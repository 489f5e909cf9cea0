"""LoggerSink at its edges: what it refuses (and says so), loggers with only `write`, and the
names it shows."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import ClosedError
from pipeline.core import LoggerSink
from sinks import MemorySink


class WriteOnly:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, data: dict[str, Any]) -> None:
        self.rows.append(data)


def test_a_node_is_refused_even_though_it_has_write() -> None:
    with pytest.raises(TypeError, match="not a Node, got MemorySink"):
        LoggerSink(MemorySink())


def test_an_object_without_write_is_refused_naming_its_type() -> None:
    with pytest.raises(TypeError, match=r"with a write\(record\) method .* got object"):
        LoggerSink(object())


def test_a_logger_with_only_write_is_flushed_and_closed_without_error() -> None:
    logger = WriteOnly()
    sink = LoggerSink(logger)
    sink.write({"a": 1})
    sink.flush()
    sink.close()
    assert logger.rows == [{"a": 1}] and sink.closed


def test_the_repr_names_the_loggers_type() -> None:
    assert repr(LoggerSink(WriteOnly())) == "LoggerSink(WriteOnly)"


def test_a_leaf_refuses_children_and_says_it_is_a_leaf() -> None:
    with pytest.raises(TypeError, match=r"LoggerSink\(WriteOnly\) is a leaf: it has no children"):
        LoggerSink(WriteOnly()).connect(MemorySink())


def test_writing_to_a_closed_logger_sink_says_it_is_closed() -> None:
    sink = LoggerSink(WriteOnly())
    sink.close()
    with pytest.raises(ClosedError, match=r"LoggerSink\(WriteOnly\) is closed"):
        sink.write({"a": 1})
