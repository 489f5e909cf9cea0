"""CsvSink: union of keys, late keys, resume, torn lines, flush policy, cell forms."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import ClosedError
from sinks import CsvSink


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_key_first_seen_late_gets_a_column_and_no_row_loses_anything(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    sink = CsvSink(path, flush_every=10)
    for i in range(600):
        record: dict[str, object] = {"step": i, "return": float(i)}
        if i >= 500:
            record["loss"] = i / 2
        sink.write(record)
    sink.close()
    rows = read(path)
    assert len(rows) == 600
    assert list(rows[0]) == ["step", "return", "loss"]
    assert rows[499]["loss"] == "" and rows[500]["loss"] == "250.0"
    assert [int(r["step"]) for r in rows] == list(range(600))
    assert not list(tmp_path.glob(".*rewrite"))


def test_reopening_appends_and_keeps_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    with CsvSink(path) as sink:
        sink.write({"a": 1, "b": 2})
    with CsvSink(path, mode="a") as sink:
        sink.write({"b": 3, "c": 4})
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["a", "b", "c"]
    assert frame["b"].tolist() == [2, 3] and math.isnan(frame["c"][0]) and frame["c"][1] == 4


def test_mode_w_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    with CsvSink(path) as sink:
        sink.write({"a": 1})
    with pytest.warns(UserWarning, match="replaced"), CsvSink(path, mode="w") as sink:
        sink.write({"b": 2})
    assert read(path) == [{"b": "2"}]


def test_a_torn_last_line_from_a_crash_is_cut_off_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_text("a,b\n1,2\n3,")
    with pytest.warns(UserWarning, match="torn line"), CsvSink(path, mode="a") as sink:
        sink.write({"a": 5, "b": 6})
    assert read(path) == [{"a": "1", "b": "2"}, {"a": "5", "b": "6"}]


def test_rows_reach_the_file_every_n_rows_and_on_flush(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    sink = CsvSink(path, flush_every=3, flush_seconds=None)
    sink.write({"a": 1})
    sink.write({"a": 2})
    assert path.read_text() == ""
    sink.write({"a": 3})
    assert len(read(path)) == 3
    sink.write({"a": 4})
    sink.flush()
    assert len(read(path)) == 4
    sink.close()


def test_rows_reach_the_file_after_flush_seconds(tmp_path: Path) -> None:
    from tests.conftest import FakeClock

    clock = FakeClock()
    sink = CsvSink(tmp_path / "run.csv", flush_every=1000, flush_seconds=2.0)
    sink._clock = clock
    sink.write({"a": 1})
    clock.advance(2.5)
    sink.write({"a": 2})
    assert len(read(tmp_path / "run.csv")) == 2
    sink.close()


def test_cells_of_every_kind_read_back_with_pandas(tmp_path: Path) -> None:
    path = tmp_path / "values.csv"
    with CsvSink(path) as sink:
        sink.write({
            "float": 0.1, "int": 2**70, "bool": True, "none": None, "nan": math.nan,
            "inf": -math.inf, "np": np.float32(1.5), "zero_d": np.array(3), "text": 'a,"b"\nc',
            "array": np.arange(3), "nested": {"k": [1, 2]},
        })
    (row,) = read(path)
    assert row["float"] == "0.1" and row["int"] == str(2**70) and row["bool"] == "True"
    assert row["none"] == "" and row["nan"] == "nan" and row["inf"] == "-inf"
    assert row["np"] == "1.5" and row["zero_d"] == "3" and row["text"] == 'a,"b"\nc'
    assert row["array"] == "[0, 1, 2]" and row["nested"] == '{"k": [1, 2]}'
    frame = pd.read_csv(path)
    assert math.isnan(frame["nan"][0]) and frame["inf"][0] == -math.inf


def test_write_after_close_raises(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "run.csv")
    sink.close()
    with pytest.raises(ClosedError):
        sink.write({"a": 1})


def test_parent_folders_are_created(tmp_path: Path) -> None:
    with CsvSink(tmp_path / "runs" / "x" / "train.csv") as sink:
        sink.write({"a": 1})
    assert (tmp_path / "runs" / "x" / "train.csv").exists()


@pytest.mark.parametrize("options", [{"mode": "r"}, {"flush_every": 0}, {"flush_seconds": -1}])
def test_bad_arguments_are_value_errors(tmp_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CsvSink(tmp_path / "x.csv", **options)  # type: ignore[arg-type]


# -- delimiter: tab-separated files (Spinning Up's progress.txt) ---------------------------


def read_tabs(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_a_tab_delimited_file_reads_back_with_csv_and_pandas(tmp_path: Path) -> None:
    path = tmp_path / "progress.txt"
    with CsvSink(path, delimiter="\t") as sink:
        sink.write({"Epoch": 0, "AverageEpRet": 1.5, "Note": "a\tb, c"})
        sink.write({"Epoch": 1, "AverageEpRet": -2.25, "Note": "plain"})

    assert path.read_text().splitlines()[:2] == ["Epoch\tAverageEpRet\tNote", '0\t1.5\t"a\tb, c"']
    assert read_tabs(path) == [
        {"Epoch": "0", "AverageEpRet": "1.5", "Note": "a\tb, c"},
        {"Epoch": "1", "AverageEpRet": "-2.25", "Note": "plain"},
    ]
    table = pd.read_table(path)
    assert list(table.columns) == ["Epoch", "AverageEpRet", "Note"]
    assert table["Epoch"].tolist() == [0, 1] and table["AverageEpRet"].tolist() == [1.5, -2.25]
    assert table["Note"].tolist() == ["a\tb, c", "plain"]


def test_a_late_key_widens_a_tab_delimited_file(tmp_path: Path) -> None:
    path = tmp_path / "progress.txt"
    with CsvSink(path, delimiter="\t", flush_every=1, flush_seconds=None) as sink:
        sink.write({"Epoch": 0, "Loss": 0.5})
        sink.write({"Epoch": 1, "Loss": 0.25, "KL": 0.125})

    assert path.read_text().splitlines() == ["Epoch\tLoss\tKL", "0\t0.5\t", "1\t0.25\t0.125"]
    table = pd.read_table(path)
    assert list(table.columns) == ["Epoch", "Loss", "KL"]
    assert math.isnan(table["KL"][0]) and table["KL"][1] == 0.125
    assert not list(tmp_path.glob(".*rewrite"))


def test_resuming_a_tab_delimited_file_keeps_its_header(tmp_path: Path) -> None:
    path = tmp_path / "progress.txt"
    with CsvSink(path, delimiter="\t") as sink:
        sink.write({"a": 1, "b": 2})
    path.write_text(path.read_text() + "3\t")  # a row torn by a crash
    with pytest.warns(UserWarning, match="torn line"), CsvSink(
        path, mode="a", delimiter="\t"
    ) as sink:
        assert sink.fieldnames == ["a", "b"]
        sink.write({"b": 4, "a": 3})
        sink.write({"c": 5})

    assert read_tabs(path) == [
        {"a": "1", "b": "2", "c": ""},
        {"a": "3", "b": "4", "c": ""},
        {"a": "", "b": "", "c": "5"},
    ]
    assert list(pd.read_table(path).columns) == ["a", "b", "c"]


@pytest.mark.parametrize("delimiter", ["", ",,", '"', "\n", "\r", 9])
def test_a_delimiter_must_be_one_character(tmp_path: Path, delimiter: object) -> None:
    with pytest.raises(ValueError, match="delimiter"):
        CsvSink(tmp_path / "x.csv", delimiter=delimiter)  # type: ignore[arg-type]


def test_a_nul_in_keys_and_values_reads_back_or_is_replaced_and_counted(tmp_path: Path) -> None:
    from sinks.csv import NUL_REFUSED

    path = tmp_path / "nul.csv"
    sink = CsvSink(path)
    if NUL_REFUSED:
        with pytest.warns(UserWarning, match="cannot write NUL"):
            sink.write({"a\x00": "b\x00c"})
            sink.close()
        assert read(path) == [{"a\ufffd": "b\ufffdc"}] and sink.counts["changed"] == 1
    else:
        sink.write({"a\x00": "b\x00c"})
        sink.close()
        assert read(path) == [{"a\x00": "b\x00c"}] and sink.counts["changed"] == 0


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(["a", "b", "c"]),
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats()),
        ),
        min_size=1,
        max_size=5,
    ),
    delimiter=st.sampled_from([",", "\t", ";"]),
)
def test_rows_of_numbers_are_the_text_the_csv_module_writes(
    rows: list[dict[str, object]], delimiter: str
) -> None:
    from sinks.csv import _number_lines

    fields = ["a", "b", "c"]
    expected = io.StringIO()
    csv.writer(expected, delimiter=delimiter, lineterminator="\r\n").writerows(
        [row.get(name) for name in fields] for row in rows
    )
    assert _number_lines(rows, fields, delimiter, "\r\n") == expected.getvalue()
