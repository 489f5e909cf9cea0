"""AggregateFilter: windowed stats equal numpy's; windows by count, time, flush and close."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from filters import AggregateFilter
from sinks import MemorySink
from tests.conftest import FakeClock

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


def aggregate(records: list[dict[str, Any]], **options: Any) -> list[dict[str, Any]]:
    sink = MemorySink()
    node = AggregateFilter(**options).connect(sink)
    for record in records:
        node.write(record)
    node.close()
    return sink.records


@given(st.lists(finite, min_size=1, max_size=200))
def test_stats_equal_numpy(xs: list[float]) -> None:
    (out,) = aggregate([{"return": x} for x in xs], regex="return")
    values = np.array(xs)
    assert out["return_mean"] == pytest.approx(np.mean(values), rel=1e-9, abs=1e-6)
    assert out["return_std"] == pytest.approx(np.std(values), rel=1e-9, abs=1e-6)
    assert out["return_median"] == np.median(values)
    assert out["return_max"] == np.max(values)
    assert out["return_min"] == np.min(values)


@given(st.lists(finite, min_size=1, max_size=100), st.integers(min_value=1, max_value=30))
def test_every_n_writes_gives_one_record_per_window(xs: list[float], n: int) -> None:
    out = aggregate([{"x": x} for x in xs], regex="x", every=n, stats=("sum", "count"))
    windows = [xs[i : i + n] for i in range(0, len(xs), n)]
    assert [record["x_count"] for record in out] == [len(w) for w in windows]
    assert [record["x_sum"] for record in out] == pytest.approx([sum(w) for w in windows])


def test_other_keys_carry_their_last_value() -> None:
    out = aggregate([{"r": 1.0, "steps": 10}, {"r": 2.0, "steps": 20}], regex="r$")
    assert out[0]["steps"] == 20 and "steps_mean" not in out[0]


def test_a_key_set_that_changes_between_writes_is_aggregated_per_key() -> None:
    out = aggregate(
        [{"a": 1.0}, {"b": 10.0}, {"a": 3.0, "b": 30.0}, {"c": "label"}],
        regex="a|b", stats=("mean", "count"),
    )
    assert out == [{"a_mean": 2.0, "a_count": 2, "b_mean": 20.0, "b_count": 2, "c": "label"}]


def test_none_is_no_value_and_nan_is_left_out_and_counted() -> None:
    sink = MemorySink()
    node = AggregateFilter("r", stats=("mean", "count")).connect(sink)
    with pytest.warns(UserWarning, match="NaN"):
        for value in [1.0, None, math.nan, 3.0, math.nan]:
            node.write({"r": value})
    node.flush()
    assert sink.records == [{"r_mean": 2.0, "r_count": 2}]
    assert node.nan_counts == {"r": 2}


def test_a_window_of_only_nan_gives_nan_stats() -> None:
    with pytest.warns(UserWarning):
        (out,) = aggregate([{"r": math.nan}], regex="r", stats=("mean", "count"))
    assert math.isnan(out["r_mean"]) and out["r_count"] == 0


def test_infinities_are_included() -> None:
    (out,) = aggregate([{"r": 1.0}, {"r": math.inf}], regex="r", stats=("max", "min"))
    assert out == {"r_max": math.inf, "r_min": 1.0}


def test_a_non_numeric_value_of_a_matching_key_passes_as_its_last_value() -> None:
    with pytest.warns(UserWarning, match="not a real number"):
        (out,) = aggregate([{"r": "high"}, {"r": np.arange(3)}], regex="r")
    assert list(out) == ["r"] and list(out["r"]) == [0, 1, 2]


def test_numpy_scalars_zero_d_arrays_and_bools_are_numbers() -> None:
    records = [{"r": np.float32(1.0)}, {"r": np.array(2.0)}, {"r": np.int8(3)}, {"r": True}]
    (out,) = aggregate(records, regex="r", stats=("sum",))
    assert out == {"r_sum": 7.0}


def test_windows_by_time(clock: FakeClock) -> None:
    sink = MemorySink()
    node = AggregateFilter("r", seconds=10, stats=("count",), clock=clock).connect(sink)
    node.write({"r": 1.0})
    clock.advance(5)
    node.write({"r": 1.0})
    assert sink.records == []
    clock.advance(5)
    node.write({"r": 1.0})
    assert sink.records == [{"r_count": 3}]
    clock.advance(100)
    node.write({"r": 1.0})  # a new window starts at its first write, not at the last emit
    assert len(sink.records) == 1


def test_flush_emits_and_an_empty_window_emits_nothing() -> None:
    sink = MemorySink()
    node = AggregateFilter("r", stats=("count",)).connect(sink)
    node.flush()
    node.write({"r": 1.0})
    node.flush()
    node.flush()
    assert sink.records == [{"r_count": 1}]


def test_close_emits_the_last_window() -> None:
    out = aggregate([{"r": float(i)} for i in range(5)], regex="r", every=3, stats=("count",))
    assert out == [{"r_count": 3}, {"r_count": 2}]


@pytest.mark.parametrize(
    "options",
    [{"every": 0}, {"every": 1.5}, {"seconds": 0}, {"stats": ("mean", "mode")}, {"stats": ()},
     {"regex": "("}],
)
def test_bad_arguments_are_value_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AggregateFilter(**options)


@pytest.mark.parametrize("by", ["rows", "batch"])
def test_a_statistic_whose_name_the_record_holds_keeps_the_records_value_and_is_counted(
    by: str,
) -> None:
    sink = MemorySink()
    node = AggregateFilter("^x$", every=2, stats=("mean",)).connect(sink)
    records = [{"x": 1.0, "x_mean": 100, "y": "a"}, {"x": 3.0, "x_mean": 100, "y": "b"}]
    with pytest.warns(UserWarning, match="already a key of the record") as caught:
        if by == "rows":
            for record in records:
                node.write(record)
        else:
            node.write_batch({key: [r[key] for r in records] for key in records[0]})
    assert len(caught) == 1
    assert sink.records == [{"x_mean": 100, "y": "b"}]
    assert dict(node.counts.by_key["clashed"]) == {"x_mean": 1}


def test_two_keys_of_one_text_give_one_statistic_the_earlier_keys() -> None:
    sink = MemorySink()
    node = AggregateFilter(".*", every=2, stats=("max",)).connect(sink)
    with pytest.warns(UserWarning, match="'1_max' is already a key"):
        for value in (1.0, 2.0):
            node.write({1: value, "1": 10 * value})
    assert sink.records == [{"1_max": 2.0}]
    assert node.counts["clashed"] == 1
