"""A batch that Ray could not serialize, taken apart: the records that pickle, and the rest.

A sender ships each batch as the arguments of one Ray call; a record holding a value that
cannot be pickled (a lock, an open file, a generator) fails the whole call. Only then, off the
write path, are the batch's entries pickled one by one (a column batch: its columns, then the
values of a column that fails) to keep every record that pickles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.integrations.ray.support import first_line

__all__ = ["Picklable", "picklable_part"]


class Picklable:
    """What `picklable_part` found: the entries to ship, the records left out, the first
    pickling error (`Type: message`)."""

    __slots__ = ("entries", "error", "left_out")

    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.left_out = 0
        self.error = ""

    def fails(self, dumps: Callable[[Any], Any], value: Any) -> bool:
        """True if `value` cannot be pickled by `dumps`; the first such error is kept."""
        try:
            dumps(value)
        except Exception as error:
            self.error = self.error or f"{type(error).__name__}: {first_line(error)}"
            return True
        return False


def picklable_part(entries: list[Any], dumps: Callable[[Any], Any]) -> Picklable:
    """The batch `entries` (records, and `(columns, rows)` column batches) without the records
    that `dumps` cannot pickle, in order. A column batch keeps its rows whose values all
    pickle; a column batch with none left is left out whole."""
    found = Picklable()
    for entry in entries:
        if type(entry) is not tuple:  # a record, or a PartialEntry (counted as its records)
            if not found.fails(dumps, entry):
                found.entries.append(entry)
            elif type(entry) is dict:
                found.left_out += 1
            else:
                found.left_out += _partial_part(found, entry, dumps)
            continue
        columns, rows = entry
        if not found.fails(dumps, entry):
            found.entries.append(entry)
            continue
        bad: set[int] = set()
        for column in columns.values():
            if found.fails(dumps, column):
                bad.update(i for i in range(rows) if found.fails(dumps, column[i]))
        if not bad:  # each part pickles, the whole does not (a key?): leave it out whole
            found.left_out += rows
            continue
        found.left_out += len(bad)
        keep = [i for i in range(rows) if i not in bad]
        if keep:
            kept = {key: _rows_of(column, keep) for key, column in columns.items()}
            found.entries.append((kept, len(keep)))
    return found


def _partial_part(found: Picklable, entry: Any, dumps: Callable[[Any], Any]) -> int:
    """A PartialEntry that does not pickle: when the culprits are last values of keys the
    aggregate does not match, each came from one record, which record mode would have lost
    whole; the entry is shipped without them, one record counted lost per value (its
    numbers stay in the partials). Returns the records left out (all, should it still fail)."""
    bad = [key for key, value in entry.last.items() if found.fails(dumps, value)]
    left_out = min(len(bad), entry.records)
    if bad and left_out < entry.records:
        kept = type(entry)(entry.partials,
                           {key: value for key, value in entry.last.items() if key not in bad},
                           entry.order, entry.records - left_out)
        if not found.fails(dumps, kept):
            found.entries.append(kept)
            return left_out
    return int(entry.records)


def _rows_of(column: Sequence[Any], keep: list[int]) -> Any:
    """The values of `column` at the indices `keep`, as an array for an array."""
    if isinstance(column, np.ndarray):
        return column[keep]
    return [column[i] for i in keep]
