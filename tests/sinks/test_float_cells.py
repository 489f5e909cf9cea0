"""Narrow floats are written as the shortest text that reads back to the same value."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks import CsvSink, JsonlSink, MemorySink, TerminalSink

float32s = st.floats(width=32, allow_nan=False).map(np.float32)
float16s = st.floats(width=16, allow_nan=False).map(np.float16)


def test_float32_point_one_is_written_as_acme_writes_it(tmp_path: Path) -> None:
    with CsvSink(tmp_path / "a.csv") as csv_sink, JsonlSink(tmp_path / "a.jsonl") as jsonl:
        for sink in (csv_sink, jsonl):
            sink.write({"loss": np.float32(0.1), "grads": np.array([0.1, 0.2], np.float32)})
    assert (tmp_path / "a.csv").read_bytes() == b'loss,grads\r\n0.1,"[0.1, 0.2]"\r\n'
    line = (tmp_path / "a.jsonl").read_text()  # spacing: json's, or orjson's with `fast`
    assert json.loads(line) == {"loss": 0.1, "grads": [0.1, 0.2]} and "0.1000" not in line


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(float32s, float16s), min_size=1, max_size=20))
def test_narrow_floats_read_back_to_the_same_value_in_csv_and_jsonl(
    tmp_path_factory: object, values: list[np.floating]
) -> None:
    folder = tmp_path_factory.mktemp("cells")  # type: ignore[attr-defined]
    with CsvSink(folder / "a.csv") as csv_sink, JsonlSink(folder / "a.jsonl") as jsonl:
        for value in values:
            csv_sink.write({"x": value})
            jsonl.write({"x": value})
    with (folder / "a.csv").open(newline="") as handle:
        cells = [row["x"] for row in csv.DictReader(handle)]
    lines = [json.loads(line)["x"] for line in (folder / "a.jsonl").read_text().splitlines()]
    for value, cell, number in zip(values, cells, lines, strict=True):
        kind = type(value)
        assert kind(float(cell)) == value and kind(number) == value
        assert float(cell) == number == float(str(value))  # numpy's shortest decimal


def test_values_kept_in_memory_stay_exactly_what_was_written() -> None:
    sink = MemorySink()
    sink.write({"x": np.float32(0.1)})
    (record,) = sink.records
    assert record["x"] == np.float32(0.1) and type(record["x"]) is np.float32


def test_the_terminal_shows_a_float32_as_its_short_text() -> None:
    assert "0.1" in TerminalSink("t").format_line({"loss": np.float32(0.1)})
