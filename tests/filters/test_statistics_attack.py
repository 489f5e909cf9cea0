"""Adversarial checks of the statistics nodes (aggregate, rolling, lifetime, partials) against
the references their docs name, on values chosen to break them: huge magnitudes with small
differences, sums that overflow, subnormals, -0.0, ints beyond 2**53 and beyond float range,
bools, NaN, None, infinities; row by row, as list and numpy batches, mixed, across
`state_dict()` / `load_state_dict()` mid-window, and (partials) any split and merge tree.

Tolerances are the ones the existing tests hold each node to:

- aggregate: numpy's own numbers (`np.mean`, `np.std`, `np.median`, `np.percentile`, ...) on
  the window's values, equal (`==`, NaN equal to NaN; the sign of a zero is not compared);
- rolling: tests/filters/test_rolling.py's `check` (order statistics exact, mean/std within
  1e-9 of the largest magnitude among the last 2 x window values, sum times the window);
- lifetime: `math.fsum` of the values so far, `pytest.approx(rel=4e-16, abs=1e-300)`;
- partials: mean/std within 1e-12 of the values' largest finite magnitude, sum 1e-12 x that
  x n; min, max, count, NaN count, and (exact partials) median and percentiles equal.

The defects these attacks found are pinned as tests, each naming what was wrong.
"""

from __future__ import annotations

import itertools
import math
import pickle
import random
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from filters import AggregateFilter, LifetimeFilter, RollingFilter
from filters.partials import Partial
from filters.statistics import window_statistics
from sinks import MemorySink
from tests.conftest import FakeClock
from tests.filters.test_rolling import check as rolling_check

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")

FAST = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

STATS = ("mean", "std", "median", "min", "max", "sum", "count", "p0.1", "p5", "p50", "p95",
         "p99.9")
NUMPY = {"mean": np.mean, "std": np.std, "median": np.median, "min": np.min, "max": np.max,
         "sum": np.sum}
NASTY = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e308, -1e308,
         1.7976931348623157e308, 1e16, 1e16 + 2, 1e16 + 4, 1e15 + 0.125, 0.1, math.inf,
         -math.inf, math.nan]

adversarial = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NASTY),
    st.integers(min_value=-(2**70), max_value=2**70),  # beyond 2**53: rounded to a float
    st.sampled_from([10**400, -(10**400)]),  # beyond float range: +-inf
    st.booleans(),
    st.none(),
)


def number(x: Any) -> float | None:
    """What the docs say a value counts as: None no value, NaN left out, ints beyond float
    range +-inf, bools 0/1."""
    if x is None:
        return None
    if isinstance(x, int) and not isinstance(x, bool) and abs(x) > 2**1024:
        return math.inf if x > 0 else -math.inf
    value = float(x)
    return None if value != value else value


def reference(window: list[Any], stats: tuple[str, ...] = STATS) -> dict[str, Any]:
    """numpy's statistics of the window's numbers; a window with no number: NaN, count 0 and
    sum 0.0 (a key that held only NaN)."""
    values = np.array([v for v in map(number, window) if v is not None], dtype=np.float64)
    out: dict[str, Any] = {}
    with np.errstate(all="ignore"):
        for stat in stats:
            if stat == "count":
                out[stat] = len(values)
            elif not len(values):
                out[stat] = 0.0 if stat == "sum" else math.nan
            elif stat[0] == "p":
                out[stat] = float(np.percentile(values, float(stat[1:])))
            else:
                out[stat] = float(NUMPY[stat](values))
    return out


def same(a: Any, b: Any) -> bool:
    return (a != a and b != b) or a == b


# -- aggregate ------------------------------------------------------------------------------


