"""NeptuneSink on the real Neptune clients, offline: what is written is what the run holds.

Every test writes through the sink into a real offline run (neptune 1.x or neptune-scale),
then reads the run's files back: neptune 1.x keeps JSON lines of operations in
`<data_dir>/offline/run__*/data-N.log`; neptune-scale keeps protobuf operations in
`<data_dir>/<project>_<run id>_<time>/run_operations.sqlite3`, read back with its own
OperationsRepository.
"""

from __future__ import annotations

import enum
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import Pipeline
from pipeline.core.node import ClosedError
from sinks.memory import MemorySink
from sinks.neptune import NeptuneSink, NeptuneSinkWarning
from tests.sinks.tracking import (
    NUMBER_FLOATS,
    classic_run_dirs,
    episodes,
    number_kinds,
    read_classic,
    read_scale,
)
from tests.sinks.tracking import NeptuneRun as RunData

pytestmark = pytest.mark.slow  # runs the real Neptune clients

REPO = Path(__file__).resolve().parents[2]
NEPTUNE_ENV = (
    "NEPTUNE_MODE",
    "NEPTUNE_PROJECT",
    "NEPTUNE_API_TOKEN",
    "NEPTUNE_DATA_DIRECTORY",
    "NEPTUNE_LOG_DIRECTORY",
)


@pytest.fixture(autouse=True)
def clean_neptune_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No NEPTUNE_* variable from the machine, and a scratch working directory."""
    for name in NEPTUNE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


# -- reading offline runs back ------------------------------------------------------------


def make_sink(client: str, tmp_path: Path, **options: Any) -> NeptuneSink:
    """A sink on a new offline run of `client` ("neptune" or "neptune-scale") in tmp_path."""
    if client == "neptune":
        return NeptuneSink(data_dir=tmp_path, **options)
    return NeptuneSink.scale(data_dir=tmp_path, **options)


def read_run(client: str, tmp_path: Path) -> RunData:
    """The one run of `client` in tmp_path."""
    return read_classic(tmp_path) if client == "neptune" else read_scale(tmp_path)


def same(a: Any, b: Any) -> bool:
    """Equal, where NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


# -- making and owning runs ---------------------------------------------------------------


def test_the_neptune_sync_command_that_uploads_offline_runs_starts() -> None:
    """The demo and the README tell users to upload offline runs with `neptune sync`; the
    1.x CLI imports pkg_resources, so the extra must keep a setuptools that has it."""
    done = subprocess.run(
        [sys.executable, "-c", "from neptune.cli.__main__ import main; main()", "sync", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--path" in done.stdout


def test_by_default_the_sink_makes_an_offline_run_that_needs_no_token(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path / "runs", name="offline-test", tags=["rl", "ppo"])
    assert sink.kind == "neptune"
    assert sink.owns_run
    sink.write({"loss": 0.5})
    sink.close()

    data = read_classic(tmp_path / "runs")
    assert data.series["loss"] == [(0, 0.5)]
    assert data.fields["sys/name"] == "offline-test"
    assert data.tags == {"rl", "ppo"}
    assert sink.run.get_state() == "stopped"


def test_data_lands_under_NEPTUNE_DATA_DIRECTORY_else_dot_neptune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    NeptuneSink().close()
    assert len(classic_run_dirs(tmp_path / ".neptune")) == 1

    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / "from-env"))
    NeptuneSink().close()
    assert len(classic_run_dirs(tmp_path / "from-env")) == 1
    assert os.environ["NEPTUNE_DATA_DIRECTORY"] == str(tmp_path / "from-env")


def test_data_dir_does_not_leak_into_the_environment(tmp_path: Path) -> None:
    NeptuneSink(data_dir=tmp_path / "here").close()
    assert "NEPTUNE_DATA_DIRECTORY" not in os.environ
    assert len(classic_run_dirs(tmp_path / "here")) == 1


def test_NEPTUNE_MODE_chooses_the_mode_of_the_run_it_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEPTUNE_MODE", "debug")  # debug: in memory only, values readable
    sink = NeptuneSink(data_dir=tmp_path, step_key="t")
    for t in (0, 3, 7):
        sink.write({"t": t, "x": t / 10})
    sink.flush()
    values = sink.run["x"].fetch_values()
    assert list(values["value"]) == [0.0, 0.3, 0.7]
    sink.close()
    assert not (tmp_path / "offline").exists()


