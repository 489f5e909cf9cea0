"""RLlib episodes: each episode an EnvRunner finishes reaches the pipeline as one record, with
the return and length RLlib itself reports for it, and the metrics the user adds.

RLlib takes a while to import and to build an EnvRunner (its RLModule) on a shared 2-core
machine, so every test that runs RLlib is marked slow; each builds at most one EnvRunner or
one algorithm.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import subprocess
import sys
import warnings
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import cloudpickle
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.tune.trainable import trainable

from pipeline import Pipeline
from pipeline.integrations import rllib, rllib_episodes
from pipeline.integrations.ray import Hub
from pipeline.integrations.rllib import EpisodeCallback
from sinks import CsvSink, JsonlSink, MemorySink


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
    with pytest.raises(ValueError, match=r"per_iteration .* Ray Hub only"):
        EpisodeCallback.to(Pipeline().to(MemorySink()), per_iteration=True)


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
    monkeypatch.setattr(rllib_episodes, "_PIPELINES", {})  # another process: no such pipeline there
    with pytest.raises(RuntimeError, match="pass a factory"):
        copy.pipeline()


@pytest.mark.slow
def test_importing_the_tune_adapter_does_not_import_rllib_until_episode_callback_is_used() -> None:
    script = (
        "import sys\n"
        "import pipeline.integrations.rllib as rllib\n"
        "print(any(name.startswith('ray.rllib') for name in sys.modules))\n"
        "from pipeline.integrations.rllib import EPISODE_KEYS, EpisodeCallback\n"
        "from pipeline.integrations import rllib_episodes\n"
        "print(EpisodeCallback is rllib_episodes.EpisodeCallback, len(EPISODE_KEYS))\n"
        "print('ray.rllib.callbacks.callbacks' in sys.modules)\n"
    )
    root = str(Path(__file__).resolve().parents[2])  # this checkout's packages
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=600,
    )
    assert done.stdout.split() == ["False", "True", "5", "True"]
    with pytest.raises(AttributeError, match="no_such_name"):
        rllib.no_such_name  # noqa: B018 - the module's lazy __getattr__ still refuses unknowns


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


# -- every EnvRunner into one pipeline, through a Ray hub ---------------------------------------

ITERATION_STATS = ("mean", "std", "min", "max", "count")


def central(folder: Path) -> Pipeline:
    """The hub's pipeline: every episode as it came (JSON Lines), and per window the statistics
    of the returns over all EnvRunners. Built inside the hub actor."""
    return Pipeline("episodes").to(
        JsonlSink(folder / "episodes.jsonl"),
        Pipeline("iterations").aggregate(r"episode_return", stats=ITERATION_STATS).to(MemorySink()),
    )


def aggregate_rows(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The rows the central pipeline's aggregate emitted (run inside the hub actor)."""
    (memory,) = [node for node in pipeline.nodes() if isinstance(node, MemorySink)]
    return list(memory.records)


def returns_to(folder: Path) -> type[RLlibCallback]:
    """A plain RLlib callback, independent of rlpipe: in each EnvRunner it appends the return of
    every finished episode, as RLlib sums it over the episode's chunks, to `<worker_index>.txt`."""

    class ReturnsToFile(RLlibCallback):
        def on_episode_end(
            self,
            *,
            episode: Any,
            prev_episode_chunks: list[Any] | None = None,
            env_runner: Any = None,
            **kwargs: Any,
        ) -> None:
            total = episode.get_return() + sum(c.get_return() for c in prev_episode_chunks or ())
            with (folder / f"{env_runner.worker_index}.txt").open("a") as handle:
                handle.write(f"{float(total)!r}\n")

    return ReturnsToFile


def returns_seen(folder: Path) -> dict[int, list[float]]:
    """What the plain callback wrote so far: each EnvRunner's episode returns, in order."""
    return {
        int(path.stem): [float(line) for line in path.read_text().split()]
        for path in sorted(folder.glob("*.txt"))
    }


