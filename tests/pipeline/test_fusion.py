"""Fusion: a pipeline crosses its run of record-to-record nodes in one call, with exactly the
records, counts and files that the same nodes give when each calls the next."""

from __future__ import annotations

import gc
import itertools
import math
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import (
    AggregateFilter,
    DropKeys,
    EveryNFilter,
    FlattenFilter,
    KeepKeys,
    NoneFilter,
    PrefixKeys,
    RenameKeys,
    SmoothingFilter,
    TimeFilter,
)
from pipeline import Node, Pipeline
from pipeline.core.fusion import fuse
from sinks import CsvSink, MemorySink
from tests.conftest import FakeClock
from tests.reference import warmup_ema

Make = Callable[[FakeClock], Node]

STEPS: dict[str, Make] = {
    "none": lambda clock: NoneFilter(),
    "smooth": lambda clock: SmoothingFilter("r|x", coeff=0.9),
    "smooth_debiased": lambda clock: SmoothingFilter("r", coeff=0.5, bias_correction=True),
    "throttle0": lambda clock: TimeFilter(0),
    "throttle": lambda clock: TimeFilter(2.0, keep_last=True, clock=clock),
    "every1": lambda clock: EveryNFilter(1),
    "every3": lambda clock: EveryNFilter(3),
    "keep": lambda clock: KeepKeys("r|s|a"),
    "drop": lambda clock: DropKeys("^x$"),
    "prefix": lambda clock: PrefixKeys("train"),
    "rename": lambda clock: RenameKeys({"s": "r", "a": "b"}),
    "flatten": lambda clock: FlattenFilter(),
    "aggregate": lambda clock: AggregateFilter("r", every=4),
}

values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-5, 5),
    st.text(max_size=2),
    st.dictionaries(st.sampled_from("rs"), st.floats(-1, 1), max_size=2),
)
records = st.lists(
    st.dictionaries(st.sampled_from(["r", "s", "a", "x", "b"]), values, max_size=5),
    min_size=1,
    max_size=30,
)
chains = st.lists(st.sampled_from(sorted(STEPS)), min_size=1, max_size=6)


def run(chain: list[str], stream: list[dict[str, Any]], fused: bool, folder: Path) -> Any:
    """Writes `stream` through `chain` (a Pipeline, fused; or the same nodes connected by hand,
    each calling the next), then closes; returns the records, the counts and the CSV bytes."""
    clock = FakeClock()
    nodes = [STEPS[name](clock) for name in chain]
    memory, csv = MemorySink(), CsvSink(folder / f"{fused}.csv")
    if fused:
        pipe = Pipeline(close_at_exit=False)
        for node in nodes:
            pipe.then(node)
        pipe.to(memory, csv)
        head: Node = pipe
    else:
        for upper, lower in itertools.pairwise(nodes):
            upper.connect(lower)
        nodes[-1].connect(memory, csv)
        head = nodes[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index, record in enumerate(stream):
            clock.advance(0.7)
            head.write(record)
            if index % 7 == 6:
                head.flush()
        head.close()
    counts = [dict(node.counts) for node in nodes]
    return memory.records, counts, (folder / f"{fused}.csv").read_bytes()


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=150, deadline=None)
@given(chain=chains, stream=records)
def test_a_fused_chain_gives_the_records_counts_and_file_of_the_unfused_one(
    tmp_path_factory: Any, chain: list[str], stream: list[dict[str, Any]]
) -> None:
    folder = tmp_path_factory.mktemp("fusion")
    fused = run(chain, stream, True, folder)
    unfused = run(chain, stream, False, folder)
    assert same(fused[0], unfused[0])
    assert fused[1] == unfused[1]
    assert fused[2] == unfused[2]


def test_the_train_chain_is_one_fused_run_and_describe_says_so() -> None:
    pipe = Pipeline("train", close_at_exit=False).drop_none().smooth("return").throttle(0)
    pipe.to(MemorySink())
    fused = [line for line in pipe.describe().splitlines() if "[fused]" in line]
    assert [line.split("(")[0].strip() for line in fused] == [
        "NoneFilter",
        "SmoothingFilter",
        "TimeFilter",
    ]
    run_nodes = fuse(pipe).run
    assert [type(node).__name__ for node in run_nodes] == [
        "NoneFilter",
        "SmoothingFilter",
        "TimeFilter",
    ]


def test_a_node_connected_after_the_chain_ended_still_gets_its_records() -> None:
    first, later = MemorySink(), MemorySink()
    smooth = SmoothingFilter("r", coeff=0.5)
    pipe = Pipeline(close_at_exit=False).then(NoneFilter()).then(smooth).to(first)
    pipe.write({"r": 1.0})
    smooth.connect(later)  # the fused run ended at smooth's single child; now it fans out
    pipe.write({"r": 3.0})
    pipe.close()
    assert [r["r"] for r in first.records] == [1.0, 3.0]
    assert [r["r"] for r in later.records] == [3.0]


def test_a_join_below_the_run_is_not_fused_into_it() -> None:
    shared = NoneFilter().connect(MemorySink())
    a = Pipeline("a", close_at_exit=False).prefix("a").to(shared)
    b = Pipeline("b", close_at_exit=False).prefix("b").to(shared)
    a.write({"x": 1, "y": None})
    b.write({"x": 2})
    assert [record for record in shared.children[0].records] == [  # type: ignore[attr-defined]
        {"a/x": 1},
        {"b/x": 2},
    ]


