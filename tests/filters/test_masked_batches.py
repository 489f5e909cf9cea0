"""NoneFilter passes a batch with None cells on whole (`MaskedColumns`: None is an absent key)
when every node below takes it, and cuts it into runs otherwise; either way the records,
files and counts are those of writing the rows one by one."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters import AggregateFilter, Dispatcher, NoneFilter, SmoothingFilter, TimeFilter
from pipeline.core.columns import Columns, MaskedColumns, iter_rows
from pipeline.core.node import Node
from sinks import CsvSink, JsonlSink, MemorySink, NullSink

KEYS = ("return", "loss", "steps", "tag")

finite = st.floats(-1e6, 1e6, allow_nan=False)
cell = st.one_of(st.none(), finite, st.just(math.nan), st.integers(-5, 5))


@st.composite
def streams(draw: st.DrawFn) -> tuple[dict[str, Any], list[int]]:
    """Columns of one length (lists with None, all-None lists, float arrays, object arrays)
    and the cuts of the stream into batches."""
    length = draw(st.integers(1, 40))
    columns: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True)):
        kind = draw(st.sampled_from(["list", "all_none", "floats", "object"]))
        if kind == "all_none":
            columns[key] = [None] * length
        elif kind == "floats":
            numbers = st.one_of(finite, st.just(math.nan))
            columns[key] = np.array(draw(st.lists(numbers, min_size=length, max_size=length)))
        else:
            values = draw(st.lists(cell, min_size=length, max_size=length))
            columns[key] = values if kind == "list" else np.array(values, dtype=object)
    cuts = sorted(set(draw(st.lists(st.integers(1, length - 1), max_size=4)))) if length > 1 else []
    return columns, cuts


class Probe(Node):
    """A leaf that records the batches it gets; `takes_absent` as told."""

    def __init__(self, takes_absent: bool) -> None:
        super().__init__()
        self.takes_absent = takes_absent
        self.batches: list[Columns] = []

    def write_batch(self, columns: Columns) -> None:
        self.batches.append(columns)


class RowsOnly(Node):
    """A leaf without a batch path of its own and no `takes_absent`: it gets rows."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    def write(self, data: Any) -> None:
        self.records.append(dict(data))


