"""Acme's own loggers as leaves of a pipeline, inside a real EnvironmentLoop."""

from __future__ import annotations

import csv
from pathlib import Path

import acme
import numpy as np
import pytest
from acme.utils import loggers as acme_loggers

from pipeline import Pipeline
from sinks import MemorySink

pytestmark = pytest.mark.slow


def test_an_in_memory_logger_gets_every_record_with_its_values() -> None:
    acme_logger = acme_loggers.InMemoryLogger()
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).drop_none().smooth("return", 0.5).to(
        acme_logger, memory
    )
    for step in range(5):
        pipe.write({"steps": step, "episode_return": float(step), "loss": None})
    pipe.close()
    assert acme_logger.data == memory.records
    assert [row["episode_return_smoothed_0.5"] for row in acme_logger.data][:2] == [
        0.0,
        (1 - 0.05) * 1.0,
    ]


def test_acme_csv_logger_as_a_leaf_writes_what_acme_writes(tmp_path: Path) -> None:
    acme_csv = acme_loggers.CSVLogger(str(tmp_path), label="train", add_uid=False)
    pipe = Pipeline(close_at_exit=False).to(acme_csv)
    for step in range(3):
        pipe.write({"steps": step, "loss": np.float32(step / 10)})
    pipe.close()
    with open(acme_csv.file_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Acme writes a float32 as its short text, which reads back to the same float32.
    assert [(r["steps"], r["loss"]) for r in rows] == [("0", "0.0"), ("1", "0.1"), ("2", "0.2")]


def test_an_environment_loop_writes_through_a_pipeline_into_an_acme_logger() -> None:
    gymnasium = pytest.importorskip("gymnasium")
    from pipeline.cli.demo_agent import GymnasiumEnvironment

    class RandomActor(acme.core.Actor):
        def __init__(self) -> None:
            self.rng = np.random.default_rng(0)

        def select_action(self, observation: object) -> np.int64:
            return np.int64(self.rng.integers(2))

        def observe_first(self, timestep: object) -> None: ...
        def observe(self, action: object, next_timestep: object) -> None: ...
        def update(self, wait: bool = False) -> None: ...

    acme_logger = acme_loggers.InMemoryLogger()
    pipe = Pipeline(close_at_exit=False).to(acme_logger)
    env = GymnasiumEnvironment(gymnasium.make("CartPole-v1"), seed=0)
    acme.EnvironmentLoop(env, RandomActor(), logger=pipe).run(num_episodes=4)
    pipe.close()
    assert [row["episodes"] for row in acme_logger.data] == [1, 2, 3, 4]
    assert all(row["episode_return"] == row["episode_length"] for row in acme_logger.data)
