"""AggregateFilter's plans keep values in lists and fold them into the window's columns every
1,024 writes and before anything reads the window: streams long enough to cross those folds,
with windows of 1, 1,023, 1,024 and 1,025 records, values that change type, key tuples that
change order or keys, flushes, checkpoints, batches and changes by the caller placed at the
fold and around it, give the windows of the documented reference; so do more key tuples
than plans are kept for, windows by time whose length changes, windows by step, and
several threads writing one Pipeline."""

from __future__ import annotations

import copy
import math
import threading
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import AggregateFilter
from filters.aggregate import _FOLD_EVERY
from filters.statistics import window_statistics
from pipeline import Pipeline
from sinks import MemorySink
from tests.conftest import FakeClock
from tests.filters.test_aggregate_deferred import (
    STATS,
    Reference,
    assert_like_reference,
    same,
)

REGEX = "r|loss|^7$|x"
BASE = ("r", "loss", "n", "note")

switches = st.sampled_from(
    [
        2,
        True,
        np.float64(2.5),
        np.int64(-4),
        np.float32(0.5),
        "text",
        None,
        math.nan,
        np.float64("nan"),
        10**400,
        -0.0,
        math.inf,
        [1.0],
        np.array(3.0),
    ]
)
near_folds = st.one_of(
    st.integers(_FOLD_EVERY - 3, _FOLD_EVERY + 3),
    st.integers(2 * _FOLD_EVERY - 3, 2 * _FOLD_EVERY + 3),
    st.integers(0, 2 * _FOLD_EVERY + 60),
)
events = st.lists(
    st.tuples(
        near_folds,
        st.sampled_from(
            [
                "switch",
                "reorder",
                "drop key",
                "add key",
                "flush",
                "checkpoint",
                "mutate",
                "batch",
                "ordered dict",
                "empty",
            ]
        ),
        switches,
        st.sampled_from(BASE),
    ),
    max_size=12,
)


def base_record(i: int) -> dict[str, Any]:
    return {"r": i * 0.5, "loss": 1.0 / (i + 1), "n": i, "note": "a"}


def build(every: int | None, through_pipeline: bool, sinks: list[MemorySink]) -> Any:
    sink = MemorySink()
    sinks.append(sink)
    if through_pipeline:
        return Pipeline(close_at_exit=False).aggregate(REGEX, every=every, stats=STATS).to(sink)
    node = AggregateFilter(REGEX, every=every, stats=STATS)
    node.connect(sink)
    return node


def run_stream(
    every: int | None, through_pipeline: bool, length: int, plan: list[tuple[Any, ...]]
) -> tuple[list[Any], list[Any]]:
    """The stream's windows through the node (or a Pipeline) and through the reference."""
    at: dict[int, list[tuple[Any, ...]]] = {}
    for position, *event in plan:
        at.setdefault(position, []).append(tuple(event))
    sinks: list[MemorySink] = []
    head = build(every, through_pipeline, sinks)
    reference = Reference(REGEX, every)
    last: Any = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(length):
            record: Any = base_record(i)
            for kind, value, key in at.get(i, []):
                if kind == "switch":
                    record[key] = copy.deepcopy(value)
                elif kind == "reorder":
                    record = dict(reversed(list(record.items())))
                elif kind == "drop key":
                    record.pop(key, None)
                elif kind == "add key":
                    record[f"x{i % 3}"] = 1.25
                elif kind == "flush":
                    head.flush()
                    reference.flush()
                elif kind == "checkpoint":
                    state = head.state_dict()
                    head = build(every, through_pipeline, sinks)
                    head.load_state_dict(state)
                elif kind == "mutate" and isinstance(last, dict):
                    for item in last.values():
                        if isinstance(item, np.ndarray):
                            item[...] = 1e9
                        elif isinstance(item, list):
                            item.append(7.0)
                    last["r"] = "changed after write"
                elif kind == "batch":
                    rows = [base_record(10_000 + j) for j in range(3)]
                    batch: dict[str, Any] = {
                        key: np.array([row[key] for row in rows]) for key in ("r", "n")
                    }
                    batch["note"] = [row["note"] for row in rows]
                    head.write_batch(batch)
                    for row in rows:
                        reference.write(
                            {"r": row["r"], "n": np.int64(row["n"]), "note": row["note"]}
                        )
                elif kind == "ordered dict":
                    record = OrderedDict(record)
                elif kind == "empty":
                    record = {}
            reference.write(copy.deepcopy(record))
            head.write(record)
            last = record
        head.close()
    reference.flush()
    return sinks[-1].records, reference.out


