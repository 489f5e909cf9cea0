"""RLlib episodes: each episode an EnvRunner finishes reaches the pipeline as one record, with
the return and length RLlib itself reports for it, and the metrics the user adds.

RLlib takes a while to import and to build an EnvRunner (its RLModule) on a shared 2-core
machine, so every test that runs RLlib is marked slow; each builds at most one EnvRunner or
one algorithm.
"""

from __future__ import annotations

import csv
import warnings
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from ray import cloudpickle
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.tune.trainable import trainable

from pipeline import Pipeline
from pipeline.integrations import rllib
from pipeline.integrations.rllib import EpisodeCallback
from sinks import CsvSink, MemorySink


class CountsSteps(RLlibCallback):
    """The user's own callback, in RLlib's documented idiom: it keeps a per-episode value in
    `episode.custom_data` (here the number of steps it saw)."""

    def on_episode_start(self, *, episode: Any, **kwargs: Any) -> None:
        episode.custom_data["steps_seen"] = 0

    def on_episode_step(self, *, episode: Any, **kwargs: Any) -> None:
        episode.custom_data["steps_seen"] += 1


def steps_seen(episode: Any) -> Mapping[str, Any]:
    return {"steps_seen": episode.custom_data["steps_seen"]}


def cartpole(num_envs: int = 3) -> PPOConfig:
    return (
        PPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs)
        .debugging(seed=0)
    )


def full_episodes(chunks: list[Any]) -> list[tuple[float, int]]:
    """(return, length) of every finished episode among `chunks` (what `sample()` returned),
    summed over its chunks as RLlib's `get_metrics` does, sorted."""
    returns: dict[str, float] = defaultdict(float)
    lengths: dict[str, int] = defaultdict(int)
    for chunk in chunks:
        returns[chunk.id_] += chunk.get_return()
        lengths[chunk.id_] += len(chunk)
    done = {chunk.id_ for chunk in chunks if chunk.is_done}
    return sorted((returns[id_], lengths[id_]) for id_ in done)


def reduced(metrics: Mapping[str, Any], name: str) -> float:
    return float(metrics[name].peek())


# -- one EnvRunner, sampled in short chunks --------------------------------------------------


@pytest.mark.slow
def test_each_finished_episode_is_one_record_with_its_chunks_summed() -> None:
    plain, custom = MemorySink(), MemorySink()
    config = cartpole(num_envs=3).callbacks(
        [
            CountsSteps,
            EpisodeCallback.to(Pipeline().to(plain)),
            EpisodeCallback.to(Pipeline().to(custom), metrics=steps_seen),
        ]
    )
    runner = SingleAgentEnvRunner(config=config, worker_index=0)
    chunks: list[Any] = []
    for _ in range(40):  # 10 steps per call: episodes run over several chunks
        chunks += runner.sample(num_timesteps=10, random_actions=True)
    metrics = runner.get_metrics()
    runner.stop()

    records = plain.records
    assert len(records) == metrics["num_episodes"].peek() > 5
    assert sorted((r["episode_return"], r["episode_length"]) for r in records) == full_episodes(
        chunks
    )
    assert any(r["episode_length"] > 10 for r in records)  # some spanned several chunks
    # what RLlib itself reports over the same episodes
    returns = [r["episode_return"] for r in records]
    lengths = [r["episode_length"] for r in records]
    assert reduced(metrics, "episode_return_mean") == pytest.approx(sum(returns) / len(returns))
    assert reduced(metrics, "episode_return_min") == min(returns)
    assert reduced(metrics, "episode_return_max") == max(returns)
    assert reduced(metrics, "episode_len_max") == max(lengths)
    durations = [r["episode_duration_s"] for r in records]
    assert reduced(metrics, "episode_duration_sec_mean") == pytest.approx(
        sum(durations) / len(durations)
    )
    assert list(records[0]) == [
        "episode_return",
        "episode_length",
        "episode_duration_s",
        "env_index",
        "worker_index",
    ]
    assert {r["env_index"] for r in records} == {0, 1, 2}
    assert {r["worker_index"] for r in records} == {0}
    assert all(type(r["episode_return"]) is float for r in records)
    assert all(type(r["episode_length"]) is int for r in records)
    # the user's metric, kept in custom_data over all the chunks, follows the built-in keys
    assert [{k: v for k, v in r.items() if k != "steps_seen"} for r in custom.records] == records
    assert [r["steps_seen"] for r in custom.records] == lengths


@pytest.mark.slow
def test_metrics_clashing_with_the_built_in_keys_are_counted_and_bad_results_raise() -> None:
    sink = MemorySink()

    def clashing(episode: Any) -> Mapping[str, Any]:
        return {"episode_return": -1.0, "env_index": 99, "own": 1}

    Clashing = EpisodeCallback.to(Pipeline().to(sink), metrics=clashing)

    def not_a_mapping(episode: Any) -> Any:
        return [1, 2]

    Refused = EpisodeCallback.to(Pipeline().to(MemorySink()), metrics=not_a_mapping)
    runner = SingleAgentEnvRunner(config=cartpole(num_envs=1).callbacks(Clashing))

    with pytest.warns(RuntimeWarning, match="'episode_return'|'env_index'"):
        runner.sample(num_episodes=2, random_actions=True)

    assert len(sink.records) == 2
    assert all(r["episode_return"] > 0 and r["env_index"] == 0 for r in sink.records)
    assert [r["own"] for r in sink.records] == [1, 1]
    assert Clashing.counts.by_key["overwritten"] == {"episode_return": 2, "env_index": 2}
    runner.stop()

    runner = SingleAgentEnvRunner(config=cartpole(num_envs=1).callbacks(Refused))
    with pytest.raises(TypeError, match="must return a mapping"):
        runner.sample(num_episodes=1, random_actions=True)
    runner.stop()


