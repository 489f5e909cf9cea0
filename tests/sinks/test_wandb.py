"""WandbSink on the real wandb client, offline: what is written is what the run's file holds.

Every test writes through the sink into a real offline W&B run, then reads the run's
transaction log back (`<run_dir>/run-<id>.wandb`): wandb 0.31 ships no Python reader of it
any more (the old `wandb.sdk.internal.datastore` is gone; its Go service writes the file), so
`read_run` below walks the file's framing (LevelDB's log format with W&B's 7-byte header)
and decodes each record with wandb's own protobuf, `wandb.proto.wandb_internal_pb2.Record`:
history rows (`history.step.num`, items with `value_json`) and config updates.

wandb's service process writes the file on its own time, even after `run.finish()` returns,
so `read_run` waits for the run's closing `exit` record.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import Pipeline
from pipeline.core.node import ClosedError
from sinks.memory import MemorySink
from sinks.wandb import WandbSink, WandbSinkWarning
from tests.sinks.tracking import NUMBER_FLOATS, episodes, number_kinds, wandb_file
from tests.sinks.tracking import parse_wandb as parse_run
from tests.sinks.tracking import read_wandb as read_run

REPO = Path(__file__).resolve().parents[2]
WANDB_DIRS = ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")
"""Where wandb keeps its settings, caches and its service's debug logs (the home folder by
default): pointed at a scratch folder for the whole module."""


@pytest.fixture(scope="module", autouse=True)
def wandb_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """wandb's own folders under a scratch folder, for the module: wandb's service, started
    by the first run of the process, reads them once (changing them later would only make
    wandb warn). No WANDB_MODE or WANDB_DIR from the machine."""
    scratch = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in WANDB_DIRS:
            patch.setenv(name, str(scratch / name.lower()))
        patch.delenv("WANDB_MODE", raising=False)
        patch.delenv("WANDB_DIR", raising=False)
        patch.setenv("WANDB_SILENT", "true")
        yield scratch


@pytest.fixture(autouse=True)
def scratch_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test in its own working directory: the sink's default `./runs` lands there."""
    monkeypatch.chdir(tmp_path)


def child_env(**changes: str | None) -> dict[str, str]:
    """The environment for a child process: this one's, with `changes` (None unsets)."""
    env = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_dirs(root: Path) -> list[Path]:
    return sorted(root.glob("wandb/offline-run-*"))


# -- importing, arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": 3}, "prefix must be a string"),
        ({"step_key": 1}, "step_key must be a string"),
        ({"config": [1, 2]}, "config must be a mapping"),
        ({"tags": "one-tag"}, "tags must be a collection of strings"),
        ({"mode": "dryrun"}, "mode must be one of 'offline', 'online', 'disabled', 'shared'"),
        ({"run": object(), "project": "p", "dir": "d"}, "project, dir only apply when WandbSink"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WandbSink(**kwargs)


def test_an_object_that_is_not_a_run_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"run must be a W&B run \(wandb.init\(...\)\)"):
        WandbSink(run=object())


# -- making and owning runs -----------------------------------------------------------------


@pytest.mark.slow
def test_by_default_an_offline_run_under_runs_that_close_finishes(tmp_path: Path) -> None:
    import wandb

    sink = WandbSink(project="rl", name="first", tags=["ppo"], config={"lr": 0.1})
    assert sink.owns_run and sink.mode == "offline"
    assert sink.run_dir is not None and sink.run_dir.parent == tmp_path / "runs" / "wandb"
    assert sink.run_dir.name.startswith("offline-run-")
    assert repr(sink) == "WandbSink(offline, prefix='', step_key=None)"
    sink.write({"loss": 0.5})
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(ClosedError):
        sink.write({"loss": 0.4})
    with pytest.raises(wandb.errors.UsageError, match="is finished"):
        sink.run.log({"after": 1.0})

    data = read_run(sink.run_dir)
    assert data.rows == {0: {"loss": 0.5}}
    assert data.config["lr"] == 0.1
    assert sink.run.project == "rl" and sink.run.name == "first" and sink.run.tags == ("ppo",)
    # The command the docstring gives for uploading the run later finds it (--dry-run: no
    # upload, no network).
    sync = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--dry-run", str(sink.run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sync.returncode == 0, sync.stderr
    assert "Would sync 1 run(s)" in sync.stdout + sync.stderr
    assert wandb_file(sink.run_dir).name in sync.stdout + sync.stderr


