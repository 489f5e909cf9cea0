"""A run resumed from a checkpoint after a crash holds the points an uninterrupted run holds.

A child process writes through a Pipeline into a real tracking sink, takes a checkpoint
(`Pipeline.state_dict()`) with one point of a step stored and another of the same step still
held, writes and pushes two more steps, and is killed (SIGKILL: no close, no exit handler).
A new sink in a new Pipeline loads the checkpoint and writes the records after it. Read back
with the tool's own reader, the run equals the one an uninterrupted process leaves.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import Pipeline
from tests.sinks.tracking import Points, read_points, read_wandb

pytestmark = pytest.mark.slow  # child processes running the real clients

REPO = Path(__file__).resolve().parents[2]

RECORDS: list[dict[str, Any]] = [
    *({"t": t, "x": 10.0 * t} for t in range(5)),
    {"t": 5, "x": 50.0},
    {"t": 5, "x": 51.0},  # the same step again: held when the checkpoint is taken
    *({"t": t, "x": 10.0 * t} for t in range(6, 10)),
]
CHECKPOINT = 7
"""Records written before the checkpoint: the last of them is held, the one before stored."""
CRASH = 9
"""Records written (and pushed) before the crash."""

MAKE = {
    "tensorboard": "TensorBoardSink(where, step_key='t')",
    "mlflow": "MlflowSink(tracking_uri=where, step_key='t')",
    "wandb": "WandbSink(dir=where, step_key='t')",
}

CHILD = """
import os, pickle, signal, sys
from pipeline import Pipeline
from sinks.mlflow import MlflowSink
from sinks.tensorboard import TensorBoardSink
from sinks.wandb import WandbSink
from tests.sinks.test_tracking_resume import CHECKPOINT, CRASH, RECORDS

make, where, state_file = sys.argv[1:4]
sink = eval(make)
logger = Pipeline("train").to(sink)
for index, record in enumerate(RECORDS[:CRASH]):
    logger.write(record)
    if index == CHECKPOINT - 1:
        with open(state_file, "wb") as file:
            pickle.dump(logger.state_dict(), file)
    else:  # the checkpoint's own record, the second at step 5, stays held
        logger.flush()
