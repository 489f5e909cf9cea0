"""Several step axes: with `step_key={"^eval/": "eval_round", "": "steps"}`, every tracking
sink stores each key at its own axis' step (W&B: against its own `step_metric`), and drops
nothing for being behind another axis.

Each case writes through a real sink into a real offline run and reads it back with the
tool's own reader (`tests.sinks.tracking`).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest

from sinks.remote import RemoteSink
from tests.sinks import test_tracking_losses as losses
from tests.sinks.tracking import KINDS, Points, points_of, wandb_axis_points

pytestmark = [
    pytest.mark.slow,  # runs the real clients
    pytest.mark.usefixtures("tool_homes", "scratch_cwd"),
]

make = losses.make

AXES = {"^eval/": "eval_round", "": "steps"}

STREAM: list[dict[str, Any]] = [
    {"steps": 1000, "loss": 0.5},
    {"steps": 2000, "loss": 0.25, "eval/return": 10.0, "eval_round": 1},
    {"steps": 3000, "loss": 0.125},
    {"eval/return": 12.0, "eval_round": 2},
]
"""Training at env steps 1000, 2000, 3000; evaluation rounds 1 and 2 in between."""

ON_THEIR_AXES: Points = {
    "steps": [(1000, 1000.0), (2000, 2000.0), (3000, 3000.0)],
    "loss": [(1000, 0.5), (2000, 0.25), (3000, 0.125)],
    "eval_round": [(1, 1.0), (2, 2.0)],
    "eval/return": [(1, 10.0), (2, 12.0)],
}
"""Every point at its own axis' step, each once, the axis keys included."""


def axis_points(sink: RemoteSink[Any]) -> Points:
    sink.close()
    if type(sink).__name__ == "WandbSink":
        return wandb_axis_points(sink.run_dir, AXES.values())  # type: ignore[attr-defined]
    return points_of(sink)


def as_floats(points: Points) -> Points:
    return {
        name: [(step, float(value)) for step, value in series] for name, series in points.items()
    }


@pytest.mark.parametrize("kind", KINDS)
def test_each_key_is_stored_at_its_own_axis_step_and_nothing_is_dropped(
    kind: str, make: Any
) -> None:
    sink = make(kind, step_key=AXES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped, skipped or changed
        for record in STREAM:
            sink.write(record)
        points = axis_points(sink)
    assert as_floats(points) == ON_THEIR_AXES
    assert not sink.counts


@pytest.mark.parametrize("kind", KINDS)
def test_a_record_without_its_axis_value_is_at_that_axis_last_step_counted_once(
    kind: str, make: Any
) -> None:
    sink = make(kind, step_key=AXES)
    sink.write({"steps": 1000, "loss": 0.5, "eval/return": 10.0, "eval_round": 1})
    with pytest.warns(UserWarning, match="'eval_round'"):
        sink.write({"steps": 2000, "loss": 0.25, "eval/length": 7})  # no eval_round
    sink.write({"steps": 3000, "eval/return": 12.0, "eval_round": 2})
    points = as_floats(axis_points(sink))
    assert points["eval/length"] == [(1, 7.0)]  # eval_round's last step
    assert points["loss"] == [(1000, 0.5), (2000, 0.25)]
    assert points["eval/return"] == [(1, 10.0), (2, 12.0)]
    assert sink.counts["skipped"] == 1
    assert sink.counts.by_key["skipped"] == {"eval_round": 1}


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_a_key_no_pattern_matches_is_at_the_records_index(kind: str, make: Any) -> None:
    sink = make(kind, step_key={"^eval/": "eval_round"})
    sink.write({"eval/return": 1.0, "eval_round": 5, "fps": 100.0})
    sink.write({"fps": 200.0})
    points = as_floats(axis_points(sink))
    assert points == {
        "eval/return": [(5, 1.0)],
        "eval_round": [(5, 5.0)],
        "fps": [(0, 100.0), (1, 200.0)],
    }


def test_the_state_of_several_axes_goes_on_after_a_restart(make: Any) -> None:
    first = make("tensorboard", step_key=AXES)
    first.write({"steps": 1000, "loss": 0.5, "eval/return": 10.0, "eval_round": 1})
    state = json.loads(json.dumps(first.node_state()["steps"]))
    second = make("mlflow", step_key=AXES)
    second._steps.load(state)
    second.write({"loss": 0.25, "eval/return": 11.0})  # both axes missing: their last steps
    points = as_floats(axis_points(second))
    assert points == {"loss": [(1000, 0.25)], "eval/return": [(1, 11.0)]}


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_a_fractional_axis_step_is_floored_and_counted_under_its_step_key(
    kind: str, make: Any
) -> None:
    sink = make(kind, step_key=AXES)
    with pytest.warns(UserWarning, match="floor"):
        sink.write({"steps": 1000, "loss": 0.5, "eval/return": 1.0, "eval_round": 1.5})
    points = as_floats(axis_points(sink))
    assert points["eval/return"] == [(1, 1.0)]
    assert points["loss"] == [(1000, 0.5)]
    assert sink.counts.by_key["rounded"] == {"eval_round": 1}