def test_an_explicit_mode_wins_over_NEPTUNE_MODE(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEPTUNE_MODE", "debug")
    NeptuneSink(mode="offline", data_dir=tmp_path).close()
    assert len(classic_run_dirs(tmp_path)) == 1


def test_a_run_the_caller_made_is_used_and_not_stopped(tmp_path: Path) -> None:
    import neptune

    os.environ["NEPTUNE_DATA_DIRECTORY"] = str(tmp_path)  # undone by the autouse fixture
    run = neptune.init_run(
        mode="offline",
        capture_stdout=False,
        capture_stderr=False,
        capture_hardware_metrics=False,
        git_ref=False,
        source_files=[],
    )
    sink = NeptuneSink(run, prefix="eval", tags=["added"])
    assert sink.run is run and not sink.owns_run
    sink.write({"return": 1.5})
    sink.close()
    assert run.get_state() == "started"
    run["after"] = "still usable"
    run.stop()

    data = read_classic(tmp_path)
    assert data.series["eval/return"] == [(0, 1.5)]
    assert data.fields["after"] == "still usable"
    assert "added" in data.tags


def test_a_shared_run_is_stopped_when_the_last_sink_on_it_closes(tmp_path: Path) -> None:
    owner = NeptuneSink(data_dir=tmp_path, prefix="train", step_key="t")
    sharing = NeptuneSink(owner.run, prefix="eval", step_key="t")
    owner.write({"t": 0, "x": 1.0})
    owner.close()  # the maker closes first: the run stays open for the other sink
    assert owner.run.get_state() == "started"
    sharing.write({"t": 0, "x": 2.0})
    sharing.close()
    assert owner.run.get_state() == "stopped"

    data = read_classic(tmp_path)
    assert data.series["train/x"] == [(0, 1.0)]
    assert data.series["eval/x"] == [(0, 2.0)]


def test_creation_arguments_with_a_given_run_are_a_clear_error(tmp_path: Path) -> None:
    import neptune

    run = neptune.init_run(mode="debug", capture_hardware_metrics=False, git_ref=False)
    try:
        with pytest.raises(ValueError, match="mode, project only apply when NeptuneSink makes"):
            NeptuneSink(run, mode="offline", project="ws/p")
    finally:
        run.stop()


def test_an_object_that_is_not_a_run_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"neptune 1\.x Run .* or a neptune_scale\.Run"):
        NeptuneSink(run=object())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": 3}, "prefix must be a string"),
        ({"step_key": 1}, "step_key must be a string"),
        ({"config": [1, 2]}, "config must be a mapping"),
        ({"tags": "one-tag"}, "tags must be a collection of strings"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NeptuneSink(**kwargs)


def test_writing_after_close_raises(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path)
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(ClosedError):
        sink.write({"x": 1.0})


# -- values and steps (neptune 1.x) -------------------------------------------------------


def test_every_number_kind_becomes_a_float_series_at_its_step(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path, step_key="step")
    with pytest.warns(NeptuneSinkWarning, match="'huge_int': neptune runs cannot store NaN"):
        sink.write(
            {
                "step": 0,
                **number_kinds(),
                "huge_int": 10**400,
            }
        )
    sink.close()

    data = read_classic(tmp_path)
    expected = {"step": 0.0, **NUMBER_FLOATS}
    for key, value in expected.items():
        assert data.series[key] == [(0, value)], key
    assert "huge_int" not in data.series  # +inf: a 1.x run cannot store it
    assert sink.dropped == {"huge_int": 1}


def test_strings_become_string_series_and_None_is_skipped_quietly(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path, step_key="step")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NeptuneSinkWarning)
        sink.write({"step": 1, "phase": "warmup", "lr": None})
        sink.write({"step": 2, "phase": "train", "lr": 0.1})
    sink.close()

    data = read_classic(tmp_path)
    assert data.series["phase"] == [(1, "warmup"), (2, "train")]
    assert data.series["lr"] == [(2, 0.1)]
    assert not sink.dropped


