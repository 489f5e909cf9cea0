"""AggregateFilter's windows by step (`every_steps`): a window per block of steps of the
record's step key, emitted when a later window begins, at flush and at close; late records
and records without a usable step are counted, never merged silently into another window."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

from filters import AggregateFilter
from pipeline import Pipeline
from sinks import MemorySink

STATS = ("mean", "count", "max")


def aggregate(every_steps: int = 10, **options: Any) -> tuple[AggregateFilter, MemorySink]:
    node = AggregateFilter("x", stats=STATS, every_steps=every_steps, **options)
    sink = MemorySink()
    node.connect(sink)
    return node, sink


def test_a_window_per_block_of_steps_emitted_when_the_next_block_begins() -> None:
    node, sink = aggregate()
    for step in range(0, 25, 4):  # 0 4 8 | 12 16 | 20 24
        node.write({"steps": step, "x": float(step)})
    assert sink.records == [
        {"steps": 8, "x_mean": 4.0, "x_count": 3, "x_max": 8.0},
        {"steps": 16, "x_mean": 14.0, "x_count": 2, "x_max": 16.0},
    ]
    node.flush()
    assert sink.records[2:] == [{"steps": 24, "x_mean": 22.0, "x_count": 2, "x_max": 24.0}]
    node.close()
    assert len(sink.records) == 3 and not node.counts


def test_the_window_id_is_the_floor_of_step_over_every_steps_negative_and_float_too() -> None:
    node, sink = aggregate()
    for step in (-11, -10.5, -1, 0, 9.99, 10.0):
        node.write({"steps": step, "x": 1.0})
    node.close()
    assert [row["x_count"] for row in sink.records] == [2, 1, 2, 1]
    assert [row["steps"] for row in sink.records] == [-10.5, -1, 9.99, 10.0]


def test_the_rows_step_is_the_largest_of_the_window_whatever_the_last_record_held() -> None:
    node, sink = aggregate(step_key="t")
    node.write({"t": 7, "x": 1.0})
    node.write({"t": 3, "x": 2.0})  # the same window, an earlier step
    node.close()
    assert sink.records == [{"t": 7, "x_mean": 1.5, "x_count": 2, "x_max": 2.0}]


def test_a_record_of_an_emitted_window_is_counted_late_and_merged_nowhere() -> None:
    node, sink = aggregate()
    node.write({"steps": 25, "x": 1.0})
    with pytest.warns(UserWarning, match="came after that window was emitted"):
        node.write({"steps": 5, "x": 100.0})  # window 0, older than the open window 2
    node.write({"steps": 15, "x": 100.0})  # window 1: older too
    node.write({"steps": 29, "x": 3.0})
    node.close()
    assert sink.records == [{"steps": 29, "x_mean": 2.0, "x_count": 2, "x_max": 3.0}]
    assert node.counts["late"] == 2


def test_a_flush_cuts_the_open_window_and_its_later_records_make_a_second_row() -> None:
    """As with every=: a flush (a checkpoint, a writer's dump) loses nothing of the block."""
    node, sink = aggregate()
    node.write({"steps": 1, "x": 1.0})
    node.flush()
    node.write({"steps": 2, "x": 2.0})
    node.write({"steps": 3, "x": 4.0})
    with pytest.warns(UserWarning, match="came after that window was emitted"):
        node.write({"steps": -5, "x": 9.0})  # the block before the flushed one: late
    node.close()
    assert [(row["steps"], row["x_count"], row["x_mean"]) for row in sink.records] == [
        (1, 1, 1.0),
        (3, 2, 3.0),
    ]
    assert node.counts["late"] == 1


@pytest.mark.parametrize("step", [None, "ten", float("nan"), math.inf, True, np.array([1, 2])])
def test_a_record_without_a_usable_step_joins_the_current_window_and_is_counted(
    step: Any,
) -> None:
    node, sink = aggregate()
    node.write({"steps": 3, "x": 1.0})
    with pytest.warns(UserWarning, match="without a usable 'steps'"):
        node.write({"steps": step, "x": 2.0})
    node.write({"x": 3.0})  # no step at all
    node.write({"steps": 12, "x": 4.0})
    node.close()
    assert [row["x_count"] for row in sink.records] == [3, 1]
    assert sink.records[0]["steps"] == 3  # the window's largest step, not the bad value
    assert node.counts["stepless"] == 2


def test_records_without_a_step_before_the_first_window_join_it() -> None:
    node, sink = aggregate()
    node.write({"x": 1.0, "note": "start"})
    node.write({"steps": 42, "x": 2.0})
    node.close()
    assert sink.records == [{"x_mean": 1.5, "x_count": 2, "x_max": 2.0, "note": "start",
                             "steps": 42}]
    assert node.counts["stepless"] == 1


def test_only_records_without_a_step_still_make_a_window_at_close() -> None:
    node, sink = aggregate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.write({"x": 1.0})
    node.close()
    assert sink.records == [{"x_mean": 1.0, "x_count": 1, "x_max": 1.0}]


def test_huge_integer_steps_are_windowed_exactly() -> None:
    node, sink = aggregate(every_steps=3)
    big = 3 * 10**30
    for step in (big - 1, big, big + 2, np.int64(2**62)):
        node.write({"steps": step, "x": 1.0})
    node.close()
    assert [row["x_count"] for row in sink.records] == [1, 2]  # 2**62 < big: late
    assert node.counts["late"] == 1


def test_a_batch_gives_the_rows_of_row_by_row() -> None:
    steps = np.arange(0, 40, 3)
    columns = {"steps": steps, "x": steps.astype(np.float64) / 7}
    by_batch, batch_sink = aggregate()
    by_batch.write_batch(columns)
    by_batch.close()
    by_row, row_sink = aggregate()
    for step in steps:
        by_row.write({"steps": step, "x": float(step) / 7})
    by_row.close()
    assert batch_sink.records == row_sink.records and len(row_sink.records) == 4


def test_every_steps_is_exclusive_with_every_and_seconds_and_must_be_a_positive_int() -> None:
    for options in ({"every": 5}, {"seconds": 1.0}):
        with pytest.raises(ValueError, match="every_steps"):
            AggregateFilter("x", every_steps=10, **options)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="every_steps"):
            AggregateFilter("x", every_steps=bad)


def test_the_builder_takes_every_steps_and_step_key() -> None:
    pipe = Pipeline(close_at_exit=False).aggregate("x", stats=("sum",), every_steps=2,
                                                    step_key="t")
    sink = MemorySink()
    pipe.to(sink)
    for t in range(5):
        pipe.write({"t": t, "x": 1.0})
    pipe.close()
    assert [row["x_sum"] for row in sink.records] == [2.0, 2.0, 1.0]
    assert [row["t"] for row in sink.records] == [1, 3, 4]


def test_a_checkpoint_keeps_the_open_window_and_its_step() -> None:
    node, _ = aggregate()
    node.write({"steps": 11, "x": 1.0})
    restored, sink = aggregate()
    restored.load_state_dict(node.state_dict())
    restored.write({"steps": 15, "x": 3.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restored.write({"steps": 5, "x": 9.0})  # before the restored window: late
    restored.close()
    assert sink.records == [{"steps": 15, "x_mean": 2.0, "x_count": 2, "x_max": 3.0}]
