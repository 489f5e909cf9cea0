"""The nodes of issue 25 (constant, rolling, lifetime, rate, timestamp, the logarithmic gate)
fuse: one chain of all of them gives the same records and counts fused (a Pipeline),
unfused (the same nodes connected by hand) and by batches."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import (
    ConstantFields,
    LifetimeFilter,
    LogarithmicFilter,
    RateFilter,
    RollingFilter,
    Timestamp,
)
from pipeline import Node, Pipeline
from sinks import MemorySink
from tests.conftest import FakeClock

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

records = st.lists(
    st.fixed_dictionaries(
        {"steps": st.integers(min_value=0, max_value=10**6)},
        optional={
            "episode_return": st.one_of(st.floats(min_value=-1e6, max_value=1e6),
                                        st.sampled_from([None, math.nan])),
            "seed": st.just(9),
        },
    ),
    max_size=60,
)


def nodes(clock: FakeClock) -> list[Node]:
    return [
        ConstantFields({"seed": 1, "env": "x"}),
        RollingFilter("^episode_return$", window=5, stats=("mean", "std", "p90")),
        LifetimeFilter("^steps$"),
        RateFilter("^steps$", clock=clock),
        Timestamp(clock=clock),
        LogarithmicFilter(2),
    ]


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    def key(record: dict[str, Any]) -> list[tuple[str, Any]]:
        return [(k, "nan" if isinstance(v, float) and v != v else v) for k, v in record.items()]

    return [key(r) for r in a] == [key(r) for r in b]


@settings(max_examples=60)
@given(records)
def test_fused_unfused_and_batched_chains_agree(rows: list[dict[str, Any]]) -> None:
    fused_sink, unfused_sink, batch_sink = MemorySink(), MemorySink(), MemorySink()
    clock = FakeClock()
    fused_nodes = nodes(clock)
    pipe = Pipeline("fused")
    for node in fused_nodes:
        pipe.then(node)
    pipe.to(fused_sink)
    assert len(pipe._fused) == len(fused_nodes)  # every node in the fused run
    unfused_nodes = nodes(clock)
    for parent, child in pairwise(unfused_nodes):
        parent.connect(child)
    unfused_nodes[-1].connect(unfused_sink)
    for row in rows:
        pipe.write(row)
        unfused_nodes[0].write(row)
        clock.advance(0.5)
    pipe.close()
    assert same(fused_sink.records, unfused_sink.records)
    for a, b in zip(fused_nodes, unfused_nodes, strict=True):
        assert a.counts == b.counts

    # batches: one clock reading per batch, as rows written at one instant
    clock = FakeClock()
    row_sink = MemorySink()
    row_nodes, batch_nodes = nodes(clock), nodes(clock)
    for chain, sink in ((row_nodes, row_sink), (batch_nodes, batch_sink)):
        for parent, child in pairwise(chain):
            parent.connect(child)
        chain[-1].connect(sink)
    for start in range(0, len(rows), 7):
        part = rows[start : start + 7]
        if any(list(r) != list(part[0]) for r in part):  # a batch has one key tuple
            for r in part:
                row_nodes[0].write(r)
                batch_nodes[0].write(r)
        else:
            for r in part:
                row_nodes[0].write(r)
            batch_nodes[0].write_batch({k: [r[k] for r in part] for k in part[0]})
        clock.advance(1.0)
    assert same(batch_sink.records, [dict(r) for r in row_sink.records])
    assert np.all([a.counts == b.counts for a, b in zip(row_nodes, batch_nodes, strict=True)])
