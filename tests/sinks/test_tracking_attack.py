"""Attacks on the tracking sinks (TensorBoard, MLflow, W&B, Neptune 1.x, neptune-scale): each
value written is in the tool's store as written, read back with the tool's own reader, or
counted in `counts` with its reason.

Every case writes through a real sink into a real offline run and reads it back with
`tests.sinks.tracking` (TensorBoard's EventAccumulator, `MlflowClient.get_metric_history`,
W&B's `.wandb` records, Neptune's operation log and neptune-scale's SQLite database). The
defects these attacks found are pinned as tests, each naming what was lost or changed.
"""

from __future__ import annotations

import contextlib
import json
import time
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.isolation import StoreError
from sinks.remote import RemoteSink
from tests.sinks.tracking import (
    Points,
    points_of,
    read_classic,
    read_scale,
    read_wandb,
    wandb_file,
    wandb_records,
)

pytestmark = [
    pytest.mark.slow,  # runs the real clients
    pytest.mark.usefixtures("tool_homes", "scratch_cwd"),
]


class Maker:
    """`make(kind, **options)`: a sink of `kind` on a new offline run under `folder`."""

    def __init__(self, folder: Path, mlflow_store: str) -> None:
        self.folder, self.store, self.made = folder, mlflow_store, []
        self.n = 0

    def __call__(self, kind: str, **options: Any) -> RemoteSink[Any]:
        from sinks.mlflow import MlflowSink
        from sinks.neptune import NeptuneSink
        from sinks.tensorboard import TensorBoardSink
        from sinks.wandb import WandbSink

        self.n += 1
        where = self.folder / f"{kind}-{self.n}"
        sink: RemoteSink[Any]
        if kind == "tensorboard":
            sink = TensorBoardSink(where, **options)
        elif kind == "mlflow":
            sink = MlflowSink(tracking_uri=options.pop("tracking_uri", self.store), **options)
        elif kind == "wandb":
            sink = WandbSink(dir=where, **options)
        elif kind == "neptune":
            sink = NeptuneSink(data_dir=where, **options)
        else:
            sink = NeptuneSink.scale(data_dir=where, **options)
        self.made.append(sink)
        return sink

    def close_all(self) -> None:
        for sink in self.made:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with contextlib.suppress(StoreError):
                    sink.close()


@pytest.fixture
def make(tmp_path: Path, mlflow_store: str) -> Iterator[Maker]:
    maker = Maker(tmp_path, mlflow_store)
    yield maker
    maker.close_all()


def closed(sink: RemoteSink[Any]) -> Points:
    """Closes the sink quietly and reads back what its tool stored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink.close()
    return points_of(sink)


def counted(sink: RemoteSink[Any], key: str) -> bool:
    """Whether `key` is counted under some reason in the sink's counts."""
    return any(key in per_key for per_key in sink.counts.by_key.values())


