"""Attacks on JsonlSink's batched path: lists of floats and None held as polars Series (their
exactness read from marshal's text), a block's NaN/infinity check made once, its DataFrame
made when held (from 512 rows) and stacked per store, `write_ndjson` from 16,384 rows, and
`write_batch` holding the rows a store takes before storing them (an interrupt as the store
begins leaves them held).

Specification: whatever a batch holds, the file reads
back, value for value and type for type (1 is not 1.0, True is not 1, -0.0 keeps its sign,
NaN and infinities as the row path writes them), as the same records written row by row and
as the pure-Python path writes them; with the same counts and rows written; whatever the
caller does to its lists and arrays once `write_batch` returned; across the real thresholds
(511/512/513, 16,383/16,384/16,385 rows), keys and kinds changing between batches, storage
failing at any byte, checkpoints and resumes, and several threads writing at once."""

from __future__ import annotations

import contextlib
import copy
import decimal
import fractions
import json
import math
import pickle
import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sinks.jsonl
from pipeline.core import lifecycle
from pipeline.core.columns import FloatsText, iter_rows
from pipeline.core.isolation import StoreError
from sinks import JsonlSink, flusher
from tests.conftest import FakeClock, exactly, fast_path

pytest.importorskip("orjson")
polars = pytest.importorskip("polars")

Batch = dict[str, Any]


class Half(float):
    """A float subclass (the row path writes it as its float)."""


class Floaty:
    """Not a number, but has __float__ (the row path writes its text)."""

    def __float__(self) -> float:
        return 2.5

    def __str__(self) -> str:
        return "floaty"


class Room(JsonlSink):
    """A JsonlSink on a disk with `room` bytes left (None: no limit): an append that does not
    fit raises ENOSPC, as a full disk does, and leaves the file as it was."""

    room: int | None = None

    def _append(self, text: str | bytes | memoryview) -> None:
        size = len(text.encode()) if isinstance(text, str) else memoryview(text).nbytes
        if self.room is not None:
            if size > self.room:
                raise OSError(28, "No space left on device")
            self.room -= size
        super()._append(text)


