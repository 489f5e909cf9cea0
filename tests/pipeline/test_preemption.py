"""A training process killed with SIGKILL after a checkpoint and after more writes, resumed
from the checkpoint in a new process, ends with the files an uninterrupted run writes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRAINING = textwrap.dedent(
    """
    import math, os, pickle, signal, sys
    from pathlib import Path
    from pipeline import Pipeline
    from sinks import CsvSink, JsonlSink, TensorBoardSink

    folder, mode, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    checkpoint = folder / "checkpoint.pkl"
    logger = (
        Pipeline("train")
        .drop_none()
        .smooth("return", coeff=0.95)
        .every(3)
        .to(
            CsvSink(folder / "train.csv", flush_every=7),
            JsonlSink(folder / "train.jsonl", flush_every=5),
            TensorBoardSink(folder / "tensorboard", step_key="episode"),
            Pipeline("eval").aggregate("return", every=10).to(CsvSink(folder / "eval.csv")),
        )
    )
    start = 0
    if mode == "resume":
        saved = pickle.loads(checkpoint.read_bytes())
        logger.load_state_dict(saved["logging"])
        start = saved["episode"] + 1
    for episode in range(start, 200):
        logger.write({
            "episode": episode,
            "return": math.sin(episode / 7) * 10 + episode / 20,
            "loss": None if episode % 11 == 0 else 1 / (episode + 1),
            "late": episode if episode > 150 else None,
        })
        if episode % 40 == 39:  # the training loop's checkpoint, with the logging state
            state = {"episode": episode, "logging": logger.state_dict()}
            checkpoint.write_bytes(pickle.dumps(state))
        if episode == kill_at:
            logger.flush()  # the worst case: what came after the checkpoint is on disk
            os.kill(os.getpid(), signal.SIGKILL)
    logger.close()
    """
)


def train(folder: Path, mode: str, kill_at: int = -1) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TRAINING, str(folder), mode, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("kill_at", [57, 118, 158, 170])  # 158: a key new since the checkpoint
def test_a_run_killed_and_resumed_writes_what_an_uninterrupted_run_writes(
    tmp_path: Path, kill_at: int
) -> None:
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    whole.mkdir()
    resumed.mkdir()
    assert train(whole, "fresh").returncode == 0

    killed = train(resumed, "fresh", kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (resumed / "train.csv").read_bytes() != (whole / "train.csv").read_bytes()
    finished = train(resumed, "resume")
    assert finished.returncode == 0, finished.stderr

    for name in ("train.csv", "train.jsonl", "eval.csv"):
        assert (resumed / name).read_bytes() == (whole / name).read_bytes(), name
    # TensorBoard: the events from steps past the checkpoint that the killed run wrote are
    # purged on resume; what TensorBoard reads is the uninterrupted run's curves
    for tag in ("return", "return_smoothed_0.95", "loss"):
        assert scalars(resumed / "tensorboard", tag) == scalars(whole / "tensorboard", tag), tag


def scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]
