"""Arbitrary records through every built-in node and sink: no crash, nothing silently lost,
and the CSV stays readable by the csv module and pandas."""

from __future__ import annotations

import csv
import decimal
import io
import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline import Pipeline
from sinks import CsvSink, JsonlSink, MemorySink, NullSink, TerminalSink
from sinks.csv import NUL_REFUSED


class NoFloat:
    """An object with no numeric form at all."""

    def __repr__(self) -> str:
        return "<NoFloat>"


class NoText:
    """An object whose `__str__` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text")

    def __repr__(self) -> str:
        return "<NoText>"


def big_text(value: int) -> str:
    return str(decimal.Decimal(value))


def same_cell(written: Any, cell: str) -> bool:
    """Whether a CSV cell holds what was written (as rlpipe's CSV cell rules say)."""
    if isinstance(written, np.ndarray) and written.ndim == 0:
        written = written[()]  # a 0-d array is the scalar it holds
    if written is None:
        return cell == ""
    if isinstance(written, (bool, np.bool_)):
        return cell == str(bool(written))
    if isinstance(written, (int, np.integer)):
        return cell == big_text(int(written))
    if isinstance(written, (float, np.floating)):
        x = float(cell)
        return (math.isnan(x) and math.isnan(written)) or type(written)(x) == written
    if isinstance(written, str):
        return cell == written
    if isinstance(written, (np.ndarray, list, dict)):
        return same_json(written, json.loads(cell))
    return cell == repr(written)


def same_json(written: Any, read: Any) -> bool:
    """Whether a JSON value read back holds what was written."""
    if isinstance(written, np.ndarray):
        if written.ndim == 0:
            return same_json(written[()], read)
        return same_json(list(written), read)
    if isinstance(written, (list, tuple)):
        return isinstance(read, list) and len(read) == len(written) and all(
            same_json(w, r) for w, r in zip(written, read, strict=True)
        )
    if isinstance(written, dict):
        return isinstance(read, dict) and list(read) == [str(k) for k in written] and all(
            same_json(w, r) for w, r in zip(written.values(), read.values(), strict=True)
        )
    if written is None or isinstance(written, (str, bool, np.bool_)):
        return read == written
    if isinstance(written, (int, np.integer)):
        return read == int(written) or read == big_text(int(written))
    if isinstance(written, (float, np.floating)):
        return (math.isnan(read) and math.isnan(written)) or type(written)(read) == written
    return read == repr(written)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.builds(pow, st.just(10), st.sampled_from([4400, 5000])),  # beyond the int-to-text limit
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.builds(NoFloat),
    st.builds(NoText),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    hnp.arrays(
        dtype=st.sampled_from([np.float64, np.int32, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6,
)
keys = st.text(min_size=1, max_size=300).filter(lambda key: "_smoothed_" not in key)
records = st.lists(st.dictionaries(keys, values, max_size=6), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records)
def test_hostile_records_through_every_node_and_sink(stream: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = Path(folder)
        raw, smoothed, aggregated = MemorySink(), MemorySink(), MemorySink()
        text = io.StringIO()
        pipe = Pipeline("hostile", strict=True).to(
            Pipeline("raw").to(raw, CsvSink(out / "raw.csv"), JsonlSink(out / "raw.jsonl")),
            Pipeline("smoothed")
            .flatten()
            .drop_none()
            .smooth(".*")
            .throttle(0)
            .every(1)
            .to(smoothed, TerminalSink("t", stream=text), TerminalSink(stream=text, mode="table"),
                NullSink()),
            Pipeline("aggregated").aggregate(".*", every=4).to(aggregated),
        )
        for record in stream:
            pipe.write(record)
        pipe.close()

        # nothing lost: every record reached every leaf, every key is still there
        assert [r.keys() for r in raw.records] == [r.keys() for r in stream]
        assert len(smoothed.records) == len(stream)
        for before, after in zip(stream, smoothed.records, strict=True):
            for key, value in before.items():
                if value is None or isinstance(value, dict):
                    continue  # dropped by drop_none / flattened to key/... by design
                assert key in after
        window_keys = set().union(*(r.keys() for r in aggregated.records))
        for record in stream:
            for key, value in record.items():
                if value is not None:
                    assert key in window_keys or f"{key}_mean" in window_keys

        # the files read back, value for value
        with (out / "raw.csv").open(newline="") as handle:
            rows = list(csv.reader(handle))
        if not any(stream):  # records with no keys and no column yet: no row, nothing lost
            assert rows == []
        else:
            header, *cells = rows
            assert len(cells) == len(stream) and all(len(row) == len(header) for row in rows)
            for record, row in zip(stream, cells, strict=True):
                by_name = dict(zip(header, row, strict=True))
                for key, value in record.items():
                    if NUL_REFUSED:  # Python 3.10 writes NUL as U+FFFD (documented, counted)
                        key, value = (
                            item.replace("\x00", "\ufffd") if isinstance(item, str) else item
                            for item in (key, value)
                        )
                    assert same_cell(value, by_name[key]), (key, value, by_name[key])
            # A one-column row holding only an empty cell is written as `""` (RFC 4180);
            # pandas would take that line for a blank one and skip it by default.
            frame = pd.read_csv(
                out / "raw.csv", keep_default_na=False, dtype=str, skip_blank_lines=False
            )
            assert len(frame) == len(stream)
        lines = (out / "raw.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(stream)
        for record, line in zip(stream, lines, strict=True):
            read = json.loads(line)
            assert list(read) == [str(key) for key in record]
            for key, value in record.items():
                assert same_json(value, read[str(key)]), (key, value, read[str(key)])


def test_a_nan_in_a_record_stays_nan_in_every_file(tmp_path: Path) -> None:
    with Pipeline("p").to(CsvSink(tmp_path / "a.csv"), JsonlSink(tmp_path / "a.jsonl")) as pipe:
        pipe.write({"x": math.nan})
    assert math.isnan(pd.read_csv(tmp_path / "a.csv")["x"][0])
    assert math.isnan(json.loads((tmp_path / "a.jsonl").read_text())["x"])
