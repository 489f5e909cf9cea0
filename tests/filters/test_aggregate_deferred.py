"""AggregateFilter's row path against a reference of its documented semantics, on streams
made to break a writer that keeps records and folds them into columns later: key tuples
that change mid-window, values switching between numbers and text, None, NaN, infinities,
bools, numpy scalars (a float subclass among them), huge ints, 0-d arrays, mappings that
are not dicts, records and arrays changed by the caller after `write`, flushes and
checkpoints mid-window, windows by count, time and step, through a node and a Pipeline."""

from __future__ import annotations

import copy
import math
import re
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import AggregateFilter
from filters.statistics import window_statistics
from pipeline import Pipeline
from pipeline.core.names import stat_name
from pipeline.core.values import to_float
from sinks import MemorySink
from tests.conftest import FakeClock
from tests.test_fast_paths import same

STATS = ("mean", "std", "median", "max", "min", "sum", "count")
KEYS: list[Any] = ["r", "loss", "x", "steps", 7, "note"]
REGEX = "r|loss|^7$|x"


def _huge() -> int:
    return 10**400


values = st.one_of(
    st.floats(),  # NaN, infinities
    st.floats(-1e6, 1e6),
    st.none(),
    st.integers(-(10**20), 10**20),
    st.booleans(),
    st.sampled_from(
        [
            "text",
            "",
            np.float64(1.5),
            np.float64("nan"),
            np.float32(0.25),
            np.int64(-3),
            np.bool_(True),
            -(10**400),
            10**400,
            [1.0],
            {"a": 1},
            b"raw",
            math.inf,
            -math.inf,
        ]
    ),
    st.builds(lambda x: np.array(x), st.floats(-10, 10)),  # 0-d: changed in place later
)

Op = tuple[str, Any]


@st.composite
def streams(draw: st.DrawFn) -> list[Op]:
    """Writes over a few key tuples (each a sub-sequence of KEYS, so the same tuple comes
    back often: the fast path), with flushes, checkpoints and the caller's changes to the
    last record written in between."""
    tuples = draw(
        st.lists(
            st.lists(st.booleans(), min_size=len(KEYS), max_size=len(KEYS)), min_size=1, max_size=3
        )
    )
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, 60))):
        kind = draw(st.sampled_from(["write"] * 8 + ["flush", "checkpoint", "mutate"]))
        if kind == "write":
            flags = draw(st.sampled_from(tuples))
            record = {key: draw(values) for key, flag in zip(KEYS, flags, strict=True) if flag}
            same_value = draw(st.sampled_from([None, 1.0, 2.5, "t"]))
            if same_value is not None and draw(st.booleans()):  # many records alike
                record = {key: same_value for key in record}
            mapping = draw(st.sampled_from(["dict"] * 6 + ["ordered", "proxy", "default"]))
            ops.append(("write", (mapping, record)))
        else:
            ops.append((kind, None))
    return ops


def _as_mapping(kind: str, record: dict[Any, Any]) -> Mapping[Any, Any]:
    record = copy.deepcopy(record)  # the caller's own: changed later, the stream's never
    if kind == "ordered":
        return OrderedDict(record)
    if kind == "proxy":
        return MappingProxyType(dict(record))
    if kind == "default":
        return defaultdict(lambda: 0.0, record)
    return dict(record)


def _mutate(record: Any) -> None:
    """What a caller may do to a record after writing it: change its values in place,
    replace, add and delete keys."""
    for value in list(record.values()):
        if isinstance(value, np.ndarray):
            value[...] = 1e6
        elif isinstance(value, list):
            value.append(2.0)
        elif isinstance(value, dict):
            value["b"] = 2
    if isinstance(record, MappingProxyType):
        return
    for key in list(record)[:2]:
        record[key] = 123.0
    record["r"] = "changed"
    record.pop("loss", None)
    record["new key"] = 5.0


class Reference:
    """The documented window: per key, the real numbers (`to_float`) in order, NaN left out
    and counted, None no value, a matching key's non-number passed as its last value and
    counted; other keys' last values; keys in the order they first had a value."""

    def __init__(self, regex: str, every: int | None) -> None:
        self.regex, self.every = regex, every
        self.out: list[dict[Any, Any]] = []
        self.counts: dict[str, dict[Any, int]] = {"nan": {}, "skipped": {}}
        self.warned: list[tuple[str, Any]] = []
        self._reset()

    def _reset(self) -> None:
        self.order: dict[Any, None] = {}
        self.numbers: dict[Any, list[float]] = {}
        self.last: dict[Any, Any] = {}
        self.writes = 0

    def _note(self, reason: str, key: Any) -> None:
        per_key = self.counts[reason]
        if key not in per_key:
            self.warned.append((reason, key))
        per_key[key] = per_key.get(key, 0) + 1

    def write(self, record: Mapping[Any, Any]) -> None:
        for key, value in record.items():
            if value is None:
                continue
            matching = re.search(self.regex, str(key)) is not None
            x = to_float(value) if matching else None
            if matching and x is not None:
                self.order.setdefault(key)
                self.numbers.setdefault(key, [])
                if x == x:
                    self.numbers[key].append(x)
                else:
                    self._note("nan", key)
            else:
                self.order.setdefault(key)
                self.last[key] = copy.deepcopy(value)
                if matching:
                    self._note("skipped", key)
        self.writes += 1
        if self.every is not None and self.writes >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.writes:
            return
        out: dict[Any, Any] = {}
        for key in self.order:
            if key in self.numbers:
                xs = self.numbers[key]
                stats = (
                    window_statistics(np.array(xs, dtype=np.float64), STATS)
                    if xs
                    else [
                        0 if stat == "count" else 0.0 if stat == "sum" else math.nan
                        for stat in STATS
                    ]
                )
                for stat, value in zip(STATS, stats, strict=True):
                    name = stat_name(key, stat)
                    if name not in self.last and name not in out:  # no clash in KEYS
                        out[name] = value
            if key in self.last:
                out[key] = self.last[key]
        self.out.append(out)
        self._reset()


