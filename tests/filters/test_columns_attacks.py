"""Attacks on the column paths of SmoothingFilter (the EMA through `scipy.signal.lfilter`)
and AggregateFilter (whole windows reduced as a matrix): columns at the edges of what a
float64 holds or of the switches between paths give exactly the records, key order and
counts of the row path."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from filters import AggregateFilter, SmoothingFilter
from pipeline.core.node import Node
from sinks import MemorySink

rng = np.random.default_rng(11)
NORMAL = rng.normal(size=1000) * rng.choice([1e-10, 1.0, 1e10], size=1000)

COLUMNS: dict[str, np.ndarray] = {
    "negative zeros": np.array([-0.0, 0.0] * 60),
    "subnormals": np.array([5e-324, -1e-310, 2.2e-308] * 40),
    "overflow to inf": np.array([1e308, 1e308, -1e308] * 40),
    "inf and -inf": np.array([np.inf, -np.inf, 1.0, np.inf] * 30),
    "ints beyond 2**53": np.array([2**53 + 1, 2**62 + 5, -(2**63)] * 40, dtype=np.int64),
    "uint64 beyond int64": np.array([2**64 - 1, 3] * 60, dtype=np.uint64),
    "bools": rng.integers(0, 2, size=120).astype(bool),
    "int8": rng.integers(-128, 127, size=120).astype(np.int8),
    "float32": rng.normal(size=120).astype(np.float32),
    "float16": rng.normal(size=120).astype(np.float16),
    "ties": np.repeat(rng.integers(0, 3, size=30).astype(float), 4),
    "NaN first": np.concatenate([[np.nan] * 5, NORMAL[:115]]),
    "wide magnitudes": NORMAL,
}

CUTS = [
    [],
    [1],
    [47],
    [48],
    [49],
    [333, 334, 335],
    [5, 10, 11, 50],
]
"""Batch boundaries: none, around the 48-value switch to lfilter, across the warm-up's end."""


def records_both_ways(
    make: Callable[[], Node], column: np.ndarray, cuts: list[int]
) -> tuple[tuple[list[dict[str, Any]], Any], tuple[list[dict[str, Any]], Any]]:
    columns = {"r": column, "i": np.arange(len(column))}
    out = []
    for by_rows in (True, False):
        sink = MemorySink()
        node = make().connect(sink)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if by_rows:
                for index in range(len(column)):
                    node.write({key: values[index] for key, values in columns.items()})
            else:
                bounds = [0, *(cut for cut in cuts if cut < len(column)), len(column)]
                for start, stop in pairwise(bounds):
                    node.write_batch({key: values[start:stop] for key, values in columns.items()})
            node.close()
        out.append((sink.records, {k: dict(v) for k, v in node.counts.by_key.items()}))
    return out[0], out[1]


def assert_identical(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [list(record) for record in got] == [list(record) for record in expected]  # order too
    for row, want in zip(got, expected, strict=True):
        for key, value in want.items():
            same = row[key] == value or (row[key] != row[key] and value != value)
            assert same, (key, row[key], value)
            if isinstance(value, float) and value == 0:
                assert math.copysign(1, row[key]) == math.copysign(1, value), (key, row)


@pytest.mark.parametrize("cuts", CUTS, ids=str)
@pytest.mark.parametrize("name", list(COLUMNS))
@pytest.mark.parametrize("coeff", [0.0, 0.5, 0.999, 1 - 2**-53])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_smoothing_columns_give_the_row_paths_records_exactly(
    name: str, cuts: list[int], coeff: float, bias_correction: bool
) -> None:
    def make() -> Node:
        return SmoothingFilter("^r$", coeff, bias_correction=bias_correction)

    (expected, counts), (got, got_counts) = records_both_ways(make, COLUMNS[name], cuts)
    assert_identical(got, expected)
    assert got_counts == counts


STATS = ("mean", "std", "median", "max", "min", "sum", "count", "p0.1", "p5", "p50", "p99.9")


@pytest.mark.parametrize("cuts", CUTS, ids=str)
@pytest.mark.parametrize("name", list(COLUMNS))
@pytest.mark.parametrize("every", [1, 2, 7, 48, 1000])
def test_aggregate_columns_give_the_row_paths_records_exactly(
    name: str, cuts: list[int], every: int
) -> None:
    def make() -> Node:
        return AggregateFilter("^r$", every=every, stats=STATS)

    (expected, counts), (got, got_counts) = records_both_ways(make, COLUMNS[name], cuts)
    assert_identical(got, expected)
    assert got_counts == counts
