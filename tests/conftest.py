"""Shared fixtures: small record streams, a fake clock for time-based nodes, the test run's
one local Ray; and each test's time bound."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, settings

import sinks.file
from pipeline import Pipeline
from pipeline.core.columns import Columns
from pipeline.core.node import Record
from sinks import MemorySink


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StorageDown(MemorySink):
    """A MemorySink whose storage is down while `down` is set: every write and batch raises
    OSError (a Dispatcher queues its records and retries them)."""

    def __init__(self, down: bool = False) -> None:
        super().__init__()
        self.down = down

    def write(self, data: Record) -> None:
        if self.down:
            raise OSError("storage down")
        super().write(data)

    def write_batch(self, columns: Columns) -> None:
        if self.down:
            raise OSError("storage down")
        super().write_batch(columns)


class PlainMapping(Mapping[Any, Any]):
    """A Mapping that is neither a dict nor a dict subclass (a record of another kind)."""

    def __init__(self, data: dict[Any, Any]) -> None:
        self._data = data

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@pytest.fixture(autouse=True, scope="session")
def _sb3_logs_under_the_run(tmp_path_factory: pytest.TempPathFactory) -> None:
    """SB3 makes a log folder in the system's temp folder for every model built without one
    (`configure(folder=None)` reads SB3_LOGDIR first): keep them under the test run's."""
    os.environ.setdefault("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3")))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray on 2 CPUs (tests/integrations/local_ray.py), started at the first test that
    needs it and shut down when the run ends; yields the folder holding its session files."""
    from tests.integrations.local_ray import local_ray  # imports ray: only when a test needs it

    base = tmp_path_factory.mktemp("ray")
    with local_ray(base):
        yield base


# Each test's time bound (pytest-timeout), so that a hang fails one test instead of the run:
# generous, since the machine may be busy; a test that runs a real framework gets more.
# A test's own @pytest.mark.timeout wins.
SLOW_TEST_SECONDS = 900.0


# Tests that use a Ray in this process run on one pytest-xdist worker (`-n 2 --dist
# loadgroup`, scripts/test.sh), one after another as without xdist: a module's Ray (the
# cluster's, say) stops and restarts the session's, which a test on the same worker may hold.
RAY_FIXTURES = frozenset({"ray_session", "ray_up", "ray_cluster", "cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_SECONDS))
        name = item.path.name
        if RAY_FIXTURES.intersection(getattr(item, "fixturenames", ())) or name.startswith(
            ("test_ray", "test_rllib")
        ):
            item.add_marker(pytest.mark.xdist_group("ray"))


# Selected by `mutmut run` ([tool.mutmut] in pyproject.toml): a property test that a mutant
# breaks fails at once instead of spending the mutant's time limit on shrinking.
settings.register_profile(
    "mutation", phases=(Phase.explicit, Phase.generate), database=None, derandomize=True
)

# The conformance suite (tests/conformance): its fast settings are the default; the long
# profile, for nightly runs, is selected with `--hypothesis-profile=conformance-long` (or
# RLPIPE_CONFORMANCE=long). Registered here, where pytest reads it before loading a profile.
settings.register_profile(
    "conformance-long", max_examples=2000, deadline=None, derandomize=False, print_blob=True
)


def crash(*pipes: Pipeline) -> None:
    """Leaves the pipelines as a killed process would: nothing more reaches their storage,
    and their files' locks go with them (so that a resume in this process can open the
    files again)."""
    from pipeline.core import lifecycle
    from sinks import flusher

    for pipe in pipes:
        for node in pipe.nodes():
            lifecycle.forget(node)
            flusher.forget(node)  # type: ignore[arg-type]
            release = getattr(node, "_release", None)
            if release is not None:
                release()
            node.closed = True


@contextlib.contextmanager
def fast_path(on: bool) -> Iterator[None]:
    """The fast path on or, with `on=False`, forced off (the pure-Python path)."""
    before = sinks.file.FAST
    sinks.file.FAST = on
    try:
        yield
    finally:
        sinks.file.FAST = before


def exactly(a: Any, b: Any) -> bool:
    """The same JSON value: the same types (1 is not 1.0, True is not 1), -0.0 is not 0.0,
    NaN is NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
        )
    return bool(a == b)
