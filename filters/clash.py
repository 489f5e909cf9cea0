"""What a filter does when a key it would add is one the record already holds."""

from __future__ import annotations

from pipeline.core.counts import Counts

CLASH = "clash"
"""The reason under which a filter counts the values it did not write over a caller's key."""


def kept_callers_key(counts: Counts, name: str, n: int = 1, *, stacklevel: int = 3) -> None:
    """Notes that a filter's output `name` is a key the record already holds: the record's own
    value is kept, the filter's `n` values are not written; counted in `counts["clash"]` (per
    name in `counts.by_key["clash"]`) and warned about once per name."""
    counts.note(
        CLASH,
        f"the record already holds {name!r}: its own value is kept and this filter's value "
        "is not written (rename the caller's key or the filter's output)",
        key=name,
        n=n,
        category=UserWarning,
        stacklevel=stacklevel,
    )