def test_arrays_and_objects_are_not_sent_warned_once_per_key_and_counted(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path)
    with pytest.warns(NeptuneSinkWarning) as caught:
        for i in range(3):
            sink.write({"x": float(i), "obs": np.zeros(4), "info": {"a": 1}, "fn": print})
    sink.close()

    warned_keys = sorted(
        key for key in ("obs", "info", "fn") for w in caught if f"key {key!r}" in str(w.message)
    )
    assert warned_keys == ["fn", "info", "obs"]  # one warning each, not one per write
    assert sink.dropped == {"obs": 3, "info": 3, "fn": 3}
    assert sink.counts["dropped"] == 9  # `.dropped` is counts' per-key view
    data = read_classic(tmp_path)
    assert set(data.series) == {"x"}
    assert data.values("x") == [0.0, 1.0, 2.0]


def test_nan_and_inf_are_dropped_and_counted_for_a_1x_run(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path)
    with pytest.warns(NeptuneSinkWarning, match="cannot store NaN or infinity"):
        sink.write({"loss": float("nan")})
        sink.write({"loss": float("inf")})
        sink.write({"loss": np.float64("-inf")})
        sink.write({"loss": 1.0})
    sink.close()

    assert read_classic(tmp_path).series["loss"] == [(3, 1.0)]
    assert sink.dropped == {"loss": 3}


def test_the_step_key_value_is_the_step_and_zero_is_a_step(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path, step_key="actor_steps")
    sink.write({"actor_steps": 0, "return": 1.0})
    sink.write({"actor_steps": np.int64(120), "return": 2.0})
    sink.write({"actor_steps": 250.5, "return": 3.0})
    sink.close()

    data = read_classic(tmp_path)
    assert data.series["return"] == [(0, 1.0), (120, 2.0), (250.5, 3.0)]
    assert data.series["actor_steps"] == [(0, 0.0), (120, 120.0), (250.5, 250.5)]


def test_without_a_step_key_the_step_is_the_record_index(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path)
    for value in (5.0, 6.0, 7.0):
        sink.write({"x": value})
    sink.write({"y": 1.0})
    sink.close()

    data = read_classic(tmp_path)
    assert data.series["x"] == [(0, 5.0), (1, 6.0), (2, 7.0)]
    assert data.series["y"] == [(3, 1.0)]


def test_steps_that_do_not_increase_are_dropped_per_series_and_counted(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path, step_key="t")
    with pytest.warns(NeptuneSinkWarning, match="strictly increasing steps"):
        sink.write({"t": 10, "a": 1.0})
        sink.write({"t": 5, "a": 2.0, "b": 2.0})  # backwards for a; b is new
        sink.write({"t": 10, "a": 3.0, "b": 3.0})  # repeats a's step; b moves on
        sink.write({"t": 11, "a": 4.0})
    sink.close()

    data = read_classic(tmp_path)
    assert data.series["a"] == [(10, 1.0), (11, 4.0)]
    assert data.series["b"] == [(5, 2.0), (10, 3.0)]
    assert sink.dropped == {"a": 2, "t": 2}


def test_a_record_without_a_step_is_logged_at_the_last_step_seen(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path, step_key="t")
    with pytest.warns(NeptuneSinkWarning, match="logged at the last step seen"):
        sink.write({"loss": 0.9})  # no step yet: 0
        sink.write({"t": 40, "return": 1.0})
        sink.write({"loss": 0.5})
        sink.write({"t": None, "grad_norm": 2.0})
    sink.close()

    data = read_classic(tmp_path)
    assert data.series["loss"] == [(0, 0.9), (40, 0.5)]
    assert data.series["grad_norm"] == [(40, 2.0)]


def test_a_series_keeps_the_kind_of_its_first_value(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path)
    with pytest.warns(NeptuneSinkWarning, match="is a float series"):
        sink.write({"status": 1.0})
        sink.write({"status": "done"})
    sink.close()

    assert read_classic(tmp_path).series["status"] == [(0, 1.0)]
    assert sink.dropped == {"status": 1}


def test_keys_land_under_the_prefix(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path, prefix="train/")
    sink.write({"return": 1.0, "loss/actor": 0.1})
    sink.close()

    assert set(read_classic(tmp_path).series) == {"train/return", "train/loss/actor"}


class Phase(str, enum.Enum):
    WARMUP = "warmup"


