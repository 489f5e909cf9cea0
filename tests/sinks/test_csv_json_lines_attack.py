"""Attacks on CsvSink's orjson row path (`_json_lines`: a store's numeric row dicts as
orjson's JSON cut into lines): for floats whose JSON text is near repr's (many digits,
negative zero, 2**53's neighbours, magnitudes at 1e-4 and 1e16), ints at the int64/uint64
borders, rows missing fields or with keys in another order, many keys, each delimiter and
line end, appending to a file, late keys, blocks and rows in one store, a failing store then
its retry and a resume, the file is byte for byte the pure-Python path's."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sinks.csv
from sinks import CsvSink
from sinks.file import StoreError
from tests.sinks.test_fast_columns import fast_path

orjson = pytest.importorskip("orjson")

Row = dict[str, Any]

BORDER_FLOATS = [
    -0.0,
    0.0,
    1e-4,
    -1e-4,
    0.00010000000000000002,
    9.999999999999999e-05,
    1e16,
    9999999999999998.0,
    -9999999999999998.0,
    2.0**53,
    2.0**53 - 1,
    2.0**53 + 2,
    -(2.0**53),
    0.1 + 0.2,
    123456789012345.67,
    1.0000000000000002,
    100.00001,
    10.000001,
]
"""Floats whose orjson text is close to a form repr gives otherwise, or to a refused text."""

floats = (
    st.floats(1e-4, 1e16, exclude_max=True)
    | st.floats(-1e16, -1e-4, exclude_min=True)
    | st.sampled_from(BORDER_FLOATS)
    | st.floats(allow_nan=True, allow_infinity=True)
)
ints = st.integers(-(2**63), 2**64 - 1) | st.sampled_from(
    [2**63 - 1, 2**63, 2**64 - 1, -(2**63), 2**53, 2**53 + 1, 2**64, -(2**63) - 1]
)
values = floats | ints | st.none()
KEYS = [f"k{i}" for i in range(8)]


@st.composite
def row_streams(draw: st.DrawFn) -> list[Row]:
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=8, unique=True))
        rows.append({key: draw(values) for key in keys})  # keys in any order, some absent
    return rows


def write(path: Path, rows: list[Row], fast: bool, **options: Any) -> bytes:
    with fast_path(fast), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink = CsvSink(path, flush_seconds=None, **options)
        for row in rows:
            sink.write(row)
        sink.close()
    return path.read_bytes()


options = st.fixed_dictionaries(
    {
        "delimiter": st.sampled_from([",", "\t", ";", "|", " "]),
        "lineterminator": st.sampled_from(["\r\n", "\n"]),
        "flush_every": st.sampled_from([1, 2, 5, 1000]),
    }
)


@settings(max_examples=150, deadline=None)
@given(rows=row_streams(), given_options=options)
def test_rows_through_orjsons_lines_are_the_pure_paths_bytes(
    tmp_path_factory: pytest.TempPathFactory, rows: list[Row], given_options: dict[str, Any]
) -> None:
    folder = tmp_path_factory.mktemp("rows")
    fast = write(folder / "fast.csv", rows, True, **given_options)
    assert fast == write(folder / "pure.csv", rows, False, **given_options)


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(values, min_size=2, max_size=6))
def test_each_cells_json_line_is_the_pure_line_or_refused(cells: list[Any]) -> None:
    """`_json_lines` on one row: the pure path's line, or None (refused)."""
    fields = [f"f{i}" for i in range(len(cells))]
    rows = [dict(zip(fields, cells, strict=True))]
    kinds = set(map(type, cells))
    for delimiter in ",; \t|":
        lines = sinks.csv._json_lines(orjson, rows, fields, kinds, delimiter, "\n")
        if lines is not None:
            expected = sinks.csv._number_lines(rows, fields, delimiter, "\n")
            assert lines == expected.encode()  # type: ignore[union-attr]


def test_every_float64_class_near_a_border_is_written_as_repr() -> None:
    """Negative zero, 2**53's neighbours, floats at 1e-4 and 1e16 and random bit patterns."""
    rng = np.random.default_rng(7)
    patterns = rng.integers(0, 2**63, size=20_000, dtype=np.int64).view(np.float64).tolist()
    special = [
        value * sign
        for value in [*BORDER_FLOATS, float(np.nextafter(1e16, 0)), float(np.nextafter(1e-4, 1))]
        for sign in (1.0, -1.0)
    ]
    rows = [{"a": x, "b": -x, "c": 1} for x in patterns + special]
    fields = ["a", "b", "c"]
    kinds = {float, int}
    for start in range(0, len(rows), 500):
        part = rows[start : start + 500]
        lines = sinks.csv._json_lines(orjson, part, fields, kinds, ",", "\r\n")
        if lines is None:  # refused as a whole: check each row alone
            for row in part:
                one = sinks.csv._json_lines(orjson, [row], fields, kinds, ",", "\r\n")
                if one is not None:
                    assert one == sinks.csv._number_lines([row], fields, ",", "\r\n").encode()  # type: ignore[union-attr]
        else:
            assert lines == sinks.csv._number_lines(part, fields, ",", "\r\n").encode()  # type: ignore[union-attr]


