"""Any logger is a leaf: Acme's loggers and any object with `write` take records."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from pipeline import Pipeline
from sinks import LoggerSink, MemorySink


class ListLogger:
    """A user's own logger: only `write`."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, data: dict[str, Any]) -> None:
        self.rows.append(data)


class FullLogger(ListLogger):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def flush(self) -> None:
        self.calls.append("flush")

    def close(self) -> None:
        self.calls.append("close")


def test_a_plain_object_with_write_is_a_leaf_and_gets_every_value() -> None:
    logger = ListLogger()
    pipe = Pipeline(close_at_exit=False).smooth("r", coeff=0.5).to(logger, MemorySink())
    for r in (1.0, 3.0):
        pipe.write({"r": r})
    pipe.close()
    assert logger.rows == [
        {"r": 1.0, "r_smoothed_0.5": 1.0},
        {"r": 3.0, "r_smoothed_0.5": (1 - 0.05) * 3.0 + 0.05 * 1.0},  # c_1 = 0.1 * 0.5
    ]


def test_flush_and_close_reach_the_logger_when_it_has_them() -> None:
    logger = FullLogger()
    pipe = Pipeline(close_at_exit=False).to(logger)
    pipe.write({"a": 1})
    pipe.flush()
    pipe.close()
    pipe.close()
    assert logger.calls == ["flush", "flush", "close"]
    assert logger.rows == [{"a": 1}]


def test_the_logger_keeps_what_was_written_even_if_the_caller_reuses_its_dict() -> None:
    logger = ListLogger()
    pipe = Pipeline(close_at_exit=False).to(logger)
    record = {"a": 1}
    pipe.write(record)
    record["a"] = 2
    pipe.write(record)
    assert logger.rows == [{"a": 1}, {"a": 2}]


def test_one_logger_under_two_branches_is_one_leaf_closed_once() -> None:
    logger = FullLogger()
    pipe = Pipeline(close_at_exit=False).to(
        Pipeline(close_at_exit=False).prefix("a").to(logger),
        Pipeline(close_at_exit=False).prefix("b").to(logger),
    )
    pipe.write({"x": 1})
    pipe.close()
    assert logger.rows == [{"a/x": 1}, {"b/x": 1}]
    assert logger.calls.count("close") == 1
    assert sum(isinstance(node, LoggerSink) for node in pipe.nodes()) == 1


def test_a_failing_logger_is_isolated_and_counted() -> None:
    class Broken:
        def write(self, data: object) -> None:
            raise ValueError("no")

    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).to(Broken(), memory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(3):
            pipe.write({"i": i})
        assert "3 records lost" in pipe.failures()[0]
        pipe.close()
    assert memory.column("i") == [0, 1, 2]


def test_anything_without_write_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TypeError, match="a Node or a logger with a write"):
        Pipeline(close_at_exit=False).to(42)  # type: ignore[arg-type]
