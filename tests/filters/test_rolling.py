"""`rolling(regex, window, stats)` (RollingFilter) gives, on every record holding a key, the
numbers numpy gives on a `deque(maxlen=window)` of the key's values: exact for order
statistics, within a stated tolerance for the running sums; row, batch, fused, unfused and
resumed runs agree."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import RollingFilter
from pipeline import Pipeline
from sinks import MemorySink

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ALL = ("mean", "std", "median", "min", "max", "sum", "count", "p5", "p95", "p99.9")
EXACT = ("median", "min", "max", "count", "p5", "p95", "p99.9")
NUMPY = {
    "mean": np.mean, "std": np.std, "median": np.median, "min": np.min, "max": np.max,
    "sum": np.sum, "count": len,
}

values = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from([None, math.nan, math.inf, -math.inf, "text"]),
)


def numpy_reference(xs: list[Any], window: int, stats: tuple[str, ...]) -> list[dict[str, Any]]:
    """What the filter promises, the slow way: a deque(maxlen=window) of the numbers (None,
    NaN and non-numbers left out), numpy over it on every record; a record whose value is not
    taken carries the last statistics (none before the first number)."""
    window_values: deque[float] = deque(maxlen=window)
    out: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    for x in xs:
        record: dict[str, Any] = {"x": x}
        if isinstance(x, (int, float)) and x == x:
            window_values.append(float(x))
            array = np.array(window_values)
            with np.errstate(invalid="ignore"):
                last = {
                    f"x_last{window}_{stat}": float(np.percentile(array, float(stat[1:])))
                    if stat.startswith("p") else NUMPY[stat](array)
                    for stat in stats
                }
        record.update(last)
        out.append(record)
    return out


def close_enough(got: Any, expected: Any, scale: float, stat: str) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(got, float) and math.isnan(got)
    if stat in EXACT or math.isinf(expected):
        return bool(got == expected)
    # running sums: within 1e-9 of the largest magnitude among the last 2 x window values
    # (times the window's length for sum)
    return abs(got - expected) <= 1e-9 * max(scale, 1.0)


def check(records: list[dict[str, Any]], xs: list[Any], window: int,
          stats: tuple[str, ...]) -> None:
    expected = numpy_reference(xs, window, stats)
    assert len(records) == len(expected)
    for index, (got, want) in enumerate(zip(records, expected, strict=True)):
        assert got.keys() == want.keys(), index
        recent = [abs(float(x)) for x in xs[: index + 1]
                  if isinstance(x, (int, float)) and x == x and abs(x) != math.inf]
        largest = max(recent[-2 * window :], default=1.0)
        for key, value in want.items():
            if key == "x":
                assert got[key] is value or (value != value and got[key] != got[key])
            else:
                stat = key.rsplit("_", 1)[1]
                scale = largest * window if stat == "sum" else largest
                assert close_enough(got[key], value, scale, stat), (index, key, got[key], value)


def by_rows(xs: list[Any], window: int, stats: tuple[str, ...], *, fused: bool = True
            ) -> tuple[list[dict[str, Any]], RollingFilter]:
    sink = MemorySink()
    node = RollingFilter("^x$", window=window, stats=stats)
    if fused:
        pipe = Pipeline("rolling").then(node).to(sink)
        for x in xs:
            pipe.write({"x": x})
        pipe.close()
    else:
        node.connect(sink)
        for x in xs:
            node.write({"x": x})
    return sink.records, node


@given(st.lists(values, max_size=150), st.integers(min_value=1, max_value=12))
def test_every_record_gets_numpys_statistics_of_the_last_window_values(
    xs: list[Any], window: int
) -> None:
    records, node = by_rows(xs, window, ALL)
    check(records, xs, window, ALL)
    assert node.counts["nan"] == sum(1 for x in xs if isinstance(x, float) and x != x)
    assert node.counts["skipped"] == xs.count("text")


@settings(max_examples=50)
@given(st.lists(values, max_size=120), st.integers(min_value=1, max_value=10),
       st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6))
def test_batches_fused_and_unfused_rows_give_the_same_records(
    xs: list[Any], window: int, cuts: list[int]
) -> None:
    rows, _ = by_rows(xs, window, ALL)
    unfused, _ = by_rows(xs, window, ALL, fused=False)
    sink = MemorySink()
    node = RollingFilter("^x$", window=window, stats=ALL)
    node.connect(sink)
    start = 0
    for size in [*cuts, len(xs)]:
        part = xs[start : start + size]
        if part:
            numeric = all(type(x) is float for x in part)
            column = np.array(part) if numeric else part
            node.write_batch({"x": column, "i": list(range(len(part)))})
        start += size
    batch = [{key: value for key, value in record.items() if key != "i"}
             for record in sink.records]
    for got in (unfused, batch):
        assert len(got) == len(rows)
        for a, b in zip(got, rows, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key]), key


def test_a_long_stream_stays_within_tolerance_of_numpy() -> None:
    """10^5 values around 1e6 with noise (where naive running sums drift): mean, std and sum
    stay within 1e-9 of the window's magnitude of numpy's on a deque, at every record."""
    rng = np.random.default_rng(1)
    xs = (1e6 + rng.normal(scale=3.0, size=100_000)).tolist()
    window = 100
    records, _ = by_rows(xs, window, ("mean", "std", "sum"))
    array = np.array(xs)
    for index in range(0, len(xs), 7):  # numpy on every 7th record's window, for time
        values = array[max(0, index - window + 1) : index + 1]
        got = records[index]
        assert abs(got["x_last100_mean"] - np.mean(values)) <= 1e-9 * 1e6
        assert abs(got["x_last100_std"] - np.std(values)) <= 1e-9 * 1e6
        assert abs(got["x_last100_sum"] - np.sum(values)) <= 1e-9 * 1e6 * window


@given(st.lists(values, min_size=1, max_size=100), st.integers(min_value=0, max_value=100),
       st.integers(min_value=1, max_value=8))
def test_a_resumed_window_gives_the_uninterrupted_records(
    xs: list[Any], cut: int, window: int
) -> None:
    cut = min(cut, len(xs))

    def build() -> tuple[Pipeline, MemorySink]:
        sink = MemorySink()
        return Pipeline("r").rolling("^x$", window=window, stats=ALL).to(sink), sink

    whole, whole_sink = build()
    for x in xs:
        whole.write({"x": x})
    first, _ = build()
    for x in xs[:cut]:
        first.write({"x": x})
    second, sink = build()
    second.load_state_dict(first.state_dict())
    for x in xs[cut:]:
        second.write({"x": x})
    assert len(sink.records) == len(whole_sink.records)
    for a, b in zip(sink.records, whole_sink.records, strict=True):
        assert a.keys() == b.keys()
        for key in a:  # to the bit: the state carries the running sums
            assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key])


def test_keys_are_independent_and_named_key_last_window_stat() -> None:
    sink = MemorySink()
    with Pipeline("r").rolling("return", window=2, stats=("mean", "max")).to(sink) as p:
        p.write({"episode_return": 1.0, "eval_return": 10.0, "steps": 1})
        p.write({"episode_return": 3.0})
        p.write({"episode_return": 5, "eval_return": 20.0})
    assert sink.records == [
        {"episode_return": 1.0, "eval_return": 10.0, "steps": 1,
         "episode_return_last2_mean": 1.0, "episode_return_last2_max": 1.0,
         "eval_return_last2_mean": 10.0, "eval_return_last2_max": 10.0},
        {"episode_return": 3.0, "episode_return_last2_mean": 2.0,
         "episode_return_last2_max": 3.0},
        {"episode_return": 5, "eval_return": 20.0,
         "episode_return_last2_mean": 4.0, "episode_return_last2_max": 5.0,
         "eval_return_last2_mean": 15.0, "eval_return_last2_max": 20.0},
    ]


def test_the_default_is_sb3s_mean_over_the_last_100() -> None:
    sink = MemorySink()
    buffer: deque[float] = deque(maxlen=100)  # SB3's ep_info_buffer, safe_mean over it
    with Pipeline("r").rolling("^episode_return$").to(sink) as p:
        for x in range(250):
            p.write({"episode_return": float(x)})
            buffer.append(float(x))
    assert sink.records[-1]["episode_return_last100_mean"] == np.mean(buffer)


def test_an_output_the_record_already_holds_keeps_the_records_value_counted() -> None:
    sink = MemorySink()
    pipe = Pipeline("r").rolling("^x$", window=3).to(sink)
    with pytest.warns(UserWarning, match="'x_last3_mean' is already a key of the record"):
        pipe.write({"x": 1.0, "x_last3_mean": "mine"})
    pipe.write({"x": 2.0, "x_last3_mean": "mine again"})
    pipe.write({"x": 3.0})
    pipe.close()
    assert [r["x_last3_mean"] for r in sink.records] == ["mine", "mine again", 2.0]
    (node,) = [n for n in pipe.steps if isinstance(n, RollingFilter)]
    assert node.counts["clashed"] == 2


@pytest.mark.parametrize("window", [0, -1, 2.5, True, "100"])
def test_a_window_that_is_not_a_positive_int_is_refused(window: Any) -> None:
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        Pipeline("r").rolling("x", window=window)


def test_unknown_stats_are_refused() -> None:
    with pytest.raises(ValueError, match="stats must name"):
        Pipeline("r").rolling("x", stats=("mean", "p100"))


@pytest.mark.parametrize("window", [4095, 4096, 5000])
def test_large_windows_order_statistics_are_exact(window: int) -> None:
    """Both ways of keeping the order (a bisect list below 4096, a SortedList from 4096 on)
    give numpy's values bit for bit, with repeated values and infinities."""
    rng = np.random.default_rng(window)
    xs = rng.integers(-50, 50, size=3 * window).astype(float)
    xs[::211] = math.inf
    xs[::307] = -math.inf
    stats = ("min", "max", "median", "p1", "p50", "p99.5", "count")
    sink = MemorySink()
    node = RollingFilter("x", window=window, stats=stats)
    node.connect(sink)
    node.write_batch({"x": xs})
    for index in range(0, len(xs), 499):
        values = xs[max(0, index - window + 1) : index + 1]
        got = sink.records[index]
        with np.errstate(invalid="ignore"):
            expected = {
                "min": np.min(values), "max": np.max(values), "median": np.median(values),
                "p1": np.percentile(values, 1), "p50": np.percentile(values, 50),
                "p99.5": np.percentile(values, 99.5), "count": len(values),
            }
        for stat, value in expected.items():
            found = got[f"x_last{window}_{stat}"]
            assert found == value or (math.isnan(found) and math.isnan(value)), (index, stat)


def test_a_batch_holding_an_output_keeps_its_column_counted_per_row() -> None:
    rows_sink, batch_sink = MemorySink(), MemorySink()
    by_rows = RollingFilter("^x$", window=3, stats=("mean", "max"))
    by_batch = RollingFilter("^x$", window=3, stats=("mean", "max"))
    by_rows.connect(rows_sink)
    by_batch.connect(batch_sink)
    xs, mine = [None, 1.0, 2.0, 4.0], ["a", "b", "c", "d"]
    for x, m in zip(xs, mine, strict=True):
        by_rows.write({"x": x, "x_last3_mean": m})
    by_batch.write_batch({"x": xs, "x_last3_mean": mine})
    assert batch_sink.records == rows_sink.records == [
        {"x": None, "x_last3_mean": "a"},
        {"x": 1.0, "x_last3_mean": "b", "x_last3_max": 1.0},
        {"x": 2.0, "x_last3_mean": "c", "x_last3_max": 2.0},
        {"x": 4.0, "x_last3_mean": "d", "x_last3_max": 4.0},
    ]
    assert by_rows.counts["clashed"] == by_batch.counts["clashed"] == 3
