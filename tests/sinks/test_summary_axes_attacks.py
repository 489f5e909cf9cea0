"""Attacks on several step axes, `best=` and TensorBoard's hparams: inputs at the edges of
what the features promise (an axis key another axis' pattern matches, a step of every odd
kind, a best of a key the caller writes too, a best never reached, NaN and ties, config
logged twice), each read back with the tool's own reader."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest

from tests.sinks import test_run_summary as summary
from tests.sinks import test_tracking_losses as losses
from tests.sinks.tracking import points_of

pytestmark = [
    pytest.mark.slow,  # runs the real clients
    pytest.mark.usefixtures("tool_homes", "scratch_cwd"),
]

make = losses.make


def floats(points: Any) -> Any:
    return {name: [(step, float(v)) for step, v in series] for name, series in points.items()}


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_an_axis_key_matched_by_an_earlier_pattern_stays_on_its_own_axis(
    kind: str, make: Any
) -> None:
    sink = make(kind, step_key={"round": "eval/round", "^eval/": "steps"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sink.write({"steps": 5, "eval/return": 1.0, "eval/round": 2, "x_round": 3.0})
        sink.close()
    assert floats(points_of(sink)) == {
        "steps": [(5, 5.0)],
        "eval/return": [(5, 1.0)],
        "eval/round": [(2, 2.0)],
        "x_round": [(2, 3.0)],
    }


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_a_key_the_caller_writes_under_best_s_name_keeps_its_values_and_the_best_is_counted(
    kind: str, make: Any
) -> None:
    sink = make(kind, step_key="steps", best={"loss": "min"})
    sink.write({"steps": 1, "loss": 0.5, "best/loss": 0.125})
    sink.write({"steps": 2, "loss": 0.25, "best/loss": 0.125})
    with pytest.warns(UserWarning, match="'best/loss' is the name of a key"):
        sink.close()
    points = floats(points_of(sink))
    assert points["best/loss"] == [(1, 0.125), (2, 0.125)]  # the caller's own, as written
    assert points["loss"] == [(1, 0.5), (2, 0.25)]
    assert sink.counts.by_key["clashed"] == {"best/loss": 1}


def test_wandb_summary_of_a_callers_best_key_is_its_last_value(make: Any) -> None:
    sink = make("wandb", step_key="steps", best={"loss": "min"})
    sink.write({"steps": 1, "loss": 0.5, "best/loss": 0.125})
    sink.write({"steps": 2, "loss": 0.25, "best/loss": 0.375})
    with pytest.warns(UserWarning, match="'best/loss' is the name of a key"):
        sink.close()
    assert summary.wandb_summary(sink.run_dir)["best/loss"] == 0.375
    assert sink.counts["clashed"] == 1


@pytest.mark.parametrize("kind", ["neptune", "neptune-scale"])
def test_neptune_series_under_the_bests_path_keeps_its_values(kind: str, make: Any) -> None:
    sink = make(kind, step_key="steps", best={"loss": "min"})
    sink.write({"steps": 1, "loss": 0.5, "summary/best/loss": 0.125})
    with pytest.warns(UserWarning, match="'summary/best/loss' is the name of a key"):
        sink.close()
    run = (summary.read_classic if kind == "neptune" else summary.read_scale)(sink.data_dir)
    assert run.series["summary/best/loss"] == [(1, 0.125)]
    assert "summary/best/loss" not in run.fields


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_best_of_a_key_never_written_or_never_a_number_adds_nothing(kind: str, make: Any) -> None:
    sink = make(kind, step_key="steps", best={"never": "max", "text": "max", "nan": "min"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink.write({"steps": 1, "text": "a", "nan": math.nan})
        sink.write({"steps": 2, "text": "b", "nan": math.nan})
        sink.close()
    assert not {name for name in points_of(sink) if name.startswith("best/")}


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_best_on_a_tie_is_the_first_step_that_reached_it_and_infinity_can_be_best(
    kind: str, make: Any
) -> None:
    sink = make(kind, step_key="steps", best={"r": "max", "l": "min"})
    for step, r, low in [(1, 1.0, 3.0), (2, 2.0, -math.inf), (3, 2.0, -math.inf), (4, math.nan, 0)]:
        sink.write({"steps": step, "r": r, "l": low})
    sink.close()
    points = floats(points_of(sink))
    assert points["best/r"] == [(2, 2.0)]
    assert points["best/l"] == [points["l"][1]]  # -inf, as the tool stores it (MLflow: -max)


# -- TensorBoard's hparams ----------------------------------------------------------------------


def test_tensorboard_hparams_keep_an_int_beyond_float_precision_exactly(make: Any) -> None:
    seed = 2**100 + 1  # numpy's SeedSequence().entropy is a 128-bit int
    sink = make("tensorboard", step_key="steps")
    sink.log_config({"seed": seed, "small": 2**53, "lr": 0.5})
    sink.write({"steps": 1, "loss": 1.0})
    sink.close()
    [group] = summary.hparams_sessions(Path(sink.logdir)).session_groups
    values = summary.hparam_values(group)
    assert int(values["seed"]) == seed
    assert values["small"] == 2**53 and values["lr"] == 0.5


def test_tensorboard_hparams_hold_nan_and_infinity_and_a_run_without_scalars(
    make: Any,
) -> None:
    sink = make("tensorboard", step_key="steps")
    sink.log_config({"clip": math.inf, "target": math.nan, "none": None})
    sink.close()
    [group] = summary.hparams_sessions(Path(sink.logdir)).session_groups
    values = summary.hparam_values(group)
    assert float(values["clip"]) == math.inf and math.isnan(float(values["target"]))
    assert values["none"] == "null"
    assert not group.sessions[0].metric_values


# -- W&B's axes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, "final"])
def test_wandb_an_axis_value_that_is_no_step_is_counted_where_the_axis_last_step_replaces_it(
    bad: Any, make: Any
) -> None:
    from tests.sinks.tracking import read_wandb, wandb_axis_points

    sink = make("wandb", step_key={"^eval/": "eval_round", "": "steps"})
    sink.write({"steps": 1000, "eval/return": 10.0, "eval_round": 1})
    with pytest.warns(UserWarning) as caught:
        sink.write({"steps": 2000, "eval/return": 11.0, "eval_round": bad})
        sink.close()
    assert any("'eval_round'" in str(w.message) and "not a step" in str(w.message) for w in caught)
    written = [
        row["eval_round"] for _, row in read_wandb(sink.run_dir).all_rows if "eval_round" in row
    ]
    assert written == [1, 1]  # W&B's row holds the axis' last step: eval/return is at round 1
    assert wandb_axis_points(sink.run_dir, ["eval_round", "steps"])["eval/return"] == [
        (1, 10.0),
        (1, 11.0),
    ]
    assert sink.dropped["eval_round"] == 1  # the value written, not stored: counted
    assert sink.counts.by_key["skipped"] == {"eval_round": 1}


def restarted(make: Any, config: dict[str, Any], keep: bool = False) -> Any:
    first = make("tensorboard", step_key="steps", best={"loss": "min"})
    first.log_config({"lr": 0.5, "seed": 1})
    first.write({"steps": 1, "loss": 0.5})
    first.flush()
    state = first.node_state()
    first.close()  # a preempted job: SIGTERM closes the sink
    second = make("tensorboard", step_key="steps", best={"loss": "min"})
    second.load_node_state(state)
    second.log_config(config)
    second.write({"steps": 2, "loss": 0.25})
    second.close()
    [group] = summary.hparams_sessions(Path(second.logdir)).session_groups
    return (group, second) if keep else group


def test_tensorboard_hparams_after_a_restart_show_the_last_values_and_the_best(
    make: Any,
) -> None:
    group = restarted(make, {"lr": 0.5, "seed": 1})
    assert summary.hparam_values(group) == {"lr": 0.5, "seed": 1.0}
    metrics = summary.metric_values(group.sessions[0])
    assert metrics["loss"] == (0.25, 2) and metrics["best/loss"] == (0.25, 2)


def test_tensorboard_counts_the_config_a_restarted_run_logs_that_hparams_cannot_show(
    make: Any,
) -> None:
    """TensorBoard keeps the first session start a run's folder holds: the configuration a
    run resumed after its first process closed (SIGTERM closes it) logs anew does not reach
    the HPARAMS tab, so each such value is counted and warned, not lost silently."""
    with pytest.warns(UserWarning, match="HPARAMS") as caught:
        group, sink = restarted(make, {"lr": 0.25, "seed": 1, "resumed": True}, keep=True)
    assert summary.hparam_values(group) == {"lr": 0.5, "seed": 1.0}  # the first session's
    assert sink.counts.by_key["dropped"] == {"config/lr": 1, "config/resumed": 1}
    assert sum("HPARAMS" in str(w.message) for w in caught) == 2


def test_tensorboard_counts_nothing_when_a_restarted_run_logs_the_same_config(
    make: Any,
) -> None:
    group, sink = restarted(make, {"lr": 0.5, "seed": 1}, keep=True)
    assert summary.hparam_values(group) == {"lr": 0.5, "seed": 1.0}
    assert not sink.counts.by_key.get("dropped")


# -- log_config twice on every tracking sink ----------------------------------------------------


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow", "wandb", "neptune", "neptune-scale"])
def test_a_config_value_changed_by_a_second_log_config_is_counted(kind: str, make: Any) -> None:
    sink = make(kind, step_key="steps")
    sink.log_config({"opt": {"lr": 0.1}, "seed": 1})
    with pytest.warns(UserWarning, match="opt/lr"):
        sink.log_config({"opt": {"lr": 0.2}, "seed": 1})
    sink.log_config({"seed": 1})  # the same value again: nothing to count
    sink.close()
    by_key = {**sink.counts.by_key.get("overwritten", {}), **sink.counts.by_key.get("dropped", {})}
    assert by_key == {"config/opt/lr": 1}


@pytest.mark.parametrize("kind", ["neptune", "neptune-scale"])
def test_neptune_config_holds_an_int_beyond_int64_and_infinity(kind: str, make: Any) -> None:
    seed = 2**100 + 1
    sink = make(kind, step_key="steps")
    sink.log_config({"seed": seed, "big": 2**40 + 1, "clip": math.inf})
    sink.write({"steps": 1, "loss": 1.0})
    sink.close()
    run = (summary.read_classic if kind == "neptune" else summary.read_scale)(sink.data_dir)
    assert int(run.fields["config/seed"]) == seed
    assert int(run.fields["config/big"]) == 2**40 + 1
    assert float(run.fields["config/clip"]) == math.inf
    assert not sink.counts


@pytest.mark.parametrize("kind", ["wandb", "mlflow"])
def test_wandb_and_mlflow_config_hold_an_int_beyond_int64_and_infinity(
    kind: str, make: Any
) -> None:
    from mlflow.tracking import MlflowClient

    from tests.sinks.tracking import read_wandb

    seed = 2**100 + 1
    sink = make(kind, step_key="steps")
    sink.log_config({"seed": seed, "clip": math.inf})
    sink.write({"steps": 1, "loss": 1.0})
    sink.close()
    if kind == "wandb":
        config = read_wandb(sink.run_dir).config
    else:
        config = MlflowClient(tracking_uri=sink.tracking_uri).get_run(sink.run_id).data.params
    assert int(config["seed"]) == seed
    assert float(config["clip"]) == math.inf
    assert not sink.counts


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow"])
def test_a_best_unchanged_by_a_restart_is_stored_once(kind: str, make: Any) -> None:
    first = make(kind, step_key="steps", best={"loss": "min"})
    first.write({"steps": 1, "loss": 0.5})
    first.flush()
    state = first.node_state()
    first.close()  # a preempted job: SIGTERM closes the sink, storing the best
    options = {} if kind == "tensorboard" else {"run_id": first.run_id}
    second = make(kind, step_key="steps", best={"loss": "min"}, **options)
    second.load_node_state(state)
    second.write({"steps": 2, "loss": 0.75})
    second.close()
    points = floats(points_of(second))
    assert points["loss"] == [(1, 0.5), (2, 0.75)]
    assert points["best/loss"] == [(1, 0.5)]
