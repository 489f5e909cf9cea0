"""The framework integrations keep the contract, driven through their public entry points
with generated input: SB3's `Logger` (`record`, `record_mean`, `dump`) into a
`PipelineWriter`, Spinning Up's `EpochLogger` (`store`, `log_tabular`, `dump_tabular`),
Tune's `PipelineCallback` (a real `Trial`, the callback hooks Tune calls), and Acme's
`make_logger` / `make_logger_factory` (`write`, a real `EnvironmentLoop`).

Each value the framework hands over reaches the sinks (a CsvSink, a JsonlSink, a MemorySink,
read back with csv and json) as the integration documents, or is counted with its reason
and warned about once; the reference is the framework's own state (SB3's `name_to_value`
and its own CSV file, Spinning Up's tabular row and progress.txt, the Tune result, the dict
Acme wrote), stated independently of rlpipe's converters.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import ClosedError, Pipeline
from tests.conformance import harness, strategies
from tests.conformance.integrations import Leaves, check_leaves
from tests.conformance.known import suite
from tests.conformance.sinks import SinkSpec

# -- Stable-Baselines3: Logger.record / record_mean / dump into a PipelineWriter -------------

sb3 = pytest.importorskip("stable_baselines3")
import torch  # noqa: E402  (SB3 needs torch)
from stable_baselines3.common.logger import (  # noqa: E402
    CSVOutputFormat,
    Logger,
    filter_excluded_keys,
)

from pipeline.integrations.sb3 import PipelineWriter  # noqa: E402

STEP = "timesteps"

sb3_excludes = st.one_of(
    st.none(),
    st.sampled_from(["pipeline", "csv", "stdout", "json", "log", "tensorboard"]),
    st.sampled_from(
        [("stdout", "log", "json"), ("json", "csv"), ("pipeline",), ("tensorboard", "stdout")]
    ),
)
"""`exclude=` as SB3 takes it: a format name or a tuple of them."""

sb3_keys = st.one_of(
    strategies.keys,
    st.builds(strategies.BadKey),  # its str() raises: a sink cannot name a column after it
    st.sampled_from([STEP, "rollout/ep_rew_mean", "train/loss", "time/fps", "a//b", "/"]),
)
mean_values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-100, 100),
    strategies.numpy_scalars([np.float32, np.float64, np.int64]),
)
"""What `record_mean` averages (SB3 skips None)."""


@dataclass
class Record:
    """One SB3 logger call: `record` or `record_mean` of `key` with `value`, `exclude`."""

    mean: bool
    key: Any
    value: Any
    exclude: Any


@dataclass
class Dump:
    """The calls of one iteration, then `dump(step)`; with `reuse`, the caller then changes
    the arrays and lists it recorded (a training loop's buffers)."""

    calls: list[Record]
    step: int
    reuse: bool


@st.composite
def sb3_dumps(
    draw: st.DrawFn,
    *,
    keys: st.SearchStrategy[Any] = sb3_keys,
    values: st.SearchStrategy[Any] = strategies.values,
    excludes: st.SearchStrategy[Any] = sb3_excludes,
) -> Dump:
    calls: list[Record] = []
    texts: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 6))):
        mean = draw(st.integers(0, 3)) == 0
        key = draw(st.sampled_from(["mean/a", "mean/b"])) if mean else draw(keys)
        # two keys of one text (1 and "1") are one column: each sink's own rule, checked in
        # test_listed.py; here a dump's keys are distinct
        key = texts.setdefault(_text(key), key)
        value = draw(mean_values if mean else values)
        calls.append(Record(mean, key, value, draw(excludes)))
    return Dump(calls, draw(st.integers(0, 2**40)), draw(st.booleans()))


def _text(key: Any) -> str:
    try:
        return str(key)
    except Exception:
        return repr(key)


def _number(value: Any) -> float | None:
    """A real number's value (bool, int, float, numpy and torch scalars or 0-d arrays)."""
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # beyond float range: +-inf
            return math.copysign(math.inf, value)
    array = np.asarray(value) if isinstance(value, (int, float, np.generic, np.ndarray)) else None
    if array is None or array.ndim != 0 or array.dtype.kind not in "biuf":
        return None
    try:
        return float(array)
    except OverflowError:
        return math.copysign(math.inf, int(array))


def sb3_expected(values: dict[Any, Any], excluded: dict[Any, Any], step: int) -> tuple[
    dict[Any, Any] | None, int
]:
    """What a PipelineWriter (default formats) writes for SB3's dump of `values`: the keys
    SB3's own filter keeps for "pipeline" and "csv", after `{step_key: step}`, tensors as
    numpy arrays; a key named like the step is the step (counted if it holds another value).
    Returns (the record or None, the clashes counted)."""
    kept = filter_excluded_keys(filter_excluded_keys(values, excluded, "pipeline"), excluded, "csv")
    if not kept:
        return None, 0
    record: dict[Any, Any] = {STEP: step}
    clashes = 0
    for key, value in kept.items():
        if key == STEP:
            clashes += _number(value) != float(step)
            continue
        record[key] = value.numpy() if isinstance(value, torch.Tensor) else value
    return record, clashes


