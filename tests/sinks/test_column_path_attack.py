"""Attacks on the file sinks' column path with the `fast` extra (`CsvSink.write_batch`,
`JsonlSink.write_batch`: `numeric_block`, `RowBlock`, `held_segments`, JSONL's `_joined`
blocks, `_Frame` and `_block_lines`, CSV's `_json_lines` and column writers).

Specification: for any interleaving of `write(row)` and `write_batch(columns)` (numpy arrays
of every numeric dtype, lists of ints/floats/bools/None/text/objects, `MaskedColumns`), any
`flush_every`, `flush_seconds` (a fake clock), `max_pending`, storage going down or filling
up and recovering at any point, and the caller scribbling over its arrays and lists once
each call returned, the sink stores, holds and loses after every call what the same records
written row by row with the fast path off (`sinks.file.FAST = False`) do, and its file reads
back as theirs: CSV byte for byte, JSONL line for line, key for key, value for value and type
for type (1 is not 1.0, -0.0 keeps its sign, NaN and infinities as literals, ints beyond
2**63 exact); `counts` are equal. Appending to a file (`mode="a"`) and resuming from a
checkpoint taken while blocks are held give the uninterrupted pure file.

The defects these attacks found are pinned at the end: JSONL joined a held list of ints with
the next batch's list of floats into floats; a batch's merged store due by time was cut into
other runs than row by row's on a filling disk (a row lost that row by row stores); CsvSink
counted `overwritten` again at every failed store; a lone-surrogate key sent a JSONL block
one row per append (other rows stored and lost than the pure path's on a filling disk)."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

import sinks.csv
import sinks.file
import sinks.jsonl
from pipeline.core.columns import MaskedColumns, present_rows
from pipeline.core.isolation import StoreError
from sinks import CsvSink, JsonlSink, flusher
from tests.conftest import FakeClock, exactly, fast_path

pytest.importorskip("orjson")
pytest.importorskip("polars")

Batch = dict[Any, Any]
Step = tuple[str, Any]


@contextlib.contextmanager
def frames_from(jsonl_rows: int, csv_rows: int) -> Iterator[None]:
    """Blocks (and CSV row runs) of at least these many rows go through polars."""
    before = sinks.jsonl._FRAME_ROWS, sinks.csv.FRAME_ROWS
    sinks.jsonl._FRAME_ROWS, sinks.csv.FRAME_ROWS = jsonl_rows, csv_rows
    try:
        yield
    finally:
        sinks.jsonl._FRAME_ROWS, sinks.csv.FRAME_ROWS = before


# -- sinks whose storage fails on demand -----------------------------------------------------


class Storage:
    """What the injected storage does: `down` refuses every write (ENOSPC); `room` (lines, or
    None) refuses a write that would leave the data file with more lines (a disk filling up,
    counted in lines: the fast path's JSON text is shorter than json's)."""

    def __init__(self) -> None:
        self.down = False
        self.room: int | None = None

    def check(
        self, path: Path, text: bytes | bytearray | memoryview, replacing: bool = False
    ) -> None:
        if self.down:
            raise OSError(28, "No space left on device")
        if self.room is not None:
            lines = 0 if replacing or not path.is_file() else path.read_bytes().count(b"\n")
            if lines + bytes(text).count(b"\n") > self.room:
                raise OSError(28, "No space left on device")


class FlakyJsonl(JsonlSink):
    storage: Storage

    def _append(self, text: str | bytes | memoryview) -> None:
        self.storage.check(self.path, text.encode() if isinstance(text, str) else text)
        super()._append(text)


class FlakyCsv(CsvSink):
    storage: Storage

    def _append(self, text: str | bytes | memoryview) -> None:
        self.storage.check(self.path, text.encode() if isinstance(text, str) else text)
        super()._append(text)

    def _replace_with(self, temporary: Path) -> None:  # a rewrite under a wider header
        self.storage.check(self.path, temporary.read_bytes(), replacing=True)
        super()._replace_with(temporary)


def make(kind: str, path: Path, clock: FakeClock, storage: Storage, **options: Any) -> Any:
    """A flaky sink of `kind` on the fake clock, stored on time only as writes meet it (the
    flusher thread forgets it: the same stores each run)."""
    if kind == "jsonl":
        sink: Any = FlakyJsonl(path, clock=clock, **options)
    else:
        sink = FlakyCsv(path, **options)
        sink._clock = clock  # CsvSink takes no clock
    sink.storage = storage
    flusher.forget(sink)
    return sink


# -- values and batches ----------------------------------------------------------------------

EDGE_FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 1e-4, 9.99e-5, 1e-5, 1e-7, 5e-324, 2.2250738585072014e-308,
    1e15, 1e16, 1e17, 1e21, 1e22, 2.0**53, 2.0**53 + 2, 123456789012345680.0, 1e308,
    1.7976931348623157e308, math.nan, math.inf, -math.inf, 100.00001,
]
floats = st.sampled_from(EDGE_FLOATS) | st.floats() | st.integers(0, 2**64 - 1).map(
    lambda bits: float(np.array(bits, dtype=np.uint64).view(np.float64))
)
ints = st.sampled_from(
    [0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 2**70]
) | st.integers(-(2**64), 2**64)
small_ints = st.integers(-(2**63), 2**63 - 1)

KEYS: list[Any] = [
    "a", "b", "c", "x,y", 'q"', "{k", "n\nl", "l\u2028", "\x1c\x0b", "%s", 3, "\ud800",
]
"""Keys: a delimiter, a quote, a `{`, a newline, U+2028 and other characters
`str.splitlines` breaks at, `%`, an int, a lone surrogate."""
PLAIN_KEYS = ["a", "b", "c", "x,y", "n\nl"]

KINDS = [
    "f64", "f32", "f16", "i8", "i16", "i32", "i64", "u8", "u32", "u64", "bool", "ld",
    "floats", "floats_none", "ints", "ints_none", "big_none", "nones", "bools", "strs",
    "mixed", "nested", "f64_strided",
]


def column(draw: st.DrawFn, kind: str, length: int) -> Any:
    def values(elements: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(elements, min_size=length, max_size=length))

    if kind == "f64":
        return np.array(values(floats), dtype=np.float64)
    if kind == "f64_strided":  # a view the caller keeps writing to
        return np.array(values(floats) * 2, dtype=np.float64)[::2]
    if kind == "f32":
        return np.array(values(st.integers(0, 2**32 - 1)), dtype=np.uint32).view(np.float32)
    if kind == "f16":
        return np.array(values(st.integers(0, 2**16 - 1)), dtype=np.uint16).view(np.float16)
    if kind == "ld":
        return np.array(values(floats), dtype=np.longdouble)
    if kind in ("i8", "i16", "i32", "i64", "u8", "u32", "u64"):
        dtype = np.dtype({"i": "int", "u": "uint"}[kind[0]] + kind[1:])
        info = np.iinfo(dtype)
        return np.array(values(st.integers(int(info.min), int(info.max))), dtype=dtype)
    if kind == "bool":
        return np.array(values(st.booleans()), dtype=bool)
    if kind == "floats":
        return values(floats)
    if kind == "floats_none":
        return values(floats | st.none())
    if kind == "ints":
        return values(small_ints)
    if kind == "ints_none":
        return values(small_ints | st.none())
    if kind == "big_none":
        return values(ints | st.none())
    if kind == "nones":
        return [None] * length
    if kind == "bools":
        return values(st.booleans() | st.none())
    if kind == "strs":
        return values(st.text(max_size=3) | st.none())
    if kind == "mixed":
        return values(floats | ints | st.booleans() | st.none())
    return values(st.lists(st.integers(0, 9), max_size=2) | st.none())  # nested, mutable


@st.composite
def batches(draw: st.DrawFn, keys: list[Any] = KEYS, kinds: list[str] = KINDS) -> Batch:
    length = draw(st.sampled_from([0, 1, 1, 2, 3, 5, 8, 13, 40]))
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4, unique=True))
    batch = {key: column(draw, draw(st.sampled_from(kinds)), length) for key in chosen}
    return MaskedColumns(batch) if draw(st.integers(0, 3)) == 0 else batch


def writes(keys: list[Any] = KEYS, kinds: list[str] = KINDS) -> st.SearchStrategy[Step]:
    return st.one_of(
        batches(keys, kinds).map(lambda batch: ("batch", batch)),
        batches(keys, kinds).map(lambda batch: ("row", batch)),  # its rows through write()
    )


def steps(
    keys: list[Any] = KEYS, kinds: list[str] = KINDS, filling: bool = False
) -> st.SearchStrategy[Step]:
    """Writes, storage going down and up (or, `filling`, its room in lines changing), the
    clock moving on, explicit flushes."""
    storage = (
        st.sampled_from([None, 0, 3, 20]).map(lambda room: ("room", room))
        if filling
        else st.booleans().map(lambda down: ("down", down))
    )
    return st.one_of(
        writes(keys, kinds),
        storage,
        st.sampled_from([0.5, 3.0, 120.0]).map(lambda seconds: ("advance", seconds)),
        st.just(("flush", None)),
    )


def fresh(batch: Batch) -> Batch:
    """A copy of the batch for one run, of the same shape (a strided view stays one)."""
    out = copy.deepcopy(batch)
    for key, values in batch.items():
        if isinstance(values, np.ndarray) and not values.flags.c_contiguous:
            base = np.zeros(2 * len(values), dtype=values.dtype)
            base[::2] = values
            out[key] = base[::2]
    return out


def scribble(batch: Batch) -> None:
    """What a caller reusing its buffers does once a call returned: every array and list
    overwritten in place, nested lists too."""
    for values in batch.values():
        if isinstance(values, np.ndarray):
            values[...] = 1 if values.dtype.kind in "biu" else -7.5
        else:
            for item in values:
                if isinstance(item, list):
                    item[:] = [7]
            values[:] = [3] * len(values)


# -- running a plan both ways ----------------------------------------------------------------


def run(
    kind: str, path: Path, plan: list[Step], fast: bool, by_rows: bool, **options: Any
) -> tuple[Any, list[tuple[int, int, int]]]:
    """Feeds `plan` to a flaky sink; returns it closed, and (stored, held, lost) after each
    step."""
    clock, storage = FakeClock(), Storage()
    after: list[tuple[int, int, int]] = []
    with fast_path(fast), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the counts are compared instead
        sink = make(kind, path, clock, storage, **options)
        for what, value in plan:
            if what == "down":
                storage.down = value
            elif what == "room":
                storage.room = value
            elif what == "advance":
                clock.advance(value)
            elif what == "flush":
                with contextlib.suppress(StoreError):
                    sink.flush()
            elif by_rows or what == "row":
                for row in present_rows(fresh(value)):
                    with contextlib.suppress(StoreError):
                        sink.write(row)
            else:
                batch = fresh(value)
                with contextlib.suppress(StoreError):
                    sink.write_batch(batch)
                scribble(batch)
            after.append((sink.rows_written, len(sink._pending), sink.lost))
        storage.down, storage.room = False, None
        clock.advance(120.0)
        with contextlib.suppress(StoreError):
            sink.close()
    return sink, after


def jsonl_lines(data: bytes) -> list[list[tuple[str, Any]]]:
    assert not data or data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert len(data.decode("utf-8", "surrogatepass").splitlines()) == len(lines)
    return [list(json.loads(line).items()) for line in lines]


def assert_same_file(kind: str, ours: bytes, theirs: bytes) -> None:
    if kind == "csv":
        assert ours == theirs
        return
    mine, reference = jsonl_lines(ours), jsonl_lines(theirs)
    assert len(mine) == len(reference)
    for index, (a, b) in enumerate(zip(mine, reference, strict=True)):
        assert [key for key, _ in a] == [key for key, _ in b], index
        assert all(exactly(x, y) for (_, x), (_, y) in zip(a, b, strict=True)), (index, a, b)


def check_plan(
    folder: Path, kind: str, plan: list[Step], frame_rows: tuple[int, int], **options: Any
) -> None:
    with frames_from(*frame_rows):
        batched, batched_after = run(kind, folder / "fast", plan, True, False, **options)
    pure, pure_after = run(kind, folder / "pure", plan, False, True, **options)
    assert batched_after == pure_after
    assert (batched.rows_written, batched.lost) == (pure.rows_written, pure.lost)
    assert batched.counts == pure.counts
    assert_same_file(kind, (folder / "fast").read_bytes(), (folder / "pure").read_bytes())


def sink_options(flush_seconds: st.SearchStrategy[float | None]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {
            "flush_every": st.sampled_from([1, 2, 3, 7, 40, 1000]),
            "flush_seconds": flush_seconds,
            "max_pending": st.sampled_from([1, 5, 30, 1_000_000]),
        }
    )


csv_options = st.fixed_dictionaries(
    {
        "delimiter": st.sampled_from([",", "\t", ";", ":"]),
        "lineterminator": st.sampled_from(["\r\n", "\n"]),
        "fieldnames": st.sampled_from([(), ("b", "zz"), ("x,y", "a")]),
    }
)
ALWAYS = {"flush_every": 1000, "flush_seconds": None, "max_pending": 1_000_000}
frame_rows = st.sampled_from([(1, 1), (8, 8), (512, 256)])


@settings(max_examples=250, deadline=None)
@example(  # empty, one-row and time-due batches; an int64 block never joins a float64 one
    kind="jsonl",
    plan=[
        ("batch", {"a": np.arange(0)}),
        ("batch", {"a": np.array([-0.0])}),
        ("advance", 3.0),
        ("batch", {"a": np.arange(3)}),
        ("batch", {"a": [None, 2**63, 2**64 - 1]}),
    ],
    given_options={**ALWAYS, "flush_seconds": 2.0},
    given_csv={},
    given_frames=(1, 1),
)
@example(  # a masked block: a row with no key, a key first present in a later row
    kind="csv",
    plan=[("batch", MaskedColumns({"a": [None, None, 1.5], "b": [None, 2, None]}))],
    given_options=ALWAYS,
    given_csv={"delimiter": ",", "lineterminator": "\r\n", "fieldnames": ()},
    given_frames=(1, 1),
)
@example(  # storage down over two batches of one key, then a flush: held blocks retried
    kind="jsonl",
    plan=[
        ("down", True),
        ("batch", {"a": np.arange(5) / 3}),
        ("batch", {"a": [0.5, None, math.inf]}),
        ("down", False),
        ("advance", 120.0),
        ("flush", None),
    ],
    given_options={**ALWAYS, "flush_every": 2, "max_pending": 6},
    given_csv={},
    given_frames=(1, 1),
)
@given(
    kind=st.sampled_from(["csv", "jsonl"]),
    plan=st.lists(steps(), min_size=1, max_size=8),
    given_options=sink_options(st.sampled_from([None, 0.0, 2.0])),
    given_csv=csv_options,
    given_frames=frame_rows,
)
def test_any_plan_stores_holds_and_loses_what_row_by_row_pure_writing_does(
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    plan: list[Step],
    given_options: dict[str, Any],
    given_csv: dict[str, str],
    given_frames: tuple[int, int],
) -> None:
    """Storage down and up at any point, held rows due by time inside a batch, `max_pending`
    below and above `flush_every`, masked batches, keys of every kind, caller scribbling."""
    options = {**given_options, **(given_csv if kind == "csv" else {})}
    check_plan(tmp_path_factory.mktemp(kind), kind, plan, given_frames, **options)


@settings(max_examples=150, deadline=None)
@example(  # a batch over several flush_every runs on a disk with room for some of them
    kind="csv",
    plan=[("room", 8), ("batch", {"a": np.arange(20), "b": np.arange(20) / 7})],
    given_options={**ALWAYS, "flush_every": 3, "max_pending": 5},
    given_frames=(1, 1),
)
@given(
    kind=st.sampled_from(["csv", "jsonl"]),
    plan=st.lists(steps(KEYS, filling=True), min_size=1, max_size=8),
    given_options=sink_options(st.sampled_from([None, 0.0, 2.0])),
    given_frames=frame_rows,
)
def test_a_filling_disk_stores_and_loses_the_rows_row_by_row_pure_writing_does(
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    plan: list[Step],
    given_options: dict[str, Any],
    given_frames: tuple[int, int],
) -> None:
    """A disk with room for some lines only: a merged store's runs that fit are stored as row
    by row's stores would be, stores due by time included."""
    check_plan(tmp_path_factory.mktemp(kind), kind, plan, given_frames, **given_options)