# -- 1. steps: a numpy int step is taken exactly ----------------------------------------------


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow", "neptune"])
def test_a_numpy_int_step_beyond_2_53_is_the_step_its_values_are_stored_at(
    make: Maker, kind: str
) -> None:
    step = 2**53 + 1  # an int64 step: TensorBoard and MLflow take it, Neptune 1.x too
    sink = make(kind, step_key="s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink.write({"s": np.int64(step), "x": 1.0})
    points = closed(sink)
    stored = points["x"]
    assert stored == [(step, 1.0)] or counted(sink, "x") or counted(sink, "s"), stored


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow", "neptune"])
def test_a_python_int_step_beyond_2_53_is_the_step_exactly(make: Maker, kind: str) -> None:
    step = 2**53 + 1
    sink = make(kind, step_key="s")
    sink.write({"s": step, "x": 1.0})
    points = closed(sink)
    assert points["x"] == [(step, 1.0)]


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow", "wandb", "neptune", "neptune-scale"])
def test_numpy_and_torch_integer_steps_small_are_taken_exactly(make: Maker, kind: str) -> None:
    import torch

    sink = make(kind, step_key="s")
    steps = [np.int64(3), np.uint8(5), torch.tensor(9), np.array(11), np.float32(12.0)]
    for i, step in enumerate(steps):
        sink.write({"s": step, "x": float(i)})
    points = closed(sink)
    assert points["x"] == [(3, 0.0), (5, 1.0), (9, 2.0), (11, 3.0), (12, 4.0)]
    assert not sink.counts["dropped"] and not sink.counts["rounded"]


# -- 2. MLflow: a step that goes back and comes again ------------------------------------------


def test_mlflow_keeps_a_point_repeated_after_its_step_went_back(
    make: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sinks.mlflow

    # A fixed clock: the writes of a tight loop in one millisecond, made certain.
    now = time.time_ns()
    monkeypatch.setattr(sinks.mlflow, "time", types.SimpleNamespace(time_ns=lambda: now))
    sink = make("mlflow", step_key="s")
    for step in (5, 3, 5):  # an evaluation at 5, a late point at 3, again at 5
        sink.write({"s": step, "x": 1.0})
    points = closed(sink)
    assert points["x"] == [(3, 1.0), (5, 1.0), (5, 1.0)] or counted(sink, "x"), points["x"]


def test_mlflow_keeps_equal_points_at_one_step_in_the_same_millisecond(
    make: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sinks.mlflow

    now = time.time_ns()
    monkeypatch.setattr(sinks.mlflow, "time", types.SimpleNamespace(time_ns=lambda: now))
    sink = make("mlflow", step_key="s")
    for _ in range(3):
        sink.write({"s": 4, "x": 2.0, "y": 2.0})
    sink.flush()
    sink.write({"s": 4, "x": 2.0})  # a later push: the stamp is carried across pushes
    points = closed(sink)
    assert points["x"] == [(4, 2.0)] * 4
    assert points["y"] == [(4, 2.0)] * 3


# -- 3. MLflow's file store: a name that is both a metric and a folder -------------------------


def test_mlflow_file_store_refuses_a_metric_under_another_alone(
    make: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    sink = make("mlflow", tracking_uri=f"file://{tmp_path}/mlruns")
    sink.write({"a": 1.0})
    sink.flush()
    sink.write({"a/b": 2.0, "c": 3.0})
    sink.write({"d": 4.0})
    try:
        points = closed(sink)
    except StoreError:
        points = points_of(sink)
    assert points.get("c") == [(1, 3.0)] and points.get("d") == [(2, 4.0)], points
    assert counted(sink, "a/b")


# -- 4. best= on a key whose value is not a number ----------------------------------------------


@pytest.mark.parametrize("kind", ["wandb", "neptune-scale"])
def test_best_of_a_key_holding_an_array_costs_no_other_value(make: Maker, kind: str) -> None:
    sink = make(kind, best={"r": "max"})
    sink.write({"r": np.array([1.0, 2.0]), "x": 1.0})  # one return per environment
    sink.write({"x": 2.0})
    try:
        points = closed(sink)
    except StoreError:
        points = points_of(sink)
    assert points.get("x") == [(0, 1.0), (1, 2.0)], points
    assert sink.counts["lost"] == 0


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_best_of_a_key_holding_an_array_is_harmless_where_arrays_are_apart(
    make: Maker, kind: str
) -> None:
    sink = make(kind, best={"r": "max"})
    sink.write({"r": np.array([1.0, 2.0]), "x": 1.0})
    sink.write({"x": 2.0, "r": 0.5})
    points = closed(sink)
    assert points["x"] == [(0, 1.0), (1, 2.0)]
    assert sink.counts["lost"] == 0 and sink.counts["errors"] == 0


# -- 5. Neptune: the configuration beside the series --------------------------------------------


def test_neptune_log_config_over_a_series_a_record_key_made_is_counted(make: Maker) -> None:
    sink = make("neptune")
    sink.write({"config/lr": 1.0})
    sink.flush()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink.log_config({"lr": 0.5, "seed": 3})
    closed(sink)
    fields = read_classic(sink.data_dir).fields
    assert fields.get("config/seed") == 3
    assert fields.get("config/lr") == 0.5 or counted(sink, "config/lr")


@pytest.mark.parametrize("kind", ["neptune", "neptune-scale"])
def test_neptune_config_that_changes_shape_is_stored_or_counted(make: Maker, kind: str) -> None:
    sink = make(kind)
    sink.log_config({"a": 1, "b": {"c": 2}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink.log_config({"a": {"x": 1}, "b": 3, "z": 4})
    closed(sink)
    run = read_classic(sink.data_dir) if kind == "neptune" else read_scale(sink.data_dir)
    for name, value in (("config/a/x", 1), ("config/b", 3), ("config/z", 4)):
        assert run.fields.get(name) == value or counted(sink, name), (name, run.fields)


def test_neptune_a_record_key_under_config_after_log_config_is_counted(make: Maker) -> None:
    sink = make("neptune")
    sink.log_config({"lr": 0.5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink.write({"config/lr": 1.0, "y": 2.0})
    points = closed(sink)
    assert points["y"] == [(0, 2.0)]
    assert read_classic(sink.data_dir).fields["config/lr"] == 0.5
    assert counted(sink, "config/lr")


@pytest.mark.parametrize("kind", ["wandb", "neptune-scale"])
def test_an_int_beyond_float_range_is_stored_as_infinity_only_counted(
    make: Maker, kind: str
) -> None:
    sink = make(kind)
    sink.write({"huge": 10**400, "x": 1.0})
    points = closed(sink)
    assert points["x"] == [(0, 1.0)]
    assert counted(sink, "huge"), points.get("huge")


@pytest.mark.parametrize("kind", ["tensorboard", "neptune"])
def test_an_int_beyond_float_range_is_counted(make: Maker, kind: str) -> None:
    sink = make(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink.write({"huge": -(10**400), "x": 1.0})
    points = closed(sink)
    assert points["x"] == [(0, 1.0)]
    assert counted(sink, "huge")
    assert points.get("huge", [(0, -float("inf"))]) == [(0, -float("inf"))]


# -- 6. what held: names, values, summaries -----------------------------------------------------


def wandb_summary(run_dir: Path) -> dict[str, Any]:
    """The run's summary as W&B's transaction log leaves it."""
    from wandb.proto.wandb_internal_pb2 import Record

    read_wandb(run_dir)
    summary: dict[str, Any] = {}
    for raw in wandb_records(wandb_file(run_dir).read_bytes()):
        record = Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
    return {name: value for name, value in summary.items() if not name.startswith("_")}


def test_wandb_keys_with_dots_are_names_of_their_own_and_their_best_too(make: Maker) -> None:
    sink = make("wandb", best={"a.b": "max"})
    sink.write({"a.b": 1.0, "a": 2.0, "c.d.e": "t"})
    sink.write({"a.b": 3.0, "a": 1.0, "c.d.e": "u"})
    points = closed(sink)
    assert points["a.b"] == [(0, 1.0), (1, 3.0)]
    assert points["a"] == [(0, 2.0), (1, 1.0)]
    assert points["c.d.e"] == [(0, "t"), (1, "u")]
    assert wandb_summary(sink.run_dir)["best/a.b"] == 3.0


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow", "wandb", "neptune", "neptune-scale"])
def test_odd_but_legal_names_are_stored_as_written(make: Maker, kind: str) -> None:
    keys = ["loss ", "Loss", "a-b.c_d", "x:y", "eval/return", "ünï"]
    if kind == "mlflow":
        keys.remove("ünï")  # MLflow refuses it: counted (tested elsewhere)
    sink = make(kind)
    sink.write({key: float(i) for i, key in enumerate(keys)})
    points = closed(sink)
    for i, key in enumerate(keys):
        assert points.get(key) == [(0, float(i))], (key, sorted(points))


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow", "wandb", "neptune", "neptune-scale"])
def test_bools_numpy_scalars_and_0d_arrays_are_their_floats(make: Maker, kind: str) -> None:
    values = {
        "t": True,
        "f": np.bool_(False),
        "i8": np.int8(-7),
        "u64": np.uint64(2**40),
        "f16": np.float16(0.5),
        "d0": np.array(-2.25),
        "big": 2**40 + 1,
    }
    sink = make(kind)
    sink.write(values)
    points = closed(sink)
    expected = {"t": 1.0, "f": 0.0, "i8": -7.0, "u64": 2.0**40, "f16": 0.5, "d0": -2.25}
    expected["big"] = float(np.float32(2**40 + 1)) if kind == "tensorboard" else 2.0**40 + 1
    assert {key: points[key][0][1] for key in values} == expected


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow", "neptune"])
def test_a_fractional_step_best_lands_on_its_values_step(make: Maker, kind: str) -> None:
    """A negative fractional step: floored for the value (TB, MLflow); the best is at the
    step its value was stored at, not at int() of it."""
    sink = make(kind, step_key="s", best={"x": "max"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink.write({"s": -2.5 if kind != "neptune" else 2.5, "x": 4.0})
    points = closed(sink)
    if kind == "neptune":
        assert read_classic(sink.data_dir).fields.get("summary/best/x") == 4.0
        return
    assert points["x"] == [(-3, 4.0)]
    assert points["best/x"] == [(-3, 4.0)]


# -- 7. a small property: several axes and write_batch, read back -------------------------------


ROWS = st.lists(
    st.tuples(
        st.sampled_from(["train", "eval"]),
        st.integers(0, 2**40),
        st.floats(-1e6, 1e6, allow_nan=False, width=32),
        st.booleans(),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda row: (row[0], row[1]),  # no metric repeats a (step, value) pair
)


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=ROWS, kind=st.sampled_from(["tensorboard", "mlflow"]))
def test_property_axes_and_batches_store_each_point_at_its_axis_step(
    make: Maker, rows: list[tuple[str, int, float, bool]], kind: str
) -> None:
    """Records on two axes (training steps, evaluation rounds), each written alone or as a
    one-row batch with numpy columns: each value is at its own axis' step, once."""
    from pipeline import Pipeline

    sink = make(kind, step_key={"^eval/": "round", "": "steps"})
    expected: dict[str, list[tuple[int, float]]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Pipeline().to(sink) as logger:
            for axis, step, value, as_batch in rows:
                key, step_key = ("eval/r", "round") if axis == "eval" else ("loss", "steps")
                if as_batch:
                    logger.write_batch(
                        {step_key: np.array([step], dtype=np.int64), key: np.array([value])}
                    )
                else:
                    logger.write({step_key: step, key: value})
                expected.setdefault(key, []).append((step, value))
                expected.setdefault(step_key, []).append((step, float(step)))
    points = points_of(sink)
    for key, series in expected.items():
        want = sorted((s, float(np.float32(v)) if kind == "tensorboard" else v) for s, v in series)
        assert sorted(points[key]) == want, key
