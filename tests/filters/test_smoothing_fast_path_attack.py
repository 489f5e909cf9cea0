"""Attacks on SmoothingFilter's fused step: a finite float (`type(x) is float and x - x ==
0.0`) taken first, any other value the way `transform` takes it, and the record copied with
`{**data}` (`dict(data)` on a TypeError).

Specification: a Pipeline's fused chain (`drop_none().smooth(...)`, with a throttle below or
not) gives exactly what the same nodes give when each calls the next: the records (values,
their types and key order), the errors raised, the filter's counts and its moving averages;
whatever the values (floats at the edges of the range, NaN and infinities, float and int
subclasses, bools, numpy scalars of every width, Decimal, Fraction, objects with __float__,
arrays, text) and whatever mapping the record is (dict subclasses overriding __getitem__,
keys() or __iter__, Mappings, MappingProxyType, UserDict, defaultdict), with the
coefficient and the kind of average changed and checkpoints taken mid-stream."""

from __future__ import annotations

import decimal
import fractions
import math
import pickle
import warnings
from collections import OrderedDict, UserDict, defaultdict
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import NoneFilter, SmoothingFilter, TimeFilter
from pipeline import Node, Pipeline
from sinks import MemorySink
from tests.conftest import FakeClock, PlainMapping

RETURN = "ret"


class Half(float):
    """A float subclass."""


class Count(int):
    """An int subclass."""


class Floaty:
    """Not a number, with __float__."""

    def __float__(self) -> float:
        return 2.5

    def __repr__(self) -> str:  # a stable test id (no address)
        return "Floaty()"

    def __eq__(self, other: object) -> bool:
        return type(other) is Floaty

    __hash__ = object.__hash__