logger.flush()
print(getattr(sink, "run_id", None) or getattr(getattr(sink, "run", None), "id", ""), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def crash(kind: str, where: str, state_file: Path) -> str:
    """Runs the child until its SIGKILL; what it printed (an MLflow run's id)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in [name for name in env if name.startswith("WANDB_SERVICE")]:
        del env[name]  # the child starts its own W&B service, as a new process after a crash
    result = subprocess.run(
        [sys.executable, "-c", CHILD, MAKE[kind], where, str(state_file)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    return result.stdout.strip()


def make(kind: str, where: str) -> Any:
    from sinks.mlflow import MlflowSink
    from sinks.tensorboard import TensorBoardSink
    from sinks.wandb import WandbSink

    sinks = {"MlflowSink": MlflowSink, "TensorBoardSink": TensorBoardSink, "WandbSink": WandbSink}
    return eval(MAKE[kind], sinks, {"where": where})


def uninterrupted(kind: str, where: str) -> Any:
    """The sink of a run that writes every record with the child's pushes, and closes."""
    sink = make(kind, where)
    logger = Pipeline("train").to(sink)
    for index, record in enumerate(RECORDS):
        logger.write(record)
        if index != CHECKPOINT - 1:
            logger.flush()
    logger.close()
    return sink


def resumed(kind: str, where: str, state_file: Path) -> Any:
    """The sink of a run resumed from the child's checkpoint: the records after it."""
    sink = make(kind, where)
    logger = Pipeline("train").to(sink)
    with state_file.open("rb") as file:
        logger.load_state_dict(pickle.load(file))
    for record in RECORDS[CHECKPOINT:]:
        logger.write(record)
        logger.flush()
    logger.close()
    return sink


def x_points(points: Points) -> list[tuple[Any, Any]]:
    return points["x"]


EXPECTED = [(t, 10.0 * t) for t in range(5)] + [(5, 50.0), (5, 51.0)]
EXPECTED += [(t, 10.0 * t) for t in range(6, 10)]


def test_tensorboard_purges_exactly_what_the_checkpoint_did_not_hold(tmp_path: Path) -> None:
    state = tmp_path / "state.pickle"
    crash("tensorboard", str(tmp_path / "resumed"), state)
    resumed("tensorboard", str(tmp_path / "resumed"), state)
    uninterrupted("tensorboard", str(tmp_path / "straight"))
    back = read_points("tensorboard", tmp_path / "resumed")
    assert back == read_points("tensorboard", tmp_path / "straight")
    assert x_points(back) == EXPECTED


def test_mlflow_continues_the_same_run_with_no_second_copy_of_a_step(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    state = tmp_path / "state.pickle"
    run_id = crash("mlflow", uri, state)
    sink = resumed("mlflow", uri, state)
    assert sink.run_id == run_id  # the checkpoint's run, not a second one
    straight = uninterrupted("mlflow", uri)
    back = read_points("mlflow", (uri, run_id))
    assert back == read_points("mlflow", (uri, straight.run_id))
    assert x_points(back) == EXPECTED
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    active = client.search_runs([sink.experiment_id])
    assert sorted(run.info.run_id for run in active) == sorted([run_id, straight.run_id])


@pytest.fixture
def wandb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """wandb's own folders under tmp_path, for this process and the child."""
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_wandb_resumes_the_checkpoints_run_by_its_id_at_its_step(
    tmp_path: Path, wandb_home: None
) -> None:
    """Offline, W&B writes the resumed run into a second folder of the same run id (it does
    not resume offline runs). That folder starts at the checkpoint's step, with what the
    checkpoint had logged at it left out, and holds from there what an uninterrupted run
    holds (W&B keeps one value per name per step: (5, 50.0) only)."""
    state = tmp_path / "state.pickle"
    run_id = crash("wandb", str(tmp_path / "resumed"), state)
    (crashed_dir,) = (tmp_path / "resumed" / "wandb").glob("offline-run-*")
    sink = resumed("wandb", str(tmp_path / "resumed"), state)
    assert sink.run.id == run_id and sink.run_dir != crashed_dir
    assert sorted((tmp_path / "resumed" / "wandb").glob("offline-run-*")) == sorted(
        [crashed_dir, sink.run_dir]
    )  # the empty run the new sink had made is gone
    straight = read_wandb(uninterrupted("wandb", str(tmp_path / "straight")).run_dir)
    after = read_wandb(sink.run_dir)
    assert after.rows == {5: {}, **{step: row for step, row in straight.rows.items() if step > 5}}
    assert sink.dropped == {"x": 1}  # (5, 51.0), as in the uninterrupted run
    # What the crashed folder holds is W&B's: its service writes on its own time (on this
    # machine, offline, it had written none of the rows logged before the SIGKILL).


def test_mlflow_counts_a_point_from_before_the_crash_that_the_resumed_run_writes_otherwise(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = make("mlflow", uri)
    logger = Pipeline("train").to(first)
    for t in range(3):
        logger.write({"t": t, "x": 10.0 * t})
    logger.flush()
    state = logger.state_dict()
    logger.write({"t": 3, "x": 30.0})
    logger.write({"t": 4, "x": 40.0})
    logger.close()  # as a crash leaves it, but for the run's status: the points are stored

    second = make("mlflow", uri)
    logger = Pipeline("train").to(second)
    logger.load_state_dict(state)
    with pytest.warns(UserWarning, match="MLflow cannot delete them"):
        logger.write({"t": 3, "x": 30.0})  # as before the crash: not sent again
        logger.write({"t": 4, "x": 41.0})  # otherwise: sent, and the old point counted
        logger.close()
    assert second.run_id == first.run_id
    assert read_points("mlflow", (uri, first.run_id))["x"] == [
        (0, 0.0),
        (1, 10.0),
        (2, 20.0),
        (3, 30.0),
        (4, 40.0),
        (4, 41.0),
    ]
    assert second.counts["stale"] == 1 and second.counts.by_key["stale"] == {"x": 1}
