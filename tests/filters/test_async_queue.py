"""AsyncNode's queue, exactly: its bound under each policy, pause and resume, flush waiting for
the record in hand, errors counted one by one, queued batches in a checkpoint, defaults and
the arguments it refuses."""

from __future__ import annotations

import threading
import time
import warnings

import pytest

from filters import AsyncNode
from pipeline import ClosedError
from pipeline.core.node import Record
from sinks import MemorySink


class SlowSink(MemorySink):
    """Takes each record a little while after it is handed over."""

    def write(self, data: Record) -> None:
        time.sleep(0.2)
        super().write(data)


def paused_node(maxsize: int = 10_000, policy: str = "block") -> tuple[AsyncNode, MemorySink]:
    node = AsyncNode(maxsize=maxsize, policy=policy)
    sink = MemorySink()
    node.connect(sink)
    node.pause()
    return node, sink


def test_defaults_are_a_blocking_queue_of_ten_thousand() -> None:
    node = AsyncNode()
    assert (node.maxsize, node.policy) == (10_000, "block")
    assert repr(node) == "AsyncNode(maxsize=10000, policy='block')"


def test_drop_oldest_keeps_exactly_maxsize_records_and_counts_the_rest() -> None:
    node, sink = paused_node(maxsize=2, policy="drop_oldest")
    with pytest.warns(RuntimeWarning, match="queue full"):
        for i in range(5):
            node.write({"i": i})
    assert [item for _, item in node.node_state()["queued"]] == [{"i": 3}, {"i": 4}]
    assert node.dropped == 3
    node.resume()
    node.close()
    assert sink.records == [{"i": 3}, {"i": 4}]


def test_the_drop_warning_says_how_to_lose_nothing() -> None:
    node, _ = paused_node(maxsize=1, policy="drop_oldest")
    node.write({"i": 0})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node.write({"i": 1})
    assert [str(w.message) for w in caught] == [
        "AsyncNode: queue full, dropping the oldest records (use policy='block' to lose "
        "nothing) (counted in .counts['dropped']; warned once)"
    ]
    assert caught[0].category is RuntimeWarning
    node.resume()
    node.close()


