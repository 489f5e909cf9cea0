"""CsvSink's column writers (the `fast` extra): numeric column batches are written by
polars' CSV writer, runs of numeric row dicts by orjson (their JSON cut into lines) or, where
a cell's JSON would not be its repr, by polars. Specification: the file is byte for byte
the pure-Python path's (`sinks.file.FAST = False`: the csv module and the repr of each
value), and each fast writer's alone, for any floats (every float64 bit pattern,
float32 values), ints near and beyond the 64-bit limits, bools, None cells, absent keys,
keys arriving late (a wider header), masked batches, each delimiter and line end. Polars
writes some cells otherwise than repr (NaN, magnitudes below 1e-4, bools): each class has an
example below. The row count from which polars is used is lowered to 1 here, so that every
store goes through it."""

from __future__ import annotations

import csv
import math
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sinks.csv
import sinks.file
from pipeline.core.columns import MaskedColumns, present_rows
from sinks import CsvSink
from tests.sinks.test_fast_columns import fast_path

polars = pytest.importorskip("polars")
pytest.importorskip("orjson")

Batch = dict[str, Any]
Row = dict[str, Any]


# -- values ---------------------------------------------------------------------------------


def bits_float(bits: int) -> float:
    value: float = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return value


ODD_FLOATS = [
    0.0,
    -0.0,
    1.0,
    1e-4,
    9.99e-5,
    1e-5,
    1.5e-7,
    1e-7,
    1e-10,
    1e-100,
    5e-324,
    2.2e-308,
    1e15,
    1e16,
    9999999999999998.0,
    1234567890123456.0,
    1e21,
    1e22,
    1e23,
    1.7976931348623157e308,
    math.nan,
    -math.nan,
    math.inf,
    -math.inf,
    0.1,
    1 / 3,
    float(np.float32(0.1)),
    float(np.float32(1e-5)),
    float(np.float32(3.4e38)),
]
"""Floats whose text polars or orjson write otherwise than repr, or near such a border."""

float64s = (
    st.integers(0, 2**64 - 1).map(bits_float)  # every bit pattern: subnormals, NaN payloads
    | st.sampled_from(ODD_FLOATS)
    | st.floats(width=32).map(lambda value: float(np.float32(value)))
    | st.floats(1e-6, 1e-3)
    | st.floats(1e14, 1e24)
)
int64s = st.integers(-(2**63), 2**63 - 1) | st.sampled_from(
    [-(2**63), -(2**63) + 1, 2**63 - 1, 2**63 - 2, 0, -1]
)
big_ints = st.sampled_from([2**63, 2**64 - 1, 2**64, -(2**63) - 1, 2**70, -(2**90)])
"""Ints beyond int64 (uint64 and beyond 64 bits)."""
numbers = float64s | int64s | big_ints | st.booleans() | st.none()

KEYS = ["return", "steps", "loss", "done", "lr", "q"]


