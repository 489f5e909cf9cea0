"""`rlpipe tail`: a live terminal view of the latest values of a running experiment.

Follows a CSV file (CsvSink), a JSON Lines file (JsonlSink), a Spinning Up `progress.txt`, or a
run folder (every such file in it, including files that appear later; a folder of run folders
shows them all) and shows, per file, the number of rows, how long ago it changed and the
latest value of every key (marked `~` when the latest row did not have it). Only complete rows
are read: a row still being written is picked up at the next refresh. Reading is incremental
(only the bytes appended since the last refresh), and a file that is replaced (CsvSink rewrites
its file with a wider header through an atomic `os.replace` when a new key appears) or
truncated is read again from its start.

On a terminal the view is redrawn in place every `--interval` seconds; otherwise (a pipe, a log
file) a new view is printed each time a file changed. Ctrl-C stops it cleanly (exit status 0).
`--once` prints one view and exits; `--max-updates N` and `--timeout SECONDS` bound a run.

Any bytes are shown without an error (see `pipeline.cli.runfiles`): text that is not UTF-8 with
U+FFFD in place of the bad bytes, rows that cannot be parsed skipped, and keys and values with
line breaks or escape sequences escaped (`\\n`, `\\x1b`). These are one line on stderr and exit
status 2 (`pipeline.cli.errors`): a file given by name that is not a run file (README.md: the
check `rlpipe plot` makes, `pipeline.cli.runfiles.check_given_file`); a path that does not
exist or a folder without run files, with `--once` or when `--timeout`/`--max-updates` ends a
run that never found one; `--keys` matching none of the keys the files have; a file that cannot
be read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from pipeline.cli.errors import DEBUG_HELP, describe, fail, printable
from pipeline.cli.runfiles import (
    NO_RUN_FILES,
    check_given_file,
    csv_rows,
    file_format,
    json_record,
    run_files,
)

PROG = "rlpipe tail"

CHUNK = 1 << 22
"""At most this many bytes are read per read call (a large file is read in pieces)."""


class Follower:
    """Follows one file as it grows and keeps the latest value of every key.

    `poll()` reads the complete rows appended since the last call and returns whether anything
    changed. After `poll()`: `keys` (first-seen order), `latest` (key -> the text of its last
    non-empty value), `last_keys` (the keys the last row set), `rows`, `mtime`. A missing file
    is no error: it has no rows until it appears; a file that cannot be read raises OSError."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._reset()

    def _reset(self) -> None:
        self._offset = 0
        self.keys: list[str] = []
        self.latest: dict[str, str] = {}
        self.last_keys: set[str] = set()
        self.rows = 0
        self.mtime: float | None = None

    def poll(self) -> bool:
        """Reads what was appended; re-reads from the start a replaced or truncated file."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        identity = (stat.st_dev, stat.st_ino)
        changed = False
        if identity != self._identity or stat.st_size < self._offset or self._replaced():
            self._identity = identity
            if self._offset or self.rows or self.keys:
                changed = True
            self._reset()
        if stat.st_mtime != self.mtime:
            self.mtime = stat.st_mtime
        if stat.st_size == self._offset:
            return changed
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:  # removed since `stat`
            return changed
        with handle:
            handle.seek(self._offset)
            pending = b""
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    break
                data = pending + chunk
                used = self._consume(data)
                self._offset += used
                pending = data[used:]
                changed = changed or used > 0
        return changed

    def _replaced(self) -> bool:
        """Whether the file's start no longer holds what was read there (CSV: the header)."""
        return False

    def _consume(self, data: bytes) -> int:
        """Takes the complete rows at the start of `data`; returns how many bytes they span."""
        raise NotImplementedError

    def _take(self, record: Mapping[str, Any]) -> None:
        self.rows += 1
        self.last_keys = set()
        for key, value in record.items():
            if value is None or value == "":
                continue
            if key not in self.latest:
                self.keys.append(key)
            self.latest[key] = value if isinstance(value, str) else json.dumps(value)
            self.last_keys.add(key)


