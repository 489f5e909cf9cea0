"""Batches at the edges the row-wise tests leave: a smoothed key the input already has before
the first smoothed value, skipped values counted under their key, a TimeFilter batch exactly
`time_delta` after the last pass, and a NullSink's count across a checkpoint."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from filters import SmoothingFilter, TimeFilter
from sinks import MemorySink, NullSink
from tests.conftest import FakeClock


def test_the_inputs_own_smoothed_column_is_kept_in_every_row_by_batch_as_by_rows() -> None:
    columns = {"r": [math.nan, 1.0, 3.0], "r_smoothed_0.5": [7.0, 8.0, 9.0]}
    by_rows, by_batch = MemorySink(), MemorySink()
    row_node, batch_node = SmoothingFilter("^r$", coeff=0.5), SmoothingFilter("^r$", coeff=0.5)
    row_node.connect(by_rows)
    batch_node.connect(by_batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(3):
            row_node.write({key: column[i] for key, column in columns.items()})
        batch_node.write_batch(columns)
    assert [r["r_smoothed_0.5"] for r in by_batch.records] == [7.0, 8.0, 9.0]
    assert [r["r_smoothed_0.5"] for r in by_rows.records] == [7.0, 8.0, 9.0]
    # the two rows that had a moving average to write, by either path
    assert row_node.counts["clashed"] == batch_node.counts["clashed"] == 2


@pytest.mark.parametrize("bias_correction", [False, True])
def test_values_skipped_in_a_batch_are_counted_and_warned_under_their_key(
    bias_correction: bool,
) -> None:
    node = SmoothingFilter("r", coeff=0.5, bias_correction=bias_correction)
    sink = MemorySink()
    node.connect(sink)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node.write_batch({"r": np.array([1.0, "x", 3.0], dtype=object)})
    assert node.skipped == 1 and node.counts.by_key["skipped"] == {"r": 1}
    assert [str(w.message) for w in caught] == [
        "SmoothingFilter: 'r' = 'x' is not a finite number; it is passed on unsmoothed and the "
        "moving average is left as it was (counted in .counts['skipped']; warned once per key)"
    ]


def test_a_batch_exactly_time_delta_after_the_last_pass_passes_its_first_row(
    clock: FakeClock,
) -> None:
    node = TimeFilter(1.0, clock=clock)
    sink = MemorySink()
    node.connect(sink)
    node.write_batch({"i": [0, 1]})
    clock.advance(1.0)
    node.write_batch({"i": [2, 3]})
    assert [r["i"] for r in sink.records] == [0, 2] and node.dropped == 2


def test_a_null_sink_count_survives_a_checkpoint() -> None:
    sink = NullSink()
    sink.write({"a": 1})
    sink.write_batch({"a": [2, 3]})
    state = sink.state_dict()
    assert state["nodes"][0]["count"] == 3
    restored = NullSink()
    restored.load_state_dict(state)
    restored.write({"a": 4})
    assert restored.count == 4 and repr(restored) == "NullSink(4 records)"


@pytest.mark.parametrize("bias_correction", [False, True])
def test_values_skipped_in_a_record_are_counted_under_their_key(bias_correction: bool) -> None:
    node = SmoothingFilter("r", coeff=0.5, bias_correction=bias_correction)
    sink = MemorySink()
    node.connect(sink)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.write({"r": 2.0})
        node.write({"r": "x"})
    assert node.counts.by_key["skipped"] == {"r": 1}
    assert sink.records[1] == {"r": "x", "r_smoothed_0.5": 2.0}
