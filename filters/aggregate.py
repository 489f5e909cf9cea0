"""AggregateFilter: windowed statistics (mean/std/median/min/max) of buffered records."""

from __future__ import annotations

import math
import time
import warnings
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.keys import KeyMatcher
from pipeline.node import Node, Record
from pipeline.values import to_float

STATISTICS: dict[str, Callable[[np.ndarray], Any]] = {
    "mean": np.mean,
    "std": np.std,  # population std (ddof=0), as Spinning Up and numpy's default
    "median": np.median,
    "max": np.max,
    "min": np.min,
    "sum": np.sum,
    "count": len,
}


class AggregateFilter(Node):
    """Buffers records and emits one record per window: `<key>_<stat>` for each key matching
    `regex` (`re.search`) and the last value of every other key.

    A window is emitted on `flush()`, after every `every` writes, when `seconds` have passed
    since the window's first write (checked on write), and on `close()`: the last window is
    never lost. An empty window emits nothing.

    Stats are computed over the window's real-number values of each key (ints, floats, bools,
    numpy/jax/torch scalars), which are buffered as 8-byte floats. Keys may come and go
    between writes: each key's stats cover the writes that had it. None means "no value" and
    is ignored. NaN values are left out of the stats and counted per key in `.nan_counts`
    (warned once per key); a key whose window held only NaN gets NaN stats. Infinities are
    included (so a mean may be inf). A matching key with a non-numeric value (a string, an
    array) passes its last value under its own name, warned once per key.

    Available stats: mean, std (population), median, max, min, sum, count.
    """

    def __init__(
        self,
        regex: str = ".*",
        every: int | None = None,
        seconds: float | None = None,
        stats: Sequence[str] = ("mean", "std", "median", "max", "min"),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                                  or every < 1):
            raise ValueError(f"every must be an int >= 1 or None, got {every!r}")
        if seconds is not None and (not isinstance(seconds, (int, float)) or seconds <= 0):
            raise ValueError(f"seconds must be a number > 0 or None, got {seconds!r}")
        if isinstance(stats, str):
            stats = (stats,)
        unknown = [stat for stat in stats if stat not in STATISTICS]
        if unknown or not stats:
            raise ValueError(
                f"stats must name some of {sorted(STATISTICS)}, got {list(stats)!r}"
            )
        self.match = KeyMatcher(regex)
        self.every = every
        self.seconds = None if seconds is None else float(seconds)
        self.stats = tuple(stats)
        self._clock = clock
        self.nan_counts: dict[str, int] = {}
        self._warned: set[str] = set()
        self._names: dict[str, tuple[str, ...]] = {}
        self._reset()

    def _reset(self) -> None:
        self._columns: dict[str, array[float]] = {}
        self._last: dict[str, Any] = {}
        self._order: dict[str, None] = {}
        self._writes = 0
        self._window_start = 0.0

    def write(self, data: Record) -> None:
        match = self.match
        columns = self._columns
        last = self._last
        order = self._order
        for key, value in data.items():
            if value is None:
                continue
            if match(key):
                x = value if type(value) is float else to_float(value)
                column = columns.get(key)
                if column is None:
                    if x is None:
                        self._not_a_number(key, value)
                        continue
                    column = columns[key] = array("d")
                    if key not in order:
                        order[key] = None
                if x is None:
                    self._not_a_number(key, value)
                elif x == x:
                    column.append(x)
                else:
                    self._nan(key)
            else:
                if key not in order:
                    order[key] = None
                last[key] = value
        writes = self._writes = self._writes + 1
        if writes == 1 and self.seconds is not None:
            self._window_start = self._clock()
        if (self.every is not None and writes >= self.every) or (
            self.seconds is not None and self._clock() - self._window_start >= self.seconds
        ):
            self._emit_window()

    def _not_a_number(self, key: str, value: Any) -> None:
        last = self._last
        if key not in last and key not in self._order:
            self._order[key] = None
        last[key] = value
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(
                f"AggregateFilter: {key!r} = {value!r} is not a real number; its last value is "
                "passed on as it is instead of statistics (warned once per key)",
                stacklevel=3,
            )

    def _nan(self, key: str) -> None:
        count = self.nan_counts[key] = self.nan_counts.get(key, 0) + 1
        if count == 1:
            warnings.warn(
                f"AggregateFilter: {key!r} is NaN; NaN values are left out of the statistics "
                "and counted in .nan_counts (warned once per key)",
                stacklevel=3,
            )

    def on_flush(self) -> None:
        if self._writes:
            self._emit_window()

    def _emit_window(self) -> None:
        columns, last, order = self._columns, self._last, self._order
        self._reset()
        out: dict[str, Any] = {}
        for key in order:
            column = columns.get(key)
            if column is not None:
                names = self._names.get(key)
                if names is None:
                    names = self._names[key] = tuple(f"{key}_{stat}" for stat in self.stats)
                if len(column):
                    values = np.frombuffer(column, dtype=np.float64)
                    for name, stat in zip(names, self.stats, strict=True):
                        result = STATISTICS[stat](values)
                        out[name] = result if stat == "count" else float(result)
                else:
                    for name, stat in zip(names, self.stats, strict=True):
                        out[name] = 0 if stat == "count" else 0.0 if stat == "sum" else math.nan
            if key in last:
                out[key] = last[key]
        self.emit(out)

    def __repr__(self) -> str:
        return f"AggregateFilter({self.match.regex!r}, every={self.every}, seconds={self.seconds})"
