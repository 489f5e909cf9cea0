"""Metric-name contracts and the EMA step: what the filters write and the readers parse.

A smoothed key is `<key>_smoothed_<coeff>`; an aggregate writes `<key>_<stat>`. The plot and
the demo find these columns by the same functions the filters name them with.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

STAT_NAMES = ("mean", "std", "median", "max", "min", "sum", "count")
"""The statistics an aggregate can write, each as the suffix `_<stat>`, besides percentiles
(`pNN`, see `percentile_of`)."""

_PERCENTILE = re.compile(r"^p(?P<q>[0-9]{1,2}(\.[0-9]+)?)$")

CURVE_STATS = ("mean", "std", "median", "min", "max")
"""The statistics a reader draws as a curve and its band."""

SPINUP_STATS = {"Average": "mean", "Std": "std", "Max": "max", "Min": "min"}
"""Spinning Up's statistic prefixes (`AverageEpRet`) and the statistic each one is."""

_SMOOTHED = re.compile(r"^(?P<base>.+)_smoothed(_(?P<coeff>[0-9.eE+-]+))?$")
_STAT_SUFFIX = re.compile(rf"^(?P<base>.+?)[_/](?P<stat>{'|'.join(CURVE_STATS)})$")
_SPINUP_PREFIX = re.compile(rf"^(?P<stat>{'|'.join(SPINUP_STATS)})(?P<base>[A-Z]\w*)$")


def smoothed_name(key: str, coeff: float) -> str:
    """The key a SmoothingFilter writes the moving average of `key` under."""
    return f"{key}_smoothed_{coeff}"


def stat_name(key: str, stat: str) -> str:
    """The key an AggregateFilter writes statistic `stat` of `key` under."""
    return f"{key}_{stat}"


def percentile_of(stat: str) -> float | None:
    """The percentile `q` (0 < q < 100) that a statistic's name `pNN` or `pNN.N` stands for
    (`p95` -> 95.0, `p99.9` -> 99.9), or None if the name is not one."""
    match = _PERCENTILE.match(stat) if isinstance(stat, str) else None
    if match is None:
        return None
    q = float(match["q"])
    return q if 0 < q < 100 else None


def rolling_name(key: str, window: int, stat: str) -> str:
    """The key a RollingFilter writes statistic `stat` of the last `window` values of `key`
    under (`episode_return_last100_mean`)."""
    return f"{key}_last{window}_{stat}"


def lifetime_name(key: str) -> str:
    """The key a LifetimeFilter writes the running sum of `key` under."""
    return f"{key}_lifetime"


def rate_name(key: str) -> str:
    """The key a RateFilter writes the change of `key` per second under."""
    return f"{key}_per_second"


def split_smoothed(name: str) -> tuple[str, float | None] | None:
    """(key, coeff) of a smoothed key (`coeff` None when the name has none), else None."""
    match = _SMOOTHED.match(name)
    if match is None:
        return None
    coeff = match["coeff"]
    try:
        return match["base"], None if coeff is None else float(coeff)
    except ValueError:
        return match["base"], None


def split_stat(name: str) -> tuple[str, str] | None:
    """(key, stat) of a statistic's column: rlpipe's and RLlib's `<key>_mean` or
    `<key>/mean`, or Spinning Up's `AverageKey`; else None."""
    match = _STAT_SUFFIX.match(name)
    if match:
        return match["base"], match["stat"]
    match = _SPINUP_PREFIX.match(name)
    if match:
        return match["base"], SPINUP_STATS[match["stat"]]
    return None


def warmup_ema(
    values: Iterable[float], coeff: float, smoothed: float = math.nan, c: float = 0.0
) -> tuple[list[float], float, float]:
    """The warm-up EMA over `values` from state (smoothed, c): the smoothed value after each
    value (NaN before the first finite one) and the final state. Values that are not finite
    leave the state as it was.

    s_t = (1 - c_t) x_t + c_t s_{t-1}; c_{t+1} = 0.9 c_t + 0.1 coeff; c_0 = 0, so the first
    smoothed value is the value itself and the coefficient anneals towards `coeff`.
    """
    out: list[float] = []
    append = out.append
    step = 0.1 * coeff
    for x in values:
        if x - x == 0:  # finite
            smoothed = x if c == 0.0 else (1.0 - c) * x + c * smoothed
            c = 0.9 * c + step
        append(smoothed)
    return out, smoothed, c
