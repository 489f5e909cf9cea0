"""Resume after preemption: a pipeline restored from `state_dict()` goes on exactly as if
it had never stopped: the same records, counts and files, byte for byte."""

from __future__ import annotations

import math
import pickle
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import (
    AggregateFilter,
    AsyncNode,
    EveryNFilter,
    SmoothingFilter,
    TimeFilter,
)
from pipeline import Pipeline
from sinks import CsvSink, JsonlSink, MemorySink, NullSink
from tests.conftest import FakeClock, StorageDown, crash

values = st.one_of(st.none(), st.floats(-10, 10), st.integers(-3, 3), st.just(math.nan))
records = st.lists(
    st.dictionaries(st.sampled_from(["return", "loss", "steps", "late"]), values, max_size=4),
    min_size=2,
    max_size=40,
)


def build(folder: Path, clock: FakeClock, *, mode: str = "a") -> tuple[Pipeline, MemorySink]:
    """A graph with a node of every stateful kind, and file sinks that hold rows."""
    memory = MemorySink()
    pipe = (
        Pipeline("resume", close_at_exit=False)
        .drop_none()
        .then(SmoothingFilter("return|loss", coeff=0.9))
        .then(SmoothingFilter("return", coeff=0.5, bias_correction=True))
        .then(EveryNFilter(2))
        .then(TimeFilter(1.5, keep_last=True, clock=clock))
        .to(
            memory,
            NullSink(),
            CsvSink(folder / "train.csv", mode=mode, flush_every=3, flush_seconds=None),
            JsonlSink(folder / "train.jsonl", mode=mode, flush_every=4, flush_seconds=None),
            Pipeline("eval", close_at_exit=False)
            .then(AggregateFilter("return|loss", every=5, clock=clock))
            .to(CsvSink(folder / "eval.csv", mode=mode, flush_every=2, flush_seconds=None)),
        )
    )
    return pipe, memory


def feed(pipe: Pipeline, clock: FakeClock, stream: list[dict[str, Any]]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for record in stream:
            clock.advance(0.5)
            pipe.write(record)



def outputs(folder: Path, memory: MemorySink) -> tuple[Any, ...]:
    files = tuple((folder / name).read_bytes() for name in ("train.csv", "train.jsonl", "eval.csv"))
    return (memory.records, *files)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=80, deadline=None)
@given(stream=records, data=st.data())
def test_a_run_restored_from_any_cut_point_ends_as_the_uninterrupted_one(
    tmp_path_factory: Any, stream: list[dict[str, Any]], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(1, len(stream) - 1), label="checkpoint after record")
    lost = data.draw(st.integers(0, len(stream) - cut), label="records written after it")

    whole = tmp_path_factory.mktemp("whole")
    clock = FakeClock()
    pipe, memory = build(whole, clock, mode="w")
    feed(pipe, clock, stream)
    pipe.close()
    expected = outputs(whole, memory)

    folder = tmp_path_factory.mktemp("resumed")
    clock = FakeClock()
    first, _ = build(folder, clock, mode="w")
    feed(first, clock, stream[:cut])
    checkpoint = pickle.dumps(first.state_dict())  # what a training loop saves
    feed(first, clock, stream[cut : cut + lost])  # written, then the machine goes away
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first.flush()  # the worst case: all of it reached the files
    crash(first)

    clock = FakeClock()  # a new process: another clock
    again, memory = build(folder, clock)
    again.load_state_dict(pickle.loads(checkpoint))
    feed(again, clock, stream[cut:])
    again.close()
    assert same(outputs(folder, memory), expected)


def test_taking_a_checkpoint_changes_no_output(tmp_path: Path) -> None:
    clock = FakeClock()
    pipe, memory = build(tmp_path, clock, mode="w")
    feed(pipe, clock, [{"return": 1.0}, {"return": 2.0}, {"return": 3.0}])
    before = outputs(tmp_path, memory)
    pipe.state_dict()
    assert same(outputs(tmp_path, memory), before)
    pipe.close()


def test_a_state_of_another_graph_is_refused_naming_the_first_difference(tmp_path: Path) -> None:
    state = Pipeline(close_at_exit=False).drop_none().smooth().to(MemorySink()).state_dict()
    other = Pipeline(close_at_exit=False).drop_none().throttle(1.0).to(MemorySink())
    with pytest.raises(ValueError, match=r"node 2 is SmoothingFilter\(.* TimeFilter\(1s\)"):
        other.load_state_dict(state)
    shorter = Pipeline(close_at_exit=False).drop_none().to(MemorySink())
    with pytest.raises(ValueError, match="another graph"):
        shorter.load_state_dict(state)
    with pytest.raises(ValueError, match="not an rlpipe state"):
        shorter.load_state_dict({"model": 1})


def test_a_state_is_plain_picklable_data() -> None:
    before, after = MemorySink(), MemorySink()
    pipe = Pipeline(close_at_exit=False).aggregate("^r$", every=100).to(before)
    for value in np.linspace(0, 1, 10):
        pipe.write({"r": float(value), "frame": np.full(2, value)})
    state = pickle.loads(pickle.dumps(pipe.state_dict()))
    again = Pipeline(close_at_exit=False).aggregate("^r$", every=100).to(after)
    again.load_state_dict(state)
    again.close()
    pipe.close()
    assert same(after.records[0]["r_mean"], before.records[0]["r_mean"])
    assert after.records[0]["frame"].tolist() == [1.0, 1.0]