def aggregate_run(xs: list[Any], every: int, mode: str, cut: int | None = None
                  ) -> list[dict[str, Any]]:
    """The records of `aggregate("x", every=every)` over `xs`: row by row (resumed from a
    state taken before row `cut`), one list batch, or one numpy batch."""
    sink = MemorySink()
    node = AggregateFilter("x", every=every, stats=STATS).connect(sink)
    if mode == "rows":
        for index, x in enumerate(xs):
            if index == cut:
                state = node.state_dict()
                sink = MemorySink()
                node = AggregateFilter("x", every=every, stats=STATS).connect(sink)
                node.load_state_dict(state)
            node.write({"x": x})
    elif mode == "list":
        node.write_batch({"x": list(xs)})
    else:
        node.write_batch({"x": np.array([number(x) for x in xs], dtype=np.float64)})
    node.close()
    return sink.records


@FAST
@given(st.lists(adversarial, min_size=1, max_size=50), st.integers(1, 20), st.integers(0, 50))
@example([1e16, 1e16 + 2, 1e16 + 4, 1e16 + 2], 4, 2)  # cancellation in the std
@example([2**53 + 1, 2**53, 3, 2**60 + 1], 4, 1)  # ints beyond 2**53
@example([1e308, 1e308, -1e308], 3, 0)  # a sum that overflows (numpy's: inf)
@example([5e-324, -0.0, 0.0, 5e-324], 2, 3)  # subnormals and signed zeros
@example([math.nan, math.nan, None, 1.0], 2, 1)  # an all-NaN window, a one-value window
@example([True, False, 10**400, 1.0], 4, 2)  # bools, an int beyond float range
@example([0.1] * 1500, 1500, 700)  # one window over the 1024-write fold, constant values
def test_aggregate_is_numpys_on_any_values_rows_batches_and_resumed(
    xs: list[Any], every: int, cut: int
) -> None:
    windows = [xs[i : i + every] for i in range(0, len(xs), every)]
    modes = ["rows", "list"] + (["array"] if all(x is not None for x in xs) else [])
    for mode in modes:
        records = aggregate_run(xs, every, mode, cut if mode == "rows" else None)
        assert len(records) == len(windows), mode
        for record, window in zip(records, windows, strict=True):
            if all(x is None for x in window):  # no value: no statistics
                assert record == {}
                continue
            want = reference(window)
            for stat in STATS:
                assert same(record[f"x_{stat}"], want[stat]), (mode, stat, window)


def test_std_edge_windows_are_numpys() -> None:
    """A constant window's std is numpy's (not exactly 0 for 0.1 x 1000: numpy's two-pass
    mean is not 0.1), never NaN; a single value's std is 0; p50 of two values is their
    midpoint."""
    for values in ([0.1] * 1000, [1e15 + 0.125] * 3000, [7.0], [-0.0], [1.0, 2.0]):
        (record,) = aggregate_run(values, len(values), "rows")
        want = reference(values)
        for stat in STATS:
            assert same(record[f"x_{stat}"], want[stat]), (stat, values[:3])
        assert not math.isnan(record["x_std"])
    (two,) = aggregate_run([1.0, 2.0], 2, "rows")
    assert two["x_p50"] == two["x_median"] == 1.5


