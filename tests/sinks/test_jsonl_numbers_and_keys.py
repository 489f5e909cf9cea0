"""JsonlSink writes numpy's longdouble as JSON numbers (scalars, 0-d arrays, arrays), one
beyond float64's range with all its digits (counted, warned once); and of two keys of one
record with the same text (`1` and `"1"`) writes the first and refuses the later, counted
under its key and warned once."""

from __future__ import annotations

import decimal
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks import JsonlSink


def lines(path: Path, **options: object) -> list[dict[str, object]]:
    return [json.loads(line, **options) for line in path.read_text().splitlines()]  # type: ignore[arg-type]


def test_longdouble_scalars_zero_d_arrays_and_arrays_are_json_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with JsonlSink(path) as sink:
        sink.write({
            "x": np.longdouble("0.1"),
            "zero_d": np.array(0.5, dtype=np.longdouble),
            "array": np.array([0.5, 1.5], dtype=np.longdouble),
            "nan": np.longdouble("nan"),
        })
    (row,) = lines(path)
    assert row["x"] == float(np.longdouble("0.1")) and isinstance(row["x"], float)
    assert row["zero_d"] == 0.5 and row["array"] == [0.5, 1.5]
    assert np.isnan(row["nan"])  # type: ignore[call-overload]
    assert sink.counts["changed"] == 0


@pytest.mark.skipif(
    np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
    reason="this platform's longdouble is float64: none is beyond its range",
)
def test_a_longdouble_beyond_float64s_range_keeps_all_its_digits_counted_and_warned(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.jsonl"
    huge, tiny = np.longdouble("1e4000"), np.longdouble("-2.5e-4000")
    with pytest.warns(UserWarning, match="beyond float64's range") as caught, JsonlSink(
        path
    ) as sink:
        sink.write({"huge": huge, "step": 1})
        sink.write({"tiny": np.array([tiny, 1.0], dtype=np.longdouble), "step": 2})
    assert len([w for w in caught if "float64" in str(w.message)]) == 1
    assert sink.counts["changed"] == 2
    exact = lines(path, parse_float=decimal.Decimal)
    assert exact[0] == {"huge": decimal.Decimal("1.0e+4000"), "step": 1}
    assert np.longdouble(str(exact[0]["huge"])) == huge
    assert exact[1]["tiny"] == [decimal.Decimal("-2.5e-4000"), decimal.Decimal("1")]
    assert lines(path)[0]["huge"] == float("inf")  # plain json reads it as infinity


def test_keys_with_the_same_text_write_the_first_and_refuse_the_later(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with JsonlSink(path) as sink:
            sink.write({1: 10.0, "1": 20.0, "x": 1})  # type: ignore[dict-item]
            sink.write({"1": 30.0, 1: 40.0})  # type: ignore[dict-item]
            sink.write({1: 50.0})  # type: ignore[dict-item]
    assert lines(path) == [{"1": 10.0, "x": 1}, {"1": 30.0}, {"1": 50.0}]
    assert sink.counts["dropped"] == 2 and sink.counts.by_key["dropped"] == {"1": 2}
    assert len([w for w in caught if "one JSON key" in str(w.message)]) == 1


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.dictionaries(
            st.one_of(st.sampled_from(["1", "a", "2.5"]), st.sampled_from([1, 2.5])),
            st.floats(allow_nan=False),
            max_size=4,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_every_value_is_written_or_counted_dropped(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[object, float]]
) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "a.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with JsonlSink(path, flush_every=3) as sink:
            for row in rows:
                sink.write(row)  # type: ignore[arg-type]
    stored = lines(path)
    assert len(stored) == len(rows)
    assert sum(map(len, stored)) + sink.counts["dropped"] == sum(map(len, rows))
    for written, read in zip(rows, stored, strict=True):
        first: dict[str, float] = {}
        for key, value in written.items():
            first.setdefault(str(key), value)
        assert read == first
