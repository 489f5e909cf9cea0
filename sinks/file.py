"""BufferedFileSink: the buffering, flush policy and crash repair shared by file sinks."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import threading
import time
import warnings
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from pipeline.core import lifecycle
from pipeline.core.columns import (
    Columns,
    MaskedColumns,
    batch_length,
    batch_rows,
    numeric,
    present,
)
from pipeline.core.config import config_text, merge_config
from pipeline.core.counts import Counts
from pipeline.core.isolation import Failures, StoreError, warn_failure
from pipeline.core.media import MEDIA_SUFFIX, MEDIA_TYPES, MediaExtraMissing
from pipeline.core.node import Record
from pipeline.core.values import (
    COPIED_TYPES,
    IMMUTABLE_TYPES,
    snapshot,
    text,
)
from sinks import flusher
from sinks.base import Sink
from sinks.blocks import RowBlock, held_column, held_rows

FAST = True
"""Whether file sinks use the `fast` extra (orjson, polars) when it is installed: JSONL lines
through `orjson.dumps`, and column batches held and formatted as columns, with no row dicts.
The files hold the same values either way (CSV: the same bytes); False forces the
pure-Python path."""


@lru_cache(maxsize=1)
def _load_orjson() -> ModuleType | None:
    try:
        import orjson
    except ImportError:
        return None
    return orjson


def fast_json() -> ModuleType | None:
    """The orjson module when the fast path is on (`FAST`) and orjson is installed, else None
    (imported on first use: importing the sinks costs nothing for it)."""
    return _load_orjson() if FAST else None


@lru_cache(maxsize=1)
def _load_polars() -> ModuleType | None:
    try:
        import polars
    except ImportError:
        return None
    return polars


def fast_frames() -> ModuleType | None:
    """The polars module when the fast path is on (`FAST`) and polars is installed, else None
    (imported on first use, as `fast_json`)."""
    return _load_polars() if FAST else None


MERGED_STORE = 1 << 16
"""The most rows `write_batch` stores in one append when a batch spans several `flush_every`
runs (a bound on the text formatted at once)."""


def note_nested_clashes(counts: Counts, clashed: list[str], *, stacklevel: int = 3) -> None:
    """Counts the nested keys `plain` left out for an earlier key of the same text (their
    texts in `clashed`) in `counts["clashed"]` (per name), warning once per name."""
    for name in clashed:
        counts.note(
            "clashed",
            f"a nested mapping holds two keys with the text {name!r} (as 1 and '1'), which "
            "stored data has one key for: the earlier is written, the later is not",
            key=name,
            category=UserWarning,
            stacklevel=stacklevel + 1,
        )


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


try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the one-writer rule holds within a process
    fcntl = None  # type: ignore[assignment]


class FileBusyError(RuntimeError):
    """Raised when a file sink is made on a file that another open writer writes: one open
    writer per file (two would interleave their rows and headers)."""


_writers: dict[str, weakref.ref[BufferedFileSink]] = {}
_writers_lock = threading.Lock()


def _lock(path: Path) -> int | None:
    """An open descriptor of `path` holding an exclusive advisory lock on it (`flock`),
    creating the file if there is none; FileBusyError if another writer holds the lock."""
    for _ in range(100):
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FileBusyError(
                f"{path} is open in another writer (another process, or a sink on another "
                "name of the same file): one open writer per file. Close that one first, or "
                "write to another file"
            ) from None
        except OSError:  # a file system without locks: nothing to hold
            return fd
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # replaced meanwhile (a writer rewrote it): lock the file it is now
    raise FileBusyError(f"{path} keeps being replaced by another writer")


class _PartlyStored(OSError):
    """Storage failed at row `done` of the rows: `stored` of those before it were written,
    the others counted lost."""

    def __init__(self, done: int, stored: int, error: OSError) -> None:
        super().__init__(error.errno, error.strerror)
        self.done = done
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
    when the file is opened again. A SIGTERM or Ctrl-C that comes while rows are stored
    acts once they are stored (and the rows still held are stored as the process exits).

    Runs never mix in one file. `mode="w"` (the default) starts the file afresh: an existing
    file is replaced when the sink first stores a row (or closes), with a warning naming it
    if it was not empty; loading a state (`load_state_dict`) before the first write resumes
    the run the state is of instead (the file is cut back to the checkpoint and appended
    to). `mode="a"` appends to an existing file; a last line torn by an earlier crash is
    cut off with a warning. Parent folders are created.

    One open writer per file: a second file sink on the same file (by any name: a symlink,
    `..`) while the first is open is refused with FileBusyError, in the same process and,
    through an advisory lock (`flock`, where the platform has it), in another one. Closing
    the sink releases the file.

    When storing fails (disk full, file too large, permission lost), the partial append is
    truncated away (a store of more than `flush_every` rows is then made `flush_every` rows
    at a time, so the runs that fit are stored), the rows not stored stay held (at most
    `max_pending`; beyond that the oldest are dropped, counted in `counts["lost"]` and warned
    about) and storing is retried after a back-off (1 s doubling to 60 s) or at the next
    explicit `flush()`; the failure is raised as a StoreError, which tells a Dispatcher that
    the record was kept. Rows still held when
    `close()` fails to store them are counted in `counts["lost"]` and reported by the error.
    `storage_failures` sums the failures up (a Pipeline's `failures()` lists it).

    Configuration: `log_config(config)` (or a graph's) keeps the run's configuration in
    `config` and in the JSON file `config_path`, `<file name>.config.json` beside the data
    file (`train.csv` -> `train.csv.config.json`): one object of `/`-joined names and plain
    values (`pipeline.core.config`), rewritten atomically (a temporary file, then
    `os.replace`) whenever a call adds or changes a value. A later call merges (a changed
    value is kept, counted in `counts["overwritten"]` under `config/<name>` and warned
    once). `mode="a"` and a resumed run (`load_state_dict`) start from the file's values; a
    new run (`mode="w"`) that logs none removes an earlier run's file when it replaces the
    data file.

    Images and videos (`pipeline.Image`, `pipeline.Video` values): each is written when its
    row is stored, to `media_dir`, the folder `<file name>.media/` beside the data file, as
    `<key>/<row>.png` (a video: `.gif`), `<row>` the row's number in the data file from 0;
    the row holds the file's path relative to the data file's folder
    (`train.csv.media/frames/12.gif`). A key's characters other than letters, digits, `.`,
    `_` and `-` become `_` in the folder name (with a short hash of the key, so two keys
    never share a folder). Without the `media` extra (Pillow, imageio) the value is left
    out of its row, counted in `counts["dropped"]` under its key and warned once, naming
    the extra. A new run (`mode="w"`) removes an earlier run's media folder when it
    replaces the data file.
    """

    _held_blocks = False
    """Whether a RowBlock was ever queued (set on the instance then, never reset); a class
    default, so that a sink that only writes rows keeps its attributes out of a dict."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "w",
        flush_every: int = 1000,
        flush_seconds: float | None = 2.0,
        fsync: bool = False,
        max_pending: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if mode not in ("a", "w"):
            raise ValueError(f"mode must be 'w' (a new file) or 'a' (append), got {mode!r}")
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be an int >= 1, got {flush_every!r}")
        if flush_seconds is not None and (
            not isinstance(flush_seconds, (int, float)) or flush_seconds < 0
        ):
            raise ValueError(f"flush_seconds must be a number >= 0 or None, got {flush_seconds!r}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be an int >= 1, got {max_pending!r}")
        if isinstance(path, type) or not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ValueError(f"path must be a file's path, got {path!r}")
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(
                f"path {str(path)!r} is a directory; a {type(self).__name__} writes one file: "
                f"give a file's path, such as {str(self.path / 'train.csv')!r}"
            )
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
        self.rows_written = 0
        self._restored = None  # records taken, as of the state loaded (see Sink)
        self._storage = Failures(self)
        self._file: io.FileIO | None = None
        # this sink's key in _writers and its descriptor holding the file's lock, once claimed
        self._claimed: tuple[str, int | None] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._beside = _Beside()
        self._claim()
        try:
            self._replace_first = mode == "w" and self._size() > 0
            # rows in the file before this sink's (None: to be counted, when media need it)
            self._beside.media_base = 0 if mode == "w" or not self._size() else None
            if mode == "a":
                self.config = self._read_config()
            if mode == "a" and self._claimed is not None:
                removed = self._repair_tail()
                if removed:
                    warnings.warn(
                        f"{type(self).__name__}: {self.path} ended in a torn line ({removed} "
                        "bytes, left by a crash); it was cut off before appending",
                        stacklevel=3,
                    )
        except BaseException:
            self._release()
            raise
        if flush_seconds is not None:
            flusher.watch(self)
        lifecycle.track(self)  # closed at exit or on SIGTERM if still open, alone or in a graph

    def _claim(self) -> None:
        """Makes this sink the one open writer of its file (creating it if there is none);
        FileBusyError if another open sink or another process writes it. A device or pipe
        (`/dev/null`) is not claimed: it is no file of one run."""
        if self.path.exists() and not self.path.is_file():
            return
        key = os.path.normcase(os.path.realpath(self.path))
        with _writers_lock:
            owner = _writers.get(key)
            first = owner() if owner is not None else None
            if first is not None and not first.closed:
                raise FileBusyError(
                    f"{str(self.path)!r} is already open in {first!r} (one open writer per "
                    "file): close that sink first (its pipeline's close(), or the end of "
                    "its `with` block), or write to another file"
                )
            self._claimed = key, _lock(self.path)
            _writers[key] = weakref.ref(self)

    def _abandon(self) -> None:
        """Undoes what `__init__` set up, for a subclass whose own setup failed."""
        flusher.forget(self)
        lifecycle.forget(self)
        self._release()

    def _release(self) -> None:
        """Lets another writer open the file."""
        with _writers_lock:
            if self._claimed is None:
                return
            key, fd = self._claimed
            self._claimed = None
            owner = _writers.get(key)
            if owner is not None and owner() in (self, None):
                del _writers[key]
            if fd is not None:
                os.close(fd)  # releases the lock

    def _size(self) -> int:
        """The file's size on disk, as this sink's run sees it (0 until a file that is to be
        replaced is replaced)."""
        if getattr(self, "_replace_first", False) or not self.path.is_file():
            return 0
        return self.path.stat().st_size

    def _start_afresh(self) -> None:
        """Replaces the earlier run's file (mode="w"), once: at the first store or close;
        the earlier run's media folder goes, and its configuration file unless this run
        logged one."""
        self._drop_earlier_run()
        size = self.path.stat().st_size if self.path.is_file() else 0
        if size:
            os.truncate(self.path, 0)
        self._replace_first = False
        if not size:
            return
        warnings.warn(
            f"{type(self).__name__}: {self.path} held {size} bytes written before this sink "
            "was made; they are replaced (mode='w', the default). To append to a file, pass "
            "mode='a'; to resume a run, load its state (load_state_dict) before writing",
            UserWarning,
            stacklevel=2,
        )

    def _drop_earlier_run(self) -> None:
        """Removes the earlier run's media folder, and its configuration file unless this run
        logged one."""
        if not self.config:
            with contextlib.suppress(FileNotFoundError):
                self.config_path.unlink()
        if self.media_dir.is_dir():
            shutil.rmtree(self.media_dir, ignore_errors=True)

    @property
    def _rewrite_path(self) -> Path:
        """Where a rewrite of the file is made before it takes the file's place."""
        return self.path.with_name(f".{self.path.name}.rewrite")

    line_end = b"\n"
    """The last byte of every line the sink writes: a checkpoint's position follows one."""

    def _replace_with(self, temporary: Path) -> None:
        """Puts the file `temporary` in place of the sink's file atomically, keeping the
        one-writer lock (the new file is locked before it takes the name)."""
        claimed = self._claimed
        fd = _lock(temporary) if claimed is not None and claimed[1] is not None else None
        try:
            os.replace(temporary, self.path)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        if claimed is not None and fd is not None:
            self._claimed = claimed[0], fd
            os.close(claimed[1])  # type: ignore[arg-type]

    def _repair_tail(self) -> int:
        """Cuts off what a crash left of a last row; returns the number of bytes removed."""
        return repair_torn_tail(self.path)

    def write(self, data: Record) -> None:
        if self.closed:
            self._check_open()
        pending = self._pending
        if not pending:
            self._oldest = self._clock() if self.flush_seconds is not None else 0.0
        row = dict(data)
        if not IMMUTABLE_TYPES.issuperset(map(type, row.values())):
            row = self._held_row(row)
        pending.append(row)
        if len(pending) >= self.flush_every or (
            self.flush_seconds is not None and self._clock() - self._oldest >= self.flush_seconds
        ):
            if self._retry_at and self._clock() < self._retry_at:
                self._bound_pending()
                return
            self.on_flush()

    def write_batch(self, columns: Columns) -> None:
        """Holds the batch's rows and stores them as row by row would: when it returns, the
        same rows are stored and the same rows held. The stores that rows would make one after
        another within the batch (every `flush_every` rows) are made as one, of up to
        `MERGED_STORE` rows, when `max_pending` is at least `flush_every`.

        With the `fast` extra (see `FAST`), a batch of numeric columns is held as columns
        (a `RowBlock`: no row dicts) and formatted as columns when stored; otherwise its rows
        are held as dicts (numeric numpy columns as Python numbers). The file is the same."""
        if self.closed:
            self._check_open()
        length = batch_length(columns)
        if not length:
            return
        masked = type(columns) is MaskedColumns
        block = (
            self._columns_held(columns, length)
            if not masked or self.blocks_take_absent
            else None
        )
        if block is not None and masked:
            block.masked = True
        if block is None:
            rows = batch_rows(columns, python_scalars=True)
            if masked:  # None cells: keys absent in their rows
                rows = list(map(present, rows))
            if not self._beside.media_held:
                self._beside.media_held = _holds_media(columns)

            def held(start: int, stop: int) -> Iterable[Any]:
                return rows[start:stop]
        else:
            if not self._held_blocks:
                self._held_blocks = True  # set before the first block is queued (see _store)
            whole = block

            def held(start: int, stop: int) -> Iterable[Any]:
                return repeat(whole.part(start, stop), stop - start)

        index = 0
        failure: StoreError | None = None
        while index < length:
            pending = self._pending
            if not pending:
                self._oldest = self._clock() if self.flush_seconds is not None else 0.0
            # row by row stores as soon as the held rows are due by time: with the next row
            due = self.flush_seconds is not None and (
                self._clock() - self._oldest >= self.flush_seconds
            )
            take = min(1 if due else max(self.flush_every - len(pending), 1), length - index)
            stores = due or len(pending) + take >= self.flush_every
            if stores and not due and self.max_pending >= self.flush_every:
                # the stores row by row would make one after another here: one store (a
                # column writer's cost per call is paid once; at most MERGED_STORE rows).
                # Not below flush_every held rows: storage down, row by row holds up to
                # flush_every rows between drops, a merged run would drop others. Not a
                # store due by time: its rows end at the row that made it due, and a
                # failed merged store is retried in runs of flush_every from its start.
                more = min(length - index - take, MERGED_STORE - len(pending) - take)
                take += max(more, 0) // self.flush_every * self.flush_every
            deferred = stores and (
                failure is not None or bool(self._retry_at and self._clock() < self._retry_at)
            )
            # The rows a store takes are held first, as `write` holds its row: a Ctrl-C or
            # SIGTERM as the store begins leaves them held, not lost.
            pending.extend(held(index, index + take))
            index += take
            if not stores:
                continue
            if deferred:
                self._bound_pending()
                continue
            try:
                self.on_flush()
            except StoreError as error:
                failure = error  # every row of the batch is held all the same
        if failure is not None:
            raise failure

    blocks_take_absent = False
    """Whether `_store` stores a masked `RowBlock` (a None cell: the key absent in its row) as
    it stores the rows without those keys; otherwise such a batch is held as row dicts."""

    def _columns_held(self, columns: Columns, length: int) -> RowBlock | None:
        """The batch as a block of columns this sink can store as columns (a copy: the caller
        may reuse its arrays), or None to hold it as row dicts. A sink that formats blocks
        (`_store` takes them) returns `numeric_block(...)` when its fast path is on."""
        return None

    @staticmethod
    def numeric_block(columns: Columns, length: int) -> RowBlock | None:
        """The batch as a block when every key is text and every column is one `held_column`
        takes; else None. Arrays are copied."""
        held: dict[str, Any] = {}
        for key, column in columns.items():
            if type(key) is not str:
                return None
            kept = held_column(column)
            if kept is None:
                return None
            held[key] = kept
        return RowBlock(held, length)

    def on_flush(self) -> None:
        if not self._pending:
            return
        # Rows taken off `_pending` and their storing noted must go together: a SIGTERM or
        # Ctrl-C in between would lose them or store them twice.
        with lifecycle.signals_deferred(), self._store_lock:
            self._store_pending()

    def _store_pending(self) -> None:
        """Stores the held rows (under the store lock)."""
        pending = self._pending
        rows = list(map(deque.popleft, repeat(pending, len(pending))))
        if not rows:
            return
        try:
            if self._replace_first:
                self._start_afresh()
            if self._beside.media_held:
                self._store_media(rows)
            stored = self._store_runs(rows)
        except OSError as error:  # storage is down: keep every row not yet stored
            if isinstance(error, _PartlyStored):
                self.rows_written += error.stored
                rows = rows[error.done :]
                error = error.__cause__  # type: ignore[assignment]
            pending.extendleft(reversed(rows))
            aside = self._beside
            aside.retry_delay = min(max(1.0, aside.retry_delay * 2), 60.0)
            self._retry_at = self._clock() + aside.retry_delay
            self._bound_pending()
            self._storage.note(error)
            self._storage.queued = len(pending)
            raise StoreError(
                f"{self!r} could not store {len(rows)} rows "
                f"({type(error).__name__}: {error}); they are kept and retried"
            ) from error
        if pending:  # rows written while these were stored
            self._oldest = self._clock()
        self._retry_at = self._beside.retry_delay = 0.0
        self._storage.queued = 0
        self.rows_written += stored

    def _store_runs(self, rows: list[dict[str, Any]]) -> int:
        """Stores `rows`; returns how many were stored. When storage refuses more than
        `flush_every` rows at once (a disk with less room left than they take), they are
        stored `flush_every` at a time, as written row by row they would have been, until
        storage refuses one run: the runs before it are stored (`_PartlyStored`)."""
        try:
            return self._store_each_value(rows)
        except _PartlyStored:
            raise
        except OSError:
            run = self.flush_every
            if len(rows) <= run:
                raise
        # as row dicts: a run may end inside a block, whose references stand for its last rows
        each = held_rows(rows)
        stored = 0
        for start in range(0, len(each), run):
            try:
                stored += self._store_each_value(each[start : start + run])
            except _PartlyStored as partly:
                raise _PartlyStored(
                    start + partly.done, stored + partly.stored, partly.__cause__  # type: ignore[arg-type]
                ) from partly.__cause__
            except OSError as error:
                raise _PartlyStored(start, stored, error) from error
        return stored

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
        for index, row in enumerate(held_rows(rows)):
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
                    self._storage.note(problem)
                    self.counts.note(
                        "lost",
                        f"a row could not be written even as text ({type(problem).__name__}: "
                        f"{problem}); the other rows are",
                        stacklevel=5,
                    )
            except OSError as error:
                raise _PartlyStored(index, stored, error) from error
        return stored

    def node_state(self) -> dict[str, Any]:
        """Adds the file's durable position (bytes and rows on disk) and the rows held, all
        taken in one hold of the store lock, so no store by the flusher falls in between."""
        with self._store_lock:
            state = super().node_state()
            state["file"] = {
                "bytes": self._size(),
                "rows": self.rows_written,
                "held": held_rows(list(self._pending)),
                "held_for": self._clock() - self._oldest if self._pending else 0.0,
                "afresh": self._replace_first,
            }
            self._add_state(state)
        return state

    def _add_state(self, state: dict[str, Any]) -> None:
        """Adds a subclass's part to `node_state`'s (called under the store lock)."""

    def _taken(self) -> int:
        """Records this sink took: stored, held, or counted lost (a store moves a record
        from held to stored, a drop from held to lost: neither changes the sum)."""
        return self.rows_written + len(self._pending) + self.counts["lost"]

    def continue_file(self) -> None:
        """Appends to the file from here on instead of replacing it, as `mode="a"` would: for
        a process that takes a run over, such as a restarted Ray hub rebuilding its sinks.
        Changes nothing once the sink has stored (its own file is then being written) or when
        it was made with `mode="a"`. A last line torn by the crash is cut off."""
        with self._store_lock:
            if not self._replace_first:
                return
            self._replace_first = False
            removed = self._repair_tail()
            self._continued()
        if removed:
            warnings.warn(
                f"{type(self).__name__}: {self.path} ended in a torn line ({removed} bytes, "
                "left by a crash); it was cut off before appending",
                stacklevel=2,
            )

    def _continued(self) -> None:
        """Called by `continue_file` (under the store lock) once the file is to be appended
        to: a format with a header reads it here."""

    def fresh(self) -> bool:
        """Nothing written yet, or nothing since a state was loaded (a sink shared by two
        pipelines takes the state of each: they are of one checkpoint)."""
        return self._taken() == (self._restored or 0)

    def load_node_state(self, state: dict[str, Any]) -> None:
        """Cuts the file back to its checkpointed position (rows written after the
        checkpoint go) and holds again the rows that were held; the file is appended to from
        there (a new file is not started, whatever the mode).

        A sink shared by two pipelines gets the state twice, once from each pipeline's: the
        second, of the same checkpoint, changes nothing; one of another moment (records
        reached the sink between the two `state_dict()` calls) is refused with a ValueError."""
        saved = state["file"]
        taken = saved["rows"] + len(saved["held"]) + state["counts"]["counts"].get("lost", 0)
        if self._restore_once(taken):
            return
        super().load_node_state(state)
        with self._store_lock:
            self._drop_handle()
            self._replace_first = False
            # a header rewrite a crash cut short leaves its temporary file
            self._rewrite_path.unlink(missing_ok=True)
            if saved.get("afresh"):  # stored nothing yet: the earlier run's files go, as at
                self._drop_earlier_run()  # the first store of the run not interrupted
            if self.path.is_file():
                self._cut_back(saved)
            self.rows_written = saved["rows"]
            self._pending.clear()
            self._pending.extend(saved["held"])
            self._oldest = self._clock() - saved["held_for"]
            self._beside.media_held = bool(saved["held"])
            self._beside.media_base = None  # counted again from the file, if media need it
            if not self.config:
                self.config = self._read_config()

    def _cut_back(self, saved: dict[str, Any]) -> None:
        size, cut = self.path.stat().st_size, saved["bytes"]
        if size < cut:
            raise ValueError(
                f"{self.path} holds {size} bytes, fewer than the {cut} it held at the "
                "checkpoint: it is not the file this state was taken from"
            )
        with self.path.open("rb+") as handle:
            if cut:
                handle.seek(cut - 1)
                if handle.read(1) != self.line_end:
                    raise ValueError(
                        f"{self.path}: the checkpoint's position ({cut} bytes) falls inside a "
                        "line: the rows before it were written again otherwise since (by a "
                        "process resumed from an earlier checkpoint, with other settings); "
                        "this state no longer fits the file"
                    )
            handle.truncate(cut)

    def flush_due(self) -> float | None:
        """Seconds until the held rows are due for storing (<= 0: now); None if none are."""
        if not self._pending or self.flush_seconds is None or self.closed:
            return None
        now = self._clock()
        return max(self._oldest + self.flush_seconds, self._retry_at) - now

    def flush_on_time(self) -> None:
        """Stores the held rows now (called by the flusher thread when they are due). A
        failure keeps them for the next try, as any flush does, and is warned about once
        (no caller is there to raise it to)."""
        try:
            self.on_flush()
        except Exception as error:
            if self._storage.errors == 1:  # the first failure, and no write met it
                warn_failure(self, error, stacklevel=2)

    @property
    def storage_failures(self) -> Failures | None:
        """What storing cost so far: the storage errors met, the rows held for retry while
        storage fails, the rows lost (`counts["lost"]`); None while nothing failed."""
        storage = self._storage
        return storage if storage.errors or self.counts["lost"] else None

    # -- configuration and media -----------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration given by `log_config` (one level of `/`-joined names,
        plain values), as `config_path` holds it."""
        return self._beside.config

    @config.setter
    def config(self, values: dict[str, Any]) -> None:
        self._beside.config = values

    @property
    def config_path(self) -> Path:
        """The run's configuration file: `<file name>.config.json` beside the data file."""
        return self.path.with_name(self.path.name + ".config.json")

    @property
    def media_dir(self) -> Path:
        """The folder of the run's images and videos: `<file name>.media/` beside the data
        file."""
        return self.path.with_name(self.path.name + ".media")

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Merges the configuration into `config` and rewrites `config_path` atomically
        when a value is new or changed (see the class's docstring)."""
        if self.closed:
            self._check_open()
        with self._store_lock:  # not while a first store removes an earlier run's file
            if merge_config(self.config, config, self.counts) or (
                self.config and not self.config_path.exists()
            ):
                self._write_config()

    def _write_config(self) -> None:
        target = self.config_path
        temporary = target.with_name(f".{target.name}.tmp")
        try:
            with temporary.open("w", encoding="utf-8") as handle:
                handle.write(config_text(self.config))
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()

    def _read_config(self) -> dict[str, Any]:
        """The configuration file's values (none if there is no such file or it holds no
        JSON object)."""
        try:
            values = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return values if isinstance(values, dict) else {}

    def _held_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row (`row`, a dict made for it) that holds more than plain scalars, with its
        values made safe from the caller as `snapshot_record` makes them; notes in the same
        pass whether it holds media (a row of plain scalars never comes here). One look-up
        per value type: numpy scalars, which `snapshot` returns as they are, cost less than
        a call to it."""
        for key, value in row.items():
            kind = type(value)
            if kind in COPIED_TYPES:
                row[key] = snapshot(value)
            elif kind in MEDIA_TYPES:  # immutable: copied when made
                self._beside.media_held = True
            elif kind not in IMMUTABLE_TYPES and not isinstance(value, np.generic):
                row[key] = snapshot(value)  # a tensor, a set, a dict subclass, ...
        return row

    def _store_media(self, rows: list[dict[str, Any]]) -> None:
        """Writes the images and videos of `rows` to files and puts each one's relative
        path in its place (under the store lock, before the rows are stored). An OSError
        (storage down) leaves the rows to be tried again, as any store's."""
        base = self._beside.media_base
        if base is None:
            base = self._beside.media_base = max(self._rows_on_disk() - self.rows_written, 0)
        first = base + self.rows_written
        folder = self.media_dir
        for index, row in enumerate(rows):
            # a RowBlock (numeric columns held as they are) holds no media
            if type(row) is not dict or MEDIA_TYPES.isdisjoint(map(type, row.values())):
                continue
            for key, value in list(row.items()):
                kind = type(value)
                if kind not in MEDIA_TYPES:
                    continue
                relative = f"{self._media_name(key)}/{first + index}{MEDIA_SUFFIX[kind]}"
                target = folder / relative
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    value.save(target)
                except OSError:
                    raise
                except MediaExtraMissing as missing:
                    del row[key]
                    self.counts.note(
                        "dropped", f"{key!r}: {missing}", key=key, category=UserWarning
                    )
                    continue
                except Exception as error:  # a figure that cannot be drawn, ...
                    del row[key]
                    self.counts.note(
                        "lost",
                        f"{key!r}: {value!r} could not be written ({type(error).__name__}: "
                        f"{error})",
                        key=key,
                    )
                    continue
                row[key] = f"{folder.name}/{relative}"
        self._beside.media_held = False

    def _media_name(self, key: Any) -> str:
        """The folder (under `media_dir`) of a key's media: the key's `/`-parts with other
        characters than letters, digits, `.`, `_`, `-` as `_`, and a hash of the key when
        any changed."""
        name = self._beside.media_names.get(key)
        if name is None:
            given = str(key)
            parts = [
                "_" if part in ("", ".", "..") else re.sub(r"[^\w.-]", "_", part, flags=re.ASCII)
                for part in given.split("/")
            ]
            name = "/".join(parts)
            if name != given:
                name += f"-{zlib.crc32(given.encode('utf-8', 'surrogatepass')):08x}"
            self._beside.media_names[key] = name
        return name

    def _rows_on_disk(self) -> int:
        """The rows the data file holds (its lines; CsvSink: its rows under the header)."""
        if not self._size():
            return 0
        with self.path.open("rb") as handle:
            return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))

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
        """Writes `rows` to the file (all of them, or none: see `_append`). When the sink
        holds blocks (`_columns_held`), `rows` may hold RowBlock references too (one per row:
        `held_segments` groups them)."""
        raise NotImplementedError

    def _writable(self, value: Any) -> bool:
        """Whether `_store` can write `value` as it is (else it is written as `_as_text`)."""
        return False

    def _as_text(self, value: Any) -> Any:
        """What a value `_store` cannot write is written as: its text, by default."""
        return text(value)

    def _append(self, text: str | bytes | memoryview) -> None:
        """Appends `text` (UTF-8 bytes, or text) to the file with no user-space buffer; on
        failure, truncates the file back to its size before the append and re-raises."""
        if self._file is None:
            self._file = io.FileIO(self.path, "a")
        handle = self._file
        start = handle.seek(0, os.SEEK_END)
        view = memoryview(text.encode("utf-8") if isinstance(text, str) else text)
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
        try:
            with self._store_lock:  # a store by the flusher thread ends first ...
                if self._replace_first:  # a new run that stored nothing: still a new file
                    with contextlib.suppress(OSError):
                        self._start_afresh()
            if self._pending:  # ... and what it could not store gets one more try
                with contextlib.suppress(StoreError):
                    self.on_flush()
            self._drop_handle()
            if self._pending:
                left = len(self._pending)
                self.counts["lost"] += left
                self._storage.queued = 0
                self._pending.clear()
                raise StoreError(
                    f"{self!r}: {left} rows could not be stored before close; lost"
                )
        finally:
            self._release()

    @property
    def lost(self) -> int:
        """Rows that could not be stored (`counts["lost"]`)."""
        return self.counts["lost"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def _holds_media(columns: Columns) -> bool:
    """Whether a batch holds an image or a video (numeric columns cannot: not looked at)."""
    return any(
        numeric(column) is None and not MEDIA_TYPES.isdisjoint(map(type, column))
        for column in columns.values()
    )


class _Beside:
    """What a file sink keeps off its hot path: the run's configuration, its media files'
    bookkeeping and the storage retry's back-off (one attribute of the sink: CPython 3.11
    keeps an object's attributes out of a dict only while they are fewer than 30)."""

    __slots__ = ("config", "media_base", "media_held", "media_names", "retry_delay")

    def __init__(self) -> None:
        self.retry_delay = 0.0  # seconds before storing is tried again, after a failure
        self.config: dict[str, Any] = {}
        self.media_held = False  # some held row may hold an image or a video
        self.media_base: int | None = 0  # rows the file held before this sink's (None: count)
        self.media_names: dict[Any, str] = {}  # key -> its folder under the media folder
