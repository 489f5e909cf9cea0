"""Resume with sinks shared by two pipelines (train and eval writing one file, as the docs
recommend), and checkpoints that a background store cannot tear.

- Both pipelines take their states at one checkpoint; both load them in the restarted
  process (the shared sink is restored once); the files end as the uninterrupted run's.
- States of two different moments for one shared sink are refused with a clear error.
- A checkpoint taken while the flusher thread stores a CsvSink's rows is of one moment: the
  resumed file equals the uninterrupted one (no torn row)."""

from __future__ import annotations

import pickle
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from pipeline import Pipeline
from sinks import CsvSink, JsonlSink, MemorySink, NullSink
from tests.conftest import crash


def build(folder: Path) -> tuple[Pipeline, Pipeline, MemorySink]:
    csv_log = CsvSink(folder / "log.csv", flush_every=4, flush_seconds=None)
    jsonl_log = JsonlSink(folder / "log.jsonl", flush_every=3, flush_seconds=None)
    memory, null = MemorySink(), NullSink()
    train = (
        Pipeline("train", close_at_exit=False)
        .smooth("return", coeff=0.9)
        .to(csv_log, jsonl_log, memory, null)
    )
    evaluation = (
        Pipeline("eval", close_at_exit=False)
        .aggregate("return", every=3, stats=("mean",))
        .to(csv_log, jsonl_log, memory, null)
    )
    return train, evaluation, memory


def episodes(train: Pipeline, evaluation: Pipeline, start: int, stop: int) -> None:
    for episode in range(start, stop):
        train.write({"episode": episode, "return": episode / 3})
        if episode % 2:
            evaluation.write({"return": -episode / 5})



def files(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "log.csv").read_bytes(), (folder / "log.jsonl").read_bytes()


def test_two_pipelines_sharing_sinks_both_resume_as_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train, evaluation, memory = build(whole)
    episodes(train, evaluation, 0, 40)
    train.close()
    evaluation.close()
    expected, expected_records = files(whole), memory.records

    train, evaluation, _ = build(resumed)
    episodes(train, evaluation, 0, 17)
    checkpoint = pickle.dumps({"train": train.state_dict(), "eval": evaluation.state_dict()})
    episodes(train, evaluation, 17, 29)
    train.flush()  # the worst case: rows after the checkpoint are on disk
    crash(train, evaluation)

    train, evaluation, memory = build(resumed)
    saved = pickle.loads(checkpoint)
    train.load_state_dict(saved["train"])
    evaluation.load_state_dict(saved["eval"])  # the shared sinks were restored already
    episodes(train, evaluation, 17, 40)
    train.close()
    evaluation.close()
    assert files(resumed) == expected
    assert memory.records == expected_records


def test_states_of_two_moments_for_one_shared_sink_are_refused(tmp_path: Path) -> None:
    train, evaluation, _ = build(tmp_path / "first")
    episodes(train, evaluation, 0, 5)
    train_state = train.state_dict()
    episodes(train, evaluation, 5, 6)  # a record reaches the shared sinks in between
    eval_state = evaluation.state_dict()
    crash(train, evaluation)

    train, evaluation, _ = build(tmp_path / "first")
    train.load_state_dict(train_state)
    with pytest.raises(ValueError, match="different moments"):
        evaluation.load_state_dict(eval_state)
    crash(train, evaluation)


class StoreDuringCheckpoint:
    """The CsvSink's store lock, which lets the flusher thread store the held rows the
    first time a checkpoint lets go of it (so a checkpoint that let go of it half-way
    through would see rows stored in the middle of it)."""

    def __init__(self, sink: CsvSink) -> None:
        self.lock = threading.Lock()
        self.sink = sink
        self.armed = False

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
        if self.armed and threading.current_thread() is threading.main_thread():
            self.armed = False
            flusher = threading.Thread(target=self.sink.flush_on_time)
            flusher.start()
            flusher.join()


def test_a_checkpoint_is_of_one_moment_even_while_the_flusher_stores(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"step": n, "x": n + 0.5, **({"late": n} if n >= 5 else {})} for n in range(8)
    ]

    def sink_at(path: Path) -> CsvSink:
        return CsvSink(path, flush_every=100, flush_seconds=None)

    whole = sink_at(tmp_path / "whole.csv")
    for row in rows:
        whole.write(row)
    whole.close()

    path = tmp_path / "run.csv"
    sink = sink_at(path)
    for row in rows[:2]:
        sink.write(row)
    sink.flush()
    sink.write(rows[2])  # held when the checkpoint starts
    lock = StoreDuringCheckpoint(sink)
    sink._store_lock = lock  # type: ignore[assignment]
    lock.armed = True
    checkpoint = pickle.dumps(sink.state_dict())
    for row in rows[3:6]:
        sink.write(row)
    sink.flush()
    crash(Pipeline("crashed", close_at_exit=False).to(sink))

    resumed = sink_at(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # resuming replaces nothing and warns of nothing
        resumed.load_state_dict(pickle.loads(checkpoint))
    for row in rows[3:]:
        resumed.write(row)
    resumed.close()
    assert path.read_bytes() == (tmp_path / "whole.csv").read_bytes()
