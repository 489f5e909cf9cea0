"""What the tests of the tracking-service sinks share: an Acme-like stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def episodes(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """A synthetic Acme-like stream: actor_steps grows by a random episode length from 0."""
    rng = np.random.default_rng(seed)
    actor_steps = 0
    for episode in range(n):
        length = int(rng.integers(5, 50))
        yield {
            "actor_steps": actor_steps,
            "episodes": episode,
            "episode_length": length,
            "return": float(rng.normal(10.0, 3.0)),
            "steps_per_second": np.float32(rng.uniform(100, 200)),
        }
        actor_steps += length
