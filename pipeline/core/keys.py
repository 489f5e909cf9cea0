"""Key matching: which metric names a regex selects, decided once per name."""

from __future__ import annotations

import re

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