@st.composite
def columns(draw: st.DrawFn, length: int) -> Batch:
    """A batch of numeric columns (what `write_batch` holds as a block) and some columns the
    block path leaves to rows."""
    batch: Batch = {}
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=5, unique=True)):
        kind = draw(
            st.sampled_from(
                ["f64", "f32", "i64", "u64", "i8", "bool", "floats", "ints", "nones", "mixed"]
            )
        )

        def exactly(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
            return st.lists(elements, min_size=length, max_size=length)

        if kind == "f64":
            batch[key] = np.array(draw(exactly(float64s)), dtype=np.float64)
        elif kind == "f32":
            batch[key] = np.array(draw(exactly(st.floats(width=32))), dtype=np.float32)
        elif kind == "i64":
            batch[key] = np.array(draw(exactly(int64s)), dtype=np.int64)
        elif kind == "u64":
            values = draw(exactly(st.integers(0, 2**64 - 1)))
            batch[key] = np.array(values, dtype=np.uint64)
        elif kind == "i8":
            batch[key] = np.array(draw(exactly(st.integers(-128, 127))), dtype=np.int8)
        elif kind == "bool":
            batch[key] = np.array(draw(exactly(st.booleans())), dtype=bool)
        elif kind == "floats":
            batch[key] = draw(exactly(float64s | st.none()))
        elif kind == "ints":
            batch[key] = draw(exactly(int64s | big_ints | st.none()))
        elif kind == "nones":
            batch[key] = [None] * length
        else:
            batch[key] = draw(exactly(numbers))
    if draw(st.booleans()):  # None cells are keys absent in their rows
        batch = MaskedColumns(
            {
                key: column if type(column) is list else list(column.tolist())
                for key, column in batch.items()
            }
            if draw(st.booleans())
            else batch
        )
    return batch


@st.composite
def batch_streams(draw: st.DrawFn) -> list[Batch]:
    return [draw(columns(draw(st.integers(1, 9)))) for _ in range(draw(st.integers(1, 4)))]


@st.composite
def row_streams(draw: st.DrawFn) -> list[Row]:
    """Rows of numbers, bools and None under keys that come and go (a key first seen late
    widens the header); a key keeps one kind of value or mixes them."""
    kinds = {key: draw(st.sampled_from(["float", "int", "mixed"])) for key in KEYS}
    values = {"float": float64s | st.none(), "int": int64s | st.none(), "mixed": numbers}
    rows = []
    for _ in range(draw(st.integers(1, 14))):
        keys = draw(st.lists(st.sampled_from(KEYS), max_size=6, unique=True))
        rows.append({key: draw(values[kinds[key]]) for key in keys})
    return rows


# -- writing both ways ----------------------------------------------------------------------


def write(path: Path, feed: Callable[[CsvSink], None], **options: Any) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink = CsvSink(path, flush_seconds=None, **options)
        feed(sink)
        sink.close()
    return path.read_bytes()


def every_way(folder: Path, feed: Callable[[CsvSink], None], **options: Any) -> dict[str, bytes]:
    """The file by each path: the fast path as shipped, with polars taking every store
    ("fast": orjson's lines for rows, polars for blocks and the rows orjson leaves), polars
    for rows too ("polars": orjson's lines off), orjson alone ("orjson": polars missing), and
    the pure-Python path ("pure")."""
    files = {}
    with fast_path(True), pytest.MonkeyPatch.context() as patch:
        patch.setattr(sinks.csv, "FRAME_ROWS", 1)
        files["fast"] = write(folder / "fast.csv", feed, **options)
        with pytest.MonkeyPatch.context() as lines_off:
            lines_off.setattr(sinks.csv, "_json_lines", lambda *args: None)
            files["polars"] = write(folder / "polars.csv", feed, **options)
        patch.setattr(sinks.csv, "fast_frames", lambda: None)
        files["orjson"] = write(folder / "orjson.csv", feed, **options)
    with fast_path(False):
        files["pure"] = write(folder / "pure.csv", feed, **options)
    return files


def same_bytes(files: dict[str, bytes]) -> bool:
    """Whether every path wrote the pure-Python path's file."""
    return all(written == files["pure"] for written in files.values())


def feed_batches(stream: list[Batch]) -> Callable[[CsvSink], None]:
    def feed(sink: CsvSink) -> None:
        for batch in stream:
            sink.write_batch(batch)

    return feed


def feed_rows(rows: list[Row]) -> Callable[[CsvSink], None]:
    def feed(sink: CsvSink) -> None:
        for row in rows:
            sink.write(row)

    return feed


options = st.fixed_dictionaries(
    {
        "delimiter": st.sampled_from([",", "\t", ";"]),
        "lineterminator": st.sampled_from(["\r\n", "\n"]),
        "flush_every": st.sampled_from([1, 3, 1000]),
    }
)


@settings(max_examples=200, deadline=None)
@given(stream=batch_streams(), given_options=options)
def test_batches_through_polars_write_the_pure_python_files_bytes(
    tmp_path_factory: pytest.TempPathFactory,
    stream: list[Batch],
    given_options: dict[str, Any],
) -> None:
    files = every_way(tmp_path_factory.mktemp("batches"), feed_batches(stream), **given_options)
    assert same_bytes(files)
    with fast_path(False):  # and row by row, the same file
        rows = [row for batch in stream for row in present_rows(batch)]
        by_rows = write(tmp_path_factory.mktemp("rows") / "r.csv", feed_rows(rows), **given_options)
    assert by_rows == files["pure"]


@settings(max_examples=200, deadline=None)
@given(rows=row_streams(), given_options=options)
def test_row_dicts_through_polars_write_the_pure_python_files_bytes(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[Row],
    given_options: dict[str, Any],
) -> None:
    files = every_way(tmp_path_factory.mktemp("rows"), feed_rows(rows), **given_options)
    assert same_bytes(files)


# -- each cell polars writes otherwise than repr, by batch and by row ------------------------

CELLS: dict[str, list[Any]] = {
    "below 1e-4 (polars: 0.00001)": [1e-5, -1e-5, 9.99e-5, 5e-5],
    "a one-digit exponent (polars: 1.5e-7)": [1.5e-7, -3e-9, 1e-100],
    "subnormal": [5e-324, -2.5e-320, 2.2250738585072014e-308],
    "NaN (polars: NaN)": [math.nan, -math.nan, bits_float(0x7FF0000000000001)],
    "infinities": [math.inf, -math.inf, 1.0],
    "signed zero": [-0.0, 0.0, -0.0],
    "large magnitudes": [1e16, 1e22, 1.7976931348623157e308],
    "float32 values": [float(np.float32(0.1)), float(np.float32(1e-5)), float(np.float32(3e38))],
    "bools (polars: true)": [True, False, True],
    "int64 limits": [-(2**63), 2**63 - 1, 0],
    "beyond int64": [2**63, 2**64 - 1, 2**64],
    "beyond 64 bits": [2**70, -(2**70), 1],
    "ints and floats (1 and 1.0)": [1, 1.0, -0.0],
    "None cells": [None, 1.5, None],
    "only None": [None, None, None],
}


@pytest.mark.parametrize("cells", sorted(CELLS))
@pytest.mark.parametrize("form", ["list", "array", "rows", "rows with absent keys"])
def test_each_odd_cell_class_is_written_as_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cells: str, form: str
) -> None:
    values = CELLS[cells]
    if form == "array":
        try:
            column: Any = np.array(values)
        except OverflowError:
            pytest.skip("no numpy array holds these ints")
        if column.dtype.kind not in "biuf":
            pytest.skip("not a numeric array")
    else:
        column = values
    batch = {"x": column, "n": np.arange(len(values))}
    rows = [{"x": value, "n": n} for n, value in enumerate(values)]
    if form == "rows with absent keys":
        rows = [{"n": row["n"]} if row["x"] is None else row for row in rows]
    feed = feed_rows(rows) if form.startswith("rows") else feed_batches([batch])
    files = every_way(tmp_path, feed)
    assert same_bytes(files)
    if form == "array":
        values = list(column.tolist())
    with (tmp_path / "pure.csv").open(newline="") as handle:
        written = [row.get("x", "") for row in csv.DictReader(handle)]
    assert written == ["" if value is None else repr(value) for value in values]


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(float64s | st.none(), max_size=30))
def test_the_unusual_floats_are_found_among_cells_that_stand_for_none(cells: list[Any]) -> None:
    # None as NaN, as polars hands a float column with nulls to numpy: those NaN may be
    # among the indexes, every other float whose text is not surely repr's must be
    values = np.array([math.nan if cell is None else cell for cell in cells], dtype=np.float64)
    found = sinks.csv._unusual(values, cells.count(None)).tolist()
    odd = [
        index for index, cell in enumerate(cells)
        if cell is not None and not (math.isfinite(cell) and (abs(cell) >= 1e-4 or cell == 0))
    ]
    assert [index for index in found if cells[index] is not None] == odd