class DelimitedFollower(Follower):
    """Follows a CSV file (or a tab-separated Spinning Up progress.txt): the first row is the
    header; a header that changes (a wider one, rewritten in place) means reading again."""

    def __init__(self, path: str | os.PathLike[str], delimiter: str = ",") -> None:
        self.delimiter = delimiter
        self._header_bytes = b""
        self._header: list[str] | None = None
        super().__init__(path)

    def _reset(self) -> None:
        super()._reset()
        self._header_bytes = b""
        self._header = None

    def _replaced(self) -> bool:
        if not self._header_bytes:
            return False
        try:
            with self.path.open("rb") as handle:
                return handle.read(len(self._header_bytes)) != self._header_bytes
        except FileNotFoundError:
            return False

    def _consume(self, data: bytes) -> int:
        used = 0
        start = 0
        quotes = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                return used
            quotes += data.count(b'"', start, end)
            start = end + 1
            if quotes % 2:  # a line break inside a quoted cell: the row goes on
                continue
            self._row(data[used:start])
            used = start
            quotes = 0

    def _row(self, raw: bytes) -> None:
        text = raw.decode("utf-8" if self._header else "utf-8-sig", errors="replace")
        for cells in csv_rows(text, self.delimiter):  # several when a lone CR ends a row
            if self._header is None:
                self._header = [cell.strip() for cell in cells]
                self._header_bytes = raw
            elif cells:
                self._take(dict(zip(self._header, (cell.strip() for cell in cells), strict=False)))


class JsonlFollower(Follower):
    """Follows a JSON Lines file; nested objects are flattened with "/"; lines that are not
    JSON objects are skipped (`pipeline.cli.runfiles.json_record`)."""

    def _consume(self, data: bytes) -> int:
        end = data.rfind(b"\n")
        if end < 0:
            return 0
        for line in data[:end].split(b"\n"):
            record = json_record(line)
            if record is not None:
                self._take(record)
        return end + 1


def follower(path: Path) -> Follower:
    """The follower for a file, by its format (see `pipeline.cli.runfiles.file_format`)."""
    kind = file_format(path) if path.exists() else "csv"
    if kind == "jsonl":
        return JsonlFollower(path)
    return DelimitedFollower(path, "\t" if kind == "tsv" else ",")


class Tail:
    """Follows a file, a run folder (the data files in it, including ones created later) or a
    folder of runs (the data files of each sub-folder, when it has none itself)."""

    def __init__(self, path: str | os.PathLike[str], keys: str | None = None) -> None:
        self.path = Path(path)
        self.pattern = re.compile(keys) if keys else None
        self.followers: dict[Path, Follower] = {}

    def files(self) -> list[Path]:
        """The files followed now, in display order."""
        if not self.path.is_dir():
            return [self.path] if self.path.exists() else []
        direct = run_files(self.path)
        if direct:
            return direct
        folders = sorted(
            d for d in self.path.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        return [path for folder in folders for path in run_files(folder)]

    def poll(self) -> bool:
        """Reads what every file gained; returns whether anything changed."""
        changed = False
        for path in self.files():
            if path not in self.followers:
                self.followers[path] = follower(path)
                changed = True
        for one in self.followers.values():
            changed = one.poll() or changed
        return changed

    def keys(self) -> list[str]:
        """Every key the followed files have, in first-seen order."""
        return list(dict.fromkeys(key for one in self.followers.values() for key in one.keys))

    def shown_keys(self, follower: Follower) -> list[str]:
        """The keys of `follower` that the view shows: those `--keys` selects, or all."""
        if self.pattern is None:
            return follower.keys
        return [key for key in follower.keys if self.pattern.search(key)]

    def render(self, now: float | None = None, width: int = 100) -> str:
        """The view: per file, a title line (rows, time since it changed) and the latest value
        of each (selected) key; a key marked `~` was not in the file's latest row. Names, keys
        and values are `printable`."""
        now = time.time() if now is None else now
        if not self.followers:
            return f"waiting for {printable(str(self.path))} ..."
        blocks = []
        order = self.files()
        for path in [p for p in order if p in self.followers] + [
            p for p in self.followers if p not in order
        ]:
            one = self.followers[path]
            name = path.relative_to(self.path) if path != self.path else path.name
            age = "" if one.mtime is None else f", updated {_age(now - one.mtime)} ago"
            lines = [f"{printable(str(name))}: {one.rows} row{'s' * (one.rows != 1)}{age}"]
            keys = self.shown_keys(one)
            if one.keys and not keys:
                pattern = self.pattern.pattern if self.pattern is not None else ""
                lines.append(f"  (no key matches --keys {printable(pattern, width)})")
            shown = {key: printable(key, width) for key in keys}
            pad = min(max((len(k) for k in shown.values()), default=0), 48)
            for key in keys:
                mark = " " if key in one.last_keys else "~"
                value = printable(format_value(one.latest[key]), width)
                lines.append(f" {mark}{shown[key]:<{pad}}  {value}"[:width])
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)