NUMERIC_ARRAYS = ["f64", "f32", "f16", "i8", "i64", "u64", "bool", "f64_strided"]
LISTS = ["floats", "floats_none", "ints", "ints_none", "big_none", "nones"]


@st.composite
def same_key_plans(draw: st.DrawFn, kind: str) -> list[Step]:
    """Batches of the same keys whose columns change dtype from batch to batch (int64 then
    float64, an array then a list, ...): what consecutive held blocks are joined from."""
    keys = draw(st.lists(st.sampled_from(PLAIN_KEYS), min_size=1, max_size=3, unique=True))
    pools = {
        key: NUMERIC_ARRAYS + LISTS for key in keys
    }
    masked = kind == "csv" and draw(st.booleans())
    plan: list[Step] = []
    for _ in range(draw(st.integers(1, 5))):
        length = draw(st.sampled_from([1, 2, 3, 6, 30]))
        batch = {key: column(draw, draw(st.sampled_from(pools[key])), length) for key in keys}
        plan.append(("batch", MaskedColumns(batch) if masked and draw(st.booleans()) else batch))
    return plan


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    kind=st.sampled_from(["csv", "jsonl"]),
    given_frames=st.sampled_from([(1, 1), (4, 4), (512, 256)]),
    flush_every=st.sampled_from([7, 1000]),
)
def test_consecutive_blocks_of_changing_dtypes_are_written_as_their_rows(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    kind: str,
    given_frames: tuple[int, int],
    flush_every: int,
) -> None:
    plan = data.draw(same_key_plans(kind))
    check_plan(
        tmp_path_factory.mktemp(kind), kind, plan, given_frames,
        flush_every=flush_every, flush_seconds=None,
    )


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
@pytest.mark.parametrize("frames", [(1, 1), (512, 256)])
def test_a_batch_of_300_columns_is_written_as_its_rows(
    tmp_path: Path, kind: str, frames: tuple[int, int]
) -> None:
    """Wider than the row builder's dict display (256 columns): the block and row paths."""
    rng = np.random.default_rng(0)
    mixed = {
        f"k{i}": rng.standard_normal(20) if i % 3 == 0 else np.arange(20) if i % 3 == 1
        else [None if j % 4 == 0 else j / 3 for j in range(20)]
        for i in range(300)
    }
    other = {f"k{i}": np.arange(20) if i % 2 else rng.standard_normal(20) for i in range(300)}
    plan: list[Step] = [("batch", mixed), ("batch", other), ("batch", mixed)]
    check_plan(tmp_path, kind, plan, frames, flush_every=1000, flush_seconds=None)