@pytest.mark.slow
def test_dir_and_WANDB_DIR_choose_the_folder_and_WANDB_MODE_the_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = WandbSink(dir=tmp_path / "explicit")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "from-env"))
    from_env = WandbSink()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    disabled = WandbSink(step_key="t")
    offline = WandbSink(mode="offline")  # an explicit mode wins over WANDB_MODE
    for sink in (explicit, from_env, disabled, offline):
        sink.write({"t": 1, "x": 1.0})
        sink.close()

    assert run_dirs(tmp_path / "explicit") == [explicit.run_dir]
    assert run_dirs(tmp_path / "from-env") == sorted([from_env.run_dir, offline.run_dir])
    assert disabled.mode == "disabled" and disabled.run_dir is None
    assert offline.mode == "offline"
    assert not (tmp_path / "runs").exists()
    assert read_run(explicit.run_dir).rows == {0: {"t": 1.0, "x": 1.0}}


@pytest.mark.slow
def test_a_run_the_caller_made_is_used_and_not_finished(tmp_path: Path) -> None:
    import wandb

    run = wandb.init(project="mine", mode="offline", dir=tmp_path, reinit="create_new")
    run.log({"before": 1.0}, step=3)
    sink = WandbSink(run=run, prefix="eval", step_key="t", config={"seed": 7})
    assert sink.run is run and not sink.owns_run
    with pytest.warns(WandbSinkWarning, match="below the run's step 3"):
        sink.write({"t": 2, "return": 0.5})  # below the step the caller's own log reached
        sink.write({"t": 3, "return": 1.5})
        sink.close()
    run.log({"after": 2.0}, step=5)  # still open
    run.finish()
    with pytest.raises(ValueError, match="run is finished"):
        WandbSink(run=run)

    data = read_run(sink.run_dir)
    assert data.rows == {
        3: {"before": 1.0, "eval/t": 3.0, "eval/return": 1.5},
        5: {"after": 2.0},
    }
    assert data.config["seed"] == 7
    assert sink.dropped == {"t": 1, "return": 1}


@pytest.mark.slow
def test_a_shared_run_is_finished_when_the_last_sink_on_it_closes() -> None:
    owner = WandbSink(prefix="train", step_key="t")
    sharing = WandbSink(run=owner.run, prefix="eval", step_key="t")
    owner.write({"t": 0, "x": 1.0})
    owner.write({"t": 10, "x": 2.0})
    owner.close()  # the maker closes first: the run stays open for the other sink
    sharing.write({"t": 10, "x": 3.0})
    sharing.write({"t": 20, "x": 4.0})
    sharing.close()

    data = read_run(owner.run_dir)
    assert data.series("train/x") == [(0, 1.0), (10, 2.0)]
    assert data.series("eval/x") == [(10, 3.0), (20, 4.0)]
    assert data.steps == [0, 10, 20]  # one row per step


# -- values ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_numbers_become_floats_strings_stay_and_None_is_skipped_quietly() -> None:
    """Quietly but for an int beyond float range: stored as infinity, counted and warned."""
    sink = WandbSink(step_key="step")
    with warnings.catch_warnings(), pytest.warns(WandbSinkWarning, match="huge_int") as caught:
        warnings.simplefilter("error", WandbSinkWarning)
        warnings.filterwarnings("default", message=".*'huge_int'", category=WandbSinkWarning)
        sink.write(
            {
                "step": 0,
                **number_kinds(),
                "huge_int": 10**400,
                "phase": "warmup",
                "lr": None,
            }
        )
        sink.write({"step": 1, "nan": math.nan, "inf": np.float64("inf"), "lr": 0.1})
        sink.close()
    assert len(caught) == 1
    assert sink.counts["overflow"] == 1

    data = read_run(sink.run_dir)
    assert data.rows[0] == {
        "step": 0.0,
        **NUMBER_FLOATS,
        "huge_int": math.inf,  # beyond float range: counted in overflow
        "phase": "warmup",
    }
    row = data.rows[1]
    assert math.isnan(row.pop("nan"))
    assert row == {"step": 1.0, "inf": math.inf, "lr": 0.1}
    assert not sink.dropped


