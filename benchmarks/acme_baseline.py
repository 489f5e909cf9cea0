"""The baseline: the same chains built from Acme's own loggers (dm-acme 0.2.4).

`acme.utils.loggers` has NoneFilter, TimeFilter, Dispatcher, CSVLogger and TerminalLogger but
no smoothing or aggregation, so those two are written here the way Acme's loggers are
written: a `Logger` wrapping the next one, doing its work per write, per key, with the regex
searched on every key of every record. They compute exactly what rlpipe's SmoothingFilter and
AggregateFilter compute (same formulas, same key names and order), so outputs can be compared.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from acme.utils.loggers import base


class ListLogger(base.Logger):
    """Keeps every record it gets (to check outputs)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, data: base.LoggingData) -> None:
        self.records.append(dict(data))

    def close(self) -> None:
        pass


class SmoothingLogger(base.Logger):
    """Adds `<key>_smoothed_<coeff>`, the warm-up EMA of rlpipe's SmoothingFilter, for keys
    matching `regex`, then writes to `to`."""

    def __init__(self, to: base.Logger, regex: str, coeff: float = 0.99) -> None:
        self._to = to
        self._regex = regex
        self._coeff = coeff
        self._state: dict[str, tuple[float, float]] = {}

    def write(self, data: base.LoggingData) -> None:
        values = dict(data)
        for key, value in data.items():
            if not re.search(self._regex, key):
                continue
            smoothed, c = self._state.get(key, (math.nan, 0.0))
            if value is not None and math.isfinite(value):
                smoothed = value if c == 0.0 else (1.0 - c) * value + c * smoothed
                self._state[key] = (smoothed, 0.9 * c + 0.1 * self._coeff)
            if not math.isnan(smoothed):
                values[f"{key}_smoothed_{self._coeff}"] = float(smoothed)
        self._to.write(values)

    def close(self) -> None:
        self._to.close()


class AggregatingLogger(base.Logger):
    """Buffers the values of keys matching `regex` in per-key lists and writes their
    statistics (`stats`, of mean/std/median/max/min; all five by default), and the last value
    of other keys, every `every` writes and on `flush()`/`close()`, like rlpipe's
    AggregateFilter."""

    REDUCE: dict[str, Any] = {
        "mean": np.mean, "std": np.std, "median": np.median, "max": np.max, "min": np.min}

    def __init__(self, to: base.Logger, regex: str, every: int | None = None,
                 stats: tuple[str, ...] = ("mean", "std", "median", "max", "min")) -> None:
        self._to = to
        self._regex = regex
        self._every = every
        self._stats = [(name, self.REDUCE[name]) for name in stats]
        self._buffers: dict[str, list[float]] = {}
        self._last: dict[str, Any] = {}
        self._order: dict[str, None] = {}
        self._writes = 0

    def write(self, data: base.LoggingData) -> None:
        for key, value in data.items():
            if value is None:
                continue
            self._order.setdefault(key, None)
            if re.search(self._regex, key):
                if not math.isnan(value):
                    self._buffers.setdefault(key, []).append(value)
            else:
                self._last[key] = value
        self._writes += 1
        if self._every and self._writes >= self._every:
            self.flush()

    def flush(self) -> None:
        if not self._writes:
            return
        out: dict[str, Any] = {}
        for key in self._order:
            if key in self._buffers:
                values = np.asarray(self._buffers[key], dtype=np.float64)
                for name, reduce in self._stats:
                    out[f"{key}_{name}"] = float(reduce(values))
            if key in self._last:
                out[key] = self._last[key]
        self._buffers, self._last, self._order, self._writes = {}, {}, {}, 0
        self._to.write(out)

    def close(self) -> None:
        self.flush()
        self._to.close()
