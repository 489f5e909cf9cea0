"""The small loss paths: a caller's mistake raises at once, odd numbers stay numbers, odd CSV
files resume cleanly, closed sinks refuse, and per-key caches stay bounded."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from filters import PrefixKeys
from pipeline import ClosedError, KeyMatcher, Pipeline
from pipeline.core.keys import CACHE_LIMIT
from pipeline.core.values import plain, to_float
from sinks import CsvSink, MemorySink, NullSink


@pytest.mark.parametrize("bad", [[1, 2], None, "abc", 3.5, (("a", 1),)])
def test_writing_something_that_is_not_a_mapping_raises_at_once(bad: Any) -> None:
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).to(memory)
    with pytest.raises(TypeError, match="mapping of metric names"):
        pipe.write(bad)
    with pytest.raises(TypeError, match="mapping of metric names to columns"):
        pipe.write_batch(bad)
    pipe.close()
    assert memory.records == [] and pipe.failures() == []


def test_numpy_longdouble_is_a_number_and_masked_is_no_value() -> None:
    assert to_float(np.longdouble(0.1)) == 0.1
    assert to_float(np.ma.masked) is None and plain(np.ma.masked) is None
    assert plain(np.ma.array([1, 2], mask=[False, True])) == [1, None]


def test_a_closed_null_sink_refuses_writes() -> None:
    sink = NullSink()
    sink.close()
    with pytest.raises(ClosedError):
        sink.write({"a": 1})
    with pytest.raises(ClosedError):
        sink.write_batch({"a": [1]})


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def test_keys_of_other_types_share_one_csv_column_each(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "a.csv")
    with pytest.warns(UserWarning, match="share one CSV column"), sink:
        sink.write({1: "int", "x": 0})
        sink.write({"1": "text", 2.5: "float"})
        sink.write({1: "first", "1": "second"})
    rows = read(tmp_path / "a.csv")
    assert list(rows[0]) == ["1", "x", "2.5"]
    assert [row["1"] for row in rows] == ["int", "text", "second"]
    assert rows[1]["2.5"] == "float" and sink.counts["overwritten"] == 1


def test_an_empty_first_record_then_a_resume_gives_a_usable_header(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    with CsvSink(path) as sink:
        sink.write({})
        sink.write({"a": 1})
    with CsvSink(path, mode="a") as sink:
        sink.write({"a": 2, "b": 3})
    assert read(path) == [{"a": "", "b": ""}, {"a": "1", "b": ""}, {"a": "2", "b": "3"}]


def test_a_header_with_a_byte_order_mark_is_resumed_without_a_duplicate_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffa,b\r\n1,2\r\n".encode())
    with CsvSink(path, mode="a") as sink:
        sink.write({"a": 3, "b": 4})
    assert read(path) == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


def test_per_key_caches_stay_bounded_however_many_keys_pass() -> None:
    matcher = KeyMatcher("^keep")
    prefix = PrefixKeys("p").connect(NullSink())
    for index in range(CACHE_LIMIT + 1000):
        key = f"k{index}"
        assert not matcher(key)
        prefix.write({key: 1})
    assert len(matcher._cache) <= CACHE_LIMIT
    assert len(prefix._names) <= CACHE_LIMIT
    assert matcher("keep-me")