def run(
    ops: list[Op], every: int | None, through_pipeline: bool, checkpoints: bool = True
) -> tuple[list[Any], Any, list[tuple[int, str]]]:
    """The stream through a node (or a Pipeline); a checkpoint moves the window to a fresh
    graph. Returns its records, its counts and its warnings (write index, message)."""
    sinks: list[MemorySink] = []

    def build() -> tuple[Any, AggregateFilter]:
        sink = MemorySink()
        sinks.append(sink)
        if through_pipeline:
            pipe = (
                Pipeline("p", close_at_exit=False)
                .aggregate(REGEX, every=every, stats=STATS)
                .to(sink)
            )
            step = pipe.steps[0]
            assert isinstance(step, AggregateFilter)
            return pipe, step
        node = AggregateFilter(REGEX, every=every, stats=STATS)
        node.connect(sink)
        return node, node

    head, node = build()
    caught_at: list[tuple[int, str]] = []
    last_record: Any = None
    for index, (kind, argument) in enumerate(ops):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if kind == "write":
                last_record = _as_mapping(*argument)
                head.write(last_record)
            elif kind == "flush":
                head.flush()
            elif kind == "mutate" and last_record is not None:
                _mutate(last_record)
            elif kind == "checkpoint" and checkpoints:
                state = head.state_dict()
                head, node = build()
                head.load_state_dict(state)
        caught_at += [
            (index, str(w.message))
            for w in caught  # not numpy's overflows
            if str(w.message).startswith("AggregateFilter")
        ]
    head.close()
    return sinks[-1].records, node.counts, caught_at  # a MemorySink's state holds its records


def expected(ops: list[Op], every: int | None) -> tuple[list[Any], Reference]:
    reference = Reference(REGEX, every)
    for kind, argument in ops:
        if kind == "write":
            reference.write(copy.deepcopy(argument[1]))
        elif kind == "flush":
            reference.flush()
    reference.flush()
    return reference.out, reference


def assert_like_reference(node: Any, sink: MemorySink, records: list[Any],
                          every: int | None) -> None:
    """Writes `records` to `node` (an aggregate, or a graph ending in `sink`) and to the
    reference, closes both, and asserts the same windows."""
    reference = Reference(REGEX, every)
    for record in records:
        node.write(record)
        reference.write(record)
    node.close()
    reference.flush()
    assert same(sink.records, reference.out)


@settings(max_examples=150, deadline=None)
@given(ops=streams(), every=st.sampled_from([None, 1, 2, 3, 7]), through_pipeline=st.booleans())
def test_windows_equal_the_reference_whatever_the_caller_does_after_write(
    ops: list[Op], every: int | None, through_pipeline: bool
) -> None:
    out, reference = expected(ops, every)  # first: the stream's arrays change in place later
    records, counts, _ = run(ops, every, through_pipeline)
    assert len(records) == len(out)
    for got, want in zip(records, out, strict=True):
        assert same(got, want), (got, want)
    for reason in ("nan", "skipped"):
        assert dict(counts.by_key.get(reason, {})) == {
            str(key): n for key, n in reference.counts[reason].items()
        }
        assert counts[reason] == sum(reference.counts[reason].values())


@settings(max_examples=80, deadline=None)
@given(ops=streams(), every=st.sampled_from([None, 2, 5]), through_pipeline=st.booleans())
def test_each_warning_comes_from_the_write_that_caused_it(
    ops: list[Op], every: int | None, through_pipeline: bool
) -> None:
    writes = [index for index, (kind, _) in enumerate(ops) if kind == "write"]
    reference = Reference(REGEX, every)
    want: list[tuple[int, str, str]] = []
    for index in writes:
        before = len(reference.warned)
        reference.write(copy.deepcopy(ops[index][1][1]))
        want += [(index, reason, repr(key)) for reason, key in reference.warned[before:]]
    _, _, caught = run(ops, every, through_pipeline, checkpoints=False)
    got = [
        (index, "nan" if "is NaN" in message else "skipped", message) for index, message in caught
    ]
    assert [(index, reason) for index, reason, _ in got] == [
        (index, reason) for index, reason, _ in want
    ]
    for (_, _, message), (_, _, key) in zip(got, want, strict=True):
        assert message.startswith(f"AggregateFilter: {key}")


