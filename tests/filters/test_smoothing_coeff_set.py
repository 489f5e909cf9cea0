"""A SmoothingFilter's `coeff` given as a numpy float or set on a built chain: the fused
train chain (whose compiled runs hold the EMA step as a literal) gives the records, counts
and states of the same nodes called one by one, every record of a key is smoothed under
one name (the one its coefficient gives), and a bad coefficient is refused."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import NoneFilter, SmoothingFilter, TimeFilter
from pipeline import Node, Pipeline
from pipeline.core.names import warmup_ema
from sinks import MemorySink
from tests.conftest import FakeClock
from tests.filters.test_train_chain_fused import exact

KEY = "episode_return"


def build(fused: bool, coeff: Any, clock: FakeClock) -> tuple[Node, list[Node], MemorySink]:
    memory = MemorySink()
    nodes: list[Node] = [
        NoneFilter(),
        SmoothingFilter("return", coeff=coeff),
        TimeFilter(1.0, clock=clock),
    ]
    if fused:
        pipe = Pipeline(close_at_exit=False)
        for node in nodes:
            pipe.then(node)
        pipe.to(memory)
        return pipe, nodes, memory
    for upper, lower in itertools.pairwise([*nodes, memory]):
        upper.connect(lower)
    return nodes[0], nodes, memory


coefficients = st.sampled_from([0.9, 0.5, 0, 0.0, np.float64(0.99), np.float64(0.25)])
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.sampled_from([(KEY, "steps"), (KEY,), ("steps", KEY, "loss")]),
            st.sampled_from([0.0, 0.5, 1.0]),
            st.one_of(st.floats(-10, 10), st.none(), st.just("text")),
        ),
        st.tuples(st.just("coeff"), coefficients),
        st.tuples(st.just("delta"), st.sampled_from([0.0, 1.0, 2.0])),
        st.tuples(st.just("keep_last"), st.booleans()),
        st.tuples(st.just("connect")),
        st.tuples(st.just("flush")),
    ),
    max_size=40,
)


def drive(fused: bool, coeff: Any, stream: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    clock = FakeClock()
    head, nodes, memory = build(fused, coeff, clock)
    smoothing, throttle = nodes[1], nodes[2]
    assert isinstance(smoothing, SmoothingFilter) and isinstance(throttle, TimeFilter)
    late = MemorySink()  # connected below the throttle once the chain has been written to
    written = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for op in stream:
            if op[0] == "write":
                _, keys, seconds, value = op
                for _ in range(3):  # a key tuple met again: its run is compiled
                    head.write({key: value if key == KEY else 1.5 for key in keys})
                    written += 1
                    clock.advance(seconds)
            elif op[0] == "coeff":
                smoothing.coeff = op[1]
            elif op[0] == "delta":
                throttle.time_delta = op[1]
            elif op[0] == "keep_last":
                throttle.keep_last = op[1]
            elif op[0] == "connect":
                throttle.connect(late)
            else:
                head.flush()
        states = [node.node_state() for node in nodes]
        head.close()
    counts = [dict(node.counts) for node in nodes]
    return memory.records, late.records, counts, states, written


@settings(max_examples=150, deadline=None)
@given(coeff=coefficients, stream=ops)
def test_coeff_and_throttle_set_on_a_built_chain_give_the_unfused_records(
    coeff: Any, stream: list[tuple[Any, ...]]
) -> None:
    fused, unfused = drive(True, coeff, stream), drive(False, coeff, stream)
    assert exact(fused[0], unfused[0])
    assert exact(fused[1], unfused[1])
    assert fused[2] == unfused[2]
    assert exact(fused[3], unfused[3])
    records, _, counts, _, written = fused
    assert len(records) + counts[2].get("dropped", 0) == written  # stored + counted


def test_a_numpy_float_coeff_smooths_every_record_of_a_fused_chain() -> None:
    """numpy 2's repr of a float64 is `np.float64(...)`: a compiled run holding it as a
    literal raised NameError at the key tuple's second record, which was lost."""
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).drop_none().smooth("r", coeff=np.float64(0.5))
    pipe.to(memory)
    for value in (1.0, 3.0, 5.0):
        pipe.write({"r": value, "steps": 1})
    pipe.close()
    expected, _, _ = warmup_ema([1.0, 3.0, 5.0], 0.5)
    assert [record["r_smoothed_0.5"] for record in memory.records] == expected
    assert all(type(record["r_smoothed_0.5"]) is float for record in memory.records)


@pytest.mark.parametrize("fused", [True, False])
def test_a_coeff_set_anew_names_the_outputs_of_every_key_tuple_after_it(fused: bool) -> None:
    """The output is named after the coefficient: a key tuple met before the change went on
    under the old name while a new one took the new name, one moving average under two
    names at once."""
    clock = FakeClock()
    head, nodes, memory = build(fused, 0.9, clock)
    smoothing, throttle = nodes[1], nodes[2]
    assert isinstance(smoothing, SmoothingFilter) and isinstance(throttle, TimeFilter)
    throttle.time_delta = 0.0
    for _ in range(2):
        head.write({KEY: 1.0, "steps": 1})
    smoothing.coeff = 0.5
    head.write({KEY: 2.0, "steps": 2})
    head.write({KEY: 2.0})
    head.write_batch({KEY: np.array([2.0]), "steps": np.array([3])})
    head.close()
    names = [[key for key in record if "smoothed" in key] for record in memory.records]
    assert names == [[f"{KEY}_smoothed_0.9"]] * 2 + [[f"{KEY}_smoothed_0.5"]] * 3
    c = 0.9 * 0.09 + 0.1 * 0.9  # one moving average goes on: its state after two records
    assert memory.records[2][f"{KEY}_smoothed_0.5"] == (1.0 - c) * 2.0 + c * 1.0


@pytest.mark.parametrize("coeff", [1.0, -0.1, 1.5, True, "0.9", None])
def test_a_bad_coeff_set_on_a_built_filter_is_refused(coeff: Any) -> None:
    smoothing = SmoothingFilter("r", coeff=0.9)
    with pytest.raises(ValueError, match="coeff"):
        smoothing.coeff = coeff
    assert smoothing.coeff == 0.9
