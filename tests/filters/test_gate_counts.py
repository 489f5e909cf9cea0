"""Gates count every record they drop in `counts["dropped"]`, fused or not: every reader sees
the exact count, at any point of the stream, from any thread, in a checkpoint and after a
resume; copying, moving or replacing a gate's counts never doubles or loses one."""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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

steps = st.lists(
    st.tuples(
        st.sampled_from(["write", "write", "write", "batch", "flush", "state"]),
        st.sampled_from([0.0, 0.4, 1.0]),
        st.sampled_from([{"r": 1.0, "s": 2}, {"s": 2, "r": 1.0}, {"r": None}, {"x": 3}]),
    ),
    max_size=40,
)


def _pipeline(gate: Transform, sink: MemorySink, fused: bool) -> tuple[Any, Any]:
    """A pipeline (fused: drop_none > smooth > gate) or the same nodes connected by hand
    (unfused), and the node records go into."""
    if fused:
        pipe = Pipeline(close_at_exit=False).drop_none().smooth("r", coeff=0.5).then(gate)
        return pipe.to(sink), pipe
    from filters import NoneFilter, SmoothingFilter

    head = NoneFilter()
    smooth = SmoothingFilter("r", coeff=0.5)
    head.connect(smooth)
    smooth.connect(gate)
    gate.connect(sink)
    return head, None


def _drive(name: str, stream: list[tuple[str, float, dict[str, Any]]], fused: bool
           ) -> list[Any]:
    """What a reader of the gate sees after each step: its counts and, at "state", the
    dropped count in the node's state."""
    clock = FakeClock()
    gate = GATES[name](clock)
    sink = MemorySink()
    head, _ = _pipeline(gate, sink, fused)
    seen: list[Any] = []
    for kind, seconds, record in stream:
        clock.advance(seconds)
        if kind == "write":
            head.write(record)
        elif kind == "batch":
            head.write_batch({key: [value, value] for key, value in record.items()})
        elif kind == "flush":
            head.flush()
        else:
            seen.append(gate.node_state()["counts"]["counts"].get("dropped", 0))
        seen.append((dict(gate.counts), len(sink.records)))
    head.close()
    seen.append((dict(gate.counts), len(sink.records)))
    return seen


@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")
@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(GATES)), stream=steps)
def test_every_read_of_the_counts_is_exact_at_every_step(
    name: str, stream: list[tuple[str, float, dict[str, Any]]]
) -> None:
    assert _drive(name, stream, True) == _drive(name, stream, False)


def test_dropped_equals_written_minus_passed_at_every_read() -> None:
    clock = FakeClock()
    sink = MemorySink()
    pipe = Pipeline(close_at_exit=False).smooth("r").throttle(1.0)
    pipe.steps[-1]._clock = clock  # type: ignore[attr-defined]
    pipe.steps[-1].time_delta = 1.0  # type: ignore[attr-defined]  # fused again with the clock
    pipe.to(sink)
    throttle = pipe.steps[1]
    for i in range(1, 1001):
        pipe.write({"r": float(i)})
        clock.advance(0.25)
        assert throttle.counts["dropped"] == i - len(sink.records)
    assert "'dropped': 750" in pipe.describe()
    pipe.close()
    assert throttle.counts["dropped"] == 750


@pytest.mark.parametrize("name", sorted(GATES))
@pytest.mark.parametrize("cut", [0, 1, 7, 50])
def test_a_checkpoint_mid_stream_carries_the_exact_count(name: str, cut: int) -> None:
    stream = [{"r": float(i), "s": i} for i in range(60)]

    def run(records: list[dict[str, Any]], state: dict[str, Any] | None, clock: FakeClock
            ) -> tuple[Pipeline, Transform]:
        gate = GATES[name](clock)
        pipe, _ = _pipeline(gate, MemorySink(), True)
        if state is not None:
            pipe.load_state_dict(state)
        for record in records:
            pipe.write(record)
            clock.advance(0.3)
        return pipe, gate

    whole, whole_gate = run(stream, None, FakeClock())
    clock = FakeClock()
    first, first_gate = run(stream[:cut], None, clock)
    state = first.state_dict()
    assert state["nodes"][3]["counts"]["counts"].get("dropped", 0) == (
        first_gate.counts["dropped"]
    )
    first.close()
    second, second_gate = run(stream[cut:], state, clock)
    assert second_gate.counts["dropped"] == whole_gate.counts["dropped"] > 0
    whole.close()
    second.close()


def test_readers_on_other_threads_see_a_growing_count_that_ends_exact() -> None:
    """Threads reading the counts (and taking the state) while one thread writes: each sees
    the count grow, never fall, and the end total is written minus passed."""
    sink = MemorySink()
    pipe = Pipeline(close_at_exit=False).drop_none().smooth("r").every(7).to(sink)
    gate = pipe.steps[2]
    done = threading.Event()
    problems: list[str] = []

    def read(take_state: bool) -> None:
        last = 0
        while not done.is_set():
            now = pipe.state_dict()["nodes"][3]["counts"]["counts"].get("dropped", 0) if (
                take_state) else gate.counts["dropped"]
            if now < last:
                problems.append(f"fell from {last} to {now}")
            last = now

    readers = [threading.Thread(target=read, args=(i % 2 == 0,)) for i in range(3)]
    for reader in readers:
        reader.start()
    written = 30_000
    for i in range(written):
        pipe.write({"r": float(i), "s": None if i % 5 else i})
    done.set()
    for reader in readers:
        reader.join()
    assert problems == []
    assert gate.counts["dropped"] == written - len(sink.records)
    assert gate.counts["dropped"] == written - len(range(0, written, 7))
    pipe.close()


# -- copies, the setter, shared gates, resumes --------------------------------------------


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

