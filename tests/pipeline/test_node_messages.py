"""What the Node contract says when it refuses something: a node with nowhere to send, a
child that is no logger, a state that is not one, or one of another graph."""

from __future__ import annotations

import pytest

from pipeline.core.node import Node
from sinks import MemorySink


def test_a_node_without_children_says_how_to_give_it_some() -> None:
    with pytest.raises(RuntimeError) as caught:
        Node().write({"a": 1})
    assert str(caught.value) == (
        "Node() has nowhere to send records: connect it to a sink "
        "(node.connect(sink), or end a Pipeline with .to(...))"
    )


def test_a_child_without_write_is_refused_naming_both_types() -> None:
    with pytest.raises(TypeError) as caught:
        Node().connect(42)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "Node can only send records to a Node or a logger with a write(record) method, got int"
    )


def test_a_class_given_as_a_child_is_refused_saying_to_pass_an_instance() -> None:
    with pytest.raises(TypeError) as caught:
        Node().connect(MemorySink)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "Node can only send records to an instance (a Node or a logger with a write(record) "
        "method), got the class MemorySink itself: pass MemorySink(...)"
    )


@pytest.mark.parametrize(
    ("state", "shown"),
    [
        (
            {"f": 1, "e": 2, "d": 3, "c": 4, "b": 5, "a": 6},
            "a dict with keys ['a', 'b', 'c', 'd', 'e']",
        ),
        ([1, 2], "a list"),
    ],
)
def test_something_that_is_not_a_state_is_refused_showing_what_it_is(
    state: object, shown: str
) -> None:
    with pytest.raises(ValueError) as caught:
        Node().load_state_dict(state)  # type: ignore[arg-type]
    assert str(caught.value) == (f"not an rlpipe state of version 1 (from state_dict()): {shown}")


def test_a_state_of_a_graph_with_more_nodes_is_refused_counting_them() -> None:
    node = Node()
    node.connect(MemorySink())
    state = node.state_dict()
    state["graph"].append(("MemorySink", 0))
    state["nodes"].append(state["nodes"][-1])
    fresh = Node()
    sink = MemorySink()
    fresh.connect(sink)
    with pytest.raises(ValueError) as caught:
        fresh.load_state_dict(state)
    assert str(caught.value) == "the state is of another graph: 3 nodes in the state, 2 here"
