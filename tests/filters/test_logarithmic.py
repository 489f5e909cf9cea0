"""`every(logarithmic=base)` (LogarithmicFilter) passes the records Acme's
`GatedFilter.logarithmic(to, n=base)` passes: Acme's own test cases, then Acme's real gate as
the reference over long runs, on the row and batch paths and across a `state_dict`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import LogarithmicFilter
from pipeline import Pipeline
from sinks import MemorySink


def passed(base: int, count: int) -> list[int]:
    sink = MemorySink()
    with Pipeline("log").every(logarithmic=base).to(sink) as p:
        for t in range(count):
            p.write({"t": t})
    return [row["t"] for row in sink.records]


def acme_passed(base: int, count: int) -> list[int]:
    """What Acme's real GatedFilter.logarithmic passes (its FakeLogger, as in its test)."""
    filters = pytest.importorskip("acme.utils.loggers.filters")

    class Keep:
        def __init__(self) -> None:
            self.data: list[dict[str, Any]] = []

        def write(self, data: dict[str, Any]) -> None:
            self.data.append(data)

    logger = Keep()
    gated = filters.GatedFilter.logarithmic(logger, n=base)
    for t in range(count):
        gated.write({"t": t})
    return [row["t"] for row in logger.data]


# Acme's filters_test.py, GatedFilterTest, ported with its assertions.


def test_logarithmic_filter() -> None:
    assert passed(10, 100) == [*range(10), *range(10, 100, 10)]


def test_periodic_filter() -> None:  # Acme's GatedFilter.periodic(interval=10) is every(10)
    sink = MemorySink()
    with Pipeline("periodic").every(10).to(sink) as p:
        for t in range(100):
            p.write({"t": t})
    assert [row["t"] for row in sink.records] == list(range(0, 100, 10))


@pytest.mark.parametrize("base", [2, 3, 7, 10, 16])
def test_the_records_passed_are_acmes(base: int) -> None:
    assert passed(base, 20_000) == acme_passed(base, 20_000)


def test_base_10_passes_the_first_ten_then_every_tenth_then_every_hundredth() -> None:
    rows = passed(10, 3001)
    assert rows == [*range(10), *range(10, 100, 10), *range(100, 1000, 100), 1000, 2000, 3000]
    node = LogarithmicFilter(10)
    assert repr(node) == "LogarithmicFilter(10)"


@settings(max_examples=60)
@given(st.integers(min_value=2, max_value=12),
       st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_batches_pass_the_rows_row_by_row_passes(base: int, sizes: list[int]) -> None:
    total = sum(sizes)
    sink = MemorySink()
    node = LogarithmicFilter(base)
    node.connect(sink)
    start = 0
    for size in sizes:
        t = np.arange(start, start + size)
        node.write_batch({"t": t, "label": [f"r{i}" for i in t]})
        start += size
    expected = passed(base, total)
    assert [row["t"] for row in sink.records] == expected
    assert [row["label"] for row in sink.records] == [f"r{i}" for i in expected]
    assert node.dropped == total - len(expected)


@given(st.integers(min_value=2, max_value=12), st.integers(min_value=0, max_value=500))
def test_a_resumed_gate_passes_what_the_uninterrupted_one_passes(base: int, cut: int) -> None:
    def build() -> tuple[Pipeline, MemorySink]:
        sink = MemorySink()
        return Pipeline("log").every(logarithmic=base).to(sink), sink

    first, _ = build()
    for t in range(cut):
        first.write({"t": t})
    state = first.state_dict()
    second, sink = build()
    second.load_state_dict(state)
    for t in range(cut, 600):
        second.write({"t": t})
    second.close()
    first.close()
    assert [row["t"] for row in sink.records] == passed(base, 600)


@pytest.mark.parametrize("base", [0, 1, -10, 2.5, True, "10"])
def test_a_base_that_is_not_an_int_of_2_or_more_is_refused(base: Any) -> None:
    with pytest.raises(ValueError, match="logarithmic base must be an int >= 2"):
        Pipeline("x").every(logarithmic=base)


def test_every_takes_exactly_one_option() -> None:
    with pytest.raises(ValueError, match="exactly one of n, seconds or logarithmic"):
        Pipeline("x").every(10, logarithmic=10)
    with pytest.raises(ValueError, match="exactly one of n, seconds or logarithmic"):
        Pipeline("x").every()
