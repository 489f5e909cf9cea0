"""The fast paths (fused writes, NoneFilter's inlined scan, the EMA's inline step and its
all-finite column path, generated row builders, `plain`'s integer path, AggregateFilter's
per-key-tuple writers) give exactly what the general paths give: no key, row or value a caller
wrote disappears, doubles or changes; fused and unfused chains give identical records, counts
and files."""

from __future__ import annotations

import copy
import json
import math
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import AggregateFilter, AsyncNode, Dispatcher, NoneFilter, SmoothingFilter
from pipeline import ClosedError, Node, Pipeline
from pipeline.core.columns import batch_length, batch_rows, holds_none, iter_rows, none_mask
from pipeline.core.fusion import Transform
from pipeline.core.names import smoothed_name, stat_name
from pipeline.core.values import plain
from sinks import CsvSink, JsonlSink, MemorySink
from tests.conftest import FakeClock, PlainMapping, StorageDown
from tests.reference import warmup_ema

# Warnings (a failing sink, a skipped value) are what these tests provoke, not what they test.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")

# -- helpers --------------------------------------------------------------------------------


class Recorder(Node):
    """A leaf that keeps every record exactly as it receives it (no copy): what a node passes
    on, object for object."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[Any] = []

    def write(self, data: Any) -> None:
        self.got.append(data)


class Broken(Node):
    """A leaf that refuses every record (an error about the record: counted lost)."""

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__()
        self.error = error or ValueError("broken sink")
        self.calls = 0

    def write(self, data: Any) -> None:
        self.calls += 1
        raise self.error


class Same(Transform):
    """A record-to-record step that passes every record on as it is (called, not inlined)."""

    drops = False

    def transform(self, data: Any) -> Any:
        return data


class Sub(dict[Any, Any]):
    """A dict subclass."""


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types (numpy scalars as their Python values), NaN equal to NaN,
    dicts with keys in the same order."""
    if isinstance(a, np.generic):
        a = a.item()
    if isinstance(b, np.generic):
        b = b.item()
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and same(a.tolist(), b.tolist())
    return type(a) is type(b) and bool(a == b)


