"""BufferedFileSink: the buffering, flush policy and crash repair shared by file sinks."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core import lifecycle
from pipeline.core.columns import Columns, batch_rows
from pipeline.core.isolation import StoreError
from pipeline.core.node import Record
from pipeline.core.values import snapshot_record, text
from sinks import flusher
from sinks.base import Sink


def repair_torn_tail(path: Path) -> int:
    """Truncates a file after its last newline, so a line torn by a crash is not read as a
    row; returns the number of bytes removed (0 when the file ends cleanly)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return 0
        position = size
        chunk = 4096
        while position > 0:
            start = max(0, position - chunk)
            handle.seek(start)
            block = handle.read(position - start)
            newline = block.rfind(b"\n")
            if newline != -1:
                keep = start + newline + 1
                break
            position = start
        else:
            keep = 0
        handle.truncate(keep)
    return size - keep


class _PartlyStored(OSError):
    """Storage failed after `stored` of the rows were written."""

    def __init__(self, stored: int, error: OSError) -> None:
        super().__init__(error.errno, error.strerror)
        self.stored = stored
        self.__cause__ = error

    def __str__(self) -> str:
        return str(self.__cause__)


class BufferedFileSink(Sink):
    """A sink that appends one text line (or row) per record to a file.

    Flush policy: records are held in memory and written when `flush_every` records are
    held, when `flush_seconds` passed since the oldest held record (with no further write
    needed: one background thread serves every file sink), on `flush()` and on `close()`.
    Each flush is one append of whole lines straight to the OS (no hidden buffer), followed
    by `os.fsync` when `fsync=True`; so what was flushed survives a crash of the process,
    and a crash never leaves half a row behind except in the last line, which is cut off
    when the file is opened again.

    An existing file is appended to (`mode="a"`); a last line torn by an earlier crash is
    cut off with a warning. `mode="w"` starts the file afresh. Parent folders are created.

    When storing fails (disk full, file too large, permission lost), the partial append is
    truncated away, the rows stay held (at most `max_pending`; beyond that the oldest are
    dropped, counted in `counts["lost"]` and warned about) and storing is retried after a back-off
    (1 s doubling to 60 s) or at the next explicit `flush()`; the failure is raised as a
    StoreError, which tells a Dispatcher that the record was kept. Rows still held when
    `close()` fails to store them are counted in `counts["lost"]` and reported by the error.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "a",
        flush_every: int = 1000,
        flush_seconds: float | None = 2.0,
        fsync: bool = False,
        max_pending: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if mode not in ("a", "w"):
            raise ValueError(f"mode must be 'a' (append) or 'w' (overwrite), got {mode!r}")
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be an int >= 1, got {flush_every!r}")
        if flush_seconds is not None and (
            not isinstance(flush_seconds, (int, float)) or flush_seconds < 0
        ):
            raise ValueError(f"flush_seconds must be a number >= 0 or None, got {flush_seconds!r}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be an int >= 1, got {max_pending!r}")
        self.path = Path(path)
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.fsync = fsync
        self.max_pending = max_pending
        self._clock = clock
        # Appended to by the writer without a lock; taken from by whoever stores, under
        # _store_lock (the writer's thread, or the flusher's when rows are due).
        self._pending: deque[dict[str, Any]] = deque()
        self._store_lock = threading.Lock()
        self._oldest = 0.0
        self._retry_at = 0.0
        self._retry_delay = 0.0
        self.rows_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "w" or not self.path.exists():
            self.path.write_bytes(b"")
        elif self.path.is_file():
            removed = self._repair_tail()
            if removed:
                warnings.warn(
                    f"{type(self).__name__}: {self.path} ended in a torn line ({removed} bytes, "
                    "left by a crash); it was cut off before appending",
                    stacklevel=3,
                )
        self._file: io.FileIO | None = None
        if flush_seconds is not None:
            flusher.watch(self)
        lifecycle.track(self)  # closed at exit or on SIGTERM if still open, alone or in a graph

    def _repair_tail(self) -> int:
        """Cuts off what a crash left of a last row; returns the number of bytes removed."""
        return repair_torn_tail(self.path)

    def write(self, data: Record) -> None:
        if self.closed:
            self._check_open()
        pending = self._pending
        if not pending:
            self._oldest = self._clock() if self.flush_seconds is not None else 0.0
        pending.append(snapshot_record(data))
        if len(pending) >= self.flush_every or (
            self.flush_seconds is not None and self._clock() - self._oldest >= self.flush_seconds
        ):
            if self._retry_at and self._clock() < self._retry_at:
                self._bound_pending()
                return
            self.on_flush()

    def write_batch(self, columns: Columns) -> None:
        """Holds the batch's rows (numeric numpy columns as Python numbers: the same file)
        and flushes at the same row counts as row by row would."""
        if self.closed:
            self._check_open()
        rows = batch_rows(columns, python_scalars=True)
        index, length = 0, len(rows)
        failure: StoreError | None = None
        while index < length:
            pending = self._pending
            if not pending:
                self._oldest = self._clock() if self.flush_seconds is not None else 0.0
            take = max(self.flush_every - len(pending), 1)
            pending.extend(rows[index : index + take])
            index += take
            if len(pending) >= self.flush_every or (
                self.flush_seconds is not None
                and self._clock() - self._oldest >= self.flush_seconds
            ):
                if failure is not None or (self._retry_at and self._clock() < self._retry_at):
                    self._bound_pending()
                    continue
                try:
                    self.on_flush()
                except StoreError as error:
                    failure = error  # every row of the batch is held all the same
        if failure is not None:
            raise failure

    def on_flush(self) -> None:
        if not self._pending:
            return
        with self._store_lock:
            pending = self._pending
            rows = [pending.popleft() for _ in range(len(pending))]
            if not rows:
                return
            try:
                stored = self._store_each_value(rows)
            except OSError as error:  # storage is down: keep every row not yet stored
                if isinstance(error, _PartlyStored):
                    self.rows_written += error.stored
                    rows = rows[error.stored :]
                    error = error.__cause__  # type: ignore[assignment]
                pending.extendleft(reversed(rows))
                self._retry_delay = min(max(1.0, self._retry_delay * 2), 60.0)
                self._retry_at = self._clock() + self._retry_delay
                self._bound_pending()
                raise StoreError(
                    f"{self!r} could not store {len(rows)} rows "
                    f"({type(error).__name__}: {error}); they are kept and retried"
                ) from error
            if pending:  # rows written while these were stored
                self._oldest = self._clock()
            self._retry_at = self._retry_delay = 0.0
            self.rows_written += stored

    def _store_each_value(self, rows: list[dict[str, Any]]) -> int:
        """Stores `rows`; returns how many were stored. Only an OSError means storage is
        down. Any other error is about a value that cannot be written as it is: the rows are
        then stored one by one, a row that fails again is stored with each value the sink
        cannot write (`_writable`) in its text form (`_as_text`), and a row that fails even so
        is counted lost alone."""
        try:
            self._store(rows)
            return len(rows)
        except OSError:
            raise
        except Exception:
            pass
        stored = 0
        for index, row in enumerate(rows):
            try:
                as_text = {
                    key: value if self._writable(value) else self._as_text(value)
                    for key, value in row.items()
                }
                for attempt in (row, as_text):
                    try:
                        self._store([attempt])
                        stored += 1
                        break
                    except OSError:
                        raise
                    except Exception as error:
                        problem = error
                else:
                    self.counts.note(
                        "lost",
                        f"a row could not be written even as text ({type(problem).__name__}: "
                        f"{problem}); the other rows are",
                        stacklevel=5,
                    )
            except OSError as error:
                raise _PartlyStored(index, error) from error
        return stored

    def node_state(self) -> dict[str, Any]:
        """Adds the file's durable position (bytes and rows on disk) and the rows held."""
        state = super().node_state()
        with self._store_lock:
            state["file"] = {
                "bytes": self.path.stat().st_size if self.path.is_file() else 0,
                "rows": self.rows_written,
                "held": list(self._pending),
                "held_for": self._clock() - self._oldest if self._pending else 0.0,
            }
        return state

    def fresh(self) -> bool:
        return not (self.rows_written or self._pending)

    def load_node_state(self, state: dict[str, Any]) -> None:
        """Cuts the file back to its checkpointed position (rows written after the
        checkpoint go) and holds again the rows that were held."""
        super().load_node_state(state)
        saved = state["file"]
        with self._store_lock:
            self._drop_handle()
            if self.path.is_file():
                self._cut_back(saved)
            self.rows_written = saved["rows"]
            self._pending.clear()
            self._pending.extend(saved["held"])
            self._oldest = self._clock() - saved["held_for"]

    def _cut_back(self, saved: dict[str, Any]) -> None:
        size = self.path.stat().st_size
        if size < saved["bytes"]:
            raise ValueError(
                f"{self.path} holds {size} bytes, fewer than the {saved['bytes']} it held at "
                "the checkpoint: it is not the file this state was taken from"
            )
        with self.path.open("rb+") as handle:
            handle.truncate(saved["bytes"])

    def flush_due(self) -> float | None:
        """Seconds until the held rows are due for storing (<= 0: now); None if none are."""
        if not self._pending or self.flush_seconds is None or self.closed:
            return None
        now = self._clock()
        return max(self._oldest + self.flush_seconds, self._retry_at) - now

    def flush_on_time(self) -> None:
        """Stores the held rows now (called by the flusher thread when they are due). A
        failure keeps them for the next try, as any flush does."""
        with contextlib.suppress(Exception):
            self.on_flush()

    def _bound_pending(self) -> None:
        excess = len(self._pending) - self.max_pending
        if excess > 0:
            for _ in range(excess):
                self._pending.popleft()
            self.counts.note(
                "lost",
                f"storage keeps failing and {self.max_pending} rows are held; the oldest are "
                "dropped from now on",
                n=excess,
                stacklevel=4,
            )

    def _store(self, rows: list[dict[str, Any]]) -> None:
        """Writes `rows` to the file (all of them, or none: see `_append`)."""
        raise NotImplementedError

    def _writable(self, value: Any) -> bool:
        """Whether `_store` can write `value` as it is (else it is written as `_as_text`)."""
        return False

    def _as_text(self, value: Any) -> Any:
        """What a value `_store` cannot write is written as: its text, by default."""
        return text(value)

    def _append(self, text: str) -> None:
        """Appends `text` to the file with no user-space buffer; on failure, truncates the
        file back to its size before the append and re-raises."""
        if self._file is None:
            self._file = io.FileIO(self.path, "a")
        handle = self._file
        start = handle.seek(0, os.SEEK_END)
        view = memoryview(text.encode("utf-8"))
        try:
            while view:
                written = handle.write(view)
                view = view[written or 0 :]
            if self.fsync:
                os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                handle.truncate(start)
            raise

    def _drop_handle(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def on_close(self) -> None:
        flusher.forget(self)
        lifecycle.forget(self)
        with self._store_lock:  # a store by the flusher thread ends first ...
            pass
        if self._pending:  # ... and what it could not store gets one more try
            with contextlib.suppress(StoreError):
                self.on_flush()
        self._drop_handle()
        if self._pending:
            left = len(self._pending)
            self.counts["lost"] += left
            self._pending.clear()
            raise StoreError(f"{self!r}: {left} rows could not be stored before close; lost")

    @property
    def lost(self) -> int:
        """Rows that could not be stored (`counts["lost"]`)."""
        return self.counts["lost"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"
