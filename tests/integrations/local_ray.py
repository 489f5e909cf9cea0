"""A real local Ray for the tests: 2 CPUs, no dashboard, nothing written to the home folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray


@contextmanager
def local_ray(base: Path) -> Iterator[None]:
    """Runs Ray with its session files under `base/session` and auth disabled; on exit shuts
    it down, restores RAY_AUTH_MODE and checks that nothing Ray-named (`ray_results`
    included) appeared in the home folder."""
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    home_before = {entry.name for entry in Path.home().iterdir()}
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(base / "session"),
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        yield
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
    new_in_home = {entry.name for entry in Path.home().iterdir()} - home_before
    assert not [name for name in new_in_home if "ray" in name.lower()], new_in_home