class Flaky(Node):
    """A leaf whose storage is down while `down` is set (OSError: retried, not lost)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.got: list[dict[str, Any]] = []

    def write(self, data: Any) -> None:
        if self.down:
            raise OSError("down")
        self.got.append(dict(data))


@pytest.mark.parametrize("filters", [True, False], ids=["drop_none", "no filters"])
@pytest.mark.parametrize("nested", [False, True])
def test_a_sink_that_goes_down_and_comes_back_gets_every_record_in_order(
    nested: bool, filters: bool
) -> None:
    sink = Flaky()
    inner = Pipeline("inner", close_at_exit=False)
    inner = (inner.drop_none() if filters else inner).to(sink)
    head = Pipeline("outer", close_at_exit=False).drop_none().to(inner) if nested else inner
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        head.write({"i": 0})
        sink.down = True
        for i in range(1, 4):
            head.write({"i": i})
        sink.down = False
        for i in range(4, 6):
            head.write({"i": i})
        head.close()
    assert [record["i"] for record in sink.got] == list(range(6))
    assert "0 records lost" in " ".join(inner.failures())


def test_an_outer_pipeline_meets_a_closed_inner_one_as_closed() -> None:
    memory = MemorySink()
    inner = Pipeline("inner", close_at_exit=False).smooth("x", 0.5).to(memory)
    outer = Pipeline("outer", close_at_exit=False).to(inner)
    outer.write({"x": 1.0})
    inner.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outer.write({"x": 3.0})
    assert [record["x"] for record in memory.records] == [1.0]
    assert "ClosedError" in outer.failures()[0]


def test_a_transform_subclass_with_its_own_write_is_called_not_fused() -> None:
    class Stamp(NoneFilter):
        def write(self, data: Any) -> None:
            self.emit({**data, "stamped": 1})

    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).then(Stamp()).then(SmoothingFilter("x")).to(memory)
    pipe.write({"x": 1.0})
    pipe.close()
    assert memory.records == [{"x": 1.0, "stamped": 1, "x_smoothed_0.99": 1.0}]


@settings(max_examples=60, deadline=None)
@given(chain=chains, stream=records)
def test_a_pipeline_without_its_lock_gives_the_records_of_one_with_it(
    chain: list[str], stream: list[dict[str, Any]]
) -> None:
    outputs = []
    for thread_safe in (True, False):
        clock = FakeClock()
        memory = MemorySink()
        pipe = Pipeline(close_at_exit=False, thread_safe=thread_safe)
        for name in chain:
            pipe.then(STEPS[name](clock))
        pipe.to(memory)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for record in stream:
                clock.advance(0.7)
                pipe.write(record)
            pipe.close()
        outputs.append(memory.records)
    assert same(outputs[0], outputs[1])


def test_the_fused_write_takes_any_mapping_and_refuses_anything_else() -> None:
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).drop_none().smooth("r", 0.5).to(memory)
    pipe.write(MappingProxyType({"r": 2.0, "x": None}))
    with pytest.raises(TypeError, match="mapping of metric names"):
        pipe.write([("r", 4.0)])  # type: ignore[arg-type]
    pipe.write({"r": 4.0})
    pipe.close()
    first, second = warmup_ema([2.0, 4.0], 0.5)
    assert memory.records == [
        {"r": 2.0, "r_smoothed_0.5": first},
        {"r": 4.0, "r_smoothed_0.5": second},
    ]


def test_a_strict_pipeline_whose_sink_raises_lets_go_of_its_lock() -> None:
    class Broken(Node):
        def write(self, data: Any) -> None:
            raise ValueError("broken sink")

    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False, strict=True).drop_none().to(Broken(), memory)
    with pytest.raises(ValueError, match="broken sink"):
        pipe.write({"r": 1.0})
    finished = threading.Event()

    def write_from_another_thread() -> None:
        try:
            pipe.write({"r": 2.0})
        except ValueError:
            finished.set()

    other = threading.Thread(target=write_from_another_thread)
    other.start()
    other.join(timeout=10)
    assert finished.is_set()  # the lock was free: the other thread's write ran (and raised)


def _has_own_dict(node: Node) -> bool:
    """Whether CPython made a real __dict__ for `node` (its attributes are then read through
    the dict, more slowly); seen as the dict among the objects the node refers to."""
    return any(isinstance(item, dict) and "counts" in item for item in gc.get_referents(node))


@pytest.mark.skipif(
    not (3, 11) <= sys.version_info[:2] < (3, 13),
    reason="only CPython 3.11 and 3.12 keep attributes outside a dict and show when one is made",
)
def test_building_and_writing_a_pipeline_leaves_its_nodes_without_an_instance_dict(
    tmp_path: Path,
) -> None:
    pipes = [
        Pipeline(close_at_exit=False).drop_none().smooth("r").throttle(0).to(MemorySink()),
        Pipeline(close_at_exit=False).aggregate("r", every=2).to(CsvSink(tmp_path / "a.csv")),
        Pipeline(close_at_exit=False).to(MemorySink(), CsvSink(tmp_path / "b.csv")),
    ]
    for pipe in pipes:
        for value in (1.0, None, 2.0):
            pipe.write({"r": value, "s": 1})
        assert [node for node in pipe.nodes() if _has_own_dict(node)] == []
        pipe.close()


def test_a_node_whose_write_is_set_on_the_instance_is_called_as_set() -> None:
    class Tap(Node):
        def __init__(self, into: list[dict[str, Any]]) -> None:
            super().__init__()
            self.write = into.append  # type: ignore[method-assign,assignment]

    got: list[dict[str, Any]] = []
    pipe = Pipeline(close_at_exit=False).drop_none().then(Tap(got)).to(MemorySink())
    pipe.write({"r": 1.0, "x": None})
    pipe.write({"r": 2.0})
    pipe.close()
    assert got == [{"r": 1.0}, {"r": 2.0}]