@pytest.mark.slow
def test_objects_and_wandbs_own_names_are_not_sent_warned_once_per_key() -> None:
    sink = WandbSink()
    with pytest.warns(WandbSinkWarning) as caught:
        for i in range(3):
            sink.write({"x": float(i), "info": {"a": 1}, "_runtime": 5.0})
        sink.close()

    dropped_keys = ("info", "_runtime")
    warned = Counter(
        key for key in dropped_keys for w in caught if f"key {key!r}" in str(w.message)
    )
    assert warned == dict.fromkeys(dropped_keys, 1)  # one warning each, not one per write
    assert sink.dropped == dict.fromkeys(dropped_keys, 3)
    assert sink.counts["dropped"] == 6  # `.dropped` is counts' per-key view
    data = read_run(sink.run_dir)
    assert data.rows == {0: {"x": 0.0}, 1: {"x": 1.0}, 2: {"x": 2.0}}


@pytest.mark.slow
def test_keys_are_logged_under_the_prefix_and_config_keeps_its_nesting() -> None:
    config = {
        "lr": np.float32(0.5),
        "batch": 64,
        "env": "CartPole-v1",
        "net": {"layers": np.array([64, 64]), "activation": "relu"},
        "seed": None,
    }
    sink = WandbSink(prefix="train/", config=config)
    sink.log_config({"batch": 128, "note": "a second call updates"})
    sink.write({"return": 1.0, "loss/actor": 0.1})
    sink.close()

    data = read_run(sink.run_dir)
    assert data.rows == {0: {"train/return": 1.0, "train/loss/actor": 0.1}}
    assert {key: data.config[key] for key in (*config, "note")} == {
        "lr": 0.5,
        "batch": 128,
        "env": "CartPole-v1",
        "net": {"layers": [64, 64], "activation": "relu"},
        "seed": None,
        "note": "a second call updates",
    }


# -- steps ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_step_key_value_is_the_step_and_without_one_the_record_index() -> None:
    by_key = WandbSink(step_key="actor_steps")
    by_index = WandbSink()
    for sink in (by_key, by_index):
        sink.write({"actor_steps": 0, "return": 1.0})
        sink.write({"actor_steps": np.int64(120), "return": 2.0})
        sink.write({"actor_steps": 250.0, "loss": 3.0})
        sink.close()

    assert read_run(by_key.run_dir).rows == {
        0: {"actor_steps": 0.0, "return": 1.0},
        120: {"actor_steps": 120.0, "return": 2.0},
        250: {"actor_steps": 250.0, "loss": 3.0},
    }
    assert read_run(by_index.run_dir).series("actor_steps") == [(0, 0.0), (1, 120.0), (2, 250.0)]


