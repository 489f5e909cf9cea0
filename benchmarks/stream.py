"""The benchmark's metric stream: records shaped like an Acme EnvironmentLoop's output plus
learner losses, from a fixed seed, as rows (for `write`) or as column batches (`write_batch`)."""

from __future__ import annotations

from typing import Any

import numpy as np

KEYS = (
    "episode_length",
    "episode_return",
    "steps_per_second",
    "episodes",
    "steps",
    "critic_loss",
    "policy_loss",
)
"""The stream's keys, in the order each record holds them (ints and floats)."""

NONE_EVERY = 50
"""About one record in `NONE_EVERY` has `policy_loss=None` (the learner had not stepped)."""


def records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` records of plain Python ints and floats, with an occasional None; the same for
    the same `n` and `seed`."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 1000, size=n)
    returns = np.cumsum(rng.normal(0.05, 1.0, size=n)) + rng.normal(0.0, 5.0, size=n)
    speeds = rng.uniform(800.0, 1200.0, size=n)
    critic = np.abs(rng.normal(1.0, 0.3, size=n))
    policy = rng.normal(-0.5, 0.2, size=n)
    missing = rng.random(size=n) < 1.0 / NONE_EVERY
    steps = np.cumsum(lengths)
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append(
            {
                "episode_length": int(lengths[i]),
                "episode_return": float(returns[i]),
                "steps_per_second": float(speeds[i]),
                "episodes": i + 1,
                "steps": int(steps[i]),
                "critic_loss": float(critic[i]),
                "policy_loss": None if missing[i] else float(policy[i]),
            }
        )
    return out


def batches(rows: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The rows as column batches of `size` rows, as a vectorized environment hands them
    over: a numpy array per key (int64 or float64), or a list where a column holds None."""
    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        columns: dict[str, Any] = {}
        for key in KEYS:
            values = [row[key] for row in chunk]
            columns[key] = values if any(v is None for v in values) else np.asarray(values)
        out.append(columns)
    return out
