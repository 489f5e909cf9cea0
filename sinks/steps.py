"""Steps: which step a tracking sink logs each record at, on one axis or several."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.core.node import Record
from pipeline.core.values import text, to_float

Step = int | float
"""A step: integral values are ints."""

StepKey = str | Mapping[str, str] | None
"""What a tracking sink's `step_key` takes: one key, a mapping from key pattern to step key
(several step axes), or None (the record's index)."""

_INDEX = -1
"""The axis of a key that no pattern matches: the record's index."""


def _integral(raw: Any) -> int | None:
    """`raw` as the int it is when it is an integer of another type (numpy's, a 0-d integer
    array, an integer tensor): taken exactly, not through the float nearest it (which rounds
    beyond 2**53). None for anything else, a bool included (a number like any other)."""
    kind = type(raw)
    if kind is bool or getattr(kind, "__index__", None) is None:
        return None
    try:
        return operator.index(raw)
    except TypeError:  # a 0-d array or a tensor of floats
        return None


class Steps:
    """The step of each record a sink takes, in the order it takes them.

    With `step_key`, a record's step is its value under `step_key` (0 is a step; an integral
    value becomes an int). A record without a numeric, finite one is logged at the last step
    seen (0 before any); `note("skipped", message, key=step_key)` counts and warns about it.
    Without `step_key`, the step is the record's index among those the sink took (0, 1, ...).

    Several axes: `step_key` may be a mapping from a key pattern (a regular expression,
    searched for in the key's text) to a step key, e.g. `{"^eval/": "eval_round", "":
    "steps"}`. A key is on the axis of the first pattern that matches it, in the mapping's
    order (`""` matches every key); a step key itself is on its own axis; a key that no
    pattern matches is on the record's index. Each key's axis is decided once (`axis_of`).
    `split(record)` then gives the record's parts, one per axis, each with its step (the
    same rule as one step key, per axis: a part whose record lacks a usable value of its
    step key is at that axis's last step, noted once per axis). A sink logs each part as it
    logs a record with one step key: `given` holds the part's step while `of` is asked.
    """

    __slots__ = (
        "_axes",
        "_axis_of",
        "_key",
        "_last",
        "_lasts",
        "_note",
        "given",
        "step_key",
        "taken",
    )

    def __init__(self, step_key: StepKey, note: Callable[..., None]) -> None:
        self._axes: list[tuple[re.Pattern[str], str]] | None = None
        self._axis_of: dict[Any, int] = {}
        """Per record key seen (a key that is not a str by (its type, it)): its axis' index
        (`_INDEX`: the record's index)."""
        self._lasts: dict[str, Step] = {}
        """Per step key of several axes: its last step (0 before any)."""
        if isinstance(step_key, Mapping):
            self._axes = []
            for pattern, key in step_key.items():
                if not isinstance(pattern, str) or not isinstance(key, str):
                    raise ValueError(
                        "step_key as a mapping takes key patterns (strings) to step keys "
                        f"(strings), got {pattern!r}: {key!r}"
                    )
                try:
                    self._axes.append((re.compile(pattern), key))
                except re.error as error:
                    raise ValueError(f"step_key pattern {pattern!r}: {error}") from None
            if not self._axes:
                raise ValueError("step_key as a mapping needs at least one pattern")
            step_key = dict(step_key)
        elif step_key is not None and not isinstance(step_key, str):
            raise ValueError(
                "step_key must be a string, a mapping from key pattern to step key, or None, "
                f"got {type(step_key).__name__}"
            )
        self.step_key = step_key
        self._key: str | None = step_key if isinstance(step_key, str) else None
        self.given: Step | None = None
        """The step of the part `split` gave (`of` returns it while it is set)."""
        self.taken = 0
        self._last: Step = 0
        self._note = note

    @property
    def axes(self) -> list[str] | None:
        """The step keys of several axes, in the mapping's order (None with one step key or
        none)."""
        return None if self._axes is None else [key for _, key in self._axes]

    def state(self) -> dict[str, Any]:
        """Where the steps are (for a checkpoint)."""
        state: dict[str, Any] = {"taken": self.taken, "last": self._last}
        if self._axes is not None:
            state["lasts"] = dict(self._lasts)
        return state

    def load(self, state: dict[str, Any]) -> None:
        """Goes on from `state()`: the next record gets the step it would have had."""
        self.taken, self._last = state["taken"], state["last"]
        self._lasts = dict(state.get("lasts", {}))

    @property
    def last(self) -> Step:
        """The last step given (0 before any)."""
        return self._last

    def __new__(cls, step_key: StepKey, note: Callable[..., None]) -> Steps:
        if cls is Steps and isinstance(step_key, Mapping):
            cls = _AxisSteps  # its own `of`: the one-key path pays nothing for axes
        return super().__new__(cls)

    def of(self, data: Record) -> Step:
        """The step of `data`, the next record taken."""
        index = self.taken
        self.taken = index + 1
        step_key = self._key
        if step_key is None:
            return index
        raw: Any = data.get(step_key)
        if type(raw) is int:
            self._last = raw
            return raw
        whole = _integral(raw)
        if whole is not None:
            self._last = whole
            return whole
        number = to_float(raw) if raw is not None else None
        if number is None or not math.isfinite(number):
            return self._skip(step_key, self._last, stacklevel=6)
        step: Step = int(number) if number.is_integer() and abs(number) < 2**53 else number
        self._last = step
        return step

    def _skip(self, step_key: str, last: Step, stacklevel: int) -> Step:
        """Notes a record without a usable value of `step_key`; returns `last`, its step."""
        self._note(
            "skipped",
            f"records without a numeric {step_key!r} are logged at the last step seen",
            key=step_key,
            stacklevel=stacklevel,
        )
        return last

    def axis_of(self, key: Any) -> str | None:
        """The step key of the axis `key` is on (None: the record's index); decided once
        per key. With one step key (or none), that one."""
        axes = self._axes
        if axes is None:
            return self._key
        index = self._axis_of.get(key if type(key) is str else (type(key), key))
        if index is None:
            index = self._decide(key)
        return None if index == _INDEX else axes[index][1]

    def _decide(self, key: Any) -> int:
        assert self._axes is not None
        name = key if type(key) is str else text(key)
        index = _INDEX
        for position, (_, step_key) in enumerate(self._axes):
            if name == step_key:
                index = position
                break
        else:
            for position, (pattern, _) in enumerate(self._axes):
                if pattern.search(name) is not None:
                    index = position
                    break
        if len(self._axis_of) < 100_000:  # a stream of ever-new keys keeps no more
            self._axis_of[key if type(key) is str else (type(key), key)] = index
        return index

    def split(self, data: Record) -> list[tuple[Step, Record]]:
        """The parts of `data` (the next record taken), one per axis its keys are on, each
        with its step, in the order their first keys come in `data`. One dict lookup per
        key once its axis is known."""
        axes = self._axes
        assert axes is not None, "split is for several axes"
        index = self.taken
        self.taken = index + 1
        axis_of = self._axis_of
        parts: dict[int, dict[Any, Any]] = {}
        for key, value in data.items():
            axis = axis_of.get(key if type(key) is str else (type(key), key))
            if axis is None:
                axis = self._decide(key)
            part = parts.get(axis)
            if part is None:
                part = parts[axis] = {}
            part[key] = value
        lasts = self._lasts
        out: list[tuple[Step, Record]] = []
        for axis, part in parts.items():
            if axis == _INDEX:
                out.append((index, part))
                continue
            step_key = axes[axis][1]
            raw: Any = data.get(step_key)
            whole = raw if type(raw) is int else _integral(raw)
            if whole is not None:
                step: Step = whole
            else:
                number = to_float(raw) if raw is not None else None
                if number is None or not math.isfinite(number):
                    step = self._skip(step_key, lasts.get(step_key, 0), stacklevel=5)
                elif number.is_integer() and abs(number) < 2**53:
                    step = int(number)
                else:
                    step = number
            lasts[step_key] = self._last = step
            out.append((step, part))
        return out


class _AxisSteps(Steps):
    """Steps on several axes (what `Steps(mapping, note)` makes): `of` gives the step of the
    part `split` gave, held in `given`."""

    __slots__ = ()

    def of(self, data: Record) -> Step:
        given = self.given
        if given is None:
            raise RuntimeError("with several step axes, a record's steps come from split()")
        return given
