"""Attacks on a whole Pipeline fed a mix of `write(record)` and `write_batch(columns)`: the
records reaching the sinks (values, their types, key order, NaN positions) and every node's
counts are those of the same rows written one by one, whatever the interleaving, with
checkpoints (`state_dict()` into a freshly built pipeline) and flushes between calls, a
throttle under a fake clock, key tuples that change (past the 64 compiled runs), values that
are not finite numbers in rows and in columns (lists, numpy arrays of every kind, masked
batches), batches of 0 and 1 rows, a sink that refuses records, and one sink fed by two
branches; with and without scipy (the `fast` extra) for the smoothing column path."""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from filters import (
    AggregateFilter,
    Dispatcher,
    DropKeys,
    EveryNFilter,
    KeepKeys,
    LifetimeFilter,
    LogarithmicFilter,
    NoneFilter,
    PrefixKeys,
    RateFilter,
    RenameKeys,
    RollingFilter,
    SmoothingFilter,
    TimeFilter,
)
from pipeline import Node, Pipeline
from pipeline.core.columns import MaskedColumns, present, row
from sinks import MemorySink
from tests.conftest import FakeClock

pytestmark = pytest.mark.filterwarnings("ignore")

EXAMPLES = int(os.environ.get("RLPIPE_ATTACK_EXAMPLES", 100))
"""Examples per property (more, and longer streams, for a long run: RLPIPE_ATTACK_MIN/MAX)."""

RETURN = "episode_return"
SMOOTHED = f"{RETURN}_smoothed_0.9"
KEYS = [RETURN, "loss", "steps", "tag", "actor_return", SMOOTHED, "loss_mean", 1, "1"]
"""Metric names: some a node's outputs clash with (a caller's own smoothed key or statistic;
two keys of one text)."""


# -- what the sinks get ---------------------------------------------------------------------


class Refusing(MemorySink):
    """A memory sink that refuses (ValueError: the record is lost) every record holding the
    value "bad"; its batch path refuses a batch holding one, having taken no row."""

    def write(self, data: Any) -> None:
        if any(isinstance(v, str) and v == "bad" for v in data.values()):
            raise ValueError("cannot take this record")
        super().write(data)

    def write_batch(self, columns: Any) -> None:
        for column in columns.values():
            if any(isinstance(v, str) and v == "bad" for v in list(column)):
                raise ValueError("cannot take this batch")
        super().write_batch(columns)

    def state_key(self) -> str:
        return "Refusing()"


def plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def shown(value: Any) -> Any:
    """A value as compared: numpy scalars as the Python scalar of the same value (the tolerance
    tests/test_write_batch.py uses), NaN as a marker, -0.0 told from 0.0."""
    if isinstance(value, np.ndarray):
        return ("array", str(value.dtype), repr(value.tolist()))
    value = plain(value)
    if isinstance(value, float):
        if value != value:
            return ("nan",)
        if value == 0:
            return (type(value).__name__, math.copysign(1.0, value))
    return (type(value).__name__, value) if not isinstance(value, (list, dict)) else repr(value)


def records_of(sink: MemorySink) -> list[list[tuple[Any, Any]]]:
    return [[(key, shown(value)) for key, value in record.items()] for record in sink.records]


# -- pipelines ------------------------------------------------------------------------------

STATS = ("mean", "std", "median", "max", "min", "count", "sum", "p90")