def test_str_subclasses_are_strings_in_write_and_in_write_batch(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path, step_key="t")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NeptuneSinkWarning)
        sink.write({"t": 0, "phase": np.str_("start"), "enum": Phase.WARMUP})
        sink.write_batch(
            {
                "t": np.array([1, 2]),
                "phase": np.array(["warmup", "train"]),  # a numpy string column
                "x": np.array([0.5, 1.5]),
            }
        )
    sink.close()

    data = read_classic(tmp_path)
    assert data.series["phase"] == [(0, "start"), (1, "warmup"), (2, "train")]
    assert data.series["enum"] == [(0, "warmup")]  # its text, not str(): "Phase.WARMUP"
    assert data.series["x"] == [(1, 0.5), (2, 1.5)]
    assert not sink.dropped


@pytest.mark.parametrize("client", ["neptune", "neptune-scale"])
def test_keys_that_land_at_one_path_never_share_its_series(tmp_path: Path, client: str) -> None:
    # The 1.x client stores "a//b", "a/b/" and "/a/b" all at "a/b"; the keys 1 and "1" both
    # land at "1". The first key to reach a path writes its series; the others are refused.
    sink = make_sink(client, tmp_path)
    with pytest.warns(NeptuneSinkWarning) as caught:
        for i in range(3):
            sink.write(
                {
                    "a/b": float(i),
                    "a//b": 10.0 + i,
                    "q": 20.0 + i,
                    "q/": 30.0 + i,
                    "/lead": 40.0 + i,
                    "lead": 50.0 + i,
                    1: 60.0 + i,
                    "1": 70.0 + i,
                }
            )
    sink.close()

    data = read_run(client, tmp_path)
    assert data.series == {
        "a/b": [(0, 0.0), (1, 1.0), (2, 2.0)],
        "q": [(0, 20.0), (1, 21.0), (2, 22.0)],
        "lead": [(0, 40.0), (1, 41.0), (2, 42.0)],
        "1": [(0, 60.0), (1, 61.0), (2, 62.0)],
    }
    assert sink.dropped == {"a//b": 3, "q/": 3, "lead": 3, "1": 3}
    messages = [str(w.message) for w in caught]
    assert len(messages) == 4  # once per refused key
    assert "key 'a//b': it is stored as 'a/b', already written by key 'a/b'" in messages[0]
    assert "key '1': it is stored as '1', already written by key 1;" in messages[3]


def test_a_key_that_names_no_path_is_refused_and_the_prefix_is_normalised(
    tmp_path: Path,
) -> None:
    unprefixed = NeptuneSink(data_dir=tmp_path, step_key="t")
    prefixed = NeptuneSink(unprefixed.run, prefix="/train//", step_key="t")
    assert prefixed.prefix == "train"
    with pytest.warns(NeptuneSinkWarning, match="names no Neptune path"):
        for t in range(2):
            unprefixed.write({"t": t, "": 1.0, "/": 2.0, "ok": 3.0})
            prefixed.write({"t": t, "x//y": 4.0})
    prefixed.close()
    unprefixed.close()

    data = read_classic(tmp_path)
    assert set(data.series) == {"t", "ok", "train/t", "train/x/y"}
    assert data.series["train/x/y"] == [(0, 4.0), (1, 4.0)]
    assert unprefixed.dropped == {"": 2, "/": 2}
    assert not prefixed.dropped


@pytest.mark.parametrize("client", ["neptune", "neptune-scale"])
def test_two_sinks_with_one_prefix_on_one_run_never_interleave_a_series(
    tmp_path: Path, client: str
) -> None:
    first = make_sink(client, tmp_path, prefix="train")
    second = NeptuneSink(first.run, prefix="train/")  # the same namespace
    taken = "'train/x', already written by NeptuneSink.* on this run"
    with pytest.warns(NeptuneSinkWarning, match=taken):
        for i in range(3):
            first.write({"x": float(i)})
            second.write({"x": 10.0 + i, "y": 20.0 + i})
    second.close()
    first.close()

    data = read_run(client, tmp_path)
    assert data.series == {
        "train/x": [(0, 0.0), (1, 1.0), (2, 2.0)],
        "train/y": [(0, 20.0), (1, 21.0), (2, 22.0)],
    }
    assert not first.dropped
    assert second.dropped == {"x": 3}


