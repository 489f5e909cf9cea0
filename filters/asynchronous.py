"""AsyncNode: runs everything downstream on a background thread behind a bounded queue."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from pipeline.core.columns import Columns, batch_length
from pipeline.core.isolation import StoreError
from pipeline.core.node import ClosedError, Node, Record
from pipeline.core.values import snapshot, snapshot_record


class _Batch:
    __slots__ = ("columns",)

    def __init__(self, columns: Columns) -> None:
        self.columns = columns


class AsyncNode(Node):
    """Hands records to a background thread that writes them downstream, in order, so
    `write` returns in microseconds however slow the sinks are.

    The queue holds at most `maxsize` records. When it is full, `policy="block"` makes
    `write` wait for room (a slow sink slows the caller, nothing is lost), and
    `policy="drop_oldest"` drops the oldest queued record, counts it in `counts["dropped"]`
    and warns once. `flush()` and `close()` wait until the queue is drained (then flush/close
    the nodes below as usual). An error raised downstream in the thread is re-raised on the caller's
    side, at its next `write`, `flush` or `close`, as a RuntimeError whose cause it is; from
    `write` and `write_batch` it is a StoreError (a RuntimeError), raised after their own
    records were queued: a Dispatcher above notes the failure and neither counts those
    records lost nor sends them again. The thread goes on with the next records.
    """

    def __init__(self, maxsize: int = 10_000, policy: str = "block") -> None:
        super().__init__()
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be an int >= 1, got {maxsize!r}")
        if policy not in ("block", "drop_oldest"):
            raise ValueError(f"policy must be 'block' or 'drop_oldest', got {policy!r}")
        self.maxsize = maxsize
        self.policy = policy
        self._queue: deque[Any] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._busy = False
        self._paused = False
        self._stopping = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def write(self, data: Record) -> None:
        self._put(snapshot_record(data))

    def write_batch(self, columns: Columns) -> None:
        batch_length(columns)  # unequal columns are the caller's error: raise here
        self._put(_Batch({key: snapshot(column) for key, column in columns.items()}))

    def _put(self, item: Any) -> None:
        if self.closed or self._stopping:
            raise ClosedError(f"{self!r} is closed; it takes no more records")
        self._queue_item(item)
        if self._error is not None:  # reported after queueing: this record is not lost
            self._raise_error(StoreError)

    def _queue_item(self, item: Any) -> None:
        if self._thread is None:
            self._start()
        with self._ready:
            queue = self._queue
            if len(queue) >= self.maxsize:
                if self.policy == "drop_oldest":
                    oldest = queue.popleft()
                    self.counts.note(
                        "dropped",
                        "queue full, dropping the oldest records (use policy='block' to lose "
                        "nothing)",
                        n=batch_length(oldest.columns) if type(oldest) is _Batch else 1,
                        stacklevel=4,
                    )
                else:
                    while len(queue) >= self.maxsize:
                        self._ready.wait()
            queue.append(item)
            self._ready.notify_all()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rlpipe-async", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        queue, ready = self._queue, self._ready
        while True:
            with ready:
                while (not queue or self._paused) and not self._stopping:
                    ready.wait()
                if not queue:
                    return
                item = queue.popleft()
                self._busy = True
                ready.notify_all()
            try:
                if type(item) is _Batch:
                    self.emit_batch(item.columns)
                else:
                    self.emit(item)
            except BaseException as error:
                self.counts["errors"] += 1
                if self._error is None:
                    self._error = error
            finally:
                with ready:
                    self._busy = False
                    ready.notify_all()

    def pause(self) -> None:
        """Holds the background thread once it has written its current record, so that the
        queue and the nodes below stand still (for a checkpoint); `resume()` lets it go."""
        with self._ready:
            self._paused = True
            while self._busy:
                self._ready.wait()

    def resume(self) -> None:
        with self._ready:
            self._paused = False
            self._ready.notify_all()

    def node_state(self) -> dict[str, Any]:
        """Adds the records still queued; take it while paused (Pipeline.state_dict does), so
        that no record is both queued here and written below."""
        state = super().node_state()
        with self._ready:
            state["queued"] = [
                ("batch", item.columns) if type(item) is _Batch else ("record", item)
                for item in self._queue
            ]
        return state

    def fresh(self) -> bool:
        return self._thread is None and not self._queue

    def load_node_state(self, state: dict[str, Any]) -> None:
        """Queues the records again; the thread starts with the next write or flush, once
        the whole graph is restored (the nodes below are restored after this one)."""
        super().load_node_state(state)
        for kind, item in state["queued"]:
            self._queue.append(_Batch(item) if kind == "batch" else item)

    @property
    def dropped(self) -> int:
        """Queued records dropped because the queue was full (`counts["dropped"]`)."""
        return self.counts["dropped"]

    @property
    def errors(self) -> int:
        """Errors raised downstream in the background thread (`counts["errors"]`)."""
        return self.counts["errors"]

    def drain(self) -> None:
        """Waits until every queued record was written downstream."""
        with self._ready:
            while self._queue or self._busy:
                self._ready.wait()

    def _raise_error(self, kind: type[RuntimeError] = RuntimeError) -> None:
        error, self._error = self._error, None
        raise kind(f"{self!r}: writing downstream failed in the background") from error

    def on_flush(self) -> None:
        if self._thread is None and self._queue:  # records restored from a state
            self._start()
        if self._thread is not None:
            self.drain()
        if self._error is not None:
            self._raise_error()

    def on_close(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        if self._thread is not None:
            self._thread.join()

    def __repr__(self) -> str:
        return f"AsyncNode(maxsize={self.maxsize}, policy={self.policy!r})"
