"""Stable-Baselines3 adapter: real SB3 training sends every dumped key through a pipeline."""

from __future__ import annotations

import csv
import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import (
    KVWriter,
    Logger,
    configure,
)

from pipeline import ClosedError, Pipeline
from pipeline.integrations.sb3 import PipelineWriter, attach
from sinks import CsvSink, MemorySink
from tests.conftest import crash
from tests.reference import warmup_ema


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The CI machine has 2 shared cores: SB3's small MLPs train fastest on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class RecordsWithExclusions(BaseCallback):
    """Records four custom keys at every rollout end, each excluded from a different output."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        steps = self.model.num_timesteps
        self.logger.record("custom/kept", steps / 2)
        self.logger.record("custom/no_csv", steps, exclude="csv")
        self.logger.record("custom/no_pipeline", steps, exclude="pipeline")
        self.logger.record("custom/no_tensorboard", steps, exclude="tensorboard")


class RecordsAnArrayUnderTheStepKey(BaseCallback):
    """Records `timesteps`, the writer's step key, holding an array, at every rollout end."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.logger.record("timesteps", np.array([1, 2]))


def small_ppo(seed: int) -> PPO:
    """A PPO that dumps every 64 steps and trains one quick epoch per rollout."""
    return PPO(
        "MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=seed, device="cpu"
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def same_number(ours: str, theirs: str) -> bool:
    """SB3 writes numpy float32 scalars as str() (shortest float32 digits); CsvSink writes the
    float64 they convert to exactly: both denote the same float32."""
    if theirs == "":
        return ours == ""
    return math.isclose(float(ours), float(theirs), rel_tol=1e-6, abs_tol=0.0)


# -- the writer on its own -----------------------------------------------------------------


def test_writer_is_a_real_sb3_kvwriter() -> None:
    assert issubclass(PipelineWriter, KVWriter)


def test_writer_writes_one_record_per_dump_with_the_step_first() -> None:
    sink = MemorySink()
    writer = PipelineWriter(Pipeline().to(sink), step_key="env_steps")

    writer.write({"loss": 0.5, "fps": 100}, {"loss": ("",), "fps": ("",)}, step=256)

    assert sink.records == [{"env_steps": 256, "loss": 0.5, "fps": 100}]
    assert list(sink.records[0]) == ["env_steps", "loss", "fps"]


def test_writer_respects_exclusions_naming_pipeline_or_csv_by_default() -> None:
    sink = MemorySink()
    writer = PipelineWriter(Pipeline().to(sink))
    values = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    excluded = {
        "a": ("",),
        "b": ("csv",),
        "c": ("pipeline", "json"),
        "d": ("tensorboard", "stdout"),
        # "e" has no entry: SB3 treats a missing entry as "excluded from nothing"
    }

    writer.write(values, excluded, step=1)

    assert sink.records == [{"timesteps": 1, "a": 1, "d": 4, "e": 5}]


def test_writer_formats_choose_which_exclusions_apply() -> None:
    sink = MemorySink()
    writer = PipelineWriter(Pipeline().to(sink), formats=("tensorboard",))

    writer.write({"a": 1, "b": 2}, {"a": ("csv",), "b": ("tensorboard",)}, step=3)

    assert sink.records == [{"timesteps": 3, "a": 1}]


def test_sb3_loggers_exclude_as_a_bare_name_or_a_tuple_of_names() -> None:
    sink = MemorySink()
    logger = Logger(folder=None, output_formats=[PipelineWriter(Pipeline().to(sink))])

    logger.record("kept", 1.0)
    logger.record("bare", 2.0, exclude="pipeline")
    logger.record("bare_csv", 3.0, exclude="csv")
    logger.record("tuple", 4.0, exclude=("pipeline",))
    logger.record("tuple_of_others", 5.0, exclude=("stdout", "tensorboard"))
    logger.record_mean("mean", 6.0, exclude="pipeline")
    logger.record_mean("mean_kept", 7.0, exclude=("json",))
    logger.dump(step=10)

    assert sink.records == [
        {"timesteps": 10, "kept": 1.0, "tuple_of_others": 5.0, "mean_kept": 7.0}
    ]


@pytest.mark.parametrize("exclude", ["pipeline", ("pipeline",), ("json", "pipeline"), "csv"])
def test_a_dump_with_every_key_excluded_writes_nothing(exclude: str | tuple[str, ...]) -> None:
    sink = MemorySink()
    logger = Logger(folder=None, output_formats=[PipelineWriter(Pipeline().to(sink))])

    logger.record("a", 1.0, exclude=exclude)
    logger.record("b", 2.0, exclude=exclude)
    logger.dump(step=1)
    logger.dump(step=2)  # nothing recorded
    logger.record("a", 3.0)
    logger.dump(step=3)

    assert sink.records == [{"timesteps": 3, "a": 3.0}]


@pytest.mark.parametrize("name", ["pipeline", "csv", "stdout"])
def test_a_key_excluded_by_one_bare_format_name_as_in_sb3s_tests(name: str) -> None:
    # SB3's tests/test_logger.py::test_exclude_keys: key_excluded=dict(some_tag=(_format)),
    # a bare string, excludes some_tag from the format of that name and leaves nothing
    sink = MemorySink()
    writer = PipelineWriter(Pipeline().to(sink), formats=(name,))

    writer.write({"some_tag": 42}, key_excluded={"some_tag": name})
    writer.write({"some_tag": 42}, key_excluded={"some_tag": None})  # SB3's "not excluded"
    writer.write({"some_tag": 43}, key_excluded={"some_tag": ()})

    assert sink.records == [{"timesteps": 0, "some_tag": 42}, {"timesteps": 0, "some_tag": 43}]


def test_step_wins_over_a_recorded_key_of_the_same_name_with_a_warning() -> None:
    sink = MemorySink()
    writer = PipelineWriter(Pipeline().to(sink), step_key="step")

    with pytest.warns(RuntimeWarning, match="step key"):
        writer.write({"step": 7, "x": 1.0}, {}, step=10)
    writer.write({"step": 20}, {}, step=20)  # the same value: no clash

    assert sink.records == [{"step": 10, "x": 1.0}, {"step": 20}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        writer.write({"step": 8}, {}, step=30)  # warned once: counted, not warned again
    assert writer.counts["overwritten"] == 2


@pytest.mark.parametrize(
    "value", [np.array([1, 2]), np.array([[10]]), [10, 10], "10", None, {"step": 10}]
)
def test_a_value_under_the_step_key_that_is_not_the_step_clashes_without_raising(
    value: Any,
) -> None:
    sink = MemorySink()
    writer = PipelineWriter(Pipeline().to(sink), step_key="step")

    with pytest.warns(RuntimeWarning, match="the name of the step key"):
        writer.write({"step": value, "x": 1.0}, {}, step=10)

    assert sink.records == [{"step": 10, "x": 1.0}]
    assert writer.counts["overwritten"] == 1


@pytest.mark.parametrize("value", [10, 10.0, np.int64(10), np.float32(10.0), np.array(10)])
def test_a_number_equal_to_the_step_under_the_step_key_is_the_step(value: Any) -> None:
    sink = MemorySink()
    writer = PipelineWriter(Pipeline().to(sink), step_key="step")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        writer.write({"step": value, "x": 1.0}, {}, step=10)

    assert sink.records == [{"step": 10, "x": 1.0}]
    assert writer.counts["overwritten"] == 0


def test_writer_close_flushes_a_pipeline_it_does_not_own_and_leaves_it_open() -> None:
    sink = MemorySink()
    pipeline = Pipeline().aggregate(r"x", every=100).to(sink)
    writer = PipelineWriter(pipeline)
    writer.write({"x": 1.0}, {}, step=1)
    writer.write({"x": 3.0}, {}, step=2)

    writer.close()
    writer.close()

    assert not pipeline.closed and not sink.closed
    assert [record["x_mean"] for record in sink.records] == [2.0]  # the window was flushed
    with pytest.raises(ClosedError, match="PipelineWriter"):
        writer.write({"x": 1.0}, {}, step=3)
    pipeline.write({"x": 5.0})  # the owner still writes, and closes it
    pipeline.close()
    assert sink.closed and [record["x_mean"] for record in sink.records] == [2.0, 5.0]


def test_writer_close_closes_a_pipeline_it_owns() -> None:
    sink = MemorySink()
    pipeline = Pipeline().to(sink)
    writer = PipelineWriter(pipeline, close_pipeline=True)

    writer.close()
    writer.close()

    assert pipeline.closed and sink.closed
    with pytest.raises(ClosedError):
        writer.write({"x": 1.0}, {}, step=0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"pipeline": "not a pipeline"}, "pipeline"),
        ({"step_key": ""}, "step_key"),
        ({"formats": (1,)}, "formats"),
        ({"close_pipeline": "yes"}, "close_pipeline"),
    ],
)
def test_writer_arguments_are_validated(arguments: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {"pipeline": Pipeline().to(MemorySink()), **arguments}
    with pytest.raises(ValueError, match=message):
        PipelineWriter(**kwargs)


def test_attach_needs_an_sb3_model() -> None:
    with pytest.raises(ValueError, match="Stable-Baselines3 algorithm"):
        attach(object(), Pipeline().to(MemorySink()))


# -- real training -------------------------------------------------------------------------


@pytest.mark.slow
def test_ppo_training_leaves_every_dumped_key_at_its_step_in_a_csv_sink(tmp_path: Path) -> None:
    model = PPO(
        "MlpPolicy", "CartPole-v1", n_steps=256, batch_size=64, n_epochs=2, seed=0, device="cpu"
    )
    model.set_logger(configure(str(tmp_path / "sb3"), ["csv"]))  # SB3's own CSV, for reference
    memory = MemorySink()
    pipeline = Pipeline("ppo").to(CsvSink(tmp_path / "rlpipe.csv"), memory)
    writer = attach(model, pipeline)

    model.learn(total_timesteps=2048, callback=RecordsWithExclusions())
    pipeline.close()

    assert writer in model.logger.output_formats  # next to SB3's CSVOutputFormat
    theirs = read_csv(tmp_path / "sb3" / "progress.csv")
    ours = read_csv(tmp_path / "rlpipe.csv")
    # PPO dumps once per rollout of n_steps=256: 8 dumps, each at its num_timesteps
    assert [row["timesteps"] for row in ours] == [str(256 * i) for i in range(1, 9)]
    assert [row["time/total_timesteps"] for row in ours] == [row["timesteps"] for row in ours]
    assert [record["timesteps"] for record in memory.records] == [256 * i for i in range(1, 9)]
    # train/* is recorded by train() after a dump, so it appears from the second dump on
    assert "train/value_loss" not in memory.records[0]
    assert all("train/value_loss" in record for record in memory.records[1:])
    # every key SB3's own CSV got, except the one excluded from "pipeline", and no other
    assert set(ours[0]) == (set(theirs[0]) - {"custom/no_pipeline"}) | {"timesteps"}
    assert {"custom/no_csv", "custom/no_pipeline"}.isdisjoint(ours[0])
    assert "custom/no_tensorboard" in ours[0] and "time/total_timesteps" in ours[0]
    assert len(ours) == len(theirs)
    for our_row, their_row in zip(ours, theirs, strict=True):
        for key, value in our_row.items():
            if key != "timesteps":
                assert same_number(value, their_row[key]), (key, value, their_row[key])
    assert [float(row["custom/kept"]) for row in ours[:3]] == [128.0, 256.0, 384.0]


@pytest.mark.slow
def test_attach_keeps_sb3s_default_stdout_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = A2C("MlpPolicy", "CartPole-v1", n_steps=5, seed=1, verbose=1, device="cpu")
    sink = MemorySink()
    pipeline = Pipeline("a2c").to(sink)

    attach(model, pipeline, step_key="env_steps")
    model.learn(total_timesteps=1000)  # A2C dumps every 100 updates of 5 steps
    pipeline.close()

    printed = capsys.readouterr().out
    assert "ep_rew_mean" in printed
    assert re.search(r"total_timesteps\s*\|\s*1000\s", printed)
    assert sink.column("env_steps") == [500, 1000]
    assert sink.column("time/total_timesteps") == [500, 1000]
    assert sink.column("train/n_updates") == [99, 199]
    assert all(math.isfinite(value) for value in sink.column("train/value_loss"))


@pytest.mark.slow
def test_ppo_learns_when_a_callback_records_an_array_under_the_step_key(tmp_path: Path) -> None:
    model = small_ppo(seed=2)
    pipeline = Pipeline("ppo").to(CsvSink(tmp_path / "rlpipe.csv"))
    writer = attach(model, pipeline)

    with pytest.warns(RuntimeWarning, match=r"'timesteps'=array\(\[1, 2\]\)") as caught:
        model.learn(total_timesteps=192, callback=RecordsAnArrayUnderTheStepKey())
    pipeline.close()

    rows = read_csv(tmp_path / "rlpipe.csv")
    assert [row["timesteps"] for row in rows] == ["64", "128", "192"]  # the step, every dump
    assert [row["time/total_timesteps"] for row in rows] == ["64", "128", "192"]
    assert writer.counts["overwritten"] == 3
    assert sum("step key" in str(warning.message) for warning in caught) == 1  # warned once


@pytest.mark.slow
def test_closing_one_models_logger_leaves_a_shared_pipeline_to_the_other(tmp_path: Path) -> None:
    memory = MemorySink()
    pipeline = Pipeline("shared").to(CsvSink(tmp_path / "shared.csv", flush_every=1000), memory)
    first, second = small_ppo(seed=3), small_ppo(seed=4)
    attach(first, pipeline)
    attach(second, pipeline)

    first.learn(total_timesteps=128)
    first.logger.close()  # the first model is done: its writer flushes the shared pipeline
    assert [row["timesteps"] for row in read_csv(tmp_path / "shared.csv")] == ["64", "128"]
    second.learn(total_timesteps=192)  # before: ClosedError at its first dump
    assert not pipeline.closed
    pipeline.close()  # the owner closes it

    rows = read_csv(tmp_path / "shared.csv")
    assert [row["timesteps"] for row in rows] == ["64", "128", "64", "128", "192"]
    assert memory.column("timesteps") == [64, 128, 64, 128, 192]
    assert memory.closed


@pytest.mark.slow
def test_a_resumed_ppo_run_continues_the_csv_from_its_checkpoint(tmp_path: Path) -> None:
    def logged(state: Any = None) -> Pipeline:
        return (
            Pipeline("ppo", close_at_exit=False)
            .smooth("rollout/ep_rew_mean", coeff=0.9)
            .to(CsvSink(tmp_path / "ppo.csv", flush_every=1, flush_seconds=None))
        )

    model = small_ppo(seed=0)
    pipe = logged()
    attach(model, pipe)
    model.learn(total_timesteps=192)  # three dumps: 64, 128, 192
    model.save(tmp_path / "model")
    checkpoint = pipe.state_dict()
    model.learn(total_timesteps=128, reset_num_timesteps=False)  # 256, 320: then preempted
    assert [int(r["timesteps"]) for r in read_csv(tmp_path / "ppo.csv")] == [
        64, 128, 192, 256, 320,
    ]

    crash(pipe)  # preempted: the process is gone, and its file lock with it
    again = PPO.load(tmp_path / "model", env=model.get_env(), device="cpu")
    resumed = logged()
    attach(again, resumed, state=checkpoint)
    again.learn(total_timesteps=128, reset_num_timesteps=False)
    resumed.close()
    rows = read_csv(tmp_path / "ppo.csv")
    assert [int(r["timesteps"]) for r in rows] == [64, 128, 192, 256, 320]
    name = "rollout/ep_rew_mean_smoothed_0.9"
    smoothed = [float(r[name]) for r in rows if r.get(name)]
    means = [float(r["rollout/ep_rew_mean"]) for r in rows if r.get("rollout/ep_rew_mean")]
    # the moving average went on from the checkpoint's: no restart at the raw value
    assert smoothed == pytest.approx(warmup_ema(means, 0.9))
