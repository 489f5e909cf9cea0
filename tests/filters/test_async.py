"""AsyncNode: a background thread behind a bounded queue; drained by flush and close."""

from __future__ import annotations

import threading

import pytest

from filters import AsyncNode
from pipeline import ClosedError, Pipeline
from pipeline.core.columns import Columns
from pipeline.core.node import Record
from sinks import MemorySink


class GatedSink(MemorySink):
    """Takes records only while its gate is open: a sink as slow as the test wants."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.thread_names: set[str] = set()

    def write(self, data: Record) -> None:
        self.gate.wait()
        self.thread_names.add(threading.current_thread().name)
        super().write(data)

    def write_batch(self, columns: Columns) -> None:
        self.gate.wait()
        super().write_batch(columns)


def test_writes_return_while_the_sink_is_stuck_and_flush_drains_in_order() -> None:
    sink = GatedSink()
    pipe = Pipeline("p").async_(maxsize=1000).to(sink)
    for i in range(500):
        pipe.write({"i": i})  # would block forever if the sink ran on this thread
    assert len(sink.records) == 0
    sink.gate.set()
    pipe.flush()
    assert [r["i"] for r in sink.records] == list(range(500))
    assert sink.thread_names == {"rlpipe-async"}
    pipe.close()


def test_block_policy_loses_nothing_with_a_tiny_queue() -> None:
    sink = MemorySink()
    with Pipeline("p").async_(maxsize=2).to(sink) as pipe:
        for i in range(2000):
            pipe.write({"i": i})
    assert [r["i"] for r in sink.records] == list(range(2000))


def test_drop_oldest_counts_what_it_drops() -> None:
    sink = GatedSink()
    node = AsyncNode(maxsize=10, policy="drop_oldest")
    node.connect(sink)
    with pytest.warns(RuntimeWarning, match="dropping the oldest"):
        for i in range(100):
            node.write({"i": i})
    sink.gate.set()
    node.close()
    assert node.dropped + len(sink.records) == 100 and node.dropped >= 89
    assert [r["i"] for r in sink.records][-10:] == list(range(90, 100))


def test_an_error_in_the_thread_surfaces_on_the_callers_side() -> None:
    class Exploding(MemorySink):
        def write(self, data: Record) -> None:
            if data["i"] == 3:
                raise ValueError("bad record")
            super().write(data)

    sink = Exploding()
    node = AsyncNode()
    node.connect(sink)
    for i in range(6):
        node.write({"i": i})
    with pytest.raises(RuntimeError, match="background") as caught:
        node.flush()
    assert isinstance(caught.value.__cause__, ValueError)
    assert [r["i"] for r in sink.records] == [0, 1, 2, 4, 5] and node.errors == 1
    node.close()
    with pytest.raises(ClosedError):
        node.write({"i": 9})


def test_batches_go_through_in_order_with_rows() -> None:
    sink = MemorySink()
    with Pipeline("p").async_().to(sink) as pipe:
        pipe.write({"i": 0})
        pipe.write_batch({"i": [1, 2]})
        pipe.write({"i": 3})
    assert [r["i"] for r in sink.records] == [0, 1, 2, 3]


@pytest.mark.parametrize("options", [{"maxsize": 0}, {"policy": "lossy"}])
def test_bad_arguments_are_value_errors(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AsyncNode(**options)  # type: ignore[arg-type]


def test_drop_oldest_counts_the_rows_of_dropped_batches() -> None:
    sink = GatedSink()
    node = AsyncNode(maxsize=2, policy="drop_oldest")
    node.connect(sink)
    with pytest.warns(RuntimeWarning, match="dropping the oldest"):
        for batch in range(10):
            node.write_batch({"i": list(range(batch * 100, (batch + 1) * 100))})
    sink.gate.set()
    node.close()
    assert node.dropped + len(sink.records) == 1000
    assert node.dropped % 100 == 0 and len(sink.records) >= 200
