"""How the `rlpipe` commands fail: one line on stderr and an exit status, never a traceback.

- A command's `main` reports the errors it expects with `fail`: bad input (a missing or
  unreadable file, a folder without run files, nothing to plot) is status 2, as argparse
  gives bad arguments; an output it cannot write is status 1.
- `guard`, which `rlpipe` runs every subcommand in, turns what is left into one line with
  status 1: a missing extra (an ImportError whose message says what to install: `install_hint`),
  an operating-system error, or a bug ("internal error: ..."). Ctrl-C is status 130.
- With the environment variable `RLPIPE_DEBUG=1`, `guard` raises those errors with their
  traceback instead (`DEBUG_HELP`, in every command's `--help`).

Text from a file (a column name, a cell) goes through `printable` before it is shown, so a
line break or an escape sequence in a file cannot break a message or a terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from pipeline.core.values import text

DEBUG_VARIABLE = "RLPIPE_DEBUG"
"""The environment variable that makes `guard` re-raise errors with their traceback."""

DEBUG_HELP = (
    f"Errors are reported in one line on stderr (status 2: bad arguments or input; 1: "
    f"anything else); set {DEBUG_VARIABLE}=1 to see the traceback of an unexpected one."
)
"""The `--help` epilog of every command."""

BAD_INPUT = 2
"""The exit status for bad arguments or input (argparse's)."""

FAILED = 1
"""The exit status for any other error: a missing extra, an output not written, a bug."""

INTERRUPTED = 130
"""The exit status after Ctrl-C (128 + SIGINT, as shells report it)."""

MESSAGE_LIMIT = 1000
"""A message is cut to this many characters."""


def install_hint(extra: str) -> str:
    """What to run to get a missing extra: rlpipe installs from its checkout (README), so
    `pip install -e '.[extra]'` there; `pip install 'rlpipe[extra]'` for an installed
    release."""
    return (
        f"pip install -e '.[{extra}]' in the rlpipe checkout "
        f"(or pip install 'rlpipe[{extra}]' for a release)"
    )


def printable(value: str, limit: int | None = None) -> str:
    """`value` as one line of printable characters: a line break, a tab, an escape sequence
    or any other character that is not printable becomes its escape (`\\n`, `\\x1b`); cut to
    `limit` characters, ending in `...`, when longer. Never raises."""
    if limit is not None and len(value) > limit:
        value = value[: limit + 1]  # escapes only lengthen it: enough to know it is cut
    if not value.isprintable():
        value = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
    if limit is not None and len(value) > limit:
        value = value[: max(limit - 3, 0)] + "..."
    return value


def describe(error: OSError) -> str:
    """An operating-system error as "<file>: <reason>" ("runs/a.csv: Permission denied")."""
    if error.filename is not None and error.strerror:
        return f"{text(error.filename)}: {error.strerror}"
    return text(error)


def fail(prog: str, message: str, status: int = BAD_INPUT) -> int:
    """Prints `<prog>: <message>` as one line on stderr; returns `status`."""
    print(f"{prog}: {printable(message, MESSAGE_LIMIT)}", file=sys.stderr, flush=True)
    return status


def debugging() -> bool:
    """Whether `RLPIPE_DEBUG` is set (to anything but empty or 0)."""
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def guard(prog: str, run: Callable[[], int]) -> int:
    """Runs a command and returns its status; an error it raises is one line on stderr and
    status 1 (see the module's docstring), or is re-raised when `debugging()`. Ctrl-C is
    "interrupted" and status 130. `SystemExit` (argparse, `--help`) passes through."""
    try:
        return run()
    except KeyboardInterrupt:
        return fail(prog, "interrupted", INTERRUPTED)
    except ImportError as error:  # a missing extra: its message says what to install
        if debugging():
            raise
        return fail(prog, text(error), FAILED)
    except OSError as error:
        if debugging():
            raise
        return fail(prog, describe(error), FAILED)
    except Exception as error:
        if debugging():
            raise
        return fail(
            prog,
            f"internal error: {type(error).__name__}: {printable(text(error), 300)} "
            f"(set {DEBUG_VARIABLE}=1 to see the traceback)",
            FAILED,
        )


__all__ = [
    "BAD_INPUT",
    "DEBUG_HELP",
    "DEBUG_VARIABLE",
    "FAILED",
    "INTERRUPTED",
    "debugging",
    "describe",
    "fail",
    "guard",
    "install_hint",
    "printable",
]