def run_sb3(
    dumps: list[Dump], folder: Path, *, own_csv: bool = False
) -> tuple[Leaves, Any, PipelineWriter, list[dict[Any, Any]], int, list[str]]:
    """Drives a real SB3 Logger with a PipelineWriter (and SB3's own CSV format next to it if
    `own_csv`), then closes the logger twice and the pipeline."""
    leaves = Leaves.under(folder)
    pipe = leaves.pipeline("sb3")
    writer = PipelineWriter(pipe)
    formats: list[Any] = [writer]
    if own_csv:
        formats.append(CSVOutputFormat(str(folder / "sb3.csv")))
    logger = Logger(folder=None, output_formats=formats)
    written: list[dict[Any, Any]] = []
    clashes = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for dump in dumps:
            for call in dump.calls:
                if call.mean:
                    logger.record_mean(call.key, call.value, call.exclude)
                else:
                    logger.record(call.key, call.value, call.exclude)
            record, clashed = sb3_expected(
                copy.deepcopy(dict(logger.name_to_value)), dict(logger.name_to_excluded), dump.step
            )
            clashes += clashed
            if record is not None:
                written.append(record)
            logger.dump(dump.step)
            if dump.reuse:
                for call in dump.calls:
                    strategies.scribble(call.value)
        logger.close()
        logger.close()  # SB3 closes its formats again: the writer's close is idempotent
        with pytest.raises(ClosedError):
            writer.write({"x": 1.0}, {"x": ("",)}, 0)
        pipe.close()
    return leaves, pipe, writer, written, clashes, [str(w.message) for w in caught]


