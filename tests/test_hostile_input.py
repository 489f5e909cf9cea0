"""Arbitrary records through every built-in node and sink: no crash, nothing silently lost,
and the CSV stays readable by the csv module and pandas."""

from __future__ import annotations

import csv
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


class NoFloat:
    """An object with no numeric form at all."""

    def __repr__(self) -> str:
        return "<NoFloat>"


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.builds(NoFloat),
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

        # the files read back
        with (out / "raw.csv").open(newline="") as handle:
            rows = list(csv.reader(handle))
        assert len(rows) == len(stream) + 1 and all(len(row) == len(rows[0]) for row in rows)
        if rows[0]:
            # A one-column row holding only an empty cell is written as `""` (RFC 4180);
            # pandas would take that line for a blank one and skip it by default.
            frame = pd.read_csv(
                out / "raw.csv", keep_default_na=False, dtype=str, skip_blank_lines=False
            )
            assert len(frame) == len(stream)
        lines = (out / "raw.jsonl").read_text(encoding="utf-8").splitlines()
        assert [set(json.loads(line)) for line in lines] == [
            {str(key) for key in record} for record in stream
        ]


def test_a_nan_in_a_record_stays_nan_in_every_file(tmp_path: Path) -> None:
    with Pipeline("p").to(CsvSink(tmp_path / "a.csv"), JsonlSink(tmp_path / "a.jsonl")) as pipe:
        pipe.write({"x": math.nan})
    assert math.isnan(pd.read_csv(tmp_path / "a.csv")["x"][0])
    assert math.isnan(json.loads((tmp_path / "a.jsonl").read_text())["x"])