@settings(max_examples=40, deadline=None)
@given(
    every=st.sampled_from([None, 1, _FOLD_EVERY - 1, _FOLD_EVERY, _FOLD_EVERY + 1]),
    through_pipeline=st.booleans(),
    length=st.integers(_FOLD_EVERY - 2, 2 * _FOLD_EVERY + 60),
    plan=events,
)
def test_windows_across_folds_equal_the_reference(
    every: int | None, through_pipeline: bool, length: int, plan: list[tuple[Any, ...]]
) -> None:
    got, want = run_stream(every, through_pipeline, length, plan)
    assert len(got) == len(want)
    for index, (a, b) in enumerate(zip(got, want, strict=True)):
        assert same(a, b), (index, a, b)


@pytest.mark.parametrize("every", [None, _FOLD_EVERY - 1, _FOLD_EVERY, _FOLD_EVERY + 1])
@pytest.mark.parametrize("kind", ["switch", "flush", "checkpoint", "batch", "reorder"])
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_an_event_at_the_fold_itself(every: int | None, kind: str, offset: int) -> None:
    position = _FOLD_EVERY + offset
    plan = [(position, kind, "text", "r"), (position, kind, None, "note")]
    got, want = run_stream(every, True, 2 * _FOLD_EVERY + 5, plan)
    assert same(got, want)


def test_more_key_tuples_than_plans_in_one_window_and_in_several_orders() -> None:
    """1,300 key tuples (each met in two orders and twice, so each makes a plan) in one
    window, then again in windows of 700: plans are dropped and made again with no value
    lost or doubled."""
    records = []
    for i in range(1300):
        record = {"r": float(i), f"k{i}": i, "x": i * 0.25}
        records += [record, record, dict(reversed(list(record.items())))]
    for every in (None, 700):
        sink = MemorySink()
        node = Pipeline(close_at_exit=False).aggregate(REGEX, every=every, stats=STATS).to(sink)
        assert_like_reference(node, sink, records, every)


def test_every_set_below_the_writes_of_the_open_window_emits_it_at_the_next_write() -> None:
    sink = MemorySink()
    node = AggregateFilter("r", stats=("count", "sum"))
    node.connect(sink)
    for i in range(1500):
        node.write({"r": 1.0, "n": i})
    node.every = 10
    node.write({"r": 1.0, "n": 1500})
    for i in range(10):
        node.write({"r": 2.0, "n": i})
    node.every = None
    for i in range(2000):
        node.write({"r": 3.0, "n": i})
    node.close()
    assert sink.records == [
        {"r_count": 1501, "r_sum": 1501.0, "n": 1500},
        {"r_count": 10, "r_sum": 20.0, "n": 9},
        {"r_count": 2000, "r_sum": 6000.0, "n": 1999},
    ]


