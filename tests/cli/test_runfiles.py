"""Reading run files: cells as numbers, nested JSON as `/` keys, torn and odd lines skipped."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli.runfiles import cell_number, read_table, run_files
from sinks import CsvSink, JsonlSink


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("12", 12.0),
        (" 1e3", 1000.0),
        ("-inf", -math.inf),
        (3, 3.0),
        (True, 1.0),
        (10**400, math.inf),  # a JSON integer too large for a float
        (-(10**400), -math.inf),
        (np.float32(2.5), 2.5),
    ],
)
def test_a_cell_holding_a_number_is_that_number(cell: object, expected: float) -> None:
    assert cell_number(cell) == expected


@pytest.mark.parametrize("cell", ["", "abc", None, [1.0], {}, {"a": 1}, 1 + 2j])
def test_a_cell_holding_no_number_is_nan(cell: object) -> None:
    assert math.isnan(cell_number(cell))


def test_jsonl_nests_flatten_to_slash_keys_and_lists_are_not_columns(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    with JsonlSink(path) as sink:
        sink.write({"steps": 1, "loss": {"pi": 0.5, "q": 2}, "hist": [1, 2], "empty": {}})
        sink.write({"steps": 2, "loss": {"pi": 0.25, "q": 1}, "hist": [3, 4], "empty": {}})
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"steps": 3, "loss": {"pi"')  # a line still being written
    table = read_table(path)
    assert table.rows == 2
    assert list(table.columns) == ["steps", "loss/pi", "loss/q"]
    assert table.columns["loss/pi"].tolist() == [0.5, 0.25]


def test_csv_cells_that_are_not_numbers_are_nan(tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_text("steps,return,note\n1,2.5,ok\n2,,late\n3,n/a,\n", encoding="utf-8")
    table = read_table(path)
    assert list(table.columns) == ["steps", "return"]  # `note` holds no number
    assert table.columns["return"][0] == 2.5 and np.isnan(table.columns["return"][1:]).all()


def test_a_run_folder_lists_train_first_and_skips_hidden_files(tmp_path: Path) -> None:
    for name in ("eval.csv", "train.csv", ".train.csv.rewrite", "notes.md"):
        (tmp_path / name).write_text("steps\n1\n", encoding="utf-8")
    with CsvSink(tmp_path / "a.csv") as sink:
        sink.write({"steps": 1})
    assert [p.name for p in run_files(tmp_path)] == ["train.csv", "a.csv", "eval.csv"]
