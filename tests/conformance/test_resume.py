"""A checkpoint at any call, a crash after more calls, and a resume from the checkpoint end
with what an uninterrupted run stores: the same file, byte for byte, or the same records."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from pipeline import Pipeline
from sinks import MemorySink
from tests.conformance import strategies
from tests.conformance.known import suite
from tests.conformance.normalise import same_object
from tests.conformance.sinks import CSV, JSONL, MEMORY, SinkSpec


def graph(sink: Any) -> Pipeline:
    """A train chain with smoothing, a throttle by count and an aggregate branch."""
    return Pipeline("train", strict=True, close_at_exit=False).smooth(
        "^(x|loss|return|step)$", coeff=0.9
    ).to(sink, Pipeline("window").aggregate("^(x|loss)$", every=3).to(MemorySink()))


def play(pipe: Pipeline, stream: list[strategies.Op]) -> None:
    for op in stream:
        if op.kind == "write":
            pipe.write(op.data)
        elif op.kind == "batch":
            pipe.write_batch(op.data)
        else:
            pipe.flush()


def stored(spec: SinkSpec, sink: Any, folder: Path) -> Any:
    if spec is MEMORY:
        return sink.records
    return next(folder.iterdir()).read_bytes()


@pytest.mark.parametrize("spec", [CSV, JSONL, MEMORY], ids=lambda spec: spec.name)
@suite(25)
@given(stream=strategies.streams(max_size=10), data=st.data())
def test_a_resume_from_a_checkpoint_at_any_call_stores_what_an_uninterrupted_run_does(
    spec: SinkSpec,
    stream: list[strategies.Op],
    data: st.DataObject,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    checkpoint = data.draw(st.integers(0, len(stream)), label="checkpoint")
    crash = data.draw(st.integers(checkpoint, len(stream)), label="crash")
    event(f"calls after the checkpoint before the crash: {min(crash - checkpoint, 3)}+")
    whole, resumed = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("resumed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink = spec.make(whole)
        pipe = graph(sink)
        play(pipe, stream)
        pipe.close()
        expected = stored(spec, sink, whole)

        first = spec.make(resumed)
        pipe = graph(first)
        play(pipe, stream[:checkpoint])
        state = pickle.dumps(pipe.state_dict())
        play(pipe, stream[checkpoint:crash])
        pipe.flush()  # the worst case: what came after the checkpoint is on disk
        first.close()  # the crash: this process writes no more
        again = spec.reopen(resumed) if spec.reopen is not None else spec.make(resumed)
        pipe = graph(again)
        pipe.load_state_dict(pickle.loads(state))
        play(pipe, stream[checkpoint:])
        pipe.close()
        got = stored(spec, again, resumed)
    if spec is MEMORY:
        assert len(got) == len(expected) and all(
            same_object(a, b) for a, b in zip(expected, got, strict=True)
        )
    else:
        assert got == expected