@pytest.mark.parametrize("delimiter", [",", " ", "|"])
def test_a_wide_row_and_a_huge_store_through_orjson_are_the_pure_paths_bytes(
    tmp_path: Path, delimiter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[bool] = []
    lines = sinks.csv._json_lines

    def spy(*args: Any) -> bytes | None:
        text = lines(*args)
        made.append(text is not None)
        return text

    monkeypatch.setattr(sinks.csv, "_json_lines", spy)
    wide = [{f"key{i}": i / 7 + row for i in range(300)} for row in range(3)]
    many = [
        {
            "a": i * 0.25 + 0.125,
            "b": i,
            "c": None if i % 3 else -0.0,
            "d": 2.0**53 + 2 * i,
            "e": 2**64 - 1 - i,
            "f": -(2**63) + i,
        }
        for i in range(20_000)
    ]
    for name, rows in (("wide", wide), ("many", many)):
        fast = write(tmp_path / f"{name}-fast.csv", rows, True, delimiter=delimiter)
        assert made and all(made)  # every store went through orjson's lines
        made.clear()
        assert fast == write(tmp_path / f"{name}-pure.csv", rows, False, delimiter=delimiter)


@settings(max_examples=60, deadline=None)
@given(before=row_streams(), after=row_streams(), given_options=options)
def test_appending_to_a_file_is_the_pure_paths_bytes(
    tmp_path_factory: pytest.TempPathFactory,
    before: list[Row],
    after: list[Row],
    given_options: dict[str, Any],
) -> None:
    """`mode="a"` on a file the pure path wrote: its header kept, widened by a late key."""
    folder = tmp_path_factory.mktemp("append")
    files = {}
    for fast in (True, False):
        path = folder / f"{fast}.csv"
        write(path, before, False, **given_options)
        files[fast] = write(path, after, fast, mode="a", fieldnames=["k7", "zz"], **given_options)
    assert files[True] == files[False]


def _mixed(sink: CsvSink) -> None:
    sink.write({"a": 1.5, "b": 2})
    sink.write_batch({"a": np.array([0.1, -0.0, 1e16]), "b": np.array([2**62, -1, 0])})
    sink.write({"b": 2**64 - 1, "a": 2.0**53 + 2})
    sink.write_batch({"c": [None, 3.25], "a": [1e-4, 9007199254740993]})
    sink.write({"c": None, "d": 0.30000000000000004})


@pytest.mark.parametrize("flush_every", [1, 2, 3, 100])
def test_blocks_and_rows_in_one_store_are_the_pure_paths_bytes(
    tmp_path: Path, flush_every: int
) -> None:
    files = {}
    for fast in (True, False):
        with fast_path(fast), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sink = CsvSink(tmp_path / f"{fast}.csv", flush_seconds=None, flush_every=flush_every)
            _mixed(sink)
            sink.close()
        files[fast] = (tmp_path / f"{fast}.csv").read_bytes()
    assert files[True] == files[False]


class Flaky(CsvSink):
    """A CsvSink whose storage refuses the `fail_at`-th append (and the one after)."""

    fail_at = (2, 3)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.appends = 0
        super().__init__(*args, **kwargs)

    def _append(self, text: str | bytes | memoryview) -> None:
        self.appends += 1
        if self.appends in self.fail_at:
            raise OSError(28, "No space left on device")
        super()._append(text)


def _run_with_failures(path: Path, fast: bool, feed: Callable[[CsvSink], None]) -> bytes:
    with fast_path(fast), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink = Flaky(path, flush_seconds=None, flush_every=3)
        with contextlib.suppress(StoreError):
            feed(sink)
        sink._retry_at = 0.0  # retry now
        sink.close()
        assert sink.lost == 0
    return path.read_bytes()


def test_a_store_failing_then_retried_is_the_pure_paths_bytes(tmp_path: Path) -> None:
    def feed(sink: CsvSink) -> None:
        for i in range(10):
            with contextlib.suppress(StoreError):
                sink.write({"a": i * 0.25, "b": i, **({"late": -0.0} if i > 4 else {})})

    assert _run_with_failures(tmp_path / "f.csv", True, feed) == _run_with_failures(
        tmp_path / "p.csv", False, feed
    )


@pytest.mark.parametrize("cut", [0, 1, 4, 7])
def test_a_resume_from_a_checkpoint_is_the_pure_paths_bytes(tmp_path: Path, cut: int) -> None:
    rows = [
        {"a": i * 0.7, "b": 2**63 + i, **({"c": None} if i % 2 else {"d": 2.0**52 + i})}
        for i in range(10)
    ]
    files = {}
    for fast in (True, False):
        path = tmp_path / f"{fast}.csv"
        with fast_path(fast), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first = CsvSink(path, flush_seconds=None, flush_every=3)
            for row in rows[:cut]:
                first.write(row)
            state = first.state_dict()
            for row in rows[cut : cut + 2]:  # written after the checkpoint: undone
                first.write(row)
            first.close()  # then the run is resumed from the checkpoint
            second = CsvSink(path, flush_seconds=None, flush_every=3, mode="a")
            second.load_state_dict(state)
            for row in rows[cut:]:
                second.write(row)
            second.close()
        files[fast] = path.read_bytes()
    assert files[True] == files[False]
    with fast_path(False):
        assert files[False] == write(tmp_path / "whole.csv", rows, False, flush_every=3)