mixed_value = st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-(2**64), 2**64),
                        st.sampled_from([1e16, 1e16 + 2, -0.0, 1e308, math.inf]))


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.fixed_dictionaries({}, optional={"a": mixed_value, "b": mixed_value,
                                                 "tag": st.just("t")}),
             min_size=1, max_size=30),
    st.lists(st.integers(1, 9), min_size=1, max_size=6),
    st.integers(1, 2500),
    st.data(),
)
def test_keys_mid_window_mixed_rows_and_list_batches_and_checkpoints_give_numpys_window(
    rows: list[dict[str, Any]], sizes: list[int], repeat: int, data: st.DataObject
) -> None:
    """One window (closed at close), keys that come and go, long enough to cross the
    1024-write fold: row by row equals mixed rows, list batches with None and checkpoints,
    and each key's statistics are numpy's over the writes that had it."""
    if data.draw(st.booleans(), "long"):
        rows = (rows * (1 + repeat // len(rows)))[: max(repeat, len(rows))]
    stats = ("mean", "std", "median", "min", "max", "sum", "count", "p1", "p99")
    by_rows = MemorySink()
    node = AggregateFilter("^[ab]$", stats=stats).connect(by_rows)
    for row in rows:
        node.write(dict(row))
    node.close()
    mixed = MemorySink()
    node = AggregateFilter("^[ab]$", stats=stats).connect(mixed)
    start = turn = 0
    while start < len(rows):
        chunk = rows[start : start + sizes[turn % len(sizes)]]
        start, turn = start + len(chunk), turn + 1
        keys = list(dict.fromkeys(key for row in chunk for key in row))
        if not keys or (len(chunk) == 1 and data.draw(st.booleans(), "row")):
            for row in chunk:  # a batch without columns has no rows: empty records go alone
                node.write(dict(row))
        else:
            node.write_batch({key: [row.get(key) for row in chunk] for key in keys})
        if data.draw(st.booleans(), "checkpoint"):
            state = node.state_dict()
            mixed = MemorySink()
            node = AggregateFilter("^[ab]$", stats=stats).connect(mixed)
            node.load_state_dict(state)
    node.close()
    assert len(by_rows.records) == len(mixed.records)
    for one, other in zip(by_rows.records, mixed.records, strict=True):
        assert list(one) == list(other)
        assert all(same(one[key], other[key]) for key in one)
    if not by_rows.records:
        return
    (out,) = by_rows.records
    for key in "ab":
        values = [row[key] for row in rows if key in row]
        if all(value is None for value in values):
            assert f"{key}_mean" not in out
            continue
        want = reference(values, stats)
        for stat in stats:
            assert same(out[f"{key}_{stat}"], want[stat]), (key, stat)


@FAST
@given(
    st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 2.5]),
                       st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=6), st.booleans()),
             min_size=1, max_size=20),
    st.sampled_from([0.75, 1.0, 2.0]),
    st.one_of(st.none(), st.integers(1, 5)),
)
def test_time_windows_row_by_row_and_by_batch_with_checkpoints_are_numpys(
    steps: list[tuple[float, list[float], bool]], seconds: float, every: int | None
) -> None:
    """With a fake clock: a window closes with the write at which `seconds` passed since its
    first write (or `every` writes); a batch counts as written at one instant. Rows, batches
    and a resumed batch run give the same windows, each numpy's."""
    stats = ("mean", "std", "count", "p50", "sum")
    rows_clock, batch_clock = FakeClock(), FakeClock()
    rows = MemorySink()
    by_rows = AggregateFilter("x", seconds=seconds, every=every, stats=stats,
                              clock=rows_clock).connect(rows)
    batches = MemorySink()
    by_batch = AggregateFilter("x", seconds=seconds, every=every, stats=stats,
                               clock=batch_clock).connect(batches)
    windows: list[list[float]] = []
    current: list[float] = []
    start = 0.0
    for advance, xs, checkpoint in steps:
        rows_clock.advance(advance)
        batch_clock.advance(advance)
        for x in xs:
            by_rows.write({"x": x})
            if not current:
                start = rows_clock.now
            current.append(x)
            if (every is not None and len(current) >= every) or rows_clock.now - start >= seconds:
                windows.append(current)
                current = []
        by_batch.write_batch({"x": np.array(xs)})
        if checkpoint:
            state = by_batch.state_dict()
            batches = MemorySink()
            by_batch = AggregateFilter("x", seconds=seconds, every=every, stats=stats,
                                       clock=batch_clock).connect(batches)
            by_batch.load_state_dict(state)
    by_rows.close()
    by_batch.close()
    if current:
        windows.append(current)
    assert len(rows.records) == len(batches.records) == len(windows)
    for one, other, window in zip(rows.records, batches.records, windows, strict=True):
        want = reference(window, stats)
        for stat in stats:
            assert same(one[f"x_{stat}"], want[stat]) and same(other[f"x_{stat}"], want[stat])


# -- rolling --------------------------------------------------------------------------------

ROLLING_ALL = ("mean", "std", "median", "min", "max", "sum", "count", "p5", "p95", "p99.9")
rolling_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e308, -1e308, 1e16, 1e16 + 2, 1e300, -1e300]),
    st.builds(lambda a, m: a * m, st.floats(-10, 10),
              st.sampled_from([1e-300, 1.0, 1e8, 1e15, 1e150, 1e250])),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
)


