"""JsonlSink's hold of a list of floats and None (marshal's text read for exactness, a polars
Series held) and its frames written with `write_ndjson` change no byte of the file.

Specification: a list column is held as floats only when every element is exactly a float or
None (an int, a bool, a float subclass, a numpy scalar, a huge int or text among them sends
the column down the path that held it before); the file is then, byte for byte, the file the
type scan's hold makes, `write_ndjson`'s lines are `write_json`'s, and the file holds the
values row-by-row writing and the pure-Python path write, with storage failing at any point."""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sinks.file
import sinks.jsonl
from pipeline.core.columns import FloatsText, MaskedColumns, iter_rows, present
from pipeline.core.isolation import StoreError
from sinks import JsonlSink, flusher
from tests.conftest import FakeClock, exactly, fast_path
from tests.sinks.test_fast_columns import read_back
from tests.sinks.test_jsonl_held_blocks import Flaky

pytest.importorskip("orjson")
polars = pytest.importorskip("polars")

Batch = dict[str, Any]


class Half(float):
    """A float subclass: written as its float by the row path, never held as a float."""


ODD_VALUES = [
    None,
    0.5,
    -0.0,
    0.0,
    1e-300,
    5e-324,
    1e16,
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    1,
    0,
    -3,
    True,
    False,
    2**63,
    2**80,
    -(2**70),
    Half(2.5),
    np.float64(0.25),
    np.float32(0.1),
    np.int64(7),
    "g",
]
"""Values a list column may mix: floats (edge ones too), None, and every kind that is not
exactly a float."""

FLOATS = st.sampled_from([0.5, -0.0, 1e-300, 5e-324, 1e16, 1e308, math.nan, math.inf]) | st.floats()


def exact_kind(column: list[Any]) -> bool:
    return all(type(value) is float or value is None for value in column)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(ODD_VALUES) | FLOATS, min_size=1, max_size=40))
def test_a_list_is_held_as_floats_exactly_when_it_holds_floats_and_none_alone(
    column: list[Any],
) -> None:
    held = sinks.jsonl._held_floats(polars, "k", column)
    assert (held is not None) == exact_kind(column)
    if held is None:
        return
    values, finite = held
    got = values.to_list() if isinstance(values, polars.Series) else values.tolist()
    assert len(got) == len(column)
    assert all(exactly(a, b) for a, b in zip(got, column, strict=True))
    assert finite == all(value is None or math.isfinite(value) for value in column)


def test_marshal_codes_of_other_values_never_pass_for_floats() -> None:
    """A bool (1 byte, as None) and an int of 17 bytes (two floats' 18 in all) fit the length
    of floats and None: the codes are read where each element starts all the same."""
    for column in ([True, 2**80, 1.5], [2**80, True, None, 1.5], [None, True, 2**80]):
        text = FloatsText.of(column)
        nones = np.array([value is None for value in column])
        assert text is None or not text.holds(nones)
        assert sinks.jsonl._held_floats(polars, "k", column) is None


@contextlib.contextmanager
def settings_of_frames(frame_rows: int, ndjson_rows: int) -> Iterator[None]:
    """Runs of at least `frame_rows` rows go through polars, of `ndjson_rows` through its
    `write_ndjson`."""
    before = sinks.jsonl._FRAME_ROWS, sinks.jsonl._NDJSON_ROWS
    sinks.jsonl._FRAME_ROWS, sinks.jsonl._NDJSON_ROWS = frame_rows, ndjson_rows
    try:
        yield
    finally:
        sinks.jsonl._FRAME_ROWS, sinks.jsonl._NDJSON_ROWS = before


@contextlib.contextmanager
def type_scan_hold() -> Iterator[None]:
    """The hold before marshal's text was read: every list column held by its type scan."""
    before = sinks.jsonl._held_floats
    sinks.jsonl._held_floats = lambda polars, key, column: None
    try:
        yield
    finally:
        sinks.jsonl._held_floats = before


