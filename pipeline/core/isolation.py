"""Failure isolation: a child node that raises is set aside, retried and accounted for."""

from __future__ import annotations

import os
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.core.node import Node, Record
from pipeline.core.values import snapshot_record


class StoreError(RuntimeError):
    """Raised by a sink whose record was accepted (it is buffered) but whose storage failed.

    The sink keeps the record and retries on its next flush, so a parent must not send the
    record again; it only notes the failure. The original error is the `__cause__`.
    """


def strict_from_env() -> bool:
    """True when the environment asks for strict mode (`RLPIPE_STRICT=1`)."""
    return os.environ.get("RLPIPE_STRICT", "").lower() in ("1", "true", "yes", "on")


@dataclass
class Failures:
    """What one failing node cost: records it could not take, and the errors it raised."""

    node: Node
    errors: int = 0
    lost: int = 0
    queued: int = 0
    first_error: str = ""
    last_error: str = ""
    recovered: int = field(default=0)

    def note(self, error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}"
        if isinstance(error, StoreError) and error.__cause__ is not None:
            cause = error.__cause__
            text = f"{type(cause).__name__}: {cause}"
        self.errors += 1
        self.first_error = self.first_error or text
        self.last_error = text

    @property
    def total_lost(self) -> int:
        """Records lost here plus those the node itself counted lost (`counts["lost"]`)."""
        return self.lost + self.node.counts["lost"]

    def __str__(self) -> str:
        held = f", {self.queued} held for retry" if self.queued else ""
        return (
            f"{self.node!r}: {self.errors} errors, {self.total_lost} records lost{held} "
            f"(first error: {self.first_error})"
        )


class RetryingWriter:
    """Stands in for a failing child's `write`: queues records in order (at most `limit`,
    the oldest dropped and counted beyond that) and retries delivering the queue, at most
    once per back-off period (doubling from `backoff` up to `max_backoff` seconds), so a
    dead backend does not slow every write. Never raises.

    `on_recovered` is called once the queue has drained into the child again.
    """

    def __init__(
        self,
        child: Node,
        failures: Failures,
        *,
        limit: int,
        backoff: float,
        max_backoff: float,
        on_recovered: Callable[[RetryingWriter], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.child = child
        self.failures = failures
        self.limit = limit
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._delay = backoff
        self._clock = clock
        self._next_try = clock() + backoff
        self._on_recovered = on_recovered
        self.queue: deque[Record] = deque()

    def write(self, record: Record) -> None:
        self.hold(record)
        if self._clock() >= self._next_try:
            self.retry()

    def hold(self, record: Record) -> None:
        """Queues a snapshot of `record` for delivery (the oldest dropped beyond `limit`)."""
        if len(self.queue) >= self.limit:
            self.queue.popleft()
            self.failures.lost += 1
        self.queue.append(snapshot_record(record))
        self.failures.queued = len(self.queue)

    def retry(self) -> bool:
        """Tries to deliver the queue now; True when it is empty afterwards."""
        queue = self.queue
        while queue:
            record = queue[0]
            try:
                self.child.write(record)
            except StoreError as error:
                self.failures.note(error)
                queue.popleft()  # the child kept it
            except Exception as error:
                self.failures.note(error)
                self._delay = min(self._delay * 2, self.max_backoff)
                self._next_try = self._clock() + self._delay
                self.failures.queued = len(queue)
                return False
            else:
                queue.popleft()
        self.failures.queued = 0
        self.failures.recovered += 1
        self._on_recovered(self)
        return True

    def give_up(self) -> int:
        """Counts what is still queued as lost and forgets it; returns that count."""
        left = len(self.queue)
        self.failures.lost += left
        self.failures.queued = 0
        self.queue.clear()
        return left


def warn_failure(node: Node, error: BaseException, *, stacklevel: int = 3) -> None:
    """The one warning a failing node gets, saying what happens to its records: a sink that
    could not store them (StoreError) holds them and retries; a node whose storage is down
    (OSError) gets them queued and retried; a record it refused (any other error) is lost,
    and counted."""
    if isinstance(error, StoreError):
        fate = (
            "it holds the records it could not store and retries storing them (at later "
            "writes after a back-off, on flush and on close), and what it cannot store in "
            "the end is counted"
        )
    elif isinstance(error, OSError):
        fate = "its records are held and retried, and what it could not take is counted"
    else:
        fate = "the record it refused is lost (as is each one it refuses later), counted"
    warnings.warn(
        f"rlpipe: {node!r} failed ({type(error).__name__}: {error}); the other sinks and the "
        f"training loop go on, {fate} and reported on close (strict mode, RLPIPE_STRICT=1, "
        "raises instead)",
        RuntimeWarning,
        stacklevel=stacklevel,
    )