def in_thread(function: Callable[[], Any], timeout: float = 10.0) -> tuple[bool, Any]:
    """Runs `function` on another thread; (whether it finished in time, its result or
    error). A lock left held shows as a write that never finishes."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(function())
        except BaseException as error:  # reported to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return (not thread.is_alive(), outcome[0] if outcome else None)


# -- 1. the fused write: check, lock, run -----------------------------------------------------

CHAINS: dict[str, Callable[[Pipeline], Pipeline]] = {
    "no filters (dispatcher inlined)": lambda pipe: pipe,
    "drop_none": lambda pipe: pipe.drop_none(),
    "called step, drop_none": lambda pipe: pipe.then(Same()).drop_none(),
    "drop_none, smooth, drop_none": lambda pipe: pipe.drop_none().smooth("r", 0.5).drop_none(),
}


def unfused(chain: str) -> tuple[Node, list[Node]]:
    """The nodes of CHAINS[chain], each calling the next (no Pipeline, no fusion)."""
    makers: dict[str, Callable[[], list[Node]]] = {
        "no filters (dispatcher inlined)": lambda: [],
        "drop_none": lambda: [NoneFilter()],
        "called step, drop_none": lambda: [Same(), NoneFilter()],
        "drop_none, smooth, drop_none": lambda: [
            NoneFilter(), SmoothingFilter("r", 0.5), NoneFilter()
        ],
    }
    nodes = makers[chain]()
    for upper, lower in zip(nodes, nodes[1:], strict=False):  # noqa: RUF007
        upper.connect(lower)
    return (nodes[0] if nodes else Node()), nodes


MAPPINGS: dict[str, Callable[[dict[Any, Any]], Mapping[Any, Any]]] = {
    "dict": dict,
    "dict subclass": Sub,
    "OrderedDict": OrderedDict,
    "defaultdict": lambda data: defaultdict(int, data),
    "MappingProxyType": MappingProxyType,
    "custom Mapping": PlainMapping,
}

STREAM: list[dict[Any, Any]] = [
    {"r": 1.0, "x": None, "s": "a"},
    {"r": None, "x": 2},
    {"x": None},
    {},
    {"r": 3.0, 7: [1, 2], ("t", 1): None},
    {"r": math.nan, "x": math.inf},
    {"r": 5, "x": -0.0},
]


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("kind", sorted(MAPPINGS))
@pytest.mark.parametrize("thread_safe", [True, False])
def test_any_mapping_crosses_a_fused_chain_as_it_crosses_the_same_nodes_unfused(
    chain: str, kind: str, thread_safe: bool
) -> None:
    memory, unfused_sink = MemorySink(), MemorySink()
    pipe = CHAINS[chain](Pipeline(close_at_exit=False, thread_safe=thread_safe)).to(memory)
    head, nodes = unfused(chain)
    last = nodes[-1] if nodes else head
    last.connect(unfused_sink)
    for record in STREAM:
        pipe.write(MAPPINGS[kind](dict(record)))
        head.write(MAPPINGS[kind](dict(record)))
    pipe.close()
    head.close()
    assert len(memory.records) == len(STREAM)
    assert same(memory.records, unfused_sink.records)
    assert [dict(node.counts) for node in pipe.steps[:-2]] == [
        dict(node.counts) for node in nodes
    ]


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("thread_safe", [True, False])
@pytest.mark.parametrize(
    "bad", [[("r", 1.0)], None, 3, "r", ("r",), {"r"}], ids=repr
)
def test_a_fused_write_refuses_what_is_not_a_mapping_before_anything_is_written(
    chain: str, thread_safe: bool, bad: Any
) -> None:
    memory = MemorySink()
    pipe = CHAINS[chain](Pipeline(close_at_exit=False, thread_safe=thread_safe)).to(memory)
    with pytest.raises(TypeError, match="mapping of metric names"):
        pipe.write(bad)
    pipe.write({"r": 2.0})
    pipe.close()
    assert [record["r"] for record in memory.records] == [2.0]


def test_a_record_without_none_reaches_the_sinks_as_the_very_object_written() -> None:
    """No copy on the fused path (the inlined NoneFilter and Dispatcher pass the record)."""
    for chain in ("no filters (dispatcher inlined)", "drop_none"):
        recorder = Recorder()
        pipe = CHAINS[chain](Pipeline(close_at_exit=False)).to(recorder)
        for kind in MAPPINGS.values():
            record = kind({"r": 1.0, 0: "zero"})
            pipe.write(record)
            assert recorder.got[-1] is record
        pipe.close()


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_a_failing_first_sink_does_not_keep_the_record_from_the_second(chain: str) -> None:
    broken, memory = Broken(), MemorySink()
    pipe = CHAINS[chain](Pipeline(close_at_exit=False)).to(broken, memory)
    for i in range(5):
        pipe.write({"i": i, "r": float(i)})
    assert [record["i"] for record in memory.records] == list(range(5))
    assert broken.calls == 5
    assert "5 records lost" in pipe.failures()[0]
    # the lock was let go each time: another thread's write goes through at once
    finished, error = in_thread(lambda: pipe.write({"i": 5}))
    assert finished and error is None
    assert memory.records[-1]["i"] == 5
    pipe.close()


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("thread_safe", [True, False])
def test_a_sink_may_write_back_into_its_own_pipeline(chain: str, thread_safe: bool) -> None:
    """The lock is re-entrant: a write from inside a sink of the same pipeline completes,
    and both records reach every sink, the inner one first (it is written first)."""
    memory = MemorySink()

    class Echo(Node):
        pipe: Pipeline

        def write(self, data: Any) -> None:
            if data.get("echo"):
                self.pipe.write({"i": data["i"] + 100, "r": 1.0})

    echo = Echo()
    pipe = CHAINS[chain](Pipeline(close_at_exit=False, thread_safe=thread_safe)).to(
        echo, memory
    )
    echo.pipe = pipe
    finished, error = in_thread(lambda: pipe.write({"i": 1, "echo": True, "r": 2.0}))
    assert finished and error is None
    assert [record["i"] for record in memory.records] == [101, 1]
    assert pipe.failures() == []
    pipe.close()


class Explode(Transform):
    """A step whose transform raises for a record holding "boom"."""

    drops = False

    def transform(self, data: Any) -> Any:
        if "boom" in data:
            raise RuntimeError("boom")
        return data


@pytest.mark.parametrize("strict", [False, True])
def test_an_error_raised_inside_a_fused_run_lets_go_of_the_lock(strict: bool) -> None:
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False, strict=strict).drop_none().then(Explode()).to(memory)
    with pytest.raises(RuntimeError, match="boom"):
        pipe.write({"boom": 1})
    finished, error = in_thread(lambda: pipe.write({"r": 1.0, "x": None}))
    assert finished and error is None
    assert memory.records == [{"r": 1.0}]
    pipe.close()


def test_a_strict_pipeline_without_filters_raises_and_lets_go_of_the_lock() -> None:
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False, strict=True).to(Broken(), memory)
    with pytest.raises(ValueError, match="broken sink"):
        pipe.write({"r": 1.0})
    finished, error = in_thread(lambda: pipe.write({"r": 2.0}))
    assert finished and isinstance(error, ValueError)


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("thread_safe", [True, False])
@pytest.mark.parametrize("record", [{"r": 1.0}, MappingProxyType({"r": 1.0}), [1, 2]], ids=repr)
def test_writing_to_a_closed_pipeline_raises_closed_error(
    chain: str, thread_safe: bool, record: Any
) -> None:
    memory = MemorySink()
    pipe = CHAINS[chain](Pipeline(close_at_exit=False, thread_safe=thread_safe)).to(memory)
    pipe.write({"r": 0.0})
    pipe.close()
    with pytest.raises(ClosedError, match="is closed"):
        pipe.write(record)
    with pytest.raises(ClosedError, match="is closed"):
        pipe.write_batch({"r": [1.0]})
    assert [record["r"] for record in memory.records] == [0.0]


def test_a_sink_connected_to_the_inlined_dispatcher_after_the_chain_ended_gets_records() -> None:
    first, later = MemorySink(), MemorySink()
    pipe = Pipeline(close_at_exit=False).to(first)
    pipe.write({"i": 0})
    dispatcher = pipe.steps[0]
    assert isinstance(dispatcher, Dispatcher)
    dispatcher.connect(later)
    pipe.write({"i": 1})
    dispatcher.disconnect(first)
    pipe.write({"i": 2})
    pipe.close()
    assert [record["i"] for record in first.records] == [0, 1]
    assert [record["i"] for record in later.records] == [1, 2]


def test_a_step_that_fans_out_after_the_chain_ended_sends_each_later_record_to_both() -> None:
    none = NoneFilter()
    memory, later = MemorySink(), MemorySink()
    pipe = Pipeline(close_at_exit=False).then(none).to(memory)
    pipe.write({"i": 0, "x": None})
    none.connect(later)  # none now fans out: the run ends there
    pipe.write({"i": 1, "x": None})
    pipe.close()
    assert memory.records == [{"i": 0}, {"i": 1}]
    assert later.records == [{"i": 1}]


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("thread_safe", [True, False])
@pytest.mark.parametrize("where", ["the dispatcher", "the last step"])
def test_a_write_kept_before_a_node_is_connected_delivers_to_it(
    chain: str, thread_safe: bool, where: str
) -> None:
    first, later = MemorySink(), MemorySink()
    pipe = CHAINS[chain](Pipeline(thread_safe=thread_safe, close_at_exit=False)).to(first)
    write = pipe.write  # kept, as `logger=pipe.write` or a framework's callback keeps it
    write({"i": 0})
    below: Node = next(node for node in pipe.steps if isinstance(node, Dispatcher))
    if where == "the last step":
        below = below._parents[0]
    below.connect(later)
    write({"i": 1})
    pipe.write({"i": 2})
    assert [record["i"] for record in first.records] == [0, 1, 2]
    assert [record["i"] for record in later.records] == [1, 2]
    pipe.close()
    with pytest.raises(ClosedError):
        write({"i": 3})
    assert [record["i"] for record in first.records] == [0, 1, 2]


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_a_pipeline_whose_sink_recovered_while_closing_still_refuses_records(chain: str) -> None:
    flaky = StorageDown()
    pipe = CHAINS[chain](Pipeline(close_at_exit=False)).to(flaky)
    flaky.down = True
    pipe.write({"i": 0})
    flaky.down = False
    pipe.close()  # the queued record is delivered; the sink recovers
    assert [record["i"] for record in flaky.records] == [0]
    with pytest.raises(ClosedError):
        pipe.write({"i": 1})


def test_connecting_a_node_below_a_closed_pipeline_does_not_reopen_its_write() -> None:
    none = NoneFilter()
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).then(none).to(memory)
    pipe.close()
    none.connect(MemorySink())
    with pytest.raises(ClosedError):
        pipe.write({"i": 1})


@pytest.mark.parametrize("chain", ["no filters (dispatcher inlined)", "drop_none"])
def test_a_write_back_that_puts_a_sink_behind_its_retry_queue_loses_nothing(chain: str) -> None:
    flaky = StorageDown()

    class Echo(Node):
        pipe: Pipeline

        def write(self, data: Any) -> None:
            if data.get("echo"):
                self.pipe.write({"i": 2})

    echo = Echo()
    pipe = CHAINS[chain](Pipeline(close_at_exit=False)).to(echo, flaky)
    echo.pipe = pipe
    flaky.down = True
    pipe.write({"i": 1, "echo": True})
    flaky.down = False
    pipe.close()
    assert sorted(record["i"] for record in flaky.records) == [1, 2]


class DropNaN(NoneFilter):
    """A NoneFilter that also drops NaN values: its own transform."""

    def transform(self, data: Any) -> Any:
        return {key: value for key, value in data.items() if value is not None and value == value}


def test_a_none_filter_subclass_with_its_own_transform_gives_the_same_records_fused() -> None:
    fused_sink, unfused_sink = MemorySink(), MemorySink()
    pipe = Pipeline(close_at_exit=False).then(DropNaN()).to(fused_sink)
    alone = DropNaN()
    alone.connect(unfused_sink)
    for record in ({"a": math.nan, "b": 1.0, "c": None}, {"a": 2.0}):
        pipe.write(record)
        alone.write(record)
    assert unfused_sink.records == [{"b": 1.0}, {"a": 2.0}]
    assert fused_sink.records == unfused_sink.records


class CountingDispatcher(Dispatcher):
    """A Dispatcher subclass with its own write (it counts what it fans out)."""

    def __init__(self, *children: Node) -> None:
        super().__init__(*children)
        self.seen = 0

    def write(self, data: Any) -> None:
        self.seen += 1
        super().write(data)


@pytest.mark.parametrize("chain", ["no filters (dispatcher inlined)", "drop_none"])
def test_a_dispatcher_subclass_with_its_own_write_is_called_not_inlined(chain: str) -> None:
    first, second = MemorySink(), MemorySink()
    counting = CountingDispatcher(first)
    pipe = CHAINS[chain](Pipeline(close_at_exit=False)).then(counting).to(second)
    for i in range(3):
        pipe.write({"i": i})
    assert [record["i"] for record in first.records] == [0, 1, 2]
    assert [record["i"] for record in second.records] == [0, 1, 2]
    assert counting.seen == 3


# -- 2. NoneFilter: alone, fused, by batch --------------------------------------------------


class EqualsNone:
    """Equal to everything, None included; truthy."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