CHAINS: dict[str, Callable[[FakeClock], list[Node]]] = {
    "train": lambda clock: [
        NoneFilter(), SmoothingFilter("return", coeff=0.9), TimeFilter(1.0, clock=clock),
    ],
    "train, keep last": lambda clock: [
        NoneFilter(), SmoothingFilter("return", coeff=0.9),
        TimeFilter(1.0, keep_last=True, clock=clock),
    ],
    "smooth, no drop_none": lambda clock: [SmoothingFilter("return|loss", coeff=0.5)],
    "smooth debiased then every 3": lambda clock: [
        SmoothingFilter("return", coeff=0.9, bias_correction=True), EveryNFilter(3),
    ],
    "every 2 then smooth": lambda clock: [
        EveryNFilter(2), NoneFilter(), SmoothingFilter("return", coeff=0.9),
    ],
    "smooth then aggregate": lambda clock: [
        NoneFilter(), SmoothingFilter("return", coeff=0.9),
        AggregateFilter("return|loss", every=3, stats=STATS),
    ],
    "aggregate by time": lambda clock: [
        AggregateFilter("return|loss", seconds=1.0, stats=("mean", "count"), clock=clock),
    ],
    "keys": lambda clock: [
        DropKeys("^tag$"), RenameKeys({"loss": "l"}), PrefixKeys("train"), KeepKeys("."),
    ],
    "keyed": lambda clock: [
        NoneFilter(), RollingFilter("return", window=3, stats=("mean", "max")),
        LifetimeFilter("^steps$"), RateFilter("^steps$", clock=clock), LogarithmicFilter(2),
    ],
    "keyed, no drop_none": lambda clock: [
        RollingFilter("return|loss", window=2, stats=("mean", "min", "p50")),
        LifetimeFilter("return"), RateFilter("steps", clock=clock),
    ],
    "aggregate, no drop_none": lambda clock: [
        EveryNFilter(2), AggregateFilter(".", every=4, stats=("mean", "max", "count")),
    ],
    "throttle then smooth": lambda clock: [
        TimeFilter(0.5, keep_last=True, clock=clock), SmoothingFilter("return", coeff=0.99),
        LogarithmicFilter(3),
    ],
    "smooth then throttle 0": lambda clock: [
        SmoothingFilter("return", coeff=0.9), TimeFilter(0.0, clock=clock),
    ],
}

SINKS = ("memory", "refusing", "two branches")


def build(
    chain: str, sinks: str, clock: FakeClock, fused: bool = True
) -> tuple[Node, list[Node], MemorySink]:
    """The pipeline (or, unfused, the same nodes connected by hand), the chain's nodes (for
    their counts and failures) and the sink whose records are compared."""
    memory = MemorySink() if sinks != "refusing" else Refusing()
    nodes = CHAINS[chain](clock)
    if sinks == "two branches":  # the same sink below two inner pipelines: a join
        if fused:
            left: Node = Pipeline("left", close_at_exit=False).keep("return").to(memory)
            right: Node = Pipeline("right", close_at_exit=False).drop("return").to(memory)
        else:
            left = KeepKeys("return").connect(Dispatcher(memory))
            right = DropKeys("return").connect(Dispatcher(memory))
        targets = [left, right]
    else:
        targets = [memory]
    if fused:
        pipe = Pipeline(chain, close_at_exit=False)
        for node in nodes:
            pipe.then(node)
        pipe.to(*targets)
        return pipe, pipe.steps[: len(nodes) + 1], memory
    dispatcher = Dispatcher(*targets)
    for upper, lower in pairwise([*nodes, dispatcher]):
        upper.connect(lower)
    return nodes[0], [*nodes, dispatcher], memory


# -- streams --------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.floats(-1e6, 1e6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10),
    st.booleans(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, "text", "bad"]),
    st.floats(-1e3, 1e3).map(np.float64),
    st.floats(-1e3, 1e3, width=32).map(np.float32),
    st.integers(-10, 10).map(np.int64),
    st.booleans().map(np.bool_),
)

SHAPES = [(RETURN, "steps", "loss"), ("steps", RETURN), (RETURN, "actor_return", "steps"),
          (RETURN, SMOOTHED), ("steps",), (RETURN,)]
"""Key tuples met again and again: the fused runs compiled for them are crossed."""
keys = st.one_of(
    st.sampled_from(SHAPES).map(list),
    st.sampled_from(SHAPES).map(list),
    st.lists(st.sampled_from(KEYS), min_size=0, max_size=4, unique=True),
)
DTYPES = ["list", "float64", "float32", "int64", "bool", "object", "masked list", "tuple",
          "float16", "uint8", "complex", "str", "2-d"]


