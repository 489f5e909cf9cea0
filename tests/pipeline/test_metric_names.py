"""Metric-name contracts the readers rely on (`split_smoothed`, `split_stat`: what the plot
and the demo parse back) and the warm-up EMA called on its own."""

from __future__ import annotations

import math

import pytest

from pipeline.core.names import (
    smoothed_name,
    split_smoothed,
    split_stat,
    stat_name,
    warmup_ema,
)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("return_smoothed_0.99", ("return", 0.99)),
        ("a_b_smoothed_1e-3", ("a_b", 0.001)),
        ("return_smoothed", ("return", None)),  # a name without its coefficient
        ("r_smoothed_1.2.3", ("r", None)),  # a coefficient that is not a number
        ("return", None),
        ("smoothed_0.9", None),  # no key before the suffix
    ],
)
def test_split_smoothed_gives_the_key_and_coefficient_of_a_smoothed_name(
    name: str, parts: tuple[str, float | None] | None
) -> None:
    assert split_smoothed(name) == parts


def test_split_smoothed_reads_back_what_smoothed_name_writes() -> None:
    assert split_smoothed(smoothed_name("episode/return", 0.9)) == ("episode/return", 0.9)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("loss_mean", ("loss", "mean")),
        ("policy/loss/std", ("policy/loss", "std")),  # RLlib's <key>/<stat>
        ("episode_return_median", ("episode_return", "median")),
        ("AverageEpRet", ("EpRet", "mean")),  # Spinning Up's prefixes
        ("StdEpRet", ("EpRet", "std")),
        ("MaxEpLen", ("EpLen", "max")),
        ("MinEpLen", ("EpLen", "min")),
        ("loss", None),
        ("loss_sum", None),  # not a statistic drawn as a curve
        ("Averageret", None),  # a Spinning Up key starts with a capital
    ],
)
def test_split_stat_gives_the_key_and_statistic_of_a_column(
    name: str, parts: tuple[str, str] | None
) -> None:
    assert split_stat(name) == parts


def test_split_stat_reads_back_what_stat_name_writes() -> None:
    assert split_stat(stat_name("loss", "min")) == ("loss", "min")


def test_warmup_ema_from_its_default_state_starts_at_the_first_value() -> None:
    smoothed, last, c = warmup_ema([4.0, 2.0], 0.5)
    assert smoothed == [4.0, pytest.approx(0.95 * 2.0 + 0.05 * 4.0)]
    assert last == pytest.approx(2.1) and c == pytest.approx(0.9 * 0.05 + 0.1 * 0.5)


def test_warmup_ema_leaves_its_state_as_it_was_on_values_that_are_not_finite() -> None:
    smoothed, last, _ = warmup_ema([math.nan, 4.0, math.inf, 2.0], 0.5)
    assert math.isnan(smoothed[0])
    assert smoothed[1:] == [4.0, 4.0, pytest.approx(2.1)] and last == pytest.approx(2.1)
