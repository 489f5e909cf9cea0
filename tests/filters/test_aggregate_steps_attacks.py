"""Attacks on AggregateFilter's windows by step (`every_steps`): inputs that once lost or
changed a value silently, each test the rule that now holds."""

from __future__ import annotations

import numpy as np

from filters import AggregateFilter
from sinks import MemorySink


def test_the_rows_step_is_the_value_written_even_if_the_caller_mutates_its_step_after() -> None:
    """A step counter kept as a numpy 0-d array (or a tensor) incremented in place: the row's
    step is the window's largest step as it was written (a copy), as every= keeps its keys'
    last values, not the counter's value at emission."""
    node = AggregateFilter("x", stats=("count",), every_steps=10)
    sink = MemorySink()
    node.connect(sink)
    step = np.array(0)
    for _ in range(25):
        node.write({"steps": step, "x": 1.0})
        step += 1
    node.close()
    assert [int(row["steps"]) for row in sink.records] == [9, 19, 24]
    assert [row["x_count"] for row in sink.records] == [10, 10, 5]
