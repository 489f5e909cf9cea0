"""CsvSink restored from a checkpoint in the same process, byte for byte: when a key new
since the checkpoint widened the header (the file was rewritten), the checkpoint's rows
(rows from before the sink opened the file, a multi-line cell, a cell holding the delimiter)
are kept under the checkpoint's header, and the resumed run ends as the uninterrupted one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sinks import CsvSink

EARLIER_RUN = b"a;t\r\n0;pre\r\n"
ROWS: list[dict[str, Any]] = [
    {"a": 1, "t": "two\r\nlines"},
    {"a": 2, "t": "x;y"},
    {"a": 3, "b": 9},  # a new key: the header widens, the file is rewritten
    {"a": 4},
]
CHECKPOINT_AT = 2


def open_sink(path: Path, mode: str = "w") -> CsvSink:
    return CsvSink(path, mode=mode, flush_every=1, flush_seconds=None, delimiter=";")


def run(path: Path) -> dict[str, Any]:
    """Appends ROWS to the file, taking a checkpoint before row CHECKPOINT_AT; returns it.
    (The resumed sink is made with the default mode: a state loaded before the first write
    resumes.)"""
    sink = open_sink(path, mode="a")
    state: dict[str, Any] = {}
    for index, row in enumerate(ROWS):
        if index == CHECKPOINT_AT:
            state = sink.state_dict()
        sink.write(row)
    sink.close()
    return state


def test_a_checkpoint_counts_the_rows_the_file_held_before_the_sink_opened_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "progress.csv"
    path.write_bytes(EARLIER_RUN)
    state = run(path)
    (sink_state,) = state["nodes"]
    assert sink_state["csv"] == {
        "fieldnames": ["a", "t"],
        "declared": [],
        "has_header": True,
        "headless": 0,
        "rows_in_file": 3,
    }
    assert sink_state["file"]["rows"] == 2


def test_a_run_resumed_after_its_header_widened_ends_as_the_uninterrupted_one(
    tmp_path: Path,
) -> None:
    uninterrupted = tmp_path / "uninterrupted.csv"
    uninterrupted.write_bytes(EARLIER_RUN)
    run(uninterrupted)
    assert uninterrupted.read_bytes() == (
        b'a;t;b\r\n0;pre;\r\n1;"two\r\nlines";\r\n2;"x;y";\r\n3;;9\r\n4;;\r\n'
    )

    path = tmp_path / "progress.csv"
    path.write_bytes(EARLIER_RUN)
    state = run(path)  # then the process dies; a new one resumes from the checkpoint
    resumed = open_sink(path)
    resumed.load_state_dict(state)
    assert path.read_bytes() == b'a;t\r\n0;pre\r\n1;"two\r\nlines"\r\n2;"x;y"\r\n'
    assert resumed.fieldnames == ["a", "t"]
    assert not list(tmp_path.glob(".*.rewrite"))
    for row in ROWS[CHECKPOINT_AT:]:
        resumed.write(row)
    resumed.close()
    assert path.read_bytes() == uninterrupted.read_bytes()


def test_a_run_resumed_without_a_new_key_is_cut_back_to_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    sink = open_sink(path)
    sink.write({"a": 1})
    state = sink.state_dict()
    sink.write({"a": 2})
    sink.close()
    resumed = open_sink(path)
    resumed.load_state_dict(state)
    assert path.read_bytes() == b"a\r\n1\r\n"
    resumed.write({"a": 2})
    resumed.close()
    assert path.read_bytes() == b"a\r\n1\r\n2\r\n"
