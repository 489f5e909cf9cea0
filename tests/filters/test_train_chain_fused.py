"""The train chain (drop_none > smooth > throttle > dispatch > sinks), fused by a Pipeline,
gives exactly what the same nodes give when each calls the next: the records (values and
their types), each node's counts and its state, through None values, keys that come and go,
values that are not finite numbers, numpy scalars, a throttle that drops and passes under a
fake clock, flushes, and checkpoints taken and resumed in the middle of the stream."""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import Dispatcher, NoneFilter, SmoothingFilter, TimeFilter
from pipeline import Node, Pipeline
from sinks import MemorySink, NullSink
from tests.conftest import FakeClock

RETURN = "episode_return"
SMOOTHED = f"{RETURN}_smoothed_0.9"
KEYS = [RETURN, "actor_return", "steps", "loss", SMOOTHED]  # SMOOTHED: a clashing key

values = st.one_of(
    st.none(),
    st.floats(-1e6, 1e6),
    st.integers(-10, 10),
    st.booleans(),
    st.sampled_from([math.nan, math.inf, -math.inf, "text", b"raw"]),
    st.floats(-1e3, 1e3).map(np.float64),
    st.floats(-1e3, 1e3, width=32).map(np.float32),
    st.integers(-10, 10).map(np.int64),
    st.booleans().map(np.bool_),
    st.sampled_from([np.float64("nan"), np.float32("inf")]),
)
# A few key tuples met again and again (the runs compiled for them, None values in them
# included) and any others (keys appearing and vanishing).
shapes = st.sampled_from(
    [
        (RETURN, "steps", "loss"),
        ("steps", RETURN),
        (RETURN, "actor_return", "steps"),
        (RETURN, SMOOTHED),
        ("steps",),
    ]
)
shaped = st.builds(
    lambda keys, row: dict(zip(keys, row, strict=False)),
    shapes,
    st.lists(values, min_size=3, max_size=3),
)
records = st.one_of(
    shaped, shaped, shaped, st.dictionaries(st.sampled_from(KEYS), values, max_size=5)
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), records, st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0])),
        st.tuples(st.sampled_from(["flush", "checkpoint"]), st.none(), st.just(0.0)),
    ),
    min_size=1,
    max_size=60,
)
throttles = st.sampled_from([(0.0, False), (1.0, False), (1.0, True)])


def build(
    fused: bool, throttle: tuple[float, bool], fan: int, clock: FakeClock
) -> tuple[Node, list[Node], MemorySink]:
    """The train chain, as a Pipeline or as nodes connected by hand; its head, its nodes and
    its first sink."""
    seconds, keep_last = throttle
    memory = MemorySink()
    leaves: list[Node] = [memory, NullSink()][:fan]
    nodes: list[Node] = [
        NoneFilter(),
        SmoothingFilter("return", coeff=0.9),
        TimeFilter(seconds, keep_last=keep_last, clock=clock),
    ]
    if fused:
        pipe = Pipeline(close_at_exit=False)
        for node in nodes:
            pipe.then(node)
        pipe.to(*leaves)
        return pipe, [*pipe.steps], memory
    dispatcher = Dispatcher(*leaves)
    for upper, lower in itertools.pairwise([*nodes, dispatcher]):
        upper.connect(lower)
    return nodes[0], [*nodes, dispatcher, *leaves], memory


def drive(
    fused: bool, throttle: tuple[float, bool], fan: int, stream: list[tuple[str, Any, float]]
) -> tuple[Any, ...]:
    """The records the chain stored, each node's counts and state at the end, and each
    checkpoint's state."""
    clock = FakeClock()
    head, nodes, memory = build(fused, throttle, fan, clock)
    checkpoints = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, record, seconds in stream:
            clock.advance(seconds)
            if kind == "write":
                head.write(record)
            elif kind == "flush":
                head.flush()
            else:  # a preemption: the state goes to a freshly built chain, which goes on
                state = head.state_dict()
                checkpoints.append(state["nodes"])
                resumed = FakeClock()
                resumed.now = clock.now
                clock = resumed
                head, nodes, memory = build(fused, throttle, fan, clock)
                head.load_state_dict(state)
        states = [node.node_state() for node in nodes]
        head.close()
    counts = [(type(node).__name__, dict(node.counts), node.counts.by_key) for node in nodes]
    return memory.records, counts, states, checkpoints


def exact(a: Any, b: Any) -> bool:
    """Equal values of the same types (NaN equal to NaN), mappings in the same key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(exact(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(exact(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (float, np.floating)) and a != a:
        return bool(b != b)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(throttle=throttles, fan=st.sampled_from([1, 2]), stream=steps)
def test_the_fused_train_chain_gives_the_unfused_records_counts_and_states(
    throttle: tuple[float, bool], fan: int, stream: list[tuple[str, Any, float]]
) -> None:
    fused, unfused = drive(True, throttle, fan, stream), drive(False, throttle, fan, stream)
    records, counts, states, checkpoints = fused
    assert exact(records, unfused[0])
    assert counts == unfused[1]
    assert exact(states, unfused[2])
    assert len(checkpoints) == len(unfused[3])
    for taken, expected in zip(checkpoints, unfused[3], strict=True):
        assert exact(taken[1:], expected)  # the Pipeline's own state comes first


def test_a_stream_of_one_key_tuple_through_a_throttle_counts_and_smooths_every_record() -> None:
    """The benchmark's shape: one key tuple, an occasional None, a throttle that drops most
    records: the moving average sees every value, the throttle counts every drop."""
    clock = FakeClock()
    memory = MemorySink()
    pipe = Pipeline(close_at_exit=False).drop_none().smooth("return", coeff=0.9)
    pipe.then(TimeFilter(1.0, clock=clock)).to(memory)
    returns = [float(i) for i in range(40)]
    for i, value in enumerate(returns):
        pipe.write({"steps": i, RETURN: value, "loss": None if i % 7 == 3 else 0.5})
        clock.advance(0.25)
    smooth = SmoothingFilter("return", coeff=0.9)
    expected = [smooth.transform({RETURN: value})[SMOOTHED] for value in returns]
    assert [record[SMOOTHED] for record in memory.records] == expected[::4]
    assert pipe.steps[2].counts["dropped"] == 30
    assert [record["steps"] for record in memory.records] == list(range(0, 40, 4))
    assert ["loss" in record for record in memory.records] == [True] * 6 + [False] + [True] * 3
    pipe.close()
