"""Counts: what a node set aside (dropped, skipped, lost, ...), counted and warned about once."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

from pipeline.core.values import text

WARNED_KEYS_LIMIT = 10_000
"""Distinct (reason, key) pairs remembered as warned; beyond that, warnings are per reason."""


class Counts(Counter[str]):
    """A node's bookkeeping of what it did not pass on as written: a count per reason.

    Reasons used across rlpipe: `dropped` (by design: a throttle, a full queue, a refused
    key), `skipped` (a value that is not a finite number, passed on unchanged), `nan` (left out
    of statistics), `overwritten` (two keys became one name), `clashed` (a node's output name
    is a key the record holds, which is kept: see `pipeline.core.keys.clashes`), `changed`
    (stored in another form than written, where the storage cannot hold it), `lost` (could
    not be stored),
    `errors` (raised while writing downstream). A missing reason counts 0.

    `note()` counts and warns the first time a reason meets a key (or, without a key, the
    first time the reason occurs); `by_key[reason]` holds the per-key counts of the reasons
    noted with a key. Hot paths that need no warning may do `counts[reason] += 1`.
    """

    # Counter's own (Python) __delitem__ routes every `counts[reason] += 1` through CPython's
    # slow item-assignment slot; dict's keeps it at C speed (deleting a missing reason raises)
    __delitem__ = dict.__delitem__  # type: ignore[assignment]
    """dict's (a missing reason raises KeyError): Counter's own, in Python, sends every store
    (`counts[reason] += 1`, a hot path's count) through CPython's slow generic slot."""

    def __init__(self, owner: str = "") -> None:
        super().__init__()
        self.owner = owner
        self.by_key: dict[str, Counter[str]] = {}
        self._warned: set[tuple[str, str | None]] = set()

    def note(
        self,
        reason: str,
        message: str,
        *,
        key: object = None,
        n: int = 1,
        category: type[Warning] = RuntimeWarning,
        stacklevel: int = 2,
        warn: bool = True,
    ) -> None:
        """Counts `n` under `reason` (and under `key`, if given); warns `message` the first
        time this reason meets this key, unless `warn` is False (expected by design)."""
        self[reason] += n
        name = None if key is None else text(key)
        if name is not None:
            per_key = self.by_key.get(reason)
            if per_key is None:
                per_key = self.by_key[reason] = Counter()
            per_key[name] += n
        if not warn:
            return
        token = (reason, name)
        if token in self._warned:
            return
        if len(self._warned) >= WARNED_KEYS_LIMIT:
            if (reason, None) in self._warned:
                return
            token = (reason, None)
        self._warned.add(token)
        once = "warned once per key" if name is not None else "warned once"
        warnings.warn(
            f"{self.owner}: {message} (counted in .counts[{reason!r}]; {once})",
            category,
            stacklevel=stacklevel + 1,
        )

    def state(self) -> dict[str, Any]:
        """The counts as plain data (for a checkpoint)."""
        return {
            "counts": dict(self),
            "by_key": {reason: dict(keys) for reason, keys in self.by_key.items()},
            "warned": sorted(self._warned, key=repr),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Takes the counts back from `state()`: a restarted run warns no second time."""
        self.clear()
        self.update(state["counts"])
        self.by_key = {reason: Counter(keys) for reason, keys in state["by_key"].items()}
        self._warned = {(reason, key) for reason, key in state["warned"]}

    def __reduce__(self) -> tuple[Any, ...]:
        """For pickle and copy: the counts, per key counts and warnings with the owner
        (Counter's own passes the counts as the first argument, `owner` here, and keeps
        nothing)."""
        state = {"by_key": self.by_key, "_warned": self._warned}
        return type(self), (self.owner,), state, None, iter(dict(self).items())

    def copy(self) -> Counts:
        """A shallow copy (Counter's own passes the counts as `owner`: an empty copy)."""
        twin = type(self)(self.owner)
        twin.update(self)
        twin.by_key = {reason: Counter(keys) for reason, keys in self.by_key.items()}
        twin._warned = set(self._warned)
        return twin

    def __repr__(self) -> str:
        return f"Counts({dict(self)!r})"
