"""Attacks on AggregateFilter's partial statistics (`add_partials`): a window holding merged
partials behaves as one holding the records, state included."""

from __future__ import annotations

import importlib.util
import pickle
from typing import Any

import numpy as np
import pytest

from filters.aggregate import AggregateFilter
from filters.partials import Partial
from sinks import MemorySink

STATS = ("mean", "std", "min", "max", "sum", "count", "median")


def aggregate() -> tuple[AggregateFilter, MemorySink]:
    node = AggregateFilter(r"^x$", stats=STATS)
    sink = MemorySink()
    node.connect(sink)
    return node, sink


EXACT = [
    True,
    pytest.param(False, marks=pytest.mark.skipif(  # the hub extra; the core suite has none
        importlib.util.find_spec("datasketches") is None, reason="needs datasketches")),
]  # the values, or a KLL sketch


def partial(*values: float, exact: bool = True) -> Partial:
    return Partial.from_values(np.array(values), exact=exact)


def test_a_state_taken_is_not_changed_by_later_partials() -> None:
    node, _ = aggregate()
    node.add_partials({"x": partial(1.0, 2.0)}, {"step": 1}, 2)
    state = node.state_dict()
    saved = pickle.dumps(state)
    node.add_partials({"x": partial(100.0)}, {"step": 2}, 1)  # after the checkpoint
    assert pickle.dumps(state) == saved

    expected, expected_sink = aggregate()
    expected.write({"x": 1.0, "step": 0})
    expected.write({"x": 2.0, "step": 1})
    expected.flush()
    restored, sink = aggregate()
    restored.load_state_dict(state)
    restored.flush()
    assert sink.records == expected_sink.records


@pytest.mark.parametrize("exact", EXACT)
def test_one_state_loaded_twice_gives_two_independent_windows(exact: bool) -> None:
    node, _ = aggregate()
    node.add_partials({"x": partial(1.0, 2.0, exact=exact)}, {}, 2)
    state = node.state_dict()
    first, first_sink = aggregate()
    second, second_sink = aggregate()
    first.load_state_dict(state)
    second.load_state_dict(state)
    first.add_partials({"x": partial(50.0, exact=exact)}, {}, 1)
    first.flush()
    second.flush()
    rows: list[dict[str, Any]] = second_sink.records
    assert rows[0]["x_count"] == 2 and rows[0]["x_max"] == 2.0
    assert rows[0]["x_median"] == 1.5 if exact else rows[0]["x_median"] in (1.0, 2.0)
    assert first_sink.records[0]["x_count"] == 3


def test_exact_partials_merged_one_value_at_a_time_hold_about_8_bytes_a_value() -> None:
    """A hub whose senders ship small exact partials (a record or two each) keeps a window's
    values in about the 8 bytes a value that record mode buffers, not an array apiece."""
    import tracemalloc

    n = 20_000
    tracemalloc.start()
    try:
        total = Partial(exact=True)
        for i in range(n):
            total.merge(Partial.from_values(np.array([float(i)]), exact=True))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / n < 24
    assert total.statistics(("count", "median", "sum")) == [n, (n - 1) / 2, n * (n - 1) / 2]