class RaisesOnEq:
    """Raises on ==, on bool() and on hash()."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no ==")

    def __bool__(self) -> bool:
        raise RuntimeError("no bool")

    __hash__ = None  # type: ignore[assignment]


WEIRD = [
    None,
    math.nan,
    0.0,
    0,
    False,
    "",
    "None",
    np.float64("nan"),
    np.array([np.nan, 1.0]),
    np.array([], dtype=np.float64),
    np.array(None, dtype=object),
    [None],
    {},
    EqualsNone(),
    RaisesOnEq(),
]
KEYS: list[Any] = ["r", 7, ("t", 1), "not an identifier!", "class", b"raw", -0.5]

weird_values = st.sampled_from(range(len(WEIRD)))
weird_records = st.lists(
    st.dictionaries(st.sampled_from(range(len(KEYS))), weird_values, max_size=len(KEYS)),
    min_size=1,
    max_size=12,
)


def _materialise(indices: list[dict[int, int]]) -> list[dict[Any, Any]]:
    return [{KEYS[k]: WEIRD[v] for k, v in sorted(r.items())} for r in indices]


def _same_objects(got: list[Any], expected: list[dict[Any, Any]]) -> None:
    assert len(got) == len(expected)
    for record, wanted in zip(got, expected, strict=True):
        assert list(record) == list(wanted)
        assert all(record[key] is wanted[key] for key in wanted)


@settings(max_examples=60, deadline=None)
@given(stream=weird_records)
def test_none_filter_drops_exactly_the_none_values_alone_fused_and_by_batch(
    stream: list[dict[int, int]],
) -> None:
    records = _materialise(stream)
    expected = [{k: v for k, v in record.items() if v is not None} for record in records]

    alone_sink = Recorder()
    alone = NoneFilter()
    alone.connect(alone_sink)
    for record in records:
        alone.write(record)
    _same_objects(alone_sink.got, expected)

    for chain in ("drop_none", "called step, drop_none"):
        fused_sink = Recorder()
        pipe = CHAINS[chain](Pipeline(close_at_exit=False)).to(fused_sink)
        for record in records:
            pipe.write(record)
        pipe.close()
        _same_objects(fused_sink.got, expected)

    # by batch: one batch of the records that share the first record's keys
    keys = list(records[0])
    rows = [record for record in records if list(record) == keys]
    for as_array in (False, True):
        columns: dict[Any, Any] = {}
        for key in keys:
            values = [row[key] for row in rows]
            if as_array:
                column = np.empty(len(values), dtype=object)
                for index, value in enumerate(values):
                    column[index] = value
                columns[key] = column
            else:
                columns[key] = values
        batch_sink = Recorder()
        batch = NoneFilter()
        batch.connect(batch_sink)
        if columns:
            batch.write_batch(columns)
            _same_objects(batch_sink.got, [{k: v for k, v in row.items() if v is not None}
                                           for row in rows])


def test_a_record_of_only_none_values_becomes_one_empty_record_everywhere() -> None:
    record: dict[Any, Any] = {"a": None, 7: None, ("t",): None}
    alone_sink, fused_sink, batch_sink = Recorder(), Recorder(), Recorder()
    alone = NoneFilter()
    alone.connect(alone_sink)
    alone.write(record)
    pipe = Pipeline(close_at_exit=False).drop_none().smooth("a").to(fused_sink)
    pipe.write(record)
    pipe.write(MappingProxyType(record))
    batch = NoneFilter()
    batch.connect(batch_sink)
    batch.write_batch({key: (None, None, None) for key in record})
    assert alone_sink.got == [{}]
    assert fused_sink.got == [{}, {}]
    assert batch_sink.got == [{}, {}, {}]


# -- 3. SmoothingFilter: the inline step and the all-finite column path ---------------------


def tensorboard_ema(xs: list[float], coeff: float) -> list[float]:
    """m_t = coeff m_{t-1} + (1 - coeff) x_t, m_0 = 0; s_t = m_t / (1 - coeff^t)."""
    out: list[float] = []
    m, power = 0.0, 1.0
    for x in xs:
        power *= coeff
        m = coeff * m + (1.0 - coeff) * x
        out.append(m / (1.0 - power) if power != 1.0 else m)
    return out


NUMERIC = {
    "int64": st.integers(-(2**63), 2**63 - 1),
    "uint64": st.integers(2**63, 2**64 - 1),
    "int8": st.integers(-128, 127),
    "bool": st.booleans(),
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "float16": st.floats(width=16, allow_nan=False, allow_infinity=False),
    "float64": st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300,
                         max_value=1e300),
}


@st.composite
def numeric_batches(draw: st.DrawFn) -> tuple[str, list[np.ndarray]]:
    dtype = draw(st.sampled_from(sorted(NUMERIC)))
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    arrays = [
        np.array(draw(st.lists(NUMERIC[dtype], min_size=n, max_size=n)), dtype=dtype)
        for n in sizes
    ]
    return dtype, arrays


def smoothing_into(
    sink: Node, feed: str, coeff: float, bias_correction: bool
) -> tuple[Node, SmoothingFilter]:
    """What a test writes to (a fused pipeline for "fused", else the filter itself) and the
    SmoothingFilter, which sends to `sink`."""
    smoother = SmoothingFilter("r", coeff, bias_correction=bias_correction)
    if feed == "fused":
        return Pipeline(close_at_exit=False).then(smoother).to(sink), smoother
    smoother.connect(sink)
    return smoother, smoother


@settings(max_examples=80, deadline=None)
@given(batches=numeric_batches(), coeff=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
       bias_correction=st.booleans())
def test_smoothing_numeric_numpy_columns_by_batch_equals_rows_and_the_reference(
    batches: tuple[str, list[np.ndarray]], coeff: float, bias_correction: bool
) -> None:
    _, arrays = batches
    name = smoothed_name("r", coeff)
    xs = [float(x) for array in arrays for x in array.tolist()]
    expected = tensorboard_ema(xs, coeff) if bias_correction else warmup_ema(xs, coeff)
    outputs = []
    for feed in ("rows", "batch", "fused"):
        sink = MemorySink()
        node, _ = smoothing_into(sink, feed, coeff, bias_correction)
        for array in arrays:
            if feed == "batch":
                node.write_batch({"r": array, "step": np.arange(len(array))})
            else:
                for index, x in enumerate(array):
                    node.write({"r": x, "step": index})
        outputs.append(sink.records)
        assert [record[name] for record in sink.records] == expected
        assert all(type(record[name]) in (float, np.float64) for record in sink.records)
        assert same([record["r"] for record in sink.records],
                    [x for array in arrays for x in array])  # the input, as it was
    rows, batch, fused = outputs
    assert same(batch, rows) and same(fused, rows)


mixed = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6),
    st.sampled_from([None, math.nan, math.inf, -math.inf, "x", True, 3, np.float32(0.5),
                     np.int64(-2), [1.0]]),
)


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.lists(mixed, min_size=1, max_size=6), min_size=1, max_size=3),
       bias_correction=st.booleans())
def test_smoothing_mixed_columns_counts_the_same_skips_by_batch_as_by_rows(
    values: list[list[Any]], bias_correction: bool
) -> None:
    outputs = []
    for feed in ("rows", "batch", "fused"):
        sink = MemorySink()
        node, smoother = smoothing_into(sink, feed, 0.9, bias_correction)
        for column in values:
            if feed == "batch":
                node.write_batch({"r": column})
            else:
                for x in column:
                    node.write({"r": x})
        outputs.append((sink.records, dict(smoother.counts)))
    assert same(outputs[1][0], outputs[0][0]) and outputs[1][1] == outputs[0][1]
    assert same(outputs[2][0], outputs[0][0]) and outputs[2][1] == outputs[0][1]
    finite = [
        float(x) for column in values for x in column
        if not isinstance(x, str | list) and x is not None and math.isfinite(float(x))
    ]
    name = smoothed_name("r", 0.9)
    smoothed = [record[name] for record in outputs[0][0] if name in record]
    if not bias_correction and finite:
        assert smoothed[-1] == warmup_ema(finite, 0.9)[-1]


def test_the_all_finite_column_path_continues_the_state_of_earlier_rows() -> None:
    rows_sink, batch_sink = MemorySink(), MemorySink()
    rows = SmoothingFilter("r", 0.8).connect(rows_sink)
    batch = SmoothingFilter("r", 0.8).connect(batch_sink)
    head = [2.0, None, "x", 4.0]
    tail = np.array([2**64 - 1, 0, 7], dtype=np.uint64)
    for x in [*head, *tail]:
        rows.write({"r": x})
    batch.write_batch({"r": head})
    batch.write_batch({"r": tail})
    assert same(batch_sink.records, rows_sink.records)
    assert rows.counts["skipped"] == batch.counts["skipped"] == 1
    expected = warmup_ema([2.0, 4.0, float(2**64 - 1), 0.0, 7.0], 0.8)
    assert [r["r_smoothed_0.8"] for r in batch_sink.records] == [
        expected[0], expected[0], expected[0], *expected[1:]
    ]


LONGDOUBLE_WIDER = np.finfo(np.longdouble).max > np.finfo(np.float64).max


@pytest.mark.skipif(not LONGDOUBLE_WIDER, reason="longdouble is float64 on this platform")
def test_a_longdouble_beyond_float64_is_skipped_by_batch_as_by_rows() -> None:
    column = np.array([np.longdouble("1e400"), 1.0], dtype=np.longdouble)
    outputs = []
    for feed in ("rows", "batch"):
        sink = MemorySink()
        node = SmoothingFilter("r", 0.5).connect(sink)
        if feed == "rows":
            for x in column:
                node.write({"r": x})
        else:
            node.write_batch({"r": column})
        outputs.append(([sorted(map(str, record)) for record in sink.records],
                        node.counts["skipped"]))
    assert outputs[0] == ([["r"], ["r", "r_smoothed_0.5"]], 1)
    assert outputs[1] == outputs[0]


# -- 4. columns: lengths, None masks, rows ---------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 255, 256, 257, 300])
def test_rows_of_a_batch_of_any_width_are_its_rows_in_order(width: int) -> None:
    keys: list[Any] = [f"c{i}" if i % 3 else i for i in range(width)]
    keys[0] = ("tuple", "key")
    kinds: list[Callable[[int], Any]] = [
        lambda i: (i, i + 0.5, None),
        lambda i: range(i, i + 3),
        lambda i: np.array([i, i + 1, i + 2], dtype=np.int64),
        lambda i: np.array([str(i), None, [i]], dtype=object),
        lambda i: [float(i), "s", b"b"],
        lambda i: np.array([True, False, True]),
    ]
    columns = {key: kinds[i % len(kinds)](i) for i, key in enumerate(keys)}
    expected = list(iter_rows(columns))
    got = batch_rows(columns)
    assert len(got) == 3
    assert same(got, expected)
    scalars = batch_rows(columns, python_scalars=True)
    assert same(scalars, expected)
    for row in scalars:
        for key in keys:
            if isinstance(columns[key], np.ndarray) and columns[key].dtype != object:
                assert type(row[key]) in (int, bool)


@pytest.mark.parametrize(
    "columns",
    [{}, {"a": []}, {"a": (), 3: range(0)}, {"a": np.array([]), "b": np.empty(0, dtype=object)}],
    ids=repr,
)
def test_a_batch_of_no_rows_gives_no_rows_anywhere(columns: dict[Any, Any]) -> None:
    assert batch_length(columns) == 0
    assert batch_rows(columns) == [] == list(iter_rows(columns))
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).drop_none().smooth(".*").aggregate(every=2).to(memory)
    pipe.write_batch(columns)
    pipe.close()
    assert memory.records == []


@pytest.mark.parametrize(
    "columns",
    [
        {"a": [1, 2], "b": [1]},
        {"a": (1,), 7: range(3)},
        {"a": np.arange(4), ("k",): [None] * 4, "c": np.empty(2, dtype=object)},
        {f"k{i}": [0] * (i % 2 + 1) for i in range(300)},
    ],
    ids=["two", "tuple and range", "three", "300 columns"],
)
def test_columns_of_unequal_lengths_are_refused_naming_each_length(
    columns: dict[Any, Any],
) -> None:
    for check in (batch_length, batch_rows, lambda c: list(iter_rows(c))):
        with pytest.raises(ValueError, match="equal length") as caught:
            check(columns)
        message = str(caught.value)
        for key, column in columns.items():
            assert f"{key!r}: {len(column)}" in message
    for node in (MemorySink(), NoneFilter().connect(MemorySink()),
                 SmoothingFilter(".*").connect(MemorySink()),
                 AggregateFilter(every=2).connect(MemorySink())):
        with pytest.raises(ValueError, match="equal length"):
            node.write_batch(columns)


@pytest.mark.parametrize(
    "column",
    [
        (None, 1, None),
        [0, None, False],
        range(3),
        np.array([None, 1, np.nan], dtype=object),
        np.array([1.0, np.nan, 2.0]),
        ("None", EqualsNone(), None),
    ],
    ids=["tuple", "list", "range", "object array", "float array", "weird"],
)
def test_the_none_mask_marks_exactly_the_values_that_are_none(column: Any) -> None:
    mask = none_mask(column, len(column))
    expected = [value is None for value in column]
    assert holds_none(column) is (mask is not None)
    if isinstance(column, np.ndarray) and column.dtype != object:
        assert mask is None
    elif any(expected):
        assert mask is not None and mask.tolist() == expected
    else:
        assert mask is None


def _mutable_columns() -> dict[str, Any]:
    return {
        "ints": [1, 2, 3],
        "lists": [[1], [2, 3], []],
        "dicts": [{"a": 1}, {"a": [2]}, {}],
        "arrays": [np.array([1.0]), np.array([2.0]), np.array([3.0])],
        "mixed": [1, [2], "three"],
        "objects": _objects([[1], [2], [3]]),
    }


def _objects(values: list[Any]) -> np.ndarray:
    column = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        column[index] = value
    return column


def _mutate(columns: dict[str, Any]) -> None:
    columns["ints"][0] = 99
    columns["lists"][0].append(99)
    columns["lists"][1][0] = 99
    columns["dicts"][1]["a"].append(99)
    columns["dicts"][2]["new"] = 99
    columns["arrays"][0][0] = 99.0
    columns["mixed"][1].append(99)
    columns["objects"][0].append(99)


def test_a_later_change_to_a_batch_does_not_reach_the_rows_a_memory_sink_holds() -> None:
    columns = _mutable_columns()
    expected = list(iter_rows(copy.deepcopy(columns)))
    sink = MemorySink()
    sink.write_batch(columns)
    _mutate(columns)
    assert same(sink.records, expected)


@pytest.mark.parametrize("sink_class", [CsvSink, JsonlSink])
def test_a_later_change_to_a_batch_does_not_reach_the_rows_a_file_sink_holds(
    tmp_path: Path, sink_class: type[CsvSink] | type[JsonlSink]
) -> None:
    reference = sink_class(tmp_path / "rows.out", flush_every=1000, flush_seconds=None)
    for row in iter_rows(copy.deepcopy(_mutable_columns())):
        reference.write(row)
    reference.close()
    columns = _mutable_columns()
    sink = sink_class(tmp_path / "batch.out", flush_every=1000, flush_seconds=None)
    sink.write_batch(columns)
    _mutate(columns)
    sink.close()
    assert (tmp_path / "batch.out").read_bytes() == (tmp_path / "rows.out").read_bytes()


def _final_observations() -> np.ndarray:
    """gymnasium's `final_observation`: an object array holding one array per environment."""
    return _objects([np.zeros(2), np.zeros(3), None])


