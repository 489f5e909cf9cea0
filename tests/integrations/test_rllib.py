"""Ray Tune / RLlib adapter: each trial's nested results reach its own pipeline as floats."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import LoggerCallback

from pipeline import Pipeline
from pipeline.integrations.rllib import PipelineCallback, flatten_result
from sinks import CsvSink, MemorySink

# -- flatten_result: the rule, without Ray running -----------------------------------------


def test_nested_mappings_become_slash_keys_and_numbers_become_floats() -> None:
    result = {
        "loss": np.float32(0.25),
        "episode": {"return": {"mean": 1.5, "max": np.float64(3.0)}, "len": np.array(7)},
        "grad": torch.tensor(0.5),
        "done": True,
        "count": 3,
    }

    flat = flatten_result(result)

    assert flat.numbers == {
        "count": 3.0,
        "done": 1.0,
        "episode/len": 7.0,
        "episode/return/max": 3.0,
        "episode/return/mean": 1.5,
        "grad": 0.5,
        "loss": 0.25,
    }
    assert all(type(value) is float for value in flat.numbers.values())
    assert flat.dropped == {}


def test_non_numeric_leaves_are_dropped_and_reported() -> None:
    histogram = [1.0, 2.0, 3.0]
    result = {
        "note": "text",
        "missing": None,
        "stats": {"hist": histogram, "pair": (1, 2), "vector": np.ones(3), "ok": 1.0},
    }

    flat = flatten_result(result)

    assert flat.numbers == {"stats/ok": 1.0}
    assert set(flat.dropped) == {"note", "missing", "stats/hist", "stats/pair", "stats/vector"}
    assert flat.dropped["stats/hist"] is histogram  # a sequence is one leaf, not descended


def test_nan_and_inf_are_numbers_and_kept() -> None:
    flat = flatten_result({"a": float("nan"), "b": np.float32("inf")})

    assert math.isnan(flat.numbers["a"]) and flat.numbers["b"] == math.inf


def test_keys_that_are_not_strings_are_named_by_their_text() -> None:
    flat = flatten_result({"policies": {0: {"loss": 1.0}, "main": {"loss": 2.0}}})

    assert flat.numbers == {"policies/0/loss": 1.0, "policies/main/loss": 2.0}


def test_keys_keep_the_results_order_and_may_mix_types() -> None:
    result = {"zeta": 1.0, "alpha": {2: 2.0, "b": 3.0, 1: 4.0}, ("t", 1): 5.0, "mid": 6.0}

    flat = flatten_result(result)

    assert list(flat.numbers) == ["zeta", "alpha/2", "alpha/b", "alpha/1", "('t', 1)", "mid"]
    assert flat.collisions == []


def test_two_paths_giving_one_name_are_reported_and_the_later_wins() -> None:
    result = {
        "a/b": 1.0,
        "a": {"b": 2.0, "c": 3.0},
        7: 4.0,
        "7": 5.0,
        "config/x": 0,
        "config": {"x": 1},
    }

    flat = flatten_result(result)

    assert flat.numbers == {"a/b": 1.0, "a/c": 3.0, "7": 4.0}
    assert flat.collisions == ["a/b", "7"]  # config/x is excluded: not asked for


def test_an_empty_mapping_holds_nothing_to_drop() -> None:
    flat = flatten_result({"info": {}, "x": {"learner": {}}, "y": 1})

    assert flat.numbers == {"y": 1.0} and flat.dropped == {}


def test_config_is_excluded_by_default_and_keep_selects_prefixes() -> None:
    result = {
        "config": {"lr": 0.1},
        "env_runners": {"episode_return_mean": 10.0, "episode_len_mean": 20.0},
        "env": 1.0,
        "learners": {"default_policy": {"total_loss": 0.5, "entropy": 0.7}},
        "timers": {"sample": 0.1},
    }

    assert "config/lr" not in flatten_result(result).numbers
    assert flatten_result(result, exclude=()).numbers["config/lr"] == 0.1
    kept = flatten_result(
        result, keep=["env", "learners/default_policy/total_loss"], exclude=["timers"]
    )
    # "env" keeps the key "env" and keys under "env/", not "env_runners/..."
    assert kept.numbers == {"env": 1.0, "learners/default_policy/total_loss": 0.5}
    assert kept.dropped == {}


def test_flatten_joins_with_the_separator_given() -> None:
    assert flatten_result({"a": {"b": 1}}, sep=".").numbers == {"a.b": 1.0}


# -- PipelineCallback driven by Tune's callback calls, on real (stub) Trials ---------------


def make_trial(trial_id: str) -> Trial:
    return Trial("train", config={"lr": 0.1}, stub=True, trial_id=trial_id)


class Pipelines:
    """A factory that makes a MemorySink-backed pipeline per trial and keeps the sinks."""

    def __init__(self) -> None:
        self.sinks: dict[str, MemorySink] = {}

    def __call__(self, trial_name: str) -> Pipeline:
        self.sinks[trial_name] = MemorySink()
        return Pipeline(trial_name).to(self.sinks[trial_name])


def test_callback_is_a_real_tune_logger_callback() -> None:
    assert issubclass(PipelineCallback, LoggerCallback)


def test_step_is_the_results_training_iteration_not_tunes_iteration() -> None:
    pipelines = Pipelines()
    callback = PipelineCallback(pipelines)
    trial = make_trial("t1")

    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for tune_iteration, training_iteration in [(17, 1), (23, 2), (40, 3)]:
        result = {"training_iteration": training_iteration, "r": {"mean": 0.5}}
        callback.on_trial_result(tune_iteration, [trial], trial, result)

    records = pipelines.sinks["train_t1"].records
    assert records == [{"training_iteration": i, "r/mean": 0.5} for i in (1, 2, 3)]
    assert all(type(record["training_iteration"]) is int for record in records)


def test_the_trials_config_reaches_the_sinks_as_config_not_as_metrics() -> None:
    pipelines = Pipelines()
    callback = PipelineCallback(pipelines)
    config = {"lr": 0.1, "model": {"fcnet_hiddens": [64, 64]}}
    trial = Trial("train", config=config, stub=True, trial_id="c")

    callback.on_trial_start(0, [trial], trial)
    callback.on_trial_result(1, [trial], trial, {"training_iteration": 1, "config": config})

    sink = pipelines.sinks["train_c"]
    assert sink.config == {"lr": 0.1, "model/fcnet_hiddens": [64, 64]}
    assert sink.records == [{"training_iteration": 1}]


def test_a_result_without_training_iteration_is_counted() -> None:
    pipelines = Pipelines()
    callback = PipelineCallback(pipelines)
    trial = make_trial("t1")

    callback.on_trial_result(5, [trial], trial, {"x": 1})
    callback.on_trial_result(9, [trial], trial, {"x": 2})

    assert pipelines.sinks["train_t1"].column("training_iteration") == [1, 2]


def test_each_trial_gets_its_own_pipeline_closed_when_the_trial_ends() -> None:
    pipelines = Pipelines()
    callback = PipelineCallback(pipelines)
    done, failed, running = make_trial("a"), make_trial("b"), make_trial("c")

    for trial in (done, failed, running):
        callback.on_trial_start(0, [], trial)
        callback.on_trial_result(1, [], trial, {"training_iteration": 1, "id": ord(trial.trial_id)})
    callback.on_trial_complete(2, [], done)
    callback.on_trial_error(2, [], failed)

    sinks = pipelines.sinks
    assert [sinks[f"train_{name}"].column("id") for name in "abc"] == [[97.0], [98.0], [99.0]]
    assert sinks["train_a"].closed and sinks["train_b"].closed
    assert not sinks["train_c"].closed
    callback.on_experiment_end(trials=[done, failed, running])
    assert sinks["train_c"].closed


def test_a_restored_trial_gets_a_new_pipeline_at_its_first_result() -> None:
    made: list[str] = []

    def factory(name: str) -> Pipeline:
        made.append(name)
        return Pipeline(name).to(MemorySink())

    callback = PipelineCallback(factory)
    trial = make_trial("r")
    callback.on_trial_start(0, [], trial)
    callback.on_trial_error(1, [], trial)
    callback.on_trial_result(2, [], trial, {"training_iteration": 2})

    assert made == ["train_r", "train_r"]


def test_dropped_keys_are_counted_and_warned_about_once_except_tunes_text_fields() -> None:
    callback = PipelineCallback(Pipelines())
    trial = make_trial("w")
    result = {"training_iteration": 1, "hostname": "vm", "date": "today", "tag": "x", "v": 1}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_trial_result(1, [], trial, result)
        callback.on_trial_result(2, [], trial, {**result, "training_iteration": 2})

    messages = [str(warning.message) for warning in caught if "rlpipe" in str(warning.message)]
    assert len(messages) == 1 and "'tag'" in messages[0]
    assert callback.dropped == {"date": 2, "hostname": 2, "tag": 2}
    assert callback.counts["dropped"] == 6


def test_colliding_keys_are_counted_and_warned_about_once() -> None:
    pipelines = Pipelines()
    callback = PipelineCallback(pipelines)
    trial = make_trial("c")
    result = {"training_iteration": 1, "r/mean": 1.0, "r": {"mean": 2.0}}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_trial_result(1, [], trial, result)
        callback.on_trial_result(2, [], trial, {**result, "training_iteration": 2})

    messages = [str(w.message) for w in caught if "'r/mean'" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith("rlpipe")
    assert callback.counts["overwritten"] == 2
    assert callback.counts.by_key["overwritten"] == {"r/mean": 2}
    assert pipelines.sinks["train_c"].column("r/mean") == [1.0, 1.0]  # the earlier kept
    assert callback.dropped == {}


def test_callback_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="factory"):
        PipelineCallback("not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep"):
        PipelineCallback(Pipelines(), keep=[""])
    with pytest.raises(ValueError, match="sep"):
        PipelineCallback(Pipelines(), sep="")
    callback = PipelineCallback(lambda name: "no pipeline")  # type: ignore[arg-type,return-value]
    trial = make_trial("x")
    with pytest.raises(TypeError, match="must return an rlpipe Pipeline"):
        callback.on_trial_start(0, [], trial)


# -- real Tune runs ------------------------------------------------------------------------


@pytest.fixture
def ray_in_tmp(ray_session: Path, tmp_path: Path) -> Path:
    """The test run's local Ray (tests/conftest.py); a results dir under tmp_path."""
    return tmp_path / "results"


