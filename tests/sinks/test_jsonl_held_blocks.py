"""JsonlSink's column batches on the fast path keep every bar of row-by-row writing.
Specification: whatever the caller does to its arrays and lists after `write_batch` returns
(or raises), the file holds the values the batch had when it was written; with storage
failing and recovering at any point and any `flush_every`/`max_pending`, the batched sink
stores, holds and loses the same rows as the same rows written one by one, and its file reads
back as theirs and as the pure-Python path's, value for value and type for type."""

from __future__ import annotations

import contextlib
import copy
import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sinks.file
import sinks.jsonl
from pipeline.core.columns import iter_rows
from pipeline.core.isolation import StoreError
from sinks import JsonlSink, flusher
from tests.conftest import FakeClock
from tests.sinks.test_fast_columns import exactly, fast_path, frames_from, read_back

pytest.importorskip("orjson")
needs_polars = pytest.mark.skipif(
    sinks.file._load_polars() is None, reason="polars (the fast extra) is not installed"
)

Batch = dict[str, Any]


class Flaky(JsonlSink):
    """A JsonlSink whose storage is down while `down` is set (each append raises ENOSPC)."""

    down = False

    def _append(self, text: str | bytes | memoryview) -> None:
        if self.down:
            raise OSError(28, "No space left on device")
        super()._append(text)


def scribble(batch: Batch) -> None:
    """What a caller reusing its buffers does: every array and list overwritten in place."""
    for column in batch.values():
        if isinstance(column, np.ndarray):
            column[...] = 1 if column.dtype.kind in "biu" else -7.5
        else:
            column[:] = [3] * len(column)


def same_lines(ours: bytes, theirs: bytes) -> None:
    mine, reference = read_back(ours), read_back(theirs)
    assert len(mine) == len(reference)
    for a, b in zip(mine, reference, strict=True):
        assert [key for key, _ in a] == [key for key, _ in b]
        assert all(exactly(x, y) for (_, x), (_, y) in zip(a, b, strict=True)), (a, b)


FLOATS = st.sampled_from([0.5, -0.0, 1e16, 5e-324, 1e308, math.nan, math.inf, 0.1]) | st.floats()


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """A batch of the columns a block takes: int64, float64, floats or ints with None."""
    length = draw(st.integers(1, 90))

    def values(elements: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(elements, min_size=length, max_size=length))

    return {
        "i": np.arange(length, dtype=np.int64) + draw(st.integers(-(2**40), 2**40)),
        "x": np.array(values(FLOATS), dtype=np.float64),
        "loss": values(FLOATS | st.none()),
        "n": values(st.integers(-(2**63), 2**63 - 1) | st.none()),
    }


Step = tuple[str, Any]
steps = st.one_of(
    batches().map(lambda batch: ("batch", batch)),
    st.booleans().map(lambda down: ("down", down)),
    st.sampled_from([0.5, 3.0, 120.0]).map(lambda seconds: ("advance", seconds)),
)


def run(path: Path, plan: list[Step], by_rows: bool, fast: bool, **options: Any) -> Flaky:
    """Feeds `plan` to a Flaky sink on `path`, batch by batch (scribbling on each batch once
    its call returned) or row by row; returns the closed sink."""
    clock = FakeClock()
    with fast_path(fast), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the counts are compared instead
        sink = Flaky(path, flush_seconds=2.0, clock=clock, **options)
        flusher.forget(sink)  # stores on time only as writes meet them: the same each run
        for kind, value in plan:
            if kind == "down":
                sink.down = value
            elif kind == "advance":
                clock.advance(value)
            elif by_rows:
                for row in iter_rows(value):
                    with contextlib.suppress(StoreError):
                        sink.write(row)
            else:
                batch = copy.deepcopy(value)
                with contextlib.suppress(StoreError):
                    sink.write_batch(batch)
                scribble(batch)
        sink.down = False
        clock.advance(120.0)
        with contextlib.suppress(StoreError):
            sink.close()
    return sink


@needs_polars
@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(steps, min_size=1, max_size=8),
    flush_every=st.integers(1, 70),
    max_pending=st.integers(1, 200),
    frame_rows=st.sampled_from([1, 40, 512]),
)
def test_batches_store_hold_and_lose_the_rows_row_by_row_writing_does(
    tmp_path_factory: pytest.TempPathFactory,
    plan: list[Step],
    flush_every: int,
    max_pending: int,
    frame_rows: int,
) -> None:
    folder = tmp_path_factory.mktemp("held")
    options = {"flush_every": flush_every, "max_pending": max_pending}
    with frames_from(frame_rows):
        batched = run(folder / "batched.jsonl", plan, by_rows=False, fast=True, **options)
    rows = run(folder / "rows.jsonl", plan, by_rows=True, fast=True, **options)
    pure = run(folder / "pure.jsonl", plan, by_rows=False, fast=False, **options)
    for other in (rows, pure):
        assert batched.rows_written == other.rows_written
        assert batched.counts == other.counts
    data = (folder / "batched.jsonl").read_bytes()
    same_lines(data, (folder / "rows.jsonl").read_bytes())
    same_lines(data, (folder / "pure.jsonl").read_bytes())


