"""A real local Ray for the tests: 2 CPUs, no dashboard, nothing written to the home folder.

The test run starts it once (the session fixture `ray_session` in tests/conftest.py) rather
than once per module: each start costs seconds and, on a busy machine, may fail.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray

# A new Ray node (2.60) is up once its raylet has registered with the GCS, and the raylet waits
# a fixed 15 s for its dashboard agent, a Python process, to report its port, then aborts
# (ray.init then says "The current node timed out during startup"). Neither wait can be
# configured; on a machine whose cores are busy with other work the agent can miss it. So a
# start that fails is tried again, after the processes it left are stopped.
STARTS = 6


def short_folder(link: Path) -> Path:
    """A new folder with a short path, reachable as `link` (a symbolic link to it), deleted
    when the process exits: Ray's socket paths, under its session folder, must stay under
    108 bytes, which a test's temporary folder can exceed (under pytest-xdist, say)."""
    folder = Path(tempfile.mkdtemp(prefix="ray-"))
    # Registered before the ray.init that uses it, so it runs after Ray's own shutdown at exit.
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(folder, target_is_directory=True)
    return folder


def start(base: Path) -> None:
    """Starts Ray with its session files in a short folder linked as `base/session-<attempt>`."""
    for attempt in range(1, STARTS + 1):
        folder = short_folder(base / f"session-{attempt}")
        try:
            ray.init(
                address="local",  # a Ray of its own, never one already running here
                num_cpus=2,
                include_dashboard=False,
                _temp_dir=str(folder),
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
            return
        except Exception as error:
            ray.shutdown()
            stop_processes_of(folder)  # ray.shutdown() knows nothing of a node that never came up
            if attempt == STARTS:
                raise
            warnings.warn(
                f"ray.init failed (attempt {attempt} of {STARTS}): {error}", stacklevel=1
            )


def stop_processes_of(folder: Path) -> None:
    """Sends SIGKILL to this user's processes whose command line names `folder` (the Ray
    processes a failed start left: they are given their session folder as an argument)."""
    needle = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):  # gone meanwhile, or not ours
            continue


@contextmanager
def local_ray(base: Path) -> Iterator[None]:
    """Runs Ray with its session files under `base` and auth disabled; on exit shuts it down,
    restores RAY_AUTH_MODE and checks that nothing Ray-named (`ray_results` included)
    appeared in the home folder."""
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    home_before = {entry.name for entry in Path.home().iterdir()}
    try:
        start(base)
        yield
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
    new_in_home = {entry.name for entry in Path.home().iterdir()} - home_before
    assert not [name for name in new_in_home if "ray" in name.lower()], new_in_home


def wait_until_dead(actor: Any, seconds: float = 120.0) -> None:
    """Waits (bounded, generously) until calls on `actor` fail as a dead actor's do:
    `ray.kill` is asynchronous, and a call made just after it may still run."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ray.get(actor.status.remote(), timeout=seconds)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    raise AssertionError(f"the actor was still alive {seconds} s after ray.kill")
