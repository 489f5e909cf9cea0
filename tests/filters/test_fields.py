"""`constant(**fields)` adds fixed fields to every record (before the record's own keys, as
Acme's ConstantLogger) and `timestamp(key)` the wall-clock time; a field the record already
holds keeps the record's value, counted under "clashed" and warned about once."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from filters import ConstantFields, Timestamp
from pipeline import Pipeline
from sinks import MemorySink
from tests.conftest import FakeClock


def test_constant_fields_come_first_on_every_record() -> None:
    sink = MemorySink()
    with Pipeline("c").constant(seed=3, env="CartPole-v1").to(sink) as p:
        p.write({"return": 1.0})
        p.write({"loss": 0.5})
    assert [list(r.items()) for r in sink.records] == [
        [("seed", 3), ("env", "CartPole-v1"), ("return", 1.0)],
        [("seed", 3), ("env", "CartPole-v1"), ("loss", 0.5)],
    ]


def test_acmes_constant_logger_gives_the_same_records() -> None:
    constant = pytest.importorskip("acme.utils.loggers.constant")

    class Keep:
        def __init__(self) -> None:
            self.data: list[dict[str, object]] = []

        def write(self, data: dict[str, object]) -> None:
            self.data.append(dict(data))

    acme_sink = Keep()
    acme = constant.ConstantLogger({"seed": 3, "env": "x"}, acme_sink)
    sink = MemorySink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with Pipeline("c").constant(seed=3, env="x").to(sink) as p:
            for record in ({"a": 1}, {"seed": 7, "a": 2}):
                p.write(record)
                acme.write(record)
    assert [list(r.items()) for r in sink.records] == [list(r.items()) for r in acme_sink.data]


def test_a_field_the_record_holds_keeps_its_value_counted_and_warned_once() -> None:
    sink = MemorySink()
    pipe = Pipeline("c").constant(seed=3).to(sink)
    with pytest.warns(UserWarning, match="'seed' is already a key of the record"):
        pipe.write({"seed": 9})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        pipe.write({"seed": 10})
        pipe.write({"x": 1})
    pipe.close()
    assert [r["seed"] for r in sink.records] == [9, 10, 3]
    node = pipe.steps[0]
    assert node.counts["clashed"] == 2 and node.counts.by_key["clashed"] == {"seed": 2}


def test_a_batch_gets_the_fields_of_its_rows() -> None:
    sink = MemorySink()
    node = ConstantFields({"seed": 3, "run": "a"})
    node.connect(sink)
    with pytest.warns(UserWarning, match="'run' is already a key of the record"):
        node.write_batch({"x": np.arange(3), "run": ["b", "b", "c"]})
    assert sink.records == [
        {"seed": 3, "x": 0, "run": "b"}, {"seed": 3, "x": 1, "run": "b"},
        {"seed": 3, "x": 2, "run": "c"},
    ]
    assert node.counts["clashed"] == 3


def test_later_changes_to_a_mutable_constant_do_not_reach_the_records() -> None:
    tags = ["ppo"]
    sink = MemorySink()
    with Pipeline("c").constant(tags=tags).to(sink) as p:
        tags.append("changed")
        p.write({"x": 1})
    assert sink.records == [{"tags": ["ppo"], "x": 1}]


@pytest.mark.parametrize("fields", [{}, {1: "x"}])
def test_bad_fields_are_refused(fields: dict[object, object]) -> None:
    with pytest.raises(ValueError, match="field"):
        ConstantFields(fields)  # type: ignore[arg-type]


def test_timestamp_adds_the_wall_clock_time_last() -> None:
    sink = MemorySink()
    before = time.time()
    with Pipeline("t").timestamp().to(sink) as p:
        p.write({"x": 1})
    after = time.time()
    (record,) = sink.records
    assert list(record) == ["x", "wall_time"] and before <= record["wall_time"] <= after


def test_timestamp_takes_a_clock_and_a_key_rows_and_batches() -> None:
    clock = FakeClock()
    sink = MemorySink()
    pipe = Pipeline("t").timestamp("time", clock=clock).to(sink)
    pipe.write({"x": 1})
    clock.advance(5.0)
    pipe.write_batch({"x": [2, 3]})
    with pytest.warns(UserWarning, match="'time' is already a key of the record"):
        pipe.write({"x": 4, "time": "mine"})
    pipe.close()
    assert sink.records == [
        {"x": 1, "time": 1000.0}, {"x": 2, "time": 1005.0}, {"x": 3, "time": 1005.0},
        {"x": 4, "time": "mine"},
    ]
    assert pipe.steps[0].counts["clashed"] == 1
    assert repr(Timestamp()) == "Timestamp('wall_time')"