@suite(40)
@given(dumps=st.lists(sb3_dumps(), max_size=6))
def test_sb3_every_dumped_value_is_stored_once_as_recorded_or_counted(
    dumps: list[Dump], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("sb3")
    leaves, pipe, writer, written, clashes, caught = run_sb3(dumps, folder)

    check_leaves(pipe, leaves.specs(), written, caught, folder)
    assert writer.counts["overwritten"] == clashes
    if clashes:
        assert sum("PipelineWriter" in text and STEP in text for text in caught) == 1


sb3_numbers = st.one_of(
    st.integers(-(2**31), 2**31),
    st.floats(allow_nan=False, allow_infinity=False),
    strategies.numpy_scalars([np.float32, np.float64, np.int64]),
)


@suite(25)
@given(
    dumps=st.lists(
        sb3_dumps(
            keys=st.sampled_from(["a", "rollout/ep_rew_mean", "train/loss", "x y", "é"]),
            values=sb3_numbers,
            # names SB3's CSV format and the writer both answer to ("csv"), or neither
            excludes=st.sampled_from([None, "csv", "stdout", ("json", "csv"), ("log",)]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_sb3_csv_sink_holds_what_sb3s_own_csv_format_holds(
    dumps: list[Dump], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The reference is SB3's own `CSVOutputFormat` on the same Logger: each of its rows (a
    dump with a key for "csv") is a row of the CsvSink with the same numbers."""
    folder = tmp_path_factory.mktemp("sb3")
    *_, written, _, _ = run_sb3(dumps, folder, own_csv=True)

    with (folder / "sb3.csv").open(newline="") as handle:
        # SB3 writes an empty line for a dump with nothing for "csv": not a row
        theirs = [row for row in csv.DictReader(handle) if any(row[key] for key in row if key)]
    with (folder / "out.csv").open(newline="") as handle:
        ours = list(csv.DictReader(handle))
    assert len(ours) == len(theirs) == len(written), (ours, theirs)
    for their_row, our_row in zip(theirs, ours, strict=True):
        for key, cell in their_row.items():
            if cell == "":
                assert our_row.get(key, "") == ""
            else:
                ours_, theirs_ = float(our_row[key]), float(cell)
                assert ours_ == theirs_ or (ours_ != ours_ and theirs_ != theirs_), (key, cell)


def test_sb3_logger_tests_key_values_reach_every_sink(tmp_path: Path) -> None:
    """SB3's tests/test_logger.py: `KEY_VALUES` (numbers, a list, arrays of every rank, a
    text with quotes, separators and a line break, a tensor) written by every format; here
    by a PipelineWriter, each value as recorded (the tensor as its numpy array)."""
    key_values = {
        "test": 1,
        "b": -3.14,
        "8": 9.9,
        "l": [1, 2],
        "a": np.array([1, 2, 3]),
        "f": np.array(1),
        "g": np.array([[[1]]]),
        "h": 'this ", ;is a \n tes:,t',
        "i": torch.ones(3),
    }
    leaves = Leaves.under(tmp_path)
    pipe = leaves.pipeline("sb3")
    writer = PipelineWriter(pipe)
    writer.write(key_values, dict.fromkeys(key_values, None))  # type: ignore[arg-type]
    writer.write(dict(some_tag=42), key_excluded=dict(some_tag=("csv",)))  # excluded: nothing
    writer.close()
    pipe.close()

    expected = {STEP: 0, **key_values, "i": np.ones(3, dtype=np.float32)}
    check_leaves(pipe, leaves.specs(), [expected], [], tmp_path)
    assert leaves.memory.records[0]["h"] == 'this ", ;is a \n tes:,t'


def test_sb3_logger_tests_main_record_mean_and_texts(tmp_path: Path) -> None:
    """SB3's `test_main`: record, record_mean averaging, a text with line breaks, histograms
    (a tensor, an array), a long text; each dump one record, as SB3's name_to_value holds it."""
    leaves = Leaves.under(tmp_path)
    pipe = leaves.pipeline("sb3")
    logger = Logger(folder=None, output_formats=[PipelineWriter(pipe)])
    logger.record("a", 3)
    logger.record("b", 2.5)
    logger.dump()
    logger.record("b", -2.5)
    logger.record("a", 5.5)
    logger.dump()
    logger.record("f", "this text \n \r should appear in one line")
    logger.dump()
    logger.record_mean("b", -22.5)
    logger.record_mean("b", -44.4)
    logger.record("a", 5.5)
    logger.record("hist1", torch.ones(2))
    logger.record("hist2", np.ones(2))
    logger.dump()
    logger.record("a", "longasslongasslongasslongasslongasslongassvalue")
    logger.dump()
    logger.dump()  # nothing recorded: nothing written (SB3's own formats write no row either)
    logger.close()
    pipe.close()

    _same_records(leaves.memory.records)
    with (tmp_path / "out.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["a"] for row in rows] == ["3", "5.5", "", "5.5",
                                          "longasslongasslongasslongasslongasslongassvalue"]
    assert float(rows[3]["b"]) == pytest.approx(-33.45)
    assert rows[2]["f"] == "this text \n \r should appear in one line"


def _same_records(records: list[dict[str, Any]]) -> None:
    """The records of `test_sb3_logger_tests_main_record_mean_and_texts`, arrays compared by
    value."""
    assert [list(record) for record in records] == [
        [STEP, "a", "b"], [STEP, "b", "a"], [STEP, "f"], [STEP, "b", "a", "hist1", "hist2"],
        [STEP, "a"],
    ]
    assert records[3]["b"] == pytest.approx(-33.45)
    np.testing.assert_array_equal(records[3]["hist1"], np.ones(2, dtype=np.float32))
    np.testing.assert_array_equal(records[3]["hist2"], np.ones(2))



# -- Spinning Up: EpochLogger.store / log_tabular / dump_tabular ------------------------------

from pipeline.integrations.spinup import EpochLogger  # noqa: E402

STORED = ["EpRet", "EpLen", "VVals"]
"""The keys an epoch stores (`store(EpRet=...)`): Spinning Up's keyword names."""

stored_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-1000, 1000),
    strategies.numpy_scalars([np.float32, np.float64, np.int32]),
    strategies.arrays([np.float32, np.float64, np.int64]),
)
"""What a training loop stores: numbers and arrays (pooled with the scalars)."""

tabular_keys = st.one_of(
    st.sampled_from(["Epoch", "TotalEnvInteracts", "LossPi", "Time", "AverageEpRet", "a b"]),
    strategies.text_keys,
    st.builds(strategies.StrSub, st.sampled_from(["Epoch", "k"])),
)
tabular_values = strategies.make_values().filter(lambda value: value is not None)
"""`log_tabular(key, val)`: any value but None (which asks for the stored statistics)."""


@dataclass
class Tabular:
    """One `log_tabular` call: a value (`val`), or the statistics of a stored key (`stats`
    with `with_min_and_max` or `average_only`)."""

    key: Any
    val: Any = None
    with_min_and_max: bool = False
    average_only: bool = False


@dataclass
class Epoch:
    stores: list[dict[str, Any]]
    logs: list[Tabular]


@st.composite
def epochs(draw: st.DrawFn) -> Epoch:
    stores = draw(
        st.lists(st.dictionaries(st.sampled_from(STORED), stored_values, min_size=1), max_size=4)
    )
    logs: list[Tabular] = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            logs.append(Tabular(draw(tabular_keys), draw(tabular_values)))
        else:
            minmax = draw(st.booleans())
            logs.append(Tabular(draw(st.sampled_from(STORED)), None, minmax,
                                not minmax and draw(st.booleans())))
    return Epoch(stores, logs)


def float32_stats(values: list[Any]) -> list[np.float32]:
    """Spinning Up's `mpi_statistics_scalar` on one process: float32 mean, population std,
    min, max of every stored value, arrays flattened."""
    x = np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in values])
    if x.size == 0:
        return [np.float32("nan")] * 4
    mean = np.float32(np.sum(x)) / np.float32(len(x))
    std = np.sqrt(np.float32(np.sum((x - mean) ** 2)) / np.float32(len(x)))
    return [mean, std, np.float32(np.min(x)), np.float32(np.max(x))]