@pytest.mark.slow
def test_evaluation_episodes_go_only_to_the_evaluation_callback() -> None:
    training, evaluation = MemorySink(), MemorySink()
    config = cartpole(num_envs=2).callbacks(
        [
            EpisodeCallback.to(Pipeline().to(training)),
            EpisodeCallback.to(Pipeline().to(evaluation), evaluation=True),
        ]
    )
    evaluation_config = config.evaluation(evaluation_interval=1).get_evaluation_config_object()
    assert evaluation_config is not None and evaluation_config.in_evaluation
    runner = SingleAgentEnvRunner(config=evaluation_config)

    runner.sample(num_episodes=3, random_actions=True)
    runner.stop()

    assert training.records == []
    assert len(evaluation.records) == 3


@pytest.mark.slow
def test_a_factory_makes_one_pipeline_per_env_runner_at_its_first_episode(tmp_path: Path) -> None:
    made: list[int] = []

    def make(worker_index: int) -> Pipeline:
        made.append(worker_index)
        return Pipeline(f"runner-{worker_index}").to(CsvSink(tmp_path / f"{worker_index}.csv"))

    Episodes = EpisodeCallback.to(make)
    runner = SingleAgentEnvRunner(config=cartpole(num_envs=2).callbacks(Episodes), worker_index=0)
    assert made == []  # nothing made before an episode ends (the Algorithm's instance makes none)

    runner.sample(num_episodes=4, random_actions=True)
    runner.sample(num_episodes=2, random_actions=True)
    pipeline = Episodes.pipeline(0)
    Episodes.close()
    runner.stop()

    assert made == [0]
    assert pipeline.closed
    with (tmp_path / "0.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert all(float(row["episode_return"]) == int(row["episode_length"]) for row in rows)


# -- the API without running RLlib ------------------------------------------------------------


def test_the_unbound_class_refuses_to_be_instantiated_and_to_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match=r"EpisodeCallback\.to\("):
        EpisodeCallback()
    with pytest.raises(ValueError, match="pipeline"):
        EpisodeCallback.to("not a pipeline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metrics"):
        EpisodeCallback.to(Pipeline().to(MemorySink()), metrics="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="evaluation"):
        EpisodeCallback.to(Pipeline().to(MemorySink()), evaluation="yes")  # type: ignore[arg-type]


def test_a_bound_class_is_an_rllib_callback_class_named_like_its_base() -> None:
    pipeline = Pipeline().to(MemorySink())
    Episodes = EpisodeCallback.to(pipeline)

    assert issubclass(Episodes, EpisodeCallback) and issubclass(Episodes, RLlibCallback)
    assert Episodes.__qualname__ == "EpisodeCallback"  # RLlib serializes callbacks by name
    assert Episodes.pipeline() is pipeline
    assert isinstance(Episodes(), RLlibCallback)
    Episodes.close()  # a pipeline it was given belongs to the caller: left open
    assert not pipeline.closed


def test_a_bound_class_pickles_without_its_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = MemorySink()
    Episodes = EpisodeCallback.to(Pipeline().to(sink))

    copy = cloudpickle.loads(cloudpickle.dumps(Episodes))  # what ray.put does to the config

    assert copy.pipeline() is Episodes.pipeline()  # the same pipeline, in this process
    monkeypatch.setattr(rllib, "_PIPELINES", {})  # another process: no such pipeline there
    with pytest.raises(RuntimeError, match="pass a factory"):
        copy.pipeline()


# -- a real PPO run ----------------------------------------------------------------------------


@pytest.mark.slow
def test_ppo_episodes_equal_the_episodes_rllib_reports(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an Algorithm outside Tune makes an empty log folder under ~/ray_results: keep it in tmp
    monkeypatch.setattr(trainable, "DEFAULT_STORAGE_PATH", str(tmp_path / "ray_results"))
    memory = MemorySink()
    pipeline = Pipeline("episodes").to(CsvSink(tmp_path / "episodes.csv"), memory)
    config = (
        cartpole(num_envs=2)
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=1)
        .callbacks([CountsSteps, EpisodeCallback.to(pipeline, metrics=steps_seen)])
    )
    algorithm = config.build_algo()
    iterations: list[tuple[dict[str, Any], int]] = []  # (env_runners results, records so far)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for _ in range(2):
            iterations.append((algorithm.train()["env_runners"], len(memory.records)))
    algorithm.stop()
    pipeline.close()

    records = memory.records
    assert len(records) == iterations[-1][1] == iterations[-1][0]["num_episodes_lifetime"]
    start = 0
    for result, end in iterations:
        # each iteration's statistics are over the episodes it finished: the records it added
        returns = [r["episode_return"] for r in records[start:end]]
        lengths = [r["episode_length"] for r in records[start:end]]
        assert result["num_episodes"] == len(returns) > 0
        assert result["episode_return_mean"] == pytest.approx(sum(returns) / len(returns))
        assert result["episode_return_min"] == min(returns)
        assert result["episode_return_max"] == max(returns)
        start = end
    returns = [r["episode_return"] for r in records]
    lengths = [r["episode_length"] for r in records]
    # the lengths are the steps each episode took: CartPole pays 1.0 per step, and the user's
    # own callback counted the steps. (RLlib's episode_len_mean is not compared: it counts one
    # step more for an episode cut between iterations, see EpisodeCallback.)
    assert lengths == returns
    assert [r["steps_seen"] for r in records] == lengths
    with (tmp_path / "episodes.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["episode_return"]) for row in rows] == returns
    assert [int(row["episode_length"]) for row in rows] == lengths
