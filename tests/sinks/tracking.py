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


def number_kinds() -> dict[str, Any]:
    """One value of every kind of number a training loop writes (torch's too): a record."""
    import torch

    return {
        "float": 0.25,
        "int": 3,
        "bool": True,
        "np_float32": np.float32(1.5),
        "np_int64": np.int64(7),
        "np_bool": np.bool_(False),
        "zero_d_array": np.array(2.5),
        "torch_scalar": torch.tensor(4.5),
        "torch_int": torch.tensor(9),
    }


NUMBER_FLOATS = {
    "float": 0.25,
    "int": 3.0,
    "bool": 1.0,
    "np_float32": 1.5,
    "np_int64": 7.0,
    "np_bool": 0.0,
    "zero_d_array": 2.5,
    "torch_scalar": 4.5,
    "torch_int": 9.0,
}
"""The float a tracking service stores for each of `number_kinds()`."""