def _changed_in_place(observations: np.ndarray) -> None:
    observations[0][:] = 7.0
    observations[1][1] = 7.0


@pytest.mark.parametrize("path", ["write", "write_batch", "async write", "async write_batch"])
@pytest.mark.parametrize("sink_class", [MemorySink, CsvSink, JsonlSink])
def test_a_later_change_inside_an_object_array_does_not_reach_what_a_sink_holds(
    tmp_path: Path, path: str, sink_class: type[Node]
) -> None:
    def stored(observations: np.ndarray, mutate: bool) -> Any:
        out = tmp_path / f"{mutate}.out"
        sink = MemorySink() if sink_class is MemorySink else sink_class(  # type: ignore[call-arg]
            out, flush_every=1000, flush_seconds=None
        )
        head: Node = sink
        if path.startswith("async"):
            head = AsyncNode(policy="block").connect(sink)
            head._put = _paused_put(head)  # type: ignore[attr-defined]
        if path.endswith("write_batch"):
            head.write_batch({"final_observation": _objects([observations]), "step": [1]})
        else:
            head.write({"final_observation": observations, "step": 1})
        if mutate:
            _changed_in_place(observations)
        head.close()
        return sink.records if isinstance(sink, MemorySink) else out.read_bytes()

    untouched = stored(_final_observations(), mutate=False)
    assert same(stored(_final_observations(), mutate=True), untouched)