def read(path: Path) -> list[list[tuple[str, Any]]]:
    """The file's lines as (key, value) lists: one JSON object a line, each line ending in a
    newline, none that `str.splitlines` breaks."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert len(data.decode("utf-8", "surrogatepass").splitlines()) == len(lines)
    return [list(json.loads(line).items()) for line in lines]


def same_file(ours: Path, theirs: Path) -> None:
    mine, reference = read(ours), read(theirs)
    assert len(mine) == len(reference)
    for index, (a, b) in enumerate(zip(mine, reference, strict=True)):
        assert [key for key, _ in a] == [key for key, _ in b], index
        assert all(exactly(x, y) for (_, x), (_, y) in zip(a, b, strict=True)), (index, a, b)


def reuse(batch: Batch) -> None:
    """What a caller reusing its buffers does once write_batch returned."""
    for column in batch.values():
        if isinstance(column, np.ndarray):
            column[...] = 7
        elif isinstance(column, list):
            column[:] = [7] * len(column)


def write(
    path: Path,
    plan: list[tuple[str, Any]],
    *,
    by_rows: bool,
    fast: bool = True,
    sink_type: type[JsonlSink] = Room,
    **options: Any,
) -> JsonlSink:
    """Feeds `plan` (("batch", columns), ("row", record), ("room", bytes or None)) to a sink
    on `path`, batches as batches (their lists and arrays overwritten once each call
    returned) or row by row; returns the closed sink."""
    options.setdefault("flush_seconds", None)
    with fast_path(fast), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the counts are compared instead
        sink = sink_type(path, clock=FakeClock(), **options)
        flusher.forget(sink)
        for kind, value in plan:
            if kind == "room":
                sink.room = value  # type: ignore[attr-defined]
            elif kind == "row":
                with contextlib.suppress(StoreError):
                    sink.write(dict(value))
            elif by_rows:
                for row in iter_rows(value):
                    with contextlib.suppress(StoreError):
                        sink.write(row)
            else:
                batch = copy.deepcopy(value)
                with contextlib.suppress(StoreError):
                    sink.write_batch(batch)
                reuse(batch)
        sink.room = None  # type: ignore[attr-defined]
        with contextlib.suppress(StoreError):
            sink.close()
    return sink


def three_ways(folder: Path, plan: list[tuple[str, Any]], **options: Any) -> None:
    """Batched (fast path) against row by row and against the pure-Python path."""
    batched = write(folder / "batched.jsonl", plan, by_rows=False, **options)
    rows = write(folder / "rows.jsonl", plan, by_rows=True, **options)
    pure = write(folder / "pure.jsonl", plan, by_rows=False, fast=False, **options)
    for other in (rows, pure):
        assert batched.rows_written == other.rows_written
        assert batched.counts == other.counts
    same_file(folder / "batched.jsonl", folder / "rows.jsonl")
    same_file(folder / "batched.jsonl", folder / "pure.jsonl")


# -- lists whose marshal text might pass for floats and None ------------------------------

ALIASES: dict[str, list[Any]] = {
    "small ints": [0, 1, -5, 256],
    "ints of 4 and 8 bytes": [2**31 - 1, -(2**31), 2**40, -(2**62)],
    "huge ints": [2**63, 2**64 + 1, -(2**100), 10**40],
    "17-byte int (two floats' length)": [2**80],
    "bools (None's length)": [True, False],
    "text": ["g", "N", "", "gggggggg"],
    "bytes": [b"g" * 8, b"N"],
    "nested lists": [[1.5], [None], []],
    "tuples": [(1.5,), (None, 2.5)],
    "float subclass": [Half(2.5), Half("nan")],
    "numpy scalars": [np.float64(0.25), np.float32(0.1), np.int64(7), np.bool_(True)],
    "decimal and fraction": [decimal.Decimal("1.5"), fractions.Fraction(1, 3)],
    "an object with __float__": [Floaty()],
    "complex": [1 + 0j],
}

FLOAT_EDGES = [
    None,
    -0.0,
    0.0,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1e16,
    1e21,
    1e-7,
    0.1,
    3.0,
    math.nan,
    math.inf,
    -math.inf,
]


@pytest.mark.parametrize("alias", sorted(ALIASES))
@pytest.mark.parametrize("length", [1, 511, 512, 513])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_list_with_one_value_of_another_kind_reads_back_as_written_row_by_row(
    tmp_path: Path, alias: str, length: int, where: str
) -> None:
    """Floats and None with one value that is no float among them (at the start, the middle
    or the end): never held as floats, the file is the row path's."""
    odd = ALIASES[alias]
    column: list[Any] = [FLOAT_EDGES[index % len(FLOAT_EDGES)] for index in range(length)]
    place = {"first": 0, "middle": length // 2, "last": length - 1}[where]
    column[place] = odd[place % len(odd)]
    assert sinks.jsonl._held_floats(polars, "loss", column) is None
    batch = {"step": np.arange(length), "loss": column, "x": np.linspace(0.0, 1.0, length)}
    three_ways(tmp_path, [("batch", batch)], flush_every=1000)


def test_marshal_text_of_whole_lists_of_other_kinds_never_passes_for_floats() -> None:
    """Each kind alone, and mixed so that their bytes add up to floats' and Nones' length."""
    for name, values in ALIASES.items():
        for column in (values, values * 9, [*values, None, 1.5], [None, *values, 0.5]):
            text = FloatsText.of(column)
            nones = np.array([value is None for value in column])
            assert text is None or not text.holds(nones), name
            assert sinks.jsonl._held_floats(polars, "k", column) is None, name
    # a bool and a 17-byte int take a None's and two floats' bytes
    for column in ([True, 2**80, None], [None, 2**80, False, 1.5], [2**80, 1.5, True]):
        assert sinks.jsonl._held_floats(polars, "k", column) is None


# -- the real thresholds ------------------------------------------------------------------


def edge_batch(length: int, start: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    loss: list[Any] = [None if rng.random() < 0.1 else float(x) for x in rng.normal(size=length)]
    for index in range(0, length, 97):  # edge floats at fixed places
        loss[index] = FLOAT_EDGES[(index // 97) % len(FLOAT_EDGES)]
    finite = [float(x) for x in rng.normal(size=length)]
    finite[0] = -0.0
    return {
        "step": np.arange(start, start + length),
        "loss": loss,  # floats (NaN, infinities) and None: a Series, rows made anew
        "finite": finite,  # floats alone: a float64 array
        "x": rng.random(length),
        "n": [None if index % 3 else index * 2**40 for index in range(length)],  # ints, None
        "flag": rng.random(length) < 0.5,
        "u": np.full(length, 2**64 - 1, dtype=np.uint64),
    }


@pytest.mark.parametrize("length", [511, 512, 513])
@pytest.mark.parametrize("flush_every", [1, 7, 1000, 5000])
def test_batches_at_the_frame_threshold_read_back_as_row_by_row(
    tmp_path: Path, length: int, flush_every: int
) -> None:
    plan = [("batch", edge_batch(length, index * length, index)) for index in range(3)]
    three_ways(tmp_path, plan, flush_every=flush_every)


@pytest.mark.parametrize("length", [16383, 16384, 16385])
def test_stores_at_the_write_ndjson_threshold_read_back_as_row_by_row(
    tmp_path: Path, length: int
) -> None:
    """One store a batch (flush_every above the batch's rows): polars' write_json below
    16,384 rows, write_ndjson from there; two batches of finite floats (their held frames
    stacked) and one with NaN and None."""
    rng = np.random.default_rng(length)
    finite = {
        "step": np.arange(length),
        "x": rng.random(length),
        "y": list(rng.normal(size=length)),
    }
    finite["y"] = [float(value) for value in finite["y"]]
    finite["y"][5] = None
    plan = [("batch", finite), ("batch", edge_batch(length, length, 1))]
    batched = write(tmp_path / "batched.jsonl", plan, by_rows=False, flush_every=length)
    rows = write(tmp_path / "rows.jsonl", plan, by_rows=True, flush_every=length)
    assert batched.rows_written == rows.rows_written == 2 * length
    assert batched.counts == rows.counts
    same_file(tmp_path / "batched.jsonl", tmp_path / "rows.jsonl")


@pytest.mark.parametrize("flush_every", [1, 1000])
def test_a_batch_past_the_merged_stores_bound_reads_back_as_row_by_row(
    tmp_path: Path, flush_every: int
) -> None:
    """70,001 rows a batch: merged stores of up to MERGED_STORE (65,536) rows, their held
    frames sliced at the bound and written by write_ndjson, the rest joined with the next
    batch's."""
    length = 70001
    rng = np.random.default_rng(9)
    loss: list[Any] = [float(x) for x in rng.normal(size=length)]
    loss[65535:65538] = [None, -0.0, None]
    plan = [
        ("batch", {"step": np.arange(length), "loss": loss, "x": rng.random(length)}),
        ("batch", {"step": np.arange(length, 2 * length), "loss": loss, "x": rng.random(length)}),
    ]
    batched = write(tmp_path / "batched.jsonl", plan, by_rows=False, flush_every=flush_every)
    rows = write(tmp_path / "rows.jsonl", plan, by_rows=True, flush_every=flush_every)
    assert batched.rows_written == rows.rows_written == 2 * length
    same_file(tmp_path / "batched.jsonl", tmp_path / "rows.jsonl")


@pytest.mark.parametrize("held_fast", [True, False])
def test_the_fast_path_switched_between_hold_and_store_changes_no_value(
    tmp_path: Path, held_fast: bool
) -> None:
    """Blocks held with Series and frames, stored with the fast path off (and the reverse):
    the file the fast path writes throughout."""
    plan = [
        ("batch", edge_batch(length, 10**6 * index, index))
        for index, length in enumerate([600, 2048, 5])
    ]
    write(tmp_path / "whole.jsonl", plan, by_rows=False, flush_every=10**6)
    with fast_path(held_fast):
        sink = JsonlSink(tmp_path / "switched.jsonl", flush_every=10**6, flush_seconds=None)
        for _, batch in plan:
            sink.write_batch(copy.deepcopy(batch))
    with fast_path(not held_fast), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink.close()
    same_file(tmp_path / "switched.jsonl", tmp_path / "whole.jsonl")


# -- any stream of batches, rows and a disk that fills up ----------------------------------

KEYS = ["loss", "", "é", 'q"uote', "back\\slash", "tab\t", "}", "a,b", "\x00", "😀"]
VALUES = st.sampled_from(FLOAT_EDGES) | st.floats()


@st.composite
def columns(draw: st.DrawFn, length: int) -> Any:
    kind = draw(st.sampled_from(["floats", "floats", "f64", "i64", "ints", "nones", "bools"]))
    if kind == "floats":
        values = draw(st.lists(VALUES, min_size=length, max_size=length))
        if draw(st.booleans()):
            values[draw(st.integers(0, length - 1))] = None
        return values
    if kind == "f64":
        values = draw(st.lists(VALUES.filter(lambda v: v is not None), min_size=1, max_size=1))
        return np.full(length, values[0]) + np.arange(length)
    if kind == "i64":
        return np.arange(length, dtype=np.int64) * draw(st.sampled_from([1, -1, 2**40]))
    if kind == "ints":
        return draw(
            st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=length, max_size=length)
        )
    if kind == "bools":
        return np.arange(length) % 2 == 0
    return [None] * length


@st.composite
def plans(draw: st.DrawFn) -> list[tuple[str, Any]]:
    plan: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 5))):
        step = draw(st.sampled_from(["batch", "batch", "batch", "row", "room"]))
        if step == "room":
            plan.append(("room", draw(st.sampled_from([None, 0, 300, 4000, 60000]))))
            continue
        keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
        if step == "row":
            plan.append(("row", {key: draw(VALUES | st.integers()) for key in keys}))
            continue
        length = draw(st.sampled_from([1, 2, 30, 511, 512, 513, 700]))
        plan.append(("batch", {key: draw(columns(length)) for key in keys}))
    return plan


