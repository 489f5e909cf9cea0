"""write_batch: for every built-in filter and sink, a batch of columns gives exactly what
writing its rows one by one gives: the same records, keys in the same order, the same values,
the same counters, the same files."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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
from pipeline import Node, Pipeline
from pipeline.core.columns import iter_rows
from pipeline.core.isolation import StoreError
from sinks import CsvSink, JsonlSink, MemorySink, NullSink
from tests.conftest import FakeClock

Batch = dict[str, Any]

KEYS = ["r", "x_return", "loss", "steps", "tag", "r_smoothed_0.9", "loss_min", 1, "1"]
"""Metric names, some of which a filter's outputs clash with (a caller's own smoothed key or
statistic; two keys of one text)."""
values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.sampled_from(["up", "down"]),
)


@st.composite
def column(draw: st.DrawFn, length: int) -> Any:
    kind = draw(st.sampled_from(["float", "int", "bool", "float32", "list", "floats"]))
    if kind == "float":
        return draw(hnp.arrays(np.float64, length, elements=st.floats(allow_nan=True)))
    if kind == "float32":
        return draw(hnp.arrays(np.float32, length, elements=st.floats(width=32)))
    if kind == "int":
        return draw(hnp.arrays(np.int64, length, elements=st.integers(-1000, 1000)))
    if kind == "bool":
        return draw(hnp.arrays(np.bool_, length))
    if kind == "floats":
        return draw(st.lists(st.floats(allow_nan=False), min_size=length, max_size=length))
    return draw(st.lists(values, min_size=length, max_size=length))


@st.composite
def batch(draw: st.DrawFn) -> Batch:
    length = draw(st.integers(0, 9))
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
    return {key: draw(column(length)) for key in keys}


batches = st.lists(batch(), min_size=1, max_size=5)


def same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN; numpy and Python scalars of equal value are the same."""
    if isinstance(a, float | np.floating) and isinstance(b, float | np.floating):
        return bool(a == b or (math.isnan(a) and math.isnan(b)))
    return bool(type(plain(a)) is type(plain(b)) and a == b)


def plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def same_records(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return len(a) == len(b) and all(
        list(x) == list(y) and all(same(x[k], y[k]) for k in x) for x, y in zip(a, b, strict=True)
    )


def by_rows(node: Node, stream: list[Batch], between: Callable[[], None]) -> None:
    for columns in stream:
        for row in iter_rows(columns):
            node.write(row)
        between()


def by_batches(node: Node, stream: list[Batch], between: Callable[[], None]) -> None:
    for columns in stream:
        node.write_batch(columns)
        between()


FILTERS: dict[str, Callable[[FakeClock], Node]] = {
    "none": lambda clock: NoneFilter(),
    "time 0": lambda clock: TimeFilter(0),
    "time 1 s, keep last": lambda clock: TimeFilter(1.0, keep_last=True, clock=clock),
    "every 3": lambda clock: EveryNFilter(3),
    "smooth": lambda clock: SmoothingFilter("r|loss", coeff=0.9),
    "smooth, bias corrected": lambda clock: SmoothingFilter("r", coeff=0.5,
                                                            bias_correction=True),
    "aggregate every 4": lambda clock: AggregateFilter("r|loss", every=4),
    "aggregate 1 s": lambda clock: AggregateFilter(
        "r|loss", seconds=1.0, stats=("mean", "median", "count", "sum"), clock=clock
    ),
    "aggregate all": lambda clock: AggregateFilter(".*", stats=("min", "max", "std")),
    "keep": lambda clock: KeepKeys("r"),
    "drop": lambda clock: DropKeys("r|tag"),
    "prefix": lambda clock: PrefixKeys("train"),
    "rename": lambda clock: RenameKeys({"loss": "r", "steps": "step"}),
    "flatten": lambda clock: FlattenFilter(),
    "dispatch": lambda clock: Dispatcher(MemorySink()),
}
COUNTERS = ("skipped", "nan_counts", "dropped", "overwritten")


@pytest.mark.parametrize("name", sorted(FILTERS))
@settings(max_examples=60, deadline=None)
@given(stream=batches)
def test_every_filter_gives_the_same_records_by_batch_as_by_rows(
    name: str, stream: list[Batch]
) -> None:
    outputs = []
    for feed in (by_rows, by_batches):
        clock = FakeClock()
        node = FILTERS[name](clock)
        sink = MemorySink()
        node.connect(sink)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            feed(node, stream, lambda: clock.advance(0.6))  # noqa: B023 (used at once)
            node.close()
        records = sink.records if name != "dispatch" else node.children[0].records  # type: ignore[attr-defined]
        counters = {c: getattr(node, c) for c in COUNTERS if hasattr(node, c)}
        counters["clashed"] = dict(node.counts.by_key.get("clashed", {}))
        outputs.append((records, counters))
    (rows_records, rows_counters), (batch_records, batch_counters) = outputs
    assert same_records(batch_records, rows_records)
    assert batch_counters == rows_counters


class Picky:
    """A plain logger (no batch path) that refuses the rows `refuse` names by its n-th write
    (ValueError: lost) and whose storage is down on the writes `down` names (OSError: held
    and retried)."""

    def __init__(self, refuse: set[int], down: set[int]) -> None:
        self.refuse, self.down, self.calls = refuse, down, 0
        self.rows: list[dict[str, Any]] = []

    def write(self, data: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls in self.down:
            raise OSError("storage down for a moment")
        if self.calls in self.refuse:
            raise ValueError("cannot take this one")
        self.rows.append(dict(data))


@settings(max_examples=80, deadline=None)
@given(
    stream=batches,
    refuse=st.sets(st.integers(1, 40), max_size=6),
    down=st.sets(st.integers(1, 40), max_size=4),
)
def test_a_dispatcher_stores_and_counts_the_same_by_batch_as_by_rows_whatever_fails(
    stream: list[Batch], refuse: set[int], down: set[int]
) -> None:
    outputs = []
    for feed in (by_rows, by_batches):
        logger, memory = Picky(refuse, down), MemorySink()
        node = Dispatcher(logger, memory, backoff=1e-9, max_backoff=1e-9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            feed(node, stream, lambda: None)
            node.close()
        failures = [(f.total_lost, f.queued) for f in node.failures.values()]
        outputs.append((logger.rows, memory.records, failures))
    (rows_logged, rows_memory, rows_failures), (batch_logged, batch_memory, batch_failures) = (
        outputs
    )
    assert same_records(batch_logged, rows_logged)
    assert same_records(batch_memory, rows_memory)
    assert batch_failures == rows_failures


def test_aggregate_batches_are_cut_at_window_boundaries() -> None:
    rows, batched = MemorySink(), MemorySink()
    a = AggregateFilter("r", every=1000, stats=("count", "sum")).connect(rows)
    b = AggregateFilter("r", every=1000, stats=("count", "sum")).connect(batched)
    values = np.arange(4096, dtype=np.float64)
    for x in values:
        a.write({"r": x, "steps": int(x)})
    b.write_batch({"r": values, "steps": np.arange(4096)})
    a.close()
    b.close()
    assert [r["r_count"] for r in batched.records] == [1000, 1000, 1000, 1000, 96]
    assert same_records(batched.records, rows.records)


def test_none_filter_cuts_a_batch_into_runs_of_rows_with_the_same_none_columns() -> None:
    sink = MemorySink()
    NoneFilter().connect(sink).write_batch(
        {"a": [1, None, None, 4], "b": np.array([1.0, 2.0, 3.0, 4.0]), "c": [None] * 4}
    )
    assert sink.records == [{"a": 1, "b": 1.0}, {"b": 2.0}, {"b": 3.0}, {"a": 4, "b": 4.0}]


def test_smoothing_a_batch_adds_the_smoothed_key_from_the_first_finite_value_on() -> None:
    sink = MemorySink()
    SmoothingFilter("r", coeff=0.5).connect(sink).write_batch({"r": [None, math.nan, 2.0, 4.0]})
    assert [r.get("r_smoothed_0.5") for r in sink.records] == [None, None, 2.0, 0.95 * 4 + 0.1]


def test_a_pipeline_of_filters_is_the_same_by_batch_as_by_rows() -> None:
    stream = [
        {"episode_return": np.arange(8, dtype=np.float64), "loss": [0.5, None] * 4,
         "steps": np.arange(8) * 10},
        {"episode_return": np.full(5, 2.0), "loss": [1.0] * 5, "steps": np.arange(5)},
    ]
    sinks = []
    for feed in (by_rows, by_batches):
        sink = MemorySink()
        pipe = (
            Pipeline(close_at_exit=False)
            .drop_none().smooth("return").every(2).aggregate("return|loss", every=3)
            .prefix("train").to(sink)
        )
        feed(pipe, stream, lambda: None)
        pipe.close()
        sinks.append(sink)
    assert sinks[0].records and same_records(sinks[1].records, sinks[0].records)


@settings(max_examples=60, deadline=None)
@given(stream=batches)
def test_memory_and_null_sinks_take_batches_as_rows(stream: list[Batch]) -> None:
    memory_rows, memory_batches, null_rows, null_batches = (
        MemorySink(), MemorySink(), NullSink(), NullSink()
    )
    by_rows(memory_rows, stream, lambda: None)
    by_batches(memory_batches, stream, lambda: None)
    by_rows(null_rows, stream, lambda: None)
    by_batches(null_batches, stream, lambda: None)
    assert same_records(memory_batches.records, memory_rows.records)
    assert null_batches.count == null_rows.count == len(memory_rows.records)


@pytest.mark.parametrize("sink_class", [CsvSink, JsonlSink])
@settings(max_examples=40, deadline=None)
@given(stream=batches)
def test_file_sinks_write_the_same_bytes_by_batch_as_by_rows(
    tmp_path_factory: pytest.TempPathFactory, sink_class: type[CsvSink] | type[JsonlSink],
    stream: list[Batch],
) -> None:
    folder = tmp_path_factory.mktemp("files")
    contents = []
    for feed in (by_rows, by_batches):
        path = folder / f"{feed.__name__}.out"
        sink = sink_class(path, flush_every=3, flush_seconds=None)
        feed(sink, stream, lambda: None)
        sink.close()
        contents.append(path.read_bytes())
    assert contents[1] == contents[0]


def test_a_file_sink_flushes_a_batch_at_the_same_row_counts(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "a.csv", flush_every=1000, flush_seconds=None)
    sink.write_batch({"i": np.arange(4096)})
    assert sink.rows_written == 4000
    sink.close()
    assert sink.rows_written == 4096


def test_unequal_columns_are_refused_everywhere(tmp_path: Path) -> None:
    for node in [*(make(FakeClock()).connect(MemorySink()) for make in FILTERS.values()),
                 MemorySink(), NullSink(), CsvSink(tmp_path / "c.csv")]:
        with pytest.raises(ValueError, match="equal length"):
            node.write_batch({"r": [1.0, 2.0], "steps": [1]})


# -- the fast paths keep numpy's exact results ----------------------------------------------

rng = np.random.default_rng(7)


@pytest.mark.parametrize(
    "values",
    [
        rng.normal(size=100_000),
        np.cumsum(rng.normal(size=100_001)),
        np.sort(rng.normal(size=50_000))[::-1].copy(),
        np.ones(30_000),
        rng.integers(0, 3, 40_000).astype(np.float64),
        np.r_[np.full(20_000, -np.inf), rng.normal(size=20_001), np.full(3, np.inf)],
    ],
    ids=["normal", "random walk", "sorted", "constant", "three values", "infinities"],
)
def test_large_windows_give_numpys_exact_statistics(values: np.ndarray) -> None:
    sink = MemorySink()
    node = AggregateFilter("r", stats=("mean", "std", "median", "max", "min", "sum")).connect(sink)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.write_batch({"r": values})
        node.flush()
        expected = [np.mean(values), np.std(values), np.median(values), np.max(values),
                     np.min(values), np.sum(values)]
    assert [repr(v) for v in sink.records[0].values()] == [repr(float(v)) for v in expected]


@pytest.mark.parametrize("sink_class", [CsvSink, JsonlSink])
@pytest.mark.parametrize(
    ("flush_every", "max_pending", "before", "length"),
    [(3, 1, 0, 37), (3, 1, 2, 5), (10, 4, 7, 300), (100, 25, 0, 301), (10, 25, 3, 300)],
)
def test_storage_down_drops_and_holds_the_same_rows_by_batch_as_by_rows(
    tmp_path: Path, sink_class: type[CsvSink] | type[JsonlSink], flush_every: int,
    max_pending: int, before: int, length: int,
) -> None:
    """With storage down and `max_pending` below `flush_every`, row by row holds up to
    `flush_every` rows between drops; a batch merging its stores into one must hold and drop
    the same rows (not the last `max_pending` of the whole merged run)."""

    class Down(sink_class):  # type: ignore[valid-type,misc]
        def _append(self, text: Any) -> None:
            raise OSError(28, "No space left on device")

    outcomes = []
    for how in ("rows", "batch"):
        clock = FakeClock()
        sink = Down(tmp_path / f"{how}.out", flush_every=flush_every, max_pending=max_pending,
                    flush_seconds=None)
        sink._clock = clock
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for index in range(before):
                with contextlib.suppress(StoreError):
                    sink.write({"i": -1 - index})
            with contextlib.suppress(StoreError):
                if how == "rows":
                    for index in range(length):
                        with contextlib.suppress(StoreError):
                            sink.write({"i": index})
                else:
                    sink.write_batch({"i": np.arange(length)})
            held = sink.state_dict()["nodes"][0]["file"]["held"]
            outcomes.append((held, sink.lost, sink.rows_written))
            with contextlib.suppress(StoreError):
                sink.close()
    assert outcomes[1] == outcomes[0]
