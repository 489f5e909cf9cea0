"""Statistics of an aggregate window: numpy's values, computed with one mean shared by mean
and std and a faster exact median for large windows."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

STATISTICS: dict[str, Callable[[np.ndarray], Any]] = {
    "mean": np.mean,
    "std": np.std,  # population std (ddof=0), as Spinning Up and numpy's default
    "median": np.median,
    "max": np.max,
    "min": np.min,
    "sum": np.sum,
    "count": len,
}


_FAST_MEDIAN = 20_000
"""From this many values on, the median selects from a narrowed range (same result)."""


def window_statistics(values: np.ndarray, stats: tuple[str, ...]) -> list[Any]:
    """The `stats` of a window's values, equal to what the STATISTICS functions give, computed
    with one mean shared by mean and std and a faster median for large windows."""
    n = len(values)
    mean: Any = None
    out: list[Any] = []
    for stat in stats:
        if stat == "mean" or stat == "std":
            if mean is None:
                mean = np.add.reduce(values) / n  # as np.mean
            if stat == "mean":
                out.append(float(mean))
            else:  # as np.std: sqrt(mean(|x - mean|^2))
                deviations = values - mean
                np.multiply(deviations, deviations, out=deviations)
                out.append(float(np.sqrt(np.add.reduce(deviations) / n)))
        elif stat == "median":
            out.append(median(values))
        elif stat == "count":
            out.append(n)
        else:
            out.append(float(STATISTICS[stat](values)))
    return out


def median(values: np.ndarray) -> float:
    """`np.median` of a 1-d float64 array without NaN, the same value, found faster for large
    arrays: the middle order statistics are looked for only among the values between two
    bounds taken from a sample (with a full selection when the sample misleads)."""
    n = len(values)
    if n < _FAST_MEDIAN:
        return float(np.median(values))
    upper = n // 2
    lower = upper - 1 if n % 2 == 0 else upper
    sample = np.array(values[:: n // 4096])
    m = len(sample)
    margin = 2 * int(math.sqrt(m)) + 8  # the middle's sample rank is within 4 sigma
    low_rank = max(0, lower * m // n - margin)
    high_rank = min(m - 1, -(-upper * m // n) + margin)
    sample.partition((low_rank, high_rank))
    low, high = sample[low_rank], sample[high_rank]
    below = int(np.count_nonzero(values < low))
    middle = values[(values >= low) & (values <= high)]
    if below <= lower and upper < below + len(middle):
        middle.partition((lower - below, upper - below))
        a, b = middle[lower - below], middle[upper - below]
    else:  # a sample that does not straddle the middle: select over everything
        part = np.partition(values, (lower, upper))
        a, b = part[lower], part[upper]
    return float(a) if lower == upper else float((a + b) / 2)
