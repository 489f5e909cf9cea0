"""Percentiles of an aggregate window (`stats=("p5", "p95", "p99.9")`): exactly numpy's
`np.percentile` (default linear method) over the window's values, on the row and batch paths
and across a `state_dict` round trip."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from filters import AggregateFilter
from filters.statistics import sorted_median, sorted_percentile
from pipeline import Pipeline
from sinks import MemorySink

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

STATS = ("mean", "median", "p5", "p50", "p95", "p99", "p99.9", "p0.5")
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.none(),
)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def reference(xs: list[Any], stat: str) -> float:
    """numpy's statistic of the window's values (None and NaN left out)."""
    window = np.array([float(x) for x in xs if x is not None and x == x], dtype=np.float64)
    if stat == "median":
        return float(np.median(window))
    return float(np.percentile(window, float(stat[1:])))


def run(xs: list[Any], every: int, *, batch: bool) -> list[dict[str, Any]]:
    sink = MemorySink()
    node = AggregateFilter("x", every=every, stats=STATS).connect(sink)
    if batch:
        node.write_batch({"x": xs})
    else:
        for x in xs:
            node.write({"x": x})
    node.close()
    return sink.records


@given(st.lists(values, min_size=1, max_size=120), st.integers(min_value=1, max_value=40))
def test_percentiles_equal_numpys_on_every_window_row_and_batch(xs: list[Any], every: int) -> None:
    rows, batch = run(xs, every, batch=False), run(xs, every, batch=True)
    windows = [xs[i : i + every] for i in range(0, len(xs), every)]
    assert len(rows) == len(batch) == len(windows)
    for window, by_row, by_batch in zip(windows, rows, batch, strict=True):
        assert by_row.keys() == by_batch.keys()
        if all(x is None for x in window):  # a window with no value has no statistics
            assert "x_p95" not in by_row
            continue
        numbers = [x for x in window if x is not None and x == x]
        for stat in STATS[1:]:
            expected = reference(window, stat) if numbers else math.nan
            assert same(by_row[f"x_{stat}"], expected), (stat, window)
            assert same(by_batch[f"x_{stat}"], expected), (stat, window)


@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=60),
       st.floats(min_value=0.001, max_value=99.999))
def test_sorted_percentile_is_numpys_for_any_q(xs: list[float], q: float) -> None:
    ordered = sorted(xs)
    assert same(sorted_percentile(ordered, q), float(np.percentile(np.array(xs), q)))
    assert same(sorted_median(ordered), float(np.median(np.array(xs))))


def test_numpy_columns_and_a_large_window() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=50_000)
    x[::97] = np.nan
    sink = MemorySink()
    node = AggregateFilter("x", stats=("median", "p1", "p25", "p75", "p99.99")).connect(sink)
    node.write_batch({"x": x})
    node.close()
    (out,) = sink.records
    clean = x[~np.isnan(x)]
    assert out["x_median"] == np.median(clean)
    for q in ("1", "25", "75", "99.99"):
        assert out[f"x_p{q}"] == np.percentile(clean, float(q))


def test_the_output_keys_name_the_percentile_as_written() -> None:
    sink = MemorySink()
    with Pipeline("p").aggregate("episode_return", stats=("p95", "p99.9", "p5")).to(sink) as p:
        for x in range(1, 101):
            p.write({"episode_return": float(x)})
    (out,) = sink.records
    assert list(out) == ["episode_return_p95", "episode_return_p99.9", "episode_return_p5"]
    assert out["episode_return_p95"] == np.percentile(np.arange(1.0, 101.0), 95)


@pytest.mark.parametrize("stat", ["p0", "p100", "p100.0", "p", "p-5", "p5.", "q5", "P5", "p1e1"])
def test_a_percentile_outside_0_100_or_misspelt_is_refused(stat: str) -> None:
    with pytest.raises(ValueError, match="stats must name"):
        AggregateFilter("x", stats=("mean", stat))


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=2, max_size=80),
       st.integers(min_value=0, max_value=80))
def test_a_window_resumed_from_state_dict_gives_the_uninterrupted_percentiles(
    xs: list[float], cut: int
) -> None:
    cut = min(cut, len(xs))

    def build() -> tuple[Pipeline, MemorySink]:
        sink = MemorySink()
        return Pipeline("p").aggregate("x", every=50, stats=("p10", "p90", "median")).to(sink), sink

    whole, whole_sink = build()
    for x in xs:
        whole.write({"x": x})
    whole.close()
    first, _ = build()
    for x in xs[:cut]:
        first.write({"x": x})
    state = first.state_dict()
    second, second_sink = build()
    second.load_state_dict(state)
    for x in xs[cut:]:
        second.write({"x": x})
    second.close()
    assert second_sink.records == whole_sink.records  # the sink's state holds the first part
