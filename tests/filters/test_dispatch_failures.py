"""Dispatcher's failure handling in detail: the one warning (its text, given once),
batches written while a child is being retried, and the row-by-row fallback of a batch."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from filters import AsyncNode, Dispatcher
from pipeline.core.columns import Columns, iter_rows
from pipeline.core.node import Record
from sinks import MemorySink, TerminalSink
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


# -- a child that fails part-way through a batch: the batch stores what the rows store ------


class RefusesNaN:
    """A plain logger (no Node) that refuses a record whose loss is NaN, as some do."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, data: Record) -> None:
        if data["loss"] != data["loss"]:
            raise ValueError("loss is NaN")
        self.rows.append(dict(data))


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


class FlakyStream(io.StringIO):
    """A terminal whose writes fail with OSError while `down` is above 0 (counted down)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.writes, self.fail_at = 0, fail_at

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes == self.fail_at:
            raise OSError("terminal gone for a moment")
        return super().write(text)


def _logger_child() -> tuple[Any, Callable[[], list[Any]]]:
    logger = RefusesNaN()
    return logger, lambda: [row["step"] for row in logger.rows]


def _terminal_child(stream: io.StringIO) -> tuple[Any, Callable[[], list[Any]]]:
    sink = TerminalSink("t", stream=stream)
    return sink, lambda: [
        line.split("Step = ")[1].split(" ")[0] for line in stream.getvalue().splitlines()
    ]


CHILDREN: dict[str, Callable[[], tuple[Any, Callable[[], list[Any]]]]] = {
    "a logger refusing a NaN loss": _logger_child,
    "a terminal refusing an unprintable value": lambda: _terminal_child(io.StringIO()),
    "a terminal whose stream fails once": lambda: _terminal_child(FlakyStream(fail_at=3)),
}
BATCH: dict[str, Any] = {
    "step": [0, 1, 2, 3],
    "loss": [0.5, 0.25, math.nan, 0.125],
    "x": [1, 2, Unprintable(), 4],
}


def _stored(child_name: str, by: str) -> tuple[list[Any], int, int, int]:
    child, stored = CHILDREN[child_name]()
    node = Dispatcher(child, backoff=1e-9, max_backoff=1e-9)
    columns = dict(BATCH)
    if child_name != "a terminal refusing an unprintable value":
        del columns["x"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if by == "batch":
            node.write_batch(columns)
        else:
            for row in iter_rows(columns):
                node.write(row)
        node.close()
    (failures,) = node.failures.values()
    return stored(), failures.total_lost, failures.queued, len(node.failures)


@pytest.mark.parametrize("child", sorted(CHILDREN))
def test_a_child_failing_part_way_through_a_batch_stores_what_row_by_row_stores(
    child: str,
) -> None:
    rows = _stored(child, "rows")
    assert _stored(child, "batch") == rows
    steps = rows[0]
    assert len(steps) == len(set(steps))  # no row twice
    assert [str(step) for step in steps] == [
        str(step) for step in ([0, 1, 3] if "fails once" not in child else [0, 1, 2, 3])
    ]


@pytest.mark.parametrize("by", ["rows", "batch"])
def test_an_async_child_reporting_an_earlier_error_is_neither_resent_nor_counted_lost(
    by: str,
) -> None:
    logger = RefusesNaN()
    async_node = AsyncNode()
    async_node.connect(logger)
    node = Dispatcher(async_node)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.write({"step": 0, "loss": math.nan})  # refused in the background
        async_node.drain()
        columns = {"step": [1, 2], "loss": [0.5, 0.25]}
        if by == "batch":
            node.write_batch(columns)
        else:
            for row in iter_rows(columns):
                node.write(row)
        node.close()
    assert [row["step"] for row in logger.rows] == [1, 2]
    (failures,) = node.failures.values()
    assert (failures.errors, failures.total_lost) == (1, 0)
    assert async_node.errors == 1