@st.composite
def column(draw: st.DrawFn, length: int, kind: str) -> Any:
    if kind in ("list", "masked list", "tuple"):
        values = draw(st.lists(scalars, min_size=length, max_size=length))
        return tuple(values) if kind == "tuple" else values
    if kind == "2-d":
        return np.arange(length * 2, dtype=np.float64).reshape(length, 2)
    if kind == "str":
        return np.array(draw(st.lists(st.sampled_from(["a", "bad", "1.5"]), min_size=length,
                                      max_size=length)), dtype=str)
    if kind == "object":
        return np.array([*draw(st.lists(scalars, min_size=length, max_size=length)), None],
                        dtype=object)[:length]
    elements = {
        "float64": st.floats(allow_nan=True, allow_infinity=True),
        "float32": st.floats(width=32, allow_nan=True),
        "int64": st.integers(-1000, 1000),
        "bool": st.booleans(),
        "float16": st.floats(width=16, allow_nan=True),
        "uint8": st.integers(0, 255),
        "complex": st.complex_numbers(max_magnitude=10),
    }[kind]
    return np.array(draw(st.lists(elements, min_size=length, max_size=length)), dtype=kind)


@st.composite
def batch(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    length = draw(st.sampled_from([0, 1, 1, 2, 3, 5, 8, 60]))
    names = draw(keys)
    kinds = [draw(st.sampled_from(DTYPES)) for _ in names]
    columns = {name: draw(column(length, kind)) for name, kind in zip(names, kinds, strict=True)}
    if "masked list" in kinds:
        return "batch", MaskedColumns(columns)
    return "batch", columns


records = st.builds(lambda ks, vs: dict(zip(ks, vs, strict=False)), keys,
                    st.lists(scalars, min_size=4, max_size=4))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), records),
        st.tuples(st.just("write"), records),
        batch(),
        st.tuples(st.sampled_from(["flush", "checkpoint"]), st.none()),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 0.3, 0.5, 0.7, 1.0, 3.0])),
    ),
    min_size=int(os.environ.get("RLPIPE_ATTACK_MIN", 0)),
    max_size=int(os.environ.get("RLPIPE_ATTACK_MAX", 25)),
)


def rows_of(columns: dict[str, Any]) -> list[dict[str, Any]]:
    length = len(next(iter(columns.values()))) if columns else 0
    rows = [row(columns, index) for index in range(length)]
    return [present(r) for r in rows] if type(columns) is MaskedColumns else rows


def scribble(written: dict[str, Any]) -> None:
    """What a caller may do to what it wrote once the call returned: reuse its buffers."""
    for key, value in list(written.items()):
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            value[...] = 1
        elif isinstance(value, list):
            value[:] = ["scribbled"] * len(value)
        written[key] = "scribbled"
    written["scribbled"] = True


def run(chain: str, sinks: str, stream: list[tuple[str, Any]], mode: str) -> Any:
    """What the sink stored, each node's counts and each failing sink's losses after `stream`:
    written as it is by a Pipeline ("mixed"), or by rows, batches cut into their rows,
    checkpoints left out (a checkpoint changes nothing), through the pipeline ("rows") or
    through the same nodes connected by hand ("unfused"), the reference."""
    by_rows = mode != "mixed"
    stream = copy.deepcopy(stream)  # scribbled on below
    clock = FakeClock()
    pipe, nodes, memory = build(chain, sinks, clock, fused=mode != "unfused")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, payload in stream:
            if kind == "write":
                pipe.write(payload)
                scribble(payload)
            elif kind == "batch":
                if type(payload) is MaskedColumns and not nodes[0].absent_ok():
                    payload = dict(payload)  # see the masked batch test below
                if by_rows:
                    for record in rows_of(payload):
                        pipe.write(record)
                else:
                    pipe.write_batch(payload)
                scribble(payload)
            elif kind == "flush":
                pipe.flush()
            elif kind == "advance":
                clock.advance(payload)
            elif not by_rows:
                state = pipe.state_dict()
                resumed = FakeClock()
                resumed.now = clock.now
                clock = resumed
                pipe, nodes, memory = build(chain, sinks, clock)
                pipe.load_state_dict(state)
        pipe.close()
    counts = [
        (
            type(node).__name__,
            {reason: n for reason, n in node.counts.items() if n},
            {reason: dict(by) for reason, by in node.counts.by_key.items() if any(by.values())},
        )
        for node in nodes
    ]
    lost = [
        (f.errors > 0, f.lost)
        for node in nodes
        if isinstance(node, Dispatcher)
        for f in node.failures.values()
    ]
    return records_of(memory), counts, lost


