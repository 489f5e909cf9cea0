"""Attack tests for the framework adapters (SB3's KVWriter, Spinning Up's EpochLogger, Acme's
logger): what the framework hands the adapter must reach the sinks, every key and value, as
the framework's own outputs hold it. The defects these attacks found are pinned as tests."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import acme
import dm_env
import matplotlib
import numpy as np
import pytest
import torch as th
from acme.utils import counting
from acme.utils import loggers as acme_loggers
from dm_env import specs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.logger import (
    CSVOutputFormat,
    Figure,
    JSONOutputFormat,
    KVWriter,
    Logger,
    filter_excluded_keys,
)

from pipeline import ClosedError, Pipeline
from pipeline.core.values import plain
from pipeline.integrations.sb3 import PipelineWriter
from pipeline.integrations.spinup import EpochLogger
from sinks import CsvSink, MemorySink

matplotlib.use("Agg")

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def same(ours: Any, theirs: Any) -> bool:
    """Equal values, NaN equal to NaN, arrays element-wise with their dtype kind."""
    if isinstance(theirs, th.Tensor):
        theirs = theirs.detach().numpy()
    if isinstance(theirs, np.ndarray) or isinstance(ours, np.ndarray):
        return (
            isinstance(ours, np.ndarray)
            and isinstance(theirs, np.ndarray)
            and ours.shape == theirs.shape
            and ours.dtype == theirs.dtype
            and bool(np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f"))
        )
    if type(ours) is not type(theirs):
        return False
    if isinstance(ours, float | np.floating) and math.isnan(ours):
        return math.isnan(theirs)
    return bool(ours == theirs)


# == Stable-Baselines3 ======================================================================


class Spy(KVWriter):
    """A KVWriter that keeps what SB3's Logger hands each format at each dump."""

    def __init__(self) -> None:
        self.dumps: list[tuple[dict[str, Any], dict[str, Any], Any]] = []

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: Any = 0
    ) -> None:
        self.dumps.append((dict(key_values), dict(key_excluded), step))

    def close(self) -> None:
        pass


CSV_SAFE_KEYS = ["a", "rollout/ep_rew_mean", "train/loss", "é☃"]
ODD_KEYS = ["x y,z", 'q"k', "", "a\tb", "/lead/", "timesteps_"]
EXCLUDES = st.sampled_from(
    [
        None,
        "csv",
        "pipeline",
        "json",
        "stdout",
        "tensorboard",
        ("stdout", "log"),
        ("pipeline", "json"),
        ("csv", "tensorboard"),
        ("json",),
        ("", "log"),
    ]
)
TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=8)
SCALARS = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32).map(np.float32),
    st.integers(-(2**31), 2**31).map(np.int64),
    st.booleans(),
    TEXT,
    st.none(),
)
ARRAYS = st.one_of(
    st.lists(st.floats(width=32), min_size=0, max_size=4).map(lambda v: np.array(v, np.float32)),
    st.lists(st.integers(-9, 9), min_size=1, max_size=3).map(np.array),
    st.floats(width=32).map(lambda v: np.array(v, np.float32)),  # 0-d
    st.lists(st.floats(width=32), min_size=0, max_size=3).map(th.tensor),
    st.floats(-1e6, 1e6).map(lambda v: th.tensor(v, dtype=th.float64)),  # 0-d tensor
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("record"), st.sampled_from(CSV_SAFE_KEYS), SCALARS, EXCLUDES),
        st.tuples(
            st.just("record"), st.sampled_from(ODD_KEYS), st.one_of(SCALARS, ARRAYS), EXCLUDES
        ),
        st.tuples(st.just("record"), st.just("hist"), ARRAYS, EXCLUDES),
        st.tuples(st.just("mean"), st.just("m/mean"), st.floats(-1e6, 1e6), EXCLUDES),
        st.tuples(
            st.just("dump"), st.one_of(st.integers(0, 2**40), st.integers(0, 10**6).map(np.int64))
        ),
    ),
    max_size=25,
)


