"""Partial mode: senders ship each window's partial statistics instead of its records.

When the hub's central pipeline begins with an AggregateFilter (after KeepKeys/DropKeys, if
any) whose windows the hub cuts (`hub.flush()`, `seconds=`; not `every=`), a sender adds the
values of each key the aggregate matches into per-key buffers and, at its usual shipping
times (`batch_size` records, `flush_seconds`, flush, close), ships one `PartialEntry` (a
`filters.partials.Partial` per key, the last value of every other key, the number of records)
instead of the records, in the same numbered batches: the hub's per-(stream, seq)
de-duplication and acknowledgement cover it. The hub merges it into the aggregate's open
window (`AggregateFilter.add_partials`): the window's mean/std/min/max/sum/count are those of
all its records (Chan's merge), its median and percentiles exact with `Hub(exact=True)` and
within the KLL sketch's rank error (`filters.partials.RANK_ERROR`) otherwise.

Windows by step (`every_steps=N`, the window id `floor(step / N)` every worker shares): a
sender keeps its partials per window id and ships one `PartialEntry` per window, tagged with
its id and largest step. The hub merges each into that window (its aggregate holds several
windows open at once), notes that the stream reported it, and emits windows in id order once
every live stream delivered its part (shipped the window after going on to a later one,
shipped a later window, or ended), or once `window_deadline` passed since their first
partial arrived; a partial of a window already emitted is late (counted in the stream's
`late` and refused, never merged into another window).

Record mode stays for: windows cut by `every=` (a partial cannot be split between two
windows, and only the hub knows where the count falls), a pipeline that does not begin with
an aggregate, a median or percentile without datasketches and without `exact=True`, and,
inside partial mode, a record holding a matching key whose value is not a real number (that
record is shipped as it is, in order) and column batches (`write_batch`).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from filters.aggregate import AggregateFilter, step_number
from filters.keys import DropKeys, KeepKeys
from filters.partials import Partial, has_sketches, needs_quantiles
from pipeline.core.keys import KeyMatcher
from pipeline.core.node import Node, Record
from pipeline.core.values import IMMUTABLE_TYPES, snapshot, to_float

__all__ = ["Accumulator", "PartialEntry", "PartialPlan", "apply_entry", "key_filters",
           "leading_aggregate", "passes", "plan_of"]


@dataclass(frozen=True)
class PartialPlan:
    """What the hub tells its senders: the aggregate's `regex` and `stats`, whether the
    partials carry the values (`exact`) or a sketch (`sketch`), and the key filters before
    the aggregate (`("keep" | "drop", regex)`, in order)."""

    regex: str
    stats: tuple[str, ...]
    exact: bool
    sketch: bool
    filters: tuple[tuple[str, str], ...] = ()
    every_steps: int | None = None  # windows by step: a window per block of steps
    step_key: str = "steps"

    def describe(self) -> str:
        kind = "exact values" if self.exact else "KLL sketch" if self.sketch else "moments"
        windows = ("" if self.every_steps is None else
                   f", windows by step: every {self.every_steps} of {self.step_key!r}")
        return f"partials of keys matching {self.regex!r} ({kind}{windows})"


def plan_of(
    pipeline: Node, *, exact: bool = False
) -> tuple[PartialPlan | None, AggregateFilter | None, str]:
    """The partial plan of a central pipeline, its aggregate, and the mode in words (why
    records, when it is record mode)."""
    node, filters = leading_aggregate(pipeline)
    if node is None:
        return None, None, "records (the pipeline does not begin with an aggregate)"
    if node.every is not None:
        return None, None, (
            f"records (the aggregate cuts windows every {node.every} records; a partial "
            "cannot be split between two windows)"
        )
    quantiles = needs_quantiles(node.stats)
    if quantiles and not exact and not has_sketches():
        return None, None, (
            "records (a median or percentile of partials needs datasketches: "
            "pip install 'rlpipe[hub]', or Hub(exact=True))"
        )
    plan = PartialPlan(node.match.regex, node.stats, exact, quantiles and not exact,
                       tuple(filters), node.every_steps, node.step_key)
    return plan, node, plan.describe()


def leading_aggregate(
    pipeline: Node,
) -> tuple[AggregateFilter | None, list[tuple[str, str]]]:
    """The aggregate a central pipeline begins with (after key filters, if any), and those
    key filters (`("keep" | "drop", regex)`, in order); None if it begins otherwise."""
    node, filters = pipeline, []
    while True:
        children = node.children
        if len(children) != 1:
            return None, []
        node = children[0]
        if isinstance(node, (KeepKeys, DropKeys)):
            filters.append(("keep" if isinstance(node, KeepKeys) else "drop", node.match.regex))
            continue
        if not isinstance(node, AggregateFilter):
            return None, []
        return node, filters


KeyFilters = list[tuple[bool, KeyMatcher]]
"""Key filters as `(keep, matcher)`, in order (see `key_filters`)."""


def key_filters(filters: Sequence[tuple[str, str]]) -> KeyFilters:
    """The key filters `("keep" | "drop", regex)` of `leading_aggregate`, compiled."""
    return [(kind == "keep", KeyMatcher(regex)) for kind, regex in filters]


def passes(filters: KeyFilters, key: str) -> bool:
    """Whether `key` gets through the key filters to the aggregate."""
    return all(match(key) == keep for keep, match in filters)


class PartialEntry:
    """One shipping's partials of a stream: a `Partial` per matching key, the last value of
    every other key, the keys in the order they first appeared, the records they stand for;
    with windows by step, the window id (None: records without a step only), the largest
    step, how many records had no usable step, and whether the stream's part of the window
    is complete (it had gone on to a later window when it shipped)."""

    __slots__ = ("complete", "last", "order", "partials", "records", "step", "stepless",
                 "window")

    def __init__(self, partials: dict[str, Partial], last: dict[str, Any],
                 order: tuple[str, ...], records: int, window: int | None = None,
                 step: Any = None, stepless: int = 0, complete: bool = False) -> None:
        self.partials = partials
        self.last = last
        self.order = order
        self.records = records
        self.window = window
        self.step = step
        self.stepless = stepless
        self.complete = complete

    def __reduce__(self) -> tuple[Any, ...]:
        if self.window is None and not self.stepless:
            return (PartialEntry, (self.partials, self.last, self.order, self.records))
        return (PartialEntry, (self.partials, self.last, self.order, self.records,
                               self.window, self.step, self.stepless, self.complete))

    def __repr__(self) -> str:
        window = "" if self.window is None else f"window {self.window}, "
        return f"PartialEntry({window}{self.records} records, {sorted(self.partials)})"


def apply_entry(aggregate: AggregateFilter, entry: PartialEntry) -> bool:
    """Merges a sender's partials into the hub's aggregate; False (nothing merged) when
    their window by step was emitted already (late)."""
    if aggregate.every_steps is None:
        aggregate.add_partials(entry.partials, entry.last, entry.records, entry.order)
        return True
    return aggregate.add_partials(entry.partials, entry.last, entry.records, entry.order,
                                  window=entry.window, step=entry.step,
                                  stepless=entry.stepless)


_Route = tuple[tuple[str, ...], tuple[str, ...]]


class Accumulator:
    """A sender's partials of the records written since it last shipped: each matching
    key's values buffered as 8-byte floats (NaN kept, counted by the partial), the last
    value of every other key, the key order; `take_windows()` turns them into
    `PartialEntry`s. With windows by step (`plan.every_steps`), all that per window id: a
    record goes into its step's window, a record without a usable step into the window of
    the record before it (the first window, at the start), counted in its entry's
    `stepless`; a step key that the plan's key filters take out is no step (the aggregate
    does not see it in record mode)."""

    def __init__(self, plan: PartialPlan) -> None:
        self.plan = plan
        self._match = KeyMatcher(plan.regex)
        self._filters = key_filters(plan.filters)
        self._routes: dict[tuple[str, ...], _Route] = {}
        self._window: int | None = None  # the id of the window being added to
        self._windows: dict[int | None, _WindowStash] = {}  # the other windows since `take`
        self._reset()
        # the aggregate sees the records its key filters pass: a step key they drop is no step
        self._sees_step = passes(self._filters, plan.step_key)
        if plan.every_steps is not None:
            self.add = self._add_stepped  # type: ignore[method-assign]

    def _reset(self) -> None:
        self._columns: dict[str, array[float]] = {}
        self._merged: dict[str, Partial] = {}  # partials merged in whole (a relay's)
        self._last: dict[str, Any] = {}
        self._order: dict[str, None] = {}
        self.records = 0
        self._top: Any = None  # with windows by step: the window's largest step
        self._top_number: int | float | None = None
        self._stepless = 0

    def _add_stepped(self, data: Record) -> bool:
        """`add` with windows by step."""
        plan = self.plan
        assert plan.every_steps is not None
        step = data.get(plan.step_key) if self._sees_step else None
        number = step_number(step)
        if number is not None:
            window = number // plan.every_steps if type(number) is int else math.floor(
                number / plan.every_steps)
            if window != self._window:
                self._switch(window)
        if not Accumulator.add(self, data):
            return False
        if number is None:
            self._stepless += 1
        elif self._top_number is None or number > self._top_number:  # a copy as written
            self._top, self._top_number = (
                step if type(step) in IMMUTABLE_TYPES else snapshot(step)), number
        return True

    def _switch(self, window: int | None) -> None:
        """Makes `window` the one added to (what was added before any step joins it)."""
        if self._window is None and self.records and window not in self._windows:
            self._window = window
            return
        self._windows[self._window] = self._stash()
        stash = self._windows.pop(window, None)
        if stash is not None:
            self._unstash(stash)
        self._window = window

    def _stash(self) -> _WindowStash:
        """The window being added to, taken out (it becomes empty)."""
        stash = (self._columns, self._merged, self._last, self._order, self.records, self._top,
                 self._top_number, self._stepless)
        self._reset()
        return stash

    def _unstash(self, stash: _WindowStash) -> None:
        """Makes a stashed window the one added to (the one added to must be empty)."""
        (self._columns, self._merged, self._last, self._order, self.records, self._top,
         self._top_number, self._stepless) = stash

    def _route(self, keys: tuple[str, ...]) -> _Route:
        """The keys of a record that the key filters pass, split into those the aggregate
        matches and the others (cached per key tuple)."""
        numbers: list[str] = []
        others: list[str] = []
        for key in keys:
            if passes(self._filters, key):
                (numbers if self._match(key) else others).append(key)
        route = self._routes[keys] = (tuple(numbers), tuple(others))
        if len(self._routes) > 1024:
            self._routes.clear()
        return route

    def add(self, data: Record) -> bool:
        """Takes one record; False (and takes nothing) when a matching key holds a value that
        is not a real number or None: that record goes as a record."""
        keys = tuple(data)
        route = self._routes.get(keys)
        if route is None:
            route = self._route(keys)
        numbers, others = route
        values = []
        for key in numbers:
            x = data[key]
            if type(x) is not float:
                if x is None:
                    continue
                x = to_float(x)
                if x is None:
                    return False
            values.append((key, x))
        columns = self._columns
        new = False
        for key, x in values:
            column = columns.get(key)
            if column is None:
                column = columns[key] = array("d")
                new = True
            column.append(x)
        last = self._last
        for key in others:
            value = data[key]
            if value is not None:
                if key not in last:
                    new = True
                last[key] = value if type(value) in IMMUTABLE_TYPES else snapshot(value)
        if new:  # (rare) keys enter the order as record mode's: by record, then by position
            order = self._order
            for key in keys:
                if data[key] is not None and (key in columns or key in last):
                    order.setdefault(key)
        self.records += 1
        return True

    def merge(self, entry: PartialEntry) -> None:
        """Takes a whole PartialEntry (a relay merging its node's senders' partials) into its
        window; its partials become this accumulator's."""
        if self.plan.every_steps is not None:
            if entry.window is not None and entry.window != self._window:
                self._switch(entry.window)
            self._stepless += entry.stepless
            number = step_number(entry.step)
            if number is not None and (self._top_number is None or number > self._top_number):
                self._top, self._top_number = entry.step, number
        order, merged = self._order, self._merged
        for key in entry.order:
            order.setdefault(key)
        for key, partial in entry.partials.items():
            mine = merged.get(key)
            if mine is None:
                merged[key] = partial
            else:
                mine.merge(partial)
        self._last.update(entry.last)
        self.records += entry.records

    def take_windows(self) -> list[PartialEntry]:
        """The partials of the records taken since the last take: one entry per window by
        step, in id order (one entry without windows by step; none if no record)."""
        if self.plan.every_steps is None:
            entry = self.take()
            return [] if entry is None else [entry]
        current = self._window
        windows, self._windows = self._windows, {}
        if self.records:
            windows[current] = self._stash()
        entries = []
        for window in sorted(windows, key=lambda window: -math.inf if window is None
                             else window):
            self._unstash(windows[window])
            self._window = window
            entry = self._entry()
            if entry is not None and window is not None and current is not None:
                entry.complete = window < current
            if entry is not None:
                entries.append(entry)
        self._reset()
        self._window = current  # a record without a step joins it
        return entries

    def take(self) -> PartialEntry | None:
        """The partials of the records taken since the last `take` (None if none); without
        windows by step (else `take_windows`)."""
        if self.plan.every_steps is not None:
            raise ValueError("a plan with windows by step ships one entry per window: "
                             "take_windows()")
        return self._entry()

    def _entry(self) -> PartialEntry | None:
        if not self.records:
            return None
        plan = self.plan
        partials = {
            key: Partial.from_values(np.frombuffer(column, dtype=np.float64),
                                     exact=plan.exact, sketch=plan.sketch)
            for key, column in self._columns.items()
        }
        for key, partial in self._merged.items():
            mine = partials.get(key)
            partials[key] = partial if mine is None else partial.merge(mine)
        entry = PartialEntry(partials, self._last, tuple(self._order), self.records,
                             self._window, self._top, self._stepless)
        self._reset()
        return entry


_WindowStash = tuple[dict[str, "array[float]"], dict[str, Partial], dict[str, Any],
                     dict[str, None], int, Any, "int | float | None", int]
"""A window's state in an Accumulator while another is added to."""
