"""CsvSink's columns for keys that are not text, its NUL handling where the csv module cannot
write NUL (Python 3.10, simulated here on any Python), and what any sink says when it is
closed or given a child."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import sinks.csv
from pipeline import ClosedError
from sinks import CsvSink, MemorySink


def test_keys_of_different_types_with_one_text_share_a_column_and_the_later_wins(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.csv"
    sink = CsvSink(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink.write({1: "a", "1": "b", 2: "c"})  # type: ignore[dict-item]
        sink.close()
    assert path.read_bytes() == b"1,2\r\nb,c\r\n"
    assert sink.counts["overwritten"] == 1 and sink.counts.by_key["overwritten"] == {"1": 1}
    assert [str(w.message) for w in caught] == [
        "CsvSink: keys '1' of different types share one CSV column; the later wins "
        "(counted in .counts['overwritten']; warned once per key)"
    ]


def test_where_csv_cannot_write_nul_it_is_written_as_a_replacement_character(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sinks.csv, "NUL_REFUSED", True)
    path = tmp_path / "a.csv"
    sink = CsvSink(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink.write({"k\x00": "x\x00y", "n": 1})
        sink.write({"k\x00": "ok", "n": 2})  # no NUL in the values: kept as it is
        sink.close()
    assert path.read_text(encoding="utf-8") == "k\ufffd,n\nx\ufffdy,1\nok,2\n"
    assert sink.counts["changed"] == 2
    assert [(w.category, str(w.message)) for w in caught] == [
        (
            UserWarning,
            "CsvSink: Python 3.10's csv module cannot write NUL; it is written as U+FFFD "
            "(counted in .counts['changed']; warned once)",
        )
    ]


def test_a_row_without_nul_is_written_as_it_is_where_nul_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sinks.csv, "NUL_REFUSED", True)
    path = tmp_path / "a.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with CsvSink(path) as sink:
            sink.write({"k": "plain", "n": 1})
    assert path.read_bytes() == b"k,n\r\nplain,1\r\n"
    assert sink.counts["changed"] == 0


def test_a_sink_refuses_children_naming_itself() -> None:
    with pytest.raises(TypeError) as caught:
        MemorySink().connect(MemorySink())
    assert str(caught.value) == "MemorySink is a sink: it has no children"


def test_a_closed_sink_says_it_takes_no_more_records() -> None:
    sink = MemorySink()
    sink.close()
    with pytest.raises(ClosedError) as caught:
        sink.write({"a": 1})
    assert str(caught.value) == "MemorySink(0 records) is closed; it takes no more records"
