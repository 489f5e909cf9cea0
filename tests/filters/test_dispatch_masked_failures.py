"""A Dispatcher gives a batch with None cells (`MaskedColumns`) whole to each child that takes
it and cut into runs to each other child; with children that take it and children that do
not, and children that refuse some records (any error), keep them and fail to store them
(StoreError) or go down (OSError) part-way through, each child ends with the records, and the
Dispatcher with the failure counts, that writing the rows one by one gives: written = stored
+ counted for every child."""

from __future__ import annotations

import warnings
from itertools import pairwise
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import Dispatcher, NoneFilter, SmoothingFilter
from pipeline import Pipeline
from pipeline.core.columns import Columns, iter_rows
from pipeline.core.isolation import StoreError
from pipeline.core.node import Node, Record
from sinks import MemorySink, NullSink
from tests.filters.test_masked_batches import records, rows_of, streams


class Refusing(MemorySink):
    """Refuses (ValueError) a record whose `loss` is 2 and a batch holding one, having
    taken none of its rows; `takes_absent` as told."""

    def __init__(self, takes_absent: bool) -> None:
        super().__init__()
        self.takes_absent = takes_absent

    def write(self, data: Record) -> None:
        if data.get("loss") == 2:
            raise ValueError("loss 2 refused")
        super().write(data)

    def write_batch(self, columns: Columns) -> None:
        if any(row.get("loss") == 2 for row in iter_rows(columns)):
            raise ValueError("loss 2 refused")
        super().write_batch(columns)


class Holding(MemorySink):
    """Keeps every record and batch, then raises StoreError for one whose `steps` is 3 (it
    holds it and retries itself)."""

    def __init__(self, takes_absent: bool) -> None:
        super().__init__()
        self.takes_absent = takes_absent

    def write(self, data: Record) -> None:
        super().write(data)
        if data.get("steps") == 3:
            raise StoreError("stored later")

    def write_batch(self, columns: Columns) -> None:
        super().write_batch(columns)
        if any(row.get("steps") == 3 for row in iter_rows(columns)):
            raise StoreError("stored later")


class GoesDown(MemorySink):
    """Its storage is down (OSError, nothing taken) for its 3rd to 5th calls."""

    def __init__(self, takes_absent: bool) -> None:
        super().__init__()
        self.takes_absent = takes_absent
        self.calls = 0

    def _down(self) -> bool:
        self.calls += 1
        return 3 <= self.calls <= 5

    def write(self, data: Record) -> None:
        if self._down():
            raise OSError("down")
        super().write(data)

    def write_batch(self, columns: Columns) -> None:
        if self._down():
            raise OSError("down")
        super().write_batch(columns)


KINDS = {"memory": MemorySink, "refusing": Refusing, "holding": Holding, "down": GoesDown}
children = st.lists(
    st.tuples(st.sampled_from(sorted(KINDS)), st.booleans()), min_size=1, max_size=4
)


def build(shape: list[tuple[str, bool]], smooth: bool) -> tuple[Node, Dispatcher, list[Any]]:
    leaves: list[Any] = []
    for kind, takes in shape:
        leaf = MemorySink() if kind == "memory" else KINDS[kind](takes)
        if kind == "memory" and not takes:
            leaf.takes_absent = False
        leaves.append(leaf)
    dispatcher = Dispatcher(*leaves, NullSink(), backoff=1e-9, max_backoff=1e-9)
    nodes: list[Node] = [NoneFilter()]
    if smooth:
        nodes.append(SmoothingFilter("return|loss", 0.5))
    for upper, lower in pairwise([*nodes, dispatcher]):
        upper.connect(lower)
    return nodes[0], dispatcher, leaves


def outcome(head: Node, dispatcher: Dispatcher, leaves: list[Any]) -> list[Any]:
    head.close()
    failures = {
        index: (failure.errors, failure.lost)
        for index, leaf in enumerate(leaves)
        if (failure := dispatcher.failures.get(id(leaf))) is not None
    }
    null = dispatcher.children[-1]
    assert isinstance(null, NullSink)
    return [[records(leaf) for leaf in leaves], failures, null.count]


