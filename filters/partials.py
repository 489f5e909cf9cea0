"""Mergeable partial statistics: the summary of some values of one key in one window that
merges with another such summary into the summary of all their values.

A `Partial` holds the count, mean and M2 (the sum of squared deviations from the mean) of the
finite values, merged with Chan et al.'s pairwise formulas, so the std of merged partials is
the std of all their values (not a mean of stds); their sum, min and max; the +inf and -inf
values apart (numpy's mean of values holding +inf is inf, holding both is NaN, and its std of
values holding any is NaN); the NaN values counted apart (left out, as AggregateFilter does).

Medians and percentiles (`pNN`) come from one of two places:

- `exact=True`: the partial carries the values themselves (numpy float64 arrays, 8 bytes a
  value), so its statistics are exactly `window_statistics` of all the values (numpy's).
- otherwise a KLL quantile sketch from Apache DataSketches (`pip install 'rlpipe[hub]'`),
  k=200: a few KB however many values, mergeable. Its answer for a quantile q is one of the
  values whose normalized rank (the fraction of values at or below it) is within about 1.33%
  of q (DataSketches' single-sided epsilon for k=200; 1.65% double-sided, the bound this
  project states), with 99% confidence: the median of a million values is a value ranked
  between the 486,800th and the 513,200th. It is not interpolated as `np.percentile` is.
  Without datasketches such a partial has no sketch, and asking it for a median or a
  percentile raises a ValueError that says to install it or use `exact=True`.

Mean, std, sum, min, max and count match numpy over all the values to about 1e-12 of the
values' magnitude (floating point: numpy itself sums in its own order), whatever the split
and the merge order, as long as the squares of the deviations do not overflow (|x| < 1e150).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from filters.statistics import check_stats, window_statistics
from pipeline.core.names import percentile_of

try:  # the optional quantile sketch (the `hub` extra)
    import datasketches as _datasketches
except ImportError:  # pragma: no cover - the CI installs every extra
    _datasketches = None

__all__ = ["KLL_K", "RANK_ERROR", "Partial", "has_sketches", "needs_quantiles"]

KLL_K = 200
"""The KLL sketch's accuracy parameter (DataSketches' default)."""

RANK_ERROR = 0.0165
"""The stated bound on the normalized rank error of a sketched median or percentile (KLL,
k=200, double-sided, 99% confidence; DataSketches' documentation)."""

EXTRA = "pip install 'rlpipe[hub]'"


def has_sketches() -> bool:
    """True when the quantile sketch (datasketches) is installed."""
    return _datasketches is not None


def needs_quantiles(stats: Sequence[str]) -> bool:
    """True when `stats` asks for a median or a percentile."""
    return any(stat == "median" or percentile_of(stat) is not None for stat in stats)


class Partial:
    """The mergeable summary of some values of one key (see the module documentation).

    Make one with `Partial.from_values(values, exact=...)` (or `Partial(exact=...)`, empty),
    combine with `merge(other)` (in place, returns self; any order gives the same
    statistics up to rounding), read with `statistics(stats)`: the list `window_statistics`
    gives for the same stat names over all the values. Picklable and small: the moments,
    plus the sketch's bytes or (exact) the values.
    """

    __slots__ = (
        "count",
        "exact",
        "m2",
        "max",
        "mean",
        "min",
        "nan",
        "neginf",
        "posinf",
        "sketch",
        "sum",
        "sum_low",
        "values",
    )

    def __init__(self, *, exact: bool = False, sketch: bool = True) -> None:
        self.count = 0  # finite values
        self.mean = 0.0  # of the finite values
        self.m2 = 0.0  # their sum of squared deviations from `mean`
        self.sum = 0.0  # of the finite values
        self.sum_low = 0.0  # what rounding `sum` lost over merges (exactly: sum + sum_low)
        self.min = math.inf
        self.max = -math.inf
        self.posinf = 0
        self.neginf = 0
        self.nan = 0
        self.exact = exact
        self.values: list[np.ndarray] = []  # exact: the values without NaN, as they came
        self.sketch: Any = (
            _datasketches.kll_doubles_sketch(KLL_K)
            if sketch and not exact and _datasketches is not None
            else None
        )

    @classmethod
    def from_values(
        cls, values: np.ndarray | Sequence[float], *, exact: bool = False, sketch: bool = True
    ) -> Partial:
        """The partial of `values` (floats; NaN counted apart). `sketch=False` makes no
        quantile sketch (for stats without a median or percentile)."""
        partial = cls(exact=exact, sketch=sketch)
        # exact: a copy, kept (the caller may fill its buffer again)
        array = np.array(values, dtype=np.float64) if exact else np.asarray(values, np.float64)
        if array.ndim != 1:
            array = array.reshape(-1)
        nan = np.isnan(array)
        nans = int(np.count_nonzero(nan))
        if nans:
            array = array[~nan]
        partial.nan = nans
        if not len(array):
            return partial
        if exact:
            partial.values.append(array)
        elif partial.sketch is not None:
            partial.sketch.update(array)
        partial.min = float(array.min())
        partial.max = float(array.max())
        finite = np.isfinite(array)
        if not finite.all():
            partial.posinf = int(np.count_nonzero(array == math.inf))
            partial.neginf = int(np.count_nonzero(array == -math.inf))
            array = array[finite]
        n = len(array)
        if n:
            total = np.add.reduce(array)  # as np.mean and np.std sum
            mean = total / n
            deviations = array - mean
            np.multiply(deviations, deviations, out=deviations)
            partial.count = n
            partial.sum = float(total)
            partial.mean = float(mean)
            partial.m2 = float(np.add.reduce(deviations))
        return partial

    @property
    def n(self) -> int:
        """Values summarised, NaN aside (infinities included)."""
        return self.count + self.posinf + self.neginf

    def merge(self, other: Partial) -> Partial:
        """Adds `other`'s values to this partial (Chan's pairwise update of mean and M2);
        returns self. Both must be exact or both not."""
        if other.exact != self.exact:
            raise ValueError("an exact partial merges only with exact partials")
        self.nan += other.nan
        if not other.n:
            return self
        was_empty = not self.n
        a, b = self.count, other.count
        if b:
            if a:
                n = a + b
                delta = other.mean - self.mean
                self.mean += delta * (b / n)
                self.m2 += other.m2 + delta * delta * (a * (b / n))
                self.sum, self.sum_low = _two_sum(self.sum, self.sum_low, other.sum, other.sum_low)
                self.count = n
            else:
                self.count, self.mean, self.m2 = b, other.mean, other.m2
                self.sum, self.sum_low = other.sum, other.sum_low
        self.posinf += other.posinf
        self.neginf += other.neginf
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if self.exact:
            values = self.values
            values.extend(other.values)
            # Chunks sized as a binary counter's bits: O(log n) arrays however small the
            # partials merged (an array apiece would cost ~16x the values' 8 bytes).
            while len(values) > 1 and len(values[-2]) <= 2 * len(values[-1]):
                last = values.pop()
                values[-1] = np.concatenate((values[-1], last))
        elif other.sketch is None:  # values without a sketch: the merged ones have none
            self.sketch = None
        elif self.sketch is not None:
            self.sketch.merge(other.sketch)
        elif was_empty:
            self.sketch = _datasketches.kll_doubles_sketch(KLL_K)
            self.sketch.merge(other.sketch)
        return self

    def statistics(self, stats: Sequence[str]) -> list[Any]:
        """The `stats` of every value merged in, as `window_statistics` names and orders
        them (count: values without NaN). With no value: NaN, count 0 and sum 0.0, as an
        AggregateFilter's window of a key that held only NaN."""
        stats = check_stats(stats)
        n = self.n
        if not n:
            return [0 if stat == "count" else 0.0 if stat == "sum" else math.nan
                    for stat in stats]
        if self.exact:
            values = self.values[0] if len(self.values) == 1 else np.concatenate(self.values)
            return window_statistics(values, stats)
        out: list[Any] = []
        for stat in stats:
            if stat == "mean":
                out.append(self._infinite(self.mean))
            elif stat == "std":
                out.append(math.nan if self.posinf or self.neginf
                           else math.sqrt(max(self.m2, 0.0) / self.count))
            elif stat == "sum":
                out.append(self._infinite(self.sum + self.sum_low))
            elif stat == "min":
                out.append(self.min)
            elif stat == "max":
                out.append(self.max)
            elif stat == "count":
                out.append(n)
            else:
                q = 50.0 if stat == "median" else percentile_of(stat)
                assert q is not None  # check_stats let only percentiles through
                out.append(self.quantile(q / 100))
        return out

    def _infinite(self, finite: float) -> float:
        """A mean or sum once the infinities are counted in: as numpy's."""
        if self.posinf and self.neginf:
            return math.nan
        if self.posinf:
            return math.inf
        if self.neginf:
            return -math.inf
        return finite

    def quantile(self, rank: float) -> float:
        """The value of normalized rank `rank` (0-1): exact (linear, as `np.percentile`)
        for an exact partial, else the sketch's estimate within `RANK_ERROR`."""
        if self.exact:
            values = np.concatenate(self.values) if self.values else np.empty(0)
            return float(np.percentile(values, rank * 100)) if len(values) else math.nan
        if self.sketch is None:
            raise ValueError(
                "a median or percentile of merged partials needs the quantile sketch "
                f"({EXTRA}) or exact partials (exact=True: the values themselves are shipped)"
            )
        if self.sketch.is_empty():
            return math.nan
        return float(self.sketch.get_quantile(rank))

    def copy(self) -> Partial:
        """An independent copy (merging into either leaves the other as it was); exact
        values are shared, as merging never changes an array in place."""
        copied = Partial(exact=self.exact, sketch=False)
        for name in (
            "count", "mean", "m2", "sum", "sum_low", "min", "max", "posinf", "neginf", "nan"
        ):
            setattr(copied, name, getattr(self, name))
        copied.values = list(self.values)
        if self.sketch is not None:
            copied.sketch = _datasketches.kll_doubles_sketch.deserialize(self.sketch.serialize())
        return copied

    def __reduce__(self) -> tuple[Any, ...]:
        sketch = self.sketch.serialize() if self.sketch is not None else None
        values = (
            np.concatenate(self.values) if len(self.values) > 1 else
            (self.values[0] if self.values else None)
        )
        moments = (self.count, self.mean, self.m2, self.sum, self.min, self.max,
                   self.posinf, self.neginf, self.nan, self.sum_low)
        return (_rebuild, (self.exact, moments, sketch, values))

    def __repr__(self) -> str:
        kind = "exact" if self.exact else "sketch" if self.sketch is not None else "moments"
        return (f"Partial(n={self.n}, nan={self.nan}, mean={self.mean!r}, "
                f"min={self.min!r}, max={self.max!r}, {kind})")


def _two_sum(high: float, low: float, other: float, other_low: float) -> tuple[float, float]:
    """The sum of two (sum, what its rounding lost) pairs as one such pair, exact: many merges
    do not drift (a plain `+=` of a million partials of 0.1 drifts by about 1e-6)."""
    parts = [high, low, other, other_low]
    try:
        total = math.fsum(parts)
        return total, math.fsum([*parts, -total])
    except OverflowError:  # a partial sum beyond float range: as a plain sum
        return high + other, 0.0


def _rebuild(
    exact: bool, moments: tuple[Any, ...], sketch: bytes | None, values: np.ndarray | None
) -> Partial:
    """Unpickles a Partial."""
    partial = Partial(exact=exact, sketch=False)
    (partial.count, partial.mean, partial.m2, partial.sum, partial.min, partial.max,
     partial.posinf, partial.neginf, partial.nan) = moments[:9]
    partial.sum_low = moments[9] if len(moments) > 9 else 0.0  # pickled before it was kept
    if sketch is not None:
        if _datasketches is None:  # pragma: no cover - shipped to a process without it
            raise ImportError(f"a sketched Partial needs datasketches to be read: {EXTRA}")
        partial.sketch = _datasketches.kll_doubles_sketch.deserialize(sketch)
    if values is not None:
        partial.values.append(values)
    return partial