@pytest.mark.slow
def test_steps_that_go_back_are_dropped_and_equal_steps_merge_into_one_row() -> None:
    sink = WandbSink(step_key="t")
    sink.push_seconds = 3600.0  # one push, at close: the warnings come in a known order
    with pytest.warns(WandbSinkWarning) as caught:
        sink.write({"t": 10, "a": 1.0})
        sink.write({"t": 10, "b": 2.0})  # the same step: one row
        sink.write({"t": 10, "b": 9.0})  # a second value of `b` at step 10: dropped
        sink.write({"t": 5, "a": 3.0, "c": 3.0})  # backwards: dropped
        sink.write({"t": 11, "a": 4.0})
        sink.write({"t": 12.5, "a": 5.0})  # not a whole number: dropped
        sink.write({"t": -1, "a": 6.0})  # W&B steps start at 0
        sink.write({"t": 13, "a": 7.0})
        sink.close()

    data = read_run(sink.run_dir)
    assert data.steps == [10, 11, 13]
    assert data.rows == {
        10: {"t": 10.0, "a": 1.0, "b": 2.0},
        11: {"t": 11.0, "a": 4.0},
        13: {"t": 13.0, "a": 7.0},
    }
    assert sink.dropped == {"a": 3, "b": 1, "c": 1, "t": 3}  # `t` at its own step is no loss
    assert [str(w.message).split(" (counted")[0] for w in caught] == [
        "WandbSink: key 't': W&B steps are whole numbers; step 12.5 is not",
        "WandbSink: key 'a': W&B steps are whole numbers; step 12.5 is not",
        "WandbSink: key 'b': it already has a value at step 10; W&B keeps one per step",
        "WandbSink: key 'c': step 5 is below the run's step 10; W&B would ignore it (steps "
        "must not go back)",
    ]  # once per key


@pytest.mark.slow
def test_a_record_without_a_step_is_logged_at_the_last_step_seen() -> None:
    sink = WandbSink(step_key="t")
    with pytest.warns(WandbSinkWarning, match="logged at the last step seen"):
        sink.write({"loss": 0.9})  # no step yet: 0
        sink.write({"t": 40, "return": 1.0})
        sink.write({"loss": 0.5})
        sink.write({"t": None, "grad_norm": 2.0})
    sink.close()

    assert read_run(sink.run_dir).rows == {
        0: {"loss": 0.9},
        40: {"t": 40.0, "return": 1.0, "loss": 0.5, "grad_norm": 2.0},
    }


KEYS = ("a", "b", "c")


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records with a step `t` that may repeat or go back, and changing key sets (a value may
    be None)."""
    records = []
    for _ in range(draw(st.integers(1, 25))):
        record: dict[str, Any] = {"t": draw(st.integers(0, 8))}
        for key in draw(st.lists(st.sampled_from(KEYS), unique=True)):
            record[key] = draw(st.none() | st.floats(-1e6, 1e6) | st.integers(-100, 100))
        records.append(record)
    return records


def expected_run(records: list[dict[str, Any]]) -> tuple[dict[int, dict[str, float]], Counter]:
    """What W&B should hold: steps never go back; the first value of each key at a step."""
    rows: dict[int, dict[str, float]] = {}
    dropped: Counter[str] = Counter()
    step = 0
    for record in records:
        values = {key: float(value) for key, value in record.items() if value is not None}
        if record["t"] < step:
            dropped.update(values.keys())
            continue
        step = record["t"]
        row = rows.setdefault(step, {})
        for key, value in values.items():
            if key not in row:
                row[key] = value
            elif key != "t":
                dropped[key] += 1
    return rows, dropped


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(records=streams())
def test_every_value_is_read_back_at_its_step_or_counted_as_dropped(
    records: list[dict[str, Any]],
) -> None:
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", WandbSinkWarning)
        sink = WandbSink(dir=scratch, step_key="t")
        sink.push_seconds = 0.001  # pushes interleave with the writes
        for record in records:
            sink.write(record)
        sink.close()
        rows, dropped = expected_run(records)
        assert read_run(sink.run_dir).rows == rows
        assert sink.dropped == dropped


# -- buffering and the pipeline -------------------------------------------------------------


@pytest.mark.slow
def test_write_holds_records_and_flush_hands_them_to_the_run() -> None:
    sink = WandbSink()
    sink.push_seconds = 3600.0  # no background push during this test
    for i in range(5):
        sink.write({"x": float(i)})
    assert sink.pending == 5
    assert parse_run(wandb_file(sink.run_dir)).rows == {}

    sink.flush()
    assert sink.pending == 0
    # W&B writes a step's row once a later step is logged: every step but the last.
    deadline = time.monotonic() + 120.0  # wandb's service may be slow on a busy machine
    while len(parse_run(wandb_file(sink.run_dir)).rows) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sink.close()
    assert read_run(sink.run_dir).series("x") == [(i, float(i)) for i in range(5)]


@pytest.mark.slow
def test_a_pipeline_gives_the_run_the_values_a_memory_sink_next_to_it_gets() -> None:
    sink = WandbSink(prefix="train", step_key="actor_steps")
    written = MemorySink()
    logger = Pipeline("train").smooth("return").to(sink, written)
    started = time.time()
    for record in episodes(200):
        logger.write(record)
    logger.close()

    data = read_run(sink.run_dir)
    keys = {key for record in written.records for key in record}
    assert "return_smoothed_0.99" in keys
    assert data.steps == [record["actor_steps"] for record in written.records]
    for key in keys:
        expected = [(record["actor_steps"], float(record[key])) for record in written.records]
        assert data.series(f"train/{key}") == expected, key
    assert started <= min(data.times.values()) <= max(data.times.values()) <= time.time()
    assert not sink.dropped


# -- exit, SIGTERM, the home folder ---------------------------------------------------------

LEFT_OPEN = """
import sys, time
from pipeline import Pipeline
from sinks import MemorySink
from sinks.wandb import WandbSink
how = sys.argv[1]
# A pipeline made before the runs: rlpipe's exit handler is registered before wandb's.
early = Pipeline("early").to(MemorySink())
held = WandbSink(dir="raw", step_key="steps")
held.push_seconds = 3600.0
train = Pipeline("train").to(held)
evaluation = Pipeline("eval").aggregate("return", every=1000).to(WandbSink(dir="eval"))
for i in range(10):
    record = {"return": float(i), "steps": i}
    train.write(record)
    evaluation.write(record)