@settings(max_examples=300, deadline=None)
@given(stream=streams(), shape=children, smooth=st.booleans())
def test_masked_batches_through_failing_children_give_what_rows_give(
    stream: tuple[dict[str, Any], list[int]], shape: list[tuple[str, bool]], smooth: bool
) -> None:
    columns, cuts = stream
    if "steps" in columns and not isinstance(columns["steps"], np.ndarray):
        columns["steps"] = [3 if value == 3 else value for value in columns["steps"]]
    length = len(next(iter(columns.values())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        head, dispatcher, leaves = build(shape, smooth)
        rows = rows_of(columns)
        for record in rows:
            head.write(record)
        expected = outcome(head, dispatcher, leaves)
        head, dispatcher, leaves = build(shape, smooth)
        for start, stop in pairwise([0, *cuts, length]):
            head.write_batch({key: column[start:stop] for key, column in columns.items()})
        got = outcome(head, dispatcher, leaves)
    assert got[2] == expected[2] == length
    for index, (kind, _) in enumerate(shape):
        lost = got[1].get(index, (0, 0))[1]
        assert len(got[0][index]) + lost == length, (kind, got[0][index])  # stored + counted
        if kind != "down":  # storage down takes a batch's rows as a block: queued together
            assert got[0][index] == expected[0][index], kind
            assert lost == expected[1].get(index, (0, 0))[1], kind


def test_one_child_taking_a_masked_batch_and_one_refusing_a_row_of_it() -> None:
    taking, refusing = MemorySink(), Refusing(takes_absent=False)
    pipe = Pipeline(close_at_exit=False).drop_none().to(taking, refusing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.write_batch({"x": np.arange(4.0), "loss": [1.0, None, 2.0, None]})
        pipe.close()
    assert taking.records == [
        {"x": 0.0, "loss": 1.0},
        {"x": 1.0},
        {"x": 2.0, "loss": 2.0},
        {"x": 3.0},
    ]
    assert refusing.records == [{"x": 0.0, "loss": 1.0}, {"x": 1.0}, {"x": 3.0}]
    (failure,) = pipe.failures()
    assert failure.startswith("MemorySink(3 records)") and "1 records lost" in failure


def test_rows_of_a_masked_batch_are_written_once_whatever_the_children() -> None:
    """Rows whose every cell is None are empty records for each kind of child."""
    taking, runs = MemorySink(), MemorySink()
    runs.takes_absent = False
    null = NullSink()
    head = NoneFilter()
    head.connect(Dispatcher(taking, runs, null))
    head.write_batch({"a": [None, 1.0, None], "b": [None, None, None]})
    head.close()
    assert taking.records == runs.records == [{}, {"a": 1.0}, {}]
    assert null.count == 3


def test_a_child_connected_during_a_masked_batch_gets_the_batches_after_it() -> None:
    """A child that connects a sibling while it takes a masked batch: the batch goes on to
    the children it started with, and the next batch to all of them."""
    late = MemorySink()

    class Connecting(MemorySink):
        def write_batch(self, columns: Columns) -> None:
            super().write_batch(columns)
            if late not in dispatcher.children:
                dispatcher.connect(late)

    first, after = Connecting(), MemorySink()
    after.takes_absent = False
    dispatcher = Dispatcher(first, after)
    head = NoneFilter()
    head.connect(dispatcher)
    head.write_batch({"a": [1.0, None], "b": [None, 2.0]})
    head.write_batch({"a": [3.0, None], "b": [None, 4.0]})
    head.close()
    expected = [{"a": 1.0}, {"b": 2.0}, {"a": 3.0}, {"b": 4.0}]
    assert first.records == after.records == expected
    assert late.records == expected[2:]