def test_seconds_changed_between_windows_cut_the_windows_it_says() -> None:
    """Windows by time whose length is set anew (from a number, from None, to None) past a
    fold: each window is the records written until its length passed."""
    clock = FakeClock()
    sink = MemorySink()
    node = AggregateFilter("r", seconds=1.0, stats=("count", "sum"), clock=clock)
    node.connect(sink)
    expected = []

    def window(n: int, value: float, step: float) -> None:
        for i in range(n):
            node.write({"r": value, "i": i})
            clock.advance(step)

    window(1500, 1.0, 0.0)  # past the fold, no time passes
    clock.advance(1.0)
    window(1, 1.0, 0.0)  # due: emitted with it
    expected.append({"r_count": 1501, "r_sum": 1501.0, "i": 0})
    node.seconds = 5.0
    window(2100, 2.0, 0.001)  # 2.1 s: not due
    clock.advance(3.0)
    window(1, 2.0, 0.0)
    expected.append({"r_count": 2101, "r_sum": 4202.0, "i": 0})
    node.seconds = None
    window(3000, 3.0, 1.0)  # no time limit
    node.flush()
    expected.append({"r_count": 3000, "r_sum": 9000.0, "i": 2999})
    node.seconds = 0.5
    window(3, 4.0, 0.0)
    clock.advance(0.5)
    window(1, 4.0, 0.0)
    expected.append({"r_count": 4, "r_sum": 16.0, "i": 0})
    node.close()
    assert sink.records == expected


def test_windows_by_step_across_folds_equal_windows_cut_by_flush() -> None:
    """every_steps=N is a window per block of N steps: the same as flushing when a record of
    a later block arrives, with the values and last values of plans folded first."""
    by_step, by_hand = MemorySink(), MemorySink()
    stepped = AggregateFilter(REGEX, every_steps=1500, stats=STATS).connect(by_step)
    flushed = AggregateFilter(REGEX, stats=STATS).connect(by_hand)
    block = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(5000):
            record: dict[str, Any] = {"steps": step, "r": step * 0.5, "note": f"n{step}"}
            if step % 1024 == 1023:
                record["r"] = "text"
            if step % 700 == 5:
                record = {"note": None, "r": math.nan, "steps": step}
            if step // 1500 != block and block is not None:
                flushed.flush()
            block = step // 1500
            stepped.write(dict(record))
            flushed.write(dict(record))
        stepped.close()
        flushed.close()
    assert same(by_step.records, by_hand.records)


def test_threads_writing_one_pipeline_lose_and_double_nothing() -> None:
    sink = MemorySink()
    pipe = (
        Pipeline(close_at_exit=False)
        .drop_none()
        .smooth("r", coeff=0.9)
        .aggregate("r|x", every=_FOLD_EVERY + 1, stats=("count", "sum"))
        .to(sink)
    )
    writes, threads = 4000, 4

    def work(thread: int) -> None:
        write = pipe.write
        for i in range(writes):
            if i % 97 == 0:  # another key tuple, and a None
                write({"x": float(i), "r": float(thread), "k": None})
            else:
                write({"r": float(thread), "x": float(i), "k": thread})

    workers = [threading.Thread(target=work, args=(thread,)) for thread in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    pipe.close()
    assert sum(record["r_count"] for record in sink.records) == writes * threads
    assert sum(record["r_smoothed_0.9_count"] for record in sink.records) == writes * threads
    assert sum(record["x_sum"] for record in sink.records) == threads * sum(range(writes))
    assert sum(record["r_sum"] for record in sink.records) == writes * sum(range(threads))


finite_or_inf = st.one_of(
    st.floats(allow_nan=False),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, math.inf, -math.inf]),
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(finite_or_inf, min_size=1, max_size=60))
def test_window_statistics_are_numpys(values: list[float]) -> None:
    array = np.array(values, dtype=np.float64)
    got = window_statistics(array.copy(), ("mean", "std", "median", "max", "min", "sum"))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        want = [float(f(array)) for f in (np.mean, np.std, np.median, np.max, np.min, np.sum)]
    assert same(got, want)


