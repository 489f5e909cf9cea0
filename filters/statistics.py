"""Statistics of a window of values: numpy's values, computed with one mean shared by mean
and std, a faster exact median for large windows, and one sort shared by the median and the
percentiles (`pNN`, numpy's default linear method)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.core.names import percentile_of

STATISTICS: dict[str, Callable[[np.ndarray], Any]] = {
    "mean": np.mean,
    "std": np.std,  # population std (ddof=0), as Spinning Up and numpy's default
    "median": np.median,
    "max": np.max,
    "min": np.min,
    "sum": np.sum,
    "count": len,
}


def check_stats(stats: Sequence[str] | str, argument: str = "stats") -> tuple[str, ...]:
    """`stats` as a tuple of statistic names: those of STATISTICS and percentiles `pNN` or
    `pNN.N` with 0 < NN < 100 (`p5`, `p95`, `p99.9`); a ValueError naming `argument` for an
    empty or unknown one."""
    if isinstance(stats, str):
        stats = (stats,)
    stats = tuple(stats)
    unknown = [stat for stat in stats if stat not in STATISTICS and percentile_of(stat) is None]
    if unknown or not stats:
        raise ValueError(
            f"{argument} must name some of {sorted(STATISTICS)} or percentiles pNN / pNN.N "
            f"with 0 < NN < 100 (p5, p95, p99.9), got {list(stats)!r}"
        )
    return stats


def sorted_percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """`np.percentile(values, q)` (its default linear method, same float operations, so the
    same value) of values already sorted, without NaN, 0 < q < 100: O(1) given the order."""
    n = len(values)
    index = (n - 1) * (q / 100)
    if index >= n - 1:  # as numpy: both neighbours are the last value
        a = b = float(values[-1])
        gamma = index + 1.0
    else:
        lower = int(index)
        a, b = float(values[lower]), float(values[lower + 1])
        gamma = index - lower
    diff = b - a
    return b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma


def sorted_median(values: Sequence[float] | np.ndarray) -> float:
    """`np.median(values)` of values already sorted, without NaN (at least one)."""
    n = len(values)
    middle = n // 2
    if n % 2:
        return float(values[middle])
    return (float(values[middle - 1]) + float(values[middle])) / 2


_FAST_MEDIAN = 20_000
"""From this many values on, the median selects from a narrowed range (same result)."""


def window_statistics(values: np.ndarray, stats: tuple[str, ...]) -> list[Any]:
    """The `stats` of a window's values (at least one, no NaN), equal to what the STATISTICS
    functions and `np.percentile` give, computed with one mean shared by mean and std, one
    sort shared by the median and the percentiles, and a faster median for large windows
    without percentiles."""
    n = len(values)
    mean: Any = None
    out: list[Any] = []
    ordered: np.ndarray | None = None
    if any(stat[0] == "p" for stat in stats):
        ordered = np.sort(values)
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
            out.append(median(values) if ordered is None else sorted_median(ordered))
        elif ordered is not None and stat[0] == "p":
            q = percentile_of(stat)
            assert q is not None  # check_stats let only percentiles through
            out.append(sorted_percentile(ordered, q))
        elif stat == "count":
            out.append(n)
        elif stat in _REDUCTIONS:  # the ufunc np.max/np.min/np.sum reduce with, called at once
            out.append(float(_REDUCTIONS[stat](values)))
        else:
            out.append(float(STATISTICS[stat](values)))
    return out


_REDUCTIONS: dict[str, Callable[[np.ndarray], Any]] = {
    "max": np.maximum.reduce,
    "min": np.minimum.reduce,
    "sum": np.add.reduce,
}


def median(values: np.ndarray) -> float:
    """`np.median` of a 1-d float64 array without NaN, the same value (its middle order
    statistics, or the mean of the two, as np.median takes them), found faster: by one
    selection, and for large arrays only among the values between two bounds taken from a
    sample (with a full selection when the sample misleads)."""
    n = len(values)
    upper = n // 2
    lower = upper - 1 if n % 2 == 0 else upper
    if n < _FAST_MEDIAN:
        part = np.partition(values, (lower, upper) if lower != upper else upper)
        a, b = part[lower], part[upper]
        return float(a) if lower == upper else float((a + b) / 2)
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
