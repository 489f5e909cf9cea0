"""Reference formulas the tests hold rlpipe's output to."""

from __future__ import annotations


def warmup_ema(xs: list[float], coeff: float) -> list[float]:
    """The seed's EMA: c_0 = 0; s_t = (1 - c_t) x_t + c_t s_{t-1}; c_{t+1} = 0.9 c_t + 0.1 coeff."""
    out: list[float] = []
    c, s = 0.0, 0.0
    for x in xs:
        s = (1 - c) * x + c * s
        c = 0.9 * c + 0.1 * coeff
        out.append(s)
    return out
