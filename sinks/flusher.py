"""One background thread that flushes held rows of every file sink on time."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Protocol

IDLE_WAKE = 0.5
"""Seconds between looks when no sink holds rows (a newly held row is seen within this)."""


class Timed(Protocol):
    def flush_due(self) -> float | None:
        """Seconds until its held rows are due (<= 0: now), or None when it holds none."""

    def flush_on_time(self) -> None:
        """Stores its held rows if they are due; never raises."""


_sinks: weakref.WeakSet[Timed] = weakref.WeakSet()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def watch(sink: Timed) -> None:
    """Flushes `sink` whenever its held rows are due, until `forget(sink)` (or it is gone),
    with no further write needed; one thread serves every sink."""
    global _thread
    with _lock:
        _sinks.add(sink)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="rlpipe-flusher", daemon=True)
            _thread.start()


def forget(sink: Timed) -> None:
    """Stops watching `sink`."""
    with _lock:
        _sinks.discard(sink)


def _run() -> None:
    global _thread
    while True:
        with _lock:
            sinks = list(_sinks)
            if not sinks:
                _thread = None
                return
        sleep = IDLE_WAKE
        for sink in sinks:
            due = sink.flush_due()
            if due is not None and due <= 0:
                sink.flush_on_time()
                due = sink.flush_due()
            if due is not None and due > 0:
                sleep = min(sleep, due)
        del sinks
        time.sleep(max(sleep, 0.001))
