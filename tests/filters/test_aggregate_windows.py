"""AggregateFilter's time windows at their boundary and across a checkpoint, NaN counts of
numpy batches, and matching values that are not numbers."""

from __future__ import annotations

import warnings

import numpy as np

from filters import AggregateFilter
from sinks import MemorySink
from tests.conftest import FakeClock


def aggregate(clock: FakeClock, seconds: float = 10.0) -> tuple[AggregateFilter, MemorySink]:
    node = AggregateFilter("x", seconds=seconds, stats=("mean", "count"), clock=clock)
    sink = MemorySink()
    node.connect(sink)
    return node, sink


def test_a_batch_exactly_seconds_after_the_window_began_closes_it_with_its_first_row(
    clock: FakeClock,
) -> None:
    node, sink = aggregate(clock)
    node.write_batch({"x": [1.0, 2.0]})
    clock.advance(10.0)
    node.write_batch({"x": [3.0, 4.0]})
    assert sink.records == [{"x_mean": 2.0, "x_count": 3}]  # as row by row
    node.flush()
    assert sink.records[1:] == [{"x_mean": 4.0, "x_count": 1}]


def test_a_window_with_a_count_and_a_time_limit_closes_at_whichever_comes_first(
    clock: FakeClock,
) -> None:
    node = AggregateFilter("x", every=3, seconds=10.0, stats=("mean", "count"), clock=clock)
    sink = MemorySink()
    node.connect(sink)
    for x in (1.0, 2.0, 3.0):  # three records within the time: the count closes the window
        node.write({"x": x})
    assert sink.records == [{"x_mean": 2.0, "x_count": 3}]
    node.write({"x": 5.0})
    clock.advance(10.0)
    node.write({"x": 7.0})  # two records, ten seconds: the time closes it
    assert sink.records[1:] == [{"x_mean": 6.0, "x_count": 2}]
    node.write_batch({"x": [1.0, 2.0, 3.0]})  # by batch as by rows
    assert sink.records[2:] == [{"x_mean": 2.0, "x_count": 3}]


def test_a_restored_window_keeps_its_age(clock: FakeClock) -> None:
    node, _ = aggregate(clock)
    node.write({"x": 1.0})
    clock.advance(4.0)
    node.write({"x": 2.0})
    state = node.state_dict()

    later = FakeClock()
    later.advance(500.0)  # a new process: another clock reading
    restored, sink = aggregate(later)
    restored.load_state_dict(state)
    later.advance(5.9)
    restored.write({"x": 3.0})
    assert sink.records == []  # 9.9 s old
    later.advance(0.1)
    restored.write({"x": 6.0})
    assert sink.records == [{"x_mean": 3.0, "x_count": 4}]


def test_an_empty_window_restored_starts_its_clock_at_the_next_write(clock: FakeClock) -> None:
    node, _ = aggregate(clock)
    state = node.state_dict()
    restored, sink = aggregate(clock)
    restored.load_state_dict(state)
    clock.advance(100.0)
    restored.write({"x": 1.0})
    assert sink.records == []
    clock.advance(10.0)
    restored.write({"x": 3.0})
    assert sink.records == [{"x_mean": 2.0, "x_count": 2}]


def test_every_nan_of_a_numpy_batch_is_counted() -> None:
    node = AggregateFilter("x", stats=("count",))
    sink = MemorySink()
    node.connect(sink)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.write_batch({"x": np.array([1.0, np.nan, np.nan, 4.0])})
    node.flush()
    assert sink.records == [{"x_count": 2}]
    assert node.counts["nan"] == 2 and node.nan_counts == {"x": 2}


def test_a_matching_key_that_is_not_a_number_passes_its_last_value_and_is_counted() -> None:
    node = AggregateFilter("x", stats=("mean",))
    sink = MemorySink()
    node.connect(sink)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node.write({"x": "n/a", "y": 1})
        node.write({"x": 2.0, "y": 2})
        node.write({"x": "n/b"})
        node.flush()
    assert sink.records == [{"x_mean": 2.0, "x": "n/b", "y": 2}]
    assert node.counts["skipped"] == 2 and node.counts.by_key["skipped"] == {"x": 2}
    assert [(w.category, str(w.message)) for w in caught] == [
        (
            UserWarning,
            "AggregateFilter: 'x' = 'n/a' is not a real number; its last value is passed on as "
            "it is instead of statistics (counted in .counts['skipped']; warned once per key)",
        )
    ]
