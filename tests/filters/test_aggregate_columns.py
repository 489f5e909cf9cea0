"""AggregateFilter's column path: whole windows of a numeric batch are cut and reduced with
numpy on the column and sent on as one batch, with the records, values and key order that
writing the rows one by one gives."""

from __future__ import annotations

import math
import warnings
from itertools import pairwise
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import AggregateFilter
from pipeline.core.columns import Columns
from sinks import MemorySink

numbers = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    st.sampled_from([math.inf, -math.inf, 0.0, -0.0, 1.0]),
)
stats = st.lists(
    st.sampled_from(["mean", "std", "median", "max", "min", "sum", "count", "p5", "p50", "p99.9"]),
    min_size=1, max_size=5, unique=True,
)


class BatchCounter(MemorySink):
    """A memory sink that counts the batches it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def write_batch(self, columns: Columns) -> None:
        self.batches += 1
        super().write_batch(columns)


def table(draw: st.DrawFn, length: int) -> dict[str, np.ndarray]:
    column = st.lists(numbers, min_size=length, max_size=length)
    return {
        "r": np.array(draw(column), dtype=np.float64),
        "step": np.arange(length, dtype=np.int64),
        "x_loss": np.array(draw(column), dtype=np.float32),
    }


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], list[int]]:
    columns = table(draw, draw(st.integers(min_value=0, max_value=300)))
    cuts = draw(st.lists(st.integers(min_value=0, max_value=300), max_size=4))
    return columns, cuts


@settings(max_examples=150, deadline=None)
@given(batches(), st.integers(min_value=1, max_value=40), stats, st.booleans())
def test_windows_from_columns_are_the_windows_row_by_row(
    batch: tuple[dict[str, np.ndarray], list[int]], every: int, chosen: list[str], nan: bool
) -> None:
    columns, cuts = batch
    length = len(columns["r"])
    if nan and length:
        columns["r"][length // 2] = math.nan  # a window with NaN takes the window-by-window path
    by_rows, by_columns = MemorySink(), MemorySink()
    row_node = AggregateFilter("r|loss", every=every, stats=chosen).connect(by_rows)
    column_node = AggregateFilter("r|loss", every=every, stats=chosen).connect(by_columns)
    bounds = [0, *sorted(cut % (length + 1) for cut in cuts), length]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index in range(length):
            row_node.write({key: column[index] for key, column in columns.items()})
        for start, stop in pairwise(bounds):
            column_node.write_batch({key: column[start:stop] for key, column in columns.items()})
        row_node.flush()
        column_node.flush()
    assert_same(by_columns.records, by_rows.records)
    assert column_node.counts == row_node.counts


def assert_same(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [list(record) for record in got] == [list(record) for record in expected]
    for row, want in zip(got, expected, strict=True):
        for key, value in want.items():
            assert row[key] == value or (row[key] != row[key] and value != value), (key, row)


def test_the_whole_windows_of_a_batch_go_on_as_one_batch() -> None:
    sink = BatchCounter()
    node = AggregateFilter("r", every=10, stats=("mean", "median", "p90")).connect(sink)
    node.write_batch({"r": np.arange(1000, dtype=np.float64), "step": np.arange(1000)})
    assert sink.batches == 1
    assert len(sink.records) == 100
    assert sink.records[3] == {"r_mean": 34.5, "r_median": 34.5, "r_p90": 38.1, "step": 39}
