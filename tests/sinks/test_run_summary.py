"""Run summaries: each tracking sink's run holds the last value of every key and, for the keys
given in `best=`, the best (`max` or `min`); TensorBoardSink also writes the run's
configuration as TensorBoard's hparams plugin data, so the HPARAMS tab lists the run with its
metrics' final values.

Each case writes through a real sink into a real offline run and reads it back with the
tool's own reader: TensorBoard's hparams plugin (its `ListSessionGroups` handler over an
event multiplexer, as the HPARAMS tab asks it), MlflowClient, W&B's transaction log, the
Neptune clients' offline data.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.summary import Best
from tests.sinks import test_tracking_losses as losses
from tests.sinks.tracking import (
    read_classic,
    read_mlflow,
    read_scale,
    read_wandb,
    wandb_file,
    wandb_records,
)

pytestmark = [
    pytest.mark.slow,  # runs the real clients
    pytest.mark.usefixtures("tool_homes", "scratch_cwd"),
]
make = losses.make

AXES = {"^eval/": "eval_round", "": "steps"}
BEST = {"eval/return": "max", "loss": "min"}
STREAM: list[dict[str, Any]] = [
    {"steps": 1000, "loss": 0.5},
    {"steps": 2000, "loss": 0.25, "eval/return": 10.0, "eval_round": 1},
    {"steps": 3000, "loss": 0.375},
    {"eval/return": 9.0, "eval_round": 2},
]
LAST = {"steps": 3000.0, "loss": 0.375, "eval/return": 9.0, "eval_round": 2.0}
BEST_VALUES = {"best/loss": 0.25, "best/eval/return": 10.0}
BEST_STEPS = {"best/loss": 2000, "best/eval/return": 1}
"""The best of each key asked, and the step (on its own axis) it was reached at."""

CONFIG = {"lr": 0.001, "net": {"layers": [64, 64]}, "seed": 3, "algo": "ppo", "norm": True}


def write_all(sink: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped, skipped or changed
        for record in STREAM:
            sink.write(record)
        sink.close()


# -- TensorBoard: the hparams plugin ------------------------------------------------------------


def hparams_sessions(logdir: Path) -> Any:
    """What the HPARAMS tab shows for `logdir`: the hparams plugin's answer to a
    ListSessionGroups request, over TensorBoard's own event multiplexer."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    tb_context = base_plugin.TBContext(
        data_provider=provider, multiplexer=multiplexer, logdir=str(logdir)
    )
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0,
        slice_size=100,
        allowed_statuses=[
            api_pb2.STATUS_UNKNOWN,
            api_pb2.STATUS_SUCCESS,
            api_pb2.STATUS_FAILURE,
            api_pb2.STATUS_RUNNING,
        ],
    )
    handler = list_session_groups.Handler(
        context.RequestContext(), backend_context.Context(tb_context), "", request
    )
    return handler.run()


def hparam_values(group: Any) -> dict[str, Any]:
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in group.hparams.items()}


def metric_values(session: Any) -> dict[str, tuple[float, int]]:
    return {m.name.tag: (m.value, m.training_step) for m in session.metric_values}


def test_tensorboard_lists_the_run_with_its_config_last_values_and_bests(make: Any) -> None:
    from tensorboard.plugins.hparams import api_pb2

    sink = make("tensorboard", step_key=AXES, best=BEST)
    sink.log_config(CONFIG)
    write_all(sink)
    answer = hparams_sessions(Path(sink.logdir))
    [group] = answer.session_groups
    assert hparam_values(group) == {
        "lr": 0.001,
        "net/layers": "[64, 64]",  # what the plugin cannot hold, as JSON text
        "seed": 3.0,
        "algo": "ppo",
        "norm": True,
    }
    [session] = group.sessions
    assert session.status == api_pb2.STATUS_SUCCESS
    metrics = metric_values(session)
    assert metrics == {
        "steps": (3000.0, 3000),
        "loss": (0.375, 3000),
        "eval/return": (9.0, 2),
        "eval_round": (2.0, 2),
        "best/loss": (0.25, 2000),
        "best/eval/return": (10.0, 1),
    }


def test_tensorboard_config_logged_again_merges_and_counts_a_change(make: Any) -> None:
    sink = make("tensorboard", step_key="steps")
    sink.log_config({"lr": 0.1, "seed": 1})
    with pytest.warns(UserWarning, match="'lr' changed"):
        sink.log_config({"lr": 0.2, "gamma": 0.99})
    sink.write({"steps": 1, "loss": 1.0})
    sink.close()
    [group] = hparams_sessions(Path(sink.logdir)).session_groups
    assert hparam_values(group) == {"lr": 0.2, "seed": 1.0, "gamma": 0.99}
    assert sink.counts.by_key["overwritten"] == {"config/lr": 1}
    assert metric_values(group.sessions[0]) == {"steps": (1.0, 1), "loss": (1.0, 1)}


