"""SB3 episodes: every episode Monitor records reaches the pipeline as one record, as Monitor
wrote it to its own monitor.csv."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor, load_results
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from pipeline import Pipeline
from pipeline.integrations.sb3 import EpisodeCallback
from sinks import CsvSink, MemorySink


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The CI machine has 2 shared cores: SB3's small MLPs train fastest on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Tagged(gym.Wrapper[Any, Any, Any, Any]):
    """Puts two fields in every step's info: `level` (3) and `timesteps` (-1), a name that
    clashes with the callback's step key."""

    def step(self, action: Any) -> Any:
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, terminated, truncated, {**info, "level": 3, "timesteps": -1}


def short_cartpole(steps: int, monitor: Path | None = None, **monitor_options: Any) -> Any:
    """A CartPole cut at `steps` steps (it cannot fall that soon: every episode lasts exactly
    `steps`), in a Monitor writing `monitor` (no file when None)."""

    def make() -> gym.Env[Any, Any]:
        env = gym.make("CartPole-v1", max_episode_steps=steps)
        return Monitor(env, None if monitor is None else str(monitor), **monitor_options)

    return make


def monitor_rows(path: Path) -> list[dict[str, str]]:
    """The episode rows of a Monitor file (after its `#{"t_start": ...}` line)."""
    with path.open(newline="") as handle:
        assert handle.readline().startswith("#")
        return list(csv.DictReader(handle))


def tiny_ppo(env: Any, n_steps: int, seed: int = 0) -> PPO:
    return PPO("MlpPolicy", env, n_steps=n_steps, batch_size=n_steps, n_epochs=1, seed=seed)


# -- several episodes ending in one vectorized step -----------------------------------------


def test_episodes_ending_in_one_step_give_one_record_each(tmp_path: Path) -> None:
    envs = DummyVecEnv([short_cartpole(3, tmp_path / str(i)) for i in range(3)])
    sink = MemorySink()
    model = tiny_ppo(envs, n_steps=6)

    model.learn(total_timesteps=18, callback=EpisodeCallback(Pipeline().to(sink)))

    # every env ends an episode at vectorized steps 3 and 6: three records per step, in env order
    assert [(r["timesteps"], r["env_index"]) for r in sink.records] == [
        (9, 0),
        (9, 1),
        (9, 2),
        (18, 0),
        (18, 1),
        (18, 2),
    ]
    assert all(r["episode_return"] == 3.0 and r["episode_length"] == 3 for r in sink.records)
    assert list(sink.records[0]) == [
        "timesteps",
        "episode_return",
        "episode_length",
        "episode_time",
        "env_index",
    ]
    for i in range(3):
        rows = monitor_rows(tmp_path / f"{i}.monitor.csv")
        ours = [r for r in sink.records if r["env_index"] == i]
        assert [float(row["t"]) for row in rows] == [r["episode_time"] for r in ours]


def test_a_vec_monitor_gives_the_same_records_as_its_file(tmp_path: Path) -> None:
    def make() -> gym.Env[Any, Any]:
        return gym.make("CartPole-v1", max_episode_steps=4)

    envs = VecMonitor(DummyVecEnv([make, make]), str(tmp_path / "vec"))
    sink = MemorySink()

    tiny_ppo(envs, n_steps=8).learn(
        total_timesteps=16, callback=EpisodeCallback(Pipeline().to(sink))
    )

    rows = monitor_rows(tmp_path / "vec.monitor.csv")
    assert [
        (r["episode_return"], r["episode_length"], r["episode_time"]) for r in sink.records
    ] == [(float(row["r"]), int(row["l"]), float(row["t"])) for row in rows]
    assert [r["env_index"] for r in sink.records] == [0, 1, 0, 1]
    assert [r["timesteps"] for r in sink.records] == [8, 8, 16, 16]