def test_a_block_policy_writer_waits_while_the_queue_holds_maxsize_records() -> None:
    node, sink = paused_node(maxsize=2)

    def write_three() -> None:
        for i in range(3):
            node.write({"i": i})

    writer = threading.Thread(target=write_three)
    writer.start()
    deadline = time.monotonic() + 120.0  # the writer thread may be slow to run
    while len(node.node_state()["queued"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.join(timeout=0.1)
    assert writer.is_alive()  # the third record waits for room (until resume, however long)
    assert len(node.node_state()["queued"]) == 2
    node.resume()
    writer.join(timeout=10)
    assert not writer.is_alive()
    node.close()
    assert [r["i"] for r in sink.records] == [0, 1, 2]


def test_a_paused_node_writes_nothing_downstream_until_resumed() -> None:
    node, sink = paused_node()
    for i in range(3):
        node.write({"i": i})
    time.sleep(0.1)
    assert sink.records == []
    node.resume()
    node.flush()
    assert [r["i"] for r in sink.records] == [0, 1, 2]
    node.close()


def test_flush_waits_for_the_record_the_thread_is_writing() -> None:
    node = AsyncNode()
    sink = SlowSink()
    node.connect(sink)
    node.write({"i": 0})
    time.sleep(0.05)  # the thread has taken the record off the queue and is in the sink
    node.flush()
    assert sink.records == [{"i": 0}]
    node.close()


def test_each_error_in_the_thread_is_counted_and_the_first_is_raised() -> None:
    class Failing(MemorySink):
        def write(self, data: Record) -> None:
            if data["i"] % 2:
                raise ValueError(f"odd {data['i']}")
            super().write(data)

    node = AsyncNode()
    sink = Failing()
    node.connect(sink)
    for i in range(5):
        node.write({"i": i})
    with pytest.raises(RuntimeError, match="writing downstream failed") as caught:
        node.flush()
    assert str(caught.value.__cause__) == "odd 1"
    assert node.errors == 2
    assert [r["i"] for r in sink.records] == [0, 2, 4]
    node.close()


def test_a_checkpoint_holds_queued_records_and_batches_and_restores_them_in_order() -> None:
    node, _ = paused_node()
    node.write({"i": 0})
    node.write_batch({"i": [1, 2]})
    queued = node.node_state()["queued"]
    assert queued == [("record", {"i": 0}), ("batch", {"i": [1, 2]})]
    restored = AsyncNode()
    sink = MemorySink()
    restored.connect(sink)
    restored.load_node_state(node.node_state())
    restored.close()
    assert sink.records == [{"i": 0}, {"i": 1}, {"i": 2}]
    node.resume()
    node.close()


def test_a_checkpoint_of_a_node_that_never_got_a_record_is_taken_at_once() -> None:
    node = AsyncNode()
    node.connect(MemorySink())
    assert node.state_dict()["nodes"][0]["queued"] == []
    node.close()


def test_closing_a_node_that_never_got_a_record_is_fine() -> None:
    node = AsyncNode()
    sink = MemorySink()
    node.connect(sink)
    node.close()
    assert node.closed and sink.closed


def test_the_background_thread_is_a_daemon_so_it_never_holds_the_interpreter() -> None:
    node = AsyncNode()
    node.connect(MemorySink())
    node.write({"i": 0})
    threads = [t for t in threading.enumerate() if t.name == "rlpipe-async"]
    assert threads and all(t.daemon for t in threads)
    node.close()


def test_unequal_columns_are_refused_on_the_callers_side() -> None:
    node = AsyncNode()
    node.connect(MemorySink())
    with pytest.raises(ValueError, match="columns of equal length"):
        node.write_batch({"a": [1], "b": [1, 2]})
    node.close()


def test_a_closed_node_says_so() -> None:
    node = AsyncNode()
    node.connect(MemorySink())
    node.close()
    with pytest.raises(ClosedError, match=r"AsyncNode\(maxsize=10000, policy='block'\) is closed"):
        node.write({"i": 0})


def test_a_queue_of_one_is_allowed() -> None:
    node = AsyncNode(maxsize=1)
    sink = MemorySink()
    node.connect(sink)
    for i in range(3):
        node.write({"i": i})
    node.close()
    assert [r["i"] for r in sink.records] == [0, 1, 2]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"maxsize": 0}, r"maxsize must be an int >= 1, got 0"),
        ({"maxsize": True}, r"maxsize must be an int >= 1, got True"),
        ({"maxsize": 2.0}, r"maxsize must be an int >= 1, got 2\.0"),
        ({"policy": "lossy"}, r"policy must be 'block' or 'drop_oldest', got 'lossy'"),
    ],
)
def test_bad_arguments_are_value_errors_naming_the_argument(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AsyncNode(**options)  # type: ignore[arg-type]


class RefusesOdd(MemorySink):
    """Refuses records whose `i` is odd (a sink that cannot take one record)."""

    def write(self, data: Record) -> None:
        if data["i"] % 2:
            raise ValueError(f"odd: {data['i']}")
        super().write(data)


def test_the_write_that_reports_a_background_error_still_delivers_its_own_record() -> None:
    node = AsyncNode()
    sink = RefusesOdd()
    node.connect(sink)
    node.write({"i": 0})
    node.write({"i": 1})
    node.drain()
    with pytest.raises(RuntimeError, match="failed in the background") as raised:
        node.write({"i": 2})
    assert isinstance(raised.value.__cause__, ValueError)
    node.write({"i": 4})
    node.close()
    assert [record["i"] for record in sink.records] == [0, 2, 4]
    assert node.errors == 1


def test_the_batch_that_reports_a_background_error_still_delivers_its_own_rows() -> None:
    node = AsyncNode()
    sink = RefusesOdd()
    node.connect(sink)
    node.write({"i": 1})
    node.drain()
    with pytest.raises(RuntimeError, match="failed in the background"):
        node.write_batch({"i": [2, 4]})
    node.close()
    assert [record["i"] for record in sink.records] == [2, 4]
