"""Partial: mergeable statistics whose merge, in any split and any order, gives numpy's
statistics over all the values (mean/std/sum/min/max/count to 1e-12 of the values'
magnitude, the median exact with exact=True and within the sketch's rank bound otherwise)."""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.partials import RANK_ERROR, Partial
from filters.statistics import window_statistics

MOMENTS = ("mean", "std", "sum", "min", "max", "count")

finite = st.floats(min_value=-1e100, max_value=1e100, allow_nan=False, allow_infinity=False)
magnitudes = st.sampled_from([1e-300, 1e-12, 1.0, 1e12, 1e100])
values_st = st.one_of(
    st.lists(finite, min_size=1, max_size=60),
    st.lists(st.one_of(finite, st.just(math.nan), st.just(math.inf), st.just(-math.inf)),
             min_size=1, max_size=60),
    st.builds(lambda xs, m: [x * m for x in xs],
              st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60), magnitudes),
)


def merged(values: list[float], cuts: list[int], order: list[int], exact: bool) -> Partial:
    """The partials of the pieces of `values` cut at `cuts`, merged in `order`."""
    bounds = [0, *sorted({min(c, len(values)) for c in cuts}), len(values)]
    pieces = [values[a:b] for a, b in itertools.pairwise(bounds)]
    partials = [Partial.from_values(np.array(piece, dtype=np.float64), exact=exact)
                for piece in pieces]
    ranked = sorted(range(len(partials)), key=lambda i: order[i % len(order)] if order else i)
    total = Partial(exact=exact)
    for i in ranked:
        # each through a pickle, as a sender ships it
        total.merge(pickle.loads(pickle.dumps(partials[i])))
    return total


def close_to(got: float, want: float, scale: float) -> bool:
    if math.isnan(want) or math.isinf(want):
        return got == want or (math.isnan(got) and math.isnan(want))
    return abs(got - want) <= 1e-12 * scale


@settings(max_examples=300, deadline=None)
@given(values_st, st.lists(st.integers(0, 60), max_size=8), st.lists(st.integers(), max_size=9),
       st.booleans())
def test_any_split_merged_in_any_order_gives_numpys_statistics(
    values: list[float], cuts: list[int], order: list[int], exact: bool
) -> None:
    all_values = np.array(values, dtype=np.float64)
    real = all_values[~np.isnan(all_values)]
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, as numpy meets it too
        total = merged(values, cuts, order, exact)
        got = dict(zip(MOMENTS, total.statistics(MOMENTS), strict=True))
    assert total.nan == int(np.isnan(all_values).sum())
    assert got["count"] == len(real)
    if not len(real):
        assert math.isnan(got["mean"]) and got["sum"] == 0.0
        return
    finite_part = real[np.isfinite(real)]
    scale = float(np.abs(finite_part).max()) if len(finite_part) else 0.0
    assert got["min"] == np.min(real) and got["max"] == np.max(real)
    with np.errstate(invalid="ignore", over="ignore"):
        assert close_to(got["mean"], float(np.mean(real)), scale)
        assert close_to(got["std"], float(np.std(real)), scale)
        assert close_to(got["sum"], float(np.sum(real)), scale * len(real))


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=80), st.lists(st.integers(0, 80), max_size=6))
def test_exact_partials_give_the_exact_median_and_percentiles(
    values: list[float], cuts: list[int]
) -> None:
    stats = ("median", "p5", "p95", "p99.9", "mean")
    total = merged(values, cuts, [], exact=True)
    want = window_statistics(np.array(values, dtype=np.float64), stats)
    got = total.statistics(stats)
    assert got[:4] == want[:4]  # the same numbers as an AggregateFilter's window
    assert got[0] == np.median(values)


def test_std_of_merged_partials_is_the_std_of_all_values_not_a_mean_of_stds() -> None:
    rng = np.random.default_rng(0)
    workers = [rng.normal(loc, 1 + loc, size=200) for loc in range(10)]
    total = Partial()
    for values in workers:
        total.merge(Partial.from_values(values))
    everything = np.concatenate(workers)
    mean, std = total.statistics(("mean", "std"))
    assert mean == pytest.approx(np.mean(everything), rel=1e-12)
    assert std == pytest.approx(np.std(everything), rel=1e-12)
    assert abs(np.mean([np.std(v) for v in workers]) - np.std(everything)) > 0.1 * std


def test_a_sketched_median_is_within_the_stated_rank_error() -> None:
    pytest.importorskip("datasketches")  # the hub extra; the core suite runs without it
    rng = np.random.default_rng(1)
    workers = [rng.lognormal(size=5000) for _ in range(40)]
    total = Partial()
    for values in workers:
        total.merge(pickle.loads(pickle.dumps(Partial.from_values(values))))
    everything = np.sort(np.concatenate(workers))
    for stat, q in (("median", 0.5), ("p5", 0.05), ("p95", 0.95), ("p99", 0.99)):
        [estimate] = total.statistics((stat,))
        rank = np.searchsorted(everything, estimate, side="right") / len(everything)
        assert abs(rank - q) <= RANK_ERROR, (stat, rank)


def test_a_partial_pickles_small() -> None:
    values = np.random.default_rng(2).normal(size=100_000)
    sketched = pickle.dumps(Partial.from_values(values))
    assert len(sketched) < 8_000  # the sketch's bytes, not the values' 800 KB
    assert len(pickle.dumps(Partial.from_values(values, sketch=False))) < 300


def test_one_value_and_only_nan() -> None:
    pytest.importorskip("datasketches")  # a median: the sketch
    one = Partial.from_values([3.5])
    assert one.statistics(("mean", "std", "median", "min", "max", "count")) == [
        3.5, 0.0, 3.5, 3.5, 3.5, 1]
    nans = Partial.from_values([math.nan, math.nan])
    assert nans.nan == 2
    got = nans.statistics(("mean", "count", "sum", "median"))
    assert math.isnan(got[0]) and got[1:3] == [0, 0.0] and math.isnan(got[3])


def test_quantiles_without_a_sketch_say_what_to_do() -> None:
    moments = Partial.from_values([1.0, 2.0], sketch=False)
    assert moments.statistics(("mean",)) == [1.5]
    with pytest.raises(ValueError, match=r"rlpipe\[hub\].*exact=True"):
        moments.statistics(("median",))


def test_exact_and_sketched_partials_do_not_mix() -> None:
    with pytest.raises(ValueError, match="exact"):
        Partial(exact=True).merge(Partial.from_values([1.0]))


def test_an_aggregate_with_partials_resumes_from_its_state() -> None:
    from filters.aggregate import AggregateFilter
    from sinks import MemorySink

    def aggregate() -> tuple[AggregateFilter, MemorySink]:
        node, sink = AggregateFilter("r", stats=("mean", "std", "count")), MemorySink()
        node.connect(sink)
        return node, sink

    first, _ = aggregate()
    first.write({"r": 1.0})
    first.add_partials({"r": Partial.from_values([2.0, 3.0])}, records=2)
    state = pickle.loads(pickle.dumps(first.state_dict()))
    second, sink = aggregate()
    second.load_state_dict(state)
    second.write({"r": 4.0})
    second.flush()
    assert sink.records == [{"r_mean": 2.5, "r_std": float(np.std([1.0, 2, 3, 4])),
                             "r_count": 4}]