@settings(max_examples=60, deadline=None)
@given(
    ops=streams(),
    seconds=st.sampled_from([1.0, 2.5]),
    steps=st.lists(st.floats(0, 3), min_size=60, max_size=60),
)
def test_windows_by_time_equal_the_same_windows_cut_by_flush(
    ops: list[Op], seconds: float, steps: list[float]
) -> None:
    """A window by time is the records written before the clock passed `seconds` since the
    window's first write, checked at each write: the same as flushing there by hand."""
    clock = FakeClock()
    timed = AggregateFilter(REGEX, seconds=seconds, stats=STATS, clock=clock)
    by_hand = AggregateFilter(REGEX, stats=STATS)
    sinks = MemorySink(), MemorySink()
    timed.connect(sinks[0])
    by_hand.connect(sinks[1])
    start = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for (kind, argument), step in zip(ops, steps, strict=False):
            clock.advance(step)
            if kind != "write":
                continue
            timed.write(dict(argument[1]))
            by_hand.write(dict(argument[1]))
            start = clock.now if start is None else start
            if clock.now - start >= seconds:
                by_hand.flush()
                start = None
        timed.close()
        by_hand.close()
    assert len(sinks[0].records) == len(sinks[1].records)
    for got, want in zip(sinks[0].records, sinks[1].records, strict=True):
        assert same(got, want)


def test_a_record_changed_after_write_leaves_the_window_as_written() -> None:
    sink = MemorySink()
    node = AggregateFilter("x", stats=("mean", "count")).connect(sink)
    record: dict[str, Any] = {"x": 1.0, "label": "a"}
    scalar = np.array(3.0)
    second: dict[str, Any] = {"x": scalar, "label": np.array([1, 2])}
    node.write(record)
    node.write(second)
    node.write(record)
    record["x"] = 100.0
    record["label"] = "z"
    scalar[...] = 1000.0
    second["label"][0] = 9
    node.flush()
    assert same(sink.records, [{"x_mean": 5 / 3, "x_count": 3, "label": "a"}])


def test_a_defaultdict_record_is_read_not_filled() -> None:
    node = AggregateFilter("x", stats=("count",)).connect(MemorySink())
    node.write({"x": 1.0, "y": 2.0})
    record: defaultdict[str, float] = defaultdict(float, {"x": 1.0, "z": 2.0})
    node.write(record)
    assert dict(record) == {"x": 1.0, "z": 2.0}


@pytest.mark.parametrize("every", [None, 3])
def test_a_checkpoint_mid_window_carries_the_records_not_yet_in_columns(
    every: int | None,
) -> None:
    rows = [{"r": float(i), "loss": i / 3, "n": i} for i in range(8)]
    straight = MemorySink()
    node = AggregateFilter("r|loss", every=every).connect(straight)
    for row in rows:
        node.write(row)
    node.close()
    resumed = MemorySink()
    first = AggregateFilter("r|loss", every=every).connect(MemorySink())
    for row in rows[:5]:
        first.write(row)
    state = first.state_dict()
    second = AggregateFilter("r|loss", every=every).connect(resumed)
    second.load_state_dict(state)
    for row in rows[5:]:
        second.write(row)
    second.close()
    assert same(resumed.records, straight.records)  # a MemorySink's state holds its records


def test_a_long_window_keeps_about_eight_bytes_per_value() -> None:
    """Records kept for a later fold are bounded: the window holds its values as floats."""
    import tracemalloc

    node = AggregateFilter("r|loss").connect(MemorySink())
    rows = [{"r": float(i) * 1.5, "loss": float(i) / 7, "n": i} for i in range(60_000)]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for row in rows:
            node.write({key: value * 1.0 for key, value in row.items()})
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (after - before) / 120_000 < 12


def test_more_key_tuples_than_plans_are_kept_across_windows() -> None:
    """Plans outlive their window up to a limit; past it they are dropped and made again,
    with the values they kept folded first."""
    records = [{f"r{i % 1100}": float(i), "x": i % 7 * 0.5, "n": i} for i in range(3000)]
    records = [record for record in records for _ in range(2)]  # each tuple twice: a plan
    sink = MemorySink()
    assert_like_reference(AggregateFilter(REGEX, every=500, stats=STATS).connect(sink), sink,
                          records, 500)


def test_seconds_set_after_construction_apply_from_the_next_write() -> None:
    clock = FakeClock()
    sink = MemorySink()
    node = AggregateFilter("x", stats=("count",), clock=clock)
    node.connect(sink)
    for _ in range(3):
        node.write({"x": 1.0, "y": 2})
    node.seconds = 2.0  # the open window began before: it is due at the next write
    node.write({"x": 1.0, "y": 3})
    for _ in range(2):
        node.write({"x": 1.0, "y": 4})
    clock.advance(2.0)
    node.write({"x": 1.0, "y": 5})
    node.close()
    assert sink.records == [{"x_count": 4, "y": 3}, {"x_count": 3, "y": 5}]