# -- appending to a file, resuming from a checkpoint ----------------------------------------


def crash(sink: Any) -> None:
    """Leaves the sink as a killed process would: nothing more reaches its file."""
    from pipeline.core import lifecycle

    lifecycle.forget(sink)
    flusher.forget(sink)
    sink._release()
    sink.closed = True


def feed(sink: Any, plan: list[Step], by_rows: bool) -> None:
    for what, value in plan:
        if by_rows or what == "row":
            for row in present_rows(fresh(value)):
                sink.write(row)
        elif what == "batch":
            batch = fresh(value)
            sink.write_batch(batch)
            scribble(batch)


quiet_steps = writes()
quiet_options = st.fixed_dictionaries(
    {
        "flush_every": st.sampled_from([1, 3, 7, 1000]),
        "flush_seconds": st.sampled_from([None, 2.0]),
    }
)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["csv", "jsonl"]),
    before=st.lists(quiet_steps, min_size=1, max_size=4),
    plan=st.lists(quiet_steps, min_size=1, max_size=5),
    given_options=quiet_options,
    given_frames=frame_rows,
)
def test_appending_to_a_file_is_what_pure_rows_append(
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    before: list[Step],
    plan: list[Step],
    given_options: dict[str, Any],
    given_frames: tuple[int, int],
) -> None:
    folder = tmp_path_factory.mktemp(kind)
    with fast_path(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink = make(kind, folder / "first", FakeClock(), Storage(), flush_seconds=None)
        feed(sink, before, by_rows=True)
        sink.close()
    first = (folder / "first").read_bytes()
    sinks_after = []
    for name, fast in (("fast", True), ("pure", False)):
        (folder / name).write_bytes(first)
        with fast_path(fast), frames_from(*given_frames), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sink = make(kind, folder / name, FakeClock(), Storage(), mode="a", **given_options)
            feed(sink, plan, by_rows=not fast)
            sink.close()
        sinks_after.append(sink)
    assert sinks_after[0].counts == sinks_after[1].counts
    assert_same_file(kind, (folder / "fast").read_bytes(), (folder / "pure").read_bytes())


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["csv", "jsonl"]),
    before=st.lists(quiet_steps, min_size=1, max_size=4),
    after=st.lists(quiet_steps, min_size=1, max_size=4),
    given_options=quiet_options,
    given_frames=frame_rows,
)
def test_a_resume_from_a_checkpoint_with_blocks_held_is_the_uninterrupted_pure_file(
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    before: list[Step],
    after: list[Step],
    given_options: dict[str, Any],
    given_frames: tuple[int, int],
) -> None:
    folder = tmp_path_factory.mktemp(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fast_path(False):
            whole = make(kind, folder / "whole", FakeClock(), Storage(), **given_options)
            feed(whole, before + after, by_rows=True)
            whole.close()
        with fast_path(True), frames_from(*given_frames):
            path, clock = folder / "resumed", FakeClock()
            sink = make(kind, path, clock, Storage(), **given_options)
            feed(sink, before, by_rows=False)
            state = sink.state_dict()
            feed(sink, after, by_rows=False)
            sink.flush()
            crash(sink)  # the process dies after the checkpoint; a new one resumes from it
            resumed = make(kind, path, clock, Storage(), **given_options)
            resumed.load_state_dict(state)
            feed(resumed, after, by_rows=False)
            resumed.close()
    assert resumed.counts == whole.counts
    assert_same_file(kind, path.read_bytes(), (folder / "whole").read_bytes())


# -- the defects found, pinned --------------------------------------------------------------------


def plan_differs(kind: str, plan: list[Step], frames: tuple[int, int], **options: Any) -> None:
    """`check_plan` in a folder of its own (for the pinned examples below)."""
    with tempfile.TemporaryDirectory() as folder:
        check_plan(Path(folder), kind, plan, frames, **options)


@settings(phases=(Phase.explicit,), deadline=None)
@example(ints=[1, None], floats=[0.5, None], frames=(1, 1))
@example(ints=[0, 2**53 + 1] * 150, floats=[0.5, None] * 150, frames=(512, 256))  # as shipped
@example(ints=[None, 7], floats=[None, math.nan], frames=(1, 1))
@given(
    ints=st.lists(small_ints | st.none()),
    floats=st.lists(floats | st.none()),
    frames=frame_rows,
)
def test_jsonl_joined_lists_of_ints_then_floats_keep_the_ints(
    ints: list[Any], floats: list[Any], frames: tuple[int, int]
) -> None:
    plan: list[Step] = [("batch", {"a": ints}), ("batch", {"a": floats})]
    plan_differs("jsonl", plan, frames, flush_every=1000, flush_seconds=None)


@settings(phases=(Phase.explicit,), deadline=None)
@example(kind="jsonl", fast=True)
@example(kind="csv", fast=True)
@example(kind="jsonl", fast=False)  # not the fast path's: BufferedFileSink.write_batch
@example(kind="csv", fast=False)
@given(kind=st.sampled_from(["csv", "jsonl"]), fast=st.booleans())
def test_a_batch_due_by_time_on_a_filling_disk_stores_the_row_row_by_row_stores(
    kind: str, fast: bool
) -> None:
    room = 1 if kind == "jsonl" else 2  # one row (and the CSV header)
    plan: list[Step] = [("room", room), ("batch", {"a": np.arange(5), "b": np.arange(5)})]
    options = {"flush_every": 2, "flush_seconds": 0.0, "max_pending": 2}
    if fast:  # fast batches against pure rows
        plan_differs(kind, plan, (512, 256), **options)
    else:  # pure batches against pure rows
        _pure_batch_vs_rows(kind, plan, **options)


def _pure_batch_vs_rows(kind: str, plan: list[Step], **options: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        _, batched_after = run(kind, Path(folder) / "b", plan, False, False, **options)
        _, rows_after = run(kind, Path(folder) / "r", plan, False, True, **options)
        assert batched_after == rows_after
        assert (Path(folder) / "b").read_bytes() == (Path(folder) / "r").read_bytes()


@settings(phases=(Phase.explicit,), deadline=None)
@example(by_rows=True)
@example(by_rows=False)
@given(by_rows=st.booleans())
def test_an_overwritten_key_is_counted_once_per_row_whatever_storage_does(by_rows: bool) -> None:
    plan: list[Step] = [
        ("down", True),
        ("batch", {3: np.array([0.0, 1.0]), "3": np.array([2.0, 3.0])}),
    ]
    with tempfile.TemporaryDirectory() as folder:
        sink, _ = run("csv", Path(folder) / "a.csv", plan, False, by_rows, flush_every=1)
        assert (Path(folder) / "a.csv").read_text().split() == ["3", "2.0", "3.0"]
    assert sink.counts["overwritten"] == 2


@settings(phases=(Phase.explicit,), deadline=None)
@example(key="\ud800")
@example(key="a\udfff")
@given(key=st.just("\ud800"))
def test_a_jsonl_block_of_a_lone_surrogate_key_is_stored_as_the_pure_path_stores_it(
    key: str,
) -> None:
    plan: list[Step] = [("room", 2), ("batch", {key: np.zeros(3)})]
    plan_differs("jsonl", plan, (512, 256), flush_every=3, flush_seconds=None, max_pending=1)