def read_progress(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def spinup_text(value: Any) -> str:
    """A progress.txt cell: Spinning Up's `str(value)` (an object whose `str()` raises: its
    repr)."""
    try:
        return str(value)
    except Exception:
        return repr(value)


@suite(40)
@given(run=st.lists(epochs(), min_size=1, max_size=5))
def test_spinup_every_tabular_value_reaches_the_file_and_the_pipeline(
    run: list[Epoch], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each epoch's row (Spinning Up's `log_current_row` at `dump_tabular`) is one row of
    progress.txt, each cell `str(value)`, and one record of the pipeline, each value as
    logged; statistics are Spinning Up's float32 ones; a key logged twice in an epoch is a
    ValueError that keeps the first value."""
    folder = tmp_path_factory.mktemp("spinup")
    leaves = Leaves.under(folder)
    leaves.csv.counts.owner = "CsvSink(out.csv)"  # told apart from progress.txt's CsvSink
    pipe = leaves.pipeline("spinup")
    logger = EpochLogger(output_dir=folder / "run", pipeline=pipe)
    written: list[dict[Any, Any]] = []
    rows: list[dict[str, Any]] = []
    pooled: dict[str, list[Any]] = {}  # stored since the key was last logged (Spinning Up's)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in run:
            for stored in epoch.stores:
                logger.store(**copy.deepcopy(stored))
                for key, value in stored.items():
                    pooled.setdefault(key, []).append(value)
            for log in epoch.logs:
                _log_tabular(logger, log, pooled)
            row = copy.deepcopy(logger.log_current_row)
            rows.append(row)
            if row:
                written.append({key: row[key] for key in logger.log_headers if key in row})
            logger.dump_tabular()
        logger.close()
        logger.close()
        with pytest.raises(ClosedError):
            logger.dump_tabular()
    caught_text = [str(w.message) for w in caught]

    check_leaves(pipe, leaves.specs(memory=False), written, caught_text, folder)
    progress = logger.output_file  # progress.txt, Spinning Up's own file: a row per epoch
    harness.check(
        harness.Outcome(
            spec=PROGRESS,
            node=progress,
            written=rows,
            stored=PROGRESS.read(progress, folder / "run"),
            counted=PROGRESS.counted(progress),
            isolation_lost=0,
            failures=logger.failures(),
            warnings=caught_text,
        )
    )


PROGRESS = SinkSpec(
    "EpochLogger's progress.txt",
    make=lambda folder: None,
    read=lambda sink, folder: read_progress(folder / "progress.txt"),
    expect=lambda row: {key: spinup_text(value) for key, value in row.items()},
    same=lambda expected, cell: expected == cell,
    exact_keys=False,
)
"""progress.txt as Spinning Up writes it: each epoch's row, each cell `str(value)` (an
object whose `str()` raises: its repr), a column not logged in an epoch empty."""


def _log_tabular(logger: EpochLogger, log: Tabular, pooled: dict[str, list[Any]]) -> None:
    """Calls `log_tabular`; checks a statistic against Spinning Up's, a clash's error."""
    row = logger.log_current_row
    if log.val is not None:
        if log.key in row:
            first = row[log.key]
            with pytest.raises(ValueError, match="already set"):
                logger.log_tabular(log.key, log.val)
            assert row[log.key] is first
            return
        logger.log_tabular(log.key, copy.deepcopy(log.val))
        return
    if log.key not in logger.epoch_dict:
        with pytest.raises(KeyError):
            logger.log_tabular(log.key)
        return
    names = [log.key] if log.average_only else ["Average" + log.key, "Std" + log.key]
    if log.with_min_and_max:
        names += ["Max" + log.key, "Min" + log.key]
    if any(name in row for name in names):
        with pytest.raises(ValueError, match="already set"):
            logger.log_tabular(log.key, None, log.with_min_and_max, log.average_only)
        return
    values = pooled.pop(log.key, [])
    logger.log_tabular(log.key, None, log.with_min_and_max, log.average_only)
    stats = float32_stats(values) if values else [np.float32("nan")] * 4
    expected = dict(zip(["Average", "Std", "Min", "Max"], stats, strict=True))
    for name in names:
        got = row[name]
        want = expected["Average" if name == log.key else name[: -len(log.key)]]
        assert type(got) is np.float32
        assert got == want or (np.isnan(got) and np.isnan(want)), (name, got, want)


def test_spinup_a_value_the_table_cannot_print_as_a_number_costs_no_epoch(
    tmp_path: Path,
) -> None:
    """Found by this suite: the table printed every value with `__float__` as `%8.3g`
    (Spinning Up's rule), so an array, a tensor of several values or an int beyond float
    range raised in `dump_tabular` before the row was stored, and, the row never cleared,
    every later `dump_tabular` raised again: the run's later epochs were lost. Such a
    value is printed as its text; an object whose `str()` raises is its repr in
    progress.txt (it raised there too, and the file lost the epoch's row)."""
    memory = MemoryPipeline()
    logger = EpochLogger(output_dir=tmp_path, pipeline=memory.pipe)
    odd = {
        "hist": np.array([1.0, 2.0]),
        "grad": torch.ones(3),
        "big": 10**400,
        "obj": strategies.NoText(),
    }
    for epoch in range(2):
        logger.log_tabular("Epoch", epoch)
        for key, value in odd.items():
            logger.log_tabular(key, value)
        logger.dump_tabular()
    logger.close()

    rows = read_progress(tmp_path / "progress.txt")
    assert [row["Epoch"] for row in rows] == ["0", "1"]
    assert all(row["hist"] == "[1. 2.]" and row["big"] == str(10**400) for row in rows)
    assert all(row["grad"] == str(torch.ones(3)) and row["obj"] == "<NoText>" for row in rows)
    assert [record["Epoch"] for record in memory.sink.records] == [0, 1]
    assert memory.sink.records[1]["hist"] == [1.0, 2.0]


class MemoryPipeline:
    """A pipeline into a MemorySink."""

    def __init__(self) -> None:
        from pipeline import Pipeline
        from sinks import MemorySink

        self.sink = MemorySink()
        self.pipe = Pipeline("memory", close_at_exit=False).to(self.sink)


@pytest.mark.parametrize("key", [1, None, ("a",), b"x"])
def test_spinup_a_key_that_is_not_a_text_is_refused_where_it_is_logged(
    key: Any, tmp_path: Path
) -> None:
    """Found by this suite: `log_tabular(1, 2.0)` was taken, and every later
    `dump_tabular` raised (the table measures `len(key)`): the run's later epochs were
    lost. A column's name is a text: any other key is a TypeError at `log_tabular`, and
    the epoch goes on."""
    memory = MemoryPipeline()
    logger = EpochLogger(output_dir=tmp_path, pipeline=memory.pipe)
    logger.log_tabular("Epoch", 0)
    with pytest.raises(TypeError, match="column name"):
        logger.log_tabular(key, 2.0)
    logger.dump_tabular()
    logger.log_tabular("Epoch", 1)
    logger.dump_tabular()
    logger.close()

    assert memory.sink.records == [{"Epoch": 0}, {"Epoch": 1}]
    assert [row["Epoch"] for row in read_progress(tmp_path / "progress.txt")] == ["0", "1"]


# -- Ray Tune: PipelineCallback on a real Trial, through the hooks Tune calls -----------------

pytest.importorskip("ray.tune")
from ray.tune.experiment import Trial  # noqa: E402
from ray.tune.logger import LoggerCallback  # noqa: E402

from pipeline.integrations.rllib import TUNE_TEXT_FIELDS, PipelineCallback  # noqa: E402

ITERATION = "training_iteration"

result_keys = st.one_of(
    strategies.text_keys, strategies.other_keys,
    st.sampled_from(["episode_return_mean", "a/b", "config", "hostname", "env_runners"]),
    st.builds(strategies.BadKey),  # its str() raises: named by its repr
)


def results(draw_iteration: bool = True) -> st.SearchStrategy[dict[Any, Any]]:
    """A Tune result: nested mappings (any keys: `/` in them, not texts, `config`) of any
    values, with Tune's `training_iteration` (a user's own too: an int, a float, a text)."""
    nested = st.recursive(
        strategies.values,
        lambda inner: st.dictionaries(result_keys, inner, max_size=3),
        max_leaves=8,
    )
    iteration = st.one_of(
        st.integers(1, 10**6), st.just(None), st.floats(0, 10), st.sampled_from(["3", True]),
        strategies.numpy_scalars([np.int64, np.float32]),
    )
    return st.builds(
        _result,
        st.dictionaries(result_keys, nested, max_size=5),
        iteration,
        st.dictionaries(st.sampled_from(["lr", "gamma", "model"]), strategies.values, max_size=2),
    )


def _result(metrics: dict[Any, Any], iteration: Any, config: dict[str, Any]) -> dict[Any, Any]:
    result = dict(metrics)
    if iteration is not None:
        result[ITERATION] = iteration
    result["config"] = config
    return result


@dataclass
class Flat:
    """What a Tune result promises (the rule of `flatten_result`, stated here on its own):
    its numbers by path, its other leaves, the paths met twice."""

    numbers: dict[str, float]
    dropped: list[str]
    twice: list[str]
    beyond: list[str]


def flat(result: dict[Any, Any]) -> Flat:
    out = Flat({}, [], [], [])
    seen: set[str] = set()

    def walk(prefix: str | None, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(_text(key) if prefix is None else f"{prefix}/{_text(key)}", item)
            return
        assert prefix is not None
        if prefix == "config" or prefix.startswith("config/"):
            return
        if prefix in seen:
            out.twice.append(prefix)
            return
        seen.add(prefix)
        number = _number(value)
        if number is None:
            out.dropped.append(prefix)
        else:
            if math.isinf(number) and isinstance(value, int) and not isinstance(value, bool):
                out.beyond.append(prefix)
            out.numbers[prefix] = number

    walk(None, result)
    return out


@suite(40)
@given(trial_results=st.lists(results(), min_size=1, max_size=5))
def test_tune_every_number_of_a_result_is_stored_once_the_rest_counted(
    trial_results: list[dict[Any, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each result a trial reports is one record, `{training_iteration, **numbers}`, every
    number as a float; each leaf that is not a number is counted under its key (warned once,
    but for Tune's own text fields), each path met twice counted as overwritten."""
    folder = tmp_path_factory.mktemp("tune")
    leaves = Leaves.under(folder)
    callback = PipelineCallback(lambda name: leaves.pipeline(name))
    trial = Trial("train", config={"lr": 0.1}, stub=True, trial_id="t")
    written: list[dict[Any, Any]] = []
    dropped: list[str] = []
    twice: list[str] = []
    beyond: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_trial_start(0, [trial], trial)
        pipe = callback.pipeline_for(trial)
        for count, result in enumerate(trial_results, 1):
            promised = flat(result)
            step = promised.numbers.pop(ITERATION, None)
            if step is None or not math.isfinite(step) or step != int(step):
                step = count
                if ITERATION in result and ITERATION not in promised.dropped:
                    dropped.append(ITERATION)  # a number that is no count
            written.append({ITERATION: int(step), **promised.numbers})
            dropped += promised.dropped
            twice += promised.twice
            beyond += promised.beyond
            callback.on_trial_result(count * 7, [trial], trial, copy.deepcopy(result))
        callback.on_trial_complete(count * 7, [trial], trial)
        callback.on_experiment_end([trial])
    caught_text = [str(w.message) for w in caught]

    assert isinstance(pipe, Pipeline) and pipe.closed
    check_leaves(pipe, leaves.specs(), written, caught_text, folder)
    assert callback.counts["dropped"] == len(dropped)
    assert callback.counts["overwritten"] == len(twice)
    assert callback.counts["changed"] == len(beyond)
    warned = [text for text in caught_text if text.startswith("rlpipe PipelineCallback")]
    for key in set(dropped) - TUNE_TEXT_FIELDS:
        told = [text for text in warned if text.startswith(f"rlpipe PipelineCallback: Tune "
                                                           f"result key {key!r} ")]
        assert len(told) == 1, (key, [text[:80] for text in warned])


@pytest.mark.parametrize("reported", ["3", 2.5, None, math.nan, "x"])
def test_tune_a_training_iteration_that_is_no_count_is_counted_not_taken(reported: Any) -> None:
    """Found by this suite: Tune keeps a trainable's own `training_iteration` (it sets the
    key only if missing), and the callback took `int()` of it: the text "3" became step 3
    and 2.5 became 2, silently; None, NaN or "x" raised inside Tune's callback. Such a value
    is counted as dropped (and warned about); the step is the count of results."""
    sink = MemoryPipeline()
    callback = PipelineCallback(lambda name: sink.pipe)
    trial = Trial("train", config={}, stub=True, trial_id="t")
    with pytest.warns(RuntimeWarning, match="'training_iteration' is not"):
        callback.on_trial_result(1, [trial], trial, {ITERATION: reported, "x": 1.0})
    callback.on_trial_result(2, [trial], trial, {ITERATION: 7, "x": 2.0})
    callback.on_trial_complete(2, [trial], trial)

    assert sink.sink.records == [{ITERATION: 1, "x": 1.0}, {ITERATION: 7, "x": 2.0}]
    assert callback.dropped == {ITERATION: 1}


def test_tune_an_int_beyond_float_range_is_counted_as_changed() -> None:
    """Found by this suite: an int beyond float range in a result was logged as inf,
    uncounted. It still is (a float is what a Tune metric is logged as), counted under
    "changed" and warned about once per key."""
    sink = MemoryPipeline()
    callback = PipelineCallback(lambda name: sink.pipe)
    trial = Trial("train", config={}, stub=True, trial_id="t")
    with pytest.warns(RuntimeWarning, match="beyond float range"):
        callback.on_trial_result(1, [trial], trial, {ITERATION: 1, "big": {"n": -(10**400)}})
    callback.on_trial_complete(1, [trial], trial)

    assert sink.sink.records == [{ITERATION: 1, "big/n": -math.inf}]
    assert callback.counts.by_key["changed"] == {"big/n": 1}


# -- Acme: make_logger / make_logger_factory, written as Acme writes (logger.write(dict)) ----

acme = pytest.importorskip("acme")
from acme.core import Actor  # noqa: E402
from acme.utils import loggers as acme_loggers  # noqa: E402

from pipeline.integrations.acme import make_logger, make_logger_factory  # noqa: E402
from sinks import MemorySink  # noqa: E402
from tests.conformance.sinks import CSV, JSONL, MEMORY  # noqa: E402


def acme_written(record: dict[Any, Any]) -> dict[Any, Any]:
    """What an Acme logger from `make_logger` stores of a record: its keys but those whose
    value is None (`drop_none`, Acme's NoneFilter), values as written."""
    return {key: value for key, value in record.items() if value is not None}


@suite(40)
@given(stream=strategies.streams(batch=False), data=st.data())
def test_acme_make_logger_stores_every_written_value_once_or_counts_it(
    stream: list[strategies.Op], data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Acme's loops and learners call `logger.write(dict)` (values: numpy scalars, 0-d
    arrays, ints, floats, ...); a logger of `make_logger` (or of a factory, under Acme's
    `(label, steps_key, task_instance)` signature) stores every non-None value in its CSV
    file and in each extra sink, once, as written; `close()` twice is one close."""
    folder = tmp_path_factory.mktemp("acme")
    memory, jsonl = MemorySink(), JSONL.make(folder)
    screen = io.StringIO()
    options: dict[str, Any] = dict(
        directory=folder, time_delta=0.0, terminal_stream=screen, csv_mode="w",
        extra_sinks=[jsonl, memory],
    )
    factory = None
    logger: Pipeline
    if data.draw(st.booleans(), label="through a factory"):
        factory = make_logger_factory(**options)
        logger = factory("out", steps_key=data.draw(st.sampled_from([None, "steps"])))
    else:
        logger = make_logger("out", **options)
    written: list[dict[Any, Any]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for op in stream:
            if op.kind == "flush":
                logger.flush()
                continue
            record = copy.deepcopy(op.data)
            written.append(acme_written(copy.deepcopy(op.data)))
            logger.write(record)
            if op.reuse:
                strategies.scribble(record)
        (factory or logger).close()
        logger.close()
    csv_sink = next(node for node in logger.nodes() if type(node).__name__ == "CsvSink")
    check_leaves(
        logger,
        iter([(CSV, csv_sink), (JSONL, jsonl), (MEMORY, memory)]),
        written,
        [str(w.message) for w in caught],
        folder,
    )


class RandomActor(Actor):
    """Uniformly random actions; learns nothing."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def select_action(self, observation: Any) -> np.int32:
        return np.int32(self.rng.integers(2))

    def observe_first(self, timestep: Any) -> None:
        pass

    def observe(self, action: Any, next_timestep: Any) -> None:
        pass

    def update(self, wait: bool = False) -> None:
        pass


def test_acme_environment_loop_records_reach_every_sink_as_acme_wrote_them(
    tmp_path: Path,
) -> None:
    """A real `acme.EnvironmentLoop` writes to Acme's own Dispatcher: its InMemoryLogger
    keeps each dict as Acme wrote it (numpy scalars, a 0-d array for the return), and a
    `make_logger` logger gets the same dicts; each is stored once, as written, in its CSV
    file, JSON Lines file and memory."""
    import gymnasium

    from pipeline.cli.demo_agent import GymnasiumEnvironment

    memory, jsonl = MemorySink(), JSONL.make(tmp_path)
    logger = make_logger(
        "out", directory=tmp_path, time_delta=0.0, terminal=False, csv_mode="w",
        extra_sinks=[jsonl, memory],
    )
    reference = acme_loggers.InMemoryLogger()
    env = GymnasiumEnvironment(gymnasium.make("CartPole-v1"), seed=0)
    loop = acme.EnvironmentLoop(
        env, RandomActor(0), logger=acme_loggers.Dispatcher([reference, logger])
    )
    loop.run(num_episodes=8)
    env.close()
    logger.close()

    assert len(reference.data) == 8
    assert isinstance(reference.data[0]["episode_return"], np.ndarray)
    csv_sink = next(node for node in logger.nodes() if type(node).__name__ == "CsvSink")
    check_leaves(
        logger,
        iter([(CSV, csv_sink), (JSONL, jsonl), (MEMORY, memory)]),
        [acme_written(record) for record in reference.data],
        [],
        tmp_path,
    )


def test_acme_a_new_run_appending_to_an_earlier_runs_csv_says_so(tmp_path: Path) -> None:
    """Found by this suite: `make_logger`'s CSV file appends by default (`csv_mode="a"`,
    for a resumed run), so a new run logging into the folder of an earlier one (Acme's own
    CSVLogger makes a new folder per run) mixed its rows into the old file, unnoticed. The
    rows are still appended (the documented default), with a warning naming the file; a
    run resumed from its state is not warned about."""
    first = make_logger("train", directory=tmp_path, terminal=False)
    first.write({"episode_return": 1.0})
    state = first.state_dict()
    first.close()

    with pytest.warns(RuntimeWarning, match=r"train\.csv.*earlier run"):
        second = make_logger("train", directory=tmp_path, terminal=False)
    second.write({"episode_return": 2.0})
    second.close()
    with (tmp_path / "train.csv").open(newline="") as handle:
        assert [row["episode_return"] for row in csv.DictReader(handle)] == ["1.0", "2.0"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = make_logger("train", directory=tmp_path, terminal=False, state=state)
    resumed.write({"episode_return": 3.0})
    resumed.close()
    with (tmp_path / "train.csv").open(newline="") as handle:
        assert [row["episode_return"] for row in csv.DictReader(handle)] == ["1.0", "3.0"]


# -- real framework runs: a PPO training, a Tune experiment ---------------------------------


@pytest.mark.slow
def test_sb3_ppo_training_stores_what_sb3s_own_csv_stores(tmp_path: Path) -> None:
    """A real PPO run with SB3's own CSV output and `attach`: every row SB3's progress.csv
    holds is a row of the CsvSink, every number the same, the step first."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure

    from pipeline.integrations.sb3 import attach

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, seed=0)
    model.set_logger(configure(str(tmp_path / "sb3"), ["csv"]))
    leaves = Leaves.under(tmp_path)
    pipe = leaves.pipeline("ppo")
    attach(model, pipe)
    model.learn(total_timesteps=256)
    model.logger.close()
    pipe.close()

    with (tmp_path / "sb3" / "progress.csv").open(newline="") as handle:
        theirs = list(csv.DictReader(handle))
    with (tmp_path / "out.csv").open(newline="") as handle:
        ours = list(csv.DictReader(handle))
    assert len(ours) == len(theirs) == 4
    for their_row, our_row in zip(theirs, ours, strict=True):
        assert next(iter(our_row)) == STEP
        assert our_row[STEP] == their_row["time/total_timesteps"]
        for key, cell in their_row.items():
            assert (float(our_row[key]) == float(cell)) if cell else our_row.get(key, "") == ""
    assert pipe.failures() == []


def adversarial_reporter(config: dict[str, Any]) -> None:
    """A function trainable reporting what a user's training code may: nested metrics, `/`
    in keys, keys that are not texts, text, None, lists, numpy scalars and 0-d arrays, NaN
    (Tune itself refuses torch tensors, and its TensorBoard logger ints beyond int64)."""
    from ray import tune

    for i in range(1, 4):
        tune.report(
            {
                "loss": np.float32(1.0 / i),
                "a/b": float(i),
                "a": {"c": np.int64(i), "d": {1: np.array(2.5), "e": np.float16(0.5)}},
                "note": "text",
                "none": None,
                "hist": [1.0, 2.0],
                "nan": math.nan,
            }
        )


@pytest.mark.slow
def test_tune_a_real_experiment_stores_each_trials_numbers_once_and_counts_the_rest(
    ray_session: Path, tmp_path: Path
) -> None:
    """A real `tune.Tuner` run (two trials): each trial's records are its results'
    numbers, flattened as the suite's own rule says; everything else is counted."""
    from ray import tune

    folders: dict[str, Path] = {}
    leaves: dict[str, Leaves] = {}
    pipes: dict[str, Pipeline] = {}

    def factory(name: str) -> Pipeline:
        folders[name] = tmp_path / f"trial{len(folders)}"
        folders[name].mkdir()
        leaves[name] = Leaves.under(folders[name])
        pipes[name] = leaves[name].pipeline(name)
        return pipes[name]

    class Results(LoggerCallback):  # type: ignore[misc]
        """Keeps each result Tune hands its logger callbacks, by trial name."""

        def __init__(self) -> None:
            self.by_trial: dict[str, list[dict[str, Any]]] = {}

        def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
            self.by_trial.setdefault(str(trial), []).append(copy.deepcopy(result))

    handed = Results()
    callback = PipelineCallback(factory)
    tuner = tune.Tuner(
        adversarial_reporter,
        param_space={"lr": tune.grid_search([0.5, 2.0])},
        run_config=tune.RunConfig(
            name="conformance", storage_path=str(tmp_path / "results"), verbose=0,
            callbacks=[handed, callback],
        ),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = tuner.fit()
    caught_text = [str(w.message) for w in caught]

    assert not results.errors
    assert sorted(leaves) == sorted(handed.by_trial)
    for name, trial_leaves in leaves.items():
        written = []
        for result in handed.by_trial[name]:
            promised = flat(result)
            step = promised.numbers.pop(ITERATION)
            written.append({ITERATION: int(step), **promised.numbers})
        assert [record[ITERATION] for record in written] == [1, 2, 3]
        assert written[0]["a/d/1"] == 2.5 and written[0]["a/d/e"] == 0.5
        assert {"note", "none", "hist", "hostname", "config/lr"}.isdisjoint(written[0])
        assert pipes[name].closed  # at the trial's end
        check_leaves(pipes[name], trial_leaves.specs(), written, caught_text, folders[name])
    assert {"note", "none", "hist"} <= set(callback.dropped)
    assert sum("'note'" in text and "PipelineCallback" in text for text in caught_text) == 1


def test_tune_a_key_with_no_text_costs_no_other_number() -> None:
    """Found by this suite: a result key whose `str()` raises made the callback raise inside
    Tune (the result's every number lost, the experiment stopped). The key is named by its
    repr (`pipeline.core.flatten`, the rule every flattening shares)."""
    sink = MemoryPipeline()
    callback = PipelineCallback(lambda name: sink.pipe)
    trial = Trial("train", config={}, stub=True, trial_id="t")
    result = {ITERATION: 1, strategies.BadKey(): 1.0, "x": {strategies.BadKey(): 2.0}, "y": 3.0}
    callback.on_trial_result(1, [trial], trial, result)
    callback.on_trial_complete(1, [trial], trial)

    assert sink.sink.records == [{ITERATION: 1, "<BadKey>": 1.0, "x/<BadKey>": 2.0, "y": 3.0}]
