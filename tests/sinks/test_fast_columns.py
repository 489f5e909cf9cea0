"""The `fast` extra's file sinks: column batches held as columns and formatted at C speed
(orjson; JSONL blocks of many rows, polars), JSONL rows through orjson. Specification: the CSV
file is byte for byte the pure-Python path's, the JSONL file holds the same values, line for
line and type for type (orjson's and polars' spacing and number text), small batches and rows
give the same bytes, and every bar of the file sinks (retry without doubling, the bound on
held rows, checkpoints; signals during a store: test_signal_during_store.py) holds on the fast
path. The pure-Python path is forced with `sinks.file.FAST = False`."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sinks.file
import sinks.jsonl
from pipeline.core.columns import MaskedColumns, batch_length, iter_rows
from pipeline.core.isolation import StoreError
from sinks import CsvSink, JsonlSink
from sinks.blocks import RowBlock
from tests.conftest import FakeClock, exactly, fast_path

pytest.importorskip("orjson")

Batch = dict[str, Any]
FileSink = type[CsvSink] | type[JsonlSink]


# -- streams of batches ---------------------------------------------------------------------

float64s = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1.0, 1e-4, 9.99e-5, 1e-5, 1e-7, 1e15, 1e16, 1234567890123456.0, 5e-324, 1e308]
)
KEYS = ["return", "steps", "loss", "done", "lr", "x%s\"é", "\x85a\u2028"]
"""Keys of the batches: the last one holds characters `str.splitlines` breaks at."""


@st.composite
def columns(draw: st.DrawFn, length: int) -> Batch:
    """A batch of the columns the fast path takes (and some it leaves to the row path)."""
    batch: Batch = {}
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True)):
        kind = draw(st.sampled_from(
            ["f64", "f32", "f16", "i64", "u64", "i8", "bool", "floats", "ints", "strs"]
        ))
        if kind == "f64":
            batch[key] = np.array(draw(st.lists(float64s, min_size=length, max_size=length)))
        elif kind in ("f32", "f16"):
            dtype = np.float32 if kind == "f32" else np.float16
            width = 32 if kind == "f32" else 16
            values = draw(st.lists(st.floats(width=width), min_size=length, max_size=length))
            batch[key] = np.array(values, dtype=dtype)
        elif kind == "i64":
            batch[key] = np.array(
                draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=length,
                              max_size=length)), dtype=np.int64)
        elif kind == "u64":
            batch[key] = np.array(
                draw(st.lists(st.integers(0, 2**64 - 1), min_size=length, max_size=length)),
                dtype=np.uint64)
        elif kind == "i8":
            batch[key] = np.arange(length, dtype=np.int8)
        elif kind == "bool":
            batch[key] = np.array(draw(st.lists(st.booleans(), min_size=length,
                                                max_size=length)), dtype=bool)
        elif kind == "floats":
            batch[key] = draw(st.lists(float64s | st.none(), min_size=length, max_size=length))
        elif kind == "ints":
            batch[key] = draw(st.lists(st.integers(-(2**70), 2**70) | st.none(),
                                       min_size=length, max_size=length))
        else:
            batch[key] = draw(st.lists(st.text(max_size=4) | st.none(), min_size=length,
                                       max_size=length))
    return batch


@st.composite
def streams(draw: st.DrawFn) -> list[Batch]:
    return [draw(columns(draw(st.integers(1, 7)))) for _ in range(draw(st.integers(1, 4)))]


def by_batches(sink: CsvSink | JsonlSink, stream: list[Batch]) -> None:
    for batch in stream:
        sink.write_batch(batch)


def by_rows(sink: CsvSink | JsonlSink, stream: list[Batch]) -> None:
    for batch in stream:
        for row in iter_rows(batch):
            sink.write(row)


def written(
    folder: Path, sink_class: FileSink, stream: list[Batch],
    feed: Callable[[CsvSink | JsonlSink, list[Batch]], None], name: str, **options: Any,
) -> bytes:
    path = folder / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # counted drops are compared below, not shown
        sink = sink_class(path, flush_every=3, flush_seconds=None, **options)
        feed(sink, stream)
        sink.close()
    return path.read_bytes()


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def jsonl_values(data: bytes) -> list[list[tuple[str, Any]]]:
    return [list(json.loads(line).items()) for line in data.decode().splitlines()]


# -- same files both ways -------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(stream=streams(), delimiter=st.sampled_from([",", "\t", ";"]))
def test_csv_is_byte_for_byte_the_pure_python_file_by_batch_and_by_row(
    tmp_path_factory: pytest.TempPathFactory, stream: list[Batch], delimiter: str,
) -> None:
    folder = tmp_path_factory.mktemp("csv")
    files = {}
    for on in (True, False):
        for feed in (by_batches, by_rows):
            with fast_path(on):
                files[on, feed.__name__] = written(
                    folder, CsvSink, stream, feed, f"{on}-{feed.__name__}.csv",
                    delimiter=delimiter,
                )
    assert len(set(files.values())) == 1, files


@settings(max_examples=150, deadline=None)
@given(stream=streams())
def test_jsonl_holds_the_pure_python_files_values_and_batches_write_rows_bytes(
    tmp_path_factory: pytest.TempPathFactory, stream: list[Batch],
) -> None:
    folder = tmp_path_factory.mktemp("jsonl")
    with fast_path(True):
        batched = written(folder, JsonlSink, stream, by_batches, "fast-batches.jsonl")
        assert batched == written(folder, JsonlSink, stream, by_rows, "fast-rows.jsonl")
    with fast_path(False):
        pure = written(folder, JsonlSink, stream, by_batches, "pure.jsonl")
    ours, theirs = jsonl_values(batched), jsonl_values(pure)
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        assert [key for key, _ in mine] == [key for key, _ in reference]
        assert all(same_value(a, b) for (_, a), (_, b) in zip(mine, reference, strict=True))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(float64s, min_size=2, max_size=50))
def test_every_float_cell_is_reprs_text(
    tmp_path_factory: pytest.TempPathFactory, values: list[float]
) -> None:
    path = tmp_path_factory.mktemp("floats") / "f.csv"
    with CsvSink(path) as sink:
        sink.write_batch({"x": np.array(values), "y": values})
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["x"] for row in rows] == [repr(value) for value in values]
    assert [row["y"] for row in rows] == [repr(value) for value in values]


def test_a_numeric_batch_is_held_and_stored_without_row_dicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rows(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise AssertionError("row dicts built")

    monkeypatch.setattr(sinks.file, "batch_rows", no_rows)
    batch = {"steps": np.arange(2500), "return": np.linspace(0, 1, 2500),
             "loss": [None if i % 9 == 0 else i / 7 for i in range(2500)]}
    for sink_class in (CsvSink, JsonlSink):
        path = tmp_path / f"out.{sink_class.__name__}"
        with sink_class(path, flush_every=1000) as sink:
            sink.write_batch(batch)
            assert len(sink._pending) == 500 and type(sink._pending[0]) is RowBlock
        assert sink.rows_written == 2500


def test_columns_the_fast_path_cannot_format_are_written_as_rows(tmp_path: Path) -> None:
    """Text, ints beyond 64 bits, longdouble, objects: the same file as the row path's."""
    batches = [
        {"name": ["a,b", 'q"', None], "n": np.arange(3)},
        {"big": [2**70, 1, None], "n": np.arange(3)},
        {"ld": np.array([1, 2, 3], dtype=np.longdouble), "n": np.arange(3)},
        {"obj": [object, 1.5, "x"], "n": np.arange(3)},
    ]
    for sink_class in (CsvSink, JsonlSink):
        name = sink_class.__name__
        rows_path, batch_path = tmp_path / f"rows.{name}", tmp_path / f"batch.{name}"
        with sink_class(rows_path) as by_row, sink_class(batch_path) as by_batch:
            by_rows(by_row, batches)
            by_batches(by_batch, batches)
        assert batch_path.read_bytes() == rows_path.read_bytes()