@settings(max_examples=40, deadline=None)
@given(
    plan=plans(),
    flush_every=st.sampled_from([1, 7, 100, 1000, 5000]),
    max_pending=st.sampled_from([50, 1000, 10**6]),
)
def test_any_stream_reads_back_as_row_by_row_and_the_pure_path(
    tmp_path_factory: pytest.TempPathFactory,
    plan: list[tuple[str, Any]],
    flush_every: int,
    max_pending: int,
) -> None:
    """Batches of any kinds and keys (changing between batches), rows between them, a disk
    that fills up at any byte and frees room again: the same rows stored, held and lost."""
    three_ways(
        tmp_path_factory.mktemp("stream"), plan, flush_every=flush_every, max_pending=max_pending
    )


# -- what the caller does after the call ---------------------------------------------------


def test_the_callers_buffers_reused_before_the_store_change_nothing(tmp_path: Path) -> None:
    """The benchmark's shape, one buffer of each kind reused for every batch and overwritten
    after each call, stores made from held frames (finite) and from rows (NaN)."""
    length = 2048
    step = np.zeros(length, dtype=np.int64)
    x = np.zeros(length)
    loss: list[Any] = [0.0] * length
    expected: list[dict[str, Any]] = []
    with JsonlSink(tmp_path / "a.jsonl", flush_every=3000, flush_seconds=None) as sink:
        for index in range(5):
            step[:] = np.arange(index * length, (index + 1) * length)
            x[:] = np.linspace(index, index + 1, length)
            loss[:] = [None if i % 11 == 0 else float(i) / 3 for i in range(length)]
            if index == 3:
                loss[7] = math.nan
            sink.write_batch({"step": step, "x": x, "loss": loss})
            expected.extend(
                {"step": int(a), "x": float(b), "loss": c}
                for a, b, c in zip(step, x, loss, strict=True)
            )
            step[:] = -1
            x[:] = math.inf
            loss[:] = [123.0] * length
    got = [dict(row) for row in read(tmp_path / "a.jsonl")]
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert list(a) == list(b)
        assert all(exactly(a[key], b[key]) for key in a), (a, b)