class RunsOnly(Node):
    """A leaf with a batch path of its own that does not take absent keys: it keeps the rows
    of the batches it gets, which never hold a None cell."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    def write(self, data: Any) -> None:
        self.records.append(dict(data))

    def write_batch(self, columns: Columns) -> None:
        assert type(columns) is not MaskedColumns
        rows = list(iter_rows(columns))
        assert None not in [value for row in rows for value in row.values()]
        self.records.extend(rows)


def same(value: Any) -> Any:
    """A value as compared: numbers as the repr of their float (NaN equal to NaN)."""
    if value is None or isinstance(value, str):
        return value
    return repr(float(value))


def records(sink: MemorySink | RowsOnly | RunsOnly) -> list[list[tuple[str, Any]]]:
    return [[(key, same(value)) for key, value in record.items()] for record in sink.records]


Graph = Callable[[Path], tuple[Node, list[Any]]]


def chain(*nodes: Node) -> Node:
    for upper, lower in pairwise(nodes):
        upper.connect(lower)
    return nodes[0]


def smooth_throttle_files(work: Path) -> tuple[Node, list[Any]]:
    memory = MemorySink()
    csv, jsonl = CsvSink(work / "a.csv"), JsonlSink(work / "a.jsonl")
    top = chain(
        NoneFilter(), SmoothingFilter("return|loss", 0.9), TimeFilter(0.0),
        Dispatcher(memory, csv, jsonl),
    )
    return top, [memory, csv, jsonl]


def mixed_fan_out(work: Path) -> tuple[Node, list[Any]]:
    memory, rows = MemorySink(), RowsOnly()
    csv = CsvSink(work / "b.csv")
    top = chain(NoneFilter(), SmoothingFilter("return", 0.5), Dispatcher(memory, rows, csv))
    return top, [memory, rows, csv]


def train_chain_mixed_leaves(work: Path) -> tuple[Node, list[Any]]:
    memory, runs, null = MemorySink(), RunsOnly(), NullSink()
    top = chain(
        NoneFilter(),
        SmoothingFilter("return|loss", 0.9),
        TimeFilter(0.0),
        Dispatcher(memory, runs, null, RowsOnly()),
    )
    return top, [memory, runs, null]


def aggregate_below(work: Path) -> tuple[Node, list[Any]]:
    memory = MemorySink()
    return chain(NoneFilter(), AggregateFilter("return|loss"), memory), [memory]


def smooth_to_memory(work: Path) -> tuple[Node, list[Any]]:
    memory = MemorySink()
    return chain(NoneFilter(), SmoothingFilter("return|tag"), memory), [memory]


def throttled_keeping_last(work: Path) -> tuple[Node, list[Any]]:
    memory = MemorySink()
    still = TimeFilter(5.0, keep_last=True, clock=lambda: 0.0)  # one instant: batch = rows
    return chain(NoneFilter(), SmoothingFilter("loss"), still, memory), [memory]


GRAPHS: list[Graph] = [
    smooth_throttle_files, mixed_fan_out, aggregate_below, smooth_to_memory,
    throttled_keeping_last, train_chain_mixed_leaves,
]


def outputs(top: Node, leaves: list[Any]) -> list[Any]:
    top.close()
    out: list[Any] = []
    for leaf in leaves:
        if isinstance(leaf, (MemorySink, RowsOnly, RunsOnly)):
            out.append(records(leaf))
        elif isinstance(leaf, NullSink):
            out.append(leaf.count)
        else:
            out.append(leaf.path.read_bytes())
    nodes = top.nodes()
    out.append([(type(node).__name__, dict(node.counts)) for node in nodes])
    return out


def rows_of(columns: dict[str, Any]) -> list[dict[str, Any]]:
    length = len(next(iter(columns.values())))
    return [{key: column[i] for key, column in columns.items()} for i in range(length)]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stream=streams(), graph=st.sampled_from(GRAPHS))
def test_batches_with_none_cells_give_what_rows_give(
    tmp_path_factory: Any, stream: tuple[dict[str, Any], list[int]], graph: Graph
) -> None:
    columns, cuts = stream
    length = len(next(iter(columns.values())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_rows, by_rows_leaves = graph(tmp_path_factory.mktemp("rows"))
        for record in rows_of(columns):
            by_rows.write(record)
        expected = outputs(by_rows, by_rows_leaves)
        by_batches, leaves = graph(tmp_path_factory.mktemp("batches"))
        for start, stop in zip([0, *cuts], [*cuts, length], strict=True):
            by_batches.write_batch({key: column[start:stop] for key, column in columns.items()})
        assert outputs(by_batches, leaves) == expected


def test_a_batch_with_none_cells_goes_whole_to_a_graph_that_takes_absent_keys() -> None:
    probe = Probe(takes_absent=True)
    top = chain(NoneFilter(), SmoothingFilter("return"), TimeFilter(0.0), Dispatcher(probe))
    loss = [1.0, None, 2.0, None, None, 3.0]
    top.write_batch({"return": np.arange(6.0), "loss": loss})
    assert len(probe.batches) == 1
    (batch,) = probe.batches
    assert type(batch) is MaskedColumns and batch["loss"] == loss


def test_a_leaf_that_does_not_take_absent_keys_gets_runs_without_none() -> None:
    """The Dispatcher cuts the batch for that leaf alone: the nodes above it and its other
    leaves get it whole."""
    taking, refusing = Probe(takes_absent=True), Probe(takes_absent=False)
    smooth = SmoothingFilter("return")
    top = chain(NoneFilter(), smooth, Dispatcher(taking, refusing))
    top.write_batch({"return": np.arange(4.0), "loss": [1.0, None, None, 2.0]})
    assert [list(batch) for batch in refusing.batches] == [
        ["return", "loss", "return_smoothed_0.99"],
        ["return", "return_smoothed_0.99"],
        ["return", "loss", "return_smoothed_0.99"],
    ]
    assert [type(batch) for batch in taking.batches] == [MaskedColumns]


def test_a_node_below_that_does_not_take_absent_keys_gets_runs_without_none() -> None:
    refusing = Probe(takes_absent=False)
    top = chain(NoneFilter(), SmoothingFilter("return"), refusing)
    top.write_batch({"return": np.arange(4.0), "loss": [1.0, None, None, 2.0]})
    assert [list(batch) for batch in refusing.batches] == [
        ["return", "loss", "return_smoothed_0.99"],
        ["return", "return_smoothed_0.99"],
        ["return", "loss", "return_smoothed_0.99"],
    ]


def test_the_answer_is_asked_again_when_the_graph_below_changes() -> None:
    taking, child = Probe(takes_absent=True), Probe(takes_absent=True)
    dispatcher = Dispatcher(taking)
    top = chain(NoneFilter(), dispatcher)
    top.write_batch({"x": np.arange(2.0), "loss": [1.0, None]})
    dispatcher.connect(child)
    top.write_batch({"x": np.arange(2.0), "loss": [1.0, None]})
    child.takes_absent = False
    child.connect(Probe(takes_absent=True))  # a change below a child reaches the dispatcher
    top.write_batch({"x": np.arange(2.0), "loss": [1.0, None]})
    assert [type(batch) for batch in taking.batches] == [MaskedColumns] * 3
    assert [(type(batch), list(batch)) for batch in child.batches] == [
        (MaskedColumns, ["x", "loss"]),
        (dict, ["x", "loss"]),
        (dict, ["x"]),
    ]


def test_smoothing_a_masked_column_skips_absent_rows_and_leaves_their_output_absent() -> None:
    memory = MemorySink()
    top = chain(NoneFilter(), SmoothingFilter("loss", 0.5), memory)
    top.write_batch({"loss": [None, 2.0, None, 4.0]})
    assert memory.records == [{}, {"loss": 2.0, "loss_smoothed_0.5": 2.0}, {},
                              {"loss": 4.0, "loss_smoothed_0.5": 0.95 * 4.0 + 0.05 * 2.0}]
    assert not top._children[0].counts


def test_a_csv_header_holds_a_key_none_in_every_row_only_once_a_row_has_it(
    tmp_path: Path,
) -> None:
    csv = CsvSink(tmp_path / "a.csv")
    top = chain(NoneFilter(), csv)
    top.write_batch({"gone": [None, None], "late": [None, 1.5], "x": np.array([1.0, 2.0])})
    top.close()
    assert (tmp_path / "a.csv").read_text() == "x,late\n1.0,\n2.0,1.5\n"


def test_jsonl_leaves_a_masked_key_out_of_its_row(tmp_path: Path) -> None:
    jsonl = JsonlSink(tmp_path / "a.jsonl")
    top = chain(NoneFilter(), jsonl)
    top.write_batch({"x": np.array([1.0, 2.0]), "loss": [None, 0.5]})
    top.close()
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [list(row.items()) for row in rows] == [[("x", 1.0)], [("x", 2.0), ("loss", 0.5)]]


class BatchRefusing(Node):
    """A leaf that takes absent keys but whose batch path raises `error`: the Dispatcher
    then gives it the rows one by one."""

    takes_absent = True

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.records: list[dict[str, Any]] = []

    def write_batch(self, columns: Columns) -> None:
        raise self.error

    def write(self, data: Any) -> None:
        self.records.append(dict(data))


def test_rows_a_dispatcher_falls_back_to_leave_masked_keys_out() -> None:
    for error in (ValueError("no batches"), OSError("disk down")):
        leaf = BatchRefusing(error)
        top = chain(NoneFilter(), Dispatcher(leaf))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            top.write_batch({"x": np.arange(3.0), "loss": [None, 1.0, None]})
            top.close()
        assert leaf.records == [{"x": 0.0}, {"x": 1.0, "loss": 1.0}, {"x": 2.0}], error


class FailsOnce(Node):
    """A leaf that does not take absent keys and whose batch path raises `error` at its
    second batch (having taken none of its rows); its rows still come one by one."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.batches = 0
        self.records: list[dict[str, Any]] = []

    def write_batch(self, columns: Columns) -> None:
        self.batches += 1
        if self.batches == 2:
            raise self.error
        self.records.extend(iter_rows(columns))

    def write(self, data: Any) -> None:
        self.records.append(dict(data))


def test_a_run_a_leaf_refuses_leaves_the_runs_before_it_taken_once_and_in_order() -> None:
    loss = [1.0, None, None, 2.0, None, 3.0]
    expected = [
        {"x": float(i), "loss": v} if v is not None else {"x": float(i)} for i, v in enumerate(loss)
    ]
    for error in (ValueError("no batches"), OSError("disk down")):
        leaf = FailsOnce(error)
        top = chain(NoneFilter(), Dispatcher(MemorySink(), leaf))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            top.write_batch({"x": np.arange(6.0), "loss": loss})
            top.close()
        assert leaf.records == expected, error