@FAST
@given(st.lists(rolling_value, max_size=60), st.integers(1, 12),
       st.sampled_from([ROLLING_ALL, ("mean",), ("sum",), ("std",), ("mean", "std", "sum")]))
@example([1e16, 1e16 + 2, 1e16 + 4, 1.0, 2.0, 3.0, 1.0, 2.0], 3, ("mean", "std", "sum"))
@example([1e300, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 3, ("mean",))  # a big value leaves
@example([0.1] * 50, 7, ("std",))  # constant: std 0, never NaN from a negative m2
@example([math.inf, 1.0, -math.inf, 2.0, 3.0, 4.0], 2, ROLLING_ALL)
def test_rolling_is_numpys_within_the_documented_tolerance_on_extreme_values(
    xs: list[Any], window: int, stats: tuple[str, ...]
) -> None:
    sink = MemorySink()
    node = RollingFilter("^x$", window=window, stats=stats).connect(sink)
    for x in xs:
        node.write({"x": x})
    rolling_check(sink.records, xs, window, stats)
    if "std" in stats:
        assert all(not (record.get(f"x_last{window}_std", 0.0) < 0) for record in sink.records)


def test_rolling_mean_of_a_window_whose_prefix_sum_overflows_is_numpys() -> None:
    xs = [1e308, 1e308, *[0.0] * 6, -1e308, -1e308, *[1.0] * 6]
    sink = MemorySink()
    node = RollingFilter("^x$", window=16, stats=("mean", "sum")).connect(sink)
    for x in xs:
        node.write({"x": x})
    last = sink.records[-1]
    assert float(np.mean(xs)) == float(sum(map(Fraction, xs)) / 16) == 0.375
    assert last["x_last16_mean"] == pytest.approx(0.375)  # got inf
    assert last["x_last16_sum"] == pytest.approx(6.0)  # got inf


# -- lifetime -------------------------------------------------------------------------------


@FAST
@given(st.lists(st.one_of(st.floats(min_value=-1e300, max_value=1e300),
                          st.sampled_from([1e16, 1.0, -1e16, 0.1, 5e-324, -0.0, None]),
                          st.integers(-(2**60), 2**60)), max_size=80),
       st.integers(0, 80))
def test_lifetime_rows_batches_and_resume_agree_on_extreme_values(xs: list[Any], cut: int
                                                                 ) -> None:
    whole = MemorySink()
    node = LifetimeFilter("^x$").connect(whole)
    for x in xs:
        node.write({"x": x})
    resumed = MemorySink()
    first = LifetimeFilter("^x$").connect(MemorySink())
    for x in xs[:cut]:
        first.write({"x": x})
    second = LifetimeFilter("^x$").connect(resumed)
    second.load_state_dict(first.state_dict())
    if xs[cut:]:
        second.write_batch({"x": xs[cut:]})
    assert resumed.records == whole.records  # the state carries the first sink's records


def test_lifetime_sum_is_fsum_to_one_rounding_when_the_compensation_is_large() -> None:
    xs = [1e100, 1.0, *[1e-16] * 1000, -1e100]
    sink = MemorySink()
    node = LifetimeFilter("^x$").connect(sink)
    for x in xs:
        node.write({"x": x})
    # fsum: 1.0000000000001; got 1.0 (relative error 1e-13, the tests' bound is 4e-16)
    assert sink.records[-1]["x_lifetime"] == pytest.approx(math.fsum(xs), rel=4e-16, abs=1e-300)


def test_lifetime_sum_beyond_float_range_stays_infinite_as_documented() -> None:
    """A running sum that went beyond float range is infinite for good (documented), even
    when later values bring the exact sum back: as a plain sum, never a wrong finite one."""
    xs = [1e308, 1e308, -1e308, -1e308, 5.0]
    sink = MemorySink()
    node = LifetimeFilter("^x$").connect(sink)
    for x in xs:
        node.write({"x": x})
    assert float(sum(map(Fraction, xs))) == 5.0
    assert [record["x_lifetime"] for record in sink.records] == [1e308, *[math.inf] * 4]


# -- partials -------------------------------------------------------------------------------

partial_value = st.one_of(
    st.floats(min_value=-1e140, max_value=1e140),  # the module's stated range: |x| < 1e150
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2e-308, 1e16, 1e16 + 2, 1e16 + 4, 0.1,
                     math.inf, -math.inf, math.nan]),
)


