"""A gate (throttle, every-n, logarithmic) in a fused run decides before the nodes above it,
and for a record it drops those nodes only observe it (the moving average moves, no record is
made); a key tuple met again crosses the run compiled for it. The records, counts and node
states are the same as the unfused chain's."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import (
    EveryNFilter,
    KeepKeys,
    LogarithmicFilter,
    NoneFilter,
    RenameKeys,
    SmoothingFilter,
    TimeFilter,
)
from pipeline import Node, Pipeline
from pipeline.core import fusion
from sinks import MemorySink
from tests.conformance.test_filters import same
from tests.conftest import FakeClock

NODES: dict[str, Callable[[FakeClock], Node]] = {
    "NoneFilter": lambda clock: NoneFilter(),
    "SmoothingFilter": lambda clock: SmoothingFilter("r|x", coeff=0.9),
    "SmoothingFilter(debiased)": lambda clock: SmoothingFilter(
        "r", coeff=0.5, bias_correction=True
    ),
    "RenameKeys": lambda clock: RenameKeys({"s": "r"}),  # counts the values it overwrites
    "KeepKeys": lambda clock: KeepKeys("r|s"),
    "TimeFilter": lambda clock: TimeFilter(1.0, clock=clock),
    "TimeFilter(keep_last)": lambda clock: TimeFilter(1.0, keep_last=True, clock=clock),
    "EveryNFilter": lambda clock: EveryNFilter(3),
    "LogarithmicFilter": lambda clock: LogarithmicFilter(2),
}
GATES = ["TimeFilter", "EveryNFilter", "LogarithmicFilter"]

values = st.one_of(
    st.none(),
    st.floats(-1e6, 1e6),
    st.integers(-10, 10),
    st.sampled_from([math.nan, math.inf, "text", True]),
)
KEYS = ["r", "s", "x", "r_smoothed_0.9"]  # r_smoothed_0.9: clashes with the smoothing's output
shapes = st.sampled_from([("r",), ("r", "s"), ("s", "r", "x"), ("r", "r_smoothed_0.9")])
records = st.one_of(
    # a few key tuples met again and again (the runs compiled for them), any others
    st.builds(lambda keys, row: dict(zip(keys, row, strict=False)), shapes,
              st.lists(values, min_size=3, max_size=3)),
    st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
)
steps = st.lists(
    st.tuples(st.sampled_from(["write", "flush"]), records, st.sampled_from([0.0, 0.3, 1.0, 2.5])),
    min_size=1,
    max_size=30,
)
chains = st.tuples(
    st.lists(st.sampled_from(sorted(NODES)), max_size=3),
    st.sampled_from([*GATES, None]),  # None: no gate of its own (one may be drawn around it)
    st.lists(st.sampled_from(sorted(NODES)), max_size=2),
).map(lambda parts: [*parts[0], *([parts[1]] if parts[1] else []), *parts[2]]).filter(bool)


def drive(chain: list[str], stream: list[tuple[str, dict[str, Any], float]], fused: bool
          ) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """The records `chain` passes on, each node's counts (with their keys) and its state."""
    clock = FakeClock()
    nodes = [NODES[name](clock) for name in chain]
    sink = MemorySink()
    head: Node
    if fused:
        pipe = Pipeline(close_at_exit=False)
        for node in nodes:
            pipe.then(node)
        head = pipe.to(sink)
    else:
        for upper, lower in itertools.pairwise(nodes):
            upper.connect(lower)
        nodes[-1].connect(sink)
        head = nodes[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, record, seconds in stream:
            clock.advance(seconds)
            if kind == "write":
                head.write(record)
            else:
                head.flush()
        states = [node.node_state() for node in nodes]
        head.close()
    counts = [(dict(node.counts), node.counts.by_key) for node in nodes]
    return sink.records, counts, states


@settings(max_examples=200, deadline=None)
@given(chain=chains, stream=steps)
def test_a_gate_deciding_first_gives_the_unfused_records_counts_and_states(
    chain: list[str], stream: list[tuple[str, dict[str, Any], float]]
) -> None:
    fused, unfused = drive(chain, stream, True), drive(chain, stream, False)
    assert same(fused[0], unfused[0])
    assert fused[1] == unfused[1]
    assert same(fused[2], unfused[2])


def test_a_throttled_record_is_observed_by_the_smoothing_not_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made, observed = [], []
    transform, observe = SmoothingFilter.transform, SmoothingFilter.observe

    def counted(self: SmoothingFilter, data: dict[str, Any]) -> dict[str, Any]:
        made.append(data)
        return transform(self, data)

    def counted_observe(self: SmoothingFilter, data: dict[str, Any]) -> None:
        observed.append(data)
        observe(self, data)

    monkeypatch.setattr(SmoothingFilter, "transform", counted)
    monkeypatch.setattr(SmoothingFilter, "observe", counted_observe)
    monkeypatch.setattr(SmoothingFilter, "specialized", lambda self, keys, name: None)
    clock = FakeClock()
    sink = MemorySink()
    pipe = Pipeline(close_at_exit=False).drop_none().smooth("r", coeff=0.5)
    pipe.then(TimeFilter(1.0, clock=clock)).to(sink)
    for value in [1.0, 3.0, None, 5.0, 7.0]:
        pipe.write({"r": value, "s": 1})
        clock.advance(0.5)
    # Passed at t=0, 1 (r None: dropped by drop_none, no smoothed value) and 2.
    assert len(made) == 3
    assert observed == [{"r": 3.0, "s": 1}, {"r": 5.0, "s": 1}]  # moved the average, unmade
    assert pipe.steps[2].counts["dropped"] == 2
    smooth = SmoothingFilter("r", coeff=0.5)  # every record made, none dropped
    moved = [smooth.transform({"r": value}) for value in [1.0, 3.0, 5.0, 7.0]]
    assert sink.records == [
        {"r": 1.0, "s": 1, "r_smoothed_0.5": moved[0]["r_smoothed_0.5"]},
        {"s": 1},
        {"r": 7.0, "s": 1, "r_smoothed_0.5": moved[3]["r_smoothed_0.5"]},
    ]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_key_tuple_met_again_crosses_the_run_compiled_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From the second record of a key tuple on, the smoothing's plan is written into the
    fused run compiled for that tuple: its `transform` is no longer called."""
    made = []
    transform = SmoothingFilter.transform

    def counted(self: SmoothingFilter, data: dict[str, Any]) -> dict[str, Any]:
        made.append(data)
        return transform(self, data)

    monkeypatch.setattr(SmoothingFilter, "transform", counted)
    sink = MemorySink()
    pipe = Pipeline(close_at_exit=False).drop_none().smooth("r", coeff=0.5).to(sink)
    unfused = SmoothingFilter("r", coeff=0.5)
    stream = [{"r": 1.0, "s": 1}, {"r": 2.0, "s": None}, {"r": 3.0, "s": 2}, {"r": "x", "s": 3},
              {"s": 4, "r": 5.0}, {"r": 6.0, "s": 5}]
    for record in stream:
        pipe.write(record)
    # The 1st: the general run; the 2nd: a None, the general path; then compiled for (r, s).
    # (s, r): met once, general.
    assert [record["r"] for record in made] == [1.0, 2.0, 5.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [
            unfused.transform({k: v for k, v in record.items() if v is not None})
            for record in stream
        ]
    assert same(sink.records, expected)
    assert pipe.steps[1].counts["skipped"] == 1


def test_keep_last_set_on_a_built_pipeline_holds_the_last_record() -> None:
    clock = FakeClock()
    sink = MemorySink()
    throttle = TimeFilter(1.0, clock=clock)
    pipe = Pipeline(close_at_exit=False).smooth("r", coeff=0.5).then(throttle).to(sink)
    throttle.keep_last = True
    pipe.write({"r": 1.0})
    pipe.write({"r": 3.0})
    pipe.flush()
    assert [list(record) for record in sink.records] == [["r", "r_smoothed_0.5"]] * 2
    assert [record["r"] for record in sink.records] == [1.0, 3.0]  # 3.0 held, then flushed


def test_time_delta_set_on_a_built_pipeline_throttles() -> None:
    clock = FakeClock()
    sink = MemorySink()
    throttle = TimeFilter(0.0, clock=clock)
    pipe = Pipeline(close_at_exit=False).then(throttle).to(sink)
    pipe.write({"r": 1.0})
    throttle.time_delta = 10.0
    pipe.write({"r": 2.0})
    pipe.write({"r": 3.0})
    assert sink.records == [{"r": 1.0}, {"r": 2.0}]
    assert throttle.dropped == 1
    with pytest.raises(ValueError, match="time_delta"):
        throttle.time_delta = -1.0


def test_a_record_the_smoothing_raises_on_leaves_the_gate_as_unfused() -> None:
    """Under warnings-as-errors a value the smoothing skips raises before the throttle takes
    the record: the throttle counts and passes nothing for it, fused or not."""
    for fused in (True, False):
        clock = FakeClock()
        sink = MemorySink()
        throttle = TimeFilter(1.0, clock=clock)
        smooth = SmoothingFilter("r")
        if fused:
            head: Node = Pipeline(close_at_exit=False).then(smooth).then(throttle).to(sink)
        else:
            head = smooth.connect(throttle)
            throttle.connect(sink)
        head.write({"r": 1.0})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(UserWarning):
                head.write({"r": "text"})  # dropped by the throttle, if it got there
        clock.advance(1.0)
        head.write({"r": 2.0})
        assert throttle.dropped == 0, fused
        assert [record["r"] for record in sink.records] == [1.0, 2.0], fused


@pytest.mark.parametrize("chain", [["NoneFilter", "SmoothingFilter", "TimeFilter"],
                                   ["SmoothingFilter", "TimeFilter"],
                                   ["NoneFilter", "SmoothingFilter", "EveryNFilter"]])
def test_a_dropped_record_with_a_none_is_observed_as_without_that_key(chain: list[str]) -> None:
    """The run compiled for (r, s) observes a record the gate drops without taking its Nones
    out first: a None counts and moves nothing, as an absent key."""
    values = [1.0, 2.0, None, 4.0, None, 6.0, 7.0, "text", None, 10.0]
    stream = [("write", {"r": r, "s": s}, 0.4)
              for r, s in zip(values, [1, None, 2, 3, None, 4, 5, 6, 7, 8], strict=True)]
    fused, unfused = drive(chain, stream, True), drive(chain, stream, False)
    assert len(fused[0]) < len(stream)  # the gate dropped some
    assert same(fused[0], unfused[0])
    assert fused[1] == unfused[1]
    assert same(fused[2], unfused[2])


def test_runs_are_compiled_for_at_most_the_limit_of_key_tuples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream cycling through more key tuples than the limit compiles each of the first
    ones once (and the fused function once more, with the first one's run in it), and the
    others take the general path, with the unfused records."""
    compiled = []

    def counting_exec(source: str, namespace: dict[str, Any]) -> None:
        compiled.append(source)
        exec(source, namespace)

    monkeypatch.setattr(fusion, "exec", counting_exec, raising=False)
    sink = MemorySink()
    pipe = Pipeline(close_at_exit=False).drop_none().smooth("r", coeff=0.5).to(sink)
    unfused = SmoothingFilter("r", coeff=0.5)
    built = len(compiled)
    shapes = [("r", f"k{i}") for i in range(fusion.SPECIALIZED_LIMIT + 36)]
    expected = []
    for step in range(4):  # each key tuple four times, in turn
        for keys in shapes:
            record = dict.fromkeys(keys, float(step))
            pipe.write(record)
            expected.append(unfused.transform(record))
    assert len(compiled) - built == fusion.SPECIALIZED_LIMIT + 1
    assert sink.records == expected


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_first_key_tuple_compiled_runs_in_the_fused_function_itself() -> None:
    """The pipeline's write, kept by the caller, crosses the run compiled for the first key
    tuple without calling it; other key tuples, a graph connected anew and a close still
    reach that same function, with the unfused records."""
    sink = MemorySink()
    pipe = Pipeline(close_at_exit=False).drop_none().smooth("r", coeff=0.5).to(sink)
    write = pipe.write
    unfused = SmoothingFilter("r", coeff=0.5)
    stream = [
        {"r": 1.0, "s": 1},
        {"r": 2.0, "s": None},
        {"r": 3.0, "s": 2},
        {"s": 3, "r": "x"},
        {"s": 4, "r": 5.0},
        {"r": 6.0, "s": 5},
        {"s": 6, "r": 7.0},
    ]
    for record in stream:
        write(record)
    assert "first" in write.__code__.co_names  # (r, s)'s run is written in it
    called: list[Any] = []
    last = write.__globals__["last"]  # the last key list met and its compiled run
    last[0], last[1] = ["r", "s"], called.append
    write({"r": 8.0, "s": 7})
    assert called == []
    expected = [
        unfused.transform({k: v for k, v in record.items() if v is not None})
        for record in [*stream, {"r": 8.0, "s": 7}]
    ]
    assert same(sink.records, expected)
    later = MemorySink()
    pipe.steps[1].connect(later)  # fused anew: the run ends at the smoothing's fan-out
    write({"r": 9.0, "s": 8})
    expected.append(unfused.transform({"r": 9.0, "s": 8}))
    assert same(sink.records, expected)
    assert same(later.records, expected[-1:])
    pipe.close()
    with pytest.raises(Exception, match="closed"):
        write({"r": 10.0, "s": 9})
