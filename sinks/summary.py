"""Best: the best value of the keys a tracking sink is asked to summarise (`best=`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any

from sinks.steps import Step

BEST_PREFIX = "best/"
"""The best of a key is stored as `best/<name>` (Neptune: `summary/best/<path>`)."""

DIRECTIONS = ("max", "min")


class Best:
    """The best value (the largest for `"max"`, the smallest for `"min"`) of each key asked,
    and its step, over the rows a sink sends.

    `asked` maps record keys to `"max"` or `"min"` (`{"eval/return": "max", "loss": "min"}`);
    `name_of(key)` is the name the sink stores the key under. `take(rows)` reads the rows a
    sink is about to send (row[0] its step, row[2] its values by name, as every tracking
    sink's rows hold them): on the push thread, a dict lookup per row and key asked. Only
    a number is ever best: not NaN, text, an array or media. Taking the same rows again (a
    retried push) changes nothing.
    """

    __slots__ = ("_asked", "values")

    def __init__(self, asked: Mapping[str, str], name_of: Callable[[str], str]) -> None:
        if not isinstance(asked, Mapping):
            raise ValueError(
                f"best must be a mapping from key to 'max' or 'min', got {type(asked).__name__}"
            )
        self._asked: list[tuple[str, bool]] = []
        for key, direction in asked.items():
            if not isinstance(key, str) or direction not in DIRECTIONS:
                raise ValueError(
                    f"best maps keys (strings) to 'max' or 'min', got {key!r}: {direction!r}"
                )
            self._asked.append((name_of(key), direction == "max"))
        self.values: dict[str, tuple[float, Step]] = {}
        """Per stored name: (its best value, the step of that value), once it has one."""

    def take(self, rows: Sequence[Any]) -> None:
        """Notes the values of the asked keys in `rows` (before they are sent)."""
        best = self.values
        for row in rows:
            values = row[2]
            if not values:
                continue
            for name, wants_max in self._asked:
                given = values.get(name)
                # a number, not NaN (an array, media or text is never best)
                if not isinstance(given, Real) or given != given:
                    continue
                value = float(given)
                held = best.get(name)
                if held is None or (value > held[0] if wants_max else value < held[0]):
                    best[name] = (value, row[0])

    def state(self) -> dict[str, list[Any]]:
        """The best values so far (for a checkpoint)."""
        return {name: [value, step] for name, (value, step) in self.values.items()}

    def load(self, state: Mapping[str, Sequence[Any]]) -> None:
        """Goes on from `state()`."""
        self.values = {name: (float(value), step) for name, (value, step) in state.items()}
