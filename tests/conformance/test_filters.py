"""Every node gives the same records, counts and files whichever way it is driven: fused in a
Pipeline or connected by hand (each node calling the next), and written row by row or with
write_batch (generated chains of every built-in filter, a Dispatcher and an AsyncNode, and
the builder's `throttle(keep_last=True)`)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from filters import (
    AggregateFilter,
    AsyncNode,
    ConstantFields,
    Dispatcher,
    DropKeys,
    EveryNFilter,
    FlattenFilter,
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
    Timestamp,
)
from pipeline import Node, Pipeline
from pipeline.core.columns import iter_rows
from sinks import CsvSink, MemorySink
from tests.conformance import strategies
from tests.conformance.known import suite
from tests.conftest import FakeClock

Make = Callable[[FakeClock], Node]

NODES: dict[str, Make] = {
    "NoneFilter": lambda clock: NoneFilter(),
    "TimeFilter": lambda clock: TimeFilter(1.0, clock=clock),
    "TimeFilter(keep_last)": lambda clock: TimeFilter(1.0, keep_last=True, clock=clock),
    "EveryNFilter": lambda clock: EveryNFilter(3),
    "SmoothingFilter": lambda clock: SmoothingFilter("r|x", coeff=0.9),
    "SmoothingFilter(debiased)": lambda clock: SmoothingFilter(
        "r", coeff=0.5, bias_correction=True
    ),
    "AggregateFilter": lambda clock: AggregateFilter("r|x", every=3),
    "AggregateFilter(seconds)": lambda clock: AggregateFilter("r", seconds=2.0, clock=clock),
    "AggregateFilter(every_steps)": lambda clock: AggregateFilter(
        "r|x", every_steps=2, step_key="s"
    ),
    "KeepKeys": lambda clock: KeepKeys("r|s|a"),
    "DropKeys": lambda clock: DropKeys("^x$"),
    "PrefixKeys": lambda clock: PrefixKeys("train"),
    "RenameKeys": lambda clock: RenameKeys({"s": "r", "a": "b"}),
    "FlattenFilter": lambda clock: FlattenFilter(),
    "Dispatcher": lambda clock: Dispatcher(),
    "AsyncNode": lambda clock: AsyncNode(maxsize=4),
    "RollingFilter": lambda clock: RollingFilter("r|x", window=3, stats=("mean", "max", "std")),
    "LifetimeFilter": lambda clock: LifetimeFilter("r|s"),
    "RateFilter": lambda clock: RateFilter("r", clock=clock),
    "ConstantFields": lambda clock: ConstantFields({"run": "a1", "x": 5}),  # x: a clash
    "Timestamp": lambda clock: Timestamp("b", clock=clock),  # b: a key records may hold
    "LogarithmicFilter": lambda clock: LogarithmicFilter(2),
    "throttle(keep_last) (builder)": lambda clock: TimeFilter(1e9, keep_last=True),
}
BUILDER: dict[str, Callable[[Pipeline], Pipeline]] = {
    "throttle(keep_last) (builder)": lambda pipe: pipe.throttle(1e9, keep_last=True),
}
"""Nodes the fused paths make with the Pipeline builder's own method (the unfused ones connect
the node of the same name in NODES by hand): the builder's node must behave as that one.
The builder's throttle takes no clock: an interval no run reaches makes it deterministic
(the first record passes, the last held one on each flush and at close)."""
KEYS = ["r", "s", "a", "x", "b"]

values = st.one_of(
    strategies.values,  # any value of the suite
    st.dictionaries(st.sampled_from("rs"), st.floats(-1, 1), max_size=2),  # for FlattenFilter
)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    length = draw(st.integers(1, 5))
    columns: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True)):
        if draw(st.booleans()):
            dtype = draw(st.sampled_from(strategies.NUMERIC_DTYPES))
            columns[key] = draw(hnp.arrays(dtype, length))
        else:
            columns[key] = draw(
                st.lists(strategies.batch_values, min_size=length, max_size=length)
            )
    return columns


calls = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.dictionaries(st.sampled_from(KEYS), values, max_size=5)),
        st.tuples(st.just("batch"), batches()),
        st.tuples(st.just("flush"), st.just({})),
    ),
    min_size=1,
    max_size=15,
)
chains = st.lists(st.sampled_from(sorted(NODES)), min_size=1, max_size=3)


def drive(chain: list[str], stream: list[tuple[str, Any]], fused: bool, batch: bool,
          folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, int]], bytes]:
    """Writes `stream` through `chain` (fused in a Pipeline, or connected by hand), batches
    with write_batch or row by row; returns the records, each node's counts, the CSV."""
    clock = FakeClock()
    nodes = [NODES[name](clock) for name in chain]
    name = f"{'fused' if fused else 'unfused'}-{'batch' if batch else 'rows'}.csv"
    memory, table = MemorySink(), CsvSink(folder / name, mode="w", flush_every=4)
    if fused:
        pipe = Pipeline(close_at_exit=False)
        for index, name_ in enumerate(chain):
            if name_ in BUILDER:
                BUILDER[name_](pipe)
                nodes[index] = pipe._tail  # the builder's node: its counts are compared
            else:
                pipe.then(nodes[index])
        head: Node = pipe.to(memory, table)
    else:
        for upper, lower in itertools.pairwise(nodes):
            upper.connect(lower)
        nodes[-1].connect(Dispatcher(memory, table))
        head = nodes[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, data in stream:
            clock.advance(0.7)
            if kind == "write":
                head.write(data)
            elif kind == "flush":
                head.flush()
            elif batch:
                head.write_batch(data)
            else:
                for row in iter_rows(data):
                    head.write(row)
        head.close()
    counts = [{k: n for k, n in node.counts.items() if n} for node in nodes]
    return memory.records, counts, (folder / name).read_bytes()


def same(a: Any, b: Any) -> bool:
    """Equal records: NaN equals NaN, a numpy number its Python value."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    def array(x: Any) -> bool:  # a numpy array or a torch tensor
        return isinstance(x, np.ndarray) or type(x).__module__.startswith("torch")

    if array(a) or array(b):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if a.dtype == object or b.dtype == object:
            return all(same(x, y) for x, y in zip(a.flat, b.flat, strict=True))
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    numbers = (float, np.floating, complex, np.complexfloating)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return bool(a == b) or (a != a and b != b)  # NaN is NaN
    return bool(a == b) and not isinstance(a, dict) and not isinstance(b, dict)


@suite(200)
@given(chain=chains, stream=calls)
def test_fused_unfused_row_and_batch_give_the_same_records_counts_and_files(
    chain: list[str], stream: list[tuple[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    for name in chain:
        event(f"node: {name}")
    folder = tmp_path_factory.mktemp("paths")
    fused_rows = drive(chain, stream, True, False, folder)
    for fused, batch in [(False, False), (True, True), (False, True)]:
        other = drive(chain, stream, fused, batch, folder)
        path = f"{'fused' if fused else 'unfused'} {'batch' if batch else 'rows'}"
        assert same(other[0], fused_rows[0]), f"records differ: {path} vs fused rows"
        assert other[1] == fused_rows[1], f"counts differ: {path} vs fused rows"
        assert other[2] == fused_rows[2], f"CSV differs: {path} vs fused rows"