def expected_record(dump: tuple[dict[str, Any], dict[str, Any], Any]) -> dict[str, Any] | None:
    """The writer's record for one dump by SB3's own exclusion rule (`filter_excluded_keys`)
    for each of its default format names: the step first, then every kept key."""
    values, excluded, step = dump
    kept = filter_excluded_keys(filter_excluded_keys(values, excluded, "csv"), excluded, "pipeline")
    if not kept:
        return None
    return {"timesteps": step, **kept}


@SETTINGS
@given(ops=OPS)
def test_every_dump_reaches_the_pipeline_as_sb3s_filter_and_its_csv_file_hold_it(
    ops: list[tuple[Any, ...]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("sb3")
    memory, spy = MemorySink(), Spy()
    pipe = Pipeline("sb3", close_at_exit=False).to(memory)
    writer = PipelineWriter(pipe)
    json_memory = MemorySink()
    json_writer = PipelineWriter(Pipeline(close_at_exit=False).to(json_memory), formats="json")
    sb3_json = JSONOutputFormat(str(folder / "progress.json"))
    logger = Logger(folder=None, output_formats=[spy, sb3_json, writer, json_writer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for op in ops:
            if op[0] == "record":
                logger.record(op[1], op[2], exclude=op[3])
            elif op[0] == "mean":
                logger.record_mean(op[1], op[2], exclude=op[3])
            else:
                logger.dump(op[1])
        logger.close()
        pipe.close()

    expected = [expected_record(dump) for dump in spy.dumps]
    wanted = [record for record in expected if record is not None]
    assert len(memory.records) == len(wanted)
    for ours, theirs in zip(memory.records, wanted, strict=True):
        assert list(ours) == list(theirs)  # the step first, then SB3's order
        for key in theirs:
            assert same(ours[key], theirs[key]), (key, ours[key], theirs[key])

    # a second writer answering to "json" alone gets what SB3's JSON file gets, key for key
    json_rows = [json.loads(line) for line in (folder / "progress.json").read_text().splitlines()]
    json_records = iter(json_memory.records)
    for row, (values, excluded, step) in zip(json_rows, spy.dumps, strict=True):
        if not row:
            continue
        record = next(json_records)
        assert record.pop("timesteps") == step
        assert set(record) == set(row) == set(filter_excluded_keys(values, excluded, "json"))
    assert next(json_records, None) is None

    # SB3's own CSV file and the pipeline's CSV file hold the same scalar cells. SB3's CSV
    # writes keys unquoted and loses a row written before its first key (its rewrite drops
    # the first line): replayed with its safe keys, without the dumps it would write empty.
    sb3_csv = CSVOutputFormat(str(folder / "safe.csv"))
    ours_csv = Pipeline(close_at_exit=False).to(CsvSink(folder / "ours.csv"))
    safe = Logger(folder=None, output_formats=[sb3_csv, PipelineWriter(ours_csv)])
    expected = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for op in ops:
            if op[0] == "record" and op[1] in CSV_SAFE_KEYS:
                safe.record(op[1], op[2], exclude=op[3])
            elif op[0] == "mean":
                safe.record_mean(op[1], op[2], exclude=op[3])
            elif op[0] == "dump":
                dump = (dict(safe.name_to_value), dict(safe.name_to_excluded), op[1])
                if filter_excluded_keys(dump[0], dump[1], "csv"):
                    expected.append(expected_record(dump))
                    safe.dump(op[1])
                else:
                    assert expected_record(dump) is None
                    safe.name_to_value.clear()
                    safe.name_to_excluded.clear()
        safe.close()
        ours_csv.close()
    if not expected:
        return
    with (folder / "safe.csv").open(newline="") as handle:
        sb3_rows = list(csv.DictReader(handle))
    with (folder / "ours.csv").open(newline="", encoding="utf-8") as handle:
        our_rows = iter(list(csv.DictReader(handle)))
    for sb3_row, record in zip(sb3_rows, expected, strict=True):
        if record is None:
            continue
        our_row = next(our_rows)
        assert our_row["timesteps"] == str(record["timesteps"])
        for key in [*CSV_SAFE_KEYS, "m/mean"]:
            if key in record and not isinstance(record[key], bool):
                theirs, ours = sb3_row[key], our_row[key]
                number = plain(record[key])
                if isinstance(number, float):
                    assert math.isclose(float(ours), float(theirs)) or (
                        math.isnan(float(ours)) and math.isnan(float(theirs))
                    ), (key, ours, theirs)
                else:
                    assert ours == theirs, (key, ours, theirs)
    assert next(our_rows, None) is None


def test_a_dump_with_nothing_recorded_writes_no_record_and_the_next_dump_is_whole() -> None:
    memory = MemorySink()
    logger = Logger(folder=None, output_formats=[PipelineWriter(Pipeline().to(memory))])
    logger.dump(1)
    logger.record("a", 1)
    logger.record("a", 2)  # recorded twice before a dump: SB3 keeps the later
    logger.record_mean("m", 1.0)
    logger.record_mean("m", 2.0)
    logger.dump(2)
    logger.dump(3)
    assert memory.records == [{"timesteps": 2, "a": 2, "m": 1.5}]


def test_a_bfloat16_tensor_reaches_the_pipeline_as_sb3s_json_writes_it(tmp_path: Path) -> None:
    memory = MemorySink()
    sb3_json = JSONOutputFormat(str(tmp_path / "progress.json"))
    logger = Logger(folder=None, output_formats=[sb3_json, PipelineWriter(Pipeline().to(memory))])
    logger.record("train/loss", th.tensor(1.5, dtype=th.bfloat16))
    logger.record("train/n", 3)
    logger.dump(8)
    logger.close()
    assert json.loads((tmp_path / "progress.json").read_text()) == {"train/loss": 1.5, "train/n": 3}
    assert len(memory.records) == 1
    assert float(memory.records[0]["train/loss"]) == 1.5
    assert memory.records[0]["train/n"] == 3


def test_a_figure_left_open_is_the_figure_as_it_was_at_the_dump() -> None:
    import matplotlib.pyplot as plt

    from pipeline.core.media import _pixels, _render

    memory = MemorySink()
    logger = Logger(folder=None, output_formats=[PipelineWriter(Pipeline().to(memory))])
    figure, axes = plt.subplots(figsize=(2, 2), dpi=20)
    (line,) = axes.plot([0, 1], [0, 1])
    at_dump = _pixels(_render(figure), "figure")  # what TensorBoard's add_figure draws
    logger.record("fig", Figure(figure, close=False), exclude=("stdout", "log", "json", "csv"))
    logger.dump(1)
    line.set_ydata([1, 0])  # the caller goes on using its figure, as close=False allows
    figure.patch.set_facecolor("red")
    try:
        assert np.array_equal(memory.records[0]["fig"].array, at_dump)
    finally:
        plt.close(figure)


def test_a_step_key_value_is_the_step_only_when_it_equals_it_exactly() -> None:
    memory = MemorySink()
    writer = PipelineWriter(Pipeline().to(memory))
    step = 2**53 + 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer.write({"timesteps": 2**53, "a": 1}, {"timesteps": ("",), "a": ("",)}, step=step)
    assert memory.records == [{"timesteps": step, "a": 1}]
    assert writer.counts["overwritten"] == 1  # the recorded 2**53 clashed with the step
    assert any("timesteps" in str(warning.message) for warning in caught)


def test_rich_values_and_arrays_are_held_as_they_were_at_the_dump() -> None:
    from stable_baselines3.common.logger import Image, Video

    memory = MemorySink()
    logger = Logger(folder=None, output_formats=[PipelineWriter(Pipeline().to(memory))])
    array = np.arange(4.0)
    image = np.zeros((3, 4, 5), np.uint8)
    frames = np.zeros((1, 2, 3, 4, 5), np.uint8)
    tensor = th.ones(3)
    logger.record("hist", array)
    logger.record("tensor", tensor)
    logger.record("img", Image(image, "CHW"), exclude=("stdout", "log", "json", "csv"))
    logger.record("vid", Video(frames, fps=4), exclude=("stdout", "log", "json", "csv"))
    logger.dump(5)
    array[:] = 9
    image[:] = 9
    frames[:] = 9
    tensor[:] = 9
    record = memory.records[0]
    assert record["hist"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert record["tensor"].tolist() == [1.0, 1.0, 1.0]
    assert record["img"].array.shape == (4, 5, 3) and not record["img"].array.any()
    assert record["vid"].frames.shape == (2, 4, 5, 3) and not record["vid"].frames.any()
    assert record["vid"].fps == 4.0


# == Spinning Up =============================================================================


def spinning_up_stats(x: Any, with_min_and_max: bool = False) -> tuple[Any, ...]:
    """Spinning Up's `mpi_statistics_scalar` on one process (`spinup/utils/mpi_tools.py`):
    `mpi_op` on one process is `np.asarray(x, dtype=np.float32)` (a scalar as `buff[0]`)."""
    x = np.array(x, dtype=np.float32)
    global_sum, global_n = np.asarray([np.sum(x), len(x)], dtype=np.float32)
    mean = global_sum / global_n
    global_sum_sq = np.asarray([np.sum((x - mean) ** 2)], dtype=np.float32)[0]
    std = np.sqrt(global_sum_sq / global_n)
    if with_min_and_max:
        low = np.asarray([np.min(x) if len(x) > 0 else np.inf], dtype=np.float32)[0]
        high = np.asarray([np.max(x) if len(x) > 0 else -np.inf], dtype=np.float32)[0]
        return mean, std, low, high
    return mean, std


class SpinningUp:
    """Spinning Up's `EpochLogger` (`spinup/utils/logx.py`, proc 0), its file in memory."""

    def __init__(self) -> None:
        self.file = io.StringIO()
        self.first_row = True
        self.log_headers: list[str] = []
        self.log_current_row: dict[str, Any] = {}
        self.epoch_dict: dict[str, list[Any]] = {}

    def _log(self, key: str, val: Any) -> None:
        if self.first_row:
            self.log_headers.append(key)
        else:
            assert key in self.log_headers
        assert key not in self.log_current_row
        self.log_current_row[key] = val

    def store(self, **kwargs: Any) -> None:
        for k, v in kwargs.items():
            self.epoch_dict.setdefault(k, []).append(v)

    def log_tabular(
        self, key: str, val: Any = None, with_min_and_max: bool = False, average_only: bool = False
    ) -> None:
        if val is not None:
            self._log(key, val)
        else:
            v = self.epoch_dict[key]
            vals = np.concatenate(v) if isinstance(v[0], np.ndarray) and len(v[0].shape) > 0 else v
            stats = spinning_up_stats(vals, with_min_and_max=with_min_and_max)
            self._log(key if average_only else "Average" + key, stats[0])
            if not average_only:
                self._log("Std" + key, stats[1])
            if with_min_and_max:
                self._log("Max" + key, stats[3])
                self._log("Min" + key, stats[2])
        self.epoch_dict[key] = []

    def dump_tabular(self) -> dict[str, Any]:
        vals = [self.log_current_row.get(key, "") for key in self.log_headers]
        if self.first_row:
            self.file.write("\t".join(self.log_headers) + "\n")
        self.file.write("\t".join(map(str, vals)) + "\n")
        row = dict(self.log_current_row)
        self.log_current_row.clear()
        self.first_row = False
        return row


SU_KEYS = ["EpRet", "LossV", "Q/Vals", "x y"]
SU_SCALAR = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.floats(width=32).map(np.float32),
    st.booleans(),
)
SU_ARRAY = st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=4).map(
    lambda v: np.array(v, dtype=np.float32)
)


@st.composite
def spinning_up_runs(draw: st.DrawFn) -> tuple[dict[str, tuple[bool, bool, bool]], list[Any]]:
    keys = draw(st.lists(st.sampled_from(SU_KEYS), min_size=1, max_size=4, unique=True))
    # per key: arrays or scalars, with_min_and_max, average_only (fixed: they name columns)
    options = {key: (draw(st.booleans()), draw(st.booleans()), draw(st.booleans())) for key in keys}
    epochs = []
    for epoch in range(draw(st.integers(1, 4))):
        if epoch and draw(st.integers(0, 5)) == 0:
            epochs.append(None)  # an epoch that logs nothing: dump_tabular alone
            continue
        stored = {}
        for key in keys:
            count = draw(st.integers(1 if epoch == 0 else 0, 4))
            strategy = SU_ARRAY if options[key][0] else SU_SCALAR
            stored[key] = [draw(strategy) for _ in range(count)]
        epochs.append(stored)
    return options, epochs


@SETTINGS
@given(run=spinning_up_runs())
def test_progress_txt_and_records_are_spinning_ups_own_epoch_statistics(
    run: tuple[dict[str, tuple[bool, bool, bool]], list[Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    options, epochs = run
    folder = tmp_path_factory.mktemp("spinup")
    memory = MemorySink()
    theirs = SpinningUp()
    rows = []
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        np.errstate(all="ignore"),
    ):
        warnings.simplefilter("ignore")
        ours = EpochLogger(folder, pipeline=Pipeline(close_at_exit=False).to(memory))
        for epoch, stored in enumerate(epochs):
            if stored is not None:
                for logger in (ours, theirs):
                    for key, values in stored.items():
                        for value in values:
                            logger.store(**{key: value})
                    logger.log_tabular("Epoch", epoch)
                    for key, values in stored.items():
                        if values:  # Spinning Up fails on a key with nothing stored
                            _, with_min_and_max, average_only = options[key]
                            logger.log_tabular(
                                key, with_min_and_max=with_min_and_max, average_only=average_only
                            )
            ours.dump_tabular()
            rows.append(theirs.dump_tabular())
        ours.close()

    assert (folder / "progress.txt").read_text(encoding="utf-8") == theirs.file.getvalue()
    logged = [row for row in rows if row]  # an epoch that logged nothing writes no record
    assert [list(record) for record in memory.records] == [list(row) for row in logged]
    for record, row in zip(memory.records, logged, strict=True):
        for key, value in row.items():
            assert same(record[key], plain(value)), (key, record[key], value)
            if key != "Epoch":  # the float32 statistic itself, as progress.txt holds it
                assert same(np.float32(record[key]), value), key
    # Spinning Up's plot.py reads the file with pandas.read_table, one row per dump_tabular
    import pandas as pd

    table = pd.read_table(folder / "progress.txt")
    assert len(table) == len(epochs)


def test_stored_lists_tensors_and_scalars_pool_into_numpys_statistics(tmp_path: Path) -> None:
    memory = MemorySink()
    with contextlib.redirect_stdout(io.StringIO()):
        logger = EpochLogger(tmp_path, pipeline=Pipeline(close_at_exit=False).to(memory))
        logger.store(X=[1.0, 2.0])
        logger.store(X=th.tensor([3.0, 4.0]))
        logger.store(X=np.float64(5.0), Y=th.tensor(2.0))
        logger.log_tabular("X", with_min_and_max=True)
        logger.log_tabular("Y", average_only=True)
        logger.dump_tabular()
        logger.dump_tabular()  # twice: a row of empty cells, no record
        with pytest.warns(RuntimeWarning, match="first logged after"):
            logger.log_tabular("Y")  # stored in an earlier epoch only: NaN statistics
        logger.dump_tabular()
        logger.close()
    mean, std, low, high = spinning_up_stats([1.0, 2.0, 3.0, 4.0, 5.0], with_min_and_max=True)
    assert memory.records[0] == {
        "AverageX": plain(mean),
        "StdX": plain(std),
        "MaxX": plain(high),
        "MinX": plain(low),
        "Y": 2.0,
    }
    assert len(memory.records) == 2
    assert set(memory.records[1]) == {"AverageY", "StdY"}  # new columns, added at the end
    assert all(math.isnan(value) for value in memory.records[1].values())
    with (tmp_path / "progress.txt").open(newline="") as handle:
        table = list(csv.DictReader(handle, delimiter="\t"))
    assert len(table) == 3 and all(value == "" for value in table[1].values())


def test_a_key_first_logged_later_widens_the_file_keeping_every_earlier_cell(
    tmp_path: Path,
) -> None:
    memory = MemorySink()
    odd = {"S": 'a\tb"c\nd', "E": "", "N": np.float32(0.1), "W": "  sp  ", "Q": '"', "H": "#x"}
    with contextlib.redirect_stdout(io.StringIO()):
        logger = EpochLogger(tmp_path, pipeline=Pipeline(close_at_exit=False).to(memory))
        for key, value in odd.items():
            logger.log_tabular(key, value)
        logger.dump_tabular()
        logger.log_tabular("S", "2")
        with pytest.warns(RuntimeWarning, match="'late'"):
            logger.log_tabular("late", 1)
        logger.dump_tabular()
        logger.close()
    with (tmp_path / "progress.txt").open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle, delimiter="\t"))
    assert table[0] == {**{key: str(value) for key, value in odd.items()}, "late": ""}
    assert table[1] == {"S": "2", "E": "", "N": "", "W": "", "Q": "", "H": "", "late": "1"}
    assert memory.records == [{**odd, "N": 0.1}, {"S": "2", "late": 1}]


def test_a_logged_mapping_reaches_the_pipeline_whole_or_its_clash_is_counted(
    tmp_path: Path,
) -> None:
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).to(memory)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger = EpochLogger(tmp_path, pipeline=pipe)
        logger.log_tabular("Epoch", 0)
        logger.log_tabular("Counts", {1: "a", "1": "b"})
        logger.dump_tabular()
        logger.close()
    assert "{1: 'a', '1': 'b'}" in (tmp_path / "progress.txt").read_text()
    values = memory.records[0]["Counts"]
    told = [warning for warning in caught if "'1'" in str(warning.message)]
    assert sorted(values.values()) == ["a", "b"] or told, values  # whole, or the loss is said


# == Acme ====================================================================================


class VectorRewardEnv(dm_env.Environment):
    """Three steps an episode; a reward of two components (Acme sums it into an array)."""

    def __init__(self) -> None:
        self.t = 0

    def reset(self) -> dm_env.TimeStep:
        self.t = 0
        return dm_env.restart(np.zeros(1, np.float32))

    def step(self, action: Any) -> dm_env.TimeStep:
        self.t += 1
        reward = np.array([1.0, 0.5 * self.t], np.float32)
        if self.t >= 3:
            return dm_env.termination(reward, np.zeros(1, np.float32))
        return dm_env.transition(reward, np.zeros(1, np.float32))

    def observation_spec(self) -> specs.Array:
        return specs.Array((1,), np.float32)

    def action_spec(self) -> specs.DiscreteArray:
        return specs.DiscreteArray(2)

    def reward_spec(self) -> specs.Array:
        return specs.Array((2,), np.float32)

    def discount_spec(self) -> specs.BoundedArray:
        return specs.BoundedArray((), np.float32, 0.0, 1.0)


class FixedActor(acme.core.Actor):
    def select_action(self, observation: Any) -> np.int32:
        return np.int32(0)

    def observe_first(self, timestep: Any) -> None:
        pass

    def observe(self, action: Any, next_timestep: Any) -> None:
        pass

    def update(self, wait: bool = False) -> None:
        pass


def test_an_environment_loop_with_prefixed_counters_gives_acmes_own_records() -> None:
    memory = MemorySink()
    pipe = Pipeline("actor", close_at_exit=False).to(memory)
    acme_memory = acme_loggers.InMemoryLogger()
    for logger in (pipe, acme_memory):
        counter = counting.Counter(counting.Counter(), prefix="actor")
        acme.EnvironmentLoop(VectorRewardEnv(), FixedActor(), counter=counter, logger=logger).run(
            num_episodes=3
        )
    pipe.close()
    pipe.close()  # twice: idempotent
    with pytest.raises(ClosedError):
        pipe.write({"a": 1})
    assert len(memory.records) == len(acme_memory.data) == 3
    for ours, theirs in zip(memory.records, acme_memory.data, strict=True):
        assert list(ours) == list(theirs)
        for key in theirs:
            if key != "steps_per_second":  # wall time
                assert same(ours[key], theirs[key]), key
        assert ours["episode_return"].tolist() == [3.0, 3.0]
    assert [record["actor_steps"] for record in memory.records] == [3, 6, 9]
