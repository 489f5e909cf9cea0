"""Failure isolation in the core: RetryingWriter's back-off schedule and queue, and what
`Failures` says about a failing node."""

from __future__ import annotations

from pipeline.core.isolation import Failures, RetryingWriter, StoreError
from pipeline.core.node import Record
from sinks import MemorySink
from tests.conftest import FakeClock


class Backend(MemorySink):
    """Fails (with `error`) while `down`; counts every attempt."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.down = True
        self.attempts = 0

    def write(self, data: Record) -> None:
        self.attempts += 1
        if self.down:
            raise self.error
        super().write(data)


def writer(child: MemorySink, clock: FakeClock, **options: float) -> tuple[RetryingWriter, list]:
    recovered: list[RetryingWriter] = []
    retrying = RetryingWriter(
        child,
        Failures(child),
        limit=int(options.get("limit", 100)),
        backoff=options.get("backoff", 1.0),
        max_backoff=options.get("max_backoff", 3.0),
        on_recovered=recovered.append,
        clock=clock,
    )
    return retrying, recovered


def test_retries_wait_a_back_off_that_doubles_up_to_the_maximum(clock: FakeClock) -> None:
    child = Backend(OSError("down"))
    retrying, recovered = writer(child, clock, backoff=1.0, max_backoff=3.0)
    assert (retrying.backoff, retrying.max_backoff) == (1.0, 3.0)
    attempts_at = []
    for step in range(16):  # one write every half second, for eight seconds
        retrying.write({"i": step})
        attempts_at.append(child.attempts)
        clock.advance(0.5)
    # first try after 1 s (at the 3rd write), then after 2 s, then every 3 s (the maximum)
    assert attempts_at == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3]
    assert retrying.failures.queued == 16 and recovered == []
    child.down = False
    clock.advance(3.0)
    retrying.write({"i": 16})
    assert [r["i"] for r in child.records] == list(range(17))
    assert retrying.failures.queued == 0 and recovered == [retrying]


def test_a_retry_that_empties_the_queue_says_so_and_counts_a_recovery(clock: FakeClock) -> None:
    child = Backend(OSError("down"))
    retrying, recovered = writer(child, clock)
    retrying.hold({"i": 0})
    assert retrying.retry() is False and retrying.failures.queued == 1
    child.down = False
    assert retrying.retry() is True and retrying.failures.queued == 0
    child.down = True
    retrying.hold({"i": 1})
    assert retrying.retry() is False
    child.down = False
    assert retrying.retry() is True
    assert retrying.failures.recovered == 2 and recovered == [retrying, retrying]
    assert child.records == [{"i": 0}, {"i": 1}]


def test_a_store_error_on_retry_means_the_child_kept_the_record(clock: FakeClock) -> None:
    cause = OSError(28, "No space left on device")
    error = StoreError("kept, storing failed")
    error.__cause__ = cause
    child = Backend(error)
    retrying, _ = writer(child, clock)
    retrying.hold({"i": 0})
    retrying.hold({"i": 1})
    assert retrying.retry() is True  # both taken (and kept) by the child
    assert retrying.failures.errors == 2
    assert retrying.failures.first_error == "OSError: [Errno 28] No space left on device"


def test_failures_name_the_error_type_and_keep_the_first_and_the_last() -> None:
    failures = Failures(MemorySink())
    try:
        raise ValueError("bad value") from KeyError("k")
    except ValueError as error:
        failures.note(error)
    failures.note(OSError("disk"))
    assert failures.errors == 2
    assert failures.first_error == "ValueError: bad value"  # its cause is no StoreError's
    assert failures.last_error == "OSError: disk"


def test_failures_text_says_how_many_records_are_held_only_when_some_are() -> None:
    failures = Failures(MemorySink())
    failures.note(OSError("disk"))
    failures.lost = 2
    assert str(failures) == (
        "MemorySink(0 records): 1 errors, 2 records lost (first error: OSError: disk)"
    )
    failures.queued = 3
    assert str(failures) == (
        "MemorySink(0 records): 1 errors, 2 records lost, 3 held for retry "
        "(first error: OSError: disk)"
    )
