"""TensorBoardSink on tensorboard's own writer: what is written is what TensorBoard reads.

Every test writes through the sink into real event files under tmp_path, then reads them back
with TensorBoard's own loader, `EventAccumulator` (every scalar and tensor kept), as
TensorBoard does when it shows the run: scalars as (step, float32 value), strings as text
tensors; the raw events, where a test counts them, with tensorboard's `EventFileLoader`.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import Pipeline
from pipeline.core.isolation import StoreError
from pipeline.core.node import ClosedError
from pipeline.core.values import to_float
from sinks.memory import MemorySink
from sinks.tensorboard import TensorBoardSink, TensorBoardSinkWarning
from tests.sinks.tracking import episodes
from tests.sinks.tracking import read_tensorboard as read

REPO = Path(__file__).resolve().parents[2]

# The core suite runs without extras: there, this module is skipped.
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="needs rlpipe[tensorboard]"
)
event_file_loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
tensor_util = pytest.importorskip("tensorboard.util.tensor_util")


# -- reading event files back -------------------------------------------------------------


def summary_events(logdir: Path) -> list[Any]:
    """The events holding a summary, from every event file in `logdir`, in file order."""
    return [
        event
        for path in sorted(logdir.glob("events.out.tfevents.*"))
        for event in event_file_loader.EventFileLoader(str(path)).Load()
        if event.HasField("summary")
    ]


def f32(value: Any) -> float:
    """The value as TensorBoard stores a scalar: a float32 (+-inf beyond its range)."""
    number = to_float(value)
    assert number is not None
    with np.errstate(over="ignore"):
        return float(np.float32(number))


def same(a: float, b: float) -> bool:
    """Equal, where NaN equals NaN."""
    return a == b or (math.isnan(a) and math.isnan(b))


# -- import and arguments -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"logdir": 3}, "logdir must be a folder path"),
        ({"logdir": ""}, "logdir must be a folder path"),
        ({"prefix": 3}, "prefix must be a string"),
        ({"step_key": 1}, "step_key must be a string"),
        ({"flush_seconds": 0}, "flush_seconds must be a number > 0"),
        ({"flush_seconds": -1.0}, "flush_seconds must be a number > 0"),
        ({"flush_seconds": math.inf}, "flush_seconds must be a number > 0"),
        ({"flush_seconds": True}, "flush_seconds must be a number > 0"),
        ({"purge_step": 1.5}, "purge_step must be an int"),
        ({"purge_step": True}, "purge_step must be an int"),
        ({"purge_step": 2**63}, "purge_step must be an int"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    arguments = {"logdir": tmp_path / "run", **kwargs}
    with pytest.raises(ValueError, match=message):
        TensorBoardSink(**arguments)
    assert not (tmp_path / "run").exists()


def test_the_logdir_is_made_and_named_in_repr(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path / "runs" / "a", prefix="/train/", step_key="t")
    assert (tmp_path / "runs" / "a").is_dir()
    assert len(list((tmp_path / "runs" / "a").glob("events.out.tfevents.*"))) == 1
    assert (
        repr(sink)
        == f"TensorBoardSink({str(tmp_path / 'runs' / 'a')!r}, prefix='train', step_key='t')"
    )
    sink.close()


def test_a_relative_logdir_is_taken_from_the_folder_current_when_the_sink_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sink = TensorBoardSink("runs")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    sink.write({"x": 1.0})
    sink.close()
    assert sink.logdir == str(tmp_path / "runs")
    assert read(tmp_path / "runs").scalars == {"x": [(0, 1.0)]}
    assert not list((tmp_path / "elsewhere").iterdir())


def test_close_twice_then_writing_raises_closed_error(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path)
    sink.write({"x": 1.0})
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(ClosedError):
        sink.write({"x": 2.0})
    assert read(tmp_path).scalars == {"x": [(0, 1.0)]}


# -- what TensorBoard reads back ----------------------------------------------------------


def test_every_scalar_is_read_back_at_its_step_for_changing_key_sets(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    keys = ["return", "loss", "entropy", "grad_norm", "lr"]
    written: list[dict[str, Any]] = []
    sink = TensorBoardSink(tmp_path)
    for _ in range(300):
        chosen = [key for key in keys if rng.random() < 0.6]
        record = {key: float(rng.normal()) * 10 ** int(rng.integers(-3, 4)) for key in chosen}
        sink.write(record)
        written.append(record)
    sink.close()

    run = read(tmp_path)
    for key in keys:
        expected = [(step, f32(r[key])) for step, r in enumerate(written) if key in r]
        assert run.scalars[key] == expected, key
    assert set(run.scalars) == set(keys)


def test_one_event_per_record_holds_all_its_values_at_the_time_of_write(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path, step_key="actor_steps")
    before = time.time()
    for record in episodes(5):
        sink.write(record)
    after = time.time()
    sink.write({"actor_steps": 500, "phase": "eval", "return": 1.0})
    sink.close()

    events = summary_events(tmp_path)
    steps = [record["actor_steps"] for record in episodes(5)] + [500]
    assert [event.step for event in events] == steps
    assert [len(event.summary.value) for event in events] == [5] * 5 + [3]
    assert all(before <= event.wall_time <= after for event in events[:5])


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    value = st.one_of(
        st.floats(width=64),  # NaN, +-inf and values beyond float32 included
        st.integers(min_value=-(2**1100), max_value=2**1100),
        st.booleans(),
        st.none(),
        st.text(max_size=5),
    )
    return draw(st.lists(st.dictionaries(st.sampled_from("abc"), value), max_size=12))


@settings(max_examples=40, deadline=None)
@given(stream=streams())
def test_what_is_read_back_is_every_value_at_its_step(
    tmp_path_factory: pytest.TempPathFactory, stream: list[dict[str, Any]]
) -> None:
    """Numbers as float32 scalars, strings as texts, None skipped; a key keeps the kind of its
    first value and the values of the other kind are the ones dropped."""
    logdir = tmp_path_factory.mktemp("tb")
    sink = TensorBoardSink(logdir, prefix="p")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TensorBoardSinkWarning)
        for record in stream:
            sink.write(record)
        sink.close()

    kinds: dict[str, type] = {}
    scalars: dict[str, list[tuple[int, float]]] = {}
    texts: dict[str, list[tuple[int, str]]] = {}
    dropped: dict[str, int] = {}
    for step, record in enumerate(stream):
        for key, value in record.items():
            if value is None:
                continue
            kind = kinds.setdefault(key, str if isinstance(value, str) else float)
            if (kind is str) != isinstance(value, str):
                dropped[key] = dropped.get(key, 0) + 1
            elif kind is str:
                texts.setdefault(f"p/{key}", []).append((step, value))
            else:
                scalars.setdefault(f"p/{key}", []).append((step, f32(value)))
    run = read(logdir)
    assert run.texts == texts
    assert run.scalars.keys() == scalars.keys()
    for tag, expected in scalars.items():
        got = run.scalars[tag]
        assert [step for step, _ in got] == [step for step, _ in expected]
        assert all(same(a, b) for (_, a), (_, b) in zip(got, expected, strict=True)), tag
    assert sink.dropped == dropped


def test_without_a_step_key_the_step_is_the_record_index(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path)
    for value in (5.0, 6.0, 7.0):
        sink.write({"x": value})
    sink.write({"y": 1.0})
    sink.close()

    run = read(tmp_path)
    assert run.scalars == {"x": [(0, 5.0), (1, 6.0), (2, 7.0)], "y": [(3, 1.0)]}
    assert sink.records_written == 4


def test_the_step_key_value_is_the_step_and_is_a_scalar_too(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path, step_key="actor_steps")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TensorBoardSinkWarning)
        sink.write({"actor_steps": 0, "return": 1.0})
        sink.write({"actor_steps": np.int64(120), "return": 2.0})
        sink.write({"actor_steps": 250.0, "return": 3.0})
        sink.write({"actor_steps": 10**15, "return": 4.0})
    sink.close()

    run = read(tmp_path)
    assert run.scalars["return"] == [(0, 1.0), (120, 2.0), (250, 3.0), (10**15, 4.0)]
    assert run.scalars["actor_steps"] == [(0, 0.0), (120, 120.0), (250, 250.0), (10**15, f32(1e15))]


def test_a_record_without_a_step_is_written_at_the_last_step_seen(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path, step_key="t")
    with pytest.warns(TensorBoardSinkWarning, match="logged at the last step seen"):
        sink.write({"loss": 0.9})  # no step yet: 0
        sink.write({"t": 40, "return": 1.0})
        sink.write({"loss": 0.5})
        sink.write({"t": None, "grad_norm": 2.0})
    sink.close()

    run = read(tmp_path)
    assert run.scalars["loss"] == [(0, f32(0.9)), (40, 0.5)]
    assert run.scalars["grad_norm"] == [(40, 2.0)]
    assert sink.counts["skipped"] == 3


def test_a_step_that_is_not_an_integer_is_written_at_its_floor(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path, step_key="epoch")
    with pytest.warns(TensorBoardSinkWarning, match=r"written at its floor \(2\)") as caught:
        sink.write({"epoch": 2.5, "x": 1.0})
        sink.write({"epoch": 3.75, "x": 2.0})
        sink.write({"epoch": -0.5, "x": 3.0})
    sink.close()

    assert len(caught) == 1
    assert caught[0].filename == __file__  # the warning names the caller of write
    assert read(tmp_path).scalars["x"] == [(2, 1.0), (3, 2.0), (-1, 3.0)]
    assert sink.counts["rounded"] == 3


def test_the_values_of_a_record_whose_step_is_beyond_int64_are_dropped(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path, step_key="t")
    with pytest.warns(TensorBoardSinkWarning, match="beyond TensorBoard's int64 steps"):
        sink.write({"t": 2**63, "x": 1.0, "none": None})
        sink.write({"t": -1e30, "x": 2.0})
        sink.write({"t": 2**63 - 1, "x": 3.0})
    sink.close()

    assert read(tmp_path).scalars["x"] == [(2**63 - 1, 3.0)]
    assert sink.dropped == {"t": 2, "x": 2}


def test_tags_are_the_keys_under_the_prefix_and_sinks_can_share_a_folder(
    tmp_path: Path,
) -> None:
    train = TensorBoardSink(tmp_path, prefix="train/")
    evaluation = TensorBoardSink(tmp_path, prefix="eval")
    train.write({"return": 1.0, "loss/actor": 0.5})
    evaluation.write({"return": 2.0})
    train.close()
    evaluation.close()

    run = read(tmp_path)
    assert run.scalars == {
        "train/return": [(0, 1.0)],
        "train/loss/actor": [(0, 0.5)],
        "eval/return": [(0, 2.0)],
    }


# -- value rules --------------------------------------------------------------------------


def test_every_number_kind_becomes_a_scalar(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TensorBoardSinkWarning)
        for _ in range(2):  # the second time, through the cached numeric types
            sink.write(
                {
                    "float": 0.1,
                    "int": 3,
                    "big_int": 2**40 + 1,
                    "bool": True,
                    "np_float32": np.float32(1.5),
                    "np_float64": np.float64(0.2),
                    "np_int64": np.int64(7),
                    "np_uint8": np.uint8(200),
                    "np_bool": np.bool_(False),
                    "zero_d_array": np.array(2.5),
                }
            )
    sink.close()

    expected = {
        "float": f32(0.1),
        "int": 3.0,
        "big_int": f32(2**40),  # float32 precision, as TensorBoard stores it
        "bool": 1.0,
        "np_float32": 1.5,
        "np_float64": f32(0.2),
        "np_int64": 7.0,
        "np_uint8": 200.0,
        "np_bool": 0.0,
        "zero_d_array": 2.5,
    }
    assert read(tmp_path).scalars == {key: [(0, v), (1, v)] for key, v in expected.items()}
    assert not sink.counts


@pytest.mark.slow  # imports torch
def test_torch_scalars_become_scalars_and_a_tensor_a_histogram(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    sink = TensorBoardSink(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TensorBoardSinkWarning)
        sink.write({"float": torch.tensor(4.5), "int": torch.tensor(9), "obs": torch.zeros(3)})
        sink.write({"float": torch.tensor(0.5)})
        sink.close()

    run = read(tmp_path)
    assert run.scalars == {"float": [(0, 4.5), (1, 0.5)], "int": [(0, 9.0)]}
    assert [(step, h.count, h.low, h.high) for step, h in run.histograms["obs"]] == [
        (0, 3, 0.0, 0.0)
    ]
    assert sink.dropped == {}


def test_a_mutable_value_is_taken_as_it_was_at_write(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path)
    value = np.array(1.0)
    sink.write({"x": value})
    value[()] = 2.0  # changed after write, before the push
    sink.close()
    assert read(tmp_path).scalars["x"] == [(0, 1.0)]


def test_nan_and_inf_are_stored_and_read_back_as_they_are(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TensorBoardSinkWarning)
        for value in (math.nan, math.inf, -math.inf, np.float32("nan"), 1.0):
            sink.write({"loss": value})
    sink.close()

    got = read(tmp_path).values("loss")
    expected = [math.nan, math.inf, -math.inf, math.nan, 1.0]
    assert all(same(a, b) for a, b in zip(got, expected, strict=True)), got
    assert not sink.counts


def test_finite_values_beyond_float32_become_infinity_warned_once_per_key_and_counted(
    tmp_path: Path,
) -> None:
    sink = TensorBoardSink(tmp_path)
    with pytest.warns(TensorBoardSinkWarning, match="beyond float32's range") as caught:
        sink.write({"big": 1e300, "huge_int": 10**400, "int": 10**40, "fits": 3e38})
        sink.write({"big": -1e39, "huge_int": -(10**400), "int": -(10**40), "fits": -3e38})
    sink.close()

    assert sorted(str(w.message).split("'")[1] for w in caught) == ["big", "huge_int", "int"]
    run = read(tmp_path)
    for key in ("big", "huge_int", "int"):
        assert run.values(key) == [math.inf, -math.inf], key
    assert run.values("fits") == [f32(3e38), f32(-3e38)]
    assert sink.counts.by_key["overflow"] == {"big": 2, "huge_int": 2, "int": 2}


def test_strings_are_text_summaries_and_none_is_skipped_quietly(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path, step_key="step")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TensorBoardSinkWarning)
        sink.write({"step": 1, "phase": "warmup", "lr": None})
        sink.write({"step": 2, "phase": "train ✓ \n**bold**", "lr": 0.5})
    with pytest.warns(TensorBoardSinkWarning, match="lone surrogate"):
        sink.write({"step": 3, "phase": "bad \udc80 surrogate"})
        sink.close()  # found when the text is encoded, by the push

    run = read(tmp_path)
    assert run.texts["phase"] == [
        (1, "warmup"),
        (2, "train ✓ \n**bold**"),
        (3, "bad \\udc80 surrogate"),  # a lone surrogate is not UTF-8: escaped, counted
    ]
    assert run.scalars["lr"] == [(2, 0.5)]
    assert sink.counts == {"changed": 1}


def test_objects_are_not_written_warned_once_per_key_and_counted(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path)
    with pytest.warns(TensorBoardSinkWarning) as caught:
        for i in range(3):
            sink.write(
                {"x": float(i), "obs": np.zeros(4), "info": {"a": 1}, "raw": b"1", "fn": print}
            )
    sink.close()

    assert sorted(str(w.message).split("'")[1] for w in caught) == ["fn", "info", "raw"]
    assert all(w.filename == __file__ for w in caught)
    assert sink.dropped == {"info": 3, "raw": 3, "fn": 3}
    assert sink.counts["dropped"] == 9
    run = read(tmp_path)
    assert run.scalars == {"x": [(0, 0.0), (1, 1.0), (2, 2.0)]} and not run.texts
    assert [(step, h.count) for step, h in run.histograms["obs"]] == [(0, 4), (1, 4), (2, 4)]


def test_a_tag_keeps_the_kind_of_its_first_value(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path)
    with pytest.warns(TensorBoardSinkWarning, match="a TensorBoard tag has one kind") as caught:
        sink.write({"status": 1.0, "phase": "warmup"})
        sink.write({"status": "done", "phase": 2.0})
        sink.write({"status": 3.0, "phase": "train"})
    sink.close()

    assert len(caught) == 2
    run = read(tmp_path)
    assert run.scalars == {"status": [(0, 1.0), (2, 3.0)]}
    assert run.texts == {"phase": [(0, "warmup"), (2, "train")]}
    assert sink.dropped == {"status": 1, "phase": 1}


# -- buffering, flushing, failures --------------------------------------------------------


def test_write_holds_records_until_a_flush(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path, flush_seconds=3600)
    for i in range(5):
        sink.write({"x": float(i)})
    assert sink.pending == 5
    assert read(tmp_path).scalars == {}

    sink.flush()
    assert sink.pending == 0
    assert read(tmp_path).values("x") == [0.0, 1.0, 2.0, 3.0, 4.0]  # on disk, not yet closed
    sink.close()


def test_the_background_thread_writes_every_flush_seconds(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path, flush_seconds=0.05)
    assert sink.push_seconds == 0.05
    sink.write({"x": 1.0})
    deadline = time.monotonic() + 120.0  # 0.05 s, or much more on a busy machine
    while not read(tmp_path).scalars and time.monotonic() < deadline:
        time.sleep(0.02)
    assert read(tmp_path).scalars == {"x": [(0, 1.0)]}  # no flush, no close
    sink.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_failing_writer_is_replaced_by_a_new_file_and_nothing_is_lost(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    sink = TensorBoardSink(logdir, flush_seconds=3600)
    sink.write({"x": 0.0})
    sink.flush()
    shutil.rmtree(logdir)  # the event file and its folder are gone: tensorboard's writer fails
    for i in (1, 2, 3):
        sink.write({"x": float(i)})
    with (
        pytest.warns(TensorBoardSinkWarning, match="pushing to the client failed"),
        pytest.raises(StoreError, match="3 rows are kept"),
    ):
        sink.flush()
    assert sink.counts["errors"] == 1 and sink.pending == 3

    sink.write({"x": 4.0})
    sink.flush()  # a new writer makes the folder and a new event file
    sink.close()
    assert read(logdir).scalars == {"x": [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]}
    assert sink.counts["lost"] == 0


# -- in a pipeline, at exit, on resume ----------------------------------------------------


def test_in_a_pipeline_it_gets_the_values_a_memory_sink_gets(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path, prefix="train", step_key="actor_steps")
    written = MemorySink()
    logger = Pipeline("train").smooth("return").to(sink, written)
    for record in episodes(200):
        logger.write(record)
    logger.close()

    run = read(tmp_path)
    keys = {key for record in written.records for key in record}
    assert "return_smoothed_0.99" in keys
    assert set(run.scalars) == {f"train/{key}" for key in keys}
    for key in keys:
        expected = [(record["actor_steps"], f32(record[key])) for record in written.records]
        assert run.scalars[f"train/{key}"] == expected, key
    assert not sink.counts


LEFT_OPEN = """
import sys, time
from pipeline import Pipeline
from sinks.tensorboard import TensorBoardSink
logdir, how = sys.argv[1:]
sink = TensorBoardSink(logdir, prefix="train", step_key="t", flush_seconds=3600)
for t in range(3):
    sink.write({"t": t, "x": t * 0.5})