@pytest.mark.parametrize("n", [1, 2, 3, 19_999, 20_000, 20_001, 65_536])
def test_window_statistics_median_of_sizes_around_the_fast_path(n: int) -> None:
    rng = np.random.default_rng(n)
    for array in (
        rng.normal(size=n),
        np.repeat(rng.normal(size=3), -(-n // 3))[:n],
        np.sort(rng.normal(size=n))[::-1].copy(),
    ):
        assert window_statistics(array, ("median",)) == [float(np.median(array))]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("seconds", -1),
        ("seconds", 0),
        ("seconds", "2"),
        ("seconds", math.nan),
        ("every", 0),
        ("every", True),
        ("every", 2.5),
        ("every", "3"),
    ],
)
def test_a_bad_window_length_set_on_a_built_aggregate_is_refused_and_changes_nothing(
    name: str, value: Any
) -> None:
    """Set after construction, a bad `every` or `seconds` was taken as it was: the window
    was emitted at once (0, a negative), or each later write raised after buffering its
    record (a text), so that a caller retrying it doubled it."""
    sink = MemorySink()
    node = AggregateFilter("r", stats=("count",)).connect(sink)
    node.write({"r": 1.0})
    with pytest.raises(ValueError, match=name):
        setattr(node, name, value)
    for _ in range(3):
        node.write({"r": 1.0})
    node.close()
    assert sink.records == [{"r_count": 4}]


@pytest.mark.parametrize("name", ["every", "seconds"])
def test_a_window_length_set_on_an_aggregate_by_step_is_refused(name: str) -> None:
    node = AggregateFilter("r", every_steps=10)
    with pytest.raises(ValueError, match="every_steps"):
        setattr(node, name, 5)
    assert (node.every, node.seconds) == (None, None)


@pytest.mark.parametrize("written", [9, 10, 30, 1500])
@pytest.mark.parametrize("length", [1, 5, 10, 25])
def test_a_batch_after_every_was_set_below_the_open_window_gives_what_rows_give(
    written: int, length: int
) -> None:
    """With `every` set lower than the open window's records, a batch's stop came before its
    start: it raised (a reshape of no rows) or emitted empty windows."""
    sinks = MemorySink(), MemorySink()
    by_batch, by_rows = (AggregateFilter("r", stats=("count", "sum")) for _ in sinks)
    for node, sink in zip((by_batch, by_rows), sinks, strict=True):
        node.connect(sink)
        for i in range(written):
            node.write({"r": 1.0, "n": i})
        node.every = 10
    columns = {"r": np.arange(length, dtype=np.float64), "n": np.arange(length)}
    by_batch.write_batch(columns)
    for i in range(length):
        by_rows.write({"r": float(i), "n": np.int64(i)})
    by_batch.close()
    by_rows.close()
    assert same(sinks[0].records, sinks[1].records)
    assert sum(record["r_count"] for record in sinks[0].records) == written + length


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("written", [3, 4, _FOLD_EVERY + 3])
def test_a_copied_aggregate_windows_its_own_records_and_leaves_the_original_as_it_was(
    how: str, written: int
) -> None:
    """Plans outlive their window and are functions made for their node: a deep copy took
    them as they were and wrote its records into the original's lists and counts (whose next
    flush raised KeyError), and pickling a node that had emitted a window failed."""
    import pickle

    original = AggregateFilter("r", every=4, stats=("count", "sum"))
    original.connect(MemorySink())
    for i in range(written):
        original.write({"r": 1.0, "n": i})
    copied = copy.deepcopy(original) if how == "deepcopy" else pickle.loads(pickle.dumps(original))
    for i in range(5):
        copied.write({"r": 10.0, "n": i})
        original.write({"r": 100.0, "n": i})
    for node in (original, copied):
        node.close()
    sink, copy_sink = original.children[0], copied.children[0]
    assert isinstance(sink, MemorySink) and isinstance(copy_sink, MemorySink)
    assert copy_sink.records[: written // 4] == sink.records[: written // 4]  # before it
    assert sum(r["r_count"] for r in sink.records) == written + 5
    assert sum(r["r_sum"] for r in sink.records) == written + 500.0
    assert sum(r["r_count"] for r in copy_sink.records) == written + 5
    assert sum(r["r_sum"] for r in copy_sink.records) == written + 50.0