class Doubling(dict[str, Any]):
    """A dict subclass whose __getitem__ doubles floats (a copy of it takes the stored
    values, a look-up the doubled ones)."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        return value * 2 if type(value) is float else value


class ReversedKeys(dict[str, Any]):
    def keys(self) -> Any:
        return list(reversed(list(super().keys())))


class ReversedIter(dict[str, Any]):
    def __iter__(self) -> Iterator[str]:
        return iter(reversed(list(super().keys())))


def _defaultdict(data: dict[str, Any]) -> defaultdict[str, Any]:
    return defaultdict(float, data)


MAKERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": dict,
    "OrderedDict": OrderedDict,
    "Doubling": Doubling,
    "ReversedKeys": ReversedKeys,
    "ReversedIter": ReversedIter,
    "Mapping": PlainMapping,
    "MappingProxyType": MappingProxyType,
    "UserDict": UserDict,
    "defaultdict": _defaultdict,
}

ODD_VALUES = [
    None,
    0.5,
    -0.0,
    0.0,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    1,
    0,
    -3,
    True,
    False,
    2**80,
    -(2**1100),
    Half(1.5),
    Half("nan"),
    Half("inf"),
    Count(3),
    np.float64(2.5),
    np.float64("inf"),
    np.float32(1.5),
    np.float16(0.5),
    np.longdouble("1.5"),
    np.int64(3),
    np.bool_(True),
    decimal.Decimal("1.5"),
    decimal.Decimal("NaN"),
    fractions.Fraction(1, 3),
    Floaty(),
    "text",
    b"raw",
    1 + 0j,
    [1.0],
    np.array(1.5),
    np.array([1.5]),
]

values = st.sampled_from(ODD_VALUES) | st.floats() | st.floats(-1e3, 1e3)
shapes = st.sampled_from(
    [
        (RETURN, "steps"),
        ("steps", RETURN, "ret2"),
        (RETURN,),
        ("other_ret", RETURN),
        (f"{RETURN}_smoothed_0.5", RETURN),  # a clashing key
        ("steps",),
    ]
)
records = st.builds(
    lambda keys, row, maker: MAKERS[maker](dict(zip(keys, row, strict=False))),
    shapes,
    st.lists(values, min_size=3, max_size=3),
    st.sampled_from(sorted(MAKERS)),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), records),
        st.tuples(st.just("coeff"), st.sampled_from([0, 0.5, 0.9, 0.99999, np.float64(0.25)])),
        st.tuples(st.just("bias"), st.booleans()),
        st.tuples(st.just("checkpoint"), st.none()),
    ),
    min_size=1,
    max_size=40,
)


def build(
    fused: bool, none_first: bool, throttle: bool, coeff: Any, bias: bool, clock: FakeClock
) -> tuple[Node, SmoothingFilter, MemorySink]:
    memory = MemorySink()
    smooth = SmoothingFilter(RETURN, coeff=coeff, bias_correction=bias)
    nodes: list[Node] = [NoneFilter()] if none_first else []
    nodes.append(smooth)
    if throttle:
        nodes.append(TimeFilter(1.0, clock=clock))
    if fused:
        pipe = Pipeline(close_at_exit=False)
        for node in nodes:
            pipe.then(node)
        pipe.to(memory)
        return pipe, smooth, memory
    for upper, lower in zip(nodes, [*nodes[1:], memory], strict=True):
        upper.connect(lower)
    return nodes[0], smooth, memory


def drive(
    operations: list[tuple[str, Any]], fused: bool, none_first: bool, throttle: bool
) -> tuple[Any, ...]:
    clock = FakeClock()
    coeff, bias = 0.5, False
    head, smooth, memory = build(fused, none_first, throttle, coeff, bias, clock)
    stored: list[Any] = []
    errors: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, value in operations:
            if kind == "write":
                clock.advance(0.4)
                try:
                    head.write(value)
                except Exception as error:  # the same refusal, fused or not
                    errors.append(type(error).__name__)
            elif kind == "coeff":
                smooth.coeff = coeff = value
            elif kind == "bias":
                smooth.bias_correction = bias = value
            else:  # a preemption: the state goes to a chain built afresh
                state = pickle.dumps(head.state_dict())
                stored.extend(memory.records)
                head.close()
                head, smooth, memory = build(fused, none_first, throttle, coeff, bias, clock)
                head.load_state_dict(pickle.loads(state))
                memory.records.clear()
        stored.extend(memory.records)
        state = smooth.node_state()
        head.close()
    return stored, errors, state, dict(smooth.counts), smooth.counts.by_key


def exact(a: Any, b: Any) -> bool:
    """The same value of the same type (NaN is NaN, -0.0 is not 0.0), mappings in the same
    key order; arrays element for element; Decimal by its text."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, Mapping):
        return list(a) == list(b) and all(exact(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(exact(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, (float, np.floating)):
        if math.isnan(a):
            return bool(math.isnan(b))
        return bool(a == b) and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


@settings(max_examples=150, deadline=None)
@given(
    operations=operations,
    none_first=st.booleans(),
    throttle=st.booleans(),
)
def test_the_fused_step_gives_the_unfused_records_errors_counts_and_states(
    operations: list[tuple[str, Any]], none_first: bool, throttle: bool
) -> None:
    fused = drive(operations, True, none_first, throttle)
    unfused = drive(operations, False, none_first, throttle)
    assert exact(fused[0], unfused[0])
    assert fused[1] == unfused[1]
    assert exact(fused[2], unfused[2])
    assert fused[3:] == unfused[3:]


@pytest.mark.parametrize("maker", sorted(MAKERS))
@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_each_odd_value_in_each_mapping_is_smoothed_as_unfused(maker: str, value: Any) -> None:
    """A value between two finite floats, in each kind of record: the fused step's fast path
    (the floats) and its other way (the value) meet the same states."""
    stream = [
        MAKERS[maker]({"steps": 1, RETURN: 0.25}),
        MAKERS[maker]({"steps": 2, RETURN: value}),
        MAKERS[maker]({"steps": 3, RETURN: 4.0}),
    ]
    operations = [("write", record) for record in stream]
    for none_first in (False, True):
        fused = drive(operations, True, none_first, False)
        unfused = drive(operations, False, none_first, False)
        assert exact(fused[0], unfused[0])
        assert fused[1] == unfused[1]
        assert exact(fused[2], unfused[2])
        assert fused[3:] == unfused[3:]


def test_the_fast_path_takes_every_finite_float_and_nothing_else() -> None:
    """Finite floats at the ends of the range move the average as transform does; NaN,
    infinities and a float subclass's NaN are skipped and counted, the average kept."""
    edges = [5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308, -0.0, 1e-300]
    skipped = [math.nan, math.inf, -math.inf, Half("nan"), Half("inf")]
    stream = [{RETURN: value} for value in [*edges, *skipped, *edges]]
    fused = drive([("write", record) for record in stream], True, False, False)
    reference = SmoothingFilter(RETURN, coeff=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the counts are compared instead
        expected = [reference.transform(record) for record in stream]
    assert exact(fused[0], expected)
    assert fused[3] == {"skipped": len(skipped)}