evaluation = Pipeline("eval").aggregate("return", every=1000).to(
    TensorBoardSink(logdir, prefix="eval", step_key="t", flush_seconds=3600)
)
for t in range(10):
    evaluation.write({"t": t, "return": float(t)})
print("ready", flush=True)
# no flush, no close: the records are still held, the aggregate's window still open
if how == "SIGTERM":
    time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["exit", "SIGTERM"])
def test_records_held_at_interpreter_exit_or_sigterm_reach_the_file(
    tmp_path: Path, how: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", LEFT_OPEN, str(tmp_path), how],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready", child.stderr and child.stderr.read()
    if how == "SIGTERM":
        child.send_signal(signal.SIGTERM)
    _, errors = child.communicate(timeout=60)
    assert child.returncode == (0 if how == "exit" else 128 + signal.SIGTERM), errors
    assert "Warning" not in errors and "Traceback" not in errors, errors

    run = read(tmp_path)
    assert run.scalars["train/x"] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    values = np.arange(10.0)
    assert run.scalars["eval/return_mean"] == [(9, f32(np.mean(values)))]
    assert run.scalars["eval/return_std"] == [(9, f32(np.std(values)))]
    assert run.scalars["eval/return_max"] == [(9, 9.0)]


@pytest.mark.slow  # waits for the clock's next second: event files are ordered by name
def test_purge_step_drops_the_steps_written_before_a_resume(tmp_path: Path) -> None:
    first = TensorBoardSink(tmp_path, step_key="t")
    for t in range(10):
        first.write({"t": t, "x": float(t)})
    first.close()  # as if preempted after step 9, with a checkpoint at step 6
    second = int(time.time()) + 1
    # the resumed run's file is named after the first's; a process paused past `second`
    # (a busy machine) has nothing left to wait for, and a negative sleep would raise
    time.sleep(max(0.0, second - time.time()))

    resumed = TensorBoardSink(tmp_path, step_key="t", purge_step=6)
    for t in range(6, 8):
        resumed.write({"t": t, "x": 100.0 + t})
    resumed.close()

    files = sorted(tmp_path.glob("events.out.tfevents.*"))
    assert len(files) == 2
    steps_and_values = [(t, float(t)) for t in range(6)] + [(6, 106.0), (7, 107.0)]
    assert read(tmp_path).scalars["x"] == steps_and_values


FILE_SIZE_LIMIT = """
import glob, os, resource, signal, sys
from pipeline.core.isolation import StoreError
from sinks.tensorboard import TensorBoardSink

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
logdir = sys.argv[1]
sink = TensorBoardSink(logdir, flush_seconds=3600)
for t in range(10):
    sink.write({"x": float(t)})
sink.flush()
(path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 300, hard))
for t in range(10, 30):
    sink.write({"x": float(t)})
try:
    sink.flush()  # the file fills up partway through the push
except StoreError:
    print("failed")
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
sink.flush()  # the retry, into a new file
sink.close()
print(sink.counts["errors"], sink.counts["lost"])
"""


def test_a_push_that_fails_partway_is_written_once_by_its_retry(tmp_path: Path) -> None:
    """A real write error (the file size limit, as a full disk) partway through a push:
    the events of that push that reached the old file are taken out of it again, so the
    retry writes each point once."""
    result = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["failed", "1", "0"], result.stderr
    assert read(tmp_path).scalars == {"x": [(t, float(t)) for t in range(30)]}