def test_a_caller_reusing_its_arrays_after_write_batch_changes_nothing_stored(
    tmp_path: Path,
) -> None:
    """2500 rows, flush_every=1000: 2000 stored within the call, 500 held past it."""
    batch = {"i": np.arange(2500), "x": np.arange(2500) / 4,
             "loss": [None if i % 7 == 0 else i / 3 for i in range(2500)]}
    reference = copy.deepcopy(batch)
    with JsonlSink(tmp_path / "a.jsonl", flush_every=1000, flush_seconds=None) as sink:
        sink.write_batch(batch)
        assert sink.rows_written == 2000 and len(sink._pending) == 500
        scribble(batch)
    with fast_path(False), JsonlSink(tmp_path / "pure.jsonl") as pure:
        pure.write_batch(reference)
    same_lines((tmp_path / "a.jsonl").read_bytes(), (tmp_path / "pure.jsonl").read_bytes())


def test_rows_held_after_a_failed_store_are_the_callers_values_of_the_call(
    tmp_path: Path, clock: FakeClock
) -> None:
    batch = {"i": np.arange(3000), "x": np.arange(3000) / 4}
    reference = copy.deepcopy(batch)
    sink = Flaky(tmp_path / "a.jsonl", flush_every=1000, flush_seconds=None, clock=clock)
    sink.write_batch({"i": np.arange(-5, 0), "x": np.arange(-5, 0) / 4})
    sink.down = True
    with pytest.raises(StoreError):
        sink.write_batch(batch)
    scribble(batch)
    assert len(sink._pending) == 3005
    sink.down = False
    clock.advance(2.0)
    sink.close()
    with fast_path(False), JsonlSink(tmp_path / "pure.jsonl") as pure:
        pure.write_batch({"i": np.arange(-5, 0), "x": np.arange(-5, 0) / 4})
        pure.write_batch(reference)
    same_lines((tmp_path / "a.jsonl").read_bytes(), (tmp_path / "pure.jsonl").read_bytes())
    assert sink.rows_written == 3005 and sink.lost == 0


def test_a_batch_larger_than_max_pending_with_storage_down_keeps_its_last_rows(
    tmp_path: Path, clock: FakeClock
) -> None:
    sink = Flaky(tmp_path / "a.jsonl", flush_every=100, flush_seconds=None,
                 max_pending=150, clock=clock)
    sink.down = True
    batch = {"i": np.arange(1000), "x": np.arange(1000) / 8}
    with pytest.warns(RuntimeWarning, match="the oldest are dropped"), pytest.raises(StoreError):
        sink.write_batch(batch)
    scribble(batch)
    assert sink.lost == 850
    sink.down = False
    clock.advance(2.0)
    sink.close()
    assert read_back((tmp_path / "a.jsonl").read_bytes()) == [
        [("i", i), ("x", i / 8)] for i in range(850, 1000)
    ]


@needs_polars
def test_polars_text_of_another_shape_leaves_the_block_to_orjson(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A polars whose JSON is of another shape (another version's: here, newline-delimited,
    or a row broken over two lines) is not taken as the block's lines."""
    import polars

    array = polars.DataFrame.write_json

    def ndjson(frame: Any, buffer: io.BytesIO) -> None:
        frame.write_ndjson(buffer)

    def broken(frame: Any, buffer: io.BytesIO) -> None:
        text = io.BytesIO()
        array(frame, text)
        buffer.write(text.getvalue().replace(b",", b",\n", 1))

    batch = {"step": np.arange(1000), "x": [None, math.nan, 0.25, -0.0] * 250}
    expected = None
    for name, writer in (("frames", None), ("ndjson", ndjson), ("broken", broken)):
        if writer is not None:
            monkeypatch.setattr(polars.DataFrame, "write_json", writer)
        with JsonlSink(tmp_path / f"{name}.jsonl") as sink:
            sink.write_batch(copy.deepcopy(batch))
        lines = read_back((tmp_path / f"{name}.jsonl").read_bytes())
        assert len(lines) == 1000
        expected = expected or lines
        assert all(
            all(exactly(a, b) for (_, a), (_, b) in zip(mine, theirs, strict=True))
            for mine, theirs in zip(lines, expected, strict=True)
        ), name
