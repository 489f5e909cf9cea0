"""Dispatcher's failure handling in detail: the one warning (its text, given once),
batches written while a child is being retried, and the row-by-row fallback of a batch."""

from __future__ import annotations

import warnings
from typing import Any

from filters import Dispatcher
from pipeline.core.columns import Columns
from pipeline.core.node import Record
from sinks import MemorySink
from tests.conftest import StorageDown


class Down(MemorySink):
    """Raises `error` on the records whose "i" is in `failing`, once each."""

    def __init__(self, failing: set[int], error: Exception) -> None:
        super().__init__()
        self.failing, self.error = set(failing), error

    def write(self, data: Record) -> None:
        if data["i"] in self.failing:
            self.failing.discard(data["i"])
            raise self.error
        super().write(data)


def test_the_failure_warning_names_the_sink_and_the_error_once() -> None:
    node = Dispatcher(Down({0}, ConnectionError("backend down")), backoff=1e3, max_backoff=1e3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node.write({"i": 0})
        node.write({"i": 1})  # warned once per child
    assert [str(w.message) for w in caught] == [
        "rlpipe: MemorySink(0 records) failed (ConnectionError: backend down); the other "
        "sinks and the training loop go on, its records are held and retried, and what it "
        "could not take is counted and reported on close (strict mode, RLPIPE_STRICT=1, "
        "raises instead)"
    ]
    assert caught[0].category is RuntimeWarning


def test_a_batch_written_while_a_child_is_retried_is_queued_behind_its_records() -> None:
    child = Down({0}, OSError("busy"))
    node = Dispatcher(child, backoff=1e3, max_backoff=1e3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.write({"i": 0})
    node.write_batch({"i": [1, 2]})
    node.write({"i": 3})
    assert child.records == []
    (failures,) = node.failures.values()
    assert failures.queued == 4
    node.flush()
    assert [r["i"] for r in child.records] == [0, 1, 2, 3]


def test_a_child_that_refuses_a_batch_gets_the_other_rows_one_by_one_through_isolation() -> None:
    class NoBatches(Down):
        def write_batch(self, columns: Columns) -> None:
            raise RuntimeError("no batches")

    child = NoBatches({2}, OSError("busy"))  # row 2 fails once: held and retried
    node = Dispatcher(child, backoff=1e-9, max_backoff=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.write_batch({"i": [0, 1, 2, 3]})
    node.flush()
    assert child.records[-3:] == [{"i": 1}, {"i": 2}, {"i": 3}]
    (failures,) = node.failures.values()
    assert failures.errors == 2 and failures.last_error == "OSError: busy"


def test_a_batch_a_child_refuses_is_offered_row_by_row_and_only_bad_rows_are_lost() -> None:
    class PicksRows(MemorySink):
        """Takes no batch at all, and refuses the row whose value is 'bad'."""

        def write_batch(self, columns: Any) -> None:
            raise ValueError("batches are not for me")

        def write(self, data: Any) -> None:
            if data["v"] == "bad":
                raise ValueError("bad value")
            super().write(data)

    child = PicksRows()
    dispatcher = Dispatcher(child)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dispatcher.write_batch({"v": ["a", "bad", "c"]})
    assert child.column("v") == ["a", "c"]  # the first row too: the batch's error was not its
    assert dispatcher.failures[id(child)].lost == 1


def test_a_batch_refused_because_storage_is_down_reaches_the_child_whole_once_it_is_back() -> None:
    child, other = StorageDown(down=True), MemorySink()
    node = Dispatcher(child, other, backoff=1e3, max_backoff=1e3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.write_batch({"i": [0, 1, 2]})
    assert [r["i"] for r in other.records] == [0, 1, 2]
    child.down = False
    node.flush()
    assert [r["i"] for r in child.records] == [0, 1, 2]
    (failures,) = node.failures.values()
    assert failures.lost == 0


def test_the_state_of_a_dispatcher_whose_child_lost_records_holds_no_queue_for_it() -> None:
    child = Down({0}, ValueError("cannot take it"))
    node = Dispatcher(child, MemorySink())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.write({"i": 0})
    node.write({"i": 1})
    (saved,) = node.state_dict()["nodes"][0]["failing"].values()
    assert saved["lost"] == 1 and saved["queued"] is None
