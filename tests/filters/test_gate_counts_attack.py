"""Gates' drop counts under attack: every way to read, copy, move or replace a gate's counts
keeps `counts["dropped"]` equal to records written minus records passed, never doubled or
lost."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import pytest

from filters import EveryNFilter, LogarithmicFilter, TimeFilter
from pipeline import Pipeline
from pipeline.core.counts import Counts
from pipeline.core.fusion import Transform
from sinks import MemorySink
from tests.conftest import FakeClock

GATES: dict[str, Callable[[FakeClock], Transform]] = {
    "TimeFilter": lambda clock: TimeFilter(1.0, clock=clock),
    "TimeFilter(keep_last)": lambda clock: TimeFilter(1.0, keep_last=True, clock=clock),
    "EveryNFilter": lambda clock: EveryNFilter(3),
    "LogarithmicFilter": lambda clock: LogarithmicFilter(2),
}


def _feed(gate: Transform, clock: FakeClock, sink: MemorySink, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        gate.write({"r": float(i)})
        clock.advance(0.3)


def _gate(name: str) -> tuple[Transform, FakeClock, MemorySink]:
    clock = FakeClock()
    gate = GATES[name](clock)
    sink = MemorySink()
    gate.connect(sink)
    return gate, clock, sink


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
@pytest.mark.parametrize("name", sorted(GATES))
def test_a_copied_gate_keeps_its_count_and_counts_on_alone(name: str, how: str) -> None:
    """A gate copies whole: the copy holds the count so far and counts its own drops from
    there, the original keeps its own. (Counter's own pickling made Counts' owner of the
    counts and kept none: every copied node's counts were empty.)"""
    gate, clock, sink = _gate(name)
    _feed(gate, clock, sink, 20)
    _feed(gate, clock, sink, 10, start=20)
    expected = 30 - len(sink.records)  # a record kept_last is counted until taken back
    copied = pickle.loads(pickle.dumps(gate)) if how == "pickle" else copy.deepcopy(gate)
    assert copied.counts["dropped"] == expected
    before = gate.counts["dropped"]
    for i in range(30):  # the copy drops some: the original's count does not move
        copied.transform({"r": float(i)})
    assert gate.counts["dropped"] == before
    assert copied.counts["dropped"] > expected


def test_counts_replaced_by_the_setter_keep_the_drops_made_before_in_the_old() -> None:
    """`gate.counts = Counts()` (a reset) starts the new counts at 0: the drops made before
    it stay in the old counts (as with a plain Counts attribute), none move to the new."""
    gate, clock, sink = _gate("EveryNFilter")
    old = gate.counts
    _feed(gate, clock, sink, 9)  # 6 dropped
    gate.counts = Counts("reset")
    assert gate.counts["dropped"] == 0
    assert old["dropped"] == 6
    _feed(gate, clock, sink, 3, start=9)
    assert gate.counts["dropped"] == 2
    assert old["dropped"] == 6


def test_a_counts_object_kept_from_an_earlier_read_is_live() -> None:
    gate, clock, sink = _gate("EveryNFilter")
    counts = gate.counts
    _feed(gate, clock, sink, 9)
    assert counts["dropped"] == 6


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("name", sorted(GATES))
def test_a_gate_shared_by_two_pipelines_counts_each_drop_once(name: str, fused: bool) -> None:
    """One gate in two pipelines (fused into each run, or not): written through either, its
    drops are counted once, whichever pipeline's counts, describe or state is read."""
    clock = FakeClock()
    gate = GATES[name](clock)
    sink, other = MemorySink(), MemorySink()  # each passed record reaches both
    pipes = []
    for end in (sink, other):
        pipe = Pipeline(close_at_exit=False)
        pipe = (pipe.smooth("r", coeff=0.5) if fused else pipe).then(gate)
        pipes.append(pipe.to(end))
    for i in range(60):
        pipes[i % 2].write({"r": float(i)})
        clock.advance(0.3)
        if i % 7 == 0:
            pipes[(i + 1) % 2].describe()
            pipes[i % 2].state_dict()
    pipes[0].flush()
    assert len(sink.records) == len(other.records)
    assert gate.counts["dropped"] == 60 - len(sink.records)
    states = [pipe.state_dict() for pipe in pipes]
    for state in states:
        (node,) = [n for n in state["nodes"] if "count" in n or "since_last" in n]
        assert node["counts"]["counts"]["dropped"] == gate.counts["dropped"]
    text = pipes[1].describe()
    assert f"'dropped': {gate.counts['dropped']}" in text
    for pipe in pipes:
        pipe.close()
    assert gate.counts["dropped"] == 60 - len(sink.records)


@pytest.mark.parametrize("cut", [1, 2, 5, 9])
def test_keep_last_held_record_taken_back_after_a_resume_from_a_batch(cut: int) -> None:
    """A batch held back with keep_last (its last row held, counted dropped), a checkpoint,
    a resume in a fresh graph, then the flush that takes the held row back: the count is the
    uninterrupted run's."""

    def build(clock: FakeClock) -> tuple[Pipeline, TimeFilter, MemorySink]:
        sink = MemorySink()
        gate = TimeFilter(1.0, keep_last=True, clock=clock)
        return Pipeline(close_at_exit=False).then(gate).to(sink), gate, sink

    batches = [{"r": [float(i + j) for j in range(4)]} for i in range(10)]
    clock = FakeClock()
    whole, whole_gate, whole_sink = build(clock)
    for batch in batches:
        whole.write_batch(batch)
        clock.advance(0.4)
    whole.close()

    clock = FakeClock()
    first, _, first_sink = build(clock)
    for batch in batches[:cut]:
        first.write_batch(batch)
        clock.advance(0.4)
    state = pickle.loads(pickle.dumps(first.state_dict()))
    second, second_gate, second_sink = build(clock)
    second.load_state_dict(state)
    for batch in batches[cut:]:
        second.write_batch(batch)
        clock.advance(0.4)
    second.close()
    passed = len(second_sink.records)  # a MemorySink's state holds the first's records
    assert first_sink.records == second_sink.records[: len(first_sink.records)]
    assert passed == len(whole_sink.records)
    assert second_gate.counts["dropped"] == whole_gate.counts["dropped"] == 40 - passed
    first.close()


@pytest.mark.parametrize("name", sorted(GATES))
def test_load_node_state_into_a_used_gate_takes_the_states_count(name: str) -> None:
    """`load_node_state` into a gate that dropped records since the state was taken: the
    state's count replaces them; none of the later drops comes back."""
    gate, clock, sink = _gate(name)
    _feed(gate, clock, sink, 10)
    state = gate.node_state()
    saved = state["counts"]["counts"]["dropped"]
    _feed(gate, clock, sink, 20, start=10)  # more drops
    gate.load_node_state(state)
    assert gate.counts["dropped"] == saved
    gate.counts = Counts("again")  # then a reset: the state's count stays with the old counts
    assert gate.counts["dropped"] == 0


def test_counts_after_close_and_write_batch_are_exact() -> None:
    for name in sorted(GATES):
        gate, clock, sink = _gate(name)
        for i in range(8):
            gate.write_batch({"r": [float(i)] * 5, "s": list(range(5))})
            clock.advance(0.7)
            _feed(gate, clock, sink, 3)
        gate.close()
        assert gate.counts["dropped"] == 8 * 8 - len(sink.records), name
        assert dict(gate.counts) == dict(pickle.loads(pickle.dumps(gate.node_state()))[
            "counts"]["counts"]), name