@pytest.mark.slow
def test_a_hub_that_is_gone_does_not_stop_training_its_flushes_are_counted(
    ray_session: Path, tmp_path: Path
) -> None:
    hub = Hub(functools.partial(central, tmp_path))
    Episodes = EpisodeCallback.to(hub)
    in_the_algorithm = Episodes()  # the instance RLlib makes in the Algorithm's process
    in_the_algorithm.on_train_result(result={})  # the hub is up: its windows are cut
    hub.close()

    with pytest.warns(RuntimeWarning, match="could not flush the hub"):
        in_the_algorithm.on_train_result(result={})
    in_the_algorithm.on_train_result(result={})  # warned once, counted each time

    assert Episodes.counts["unflushed"] == 2


@pytest.mark.slow
def test_ppo_with_two_env_runners_gets_the_exact_mean_over_all_episodes_through_a_hub(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trainable, "DEFAULT_STORAGE_PATH", str(tmp_path / "ray_results"))
    seen = tmp_path / "seen"
    seen.mkdir()
    hub = Hub(functools.partial(central, tmp_path))
    Episodes = EpisodeCallback.to(hub)
    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=2, num_envs_per_env_runner=1)
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=1)
        .debugging(seed=0)
        .callbacks([returns_to(seen), Episodes])
    )
    algorithm = config.build_algo()
    results: list[dict[str, Any]] = []  # RLlib's env_runners results, one per iteration
    slices: list[dict[int, tuple[int, int]]] = []  # each iteration's episodes, per EnvRunner
    done: dict[int, int] = defaultdict(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for _ in range(3):
            results.append(algorithm.train()["env_runners"])
            now = {worker: len(returns) for worker, returns in returns_seen(seen).items()}
            slices.append({worker: (done[worker], end) for worker, end in now.items()})
            done.update(now)
    rows = hub.call(aggregate_rows)
    Episodes.close(algorithm)
    algorithm.stop()
    status = hub.close()

    seen_returns = returns_seen(seen)  # every episode's return, as RLlib computed it
    assert set(seen_returns) == {1, 2}
    finished = sum(len(returns) for returns in seen_returns.values())
    assert finished == results[-1]["num_episodes_lifetime"]

    # every episode reached the hub once, each EnvRunner's in its order; the counts reconcile
    with (tmp_path / "episodes.jsonl").open() as handle:
        stored = [json.loads(line) for line in handle]
    for worker, returns in seen_returns.items():
        assert [r["episode_return"] for r in stored if r["worker_index"] == worker] == returns
    assert status is not None and status.failures == []
    assert sorted(s.tags["worker_index"] for s in status.streams.values()) == [1, 2]
    assert all(stream.ended for stream in status.streams.values())
    counted = status.lost + status.missing + sum(s.failed for s in status.streams.values())
    assert finished == len(stored) + counted == status.written == status.records
    assert counted == 0

    # one row per iteration: the statistics over exactly its episodes, of all EnvRunners
    assert len(rows) == len(results) == 3
    for row, result, cut in zip(rows, results, slices, strict=True):
        per_runner = [seen_returns[w][start:end] for w, (start, end) in sorted(cut.items())]
        returns = np.concatenate([np.asarray(r, dtype=float) for r in per_runner])
        assert row["episode_return_count"] == len(returns) == result["num_episodes"] > 0
        mean, std = float(returns.mean()), float(returns.std())  # numpy over all episodes
        assert row["episode_return_mean"] == pytest.approx(mean, rel=1e-12, abs=0)
        assert row["episode_return_std"] == pytest.approx(std, rel=1e-12, abs=1e-12)
        assert row["episode_return_min"] == returns.min() == result["episode_return_min"]
        assert row["episode_return_max"] == returns.max() == result["episode_return_max"]
        # RLlib's own mean: each EnvRunner's mean over its episodes, then the unweighted mean
        # of those means (its MeanStats merge), which is not the mean over the episodes
        # whenever the EnvRunners finished different numbers of episodes with different means
        means = [float(np.mean(r)) for r in per_runner]
        assert result["episode_return_mean"] == pytest.approx(float(np.mean(means)), rel=1e-12)
        (n1, n2), (m1, m2) = [len(r) for r in per_runner], means
        if (n1 - n2) * (m1 - m2) != 0:
            assert abs(result["episode_return_mean"] - row["episode_return_mean"]) > 1e-9
