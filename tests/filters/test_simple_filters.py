"""NoneFilter, TimeFilter, EveryNFilter, Dispatcher and the key filters."""

from __future__ import annotations

import pytest

from filters import (
    Dispatcher,
    DropKeys,
    EveryNFilter,
    FlattenFilter,
    KeepKeys,
    NoneFilter,
    PrefixKeys,
    RenameKeys,
    TimeFilter,
)
from pipeline import Node
from sinks import MemorySink
from tests.conftest import FakeClock


def run(node: Node, *records: dict[str, object]) -> list[dict[str, object]]:
    sink = MemorySink()
    node.connect(sink)
    for record in records:
        node.write(record)
    return sink.records


def test_none_filter_drops_none_values_and_never_mutates_its_input() -> None:
    record = {"a": None, "b": 0, "c": False}
    assert run(NoneFilter(), record, {"x": None}) == [{"b": 0, "c": False}, {}]
    assert record == {"a": None, "b": 0, "c": False}


def test_none_filter_passes_a_record_without_none_as_the_same_object() -> None:
    sink = MemorySink()
    seen: list[object] = []
    node = NoneFilter()
    node.connect(sink)
    node.emit = seen.append  # type: ignore[method-assign]
    record = {"a": 1}
    node.write(record)
    assert seen[0] is record


def test_time_filter_passes_the_first_record_then_one_per_period(clock: FakeClock) -> None:
    node = TimeFilter(1.0, clock=clock)
    sink = MemorySink()
    node.connect(sink)
    for i in range(5):
        node.write({"i": i})
        clock.advance(0.5)
    assert [r["i"] for r in sink.records] == [0, 2, 4] and node.dropped == 2


def test_time_filter_zero_passes_everything() -> None:
    assert len(run(TimeFilter(0), *({"i": i} for i in range(10)))) == 10


def test_time_filter_keep_last_emits_the_held_record_on_flush(clock: FakeClock) -> None:
    sink = MemorySink()
    node = TimeFilter(10, keep_last=True, clock=clock)
    node.connect(sink)
    for i in range(3):
        node.write({"i": i})
    node.close()
    assert [r["i"] for r in sink.records] == [0, 2] and node.dropped == 1


@pytest.mark.parametrize("by", ["rows", "batch"])
def test_time_filter_keep_last_holds_the_last_record_as_written(clock: FakeClock, by: str) -> None:
    # SB3 passes its list of info dicts and reuses it: the held record must not follow it.
    sink = MemorySink()
    node = TimeFilter(10, keep_last=True, clock=clock).connect(sink)
    infos = [[{"episode": {"r": 0.0}}], [{"episode": {"r": 1.0}}]]
    if by == "rows":
        for step, info in enumerate(infos):
            node.write({"step": step, "infos": info})
    else:
        node.write_batch({"step": [0, 1], "infos": infos})
    infos[1][0]["episode"]["r"] = 99.0
    infos[1].append({"episode": {"r": 98.0}})
    node.flush()
    assert sink.records[-1] == {"step": 1, "infos": [{"episode": {"r": 1.0}}]}


def test_every_n_passes_the_first_and_every_nth() -> None:
    records = run(EveryNFilter(3), *({"i": i} for i in range(7)))
    assert [r["i"] for r in records] == [0, 3, 6]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_every_n_needs_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="n must"):
        EveryNFilter(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, "1"])
def test_time_filter_needs_a_non_negative_number(bad: object) -> None:
    with pytest.raises(ValueError, match="time_delta"):
        TimeFilter(bad)  # type: ignore[arg-type]


def test_dispatcher_sends_every_record_to_every_child() -> None:
    a, b = MemorySink(), MemorySink()
    Dispatcher(a, b).write({"x": 1})
    assert a.records == b.records == [{"x": 1}]


def test_keep_and_drop_keys() -> None:
    record = {"train/return": 1, "train/loss": 2, "steps": 3}
    assert run(KeepKeys("^train/"), record) == [{"train/return": 1, "train/loss": 2}]
    assert run(DropKeys("loss"), record) == [{"train/return": 1, "steps": 3}]


def test_prefix_keys() -> None:
    assert run(PrefixKeys("eval"), {"return": 1}) == [{"eval/return": 1}]
    assert run(PrefixKeys("eval", sep="_"), {"return": 1}) == [{"eval_return": 1}]
    with pytest.raises(ValueError):
        PrefixKeys("")


def test_rename_keys_warns_when_a_name_is_taken() -> None:
    assert run(RenameKeys({"r": "return"}), {"r": 1, "s": 2}) == [{"return": 1, "s": 2}]
    node = RenameKeys({"a": "b"})
    with pytest.warns(UserWarning, match="overwrites"):
        assert run(node, {"a": 1, "b": 2}) == [{"b": 2}]
    assert node.overwritten == 1


def test_flatten_nested_mappings_to_paths() -> None:
    record = {"info": {"learner": {"loss": 1.0}, "n": 2}, "steps": 3, "hist": [1, 2]}
    assert run(FlattenFilter(), record) == [
        {"info/learner/loss": 1.0, "info/n": 2, "steps": 3, "hist": [1, 2]}
    ]
    assert run(FlattenFilter(sep="."), {"a": {1: 2}}) == [{"a.1": 2}]


def test_flatten_collisions_warn_and_count() -> None:
    node = FlattenFilter()
    with pytest.warns(UserWarning, match="the earlier is kept"):
        assert run(node, {"a/b": 1, "a": {"b": 2}}) == [{"a/b": 1}]
    assert node.overwritten == 1