def test_a_longdouble_beyond_float64_is_counted_on_the_fast_path_too(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with pytest.warns(UserWarning, match="longdouble beyond float64"), JsonlSink(path) as sink:
        sink.write({"x": np.longdouble("1e4000"), "y": 1.5})
        sink.write_batch({"x": np.array([1.0, np.nan]), "y": [None, 2.5]})
    assert sink.counts["changed"] == 1
    lines = path.read_text().splitlines()
    assert lines[0].startswith('{"x": 1e+4000') or lines[0].startswith('{"x": 1.0e+4000')
    assert json.loads(lines[1]) == {"x": 1.0, "y": None}
    assert math.isnan(json.loads(lines[2])["x"]) and json.loads(lines[2])["y"] == 2.5


def test_a_jsonl_line_is_one_line_for_str_splitlines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    record = {"a\u2028": "b\x85c", "n": 1.5}
    with JsonlSink(path) as sink:
        sink.write(record)
        sink.write_batch({"a\u2029": np.arange(2)})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        record, {"a\u2029": 0}, {"a\u2029": 1}
    ]


def test_same_text_keys_in_a_row_are_refused_and_counted_with_orjson(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with pytest.warns(UserWarning, match="different types"), JsonlSink(path) as sink:
        sink.write({1: "int", "1": "text", "a": 0.5})
    assert sink.counts["dropped"] == 1
    assert json.loads(path.read_text()) == {"1": "int", "a": 0.5}


# -- the file sinks' bars on the fast path -------------------------------------------------


@pytest.mark.parametrize("sink_class", [CsvSink, JsonlSink])
def test_storage_down_keeps_blocks_and_retries_them_once_each(
    tmp_path: Path, clock: FakeClock, sink_class: FileSink
) -> None:
    down = [True]

    class Flaky(sink_class):  # type: ignore[valid-type,misc]
        def _append(self, text: str | bytes) -> None:
            if down[0]:
                raise OSError(28, "No space left on device")
            super()._append(text)

    path = tmp_path / "out"
    sink = Flaky(path, flush_every=1000, flush_seconds=None)
    sink._clock = clock
    with pytest.raises(StoreError):
        sink.write_batch({"i": np.arange(2500), "x": np.arange(2500) / 4})
    assert len(sink._pending) == 2500 and sink.rows_written == 0
    down[0] = False
    clock.advance(2.0)
    sink.flush()
    sink.close()
    pure = tmp_path / "pure"
    with sink_class(pure) as reference:
        by_rows(reference, [{"i": np.arange(2500), "x": np.arange(2500) / 4}])
    assert path.read_bytes() == pure.read_bytes()
    assert sink.rows_written == 2500 and sink.lost == 0


def test_a_store_failing_half_way_through_a_block_keeps_the_blocks_last_rows(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value the block formatter refuses sends the rows one by one; the disk fills at row
    700 of them: rows 0-699 are stored, the other 799 held, and stored once on the retry."""
    appends = [0]

    class Filling(CsvSink):
        def _append(self, text: str | bytes) -> None:
            appends[0] += 1
            if appends[0] == 701:
                raise OSError(28, "No space left on device")
            super()._append(text)

    def refuse(*args: Any) -> bytes:
        raise ValueError("refused")

    path = tmp_path / "a.csv"
    sink = Filling(path, flush_every=1499, flush_seconds=None)
    sink._clock = clock
    sink.write({"i": -1, "x": -1.0})  # the header
    sink.flush()
    appends[0] = 0
    monkeypatch.setattr(Filling, "_blocks_text", refuse)
    with pytest.raises(StoreError):
        sink.write_batch({"i": np.arange(1499), "x": np.arange(1499) / 3})
    assert sink.rows_written == 1 + 700 and len(sink._pending) == 799
    monkeypatch.undo()
    clock.advance(2.0)
    sink.close()
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["i"]) for row in rows] == list(range(-1, 1499))
    assert [float(row["x"]) for row in rows[1:]] == (np.arange(1499) / 3).tolist()


def test_held_blocks_beyond_max_pending_lose_their_oldest_rows_counted(
    tmp_path: Path, clock: FakeClock
) -> None:
    class Down(JsonlSink):
        def _append(self, text: str | bytes) -> None:
            raise OSError(28, "No space left on device")

    sink = Down(tmp_path / "a.jsonl", flush_every=10, flush_seconds=None, max_pending=25,
                clock=clock)
    with pytest.warns(RuntimeWarning, match="the oldest are dropped"):
        with pytest.raises(StoreError):
            sink.write_batch({"i": np.arange(10)})
        sink.write_batch({"i": np.arange(10, 40)})  # within the back-off: held
    assert sink.lost == 15
    held = sink.state_dict()["nodes"][0]["file"]["held"]
    assert held == [{"i": i} for i in range(15, 40)]
    with pytest.raises(StoreError):
        sink.close()
    assert sink.lost == 40


def test_a_checkpoint_while_blocks_are_held_resumes_to_the_uninterrupted_file(
    tmp_path: Path
) -> None:
    batches = [{"i": np.arange(n, n + 700), "r": np.arange(n, n + 700) * 0.1}
               for n in range(0, 2800, 700)]
    whole = tmp_path / "whole.csv"
    with CsvSink(whole, flush_every=1000) as sink:
        by_batches(sink, batches)
    path = tmp_path / "a.csv"
    sink = CsvSink(path, flush_every=1000)
    by_batches(sink, batches[:3])
    state = sink.state_dict()
    assert len(state["nodes"][0]["file"]["held"]) == 100
    by_batches(sink, batches[3:])
    sink.close()  # the process dies after the checkpoint; a new one resumes from it
    resumed = CsvSink(path, flush_every=1000)
    resumed.load_state_dict(state)
    by_batches(resumed, batches[3:])
    resumed.close()
    assert path.read_bytes() == whole.read_bytes()


# -- JSONL column batches through polars ----------------------------------------------------

needs_polars = pytest.mark.skipif(
    sinks.file._load_polars() is None, reason="polars (the fast extra) is not installed"
)


@contextlib.contextmanager
def frames_from(rows: int) -> Iterator[None]:
    """Column blocks of at least `rows` rows written through polars (1: every block)."""
    before = sinks.jsonl._FRAME_ROWS
    sinks.jsonl._FRAME_ROWS = rows
    try:
        yield
    finally:
        sinks.jsonl._FRAME_ROWS = before


def from_bits(bits: int) -> float:
    return float(np.array(bits, dtype=np.uint64).view(np.float64))


EDGE_FLOATS = [
    math.nan,
    math.inf,
    -math.inf,
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    2.225073858507201e-308,
    1e16,
    -1e16,
    1e308,
    1.7976931348623157e308,
    2.0**53,
    2.0**53 + 2,
    0.1,
    1e21,
    1e22,
    1e-7,
    1e-5,
    123456789012345680.0,
    1.0,
    -1.0,
    1e15,
    1e17,
]
adversarial_floats = (
    st.integers(0, 2**64 - 1).map(from_bits) | st.sampled_from(EDGE_FLOATS) | st.floats()
)
adversarial_ints = (
    st.integers(-(2**63), -(2**63) + 2)
    | st.integers(2**63 - 3, 2**64 - 1)
    | st.integers(-1000, 1000)
    | st.integers(-(2**63), 2**64 - 1)
)
FRAME_KEYS = [
    "return",
    "steps",
    "",
    "null",
    'x%s"é',
    "}",
    "\\",
    "\x00\x1f\x7f",
    "\t/",
    "\U0001f600",
]
"""Keys of the batches: JSON escapes, an astral character, a brace that ends no row."""
ROW_KEYS = ["a{b", "{", ",{", "\x85a", "b\u2028", "\u2029", "\ud800", "\ud800\udc00"]
"""Keys that keep a block from polars: a `{`, characters `str.splitlines` breaks at, lone
surrogates (one, and a high and a low side by side)."""


@st.composite
def frame_columns(draw: st.DrawFn, length: int) -> Batch:
    """A batch of numeric columns, most of which a block takes, with adversarial values."""

    def values(elements: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(elements, min_size=length, max_size=length))

    batch: Batch = {}
    keys = st.sampled_from(FRAME_KEYS * 6 + ROW_KEYS)
    for key in draw(st.lists(keys, min_size=1, max_size=5, unique=True)):
        kind = draw(
            st.sampled_from(
                [
                    "f64",
                    "f64",
                    "f32",
                    "f16",
                    "i64",
                    "u64",
                    "i8",
                    "u16",
                    "i32",
                    "bool",
                    "floats",
                    "floats",
                    "ints",
                    "ints",
                    "nones",
                    "big",
                ]
            )
        )
        if kind == "f64":
            batch[key] = np.array(values(adversarial_floats), dtype=np.float64)
        elif kind == "f32":
            batch[key] = np.array(values(st.integers(0, 2**32 - 1)), dtype=np.uint32).view(
                np.float32
            )
        elif kind == "f16":
            batch[key] = np.array(values(st.integers(0, 2**16 - 1)), dtype=np.uint16).view(
                np.float16
            )
        elif kind == "i64":
            batch[key] = np.array(values(st.integers(-(2**63), 2**63 - 1)), dtype=np.int64)
        elif kind == "u64":
            batch[key] = np.array(values(st.integers(2**63 - 3, 2**64 - 1)), dtype=np.uint64)
        elif kind in ("i8", "u16", "i32"):
            dtype = {"i8": np.int8, "u16": np.uint16, "i32": np.int32}[kind]
            info = np.iinfo(dtype)
            batch[key] = np.array(values(st.integers(info.min, info.max)), dtype=dtype)
        elif kind == "bool":
            batch[key] = np.array(values(st.booleans()), dtype=bool)
        elif kind == "floats":
            batch[key] = values(adversarial_floats | st.none())
        elif kind == "ints":
            batch[key] = values(adversarial_ints | st.none())
        elif kind == "nones":
            batch[key] = [None] * length
        else:  # ints beyond 64 bits, in a list with None
            batch[key] = values(st.integers(-(2**70), 2**70) | st.none())
    return MaskedColumns(batch) if draw(st.integers(0, 4)) == 0 else batch


def read_back(data: bytes) -> list[list[tuple[str, Any]]]:
    """The file's lines as (key, value) lists, after checking that it is one JSON object per
    line, each line ending in a newline and none that `str.splitlines` breaks."""
    assert not data or data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert len(data.decode("utf-8", "surrogatepass").splitlines()) == len(lines)
    return [list(json.loads(line).items()) for line in lines]


@needs_polars
@settings(max_examples=250, deadline=None)
@given(
    stream=st.lists(st.integers(1, 40).flatmap(frame_columns), min_size=1, max_size=4),
    flush_every=st.integers(1, 60),
)
def test_jsonl_batches_through_polars_read_back_as_the_pure_python_files(
    tmp_path_factory: pytest.TempPathFactory, stream: list[Batch], flush_every: int
) -> None:
    folder = tmp_path_factory.mktemp("frames")
    files, counts = {}, {}
    for name, on in (("polars", True), ("pure", False)):
        path = folder / f"{name}.jsonl"
        with fast_path(on), frames_from(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the counts are compared instead
            sink = JsonlSink(path, flush_every=flush_every, flush_seconds=None)
            by_batches(sink, stream)
            sink.close()
        files[name], counts[name] = path.read_bytes(), sink.counts
    ours, theirs = read_back(files["polars"]), read_back(files["pure"])
    assert len(ours) == len(theirs) == sum(map(batch_length, stream))
    for mine, reference in zip(ours, theirs, strict=True):
        assert [key for key, _ in mine] == [key for key, _ in reference]
        assert all(exactly(a, b) for (_, a), (_, b) in zip(mine, reference, strict=True)), (
            mine,
            reference,
        )
    assert counts["polars"] == counts["pure"]


@needs_polars
def test_a_numeric_block_is_written_by_polars_with_its_odd_rows_spliced_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No orjson cells (the block's whole text is polars'); NaN and infinities as `json`
    writes them, None as null, ints as ints, -0.0 as -0.0."""

    def no_cells(*args: Any) -> None:
        raise AssertionError("the block was made of orjson cells")

    n = 5000
    batch = {
        "step": np.arange(n),
        "x": np.arange(n) / 7,
        "done": np.arange(n) % 3 == 0,
        "loss": [None if i % 9 == 0 else math.nan if i == 10 else -0.0 for i in range(n)],
        "r": np.where(np.arange(n) % 1000 == 999, np.inf, 0.5),
    }
    paths = {True: tmp_path / "fast.jsonl", False: tmp_path / "pure.jsonl"}
    for on, path in paths.items():
        with fast_path(on):
            if on:
                monkeypatch.setattr(sinks.jsonl, "_block_lines", no_cells)
            with JsonlSink(path, flush_every=4096) as sink:
                sink.write_batch(batch)
    fast, pure = read_back(paths[True].read_bytes()), read_back(paths[False].read_bytes())
    assert len(fast) == n
    for mine, reference in zip(fast, pure, strict=True):
        assert all(exactly(a, b) for (_, a), (_, b) in zip(mine, reference, strict=True))
    assert paths[True].read_bytes().count(b"NaN") == 1
    assert paths[True].read_bytes().count(b"Infinity") == 5


@needs_polars
def test_without_polars_the_orjson_cells_write_the_same_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = {"step": np.arange(3000), "loss": [None, 0.25, math.inf] * 1000}
    with fast_path(True):
        with JsonlSink(tmp_path / "frames.jsonl") as sink:
            sink.write_batch(batch)
        monkeypatch.setattr(sinks.file, "_load_polars", lambda: None)
        with JsonlSink(tmp_path / "cells.jsonl") as sink:
            sink.write_batch(batch)
    frames = read_back((tmp_path / "frames.jsonl").read_bytes())
    cells = read_back((tmp_path / "cells.jsonl").read_bytes())
    assert len(frames) == len(cells) == 3000
    for mine, reference in zip(frames, cells, strict=True):
        assert all(exactly(a, b) for (_, a), (_, b) in zip(mine, reference, strict=True))


@needs_polars
def test_polars_text_of_another_shape_leaves_the_block_to_orjson(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A polars whose JSON is not `[{...},...]` (another version's) is not cut into lines."""

    def ndjson(frame: Any, buffer: Any) -> None:
        frame.write_ndjson(buffer)

    batch = {"step": np.arange(1000), "x": np.arange(1000) / 3}
    with fast_path(True):
        with JsonlSink(tmp_path / "frames.jsonl") as sink:
            sink.write_batch(batch)
        monkeypatch.setattr(sinks.jsonl._Frame, "lines", lambda self: None)
        with JsonlSink(tmp_path / "cells.jsonl") as sink:
            sink.write_batch(batch)
        monkeypatch.undo()
        monkeypatch.setattr("polars.DataFrame.write_json", ndjson)
        with JsonlSink(tmp_path / "ndjson.jsonl") as sink:
            sink.write_batch(batch)
    expected = [[("step", i), ("x", i / 3)] for i in range(1000)]
    for name in ("frames", "cells", "ndjson"):
        assert read_back((tmp_path / f"{name}.jsonl").read_bytes()) == expected, name
