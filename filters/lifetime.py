"""LifetimeFilter: the running sum of a key since the run began (RLlib's `lifetime_sum`)."""

from __future__ import annotations

from typing import Any

from filters.keyed import KeyedFilter, Outputs
from pipeline.core.names import lifetime_name


class LifetimeFilter(KeyedFilter):
    """For each key matching `regex` (`re.search`), adds `<key>_lifetime` to every record
    holding it: the sum of the key's values since the run began, this one included (as a
    float). A record whose value is None, NaN or not a number adds nothing and carries the
    current sum (see KeyedFilter for how such values are counted).

    The sum is compensated (Neumaier), so it stays within one rounding of the exact sum of
    the values (`math.fsum`) over any run length; infinities give inf (or NaN), as a plain sum
    does. It is carried across a restart by `state_dict()` / `load_state_dict()`.
    """

    def __init__(self, regex: str) -> None:
        super().__init__(regex)

    def names(self, key: str) -> tuple[str, ...]:
        return (lifetime_name(key),)

    def new_state(self, key: str) -> RunningSum:
        return RunningSum()

    def load_key_state(self, key: str, state: dict[str, Any], now: float) -> RunningSum:
        running = RunningSum()
        running.total, running.compensation = state["total"], state["compensation"]
        running.started = state["started"]
        return running

    def __repr__(self) -> str:
        return f"LifetimeFilter({self.match.regex!r})"


class RunningSum:
    """A compensated running sum (Neumaier's variant of Kahan summation)."""

    __slots__ = ("compensation", "started", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self.compensation = 0.0
        self.started = False

    def push(self, x: float, now: float) -> Outputs:
        total = self.total
        added = total + x
        if added - added == 0:  # finite: keep the low-order bits the addition lost
            if (total if total >= 0 else -total) >= (x if x >= 0 else -x):  # |total| >= |x|
                self.compensation += (total - added) + x
            else:
                self.compensation += (x - added) + total
        else:
            self.compensation = 0.0
        self.total = added
        self.started = True
        return (added + self.compensation,)

    def current(self) -> Outputs | None:
        return (self.total + self.compensation,) if self.started else None

    def state(self, now: float) -> dict[str, Any]:
        return {"total": self.total, "compensation": self.compensation, "started": self.started}
