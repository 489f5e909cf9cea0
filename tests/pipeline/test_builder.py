"""The fluent builder: chains read in data-flow order and end in sinks."""

from __future__ import annotations

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
from pipeline import ClosedError, Node, Pipeline
from pipeline.core import LoggerSink
from sinks import CsvSink, MemorySink
from tests.conftest import FakeClock


def test_builder_order_is_data_flow_order() -> None:
    sink = MemorySink()
    pipe = (
        Pipeline("train")
        .flatten()
        .drop_none()
        .keep("return|steps")
        .drop("steps")
        .rename({"return": "ret"})
        .smooth("ret", coeff=0.5)
        .aggregate("ret", every=2)
        .throttle(0)
        .every(1)
        .prefix("train")
        .to(sink)
    )
    kinds = [type(node) for node in pipe.steps]
    assert kinds == [
        FlattenFilter, NoneFilter, KeepKeys, DropKeys, RenameKeys, SmoothingFilter,
        AggregateFilter, TimeFilter, EveryNFilter, PrefixKeys, Dispatcher, MemorySink,
    ]
    pipe.write({"return": 1.0, "steps": 1, "noise": None})
    pipe.write({"return": 3.0, "steps": 2})
    # smoothed: 1.0, then c_1 = 0.1 * 0.5 -> 0.95 * 3.0 + 0.05 * 1.0 = 2.9
    assert sink.records == [
        pytest.approx({
            "train/ret_mean": 2.0, "train/ret_std": 1.0, "train/ret_median": 2.0,
            "train/ret_max": 3.0, "train/ret_min": 1.0,
            "train/ret_smoothed_0.5_mean": 1.95, "train/ret_smoothed_0.5_std": 0.95,
            "train/ret_smoothed_0.5_median": 1.95,
            "train/ret_smoothed_0.5_max": 2.9, "train/ret_smoothed_0.5_min": 1.0,
        })
    ]


def test_every_builds_a_gate_or_a_throttle() -> None:
    by_count = Pipeline().every(3).to(MemorySink())
    by_time = Pipeline().every(seconds=1.0).to(MemorySink())
    assert isinstance(by_count.steps[0], EveryNFilter)
    assert isinstance(by_time.steps[0], TimeFilter)
    with pytest.raises(ValueError):
        Pipeline().every(3, seconds=1.0)


def test_then_appends_any_node() -> None:
    sink = MemorySink()
    pipe = Pipeline().then(NoneFilter()).to(sink)
    pipe.write({"a": None, "b": 2})
    assert sink.records == [{"b": 2}]


def test_a_pipeline_without_sinks_refuses_records() -> None:
    with pytest.raises(RuntimeError, match=r"\.to\("):
        Pipeline("x").drop_none().write({"a": 1})


def test_nothing_can_be_appended_after_to() -> None:
    pipe = Pipeline().to(MemorySink())
    with pytest.raises(ValueError, match="already ends"):
        pipe.drop_none()


def test_to_needs_targets_and_ended_chains() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Pipeline().to()
    with pytest.raises(ValueError, match="does not end"):
        Pipeline().to(Pipeline("branch").drop_none())


def test_write_after_close_raises_and_close_twice_is_harmless() -> None:
    pipe = Pipeline("p").to(MemorySink())
    pipe.close()
    pipe.close()
    with pytest.raises(ClosedError, match="closed"):
        pipe.write({"a": 1})


def test_branches_fan_out_and_a_shared_sink_is_a_join_closed_once() -> None:
    shared = MemorySink()
    raw = Pipeline("raw").to(shared)
    smoothed = Pipeline("smoothed").smooth("r", coeff=0.5).keep("smoothed").to(shared)
    closes: list[Node] = []
    original = shared.on_close
    shared.on_close = lambda: (closes.append(shared), original())  # type: ignore[method-assign]
    pipe = Pipeline("root").to(raw, smoothed)
    pipe.write({"r": 2.0})
    pipe.close()
    assert shared.records == [{"r": 2.0}, {"r_smoothed_0.5": 2.0}]
    assert closes == [shared]


def test_the_aggregates_last_window_reaches_sinks_before_they_close() -> None:
    sink = MemorySink()
    with Pipeline().aggregate("x", every=100).to(sink) as pipe:
        pipe.write({"x": 1.0})
        pipe.write({"x": 3.0})
    assert sink.records[0]["x_mean"] == 2.0


def test_write_batch_through_a_pipeline_equals_rows_one_by_one() -> None:
    by_rows, by_batch = MemorySink(), MemorySink()
    rows = [{"r": float(i), "steps": i} for i in range(10)]
    a = Pipeline().smooth("r").aggregate("r", every=4).to(by_rows)
    b = Pipeline().smooth("r").aggregate("r", every=4).to(by_batch)
    for row in rows:
        a.write(row)
    b.write_batch({"r": [row["r"] for row in rows], "steps": [row["steps"] for row in rows]})
    a.close()
    b.close()
    assert by_rows.records == by_batch.records


def test_describe_shows_the_graph_in_flow_order() -> None:
    text = Pipeline("t").drop_none().to(MemorySink()).describe()
    assert text.splitlines()[0] == "Pipeline('t')"
    assert "NoneFilter" in text.splitlines()[1]


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        (MemorySink, "the class MemorySink itself: pass MemorySink(...)"),
        (CsvSink, "the class CsvSink itself: pass CsvSink(...)"),
        ("runs/train.csv", "got str"),
        (42, "got int"),
    ],
    ids=["MemorySink class", "CsvSink class", "a path", "an int"],
)
def test_a_target_that_cannot_take_records_is_refused_when_the_chain_ends(
    target: object, shown: str
) -> None:
    pipe = Pipeline("t").drop_none()
    with pytest.raises(TypeError, match="write\\(record\\)") as caught:
        pipe.to(MemorySink(), target)  # type: ignore[arg-type]
    assert str(caught.value).endswith(shown)
    sink = MemorySink()
    pipe.to(sink)  # the chain is as it was before the refused .to(...)
    pipe.write({"a": 1})
    assert sink.records == [{"a": 1}]


def test_a_logger_sink_refuses_a_class() -> None:
    with pytest.raises(TypeError, match="pass MemorySink"):
        LoggerSink(MemorySink)


@pytest.mark.parametrize("keep_last", [False, True])
def test_throttle_keeps_the_last_held_back_record_for_the_flush_when_asked(
    clock: FakeClock, keep_last: bool
) -> None:
    sink = MemorySink()
    pipe = Pipeline("t").throttle(10.0, keep_last=keep_last).to(sink)
    throttle = pipe.steps[0]
    assert isinstance(throttle, TimeFilter) and throttle.keep_last is keep_last
    throttle._clock = clock
    for step in range(3):
        pipe.write({"step": step})
    pipe.close()
    assert [record["step"] for record in sink.records] == ([0, 2] if keep_last else [0])