# -- checkpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("flush_every", [7, 1000, 5000])
def test_a_resume_from_a_checkpoint_between_batches_writes_the_uninterrupted_file(
    tmp_path: Path, cut: int, flush_every: int
) -> None:
    """state_dict() with blocks held (Series, frames), a crash, a new sink loads the state
    and writes the rest: the uninterrupted run's file."""
    stream = [
        edge_batch(length, 10**6 * index, index) for index, length in enumerate([600, 3, 2048, 511])
    ]
    options = {"flush_every": flush_every, "flush_seconds": None}
    with JsonlSink(tmp_path / "whole.jsonl", **options) as whole:
        for batch in stream:
            whole.write_batch(batch)
    first = JsonlSink(tmp_path / "resumed.jsonl", **options)
    for batch in stream[:cut]:
        first.write_batch(copy.deepcopy(batch))
    state = pickle.dumps(first.state_dict())
    lifecycle.forget(first)  # a crash: nothing more reaches the file
    flusher.forget(first)
    first._release()
    first.closed = True
    with JsonlSink(tmp_path / "resumed.jsonl", **options) as resumed:
        resumed.load_state_dict(pickle.loads(state))
        for batch in stream[cut:]:
            resumed.write_batch(copy.deepcopy(batch))
    same_file(tmp_path / "resumed.jsonl", tmp_path / "whole.jsonl")