def assert_same_run(chain: str, sinks: str, stream: list[tuple[str, Any]]) -> None:
    expected = run(chain, sinks, stream, "unfused")
    for mode in ("rows", "mixed"):
        got = run(chain, sinks, stream, mode)
        assert got[0] == expected[0], mode  # the records, key order, values, types, NaN
        assert got[1] == expected[1], mode  # every node's counts
        assert got[2] == expected[2], mode  # what a refusing sink lost


@example(chain="train", sinks="memory", stream=[
    ("write", {RETURN: 1.0, "steps": 1}), ("write", {RETURN: 2.0, "steps": 2}),  # compiled
    ("batch", {RETURN: np.array([3.0, 4.0]), "steps": np.array([3, 4])}),
    ("advance", 1.0), ("checkpoint", None), ("write", {RETURN: 5.0, "steps": 5}),
])
@example(chain="smooth then aggregate", sinks="refusing", stream=[
    ("write", {RETURN: 1.0, "tag": "bad"}), ("write", {RETURN: None, "tag": "x"}),
    ("batch", {RETURN: [2.0, None, 4.0], "tag": ["y", "bad", "z"]}),
    ("checkpoint", None), ("batch", {RETURN: np.array([5.0]), "tag": ["w"]}),
])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(chain=st.sampled_from(sorted(CHAINS)), sinks=st.sampled_from(SINKS), stream=ops)
def test_a_pipeline_gives_the_same_whichever_way_the_rows_arrive(
    chain: str, sinks: str, stream: list[tuple[str, Any]]
) -> None:
    assert_same_run(chain, sinks, stream)


