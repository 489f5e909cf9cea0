"""The Node contract: wiring, topological flush/close, joins, idempotent close."""

from __future__ import annotations

import pytest

from filters import Dispatcher, NoneFilter
from pipeline import ClosedError, Node
from sinks import MemorySink


class Recorder(Node):
    """A pass-through node that logs its flushes and closes into a shared list."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log

    def on_flush(self) -> None:
        self.log.append(f"flush {self.name}")

    def on_close(self) -> None:
        self.log.append(f"close {self.name}")


def test_a_node_passes_records_to_every_child_in_order() -> None:
    first, second = MemorySink(), MemorySink()
    node = Node().connect(first, second)
    node.write({"a": 1})
    assert first.records == second.records == [{"a": 1}]


def test_a_node_with_no_children_refuses_records_instead_of_losing_them() -> None:
    with pytest.raises(RuntimeError, match="nowhere to send"):
        NoneFilter().write({"a": 1})


def test_connecting_into_a_cycle_is_refused() -> None:
    a, b = Node(), Node()
    a.connect(b)
    with pytest.raises(ValueError, match="cycle"):
        b.connect(a)
    with pytest.raises(ValueError, match="cycle"):
        a.connect(a)


def test_connecting_something_that_is_not_a_node_is_refused() -> None:
    with pytest.raises(TypeError, match="Node"):
        Node().connect(print)  # type: ignore[arg-type]


def test_nodes_lists_each_node_once_parents_before_children() -> None:
    log: list[str] = []
    top, left, right, join = (Recorder(n, log) for n in ("top", "left", "right", "join"))
    top.connect(left, right)
    left.connect(join)
    right.connect(join)
    order = top.nodes()
    assert order[0] is top and order[-1] is join and len(order) == 4


def test_close_flushes_then_closes_each_node_once_in_topological_order() -> None:
    log: list[str] = []
    top, left, right, join = (Recorder(n, log) for n in ("top", "left", "right", "join"))
    top.connect(left, right)
    left.connect(join)
    right.connect(join)
    join.connect(MemorySink())
    top.close()
    assert log.count("close join") == 1 and log.count("flush join") == 1
    assert log.index("close top") < log.index("flush left") < log.index("flush join")
    assert log.index("close right") < log.index("flush join")
    top.close()
    assert log.count("close join") == 1


def test_close_goes_on_past_a_failing_node_and_then_reports_the_error() -> None:
    class Failing(Node):
        def on_close(self) -> None:
            raise OSError("disk full")

    sink = MemorySink()
    head = Failing().connect(sink)
    with pytest.raises(OSError, match="disk full"):
        head.close()
    assert sink.closed


def test_a_closed_sink_refuses_records() -> None:
    sink = MemorySink()
    sink.close()
    with pytest.raises(ClosedError):
        sink.write({"a": 1})


def test_a_node_is_a_context_manager_that_closes() -> None:
    sink = MemorySink()
    with Dispatcher(sink) as node:
        node.write({"a": 1})
    assert sink.closed and sink.records == [{"a": 1}]


def test_write_batch_defaults_to_the_rows_in_order() -> None:
    sink = MemorySink()
    Node().connect(sink).write_batch({"a": [1, 2], "b": [3.0, 4.0]})
    assert sink.records == [{"a": 1, "b": 3.0}, {"a": 2, "b": 4.0}]


def test_write_batch_refuses_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="equal length"):
        Node().connect(MemorySink()).write_batch({"a": [1, 2], "b": [3.0]})
