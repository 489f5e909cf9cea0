"""Gates count every record they drop in `counts["dropped"]`, fused or not: every reader sees
the exact count, at any point of the stream, from any thread, in a checkpoint and after a
resume."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import EveryNFilter, LogarithmicFilter, TimeFilter
from pipeline import Pipeline
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
