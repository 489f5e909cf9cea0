"""CsvSink's crash repair when it opens an existing file: a last row torn inside a quoted
multi-line cell is cut off whole (and the warning counts every byte removed), a file whose
quoted cells are complete is left as it is, and bytes that are not UTF-8 do not stop it."""

from __future__ import annotations

import warnings
from pathlib import Path

from sinks import CsvSink


def append_after_repair(path: Path, delimiter: str = ",") -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink = CsvSink(path, mode="a", delimiter=delimiter)
        sink.write({"a": 2, "t": "y"})
        sink.close()
    return [str(w.message) for w in caught]


def test_a_row_torn_inside_a_quoted_cell_is_cut_off_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b'a,t\r\n0,x\r\n1,"two\r\nlin')  # the crash came mid-cell
    messages = append_after_repair(path)
    assert path.read_bytes() == b"a,t\r\n0,x\r\n2,y\r\n"
    assert messages == [
        f"CsvSink: {path} ended in a torn line (11 bytes, left by a crash); it was cut off "
        "before appending"
    ]


def test_complete_quoted_cells_are_left_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b'a;t\r\n1;"two\r\nlines"\r\n')
    assert append_after_repair(path, delimiter=";") == []
    assert path.read_bytes() == b'a;t\r\n1;"two\r\nlines"\r\n2;y\r\n'


def test_a_torn_row_with_bytes_that_are_not_utf8_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b'a;t\r\n1;"x;\xff\r\n')
    messages = append_after_repair(path, delimiter=";")
    assert path.read_bytes() == b"a;t\r\n2;y\r\n"
    assert messages == [
        f"CsvSink: {path} ended in a torn line (8 bytes, left by a crash); it was cut off "
        "before appending"
    ]
