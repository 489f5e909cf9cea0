"""RateFilter: the change of a counter per second of wall time (steps per second)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from filters.keyed import KeyedFilter, Outputs
from pipeline.core.names import rate_name


class RateFilter(KeyedFilter):
    """For each key matching `regex` (`re.search`), a counter such as `steps`, adds
    `<key>_per_second`: the change of the key's value divided by the seconds (of `clock`,
    `time.monotonic` by default) since the previous record that held it.

    The first record holding the key has no rate yet. A record written at the same clock
    reading as the previous one (a batch counts as written at one instant) carries the last
    rate, and its change counts towards the next rate. A record whose value is None, NaN or not
    a number carries the last rate (see KeyedFilter for how such values are counted).

    `state_dict()` keeps, per key, the last value, the last rate and the seconds since the
    last value (not clock readings): a resumed run's first rate covers the time from its
    restart, as if the pause had not happened.
    """

    timed = True

    def __init__(self, regex: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(regex, clock=clock)

    def names(self, key: str) -> tuple[str, ...]:
        return (rate_name(key),)

    def new_state(self, key: str) -> Counter:
        return Counter()

    def load_key_state(self, key: str, state: dict[str, Any], now: float) -> Counter:
        counter = Counter()
        counter.value = state["value"]
        if state["age"] is not None:
            counter.time = now - state["age"]
        rate = state["rate"]
        counter.outputs = None if rate is None else (rate,)
        return counter

    def __repr__(self) -> str:
        return f"RateFilter({self.match.regex!r})"


class Counter:
    """A counter's last value, when it was taken, and its last rate."""

    __slots__ = ("outputs", "time", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.time: float | None = None
        self.outputs: Outputs | None = None

    def push(self, x: float, now: float) -> Outputs | None:
        then = self.time
        if then is None:
            self.value, self.time = x, now
            return None
        seconds = now - then
        if seconds <= 0:
            return self.outputs
        outputs = self.outputs = ((x - self.value) / seconds,)
        self.value, self.time = x, now
        return outputs

    def current(self) -> Outputs | None:
        return self.outputs

    def state(self, now: float) -> dict[str, Any]:
        outputs = self.outputs
        return {
            "value": self.value,
            "age": None if self.time is None else now - self.time,
            "rate": None if outputs is None else outputs[0],
        }
