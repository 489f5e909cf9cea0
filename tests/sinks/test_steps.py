"""Steps: the step a tracking sink logs each record at (used by the Neptune, MLflow and W&B
sinks, tested here without any of them)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sinks.steps import Steps


class Notes:
    """Stands for a sink's `counts.note`: records what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))


def test_without_a_step_key_the_step_is_the_records_index() -> None:
    steps = Steps(None, Notes())
    assert [steps.of({"step": 100}) for _ in range(3)] == [0, 1, 2]
    assert steps.taken == 3


@pytest.mark.parametrize(
    ("value", "step"),
    [
        (0, 0),  # 0 is a step
        (7, 7),
        (7.0, 7),  # integral values are ints
        (np.int64(12), 12),
        (np.float32(3.0), 3),
        (True, 1),
        (2.5, 2.5),
        (-4.0, -4),
        (2.0**53, 2.0**53),  # beyond exact ints: left a float
    ],
)
def test_with_a_step_key_the_step_is_the_records_value(value: object, step: float) -> None:
    steps = Steps("t", Notes())
    got = steps.of({"t": value, "x": 1.0})
    assert got == step and type(got) is type(step)


@pytest.mark.parametrize("value", [None, "ten", math.nan, math.inf, [1, 2], "missing"])
def test_a_record_without_a_finite_number_is_logged_at_the_last_step_and_noted(
    value: object,
) -> None:
    notes = Notes()
    steps = Steps("t", notes)
    assert steps.of({"t": 5}) == 5
    assert steps.of({"t": 8.0}) == 8
    record = {"x": 1.0} if value == "missing" else {"t": value}
    assert steps.of(record) == 8
    assert steps.taken == 3
    [(args, kwargs)] = notes.calls
    assert args == ("skipped", "records without a numeric 't' are logged at the last step seen")
    assert kwargs["key"] == "t"


def test_before_any_step_was_seen_the_last_step_is_zero() -> None:
    notes = Notes()
    steps = Steps("t", notes)
    assert steps.of({"x": 1.0}) == 0
    assert len(notes.calls) == 1
    assert steps.of({"t": 3}) == 3
    assert steps.of({"t": None}) == 3


def test_a_non_integral_step_is_remembered_as_the_last_step() -> None:
    steps = Steps("t", Notes())
    steps.of({"t": 1.5})
    assert steps.of({}) == 1.5


def test_the_step_key_must_be_text_or_none() -> None:
    with pytest.raises(ValueError, match=r"step_key must be a string, .* or None, got int"):
        Steps(3, Notes())  # type: ignore[arg-type]


# -- several axes -----------------------------------------------------------------------------


def test_several_axes_split_a_record_into_one_part_per_axis_each_at_its_step() -> None:
    steps = Steps({"^eval/": "eval_round", "": "steps"}, Notes())
    record = {"steps": 2000, "loss": 0.25, "eval/return": 10.0, "eval_round": 1}
    assert steps.split(record) == [
        (2000, {"steps": 2000, "loss": 0.25}),
        (1, {"eval/return": 10.0, "eval_round": 1}),  # a step key is on its own axis
    ]
    assert steps.taken == 1
    assert steps.axes == ["eval_round", "steps"]


def test_the_first_matching_pattern_wins_and_unmatched_keys_are_at_the_records_index() -> None:
    steps = Steps({"^eval/": "round", "loss": "updates"}, Notes())
    assert [steps.axis_of(key) for key in ("eval/loss", "loss", "fps", 3)] == [
        "round",
        "updates",
        None,
        None,
    ]
    steps.split({"fps": 1.0})
    assert steps.split({"fps": 2.0, 3: 1.0}) == [(1, {"fps": 2.0, 3: 1.0})]


def test_a_keys_axis_is_decided_once() -> None:
    steps = Steps({"^eval/": "round", "": "steps"}, Notes())
    steps.split({"eval/x": 1.0, "round": 1})

    class Refuses:
        def search(self, key: str) -> None:
            raise AssertionError(f"the pattern was asked again, for {key!r}")

    steps._axes = [(Refuses(), "round"), (Refuses(), "steps")]  # type: ignore[list-item]
    assert steps.split({"eval/x": 2.0, "round": 2}) == [(2, {"eval/x": 2.0, "round": 2})]


def test_a_part_without_its_axis_value_is_at_that_axis_last_step_noted() -> None:
    notes = Notes()
    steps = Steps({"^eval/": "round", "": "steps"}, notes)
    steps.split({"steps": 10, "round": 1, "eval/x": 1.0})
    assert steps.split({"steps": 20.0, "eval/x": 2.0}) == [
        (20, {"steps": 20.0}),
        (1, {"eval/x": 2.0}),
    ]
    [(args, kwargs)] = notes.calls
    assert args[0] == "skipped" and kwargs["key"] == "round"
    restored = Steps({"^eval/": "round", "": "steps"}, Notes())
    restored.load(steps.state())
    assert restored.split({"eval/x": 3.0, "loss": 1.0}) == [
        (1, {"eval/x": 3.0}),
        (20, {"loss": 1.0}),
    ]


@pytest.mark.parametrize(
    ("step_key", "message"),
    [({"(": "s"}, "pattern"), ({"": 3}, "strings"), ({}, "at least one")],
)
def test_a_bad_step_key_is_refused(step_key: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Steps(step_key, Notes())