@st.composite
def float_lists(draw: st.DrawFn, length: int) -> list[Any]:
    """A list of floats with None first, last, nowhere, everywhere or anywhere, and at times
    one value of another kind."""
    where = draw(st.sampled_from(["first", "last", "none", "all", "any"]))
    values: list[Any] = draw(st.lists(FLOATS, min_size=length, max_size=length))
    if where == "first":
        values[0] = None
    elif where == "last":
        values[-1] = None
    elif where == "all":
        values = [None] * length
    elif where == "any":
        values = [
            None if gap else value
            for value, gap in zip(
                values,
                draw(st.lists(st.booleans(), min_size=length, max_size=length)),
                strict=True,
            )
        ]
    if draw(st.integers(0, 4)) == 0:
        values[draw(st.integers(0, length - 1))] = draw(st.sampled_from(ODD_VALUES))
    return values


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """A batch whose keys and column kinds may differ from the batch before: a float list
    with None, int64 and float64 arrays, ints with None."""
    length = draw(st.integers(1, 60))
    keys = draw(st.sampled_from([("a", "loss", "i"), ("loss", "a"), ("", "loss"), ("loss",)]))
    batch: Batch = {}
    for key in keys:
        kind = draw(st.sampled_from(["floats", "floats", "f64", "i64", "ints"]))
        if kind == "floats":
            batch[key] = draw(float_lists(length))
        elif kind == "f64":
            batch[key] = np.array(
                draw(st.lists(FLOATS, min_size=length, max_size=length)), dtype=np.float64
            )
        elif kind == "i64":
            batch[key] = np.arange(length, dtype=np.int64) - draw(st.integers(0, 2**40))
        else:
            batch[key] = draw(
                st.lists(
                    st.none() | st.integers(-(2**63), 2**63 - 1), min_size=length, max_size=length
                )
            )
    if draw(st.integers(0, 5)) == 0:
        return MaskedColumns(batch)
    return batch


Step = tuple[str, Any]
steps = st.one_of(
    batches().map(lambda batch: ("batch", batch)),
    st.booleans().map(lambda down: ("down", down)),
)


def run(path: Path, plan: list[Step], by_rows: bool, fast: bool, **options: Any) -> Flaky:
    """Feeds `plan` to a Flaky sink on `path`, batch by batch (overwriting each batch's lists
    and arrays once its call returned) or row by row; returns the closed sink."""
    with fast_path(fast), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the counts are compared instead
        sink = Flaky(path, flush_seconds=None, clock=FakeClock(), **options)
        flusher.forget(sink)
        for kind, value in plan:
            if kind == "down":
                sink.down = value
            elif by_rows:
                rows = iter_rows(value)
                for row in map(present, rows) if type(value) is MaskedColumns else rows:
                    with contextlib.suppress(StoreError):
                        sink.write(row)
            else:
                batch = copy.deepcopy(value)
                with contextlib.suppress(StoreError):
                    sink.write_batch(batch)
                for column in batch.values():  # a caller reusing its buffers
                    column[:] = [7] * len(column)
        sink.down = False
        with contextlib.suppress(StoreError):
            sink.close()
    return sink


def same_values(ours: bytes, theirs: bytes) -> None:
    mine, reference = read_back(ours), read_back(theirs)
    assert len(mine) == len(reference)
    for a, b in zip(mine, reference, strict=True):
        assert [key for key, _ in a] == [key for key, _ in b]
        assert all(exactly(x, y) for (_, x), (_, y) in zip(a, b, strict=True)), (a, b)


@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(steps, min_size=1, max_size=7),
    flush_every=st.integers(1, 90),
    max_pending=st.integers(1, 300),
    frames=st.sampled_from([(1, 1), (1, 30), (40, 2048), (512, 2048)]),
)
def test_batches_of_float_lists_write_the_bytes_of_the_type_scans_hold(
    tmp_path_factory: pytest.TempPathFactory,
    plan: list[Step],
    flush_every: int,
    max_pending: int,
    frames: tuple[int, int],
) -> None:
    """Byte for byte: marshal's hold and the type scan's, `write_ndjson` and `write_json`;
    value for value and type for type: row by row and the pure-Python path."""
    folder = tmp_path_factory.mktemp("exact")
    options = {"flush_every": flush_every, "max_pending": max_pending}
    with settings_of_frames(*frames):
        batched = run(folder / "batched", plan, by_rows=False, fast=True, **options)
        with type_scan_hold(), settings_of_frames(frames[0], 10**9):
            scanned = run(folder / "scanned", plan, by_rows=False, fast=True, **options)
    rows = run(folder / "rows", plan, by_rows=True, fast=True, **options)
    pure = run(folder / "pure", plan, by_rows=False, fast=False, **options)
    for other in (scanned, rows, pure):
        assert batched.rows_written == other.rows_written
        assert batched.counts == other.counts
    data = (folder / "batched").read_bytes()
    assert data == (folder / "scanned").read_bytes()
    same_values(data, (folder / "rows").read_bytes())
    same_values(data, (folder / "pure").read_bytes())