def test_a_file_shorter_than_at_the_checkpoint_is_refused(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "a.csv", flush_every=1, flush_seconds=None)
    pipe = Pipeline(close_at_exit=False).to(sink)
    pipe.write({"a": 1})
    state = pipe.state_dict()
    pipe.close()
    (tmp_path / "a.csv").write_text("")
    again = Pipeline(close_at_exit=False).to(CsvSink(tmp_path / "a.csv"))
    with pytest.raises(ValueError, match="fewer than"):
        again.load_state_dict(state)




def test_records_queued_by_an_async_node_are_in_the_state_once() -> None:
    written = [{"i": i} for i in range(5000)]
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).async_().to(memory)
    for record in written:
        pipe.write(record)
    state = pipe.state_dict()  # the thread is held still while it is taken
    delivered = len(state["nodes"][-1]["records"])  # the MemorySink's part
    queued = state["nodes"][1]["queued"]
    assert delivered + len(queued) == 5000
    assert [item["i"] for _, item in queued] == list(range(delivered, 5000))
    pipe.close()

    again = MemorySink()
    restored = Pipeline(close_at_exit=False).async_().to(again)
    restored.load_state_dict(state)
    restored.close()
    assert again.column("i") == list(range(5000))


def test_records_queued_for_a_failing_sink_are_in_the_state() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        broken = StorageDown(down=True)
        pipe = Pipeline(close_at_exit=False).to(broken)
        for i in range(3):
            pipe.write({"i": i})
        state = pipe.state_dict()
        up = StorageDown()
        restored = Pipeline(close_at_exit=False).to(up)
        restored.load_state_dict(state)
        restored.close()
    assert up.column("i") == [0, 1, 2]


def test_a_state_restored_into_sinks_built_in_another_order_is_refused(tmp_path: Path) -> None:
    train, evaluation = tmp_path / "train.csv", tmp_path / "eval.csv"
    pipe = Pipeline(close_at_exit=False).to(CsvSink(train), CsvSink(evaluation))
    pipe.write({"step": 0})
    state = pipe.state_dict()
    pipe.close()
    swapped = Pipeline(close_at_exit=False).to(CsvSink(evaluation), CsvSink(train))
    with pytest.raises(ValueError, match=r"train\.csv.* in the state, CsvSink.*eval\.csv"):
        swapped.load_state_dict(state)
    assert train.read_text() == evaluation.read_text() == "step\n0\n"  # nothing was cut


def test_a_state_is_not_loaded_into_a_pipeline_that_was_written_to(tmp_path: Path) -> None:
    pipe = Pipeline(close_at_exit=False).to(CsvSink(tmp_path / "a.csv", flush_every=1))
    pipe.write({"step": 0})
    state = pipe.state_dict()
    pipe.close()
    again = Pipeline(close_at_exit=False).to(CsvSink(tmp_path / "a.csv", flush_every=1))
    again.write({"step": 1})
    with pytest.raises(ValueError, match="written to already"):
        again.load_state_dict(state)


def test_rows_with_no_keys_before_a_header_then_a_wider_one_resume_whole(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [{}, {}, {"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}]
    records += [{"a": 5, "b": 6}, {"a": 7}]

    def make(folder: Path) -> Pipeline:
        sink = CsvSink(folder / "m.csv", flush_every=1, flush_seconds=None)
        return Pipeline(close_at_exit=False).to(sink)

    def written(folder: Path, resume: bool) -> str:
        folder.mkdir()
        pipe = make(folder)
        for index, record in enumerate(records):
            if index == 2:
                pipe.state_dict()  # a first checkpoint while the rows wait for a header
            if index == 4:
                state = pipe.state_dict()
            pipe.write(record)
        if resume:  # the key 'b' widened the header after the checkpoint; then a crash
            crash(pipe)
            pipe = make(folder)
            pipe.load_state_dict(state)
            for record in records[4:]:
                pipe.write(record)
        pipe.close()
        return (folder / "m.csv").read_text()

    assert written(tmp_path / "resumed", True) == written(tmp_path / "whole", False)


class Slow(MemorySink):
    """A sink slow to write and slow to restore (a file sink cutting a large file back)."""

    def write(self, data: Any) -> None:
        time.sleep(0.002)
        super().write(data)

    def load_node_state(self, state: dict[str, Any]) -> None:
        time.sleep(0.2)
        super().load_node_state(state)


def test_an_async_backlog_is_restored_after_the_nodes_below_it() -> None:
    pipe = Pipeline(close_at_exit=False).async_().to(Slow())
    (queue,) = [node for node in pipe.nodes() if isinstance(node, AsyncNode)]
    queue.pause()  # its thread holds still: however fast it would run, a backlog stays
    for i in range(100):
        pipe.write({"i": i})
    state = pipe.state_dict()
    assert state["nodes"][1]["queued"]  # a backlog was taken
    queue.resume()
    pipe.close()
    restored = Slow()
    again = Pipeline(close_at_exit=False).async_().to(restored)
    again.load_state_dict(state)
    again.write({"i": 100})
    again.close()
    assert restored.column("i") == list(range(101))
