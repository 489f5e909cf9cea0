"""Shared fixtures: small record streams and a fake clock for time-based nodes."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# Selected by `mutmut run` ([tool.mutmut] in pyproject.toml): a property test that a mutant
# breaks fails at once instead of spending the mutant's time limit on shrinking.
settings.register_profile(
    "mutation", phases=(Phase.explicit, Phase.generate), database=None, derandomize=True
)
