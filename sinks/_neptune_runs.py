"""Neptune runs shared by several NeptuneSinks: who writes each series, who may stop a run,
and when.

A run a sink made is stopped when that sink has closed and no other open sink writes into it,
so that none of them writes into a stopped run. A run the caller made is never stopped here.
Each series path of a run is written by the first sink that claimed it, so that two sinks
(the same prefix on one run) never interleave their steps in one series.
"""

from __future__ import annotations

import threading
from typing import Any


class RunUsers:
    """How many open sinks write into one run, whether the sink that made it has closed (the
    run is then stopped when the last of them closes), and which sink writes each series."""

    def __init__(self) -> None:
        self.open = 0
        self.stop_when_unused = False
        self.writers: dict[str, object] = {}
        """Series path -> the sink that claimed it, while any sink on the run is open."""

    def claim(self, path: str, sink: object) -> object:
        """The sink that writes the series at `path`: `sink` if it is the first to claim it."""
        with _lock:
            return self.writers.setdefault(path, sink)


_users: dict[int, RunUsers] = {}
"""By `id(run)`; an entry lives while a sink holding the run is open."""
_lock = threading.Lock()


def join(run: Any) -> RunUsers:
    """Counts one more open sink writing into `run`; returns the run's users."""
    with _lock:
        users = _users.setdefault(id(run), RunUsers())
        users.open += 1
        return users


def leave(run: Any, users: RunUsers, *, made_it: bool) -> bool:
    """Counts a closing sink out of `run`'s users (`made_it`: the sink made the run); True
    when the run is to be stopped now: its maker has closed and no other sink on it is open."""
    with _lock:
        users.open -= 1
        if made_it:
            users.stop_when_unused = True
        if users.open > 0:
            return False
        if _users.get(id(run)) is users:
            del _users[id(run)]
        return users.stop_when_unused
