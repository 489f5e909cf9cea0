"""Dispatcher: fans every record out to several children, isolating the ones that fail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.core.columns import (
    Columns,
    MaskedColumns,
    absent_runs,
    batch_length,
    iter_rows,
    present_rows,
)
from pipeline.core.isolation import (
    Failures,
    RetryingWriter,
    StoreError,
    strict_from_env,
    warn_failure,
)
from pipeline.core.node import Logger, Node, Record


class Dispatcher(Node):
    """Sends every record, unchanged and in order, to each of its children (sinks, filters or
    pipelines). The same record object goes to every child, which is safe because no node
    mutates what it receives.

    A child that raises does not stop the others nor the caller (unless `strict`, or
    `RLPIPE_STRICT=1`, in which case the error propagates at once):

    - an OSError (disk full, permission denied, connection lost, timeout) is taken as
      transient: the child is warned about once, then its records are queued in order (at most
      `retry_limit`; beyond that the oldest are dropped and counted) and redelivered at most
      once per back-off period (`backoff` seconds, doubling up to `max_backoff`), on flush, and
      a last time on close; once the queue drains the child is used directly again;
    - a StoreError means the child kept the record and retries storing it itself: it is noted;
    - any other error is about the record (the child cannot take it): it is counted as lost.

    `failures` maps each failing child to its counts; they are reported as a warning on close.
    """

    takes_absent = True

    def __init__(
        self,
        *children: Node | Logger,
        strict: bool | None = None,
        retry_limit: int = 10_000,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if isinstance(retry_limit, bool) or not isinstance(retry_limit, int) or retry_limit < 1:
            raise ValueError(f"retry_limit must be an int >= 1, got {retry_limit!r}")
        if backoff <= 0 or max_backoff < backoff:
            raise ValueError(
                f"backoff must be > 0 and <= max_backoff, got {backoff!r}, {max_backoff!r}"
            )
        self.strict = strict_from_env() if strict is None else strict
        self.retry_limit = retry_limit
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.failures: dict[int, Failures] = {}
        self._retrying: dict[int, RetryingWriter] = {}
        # each child with what to call to write it: its write, or its retry queue's
        self._targets: tuple[tuple[Node, Callable[[Record], None]], ...] = ()
        self._absent: tuple[bool, ...] | None = None  # per child: absent_ok(), asked once
        super().__init__()
        if children:
            self.connect(*children)

    def _rewire(self) -> None:
        self._targets = tuple(  # first: rewiring tells the parents, which may read them
            (child, self._retrying[id(child)].write if id(child) in self._retrying
             else child.write)
            for child in self._children
        )
        super()._rewire()

    def absent_ok(self) -> bool:
        """True: `write_batch` gives each child a `MaskedColumns` batch whole if the child
        takes it (`absent_ok`), else cut into runs of rows without their None cells."""
        return True

    def _changed(self) -> None:
        self._absent = None  # a child, or a node below one, was connected anew: ask again
        super()._changed()

    def inlined_write(self) -> tuple[list[str], dict[str, object]] | None:
        """Each child's write in its own try, as `write` does it, without the loop."""
        lines: list[str] = []
        names: dict[str, object] = {"dispatch_failed": self._failed}
        for index, (child, write) in enumerate(self._targets):
            names[f"c{index}"], names[f"w{index}"] = child, write
            lines += [
                "try:",
                f"    w{index}(data)",
                "except Exception as error:",
                f"    dispatch_failed(c{index}, data, error)",
            ]
        return lines, names

    def write(self, data: Record) -> None:
        for child, write in self._targets:
            try:
                write(data)
            except Exception as error:
                self._failed(child, data, error)

    def write_batch(self, columns: Columns) -> None:
        """Each child takes the batch whole through its own `write_batch`, which takes every
        row or raises having taken none (a StoreError: it holds every row). A child without
        a batch path of its own (a logger, a terminal) gets the rows one by one through the
        isolation rules, as `write` gives them: one that fails part-way through the batch
        loses or holds the rows `write` would, and gets no row twice.

        A `MaskedColumns` batch goes whole to each child that takes it; each other child gets
        it cut into runs of rows with None in the same columns, each run without those
        columns (`absent_runs`), so the nodes above such a child still cross the batch
        whole."""
        # row by row, so queued records keep their order, and so a node below two children
        # takes the rows in the order row by row gives them
        if self._retrying or (len(self._children) > 1 and self.rejoins()):
            for record in present_rows(columns):
                self.write(record)
            return
        children = tuple(self._children)  # a child connected during the batch: from the next
        absent = None
        if type(columns) is MaskedColumns:
            absent = self._absent
            if absent is None or len(absent) != len(children):
                absent = self._absent = tuple(child.absent_ok() for child in children)
        for index, child in enumerate(children):
            if type(child).write_batch is Node.write_batch:
                for row in present_rows(columns):
                    self.write_to(child, row)
            elif absent is None or absent[index]:
                self._write_whole(child, columns)
            else:
                self._write_runs(child, columns)

    def _write_whole(self, child: Node, columns: Columns) -> None:
        """The batch to `child`'s own `write_batch`; the rows one by one if it raised."""
        try:
            child.write_batch(columns)
        except StoreError as error:  # the child holds every row and retries itself
            self._failed(child, {}, error)
        except Exception as error:
            if self.strict:
                raise
            # Row by row, so a record the child cannot take is lost alone (the batch path
            # raised having taken no row).
            rows = present_rows(columns)
            if isinstance(error, OSError):  # storage is down: queued, in order, retried
                first = next(rows, None)
                if first is not None:
                    self._failed(child, first, error)
            else:  # no row is known bad yet: each one is offered on its own
                self._noted(child, error)
            for row in rows:
                self.write_to(child, row)

    def _write_runs(self, child: Node, columns: Columns) -> None:
        """A `MaskedColumns` batch to a child that does not take one: each run of rows with
        None in the same columns, without those columns, through `_write_whole`; rows whose
        every cell is None as empty records, and once the child's records are queued (its
        storage went down), the rows one by one, in order."""
        for part, start, stop in absent_runs(columns, batch_length(columns)):
            if part and id(child) not in self._retrying:
                self._write_whole(child, part)
                continue
            rows = iter_rows(part) if part else ({} for _ in range(start, stop))
            for row in rows:
                self.write_to(child, row)

    def write_to(self, child: Node, data: Record) -> None:
        """Writes one record to one child, through the isolation rules."""
        write = self._targets[self._children.index(child)][1]
        try:
            write(data)
        except Exception as error:
            self._failed(child, data, error)

    def _failed(self, child: Node, data: Record, error: Exception) -> None:
        if self.strict:
            raise error
        failures = self._noted(child, error)
        if isinstance(error, StoreError):
            return
        if not isinstance(error, OSError):
            failures.lost += 1
            return
        # Already queued when a write from inside this one (a sink writing back) failed first.
        retrying = self._retrying.get(id(child))
        (retrying or self._retry(child, failures)).hold(data)

    def _noted(self, child: Node, error: Exception) -> Failures:
        """Notes `error` against `child` (warned about the first time); its failures."""
        failures = self.failures.get(id(child))
        if failures is None:
            failures = self.failures[id(child)] = Failures(child)
            warn_failure(child, error, stacklevel=5)
        failures.note(error)
        return failures

    def _retry(self, child: Node, failures: Failures) -> RetryingWriter:
        """Puts `child` behind a retry queue (from now on its records are queued)."""
        retrying = RetryingWriter(
            child,
            failures,
            limit=self.retry_limit,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            on_recovered=self._recovered,
        )
        self._retrying[id(child)] = retrying
        self._rewire()
        return retrying

    def _recovered(self, retrying: RetryingWriter) -> None:
        self._retrying.pop(id(retrying.child), None)
        self._rewire()

    def on_flush(self) -> None:
        for retrying in list(self._retrying.values()):
            retrying.retry()

    def node_state(self) -> dict[str, Any]:
        """Adds, per failing child (by its position), its failure counts and the records
        queued for it."""
        state = super().node_state()
        state["failing"] = {
            index: {
                "errors": failures.errors,
                "lost": failures.lost,
                "first_error": failures.first_error,
                "last_error": failures.last_error,
                "queued": list(self._retrying[id(child)].queue)
                if id(child) in self._retrying
                else None,
            }
            for index, child in enumerate(self._children)
            if (failures := self.failures.get(id(child))) is not None
        }
        return state

    def load_node_state(self, state: dict[str, Any]) -> None:
        super().load_node_state(state)
        for index, saved in state["failing"].items():
            child = self._children[index]
            failures = self.failures[id(child)] = Failures(child)
            failures.errors, failures.lost = saved["errors"], saved["lost"]
            failures.first_error, failures.last_error = saved["first_error"], saved["last_error"]
            if saved["queued"] is not None:
                retrying = self._retry(child, failures)
                for record in saved["queued"]:
                    retrying.hold(record)

    def on_close(self) -> None:
        for retrying in list(self._retrying.values()):
            if not retrying.retry():
                retrying.give_up()

    def __repr__(self) -> str:
        return f"Dispatcher({len(self._children)} children)"
