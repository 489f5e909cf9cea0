"""BufferedFileSink: the buffering, flush policy and crash repair shared by file sinks."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pipeline.node import Record
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


class BufferedFileSink(Sink):
    """A sink that appends one text line (or row) per record to a file.

    Flush policy: records are held in memory and written when `flush_every` records are
    held, when `flush_seconds` passed since the oldest held record (checked on write), on
    `flush()` and on `close()`. Each write to disk ends with the OS-level flush of the file
    (and `os.fsync` when `fsync=True`), so what was flushed survives a crash of the process.

    An existing file is appended to (`mode="a"`); a last line torn by an earlier crash is
    cut off with a warning. `mode="w"` starts the file afresh. Parent folders are created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "a",
        flush_every: int = 1000,
        flush_seconds: float | None = 2.0,
        fsync: bool = False,
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
        self.path = Path(path)
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.fsync = fsync
        self._clock = clock
        self._pending: list[dict[str, Any]] = []
        self._oldest = 0.0
        self.rows_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "w" or not self.path.exists():
            self.path.write_bytes(b"")
        else:
            removed = repair_torn_tail(self.path)
            if removed:
                warnings.warn(
                    f"{type(self).__name__}: {self.path} ended in a torn line ({removed} bytes, "
                    "left by a crash); it was cut off before appending",
                    stacklevel=3,
                )
        self._file: IO[str] | None = None

    def write(self, data: Record) -> None:
        if self.closed:
            self._check_open()
        pending = self._pending
        if not pending:
            self._oldest = self._clock() if self.flush_seconds is not None else 0.0
        pending.append(dict(data))
        if len(pending) >= self.flush_every or (
            self.flush_seconds is not None and self._clock() - self._oldest >= self.flush_seconds
        ):
            self.on_flush()

    def on_flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        self._store(rows)
        self.rows_written += len(rows)

    def _store(self, rows: list[dict[str, Any]]) -> None:
        """Writes `rows` to the file and makes them durable per the flush policy."""
        raise NotImplementedError

    def _handle(self) -> IO[str]:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8", newline="")
        return self._file

    def _sync(self, handle: IO[str]) -> None:
        handle.flush()
        if self.fsync:
            os.fsync(handle.fileno())

    def _drop_handle(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def on_close(self) -> None:
        self._drop_handle()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"
