"""JsonlSink, TerminalSink, MemorySink and NullSink."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sinks import JsonlSink, MemorySink, NullSink, TerminalSink
from sinks.terminal import format_value


def test_jsonl_writes_one_object_per_record_with_plain_values(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with JsonlSink(path) as sink:
        sink.write({"a": np.float64(1.5), "b": np.arange(2), "c": None, "d": {"e": np.int8(1)}})
        sink.write({"nan": math.nan, "obj": object})
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"a": 1.5, "b": [0, 1], "c": None, "d": {"e": 1}}
    second = json.loads(lines[1])
    assert math.isnan(second["nan"]) and second["obj"] == str(object)


def test_jsonl_resume_cuts_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text('{"a": 1}\n{"a": 2')
    with pytest.warns(UserWarning, match="torn"), JsonlSink(path, mode="a") as sink:
        sink.write({"a": 3})
    assert [json.loads(line)["a"] for line in path.read_text().splitlines()] == [1, 3]


def test_terminal_line_is_acme_style_with_sorted_keys() -> None:
    stream = io.StringIO()
    sink = TerminalSink("train", stream=stream)
    sink.write({"steps": 1000, "episode_return": np.array(12.5), "loss": None})
    assert stream.getvalue() == (
        "[Train] Episode Return = 12.500 | Loss = None | Steps = 1000\n"
    )


def test_terminal_table_groups_keys_by_prefix() -> None:
    stream = io.StringIO()
    TerminalSink(stream=stream, mode="table").write({"train/loss": 0.5, "time/fps": 100})
    lines = stream.getvalue().splitlines()
    assert lines[0] == lines[-1] and set(lines[0]) == {"-"}
    assert "| time/" in lines[1] and "|     fps" in lines[2] and "|     loss" in lines[4]


@pytest.mark.parametrize(
    ("value", "text"),
    [(1, "1"), (True, "True"), (0.5, "0.500"), (1e7, "1.000e+07"), (1e-5, "1.000e-05"),
     (math.nan, "nan"), (np.int64(3), "3"), (list(range(10)), "[0, 1, 2, 3, 4, 5, ...]"),
     ("x" * 100, "x" * 77 + "...")],
)
def test_values_are_formatted_for_humans(value: object, text: str) -> None:
    assert format_value(value) == text


def test_memory_sink_keeps_copies() -> None:
    sink = MemorySink()
    record = {"a": 1}
    sink.write(record)
    record["a"] = 2
    assert sink.records == [{"a": 1}] and sink.column("a") == [1]


def test_null_sink_counts() -> None:
    sink = NullSink()
    sink.write({"a": 1})
    sink.write_batch({"a": np.zeros(5)})
    assert sink.count == 6