def test_log_config_records_single_values_under_config(tmp_path: Path) -> None:
    config = {
        "lr": np.float32(0.5),
        "batch": 64,
        "env": "CartPole-v1",
        "double_q": True,
        "net": {"layers": [64, 64], "activation": "relu"},
        "seed": None,
        "wrappers": {},
    }
    sink = NeptuneSink(data_dir=tmp_path, config=config)
    sink.log_config({"extra": {"note": "second call adds fields"}})
    sink.close()

    fields = read_classic(tmp_path).fields
    assert fields["config/lr"] == 0.5
    assert fields["config/batch"] == 64
    assert fields["config/env"] == "CartPole-v1"
    assert fields["config/double_q"] is True
    assert fields["config/net/layers"] == "[64, 64]"
    assert fields["config/net/activation"] == "relu"
    assert fields["config/seed"] == "None"
    assert fields["config/wrappers"] == "{}"  # an empty mapping is a value, as in flatten()
    assert fields["config/extra/note"] == "second call adds fields"


# -- buffering ----------------------------------------------------------------------------


def test_write_buffers_and_flush_pushes_to_disk(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path)
    sink.push_seconds = 3600.0  # no background push during this test
    for i in range(5):
        sink.write({"x": float(i)})
    assert sink.pending == 5
    assert "x" not in read_classic(tmp_path).series

    sink.flush()
    assert sink.pending == 0
    assert read_classic(tmp_path).values("x") == [0.0, 1.0, 2.0, 3.0, 4.0]
    sink.close()


def test_the_background_thread_pushes_without_a_flush(tmp_path: Path) -> None:
    sink = NeptuneSink(data_dir=tmp_path)
    sink.push_seconds = 0.01
    sink.write({"x": 1.0})
    deadline = time.monotonic() + 120.0  # 0.01 s, or much more on a busy machine
    while sink.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.pending == 0
    sink.close()
    assert read_classic(tmp_path).series["x"] == [(0, 1.0)]


def test_more_than_max_buffered_records_are_pushed_by_the_thread_before_write_returns(
    tmp_path: Path,
) -> None:
    sink = NeptuneSink(data_dir=tmp_path)
    sink.push_seconds = 3600.0
    sink.max_buffered = 3
    for i in range(4):
        sink.write({"x": float(i)})
    assert sink.pending == 0  # the fourth write waited for the thread to take the records
    assert sink.counts["lost"] == 0
    sink.close()
    assert read_classic(tmp_path).values("x") == [0.0, 1.0, 2.0, 3.0]


def start_child(code: str, *arguments: str) -> subprocess.Popen[str]:
    """Runs `code` in a fresh interpreter from the repository; returns once it printed
    "ready" (the 1.x client prints its own lines before that)."""
    child = subprocess.Popen(
        [sys.executable, "-c", code, *arguments],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    while child.stdout.readline().strip() != "ready":
        assert child.poll() is None, child.stderr and child.stderr.read()
    return child


ALONE = """
import sys, time
from sinks.neptune import NeptuneSink
sink = NeptuneSink(data_dir=sys.argv[1], step_key="t")
sink.max_buffered = 64  # the thread pushes while the loop writes; the last rows stay held
for t in range(1000):
    sink.write({"t": t, "x": t * 0.5})
print("ready", flush=True)
# no flush, no close, no pipeline
if sys.argv[2] == "SIGTERM":
    time.sleep(60)
"""


@pytest.mark.parametrize("how", ["exit", "SIGTERM"])
def test_a_sink_alone_delivers_every_record_at_interpreter_exit_or_on_sigterm(
    tmp_path: Path, how: str
) -> None:
    child = start_child(ALONE, str(tmp_path), how)
    if how == "SIGTERM":
        child.send_signal(signal.SIGTERM)
    _, errors = child.communicate(timeout=120)
    assert child.returncode == (0 if how == "exit" else 128 + signal.SIGTERM), errors
    assert "NeptuneSinkWarning" not in errors and "RuntimeWarning" not in errors
    data = read_classic(tmp_path)
    assert data.series["x"] == [(t, t * 0.5) for t in range(1000)]
    assert data.series["t"] == [(t, float(t)) for t in range(1000)]


INTERRUPTED_PUSH = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
from sinks.neptune import NeptuneSink
data_dir, client, name = sys.argv[1:]
make = NeptuneSink.scale if client == "neptune-scale" else NeptuneSink
sink = make(data_dir=data_dir, step_key="t")
sink.push_seconds = 3600.0  # only the flush below pushes, on the main thread
for t in range(200):
    sink.write({"t": t, "a": t * 0.5, "b": -t, "s": f"v{t}"})
if client == "neptune-scale":
    from neptune_scale import Run as Client
    method = "log_metrics"  # called once per record
else:
    from neptune.handler import Handler as Client
    method = "extend"  # called once per series
send = getattr(Client, method)
def send_then_signal(*args, **kwargs):
    setattr(Client, method, send)
    send(*args, **kwargs)  # the real client takes the first call of the push...
    os.kill(os.getpid(), getattr(signal, name))  # ...and the signal arrives before the next
setattr(Client, method, send_then_signal)
print("ready", flush=True)
sink.flush()
print("the signal did not stop the program")
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("client", ["neptune", "neptune-scale"])
def test_a_signal_during_a_push_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, client: str, name: str
) -> None:
    child = start_child(INTERRUPTED_PUSH, str(tmp_path), client, name)
    out, errors = child.communicate(timeout=120)
    if name == "SIGTERM":
        assert child.returncode == 128 + signal.SIGTERM, errors
    else:  # Ctrl-C: KeyboardInterrupt, then Python ends itself by SIGINT
        assert child.returncode == -signal.SIGINT, errors
        assert "KeyboardInterrupt" in errors
    assert "did not stop" not in out
    assert "NeptuneSinkWarning" not in errors and "RuntimeWarning" not in errors
    data = read_run(client, tmp_path)
    assert data.series["a"] == [(t, t * 0.5) for t in range(200)]
    assert data.series["b"] == [(t, float(-t)) for t in range(200)]
    assert data.series["s"] == [(t, f"v{t}") for t in range(200)]
    assert data.series["t"] == [(t, float(t)) for t in range(200)]


