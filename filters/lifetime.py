"""LifetimeFilter: the running sum of a key since the run began (RLlib's `lifetime_sum`)."""

from __future__ import annotations

import math
from typing import Any

from filters.keyed import KeyedFilter, Outputs
from pipeline.core.names import lifetime_name


class LifetimeFilter(KeyedFilter):
    """For each key matching `regex` (`re.search`), adds `<key>_lifetime` to every record
    holding it: the sum of the key's values since the run began, this one included (as a
    float). A record whose value is None, NaN or not a number adds nothing and carries the
    current sum (see KeyedFilter for how such values are counted).

    The sum is exact until it is given: the correctly rounded sum of the values so far
    (`math.fsum`'s), over any run length and any cancellation. Infinities give inf (or NaN),
    as a plain sum does; so does a sum that goes beyond float range (it stays infinite, even
    if later values would bring it back). It is carried across a restart by `state_dict()` /
    `load_state_dict()`.
    """

    def __init__(self, regex: str) -> None:
        super().__init__(regex)

    def names(self, key: str) -> tuple[str, ...]:
        return (lifetime_name(key),)

    def new_state(self, key: str) -> RunningSum:
        return RunningSum()

    def load_key_state(self, key: str, state: dict[str, Any], now: float) -> RunningSum:
        running = RunningSum()
        if "partials" in state:
            running.partials = [float(x) for x in state["partials"]]
            running.special = float(state["special"])
        else:  # a state of the compensated sum kept before
            for part in (state["total"], state["compensation"]):
                running.push(float(part), now)
        running.started = state["started"]
        return running

    def __repr__(self) -> str:
        return f"LifetimeFilter({self.match.regex!r})"


class RunningSum:
    """The exact sum of the finite values pushed, kept as non-overlapping partials (Shewchuk's,
    as `math.fsum` keeps them) and given correctly rounded; infinities, NaN and a sum that
    went beyond float range are carried apart, as a plain sum carries them."""

    __slots__ = ("partials", "special", "started")

    def __init__(self) -> None:
        self.partials: list[float] = []
        self.special = 0.0  # +-inf or NaN once one was added (or the sum overflowed)
        self.started = False

    def push(self, x: float, now: float) -> Outputs:
        self.started = True
        if x - x != 0:  # an infinity or NaN
            self.special += x
        elif not self.special:  # (once infinite, a finite value changes nothing)
            partials = self.partials
            index = 0
            for y in partials:
                if abs(x) < abs(y):
                    x, y = y, x
                high = x + y
                low = y - (high - x)
                if low:
                    partials[index] = low
                    index += 1
                x = high
            if x - x == 0:
                partials[index:] = [x]
            else:  # beyond float range: infinite from here on, as a plain sum
                self.special = x
                partials.clear()
        return (math.fsum(self.partials) + self.special,)

    def current(self) -> Outputs | None:
        return (math.fsum(self.partials) + self.special,) if self.started else None

    def state(self, now: float) -> dict[str, Any]:
        return {"partials": list(self.partials), "special": self.special, "started": self.started}