def merged_tree(pieces: list[list[float]], exact: bool, rng: random.Random) -> Partial:
    """The partials of `pieces` merged as a random tree (either side into the other), some
    through a pickle or a copy on the way."""
    parts = [Partial.from_values(np.array(piece, dtype=np.float64), exact=exact)
             for piece in pieces]
    while len(parts) > 1:
        index = rng.randrange(len(parts) - 1)
        left, right = parts[index], parts[index + 1]
        joined = left.merge(right) if rng.random() < 0.5 else right.merge(left)
        if rng.random() < 0.3:
            joined = pickle.loads(pickle.dumps(joined))
        if rng.random() < 0.3:
            joined = joined.copy()
        parts[index : index + 2] = [joined]
    return parts[0]


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.lists(partial_value, min_size=1, max_size=60), st.lists(st.integers(0, 60),
                                                                  max_size=10),
       st.integers(0, 2**32), st.booleans())
@example([1e16, 1e16 + 2, 1e16 + 4] * 5, [3, 7, 11], 1, False)
@example([0.1] * 40, list(range(1, 40)), 2, False)  # one-value partials of a constant
@example([math.inf, 1.0, math.nan, -math.inf, 2.0], [1, 2, 3, 4], 3, True)
def test_any_split_and_merge_tree_gives_the_whole_windows_statistics(
    xs: list[float], cuts: list[int], seed: int, exact: bool
) -> None:
    rng = random.Random(seed)
    bounds = [0, *sorted({min(cut, len(xs)) for cut in cuts}), len(xs)]
    pieces = [xs[a:b] for a, b in itertools.pairwise(bounds)]
    rng.shuffle(pieces)
    total = merged_tree(pieces, exact, rng)
    stats = STATS if exact else ("mean", "std", "min", "max", "sum", "count")
    values = np.array(xs, dtype=np.float64)
    real = values[~np.isnan(values)]
    assert total.nan == int(np.isnan(values).sum())
    with np.errstate(all="ignore"):
        got = total.statistics(stats)
        if not len(real):
            assert got[stats.index("count")] == 0
            return
        want = window_statistics(real, stats)
    finite = real[np.isfinite(real)]
    scale = float(np.abs(finite).max()) if len(finite) else 0.0
    for stat, value, expected in zip(stats, got, want, strict=True):
        if stat in ("mean", "std", "sum") and math.isfinite(expected):
            bound = 1e-12 * scale * (len(real) if stat == "sum" else 1)
            assert abs(value - expected) <= bound, (stat, value, expected)
        else:  # min, max, count, infinities, NaN, and exact medians and percentiles
            assert same(value, expected), (stat, value, expected)
    if "std" in stats and math.isfinite(want[stats.index("std")]):
        assert got[stats.index("std")] >= 0


def test_the_sum_of_many_merged_partials_stays_within_the_stated_bound() -> None:
    n = 1_000_000
    total = Partial(sketch=False)
    one = Partial.from_values([0.1], sketch=False)
    for _ in range(n):
        total.merge(one)
    got_sum, got_mean = total.statistics(("sum", "mean"))
    want = float(np.sum(np.full(n, 0.1)))  # 100000.00000000003; fsum: 100000.0
    assert got_mean == 0.1
    assert abs(got_sum - want) <= 1e-12 * 0.1 * n  # got 100000.00000133288


def test_an_exact_partial_keeps_its_values_when_the_callers_buffer_is_reused() -> None:
    buffer = np.array([1.0, 2.0, 3.0])
    partial = Partial.from_values(buffer, exact=True)
    buffer[:] = 100.0  # the caller refills its buffer for the next window
    assert partial.statistics(("median", "mean", "max", "min")) == [2.0, 2.0, 3.0, 1.0]