# -- threads -------------------------------------------------------------------------------


@pytest.mark.parametrize("flush_every", [1, 100, 1000, 5000])
def test_threads_writing_batches_at_once_lose_and_double_no_row(
    tmp_path: Path, flush_every: int
) -> None:
    """Three threads write batches (512 rows and more: held with frames) and rows to one
    sink, a flusher thread storing by time too: every row is stored once, each thread's rows
    in its order."""
    sink = JsonlSink(tmp_path / "a.jsonl", flush_every=flush_every, flush_seconds=0.0)
    sizes = [1, 513, 600, 37, 2048]
    barrier = threading.Barrier(3)

    def writer(tid: int) -> None:
        barrier.wait()
        for index in range(15):
            length = sizes[index % len(sizes)]
            base = index * 10**5
            loss = [None if i % 5 == 0 else float(i) for i in range(length)]
            sink.write_batch(
                {"tid": np.full(length, tid), "i": np.arange(base, base + length), "loss": loss}
            )
            if index % 4 == 0:
                sink.write({"tid": tid, "i": base + 99999, "loss": 0.5})

    threads = [threading.Thread(target=writer, args=(tid,)) for tid in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    rows = [dict(row) for row in read(tmp_path / "a.jsonl")]
    per_thread = sum(sizes[index % len(sizes)] + (index % 4 == 0) for index in range(15))
    assert len(rows) == sink.rows_written == 3 * per_thread
    assert max(Counter((row["tid"], row["i"]) for row in rows).values()) == 1
    for tid in range(3):
        mine = [row["i"] for row in rows if row["tid"] == tid]
        assert mine == sorted(mine)
    assert sink.lost == 0


# -- an interrupt as a store begins ----------------------------------------------------------


@contextlib.contextmanager
def _interrupt_once(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Ctrl-C that lands as the next store begins, before its signals are held back
    (`lifecycle.signals_deferred` is entered): KeyboardInterrupt there, once."""
    real = lifecycle.signals_deferred
    armed = [True]

    @contextlib.contextmanager
    def deferred() -> Any:
        if armed[0]:
            armed[0] = False
            raise KeyboardInterrupt
        with real():
            yield

    monkeypatch.setattr(lifecycle, "signals_deferred", deferred)
    yield
    monkeypatch.setattr(lifecycle, "signals_deferred", real)


def test_an_interrupt_as_writes_store_begins_keeps_the_row_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row by row: the row that made the store due is held before the store begins, so an
    interrupt there loses nothing; close() stores it."""
    sink = JsonlSink(tmp_path / "a.jsonl", flush_every=10, flush_seconds=None)
    sink.write_batch({"i": np.arange(5)})
    with _interrupt_once(monkeypatch), contextlib.suppress(KeyboardInterrupt):
        for row in iter_rows({"i": np.arange(5, 20)}):
            sink.write(row)
    sink.close()
    assert [dict(row)["i"] for row in read(tmp_path / "a.jsonl")] == list(range(10))


def test_an_interrupt_as_write_batchs_store_begins_keeps_the_rows_it_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5 rows held, a batch of 15 makes a store due: the store's rows (the 5 held and the
    batch's 15) are in the queue before it begins (as `write` holds its row), so an interrupt
    there leaves them held and close() stores them."""
    sink = JsonlSink(tmp_path / "a.jsonl", flush_every=10, flush_seconds=None)
    sink.write_batch({"i": np.arange(5)})
    with _interrupt_once(monkeypatch), contextlib.suppress(KeyboardInterrupt):
        sink.write_batch({"i": np.arange(5, 20)})
    sink.close()
    stored = [dict(row)["i"] for row in read(tmp_path / "a.jsonl")]
    assert stored == list(range(20)) or sink.lost == 20 - len(stored), (stored, sink.counts)
