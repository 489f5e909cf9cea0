"""SmoothingFilter's column path: the moving averages over a column (in C with scipy, the
`fast` extra) give the records the row path gives, batch boundaries anywhere, NaN, inf and
None included; without scipy, the same records."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import filters._ema as ema
from filters import SmoothingFilter
from sinks import MemorySink

values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, None]),
)
coeffs = st.sampled_from([0.0, 0.3, 0.9, 0.99]) | st.floats(min_value=0.0, max_value=0.999)


@pytest.fixture
def without_scipy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(ema, "_lfilter", None)
    yield


def by_rows(
    column: list[Any], coeff: float, bias_correction: bool
) -> tuple[list[dict[str, Any]], int]:
    sink = MemorySink()
    node = SmoothingFilter("r", coeff, bias_correction=bias_correction).connect(sink)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for value in column:
            node.write({"r": value, "i": len(sink.records)})
    return sink.records, node.skipped


def by_batches(
    column: list[Any], cuts: list[int], coeff: float, bias_correction: bool, as_array: bool
) -> tuple[list[dict[str, Any]], int]:
    sink = MemorySink()
    node = SmoothingFilter("r", coeff, bias_correction=bias_correction).connect(sink)
    bounds = [0, *sorted(cut % (len(column) + 1) for cut in cuts), len(column)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start, stop in pairwise(bounds):
            part = column[start:stop]
            if as_array:  # a float column: None becomes NaN, as a numeric column holds it
                part = np.array([math.nan if x is None else x for x in part], dtype=np.float64)
            node.write_batch({"r": part, "i": list(range(start, stop))})
    return sink.records, node.skipped


def assert_same_records(
    got: list[dict[str, Any]], expected: list[dict[str, Any]], rel: float = 1e-12
) -> None:
    assert [sorted(record) for record in got] == [sorted(record) for record in expected]
    for row, want in zip(got, expected, strict=True):
        for key, value in want.items():
            if isinstance(value, float) and not math.isnan(value):
                assert row[key] == pytest.approx(value, rel=rel, abs=rel and 1e-300), (key, row)
            else:
                assert row[key] is value or (row[key] != row[key] and value != value) or (
                    row[key] == value
                ), (key, row, want)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(values, max_size=1200),
    st.lists(st.integers(min_value=0, max_value=1200), max_size=5),
    coeffs,
    st.booleans(),
    st.booleans(),
)
def test_batches_give_the_row_paths_records(
    column: list[Any], cuts: list[int], coeff: float, bias_correction: bool, as_array: bool
) -> None:
    row_column = [math.nan if x is None else x for x in column] if as_array else column
    expected, skipped = by_rows(row_column, coeff, bias_correction)
    got, got_skipped = by_batches(column, cuts, coeff, bias_correction, as_array)
    assert_same_records(got, expected)
    assert got_skipped == skipped


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("as_array", [False, True])
def test_without_scipy_the_same_records(
    bias_correction: bool, as_array: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    column: list[Any] = rng.normal(size=3000).tolist()
    for index in rng.choice(3000, size=200, replace=False):
        column[index] = [None, math.nan, math.inf][index % 3]
    cuts = [1, 400, 401, 2500]
    fast, fast_skipped = by_batches(column, cuts, 0.99, bias_correction, as_array)
    monkeypatch.setattr(ema, "_lfilter", None)
    slow, slow_skipped = by_batches(column, cuts, 0.99, bias_correction, as_array)
    assert_same_records(fast, slow)
    assert fast_skipped == slow_skipped > 0
    row_column = [math.nan if x is None else x for x in column] if as_array else column
    assert_same_records(slow, by_rows(row_column, 0.99, bias_correction)[0], rel=0)  # exactly


def test_the_column_path_runs_in_c_past_the_warm_up() -> None:
    pytest.importorskip("scipy")  # the fast extra (the core suite runs without it)
    assert ema.lfilter() is not None
    out, smoothed, c = ema.warmup_ema_column(np.ones(1000), 0.9, math.nan, 0.0)
    assert out.tolist() == [1.0] * 1000 and smoothed == 1.0
    assert 0.9 * c + 0.09 == c  # the warm-up coefficient at its fixed point


def test_a_column_of_bad_values_is_counted_in_bulk_and_warned_once() -> None:
    sink = MemorySink()
    node = SmoothingFilter("r", 0.5).connect(sink)
    with pytest.warns(UserWarning, match="not a finite number") as caught:
        node.write_batch({"r": np.array([1.0, np.nan, np.inf, 3.0])})
    assert len(caught) == 1
    assert node.skipped == 2
    assert [r["r_smoothed_0.5"] for r in sink.records] == [1.0, 1.0, 1.0, 0.95 * 3 + 0.05]
