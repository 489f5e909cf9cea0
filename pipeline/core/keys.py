"""Key matching: which metric names a regex selects, decided once per name; and the rule for
an output name that clashes with a key the record holds."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pipeline.core.counts import Counts
from pipeline.core.values import text

CACHE_LIMIT = 65_536
"""Entries a per-key cache holds before it starts afresh: memory stays bounded however many
distinct keys a run writes."""


class KeyMatcher:
    """Tells whether a metric name matches a regex (`re.search`), caching the answer per name.

    The regex is compiled once; each distinct key is searched once (while at most
    `CACHE_LIMIT` answers are kept), so the hot path costs a dict lookup.
    """

    __slots__ = ("_cache", "pattern", "regex")

    def __init__(self, regex: str | re.Pattern[str], *, argument: str = "regex") -> None:
        try:
            self.pattern: re.Pattern[str] = re.compile(regex)
        except (re.error, TypeError) as error:
            message = f"{argument}={regex!r} is not a valid regular expression: {error}"
            raise ValueError(message) from None
        self.regex = self.pattern.pattern
        self._cache: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        try:
            return self._cache[key]
        except KeyError:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            matched = self._cache[key] = self.pattern.search(str(key)) is not None
            return matched

    def __repr__(self) -> str:
        return f"KeyMatcher({self.regex!r})"


def clashes(keys: Iterable[Any], names: Iterable[str]) -> tuple[bool, ...]:
    """For each name a node would add to a record holding `keys` (in order), whether it
    clashes: the record holds a key of that text (`1` and `"1"` are one name in every sink),
    or an earlier name of `names` is the same text.

    The rule for every node that adds keys to a record (SmoothingFilter's
    `<key>_smoothed_<coeff>`, AggregateFilter's `<key>_<stat>`, and any node that adds a
    derived or constant key): the caller's key, or the earlier of two equal names, is kept;
    the node's value under a clashing name is not written, and each value not written is
    counted with `note_clash` (warned once per name). Nothing is overwritten silently.

    Call it once per key tuple (when a plan for that tuple is made), not per write: a plan
    without a clash then costs nothing more."""
    held = {text(key) for key in keys}
    out = []
    for name in names:
        shown = text(name)
        out.append(shown in held)
        held.add(shown)
    return tuple(out)


def note_clash(counts: Counts, name: str, n: int = 1, *, stacklevel: int = 3) -> None:
    """Counts `n` values a node did not write under `name` because the record already holds
    that name (see `clashes`), in `counts["clashed"]` (per name in `counts.by_key`); warns
    once per name."""
    counts.note(
        "clashed",
        f"{name!r} is already a key of the record (the caller's, or the output of an earlier "
        "key of the same text): that value is kept and this node's value is not written "
        "(rename the key, or change the node's regex)",
        key=name,
        n=n,
        category=UserWarning,
        stacklevel=stacklevel + 1,
    )
