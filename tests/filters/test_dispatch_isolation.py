"""Dispatcher: a failing child is isolated, retried, accounted for; strict mode raises."""

from __future__ import annotations

import pytest

from filters import Dispatcher
from pipeline import Pipeline
from pipeline.core.node import Record
from sinks import MemorySink
from sinks.base import Sink


class FlakySink(MemorySink):
    """Raises `error` on the calls whose number is in `failing` (1-based)."""

    def __init__(self, failing: set[int], error: Exception) -> None:
        super().__init__()
        self.failing, self.error, self.calls = failing, error, 0

    def write(self, data: Record) -> None:
        self.calls += 1
        if self.calls in self.failing:
            raise self.error
        super().write(data)


class DeadSink(Sink):
    def write(self, data: Record) -> None:
        raise ConnectionError("backend down")


def test_a_transient_failure_is_retried_and_nothing_is_lost_or_reordered() -> None:
    flaky = FlakySink({2, 3}, OSError("disk hiccup"))
    healthy = MemorySink()
    node = Dispatcher(flaky, healthy, backoff=1e-9, max_backoff=1e-9)
    with pytest.warns(RuntimeWarning, match="disk hiccup"):
        for i in range(6):
            node.write({"i": i})
    node.flush()
    assert [r["i"] for r in flaky.records] == list(range(6))
    assert [r["i"] for r in healthy.records] == list(range(6))
    (failures,) = node.failures.values()
    assert failures.errors == 2 and failures.total_lost == 0 and failures.recovered == 1


def test_the_other_sinks_and_the_caller_go_on_while_a_sink_is_down() -> None:
    healthy = MemorySink()
    pipe = Pipeline("p").to(DeadSink(), healthy)
    with pytest.warns(RuntimeWarning):
        for i in range(100):
            pipe.write({"i": i})
        pipe.close()
    assert len(healthy.records) == 100
    (report,) = pipe.failures()
    assert "100 records lost" in report and "backend down" in report


def test_the_retry_queue_is_bounded_and_overflow_is_counted() -> None:
    node = Dispatcher(DeadSink(), retry_limit=10, backoff=1e3, max_backoff=1e3)
    with pytest.warns(RuntimeWarning):
        for i in range(25):
            node.write({"i": i})
    (failures,) = node.failures.values()
    assert failures.queued == 10 and failures.lost == 15
    node.close()
    assert failures.queued == 0 and failures.lost == 25


def test_an_error_about_the_record_counts_it_lost_without_holding_the_rest() -> None:
    picky = FlakySink({2}, TypeError("cannot store this value"))
    node = Dispatcher(picky)
    with pytest.warns(RuntimeWarning, match="cannot store"):
        for i in range(4):
            node.write({"i": i})
    assert [r["i"] for r in picky.records] == [0, 2, 3]
    assert next(iter(node.failures.values())).lost == 1


def test_strict_mode_raises_at_once() -> None:
    with pytest.raises(ConnectionError):
        Pipeline("p", strict=True).to(DeadSink()).write({"a": 1})


def test_strict_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLPIPE_STRICT", "1")
    with pytest.raises(ConnectionError):
        Pipeline("p").to(DeadSink()).write({"a": 1})


def test_a_failing_batch_is_redelivered_row_by_row() -> None:
    flaky = FlakySink({1}, OSError("busy"))
    node = Dispatcher(flaky, backoff=1e-9, max_backoff=1e-9)

    def failing_batch(columns: object) -> None:
        raise OSError("busy")

    flaky.write_batch = failing_batch  # type: ignore[method-assign, assignment]
    with pytest.warns(RuntimeWarning):
        node.write_batch({"i": [0, 1, 2]})
    node.flush()
    assert [r["i"] for r in flaky.records] == [0, 1, 2]


@pytest.mark.parametrize("options", [{"retry_limit": 0}, {"backoff": 0}, {"max_backoff": 0.1}])
def test_bad_arguments_are_value_errors(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Dispatcher(**options)  # type: ignore[arg-type]
