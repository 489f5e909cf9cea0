"""Steps: which step a tracking sink logs each record at."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pipeline.core.node import Record
from pipeline.core.values import to_float

Step = int | float
"""A step: integral values are ints."""


class Steps:
    """The step of each record a sink takes, in the order it takes them.

    With `step_key`, a record's step is its value under `step_key` (0 is a step; an integral
    value becomes an int). A record without a numeric, finite one is logged at the last step
    seen (0 before any); `note("skipped", message, key=step_key)` counts and warns about it.
    Without `step_key`, the step is the record's index among those the sink took (0, 1, ...).
    """

    __slots__ = ("_last", "_note", "step_key", "taken")

    def __init__(self, step_key: str | None, note: Callable[..., None]) -> None:
        if step_key is not None and not isinstance(step_key, str):
            raise ValueError(f"step_key must be a string or None, got {type(step_key).__name__}")
        self.step_key = step_key
        self.taken = 0
        self._last: Step = 0
        self._note = note

    def state(self) -> dict[str, Any]:
        """Where the steps are (for a checkpoint)."""
        return {"taken": self.taken, "last": self._last}

    def load(self, state: dict[str, Any]) -> None:
        """Goes on from `state()`: the next record gets the step it would have had."""
        self.taken, self._last = state["taken"], state["last"]

    @property
    def last(self) -> Step:
        """The last step given (0 before any)."""
        return self._last

    def of(self, data: Record) -> Step:
        """The step of `data`, the next record taken."""
        index = self.taken
        self.taken = index + 1
        step_key = self.step_key
        if step_key is None:
            return index
        raw: Any = data.get(step_key)
        if type(raw) is int:
            self._last = raw
            return raw
        number = to_float(raw) if raw is not None else None
        if number is None or not math.isfinite(number):
            self._note(
                "skipped",
                f"records without a numeric {step_key!r} are logged at the last step seen",
                key=step_key,
                stacklevel=5,
            )
            return self._last
        step: Step = int(number) if number.is_integer() and abs(number) < 2**53 else number
        self._last = step
        return step