def test_a_store_failing_midway_through_runs_of_float_blocks_loses_and_doubles_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    """4096-row batches with None in a float list, flush_every=1000: each store is a run of
    the last batch's held rows and the next batch's, written by `write_ndjson`; storage
    fails for two batches and recovers."""
    rng = np.random.default_rng(3)

    def batch(start: int) -> Batch:
        loss = [None if rng.random() < 0.05 else float(x) for x in rng.normal(size=4096)]
        loss[0] = None
        return {"step": np.arange(start, start + 4096), "loss": loss, "x": rng.random(4096)}

    stream = [batch(4096 * index) for index in range(5)]
    sink = Flaky(tmp_path / "a.jsonl", flush_every=1000, flush_seconds=None, clock=clock)
    with settings_of_frames(512, 2048):
        for index, columns in enumerate(stream):
            sink.down = index in (2, 3)
            with contextlib.suppress(StoreError):
                sink.write_batch(copy.deepcopy(columns))
            clock.advance(2.0)  # past the retry's back-off
        sink.down = False
        sink.close()
    with fast_path(False), JsonlSink(tmp_path / "pure.jsonl") as pure:
        for columns in stream:
            pure.write_batch(columns)
    assert sink.rows_written == 5 * 4096 and sink.lost == 0
    same_values((tmp_path / "a.jsonl").read_bytes(), (tmp_path / "pure.jsonl").read_bytes())


def test_write_ndjson_writes_write_jsons_lines_for_every_frame_type() -> None:
    """Every column type a frame is written from, nulls, edge floats, keys to escape; one
    chunk and two."""
    length = 64
    rng = np.random.default_rng(5)
    floats = [
        None if index % 5 == 0 else float(x) for index, x in enumerate(rng.normal(size=length))
    ]
    floats[1:9] = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e16, 1e-7, 1e21]
    first = polars.Series('loss é"\\\t', floats, dtype=polars.Float64)
    for chunks in (1, 2):
        loss = first.clone()
        if chunks == 2:
            loss.append(first)
        rows = len(loss)
        frame = polars.DataFrame(
            [
                loss,
                polars.Series("", rng.integers(-(2**63), 2**63 - 1, size=rows)),
                polars.Series("u", rng.integers(0, 2**64 - 1, size=rows, dtype=np.uint64)),
                polars.Series("i8", rng.integers(-128, 127, size=rows, dtype=np.int8)),
                polars.Series("b", rng.random(rows) < 0.5),
                polars.Series("n", [None] * rows),
            ]
        )
        wrapped = sinks.jsonl._Frame(frame, None)
        with settings_of_frames(1, 10**9):
            by_json = bytes(wrapped.lines() or b"")
        with settings_of_frames(1, 1):
            by_ndjson = bytes(wrapped.lines() or b"")
        assert by_json and by_json == by_ndjson
        assert by_json.count(b"\n") == rows


def test_a_run_of_held_frames_is_written_as_the_joined_blocks_frame(tmp_path: Path) -> None:
    """The benchmark's shape: 4096-row batches of int64 and float64 arrays and a float list
    with None are held with their DataFrame; a store's run (the last rows of one batch, the
    first of the next) is written from those frames put end to end, as the frame of the
    joined block writes it."""
    rng = np.random.default_rng(11)

    def batch() -> Batch:
        loss = [None if rng.random() < 0.02 else float(x) for x in rng.normal(size=4096)]
        return {"steps": rng.integers(0, 10**9, size=4096), "x": rng.random(4096), "loss": loss}

    with JsonlSink(tmp_path / "a.jsonl") as sink:
        first, second = (sink._columns_held(batch(), 4096) for _ in range(2))
    assert first is not None and second is not None
    assert first.table is not None and first.finite
    assert isinstance(first.columns["loss"], polars.Series)
    run = [first.part(4000, 4096), second.part(0, 3904)]
    from_tables = sinks.jsonl.JsonlSink._tables_text(run)
    frame = sinks.jsonl._Frame.of(polars, sinks.jsonl._join(run))
    assert frame is not None and frame.odd is None
    assert from_tables is not None and bytes(from_tables) == bytes(frame.lines() or b"")
    assert bytes(from_tables).count(b"\n") == 4000