def test_monitor_info_keywords_are_kept_and_a_clash_with_the_step_key_is_counted(
    tmp_path: Path,
) -> None:
    def make() -> gym.Env[Any, Any]:
        env = Tagged(gym.make("CartPole-v1", max_episode_steps=2))
        return Monitor(env, info_keywords=("level", "timesteps"))

    sink = MemorySink()
    callback = EpisodeCallback(Pipeline().to(sink))

    with pytest.warns(RuntimeWarning, match="'timesteps'"):
        tiny_ppo(DummyVecEnv([make]), n_steps=4).learn(total_timesteps=4, callback=callback)

    assert [(r["timesteps"], r["level"]) for r in sink.records] == [(2, 3), (4, 3)]
    assert callback.counts["overwritten"] == 2
    assert callback.counts.by_key["overwritten"] == {"timesteps": 2}


def test_an_episode_without_monitor_info_is_counted_as_lost_and_warned_once() -> None:
    def make() -> gym.Env[Any, Any]:
        return gym.make("CartPole-v1", max_episode_steps=2)  # no Monitor

    sink = MemorySink()
    callback = EpisodeCallback(Pipeline().to(sink))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_ppo(DummyVecEnv([make, make]), n_steps=4).learn(total_timesteps=8, callback=callback)

    assert sink.records == []
    assert callback.counts["lost"] == 4  # two envs, two episodes each
    assert sum("Monitor" in str(w.message) for w in caught if "rlpipe" in str(w.message)) == 1


def test_the_step_key_is_configurable() -> None:
    sink = MemorySink()
    envs = DummyVecEnv([short_cartpole(2)])

    tiny_ppo(envs, n_steps=4).learn(
        total_timesteps=4, callback=EpisodeCallback(Pipeline().to(sink), step_key="env_steps")
    )

    assert sink.column("env_steps") == [2, 4]
    assert "timesteps" not in sink.records[0]


def test_callback_is_a_real_sb3_callback_and_checks_its_arguments() -> None:
    assert issubclass(EpisodeCallback, BaseCallback)
    with pytest.raises(ValueError, match="pipeline"):
        EpisodeCallback("not a pipeline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_key"):
        EpisodeCallback(Pipeline().to(MemorySink()), step_key="")


# -- a real PPO run against Monitor's own files ----------------------------------------------


@pytest.mark.slow
def test_ppo_episodes_equal_monitors_own_files_episode_for_episode(tmp_path: Path) -> None:
    n_envs = 4
    envs = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0, monitor_dir=str(tmp_path / "monitor"))
    model = PPO("MlpPolicy", envs, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    memory = MemorySink()
    pipeline = Pipeline("episodes").to(CsvSink(tmp_path / "episodes.csv"), memory)

    model.learn(total_timesteps=4096, callback=EpisodeCallback(pipeline))
    pipeline.close()
    envs.close()

    records = memory.records
    assert len(records) == len(load_results(str(tmp_path / "monitor")))  # SB3's own reader
    assert len(records) > 100
    with (tmp_path / "episodes.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(records)
    for i in range(n_envs):
        theirs = monitor_rows(tmp_path / "monitor" / f"{i}.monitor.csv")
        ours = [r for r in records if r["env_index"] == i]
        ours_csv = [r for r in rows if r["env_index"] == str(i)]
        # Monitor rounds r and t to 6 decimals and writes them with str(): the same floats
        assert [(r["episode_return"], r["episode_length"], r["episode_time"]) for r in ours] == [
            (float(row["r"]), int(row["l"]), float(row["t"])) for row in theirs
        ]
        assert [
            (row["episode_return"], row["episode_length"], row["episode_time"]) for row in ours_csv
        ] == [(row["r"], row["l"], row["t"]) for row in theirs]
        # env i steps once per vectorized step: its lengths add up to the step count / n_envs
        lengths = 0
        for record in ours:
            lengths += record["episode_length"]
            assert record["timesteps"] == lengths * n_envs
    assert [r["timesteps"] for r in records] == sorted(r["timesteps"] for r in records)
    assert 0 < records[-1]["timesteps"] <= model.num_timesteps
