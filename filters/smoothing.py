"""SmoothingFilter: exponential moving averages of noisy metrics, with warm-up."""

from __future__ import annotations

import math
import warnings

from pipeline.keys import KeyMatcher
from pipeline.node import Node, Record
from pipeline.values import to_float


class SmoothingFilter(Node):
    """For each key matching `regex` (`re.search`), adds `<key>_smoothed_<coeff>`, an
    exponential moving average of the key's values; the original key is kept.

    Default (warm-up EMA, as in the seed): c_0 = 0; s_t = (1 - c_t) x_t + c_t s_{t-1};
    c_{t+1} = 0.9 c_t + 0.1 coeff. The first smoothed value is the value itself and the
    coefficient anneals towards `coeff`.

    `bias_correction=True` gives TensorBoard's debiased EMA instead: m_t = coeff m_{t-1} +
    (1 - coeff) x_t with m_0 = 0, s_t = m_t / (1 - coeff^t).

    Each key has its own state; keys may come and go between records. A value that is not a
    finite real number (None, NaN, inf, a string, an array) leaves the state unchanged: the
    record keeps the value under its own key and carries the current smoothed value (if any).
    Such values other than None are counted in `.skipped`, with a warning once per key.
    """

    def __init__(
        self, regex: str = "return", coeff: float = 0.99, *, bias_correction: bool = False
    ) -> None:
        super().__init__()
        if isinstance(coeff, bool) or not isinstance(coeff, (int, float)) or not 0 <= coeff < 1:
            raise ValueError(f"coeff must be a number in [0, 1), got {coeff!r}")
        self.match = KeyMatcher(regex)
        self.coeff = coeff
        self.bias_correction = bias_correction
        self.skipped = 0
        # key -> [smoothed value, warm-up coefficient c_t or coeff^t]; NaN smoothed = no value yet
        self._state: dict[str, list[float]] = {}
        self._names: dict[str, str] = {}
        self._warned: set[str] = set()

    def write(self, data: Record) -> None:
        match = self.match
        out: dict[str, object] | None = None
        for key, value in data.items():
            if not match(key):
                continue
            if out is None:
                out = dict(data)
            state = self._state.get(key)
            if state is None:
                state = self._state[key] = [math.nan, 0.0 if not self.bias_correction else 1.0]
                self._names[key] = f"{key}_smoothed_{self.coeff}"
            x = value if type(value) is float else to_float(value)
            if x is None or x - x != 0:  # not a number, NaN or inf
                if value is not None:
                    self._skip(key, value)
            elif self.bias_correction:
                coeff = self.coeff
                state[1] *= coeff
                mean = state[0] if state[0] == state[0] else 0.0
                state[0] = coeff * mean + (1.0 - coeff) * x
            else:
                c = state[1]
                state[0] = x if c == 0.0 else (1.0 - c) * x + c * state[0]
                state[1] = 0.9 * c + 0.1 * self.coeff
            smoothed = state[0]
            if smoothed == smoothed:
                if self.bias_correction:
                    smoothed = smoothed / (1.0 - state[1]) if state[1] != 1.0 else smoothed
                out[self._names[key]] = smoothed
        self.emit(data if out is None else out)

    def _skip(self, key: str, value: object) -> None:
        self.skipped += 1
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(
                f"SmoothingFilter: {key!r} = {value!r} is not a finite number; it is passed on "
                "unsmoothed and the moving average is left as it was (warned once per key)",
                stacklevel=3,
            )

    def __repr__(self) -> str:
        return f"SmoothingFilter({self.match.regex!r}, coeff={self.coeff})"
