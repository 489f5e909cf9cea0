"""What a tracking tool refuses costs that value alone, counted; nothing merges or stalls.

Every case writes through a real sink into a real offline run (TensorBoard event files, an
MLflow SQLite store, a W&B offline run, neptune 1.x and neptune-scale offline runs) and reads
the run back with the tool's own reader (`tests.sinks.tracking.read_points`): each value
written is stored exactly once, or counted with its reason (and warned once); a value the
tool refuses never holds up the rest of its record or the records after it.
"""

from __future__ import annotations

import enum
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sinks.remote import RemoteSink
from tests.sinks.tracking import KINDS, Points, points_of

pytestmark = [
    pytest.mark.slow,  # runs the real clients
    pytest.mark.usefixtures("tool_homes", "scratch_cwd"),
]


@pytest.fixture
def make(tmp_path: Path, mlflow_store: str) -> Iterator[Any]:
    """`make(kind, **options)`: a sink of `kind` on a new offline run under tmp_path."""
    made: list[RemoteSink[Any]] = []

    def make(kind: str, **options: Any) -> RemoteSink[Any]:
        from sinks.mlflow import MlflowSink
        from sinks.neptune import NeptuneSink
        from sinks.tensorboard import TensorBoardSink
        from sinks.wandb import WandbSink

        sink: RemoteSink[Any]
        if kind == "tensorboard":
            sink = TensorBoardSink(tmp_path / "tb", **options)
        elif kind == "mlflow":
            sink = MlflowSink(tracking_uri=options.pop("tracking_uri", mlflow_store), **options)
        elif kind == "wandb":
            sink = WandbSink(dir=tmp_path / "wandb", **options)
        elif kind == "neptune":
            sink = NeptuneSink(data_dir=tmp_path / "neptune", **options)
        else:
            sink = NeptuneSink.scale(data_dir=tmp_path / "neptune-scale", **options)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sink.close()


def closed_points(sink: RemoteSink[Any]) -> Points:
    """Closes the sink (it must not raise: nothing is left that it could not store) and
    reads back what its tool stored."""
    sink.close()
    return points_of(sink)


def written_once(points: Points, name: str, expected: list[tuple[Any, Any]]) -> bool:
    """The series `name` holds exactly `expected`: each point once, at its step."""
    return points.get(name) == expected


# -- 1. one refused value costs that value alone ------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_the_tool_cannot_encode_is_dropped_alone_and_later_records_arrive_once(
    make: Any, kind: str
) -> None:
    sink = make(kind, step_key="t")
    with pytest.warns(sink.warning, match="bad"):
        for t in range(10):
            record: dict[str, Any] = {"t": t, "x": float(t)}
            if t == 5:
                record["bad\ud800"] = 1.0
            sink.write(record)
            sink.flush()  # one push per record: a stalled push would raise StoreError here
    points = closed_points(sink)
    assert written_once(points, "x", [(t, float(t)) for t in range(10)])
    assert sink.dropped == {"bad\ud800": 1}
    assert sink.counts["lost"] == 0 and sink.counts["errors"] == 0
    failure = sink.storage_failures  # what Pipeline.failures() lists for the sink
    assert failure is not None and repr(sink) in failure and "1 dropped" in failure


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow", "wandb", "neptune-scale"])
def test_a_step_the_tool_refuses_drops_its_record_alone(make: Any, kind: str) -> None:
    sink = make(kind, step_key="t")
    with pytest.warns(sink.warning, match="step"):
        for t in [0, 1, 2**63, 3, 4]:
            sink.write({"t": t, "x": 1.0 + (t % 100)})
            sink.flush()
    points = closed_points(sink)
    assert written_once(points, "x", [(t, 1.0 + t) for t in [0, 1, 3, 4]])
    assert sink.dropped == {"t": 1, "x": 1}
    assert sink.counts["lost"] == 0 and sink.counts["errors"] == 0


def test_a_sink_that_stored_everything_reports_no_failure(make: Any) -> None:
    sink = make("tensorboard")
    sink.write({"x": 1.0})
    sink.close()
    assert sink.storage_failures is None


# -- 2. keys that one tool name would merge ------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_keys_1_and_text_1_never_merge_the_later_is_refused_and_counted(
    make: Any, kind: str
) -> None:
    sink = make(kind)
    with pytest.warns(sink.warning, match="'1'"):
        sink.write({1: 10.0, "1": 20.0})
        sink.write({"1": 21.0})  # the key that lost the name, again: refused again
        sink.write({1: 11.0})
    points = closed_points(sink)
    assert written_once(points, "1", [(0, 10.0), (2, 11.0)])
    assert sink.dropped == {"1": 2}


# -- 3. names and texts every tool must take or count ------------------------------------


class Phase(str, enum.Enum):
    TRAIN = "train"


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_key_is_stored_or_counted(make: Any, kind: str) -> None:
    sink = make(kind)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        sink.write({"": 1.0, "x": 2.0})
    points = closed_points(sink)
    assert points["x"] == [(0, 2.0)]
    assert points.get("") == [(0, 1.0)] or sink.dropped == {"": 1}


TEXT_KINDS = ["tensorboard", "wandb", "neptune", "neptune-scale"]
"""The tools that store strings (MLflow metrics are numbers: text is dropped, counted)."""


