"""Shared fixtures: small record streams and a fake clock for time-based nodes."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


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
