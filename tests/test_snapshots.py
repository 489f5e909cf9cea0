"""A node that holds a record past `write` holds what was written, whatever the caller does
with its dict or arrays afterwards (the vectorized-environment pattern reuses buffers)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from filters import AggregateFilter, TimeFilter
from pipeline import Node, Pipeline
from sinks import CsvSink, JsonlSink, MemorySink
from sinks.base import Sink
from tests.conftest import FakeClock


def test_an_async_pipeline_keeps_each_write_of_a_reused_dict() -> None:
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).async_().to(memory)
    record: dict[str, object] = {}
    for step in range(2000):
        record["step"] = step
        record["obs"] = np.full(3, step)
        pipe.write(record)
    pipe.close()
    assert memory.column("step") == list(range(2000))
    assert [int(obs[0]) for obs in memory.column("obs")] == list(range(2000))


def test_an_async_pipeline_keeps_each_batch_of_a_reused_buffer() -> None:
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).async_().to(memory)
    buffer = np.zeros(8)
    for update in range(50):
        buffer[:] = update
        pipe.write_batch({"reward": buffer})
    pipe.close()
    assert memory.column("reward") == [float(u) for u in range(50) for _ in range(8)]


def test_held_rows_of_file_sinks_and_memory_keep_their_arrays(tmp_path: Path) -> None:
    csv_sink, jsonl, memory = CsvSink(tmp_path / "a.csv"), JsonlSink(tmp_path / "a.jsonl"), (
        MemorySink()
    )
    array = np.zeros(2)
    listed = [0, 0]
    for sink in (csv_sink, jsonl, memory):
        sink.write({"v": array, "l": listed})
    array[:] = 7
    listed[0] = 7
    for sink in (csv_sink, jsonl, memory):
        sink.close()
    assert "[0.0, 0.0]" in (tmp_path / "a.csv").read_text()
    assert json.loads((tmp_path / "a.jsonl").read_text()) == {"v": [0.0, 0.0], "l": [0, 0]}
    (record,) = memory.records
    assert record["v"].tolist() == [0.0, 0.0] and record["l"] == [0, 0]


def test_batches_held_by_file_sinks_keep_their_values(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "a.jsonl")
    column = np.array([np.zeros(2), np.ones(2)], dtype=object)
    sink.write_batch({"v": column})
    column[0][:] = 9
    sink.close()
    rows = [json.loads(line)["v"] for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert rows == [[0.0, 0.0], [1.0, 1.0]]


class FlakySink(Sink):
    """Storage that is down for the first `down` writes (OSError), then stores."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down
        self.records: list[dict[str, object]] = []

    def write(self, data: dict[str, object]) -> None:  # type: ignore[override]
        if self.down:
            self.down -= 1
            raise OSError("down")
        self.records.append(dict(data))


def test_the_retry_queue_keeps_what_was_written() -> None:
    flaky = FlakySink(down=1)
    pipe = Pipeline(close_at_exit=False).to(flaky)
    array = np.zeros(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(5):
            array[0] = step
            pipe.write({"step": step, "a": array})
        pipe.close()
    assert [r["step"] for r in flaky.records] == list(range(5))
    assert [float(r["a"][0]) for r in flaky.records] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_throttle_keeping_the_last_record_keeps_it_as_written(clock: FakeClock) -> None:
    memory = MemorySink()
    throttle = TimeFilter(10.0, keep_last=True, clock=clock).connect(memory)
    record = {"step": 0}
    throttle.write(record)
    record = {"step": 1, "obs": np.zeros(1)}
    throttle.write(record)
    record["obs"][0] = 5
    record["step"] = 99
    throttle.flush()
    assert [r["step"] for r in memory.records] == [0, 1]
    assert memory.records[1]["obs"].tolist() == [0.0]


def test_an_aggregate_keeps_the_last_array_of_its_window_as_written() -> None:
    memory = MemorySink()
    node: Node = AggregateFilter("return", every=2).connect(memory)
    frame = np.zeros(2)
    node.write({"return": 1.0, "frame": frame})
    frame[:] = 3
    node.write({"return": 2.0, "frame": frame.copy()})
    frame[:] = 9
    node.flush()
    assert memory.records[0]["frame"].tolist() == [3.0, 3.0]