def test_a_graphs_log_config_reaches_tensorboard_as_hparams(make: Any) -> None:
    from pipeline import Pipeline

    sink = make("tensorboard", step_key="steps")
    pipeline = Pipeline().to(sink)
    pipeline.log_config({"opt": {"lr": 0.5}})
    pipeline.write({"steps": 1, "loss": 2.0})
    pipeline.close()
    [group] = hparams_sessions(Path(sink.logdir)).session_groups
    assert hparam_values(group) == {"opt/lr": 0.5}


def test_tensorboard_without_config_or_best_writes_no_hparams(make: Any) -> None:
    sink = make("tensorboard", step_key="steps")
    sink.write({"steps": 1, "loss": 2.0})
    sink.close()
    assert not hparams_sessions(Path(sink.logdir)).session_groups


# -- the other tools --------------------------------------------------------------------------


def test_mlflow_run_holds_the_last_values_and_the_best_as_metrics(make: Any) -> None:
    sink = make("mlflow", step_key=AXES, best=BEST)
    write_all(sink)
    metrics = sink.client.get_run(sink.run_id).data.metrics  # MLflow's latest value per metric
    assert metrics == {**LAST, **BEST_VALUES}
    points = read_mlflow(sink.tracking_uri, sink.run_id)
    for name, value in BEST_VALUES.items():
        assert points[name] == [(BEST_STEPS[name], value)]  # one point, where it was reached


def wandb_summary(run_dir: Path) -> dict[str, Any]:
    """The run's summary as W&B's transaction log leaves it (its updates applied in order)."""
    from wandb.proto.wandb_internal_pb2 import Record

    read_wandb(run_dir)  # once W&B's service has written the whole run
    summary: dict[str, Any] = {}
    for raw in wandb_records(wandb_file(run_dir).read_bytes()):
        record = Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
    return {name: value for name, value in summary.items() if not name.startswith("_")}


def test_wandb_summary_holds_the_last_values_and_the_best(make: Any) -> None:
    sink = make("wandb", step_key=AXES, best=BEST)
    write_all(sink)
    assert wandb_summary(sink.run_dir) == {**LAST, **BEST_VALUES}


@pytest.mark.parametrize("kind", ["neptune", "neptune-scale"])
def test_neptune_run_holds_the_best_under_summary(kind: str, make: Any) -> None:
    sink = make(kind, step_key=AXES, best=BEST)
    write_all(sink)
    run = read_classic(sink.data_dir) if kind == "neptune" else read_scale(sink.data_dir)
    assert {path: values[-1][1] for path, values in run.series.items()} == LAST
    assert {p: v for p, v in run.fields.items() if p.startswith("summary/")} == {
        "summary/best/loss": 0.25,
        "summary/best/eval/return": 10.0,
    }


@pytest.mark.parametrize("kind", ["tensorboard", "mlflow", "wandb", "neptune"])
def test_the_best_goes_on_after_a_restart(kind: str, make: Any) -> None:
    first = make(kind, step_key="steps", best={"loss": "min"})
    first.write({"steps": 1, "loss": 0.5})
    first.flush()
    state = first.node_state()
    first.close()
    second = make(kind, step_key="steps", best={"loss": "min"})
    second.load_node_state(state)
    second.write({"steps": 2, "loss": 0.75})
    second.close()
    assert second._best.values == {"loss": (0.5, 1)}


# -- Best, without a tool ---------------------------------------------------------------------

numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**6), 10**6)


@settings(deadline=None)  # a busy machine is not a failure
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), numbers | st.text(max_size=2))))
def test_best_is_the_max_and_min_of_the_numbers_sent_and_a_retry_changes_nothing(
    values: list[dict[str, Any]],
) -> None:
    rows = [(step, 0.0, row) for step, row in enumerate(values)]
    best = Best({"a": "max", "b": "min"}, lambda key: key)
    best.take(rows)
    best.take(rows)  # a retried push
    for name, pick in (("a", max), ("b", min)):
        seen = [
            (row[name], step)
            for step, row in enumerate(values)
            if name in row and not isinstance(row[name], str) and not math.isnan(row[name])
        ]
        if not seen:
            assert name not in best.values
            continue
        value = pick(v for v, _ in seen)
        first_step = next(step for v, step in seen if v == value)
        assert best.values[name] == (value, first_step)
    assert "c" not in best.values


@pytest.mark.parametrize("asked", [{"a": "best"}, {1: "max"}, ["a"]])
def test_best_takes_max_or_min_per_key(asked: Any) -> None:
    with pytest.raises(ValueError, match="best"):
        Best(asked, str)
