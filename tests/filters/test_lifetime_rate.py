"""`lifetime(regex)` adds the running sum since the run began (the exact sum, `math.fsum`, to
one rounding; carried across a resume); `rate(regex)` adds the change of a counter per second
of the injected clock since the previous record that held it (state as elapsed time)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from filters import LifetimeFilter, RateFilter
from pipeline import Pipeline
from sinks import MemorySink
from tests.conftest import FakeClock

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

numbers = st.floats(min_value=-1e12, max_value=1e12)
values = st.one_of(numbers, st.integers(min_value=-(10**9), max_value=10**9),
                   st.sampled_from([None, math.nan, "text"]))


def taken(xs: list[Any]) -> list[float]:
    return [float(x) for x in xs if isinstance(x, (int, float)) and x == x]


@given(st.lists(values, max_size=200))
def test_the_lifetime_sum_is_the_exact_sum_so_far_to_one_rounding(xs: list[Any]) -> None:
    sink = MemorySink()
    with Pipeline("l").lifetime("^x$").to(sink) as p:
        for x in xs:
            p.write({"x": x})
    for index, record in enumerate(sink.records):
        so_far = taken(xs[: index + 1])
        if not so_far:
            assert "x_lifetime" not in record
            continue
        exact = math.fsum(so_far)
        assert record["x_lifetime"] == pytest.approx(exact, rel=4e-16, abs=1e-300)


def test_a_long_run_of_tenths_sums_exactly() -> None:
    sink = MemorySink()
    node = LifetimeFilter("steps")
    node.connect(sink)
    node.write_batch({"steps": np.full(1_000_000, 0.1)})
    assert sink.records[-1]["steps_lifetime"] == math.fsum([0.1] * 1_000_000)
    naive = 0.0
    for _ in range(1_000_000):
        naive += 0.1
    assert naive != math.fsum([0.1] * 1_000_000)  # a plain running sum drifts


@given(st.lists(values, min_size=1, max_size=80), st.integers(min_value=0, max_value=80),
       st.lists(st.integers(min_value=1, max_value=30), max_size=4))
def test_lifetime_rows_batches_and_resumed_runs_agree(
    xs: list[Any], cut: int, sizes: list[int]
) -> None:
    cut = min(cut, len(xs))

    def build() -> tuple[Pipeline, MemorySink]:
        sink = MemorySink()
        return Pipeline("l").lifetime("^x$").to(sink), sink

    whole, whole_sink = build()
    for x in xs:
        whole.write({"x": x})
    first, _ = build()
    for x in xs[:cut]:
        first.write({"x": x})
    resumed, resumed_sink = build()
    resumed.load_state_dict(first.state_dict())
    start = cut
    for size in [*sizes, len(xs)]:
        if xs[start : start + size]:
            resumed.write_batch({"x": xs[start : start + size]})
        start += size
    assert resumed_sink.records == whole_sink.records


def test_rate_is_the_change_per_second_since_the_previous_record_holding_the_key() -> None:
    clock = FakeClock()
    sink = MemorySink()
    pipe = Pipeline("r").rate("^steps$", clock=clock).to(sink)
    pipe.write({"steps": 0})
    clock.advance(2.0)
    pipe.write({"steps": 100, "loss": 1.0})
    pipe.write({"loss": 0.5})  # no counter: no rate
    clock.advance(0.5)
    pipe.write({"steps": 150})
    pipe.write({"steps": 170})  # no time passed: the last rate, and 20 steps carried over
    clock.advance(1.0)
    pipe.write({"steps": 200})
    pipe.write({"steps": None})  # no value: the last rate
    pipe.close()
    assert sink.records == [
        {"steps": 0},
        {"steps": 100, "loss": 1.0, "steps_per_second": 50.0},
        {"loss": 0.5},
        {"steps": 150, "steps_per_second": 100.0},
        {"steps": 170, "steps_per_second": 100.0},
        {"steps": 200, "steps_per_second": 50.0},
        {"steps": None, "steps_per_second": 50.0},
    ]


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=10**6),
                          st.sampled_from([0.0, 0.25, 1.0, 3.5])), max_size=60),
       st.integers(min_value=0, max_value=60))
def test_a_resumed_rate_equals_the_uninterrupted_one_with_time_as_elapsed(
    steps: list[tuple[int, float]], cut: int
) -> None:
    """The resumed run's clock reads something else entirely (a new process): the state
    keeps how long ago the last value was taken, not when."""
    cut = min(cut, len(steps))

    def run(clock: FakeClock, pipe: Pipeline, part: list[tuple[int, float]]) -> None:
        for value, wait in part:
            clock.advance(wait)
            pipe.write({"steps": value})

    def build(clock: FakeClock) -> tuple[Pipeline, MemorySink]:
        sink = MemorySink()
        return Pipeline("r").rate("steps", clock=clock).to(sink), sink

    clock = FakeClock()
    whole, whole_sink = build(clock)
    run(clock, whole, steps)
    clock = FakeClock()
    first, _ = build(clock)
    run(clock, first, steps[:cut])
    state = first.state_dict()
    later = FakeClock()
    later.now = 987_654.0
    resumed, sink = build(later)
    resumed.load_state_dict(state)
    run(later, resumed, steps[cut:])
    assert sink.records == whole_sink.records


def test_a_batch_counts_as_written_at_one_instant() -> None:
    clock = FakeClock()
    sink = MemorySink()
    node = RateFilter("steps", clock=clock)
    node.connect(sink)
    node.write_batch({"steps": np.array([0, 8, 16])})
    clock.advance(4.0)
    node.write_batch({"steps": np.array([24, 32])})
    assert [r.get("steps_per_second") for r in sink.records] == [None, None, None, 6.0, 6.0]


def test_clashing_outputs_keep_the_records_value() -> None:
    sink = MemorySink()
    pipe = Pipeline("c").lifetime("^x$").to(sink)
    with pytest.warns(UserWarning, match="'x_lifetime' is already a key of the record"):
        pipe.write({"x": 1.0, "x_lifetime": 99})
    pipe.write({"x": 2.0})
    pipe.close()
    assert [r["x_lifetime"] for r in sink.records] == [99, 3.0]
    assert pipe.steps[0].counts["clashed"] == 1
