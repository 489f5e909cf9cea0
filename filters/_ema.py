"""The moving averages of `SmoothingFilter` over a column of finite floats, at C speed.

Both EMAs are first-order linear recurrences, s_t = c s_{t-1} + (1 - c) x_t, which
`scipy.signal.lfilter` runs in C (the `fast` extra). The warm-up EMA's coefficient c_t varies
only during its warm-up: c_{t+1} = 0.9 c_t + 0.1 coeff reaches its floating-point fixed point
within a few hundred finite values (at most 334 for any coeff), which run in Python; from
there on the recurrence has constant coefficients. lfilter does the same floating-point
operations as the row path (c s + (1 - c) x), so the values agree with it. Without scipy, the
same recurrences run in Python (`pipeline.core.names.warmup_ema`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.core.names import warmup_ema

SHORT = 48
"""Columns shorter than this run in Python: lfilter's call costs about 40 values' steps."""

_MISSING: Any = object()
_lfilter: Any = _MISSING


def lfilter() -> Callable[..., Any] | None:
    """`scipy.signal.lfilter`, imported on first use (it takes a while); None without scipy."""
    global _lfilter
    if _lfilter is _MISSING:
        try:
            from scipy.signal import lfilter as found
        except ImportError:
            found = None
        _lfilter = found
    return _lfilter


def _first_order(
    run: Callable[..., Any], values: np.ndarray, c: float, previous: float
) -> np.ndarray:
    """s_t = c s_{t-1} + (1 - c) x_t over `values` from s = previous (NaN: none yet)."""
    initial = c * previous if previous == previous else 0.0
    smoothed, _ = run([1.0 - c], [1.0, -c], values, zi=[initial])
    return smoothed


def warmup_ema_column(
    values: np.ndarray, coeff: float, smoothed: float, c: float
) -> tuple[np.ndarray, float, float]:
    """The warm-up EMA after each of `values` (finite float64s) from state (smoothed, c),
    and the final state: `warmup_ema`'s values, at C speed once the warm-up is over."""
    run = lfilter() if len(values) >= SHORT else None
    if run is None:
        out, smoothed, c = warmup_ema(values.tolist(), coeff, smoothed, c)
        return np.array(out, dtype=np.float64), smoothed, c
    step = 0.1 * coeff
    warm, moving = 0, c
    while warm < len(values) and 0.9 * moving + step != moving:  # the warm-up
        moving = 0.9 * moving + step
        warm += 1
    if warm:  # the warm-up values, in Python (the same steps as the row path)
        head, smoothed, c = warmup_ema(values[:warm].tolist(), coeff, smoothed, c)
        if len(values) - warm < SHORT:
            tail_values, smoothed, c = warmup_ema(values[warm:].tolist(), coeff, smoothed, c)
            head.extend(tail_values)
        if len(head) == len(values):
            return np.array(head, dtype=np.float64), smoothed, c
        tail = _first_order(run, values[warm:], c, smoothed)
        smoothed_values = np.concatenate([np.array(head, dtype=np.float64), tail])
    else:
        smoothed_values = values.copy() if c == 0.0 else _first_order(run, values, c, smoothed)
    return smoothed_values, float(smoothed_values[-1]), c


def debiased_ema_column(
    values: np.ndarray, coeff: float, mean: float, power: float
) -> tuple[np.ndarray, float, float]:
    """TensorBoard's debiased EMA after each of `values` (finite float64s) from state
    (mean m, coeff^t), and the final state: m_t = coeff m_{t-1} + (1 - coeff) x_t,
    s_t = m_t / (1 - coeff^t)."""
    run = lfilter() if len(values) >= SHORT else None
    if run is not None:
        means = _first_order(run, values, coeff, mean if mean == mean else 0.0)
    else:
        means = np.empty(len(values), dtype=np.float64)
        m = mean if mean == mean else 0.0
        for index, x in enumerate(values.tolist()):
            m = coeff * m + (1.0 - coeff) * x
            means[index] = m
    powers = np.cumprod(np.concatenate([[power], np.full(len(values), coeff)]))[1:]
    if not len(values):
        return means, mean, power
    return means / (1.0 - powers), float(means[-1]), float(powers[-1])
