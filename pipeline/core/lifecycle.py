"""Closing pipelines that the program did not close: at interpreter exit and on SIGTERM."""

from __future__ import annotations

import atexit
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from pipeline.core.node import Node

_open: dict[int, Node] = {}
_installed = False
_lock = threading.Lock()


def track(node: Node) -> None:
    """Keeps `node` (a Pipeline, or a sink holding rows: a file sink, a RemoteSink) to be
    closed at interpreter exit or on SIGTERM if it is still open then."""
    global _installed
    with _lock:
        _open[id(node)] = node
        first = not _installed
        _installed = True
    if first:
        atexit.register(close_all)
    if not take_sigterm() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        _warn_no_sigterm()


_warned_no_sigterm = False


def _warn_no_sigterm() -> None:
    global _warned_no_sigterm
    if _warned_no_sigterm:
        return
    _warned_no_sigterm = True
    warnings.warn(
        "rlpipe: rlpipe was first imported off the main thread, so it could not take SIGTERM "
        "(Python lets only the main thread set signal handlers): on SIGTERM, held rows would "
        "be lost. Import rlpipe on the main thread, or call "
        "pipeline.core.lifecycle.take_sigterm() there.",
        RuntimeWarning,
        stacklevel=4,
    )


def take_sigterm() -> bool:
    """Installs rlpipe's SIGTERM handler if nobody else handles SIGTERM (it is SIG_DFL) and
    this is the main thread (the only one that may); returns whether it is installed.

    SIGTERM's default kills the process without running atexit, which would lose every held
    row. The handler exits through `SystemExit(143)` (so open nodes are closed) while any
    tracked node is open, and otherwise does what the default does. It is installed when
    rlpipe's core is first imported on the main thread, so a pipeline made later on another
    thread is covered too."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm:
        return True
    if current is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def close_before_exit_handlers_so_far() -> None:
    """Makes the exit handler that closes open pipelines run before every `atexit` handler
    registered until now (atexit runs handlers last registered first).

    For a client that registers its own exit handler when it makes something the pipelines
    write into, such as a Neptune run that stops itself at exit: the sink calls this once that
    run exists, so the pipelines' last records (an aggregate's last window) reach the run
    before the client stops it. Does nothing until a pipeline is tracked; `track` registers
    the handler after any run made earlier."""
    with _lock:
        if not _installed:
            return
        atexit.unregister(close_all)
        atexit.register(close_all)


def forget(node: Node) -> None:
    """Stops tracking a node that was closed."""
    with _lock:
        _open.pop(id(node), None)


def close_all() -> None:
    """Closes every tracked pipeline still open: those no other one feeds into first, so an
    aggregate's last window reaches sinks that are still open."""
    with _lock:
        pending = list(_open.values())
    inner = {id(node) for outer in pending for node in outer.nodes()[1:]}
    for node in sorted(pending, key=lambda n: id(n) in inner):
        if node.closed:
            continue
        try:
            node.close()
        except Exception as error:  # exiting: report, and close the others
            warnings.warn(f"rlpipe: closing {node!r} at exit failed: {error!r}", RuntimeWarning,
                          stacklevel=1)


_DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Holds back SIGINT and SIGTERM while the block runs, then lets them act as they would
    have (their handlers, as set before the block, are called once it ends).

    For a step that must not be cut in two, such as a file sink storing rows and noting that
    they are stored: a Ctrl-C or a SIGTERM in between would lose the rows or store them
    twice. Python runs signal handlers on the main thread only, so elsewhere this does
    nothing; it costs a few system calls (one flush, not one record)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, signal._HANDLER] = {}

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    try:
        for signum in _DEFERRED:
            handler = signal.getsignal(signum)
            # None: a handler not set from Python, which cannot be put back; SIG_IGN: nothing
            # to hold back
            if handler is not None and handler is not signal.SIG_IGN:
                previous[signum] = handler
                signal.signal(signum, hold)
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)  # its own handler acts now, as it would have


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    with _lock:
        anything_open = any(not node.closed for node in _open.values())
    if anything_open:
        raise SystemExit(128 + signum)
    signal.signal(signum, signal.SIG_DFL)  # nothing to close: die as the default would
    os.kill(os.getpid(), signum)


take_sigterm()
