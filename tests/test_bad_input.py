"""Every built-in node and sink takes every kind of value without crashing, losing a key or
changing a value: nodes pass each value on as the same object, files read back equal."""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from filters import (
    AggregateFilter,
    Dispatcher,
    DropKeys,
    EveryNFilter,
    FlattenFilter,
    KeepKeys,
    NoneFilter,
    PrefixKeys,
    RenameKeys,
    SmoothingFilter,
    TimeFilter,
)
from pipeline import Node
from sinks import CsvSink, JsonlSink, MemorySink, TerminalSink
from sinks.terminal import humanize

ODD_VALUES: dict[str, Any] = {
    "none": None,
    "nan": math.nan,
    "inf": math.inf,
    "neg_inf": -math.inf,
    "text": "héllo, \"world\"\n",
    "true": True,
    "huge_int": 10**400,
    "np_float32": np.float32(1.25),
    "np_int64": np.int64(-3),
    "np_bool": np.bool_(True),
    "zero_d": np.array(2.5),
    "array": np.arange(6).reshape(2, 3),
    "empty_array": np.array([]),
    "list": [1, "a", None],
    "nested": {"inner": {"deep": 1.0}},
    "object": object(),
    "ünïcode/ключ": 1.0,
    "k" * 300: 2.0,
}

CSV_CELLS = {
    "none": "",
    "nan": "nan",
    "inf": "inf",
    "neg_inf": "-inf",
    "text": "héllo, \"world\"\n",
    "true": "True",
    "huge_int": str(10**400),
    "np_float32": "1.25",
    "np_int64": "-3",
    "np_bool": "True",
    "zero_d": "2.5",
    "array": "[[0, 1, 2], [3, 4, 5]]",
    "empty_array": "[]",
    "list": '[1, "a", null]',
    "nested": '{"inner": {"deep": 1.0}}',
    "ünïcode/ключ": "1.0",
    "k" * 300: "2.0",
}
"""What each odd value's CSV cell holds (besides `object`, its `str()`)."""

JSON_VALUES = {
    "none": None,
    "nan": math.nan,
    "inf": math.inf,
    "neg_inf": -math.inf,
    "text": "héllo, \"world\"\n",
    "true": True,
    "huge_int": 10**400,
    "np_float32": 1.25,
    "np_int64": -3,
    "np_bool": True,
    "zero_d": 2.5,
    "array": [[0, 1, 2], [3, 4, 5]],
    "empty_array": [],
    "list": [1, "a", None],
    "nested": {"inner": {"deep": 1.0}},
    "ünïcode/ключ": 1.0,
    "k" * 300: 2.0,
}
"""What each odd value reads back as from JSON Lines (besides `object`, its `str()`)."""

# node factory, and the keys the node is documented to remove or replace
NODES: dict[str, tuple[Callable[[], Node], Callable[[str], set[str]]]] = {
    "NoneFilter": (NoneFilter, lambda key: {key}),
    "TimeFilter": (lambda: TimeFilter(0), lambda key: {key}),
    "EveryNFilter": (lambda: EveryNFilter(1), lambda key: {key}),
    "SmoothingFilter": (lambda: SmoothingFilter(".*"), lambda key: {key}),
    "AggregateFilter": (lambda: AggregateFilter(".*", every=1), lambda key: {key, f"{key}_mean"}),
    "Dispatcher": (Dispatcher, lambda key: {key}),
    "KeepKeys": (lambda: KeepKeys(".*"), lambda key: {key}),
    "DropKeys": (lambda: DropKeys("^$"), lambda key: {key}),
    "PrefixKeys": (lambda: PrefixKeys("p"), lambda key: {f"p/{key}"}),
    "RenameKeys": (lambda: RenameKeys({"text": "renamed"}), lambda key: {key, "renamed"}),
    "FlattenFilter": (FlattenFilter, lambda key: {key, "nested/inner/deep"}),
}


@pytest.mark.parametrize("name", sorted(NODES))
def test_every_node_takes_odd_values_and_keeps_every_key(name: str) -> None:
    factory, expected_names = NODES[name]
    sink = MemorySink()
    node = factory().connect(sink)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.write(ODD_VALUES)
        node.write(ODD_VALUES)
        node.close()
    assert sink.records, f"{name} emitted nothing"
    out = sink.records[-1]
    for key, value in ODD_VALUES.items():
        if name in ("NoneFilter", "AggregateFilter") and value is None:  # None is "no value"
            assert key not in out
            continue
        assert expected_names(key) & set(out), f"{name} lost {key!r}"
    if name == "AggregateFilter":
        return  # numbers become statistics; the rest is checked by the aggregate's own tests
    renamed = {"PrefixKeys": lambda key: f"p/{key}", "RenameKeys": {"text": "renamed"}.get}
    rename = renamed.get(name, lambda key: None)
    for key, value in ODD_VALUES.items():
        dropped = value is None and name == "NoneFilter"
        if dropped or (key == "nested" and name == "FlattenFilter"):
            continue
        assert kept(out[rename(key) or key], value), f"{name} changed {key!r}"
    if name == "FlattenFilter":
        assert out["nested/inner/deep"] == 1.0


def kept(out: Any, written: Any) -> bool:
    """Whether a value came out as written: the same object, or for an array, list or dict
    (which MemorySink keeps a snapshot of) an equal copy."""
    if isinstance(written, np.ndarray):
        return bool(np.array_equal(out, written)) and out.dtype == written.dtype
    if isinstance(written, (list, dict)):
        return bool(out == written)
    return out is written


SINKS: dict[str, Callable[[Path], Node]] = {
    "CsvSink": lambda tmp: CsvSink(tmp / "out.csv"),
    "JsonlSink": lambda tmp: JsonlSink(tmp / "out.jsonl"),
    "TerminalSink": lambda tmp: TerminalSink("t", stream=io.StringIO()),
    "TerminalSink(table)": lambda tmp: TerminalSink(stream=io.StringIO(), mode="table"),
    "MemorySink": lambda tmp: MemorySink(),
}


@pytest.mark.parametrize("name", sorted(SINKS))
def test_every_sink_stores_every_key_of_odd_values(name: str, tmp_path: Path) -> None:
    sink = SINKS[name](tmp_path)
    sink.write(ODD_VALUES)
    sink.write({"late": 1})
    sink.close()
    if isinstance(sink, CsvSink):
        with sink.path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert set(rows[0]) == set(ODD_VALUES) | {"late"} and len(rows) == 2
        cells = dict(rows[0])
        assert cells.pop("object").startswith("<object object at")
        assert cells == {**CSV_CELLS, "late": ""}
        assert rows[1] == {**dict.fromkeys(ODD_VALUES, ""), "late": "1"}
    elif isinstance(sink, JsonlSink):
        first, second = (json.loads(line) for line in sink.path.read_text().splitlines())
        assert first.pop("object").startswith("<object object at")
        assert math.isnan(first.pop("nan"))
        assert first == {key: value for key, value in JSON_VALUES.items() if key != "nan"}
        assert second == {"late": 1}
    elif isinstance(sink, TerminalSink):
        assert isinstance(sink.stream, io.StringIO)
        text = sink.stream.getvalue()
        if sink.mode == "line":
            assert all(humanize(key) in text for key in ODD_VALUES)
        else:
            assert all(key.rpartition("/")[2] in text for key in ODD_VALUES)
    else:
        assert isinstance(sink, MemorySink)
        assert sink.records[0].keys() == ODD_VALUES.keys()