# -- the writer is polars, from the row count on ---------------------------------------------


@pytest.fixture
def frames_written(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The heights of the frames polars writes to CSV."""
    heights: list[int] = []
    write_csv = polars.DataFrame.write_csv

    def counted(frame: Any, *args: Any, **kwargs: Any) -> Any:
        heights.append(frame.height)
        return write_csv(frame, *args, **kwargs)

    monkeypatch.setattr(polars.DataFrame, "write_csv", counted)
    yield heights


def test_blocks_go_to_polars_and_row_runs_to_orjsons_lines_unless_a_cell_would_differ(
    tmp_path: Path, frames_written: list[int]
) -> None:
    with fast_path(True), CsvSink(tmp_path / "a.csv", flush_every=1000) as sink:
        sink.write_batch({"i": np.arange(1500), "x": np.arange(1500) / 7})
        for i in range(1000):
            sink.write({"i": i, "x": i / 3})
        for i in range(1000):
            sink.write({"i": i, "x": (i + 1) * 1e-6 / 16})  # orjson: 6.25e-8, repr: 6.25e-08
    # the block's first 1000 rows; its last 500 (the 500 rows beside it by orjson); 500
    # plain rows and 500 small ones (orjson's text would differ); the last 500 small ones
    assert frames_written == [1000, 500, 1000, 500]


def test_below_the_row_count_polars_is_not_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames_written: list[int]
) -> None:
    monkeypatch.setattr(sinks.csv, "FRAME_ROWS", 100)
    with fast_path(True), CsvSink(tmp_path / "a.csv", flush_every=1000) as sink:
        sink.write_batch({"i": np.arange(99), "x": np.arange(99) / 7})
        sink.flush()
        for i in range(99):
            sink.write({"i": i, "x": i / 3})
    assert frames_written == []


def test_without_the_fast_path_polars_is_not_called(
    tmp_path: Path, frames_written: list[int]
) -> None:
    with fast_path(False), CsvSink(tmp_path / "a.csv", flush_every=10) as sink:
        sink.write_batch({"i": np.arange(20), "x": np.arange(20) / 7})
        for i in range(20):
            sink.write({"i": i, "x": i / 3})
    assert frames_written == []


def test_a_lone_column_keeps_the_csv_modules_quoted_empty_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = [{"x": [1.5, None, 1e-5]}]
    files = every_way(tmp_path, feed_batches(stream))
    assert same_bytes(files)
    assert files["pure"] == b'x\r\n1.5\r\n""\r\n1e-05\r\n'


def test_text_and_other_objects_in_rows_go_the_csv_modules_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[Row] = [{"a": 1.5, "b": "x,y"}, {"a": np.float32(0.1), "b": 2}, {"a": [1, 2]}]
    files = every_way(tmp_path, feed_rows(rows))
    assert same_bytes(files)


def test_a_batch_spanning_several_flushes_is_stored_in_one_frame_as_rows_would_leave_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames_written: list[int]
) -> None:
    monkeypatch.setattr(sinks.file, "MERGED_STORE", 3000)
    batch = {"i": np.arange(4096), "x": np.arange(4096) / 7}
    with fast_path(True):
        sink = CsvSink(tmp_path / "a.csv", flush_every=1000, flush_seconds=None)
        sink.write({"i": -1, "x": -1.0})
        sink.write_batch(batch)
        # row by row: stores at 999 rows of the batch, then every 1000; 97 rows held
        assert sink.rows_written == 4000 and len(sink._pending) == 97
        sink.close()
    # the row held and 2999 of the batch (at most 3000 a store), 1000; 97 held (orjson: few)
    assert frames_written == [2999, 1000]
    with fast_path(False), CsvSink(tmp_path / "b.csv", flush_every=1000) as rows:
        rows.write({"i": -1, "x": -1.0})
        for row in present_rows(batch):
            rows.write(row)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