@pytest.mark.parametrize("kind", TEXT_KINDS)
def test_a_lone_surrogate_in_a_text_is_stored_escaped_and_counted_as_changed(
    make: Any, kind: str
) -> None:
    sink = make(kind)
    with pytest.warns(sink.warning, match="surrogate"):
        sink.write({"s": "a\ud800b"})
        sink.write({"s": "a\ud800b"})
        sink.write({"s": "plain é"})
        points = closed_points(sink)  # (TensorBoard finds it as it encodes, on the push)
    assert points["s"] == [(0, "a\\ud800b"), (1, "a\\ud800b"), (2, "plain é")]
    assert sink.counts["changed"] == 2 and sink.counts.by_key["changed"] == {"s": 2}


@pytest.mark.parametrize("kind", TEXT_KINDS)
def test_str_subclasses_are_stored_as_their_text(make: Any, kind: str) -> None:
    sink = make(kind)
    sink.write({"phase": Phase.TRAIN, "name": np.str_("ppo")})
    points = closed_points(sink)
    assert points["phase"] == [(0, "train")] and points["name"] == [(0, "ppo")]
    assert sink.dropped == {}


# -- 4. MLflow: repeats at one step ----------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", "file"])
def test_mlflow_keeps_identical_repeats_at_one_step(
    make: Any, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options: dict[str, Any] = {}
    if store == "file":
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        options["tracking_uri"] = (tmp_path / "mlruns").as_uri()
    sink = make("mlflow", step_key="steps", **options)
    returns = [10.0] * 50 + [12.0]  # eval episodes written within one millisecond or a few
    for episode_return in returns:
        sink.write({"steps": 1000, "eval/return": episode_return})
    points = closed_points(sink)
    assert points["eval/return"] == [(1000, value) for value in returns]


# -- 5. Neptune's own limits --------------------------------------------------------------


def test_neptune_scale_refuses_a_path_of_1024_bytes_or_more_alone_and_counts_it(
    make: Any,
) -> None:
    sink = make("neptune-scale")
    long_key, longest_kept = "k" * 1024, "é" * 511  # 1024 bytes; 1022 bytes
    with pytest.warns(sink.warning, match="1024 bytes"):
        sink.write({long_key: 1.0, longest_kept: 2.0, "x": 3.0})
        sink.write({long_key: 1.5, "x": 4.0})
    points = closed_points(sink)
    assert points == {longest_kept: [(0, 2.0)], "x": [(0, 3.0), (1, 4.0)]}
    assert sink.dropped == {long_key: 2}


def test_neptune_scale_steps_that_one_microsecond_cannot_tell_apart_are_counted(
    make: Any,
) -> None:
    sink = make("neptune-scale", step_key="t")
    with pytest.warns(sink.warning, match="step"):
        for t, x in [(1.0, 1.0), (1.0000001, 2.0), (1.000002, 3.0)]:
            sink.write({"t": t, "x": x})
    points = closed_points(sink)
    assert points["x"] == [(1.0, 1.0), (1.000002, 3.0)]
    assert sink.dropped == {"t": 1, "x": 1}


def test_neptune_scale_a_refused_value_costs_only_itself_counted_under_its_own_key(
    make: Any,
) -> None:
    sink = make("neptune-scale")
    with pytest.warns(sink.warning):
        sink.write({"ok": 1.0, "s": "fine", "big": "x" * (1024 * 1024)})
    points = closed_points(sink)
    assert points == {"ok": [(0, 1.0)], "s": [(0, "fine")]}
    assert sink.dropped == {"big": 1}


def test_neptune_1x_counts_a_string_it_cuts_at_1000_characters(make: Any) -> None:
    sink = make("neptune")
    long = "y" * 1500
    with pytest.warns(sink.warning, match="1000 characters"):
        sink.write({"notes": long, "x": 1.0})
    points = closed_points(sink)
    assert points["notes"] == [(0, long[:1000])] and points["x"] == [(0, 1.0)]
    assert sink.counts.by_key["changed"] == {"notes": 1}


# -- the cost of checking: nothing on the hot path when nothing is wrong -------------------


@pytest.mark.parametrize("kind", ["tensorboard", "wandb", "mlflow"])
def test_names_are_checked_once_per_key(make: Any, kind: str) -> None:
    sink = make(kind)
    names = sink._names
    for step in range(3):
        sink.write({"a": float(step), "b": 1.0})
    assert names.checked == 2
    sink.close()


POISON_ROWS = {
    "tensorboard": lambda stamp: (1, stamp, {"bad\ud800": 1.0, "x": 1.0}, None),
    "wandb": lambda stamp: (1, stamp, {"bad\ud800": 1.0, "x": 1.0}),
    "neptune-scale": lambda stamp: (1, stamp, {"bad\ud800": 1.0, "x": 1.0}, {}),
}
"""A held row with a name its client refuses, as no check in `write` lets through: what a
value the checks did not foresee would be."""


@pytest.mark.parametrize("kind", sorted(POISON_ROWS))
def test_a_batch_the_client_refuses_all_the_same_is_sent_value_by_value(
    make: Any, kind: str
) -> None:
    sink = make(kind)
    sink.write({"x": 0.0})
    sink.flush()
    sink._held.append(POISON_ROWS[kind](time.time()))
    sink._steps.taken += 1
    with pytest.warns(sink.warning, match="bad"):
        sink.flush()
    sink.write({"x": 2.0})
    points = closed_points(sink)
    assert points == {"x": [(0, 0.0), (1, 1.0), (2, 2.0)]}
    assert sink.dropped == {"bad\ud800": 1} and sink.counts["errors"] == 0
