"""SmoothingFilter: EMA with warm-up, bias-corrected EMA, per-key state, bad values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from filters import SmoothingFilter
from pipeline import Pipeline
from sinks import MemorySink

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
coeffs = st.floats(min_value=0.0, max_value=0.999)


def warmup_ema_closed_form(xs: list[float], coeff: float) -> list[float]:
    """s_t = sum_i x_i (1 - c_i) prod_{j=i+1..t} c_j with c_t = coeff (1 - 0.9^t)."""
    c = [coeff * (1 - 0.9**t) for t in range(len(xs))]
    return [
        sum(xs[i] * (1 - c[i]) * math.prod(c[i + 1 : t + 1]) for i in range(t + 1))
        for t in range(len(xs))
    ]


def smoothed(xs: list[object], coeff: float, **options: bool) -> list[object]:
    sink = MemorySink()
    node = SmoothingFilter("return", coeff=coeff, **options).connect(sink)
    for x in xs:
        node.write({"return": x})
    return [record.get(f"return_smoothed_{coeff}") for record in sink.records]


@given(st.lists(finite, min_size=1, max_size=40), coeffs)
def test_warmup_ema_matches_the_closed_form(xs: list[float], coeff: float) -> None:
    assert smoothed(xs, coeff) == pytest.approx(warmup_ema_closed_form(xs, coeff), abs=1e-6)


@given(st.lists(finite, min_size=1, max_size=40), coeffs)
def test_bias_corrected_ema_matches_tensorboard(xs: list[float], coeff: float) -> None:
    expected = []
    for t in range(1, len(xs) + 1):
        w = np.array([(1 - coeff) * coeff ** (t - 1 - i) for i in range(t)])
        expected.append(float(np.dot(w, xs[:t]) / (1 - coeff**t)) if coeff else xs[t - 1])
    assert smoothed(xs, coeff, bias_correction=True) == pytest.approx(expected, abs=1e-6)


@given(finite, coeffs)
def test_the_first_smoothed_value_is_the_value_itself(x: float, coeff: float) -> None:
    assert smoothed([x], coeff) == [x]
    assert smoothed([x], coeff, bias_correction=True) == pytest.approx([x])


def test_the_coefficient_anneals_to_coeff() -> None:
    values = smoothed([0.0] + [1.0] * 200, 0.9)
    assert values[1] == pytest.approx(1 - 0.09)
    assert values[-1] == pytest.approx(1.0)


def test_original_key_kept_and_other_keys_untouched() -> None:
    sink = MemorySink()
    SmoothingFilter("return", coeff=0.9).connect(sink).write({"episode_return": 2, "steps": 5})
    assert sink.records == [{"episode_return": 2, "steps": 5, "episode_return_smoothed_0.9": 2.0}]


def test_each_key_has_its_own_state_and_keys_may_come_and_go() -> None:
    sink = MemorySink()
    node = SmoothingFilter("return", coeff=0.5).connect(sink)
    node.write({"a_return": 1.0})
    node.write({"b_return": 10.0})
    node.write({"a_return": 3.0, "b_return": 20.0})
    assert sink.records[2]["a_return_smoothed_0.5"] == pytest.approx(0.95 * 3 + 0.05 * 1)
    assert sink.records[2]["b_return_smoothed_0.5"] == pytest.approx(0.95 * 20 + 0.05 * 10)


def test_numpy_and_zero_d_values_are_smoothed() -> None:
    assert smoothed([np.array(1.0), np.float32(3.0), np.int64(5), True], 0.0) == [1, 3, 5, 1]


def test_bad_values_leave_the_state_unchanged_and_are_counted() -> None:
    sink = MemorySink()
    node = SmoothingFilter("r", coeff=0.5).connect(sink)
    with pytest.warns(UserWarning, match="not a finite number"):
        for value in [2.0, math.nan, None, "x", math.inf, np.arange(2), 4.0]:
            node.write({"r": value})
    smoothed_values = [record.get("r_smoothed_0.5") for record in sink.records]
    assert smoothed_values[:6] == [2.0] * 6
    assert smoothed_values[6] == pytest.approx(0.95 * 4 + 0.05 * 2)
    assert node.skipped == 4


def test_a_record_without_matching_keys_passes_as_it_is() -> None:
    sink = MemorySink()
    record = {"loss": 1.0}
    node = SmoothingFilter("return").connect(sink)
    node.write(record)
    assert sink.records == [record]


@pytest.mark.parametrize("coeff", [-0.1, 1.0, 2, "0.9", True])
def test_coeff_outside_zero_one_is_refused(coeff: object) -> None:
    with pytest.raises(ValueError, match="coeff"):
        SmoothingFilter("r", coeff=coeff)  # type: ignore[arg-type]


# -- an output name the record already holds -----------------------------------------------

CLASHING = [
    {"return": 1.0, "return_smoothed_0.5": 100.0, 1: 10.0, "1": 20.0},
    {"return": 3.0, "return_smoothed_0.5": 101.0, 1: 30.0, "1": 40.0},
]


def _smoothed_by(path: str) -> tuple[list[dict[object, object]], dict[str, int]]:
    sink = MemorySink()
    node = SmoothingFilter("^return$|^1$", coeff=0.5)
    with pytest.warns(UserWarning, match="already a key of the record") as caught:
        if path == "fused":
            pipe = Pipeline("t", close_at_exit=False).then(node).to(sink)
            for record in CLASHING:
                pipe.write(record)
        else:
            node.connect(sink)
            if path == "rows":
                for record in CLASHING:
                    node.write(record)
            else:
                node.write_batch({key: [r[key] for r in CLASHING] for key in CLASHING[0]})
    assert len(caught) == 2  # once per name
    return sink.records, dict(node.counts.by_key["clashed"])


@pytest.mark.parametrize("path", ["rows", "fused", "batch"])
def test_an_output_name_the_record_holds_keeps_the_records_value_and_is_counted(
    path: str,
) -> None:
    records, clashed = _smoothed_by(path)
    assert [r["return_smoothed_0.5"] for r in records] == [100.0, 101.0]  # the caller's
    assert [r["1_smoothed_0.5"] for r in records] == [10.0, 0.95 * 30.0 + 0.05 * 10.0]  # key 1's
    assert [list(r) for r in records] == [[*CLASHING[0], "1_smoothed_0.5"]] * 2
    assert clashed == {"return_smoothed_0.5": 2, "1_smoothed_0.5": 2}


def test_the_moving_average_goes_on_while_its_output_name_is_held() -> None:
    sink = MemorySink()
    node = SmoothingFilter("return", coeff=0.5).connect(sink)
    with pytest.warns(UserWarning):
        node.write({"return": 1.0, "return_smoothed_0.5": 0.0})
    node.write({"return": 3.0})
    assert sink.records[1]["return_smoothed_0.5"] == 0.95 * 3.0 + 0.05 * 1.0