LEFT_OPEN = """
import sys, time
from pipeline import Pipeline
from sinks import MemorySink
from sinks.neptune import NeptuneSink
data_dir, client, how = sys.argv[1:]
# A pipeline made before the run: rlpipe's exit handler is registered before the client's.
early = Pipeline("early").to(MemorySink())
make = NeptuneSink.scale if client == "scale" else NeptuneSink
sink = make(data_dir=data_dir, prefix="eval", step_key="steps")
evaluation = Pipeline("eval").aggregate("return", every=1000).to(sink)
raw_sink = NeptuneSink(sink.run, prefix="train", step_key="steps")
raw_sink.push_seconds = 3600.0
train = Pipeline("train").to(raw_sink)
for i in range(10):
    record = {"return": float(i), "steps": i}
    evaluation.write(record)
    train.write(record)
print("ready", flush=True)
if how == "exit":
    sys.exit(0)  # no close(), no flush()
time.sleep(60)
"""


@pytest.mark.parametrize("how", ["exit", "SIGTERM"])
@pytest.mark.parametrize("client", ["neptune", "scale"])
def test_a_pipeline_left_open_delivers_every_value_to_a_run_the_sink_made(
    tmp_path: Path, client: str, how: str
) -> None:
    # The client stops its run from an atexit handler registered when the run is made; the
    # pipelines (the aggregate's last window included) are closed before that handler runs.
    child = subprocess.Popen(
        [sys.executable, "-c", LEFT_OPEN, str(tmp_path / "data"), client, how],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    while child.stdout.readline().strip() != "ready":  # the 1.x client prints its own lines
        assert child.poll() is None, child.stderr and child.stderr.read()
    if how == "SIGTERM":
        child.send_signal(signal.SIGTERM)
    _, errors = child.communicate(timeout=120)
    assert child.returncode == (0 if how == "exit" else 128 + signal.SIGTERM), errors
    assert "NeptuneSinkWarning" not in errors and "RuntimeWarning" not in errors
    run = (read_scale if client == "scale" else read_classic)(tmp_path / "data")
    assert run.series["train/return"] == [(i, float(i)) for i in range(10)]
    values = [float(i) for i in range(10)]
    window = {
        "eval/return_mean": np.mean(values),
        "eval/return_std": np.std(values),
        "eval/return_median": np.median(values),
        "eval/return_max": 9.0,
        "eval/return_min": 0.0,
        "eval/steps": 9.0,
    }
    for path, expected in window.items():
        assert run.series[path] == [(9, pytest.approx(expected))], path


# -- neptune-scale ------------------------------------------------------------------------


def test_a_scale_run_gets_every_value_at_its_step(tmp_path: Path) -> None:
    sink = NeptuneSink.scale(
        data_dir=tmp_path,
        prefix="train",
        step_key="actor_steps",
        config={"lr": 0.1, "net": {"layers": [64, 64]}},
        tags=["scale"],
        name="exp-1",
    )
    assert sink.kind == "neptune-scale" and sink.owns_run
    sink.write({"actor_steps": 0, "return": 1.0, "ok": True, "phase": "warmup"})
    sink.write({"actor_steps": 30, "return": np.float32(2.5), "phase": "train", "none": None})
    sink.close()

    data = read_scale(tmp_path)
    assert data.series["train/return"] == [(0, 1.0), (30, 2.5)]
    assert data.series["train/actor_steps"] == [(0, 0.0), (30, 30.0)]
    assert data.series["train/ok"] == [(0, 1.0)]
    assert data.series["train/phase"] == [(0, "warmup"), (30, "train")]
    assert "train/none" not in data.series
    assert data.fields["config/lr"] == 0.1
    assert data.fields["config/net/layers"] == "[64, 64]"
    assert data.tags == {"scale"}


def test_a_scale_run_stores_nan_and_inf(tmp_path: Path) -> None:
    sink = NeptuneSink.scale(data_dir=tmp_path)
    for value in (float("nan"), float("inf"), -math.inf, 1.0):
        sink.write({"loss": value})
    sink.close()

    got = read_scale(tmp_path).series["loss"]
    assert [step for step, _ in got] == [0, 1, 2, 3]
    expected = [math.nan, math.inf, -math.inf, 1.0]
    assert all(same(a, b) for (_, a), b in zip(got, expected, strict=True))
    assert not sink.dropped


def test_a_scale_run_drops_backwards_and_negative_steps(tmp_path: Path) -> None:
    sink = NeptuneSink.scale(data_dir=tmp_path, step_key="t")
    with pytest.warns(NeptuneSinkWarning):
        sink.write({"t": 5, "x": 1.0})
        sink.write({"t": 3, "x": 2.0})
        sink.write({"t": -1, "y": 2.0})
        sink.write({"t": 6, "x": 3.0})
    sink.close()

    data = read_scale(tmp_path)
    assert data.series["x"] == [(5, 1.0), (6, 3.0)]
    assert "y" not in data.series
    assert sink.dropped == {"x": 1, "y": 1, "t": 2}


def test_a_scale_run_the_caller_made_is_not_closed(tmp_path: Path) -> None:
    from neptune_scale import Run

    run = Run(
        project="team/project",
        mode="offline",
        log_directory=tmp_path,
        enable_console_log_capture=False,
        source_tracking_config=None,
    )
    sink = NeptuneSink(run, prefix="eval", step_key="t")
    assert sink.kind == "neptune-scale" and not sink.owns_run
    sink.write({"t": 1, "return": 4.0})
    sink.close()
    run.log_metrics({"after": 1.0}, step=2)  # still open
    run.close()

    data = read_scale(tmp_path)
    assert data.series["eval/return"] == [(1, 4.0)]
    assert data.series["after"] == [(2, 1.0)]


def test_scale_rejects_a_mode_it_does_not_know(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'async', 'offline' or 'disabled'"):
        NeptuneSink.scale(data_dir=tmp_path, mode="debug")


# -- the pipeline from the issue ----------------------------------------------------------


@pytest.mark.parametrize("client", ["neptune", "neptune-scale"])
def test_a_smoothing_pipeline_leaves_every_value_at_its_step(tmp_path: Path, client: str) -> None:
    if client == "neptune":
        sink = NeptuneSink(prefix="train", step_key="actor_steps", data_dir=tmp_path)
    else:
        sink = NeptuneSink.scale(prefix="train", step_key="actor_steps", data_dir=tmp_path)
    written = MemorySink()
    logger = Pipeline("train").smooth("return").to(sink, written)
    for record in episodes(200):
        logger.write(record)
    logger.close()

    data = read_classic(tmp_path) if client == "neptune" else read_scale(tmp_path)
    keys = {key for record in written.records for key in record}
    assert "return_smoothed_0.99" in keys
    assert set(data.series) == {f"train/{key}" for key in keys}
    for key in keys:
        expected = [(record["actor_steps"], float(record[key])) for record in written.records]
        assert data.series[f"train/{key}"] == expected, key
    assert not sink.dropped