def nested_reporter(config: dict[str, Any]) -> None:
    """A function trainable reporting nested metrics of every kind, three times."""
    for i in range(1, 4):
        tune.report(
            {
                "loss": np.float32(1.0 / i),
                "episode": {
                    "return": {"mean": config["lr"] * i, "max": np.float64(10.0 * i)},
                    "len": np.array(i + 5),
                },
                "note": "text",
                "hist": [1.0, 2.0, 3.0],
            }
        )


@pytest.mark.slow
def test_a_tune_run_sends_each_trials_flattened_results_to_its_pipeline(
    ray_in_tmp: Path, tmp_path: Path
) -> None:
    everything = Pipelines()
    returns = Pipelines()

    def to_csv(trial_name: str) -> Pipeline:
        return Pipeline(trial_name).to(CsvSink(tmp_path / f"{trial_name}.csv"))

    tuner = tune.Tuner(
        nested_reporter,
        param_space={"lr": tune.grid_search([0.5, 2.0])},
        tune_config=tune.TuneConfig(trial_name_creator=lambda trial: f"lr={trial.config['lr']}"),
        run_config=tune.RunConfig(
            name="nested",
            storage_path=str(ray_in_tmp),
            verbose=0,
            callbacks=[
                PipelineCallback(everything),
                PipelineCallback(returns, keep=["episode/return"]),
                PipelineCallback(to_csv),
            ],
        ),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = tuner.fit()

    assert not results.errors
    assert sorted(everything.sinks) == ["lr=0.5", "lr=2.0"]
    for name, lr in [("lr=0.5", 0.5), ("lr=2.0", 2.0)]:
        sink = everything.sinks[name]
        assert sink.closed  # closed at the trial's end
        assert sink.column("training_iteration") == [1, 2, 3]
        assert sink.column("loss") == [1.0, 0.5, float(np.float32(1.0 / 3))]
        assert sink.column("episode/return/mean") == [lr, 2 * lr, 3 * lr]
        assert sink.column("episode/return/max") == [10.0, 20.0, 30.0]
        assert sink.column("episode/len") == [6.0, 7.0, 8.0]
        assert all(type(value) is float for value in sink.column("time_total_s"))
        assert {"note", "hist", "config/lr", "hostname"}.isdisjoint(sink.records[0])
        assert returns.sinks[name].records == [
            {
                "training_iteration": i,
                "episode/return/max": 10.0 * i,
                "episode/return/mean": lr * i,
            }
            for i in (1, 2, 3)
        ]
        assert json.loads((tmp_path / f"{name}.csv.config.json").read_text()) == {"lr": lr}
        with (tmp_path / f"{name}.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [float(row["episode/return/mean"]) for row in rows] == [lr, 2 * lr, 3 * lr]
    warned = {str(w.message) for w in caught if str(w.message).startswith("rlpipe")}
    assert any("'note'" in message for message in warned)
    assert any("'hist'" in message for message in warned)


@pytest.mark.slow
def test_one_rllib_ppo_iteration_reaches_the_pipeline(ray_in_tmp: Path) -> None:
    from ray.rllib.algorithms.ppo import PPO, PPOConfig

    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=0)
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=1)
        .debugging(seed=0)
    )
    pipelines = Pipelines()
    callback = PipelineCallback(pipelines, keep=["env_runners", "learners/default_policy"])
    tuner = tune.Tuner(
        PPO,  # the class, not "PPO": Tune's name registry imports every algorithm
        param_space=config,  # type: ignore[arg-type]  # Tune takes an AlgorithmConfig too
        run_config=tune.RunConfig(
            name="ppo",
            storage_path=str(ray_in_tmp),
            stop={"training_iteration": 1},
            verbose=0,
            callbacks=[callback],
        ),
    )

    results = tuner.fit()

    assert not results.errors
    (sink,) = pipelines.sinks.values()
    (record,) = sink.records
    assert sink.closed
    assert record["training_iteration"] == 1
    assert record["env_runners/num_env_steps_sampled"] == 256.0
    assert 8.0 <= record["env_runners/episode_return_mean"] <= 256.0
    assert math.isfinite(record["learners/default_policy/total_loss"])
    assert all(
        key.split("/")[0] in {"training_iteration", "env_runners", "learners"} for key in record
    )
    assert all(type(value) is float for key, value in record.items() if key != "training_iteration")