def format_value(text: str) -> str:
    """A cell for display: numbers with at most 6 significant digits (integers whole)."""
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number == int(number) and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.6g}"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def follow(
    tail: Tail,
    out: TextIO,
    *,
    interval: float = 1.0,
    once: bool = False,
    max_updates: int | None = None,
    timeout: float | None = None,
    redraw: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Shows `tail`'s view on `out` until `once`, `max_updates` views or `timeout` seconds;
    returns the number of views shown. `redraw` (default: whether `out` is a terminal) redraws
    the view in place every interval; otherwise a view is printed only when a file changed."""
    if redraw is None:
        redraw = _isatty(out)
    deadline = None if timeout is None else clock() + timeout
    shown = 0
    first = True
    while True:
        changed = tail.poll()
        if first or changed or redraw:
            view = tail.render()
            if redraw:
                out.write("\x1b[H\x1b[J" + view + "\n")
            else:
                out.write(("" if first else "\n") + view + "\n")
            out.flush()
            shown += 1
            first = False
        if once or (max_updates is not None and shown >= max_updates):
            return shown
        if deadline is not None and clock() >= deadline:
            return shown
        sleep(interval if deadline is None else max(0.0, min(interval, deadline - clock())))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The options of `rlpipe tail`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Live view of the latest values in a CSV/JSONL/progress.txt file or a run "
        "folder, refreshed as the files grow. Ctrl-C stops it.",
        epilog=DEBUG_HELP,
    )
    parser.add_argument("path", metavar="RUN_OR_FILE", help="a file or a run folder")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between refreshes (1.0)"
    )
    parser.add_argument("--once", action="store_true", help="print the view once and exit")
    parser.add_argument("--keys", default=None, metavar="REGEX", help="show only matching keys")
    parser.add_argument(
        "--max-updates", type=int, default=None, metavar="N", help="exit after N views"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="exit after this long"
    )
    args = parser.parse_args(list(argv))
    if args.interval <= 0:
        parser.error("--interval must be > 0")
    if args.max_updates is not None and args.max_updates < 1:
        parser.error("--max-updates must be >= 1")
    if args.timeout is not None and args.timeout < 0:
        parser.error("--timeout must be >= 0")
    if args.keys:
        try:
            re.compile(args.keys)
        except re.error as error:
            parser.error(f"--keys is not a regular expression: {error}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `rlpipe tail`; returns the exit status: 0, also on Ctrl-C; 2 (with one line on
    stderr) for a file given by name that is not a run file, no file to show (with `--once`,
    or at the end of `--timeout`/`--max-updates`), `--keys` matching none of the files' keys,
    or a file that cannot be read."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tail = Tail(args.path, args.keys)
    try:
        if tail.path.is_file():
            check_given_file(tail.path)
        if args.once and not tail.files():
            return fail(PROG, _nothing_to_show(tail))
        follow(
            tail,
            sys.stdout,
            interval=args.interval,
            once=args.once,
            max_updates=args.max_updates,
            timeout=args.timeout,
        )
    except KeyboardInterrupt:  # the user stopped it: whatever it showed is the outcome
        if _isatty(sys.stdout):
            sys.stdout.write("\n")
        sys.stdout.flush()
        return 0
    except BrokenPipeError:  # stdout closed: not the input's fault
        raise
    except ValueError as error:  # not a run file
        return fail(PROG, str(error))
    except OSError as error:  # a file or folder that cannot be read
        return fail(PROG, describe(error))
    if not tail.followers:
        waited = "" if args.timeout is None else f" (waited {args.timeout:g} s)"
        return fail(PROG, _nothing_to_show(tail) + waited)
    keys = tail.keys()
    if keys and not any(tail.shown_keys(one) for one in tail.followers.values()):
        listed = ", ".join(printable(key, 80) for key in keys[:20])
        more = f", ... ({len(keys)} keys)" if len(keys) > 20 else ""
        return fail(PROG, f"--keys {args.keys!r} matches none of the keys: {listed}{more}")
    return 0


def _nothing_to_show(tail: Tail) -> str:
    reason = NO_RUN_FILES if tail.path.exists() else "no such file or folder"
    return f"{tail.path}: {reason}"


__all__ = [
    "DelimitedFollower",
    "Follower",
    "JsonlFollower",
    "Tail",
    "follow",
    "follower",
    "format_value",
    "main",
]