print("ready", flush=True)
if how == "exit":
    sys.exit(0)  # no close(), no flush()
time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["exit", "SIGTERM"])
def test_a_pipeline_left_open_delivers_every_value_at_exit_or_on_sigterm(
    tmp_path: Path, how: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", LEFT_OPEN, how],
        cwd=tmp_path,
        env=child_env(PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    while child.stdout.readline().strip() != "ready":
        assert child.poll() is None, child.stderr and child.stderr.read()
    if how == "SIGTERM":
        child.send_signal(signal.SIGTERM)
    _, errors = child.communicate(timeout=120)
    assert child.returncode == (0 if how == "exit" else 128 + signal.SIGTERM), errors
    assert "WandbSinkWarning" not in errors and "RuntimeWarning" not in errors

    (raw,) = run_dirs(tmp_path / "raw")
    assert read_run(raw).series("return") == [(i, float(i)) for i in range(10)]
    (window,) = run_dirs(tmp_path / "eval")
    values = [float(i) for i in range(10)]
    assert read_run(window).rows == {
        0: {
            "return_mean": pytest.approx(np.mean(values)),
            "return_std": pytest.approx(np.std(values)),
            "return_median": pytest.approx(np.median(values)),
            "return_max": 9.0,
            "return_min": 0.0,
            "steps": 9.0,
        }
    }


@pytest.mark.slow
def test_nothing_lands_in_the_home_folder(tmp_path: Path, wandb_env: Path) -> None:
    """With wandb's own folders set (as `wandb_env` does), a sink with its defaults writes
    only under the working directory."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    code = (
        "from sinks.wandb import WandbSink\n"
        "sink = WandbSink(step_key='t', config={'lr': 0.1})\n"
        "sink.write({'t': 1, 'x': 1.0})\n"
        "sink.close()\n"
        "print(sink.run_dir)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=work,
        env=child_env(HOME=str(home), PYTHONPATH=str(REPO), WANDB_DIR=None),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    run_dir = Path(out.stdout.strip())
    assert run_dir.parent == work / "runs" / "wandb"
    assert read_run(run_dir).rows == {1: {"t": 1.0, "x": 1.0}}
    assert list(home.iterdir()) == []
    assert not Path("wandb").exists() and not (work / "wandb").exists()