@settings(max_examples=EXAMPLES // 4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(chain=st.sampled_from(sorted(CHAINS)), data=st.data())
def test_past_the_64_compiled_key_tuples_the_pipeline_gives_the_same(
    chain: str, data: st.DataObject
) -> None:
    """Key tuples each written at least twice by rows (so a run is compiled for each, the
    first one written into the pipeline's own `write`), more than 64 of them, the same keys
    in other orders, keys coming and going, with batches of the same key tuples between."""
    shapes = [
        (RETURN, f"k{index}", "steps")[: 1 + index % 3][:: 1 - 2 * (index % 2)]
        if index % 5 else (f"k{index}", RETURN)
        for index in range(80)
    ]
    stream: list[tuple[str, Any]] = []
    for shape in data.draw(st.permutations(shapes)):
        values = data.draw(st.lists(scalars, min_size=2 * len(shape), max_size=2 * len(shape)))
        stream += [("write", dict(zip(shape, values[: len(shape)], strict=True))),
                   ("write", dict(zip(shape, values[len(shape):], strict=True)))]
        step = data.draw(st.sampled_from(["", "", "", "batch", "advance", "checkpoint"]))
        if step == "batch":
            stream.append(("batch", {key: data.draw(column(3, "list")) for key in shape}))
        elif step == "advance":
            stream.append(("advance", 1.0))
        elif step:
            stream.append((step, None))
    assert_same_run(chain, "memory", stream)


@pytest.mark.parametrize("fast", [True, False], ids=["scipy", "no scipy"])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_the_smoothing_column_path_past_the_warm_up_gives_the_fused_rows_floats_bit_for_bit(
    fast: bool, bias_correction: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moving average warmed up past its warm-up (334 values) by the fused row path, then
    long batches (past the 48 rows from which lfilter runs, with the fast extra), a checkpoint
    between: the same floats, to the bit, as the same rows written one by one."""
    import filters._ema as ema

    if fast:
        pytest.importorskip("scipy")
        assert ema.lfilter() is not None
    else:
        monkeypatch.setattr(ema, "_lfilter", None)
    rng = np.random.default_rng(5)
    values = rng.normal(size=1200) * 100
    values[rng.choice(1200, size=30, replace=False)] = np.nan
    stream: list[tuple[str, Any]] = [("write", {RETURN: float(x), "steps": i})
                                     for i, x in enumerate(values[:400])]
    for start in range(400, 1200, 200):
        stream.append(("batch", {RETURN: values[start:start + 200],
                                 "steps": np.arange(start, start + 200)}))
        stream.append(("checkpoint", None) if start == 600 else ("flush", None))
    stream.append(("write", {RETURN: 1.0, "steps": 1200}))

    def chain(clock: FakeClock) -> list[Node]:
        return [NoneFilter(), SmoothingFilter("return", 0.99, bias_correction=bias_correction)]

    monkeypatch.setitem(CHAINS, "long", chain)
    records = []
    for mode in ("unfused", "mixed"):
        got = run("long", "memory", stream, mode)
        records.append([[value for _, value in record] for record in got[0]])
        assert got[1] == run("long", "memory", stream, "unfused")[1]
    assert records[0] == records[1]  # -0.0 and NaN told apart, floats compared exactly


# -- the defects these attacks found, pinned ---------------------------------------------------


def test_a_sink_under_two_branches_gets_a_batchs_rows_in_the_order_rows_give() -> None:
    stored = []
    for by_rows in (True, False):
        memory = MemorySink()
        left = Pipeline("left", close_at_exit=False).to(memory)
        right = Pipeline("right", close_at_exit=False).prefix("R").to(memory)
        pipe = Pipeline("fan", close_at_exit=False).to(left, right)
        if by_rows:
            pipe.write({"a": 1})
            pipe.write({"a": 2})
        else:
            pipe.write_batch({"a": [1, 2]})
        pipe.close()
        stored.append(memory.records)
    assert stored[0] == [{"a": 1}, {"R/a": 1}, {"a": 2}, {"R/a": 2}]
    assert stored[1] == stored[0]


def test_a_masked_batch_into_a_pipeline_that_does_not_take_one_keeps_its_cells_absent() -> None:
    memory = MemorySink()
    pipe = Pipeline("keys", close_at_exit=False).prefix("train").to(memory)
    pipe.write_batch(MaskedColumns({"a": [None, 1]}))
    pipe.close()
    # row by row, a masked row's None cell is an absent key: {} and {"train/a": 1}
    assert memory.records == [{}, {"train/a": 1}]  # got [{"train/a": None}, {"train/a": 1}]


MASKED = np.ma.array([1.0, 100.0, 3.0], mask=[False, True, False])
"""A numpy masked array (a 1-d numpy array): row by row, its masked entry is numpy's masked
constant, which every node takes as no number (skipped, counted)."""


def masked_both_ways(make: Callable[[Pipeline], Pipeline]) -> list[Any]:
    out = []
    for by_rows in (True, False):
        memory = MemorySink()
        pipe = make(Pipeline("masked", close_at_exit=False)).to(memory)
        if by_rows:
            for index in range(len(MASKED)):
                pipe.write({"r": MASKED[index]})
        else:
            pipe.write_batch({"r": MASKED})
        pipe.close()
        out.append((records_of(memory), [dict(node.counts) for node in pipe.steps]))
    return out


def test_an_aggregate_leaves_a_masked_arrays_masked_entries_out_of_its_statistics() -> None:
    rows, batch = masked_both_ways(lambda p: p.aggregate("r", stats=("mean", "count")))
    assert batch == rows


def test_keyed_filters_count_a_masked_arrays_masked_entries_as_rows_do() -> None:
    rows, batch = masked_both_ways(lambda p: p.rolling("r", window=3).lifetime("r"))
    assert batch == rows


def test_smoothing_a_masked_array_column_takes_it_or_refuses_it_untouched() -> None:
    memory = MemorySink()
    pipe = Pipeline("masked", close_at_exit=False).smooth("r", coeff=0.5).to(memory)
    node = pipe.steps[0]
    try:
        pipe.write_batch({"r": np.array([1.0, 2.0]), "r2": np.ma.array([1.0, 2.0], mask=[0, 1])})
    except (TypeError, ValueError):  # refused: then the batch must have changed nothing
        assert memory.records == []
        assert node.node_state()["ema"]["r"][1] == 0.0  # got [1.95, 0.095]: moved
    else:
        rows = masked_both_ways(lambda p: p.smooth("r", coeff=0.5))
        assert rows[1] == rows[0]
