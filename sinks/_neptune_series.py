"""Which Neptune series each record key of a NeptuneSink writes: one key per series, ever."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sinks._neptune_clients import neptune_path
from sinks._neptune_runs import RunUsers
from sinks.remote import Names


class KeySeries:
    """The series of a sink's record keys, and the last step sent to each.

    A key's series is at `neptune_path(prefix, key)`, the path the client stores it at: the
    1.x client stores `a//b`, `a/b/` and `/a/b` all at `a/b`, and the keys `1` and `"1"` both
    land at `1`. Two keys in one series would mix two streams of steps (0, 1, 2, 0, 1, 2) or
    overwrite each other's values within a record, so a path has one writer: the first key
    that reaches it, in this sink (`Names`, shared by every tracking sink) or, for sinks
    sharing a run, in any sink on the run. A later key whose path is taken, whose path is
    empty (`""`, `"/"`) or one the client refuses (`check`), has no series.

    `by_key[key]` is the state of a string key: `[path, is_float, last_step]` for a key
    with a series (`is_float`: the kind of its first value; `last_step`: `-inf` until a
    value is sent), `[None, None, why]` for a key without one. Look a key up there first
    (the hot path); `new(key, is_float)` makes the state of a key not found there.
    """

    __slots__ = ("_others", "_sink", "_users", "by_key", "names", "prefix")

    def __init__(
        self,
        prefix: str,
        sink: object,
        users: RunUsers,
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        self.prefix = prefix

        def refusal(path: str) -> str | None:
            if not path:
                return "it names no Neptune path (it is empty, or only '/'); not sent"
            return None if check is None else check(path)

        self.names = Names(lambda key: neptune_path(prefix, key), refusal)
        self.by_key: dict[str, list[Any]] = {}
        self._others: dict[tuple[type, Any], list[Any]] = {}
        """Keys that are not strings, by type as well: 1, 1.0 and True are one dict key."""
        self._sink = sink
        self._users = users

    def new(self, key: Any, is_float: bool) -> list[Any]:
        """The state of `key`, not in `by_key`: made now (its path claimed on the run), or,
        for a key that is not a string (never kept in `by_key`), the one made before."""
        is_str = isinstance(key, str)
        if not is_str:
            known = self._others.get((type(key), key))
            if known is not None:
                return known
        path = self.names.new(key)
        why: str | None = None
        if path is None:
            why = self.names.why(key)
        else:
            writer = self._users.claim(path, self._sink)
            if writer is not self._sink:
                why = (
                    f"Neptune stores it at {path!r}, already written by {writer!r} on this "
                    "run; its values are not sent (two keys in one series would mix their steps)"
                )
        state: list[Any] = [path, is_float, -math.inf] if why is None else [None, None, why]
        if is_str:
            self.by_key[key] = state
        else:
            self._others[type(key), key] = state
        return state

    def key_of(self, path: str) -> Any:
        """The record key that writes the series at `path` (`path` if none does)."""
        return self.names.key_of(path)