def _paused_put(node: Any) -> Callable[[Any], None]:
    """An AsyncNode's queueing, with the thread held until the record is queued (so the
    caller's change comes before the thread writes, as under load)."""
    put = node._put

    def paused(item: Any) -> None:
        node.pause()
        try:
            put(item)
        finally:
            node.resume()

    return paused


# -- 5. plain: numpy ints, uints and bools --------------------------------------------------


def exact_python(value: Any) -> Any:
    """The reference: nested lists of Python ints/bools, element by element via item()."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return value.item()
        return [exact_python(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def assert_exact(got: Any, expected: Any) -> None:
    assert type(got) is type(expected), (got, expected)
    if isinstance(got, list):
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert_exact(a, b)
    else:
        assert got == expected


INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
              np.bool_]


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_plain_makes_python_ints_and_bools_of_numpy_integer_arrays_and_scalars(
    dtype: Any,
) -> None:
    info = None if dtype is np.bool_ else np.iinfo(dtype)
    values = [True, False] if info is None else [info.min, info.max, 0, 1]
    flat = np.array(values, dtype=dtype)
    for value in (
        flat,
        flat.reshape(1, -1),
        np.stack([flat, flat[::-1]]),
        flat[::-1],  # not contiguous
        np.array(values[1], dtype=dtype),  # 0-d
        dtype(values[1]),
        flat[:0],
        [flat, (dtype(values[0]),)],
        {"k": flat},
    ):
        assert_exact(plain(value), exact_python_nested(value))


def exact_python_nested(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): exact_python_nested(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [exact_python_nested(v) for v in value]
    return exact_python(value)


def test_plain_of_uint64_max_is_the_exact_python_int() -> None:
    top = np.uint64(2**64 - 1)
    assert plain(top) == 2**64 - 1 and type(plain(top)) is int
    assert plain(np.array([top])) == [2**64 - 1]
    assert plain(np.array(top)) == 2**64 - 1


int_columns: st.SearchStrategy[np.ndarray] = st.sampled_from(INT_DTYPES).flatmap(
    lambda dtype: st.lists(
        st.booleans() if dtype is np.bool_
        else st.integers(int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)),
        min_size=1, max_size=8,
    ).map(lambda values: np.array(values, dtype=dtype))
)


@pytest.mark.parametrize("sink_class", [CsvSink, JsonlSink])
@settings(max_examples=40, deadline=None)
@given(columns=st.lists(int_columns, min_size=1, max_size=3))
def test_integer_and_bool_batches_write_the_bytes_of_their_rows(
    tmp_path_factory: pytest.TempPathFactory,
    sink_class: type[CsvSink] | type[JsonlSink],
    columns: list[np.ndarray],
) -> None:
    length = min(len(column) for column in columns)
    batch = {f"c{i}": column[:length] for i, column in enumerate(columns)}
    batch["list"] = columns[0][:length].tolist()
    folder = tmp_path_factory.mktemp("ints")
    contents = []
    for feed in ("rows", "batch"):
        path = folder / f"{feed}.out"
        sink = sink_class(path, flush_every=3, flush_seconds=None)
        if feed == "rows":
            for row in iter_rows(batch):
                sink.write(row)
        else:
            sink.write_batch(batch)
        sink.close()
        contents.append(path.read_bytes())
    assert contents[1] == contents[0]
    if sink_class is JsonlSink:
        lines = [json.loads(line) for line in contents[1].decode().splitlines()]
        assert lines == [
            {key: exact_python(column[i]) for key, column in batch.items()}
            for i in range(length)
        ]


# -- 6. AggregateFilter: the per-key-tuple writer ------------------------------------------

STATS = ("mean", "count", "sum", "min", "max")


def _number(value: Any) -> float | None:
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        value = value.item()
    if isinstance(value, bool | int | float | np.integer | np.floating):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return None


def reference_window(records: Sequence[Mapping[Any, Any]], regex: str) -> dict[Any, Any]:
    """The class docstring's window: `<key>_<stat>` over the real numbers of a matching key
    (NaN left out, None ignored), a matching key's last non-number under its own name, and
    the last value of every other key; keys in the order they first had a value."""
    import re

    order: dict[Any, None] = {}
    numbers: dict[Any, list[float]] = {}
    last: dict[Any, Any] = {}
    for record in records:
        for key, value in record.items():
            if value is None:
                continue
            order.setdefault(key)
            x = _number(value) if re.search(regex, str(key)) else None
            if re.search(regex, str(key)) and x is not None:
                numbers.setdefault(key, [])
                if x == x:
                    numbers[key].append(x)
            else:
                last[key] = copy.deepcopy(value)
    out: dict[Any, Any] = {}
    for key in order:
        if key in numbers:
            values = np.array(numbers[key], dtype=np.float64)
            for stat in STATS:
                if stat == "count":
                    result: Any = len(values)
                elif not len(values):
                    result = 0.0 if stat == "sum" else math.nan
                else:
                    result = float(getattr(np, stat)(values))  # np.mean, np.sum, ...
                out[stat_name(key, stat)] = result
        if key in last:
            out[key] = last[key]
    return out


def reference_windows(
    records: Sequence[Mapping[Any, Any]], regex: str, every: int | None
) -> list[dict[Any, Any]]:
    size = every or max(len(records), 1)
    windows = [records[i : i + size] for i in range(0, len(records), size)]
    return [reference_window(window, regex) for window in windows if window]


AGG_KEYS: list[Any] = ["r", "r2", "loss", 5, ("r", 1), "not an id!", "class", "obs"]
agg_values = st.one_of(
    st.none(),
    st.floats(),  # NaN and infinities too
    st.integers(-(10**20), 10**20),
    st.booleans(),
    st.sampled_from(["x", "", [1.0], [], {"a": 1}, np.float32(0.25), np.int64(-3),
                     np.array(2.5), (1, [2])]),
)


@st.composite
def agg_streams(draw: st.DrawFn) -> list[dict[Any, Any]]:
    """Records over a fixed key order (each a sub-sequence), values switching type freely;
    often the same key tuple again (the per-key-tuple writer's path)."""
    tuples = draw(st.lists(
        st.lists(st.booleans(), min_size=len(AGG_KEYS), max_size=len(AGG_KEYS)),
        min_size=1, max_size=3,
    ))
    n = draw(st.integers(1, 14))
    records = []
    for _ in range(n):
        flags = draw(st.sampled_from(tuples))
        keys = [key for key, flag in zip(AGG_KEYS, flags, strict=True) if flag]
        records.append({key: draw(agg_values) for key in keys})
    return records


@settings(max_examples=100, deadline=None)
@given(stream=agg_streams(), every=st.sampled_from([None, 1, 2, 3, 5]),
       regex=st.sampled_from(["r|loss|5", ".*", "^$", "obs"]))
def test_aggregate_windows_follow_the_documented_semantics_by_rows_and_by_batch(
    stream: list[dict[Any, Any]], every: int | None, regex: str
) -> None:
    expected = reference_windows(stream, regex, every)
    filled = [{key: record.get(key) for key in AGG_KEYS} for record in stream]
    outputs = {}
    for feed, records in (("rows", stream), ("filled rows", filled), ("batch", filled)):
        sink = MemorySink()
        node = AggregateFilter(regex, every=every, stats=STATS).connect(sink)
        if feed == "batch":
            columns = {key: [record[key] for record in records] for key in AGG_KEYS}
            node.write_batch(columns)
        else:
            for record in records:
                node.write(record)
        node.flush()
        outputs[feed] = (sink.records, dict(node.counts))
        assert same(sink.records, expected), feed
    assert outputs["rows"][1] == outputs["filled rows"][1] == outputs["batch"][1]


def test_a_record_with_a_hundred_keys_of_any_kind_is_aggregated_per_key() -> None:
    keys: list[Any] = []
    for i in range(100):
        keys.append([f"m{i}", f"o {i}!", i, ("m", i), f"class{i}"][i % 5])
    regex = "m|^[0-9]*[02468]$"
    records: list[dict[Any, Any]] = [
        {key: float(i * 100 + j) for j, key in enumerate(keys)} for i in range(3)
    ]
    records[1][keys[0]] = "text"  # a matching key's value that is not a number
    records[2][keys[1]] = [1, 2]
    sink = MemorySink()
    node = AggregateFilter(regex, every=3, stats=STATS).connect(sink)
    for record in records:
        node.write(record)
    assert len(sink.records) == 1
    assert same(sink.records[0], reference_window(records, regex))


@pytest.mark.parametrize("shape", ["no matching keys", "no other keys", "empty records"])
def test_key_tuples_with_nothing_on_one_side_are_aggregated(shape: str) -> None:
    records: list[dict[Any, Any]] = {  # type: ignore[assignment]
        "no matching keys": [{"a": 1, "b": "x"}, {"a": 2, "b": None}, {"a": 3, "b": "y"}],
        "no other keys": [{"r": 1.0, "s": 2}, {"r": None, "s": 3}, {"r": 4.0, "s": True}],
        "empty records": [{}, {}, {}],
    }[shape]
    sink = MemorySink()
    node = AggregateFilter("r|s", every=3, stats=STATS).connect(sink)
    for record in records * 2:
        node.write(record)
    node.close()
    assert same(sink.records, reference_windows(records * 2, "r|s", 3))
    assert len(sink.records) == 2


def test_a_mutable_other_value_is_held_as_it_was_when_written() -> None:
    sink = MemorySink()
    node = AggregateFilter("r", every=3).connect(sink)
    obs: list[Any] = [[1, 2], {"k": [3]}, np.array([4.0])]
    for value in obs:  # the same key tuple each time: the per-key-tuple writer
        node.write({"r": 1.0, "obs": value})
    # held by the window, then emitted: changes made after writing reach neither
    obs[2][0] = -1.0
    node.write({"r": 1.0, "obs": obs[0]})
    node.write({"r": 1.0, "obs": obs[1]})
    obs[0].append(99)
    obs[1]["k"].append(99)
    node.close()
    assert same(sink.records[0]["obs"], np.array([4.0]))
    assert sink.records[1]["obs"] == {"k": [3]}


def test_more_than_1024_key_tuples_in_one_window_are_each_aggregated() -> None:
    records = [{"r": float(i), f"k{i}": i} for i in range(1100)]
    records += [{"r": 1.0, f"k{i}": -i} for i in range(1100)]  # each tuple a second time
    sink = MemorySink()
    node = AggregateFilter("r", stats=STATS).connect(sink)
    for record in records:
        node.write(record)
    node.close()
    assert len(sink.records) == 1
    assert same(sink.records[0], reference_window(records, "r"))


def test_time_windows_with_a_fake_clock_follow_the_documented_semantics(
    clock: FakeClock,
) -> None:
    records = [{"r": float(i), "x": i} for i in range(12)]
    sink = MemorySink()
    node = AggregateFilter("r", seconds=1.0, stats=STATS, clock=clock).connect(sink)
    windows: list[list[dict[str, Any]]] = [[]]
    start = None
    for record in records:
        clock.advance(0.3)
        node.write(record)
        start = clock.now if start is None else start
        windows[-1].append(record)
        if clock.now - start >= 1.0:
            windows.append([])
            start = None
    node.close()
    assert same(sink.records, [reference_window(w, "r") for w in windows if w])
    assert [record["r_count"] for record in sink.records] == [5, 5, 2]


@pytest.mark.parametrize("cut", [1, 2, 4, 5])
@pytest.mark.parametrize("timed", [False, True])
def test_a_window_restored_mid_way_goes_on_as_if_there_had_been_no_restart(
    cut: int, timed: bool
) -> None:
    stream: list[dict[Any, Any]] = [
        {"r": 1.0, "x": "a"}, {"r": None, "x": [1]}, {"r": "s", "x": "b"},
        {"r": np.float32(2.5), "x": None}, {"r": math.nan, "x": "c"}, {"r": 7, "x": "d"},
        {"r": [3], 5: 1.0}, {"r": 9.0, "x": "e"},
    ]

    def make(clock: FakeClock, sink: MemorySink) -> AggregateFilter:
        if timed:
            node = AggregateFilter("r|5", seconds=1.0, stats=STATS, clock=clock)
        else:
            node = AggregateFilter("r|5", every=3, stats=STATS, clock=clock)
        node.connect(sink)
        return node

    clock = FakeClock()
    through, first, second = MemorySink(), MemorySink(), MemorySink()
    reference, before = make(clock, through), make(clock, first)
    for record in stream[:cut]:
        clock.advance(0.3)
        reference.write(record)
        before.write(record)
    emitted = len(through.records)
    after = make(clock, second)
    after.load_state_dict(before.state_dict())
    for record in stream[cut:]:
        clock.advance(0.3)
        reference.write(record)
        after.write(record)
    reference.close()
    after.close()
    # the state is the graph's: the sink below comes back holding what it held
    assert same(first.records, through.records[:emitted])
    assert same(second.records, through.records)
    assert dict(after.counts) == dict(reference.counts)


def test_an_aggregates_every_set_after_construction_applies_to_write_as_to_write_batch() -> None:
    rows_sink, batch_sink = MemorySink(), MemorySink()
    rows = AggregateFilter("r", every=2, stats=("count",))
    batch = AggregateFilter("r", every=2, stats=("count",))
    rows.connect(rows_sink)
    batch.connect(batch_sink)
    rows.every = batch.every = 3
    for x in range(6):
        rows.write({"r": float(x)})
    batch.write_batch({"r": np.arange(6.0)})
    assert batch_sink.records == [{"r_count": 3}, {"r_count": 3}]
    assert rows_sink.records == batch_sink.records


def test_key_tuples_that_compare_equal_share_one_column_as_on_the_general_path() -> None:
    """1, 1.0 and True are one dict key: their values are one key's values whichever path."""
    sink = MemorySink()
    node = AggregateFilter(".*", every=4, stats=("count", "sum")).connect(sink)
    records: list[dict[Any, Any]] = [{1: 1.0}, {1.0: 2.0}, {True: 3.0}, {1: 4.0}]
    for record in records:
        node.write(record)
    assert sink.records == [{"1_count": 4, "1_sum": 10.0}]
