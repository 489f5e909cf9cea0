"""AggregateFilter: windowed statistics (mean/std/median/min/max) of buffered records."""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

import numpy as np

from filters.partials import Partial
from filters.statistics import (
    STATISTICS,
    check_stats,
    window_statistics,
)
from pipeline.core.columns import Columns, batch_length, iter_rows, numeric
from pipeline.core.keys import CACHE_LIMIT, KeyMatcher, clashes, note_clash
from pipeline.core.names import percentile_of, stat_name
from pipeline.core.node import Node, Record
from pipeline.core.values import IMMUTABLE_TYPES, shown, snapshot, to_float

_PLANS_LIMIT = 1024
"""Key tuples whose plan is cached per window."""
_FOLD_EVERY = 1024
"""Writes after which the values kept by plans are folded into the window's columns (bounds
the memory they take: a list slot and a float object each, against 8 bytes once folded)."""



class AggregateFilter(Node):
    """Buffers records and emits one record per window: `<key>_<stat>` for each key matching
    `regex` (`re.search`) and the last value of every other key.

    A window is emitted on `flush()`, after every `every` writes, when `seconds` have passed
    since the window's first write (checked on write), and on `close()`: the last window is
    never lost. An empty window emits nothing.

    Stats are computed over the window's real-number values of each key (ints, floats, bools,
    numpy/jax/torch scalars), which are buffered as 8-byte floats. Keys may come and go
    between writes: each key's stats cover the writes that had it. None means "no value" and
    is ignored. NaN values are left out of the stats and counted in `counts["nan"]` (per key in
    `counts.by_key["nan"]`, warned once per key); a key whose window held only NaN gets NaN
    stats. Infinities are included (so a mean may be inf). A matching key with a non-numeric
    value (a string, an array) passes its last value under its own name instead of statistics,
    counted in `counts["skipped"]` and warned about once per key.

    A statistic's name that the window's record already holds (a caller's own `x_mean`
    passed on as it is, or the statistic of an earlier key of the same text, `1` and `"1"`)
    keeps that value; the statistic is not written, counted in `counts["clashed"]` and warned
    once per name (see `pipeline.core.keys.clashes`).


    Available stats: mean, std (population), median, max, min, sum, count, and percentiles
    `pNN` or `pNN.N` with 0 < NN < 100 (`p5`, `p95`, `p99.9`), written as `<key>_p95`: exact
    over the window, as `np.percentile` (its default linear method). The window's values are
    sorted once for the median and all percentiles.

    Windows by step (`every_steps=N`): a window per block of N steps of the record's
    `step_key` value, window id `floor(step / N)` (a real, finite number; not a bool). Records
    are expected in step order: a window is emitted when a record of a later window arrives,
    on `flush()` and on `close()`; its row's `step_key` is the largest step of the window. A
    flush cuts the open window (as with `every=`): later records of its block make a second
    row for it. A record of a window older than the current one (already emitted) is counted
    in `counts["late"]` (warned once) and dropped, never merged into another window. A record
    without a usable step (missing, None, NaN, not a number) joins the current window (the
    first one, if none is open yet) and is counted in `counts["stepless"]` (warned once).
    Such windows take partials per window id (`add_partials(..., window=)`); a caller that
    cuts them itself (a Hub) calls `hold_windows()`: several windows stay open at once and
    are emitted, in id order, by `emit_windows(through)`, `flush()` and `close()`.
    """

    def __init__(
        self,
        regex: str = ".*",
        every: int | None = None,
        seconds: float | None = None,
        stats: Sequence[str] = ("mean", "std", "median", "max", "min"),
        *,
        clock: Callable[[], float] = time.monotonic,
        every_steps: int | None = None,
        step_key: str = "steps",
    ) -> None:
        super().__init__()
        if every_steps is not None:
            if isinstance(every_steps, bool) or not isinstance(every_steps, int) or (
                    every_steps < 1):
                raise ValueError(f"every_steps must be an int >= 1 or None, got {every_steps!r}")
            if every is not None or seconds is not None:
                raise ValueError(_BY_STEP)
        stats = check_stats(stats)
        self.match = KeyMatcher(regex)
        self.every = every
        self._seconds = _checked_seconds(seconds)
        self.stats = tuple(stats)
        self._clock = clock
        self._names: dict[str, tuple[str, ...]] = {}
        self.every_steps = every_steps
        self.step_key = step_key
        self._steps = None if every_steps is None else StepWindows(self, every_steps, step_key)
        self._reset()
        if self._steps is not None:
            self.write = self._steps.write  # type: ignore[method-assign]

    @property
    def every(self) -> int | None:
        """Records per window (None: no count limit)."""
        return self._every_n

    @every.setter
    def every(self, every: int | None) -> None:
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                                  or every < 1):
            raise ValueError(f"every must be an int >= 1 or None, got {every!r}")
        if every is not None and getattr(self, "_steps", None) is not None:
            raise ValueError(_BY_STEP)
        self._every_n = every
        self._every: float = math.inf if every is None else every
        if hasattr(self, "_writes"):
            self._set_due()

    def _reset(self) -> None:
        self._columns: dict[str, array[float]] = {}
        self._last: dict[str, Any] = {}
        self._order: dict[str, None] = {}
        # Plans keep a record's matching values in lists of floats per key (`_pending`) and
        # its other keys' values as one tuple (`_held`) until `_settle` folds them into the
        # window's columns (at C speed, many values at a time) and last values.
        if not hasattr(self, "_pending"):
            self._pending: dict[Any, list[float]] = {}
            self._held: list[Any] = [None]  # the current plan's other keys' values
            self._made: dict[tuple[Any, ...], _Plan] = {}  # key tuple -> plan, any window
        self._held[0] = None
        # key tuple of a record -> its plan, for key tuples whose every key is already in
        # this window's order and whose matching keys have their column
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._current: _Plan | None = None
        self._plan: Callable[[Record], None] = self._general
        self._writes = 0
        self._window_start = 0.0
        self._partials: dict[str, Partial] = {}
        self._set_due()

    @property
    def seconds(self) -> float | None:
        """Seconds per window, from its first write (None: no time limit)."""
        return self._seconds

    @seconds.setter
    def seconds(self, seconds: float | None) -> None:
        seconds = _checked_seconds(seconds)
        if seconds is not None and self._steps is not None:
            raise ValueError(_BY_STEP)
        self._settle()
        self._seconds = seconds
        self._made.clear()  # their writes count for one kind of window
        self._plans.clear()
        self._current = None
        self._plan = self._general

    def __getstate__(self) -> dict[str, Any]:
        """This node for pickle and copy: its window with the values its plans kept folded
        in, without the plans (functions made for this object: a copy writing through them
        would write into the original, and they do not pickle)."""
        self._settle()
        state = self.__dict__.copy()
        for name in ("_pending", "_held", "_made", "_plans", "_current", "_plan"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pending = {}
        self._held = [None]
        self._made = {}
        self._plans = {}
        self._current = None
        self._plan = self._general

    def _set_due(self) -> None:
        """The write count at which a plan's write calls `_reached`: the window's end, or
        `_FOLD_EVERY` writes since the last fold."""
        self._due = min(self._every, self._writes + _FOLD_EVERY)

    def write(self, data: Record) -> None:
        self._plan(data)

    def inlined_write(self) -> tuple[list[str], dict[str, object]] | None:
        """`write` as the call of the current plan, without a frame of its own."""
        return ["aggregate._plan(data)"], {"aggregate": self}

    def _general(self, data: Record) -> None:
        """`write` for a record that no plan takes."""
        self._settle()
        self._write_record(data)
        self._counted()

    def _counted(self) -> None:
        """Counts a write; emits the window when it is due, or folds the values kept."""
        writes = self._writes = self._writes + 1
        if self.seconds is None:
            if writes >= self._due:
                self._reached()
        else:
            self._timed(writes)

    def _reached(self) -> None:
        if self._writes >= self._every:
            self._emit_window()
        else:
            self._settle()
            self._set_due()

    def _timed(self, writes: int) -> None:
        seconds = self.seconds
        assert seconds is not None
        if writes == 1:
            self._window_start = self._clock()
        if writes >= self._every or self._clock() - self._window_start >= seconds:
            self._emit_window()
        elif writes >= self._due:
            self._settle()
            self._set_due()

    def _miss(self, data: Record) -> None:
        """A record the current plan does not take: another key tuple's plan, or the
        general path."""
        plan = self._plans.get(tuple(data)) if type(data) is dict else None
        if plan is None:
            self._general(data)
            return
        self._use(plan)
        plan.write(data)

    def _use(self, plan: _Plan) -> None:
        held = self._held[0]
        if held is not None:  # the values of the previous plan's other keys
            current = self._current
            assert current is not None
            self._last.update(zip(current.others, held, strict=False))
            self._held[0] = None
        self._current = plan
        self._plan = plan.write

    def _settle(self) -> None:
        """Folds the values kept by plans into the window's columns and last values: the
        window as if every record had been buffered at its write."""
        for key, values in self._pending.items():
            if values:
                self._columns[key].fromlist(values)
                values.clear()
        held = self._held[0]
        if held is not None:
            current = self._current
            assert current is not None
            self._last.update(zip(current.others, held, strict=False))
            self._held[0] = None

    def _write_record(self, data: Record) -> None:
        """The general path: any keys, any values; makes the plan of the record's key
        tuple once every key is in the window and every matching key has its column."""
        match = self.match
        columns = self._columns
        order = self._order
        for key, value in data.items():
            if value is None:
                continue
            if match(key):
                self._add(key, value)
            else:
                if key not in order:
                    order[key] = None
                self._last[key] = snapshot(value)
        if (type(data) is not dict or len(self._plans) >= _PLANS_LIMIT
                or any(key not in order for key in data)):
            return
        numbers = []
        others = []
        for key in data:
            if not match(key):
                others.append(key)
            elif key in columns:
                numbers.append(key)
            else:
                return
        keys = tuple(data)
        plan = self._made.get(keys)
        if plan is None:
            if len(self._made) >= _PLANS_LIMIT:  # no value is pending (settled)
                self._made.clear()
                self._pending.clear()
                self._plans.clear()  # their appends are to the lists just dropped
            for key in numbers:
                self._pending.setdefault(key, [])
            plan = self._made[keys] = _Plan(self, numbers, others,
                                            [data[key] for key in others])
        self._plans[keys] = plan
        self._use(plan)

    def _kept(self, key: Any, value: Any) -> None:
        """A plan's matching value that is not a float or is NaN, as `_add` takes it (into
        the key's pending values)."""
        if value is None:
            return
        x = to_float(value)
        if x is None:
            self._not_a_number(key, value)
        elif x == x:
            self._pending[key].append(x)
        else:
            self._nan(key)

    def _held_slowly(self, plan: _Plan, values: tuple[Any, ...]) -> None:
        """A plan's other keys' values when one is None or may change in place: each not
        None becomes its key's last value (a snapshot)."""
        held = self._held[0]
        last = self._last
        if held is not None:
            last.update(zip(plan.others, held, strict=False))
            self._held[0] = None
        for key, value in zip(plan.others, values, strict=False):
            if value is not None:
                last[key] = snapshot(value)

    def _add(self, key: str, value: Any) -> None:
        """Buffers one value of a matching key."""
        if value is None:
            return
        x = value if type(value) is float else to_float(value)
        column = self._columns.get(key)
        if column is None:
            if x is None:
                self._not_a_number(key, value)
                return
            column = self._columns[key] = array("d")
            if key not in self._order:
                self._order[key] = None
        if x is None:
            self._not_a_number(key, value)
        elif x == x:
            column.append(x)
        else:
            self._nan(key)

    def write_batch(self, columns: Columns) -> None:
        """Buffers whole columns at once (numpy columns without a per-row loop), cutting the
        batch where row by row a window would be emitted (every `every` rows; with `seconds`,
        the batch counts as written at one instant; with `every_steps`, row by row); same
        result as row by row."""
        length = batch_length(columns)
        if not length:
            return
        self._settle()
        if self._steps is not None:  # each row's window is its step's
            for row in iter_rows(columns):
                self._steps.write(row)
            return
        now = self._clock() if self.seconds is not None else 0.0
        start = 0
        while start < length:
            stop = length
            if self.every is not None:  # at least the row that ends the open window (which
                # may hold `every` records already: `every` set lower since it began)
                stop = min(stop, start + max(self.every - self._writes, 1))
            if self.seconds is not None:
                if not self._writes:
                    self._window_start = now
                elif now - self._window_start >= self.seconds:
                    stop = start + 1
            elif stop - start == self.every and self._windows_at_once(columns, start):
                start += (length - start) // self.every * self.every
                continue
            self._add_rows(columns, start, stop)
            self._writes += stop - start
            if (self.every is not None and self._writes >= self.every) or (
                self.seconds is not None and now - self._window_start >= self.seconds
            ):
                self._emit_window()
            start = stop
        self._set_due()

    def _add_rows(self, columns: Columns, start: int, stop: int) -> None:
        match = self.match
        order = self._order
        parts = {key: column[start:stop] for key, column in columns.items()}
        # Keys enter the window's order as row by row would: by the first row where they
        # have a value, then by column.
        new = []
        for position, (key, part) in enumerate(parts.items()):
            if key in order:
                continue
            first = 0 if numeric(part) is not None else _first_value(part)
            if first is not None:
                new.append((first, position, key))
        for _, _, key in sorted(new):
            order[key] = None
        for key, part in parts.items():
            if match(key):
                self._add_column(key, part)
            else:
                value = _last_value(part)
                if value is not None:
                    self._last[key] = snapshot(value)

    def _add_column(self, key: str, part: Any) -> None:
        values = numeric(part)
        if values is None and all(type(value) is float for value in part):
            values = np.array(part, dtype=np.float64)
        if values is None:
            for value in part:
                self._add(key, value)
            return
        values = values.astype(np.float64, copy=False)
        column = self._columns.get(key)
        if column is None:
            column = self._columns[key] = array("d")
            if key not in self._order:
                self._order[key] = None
        nan = np.isnan(values)
        nans = int(nan.sum())
        if nans:
            values = values[~nan]
            self._nan(key, nans)
        column.frombytes(np.ascontiguousarray(values).tobytes())

    def _windows_at_once(self, columns: Columns, start: int) -> bool:
        """Emits the whole windows of `every` rows from row `start` (an empty window's first
        row) as one batch, each statistic a column reduced with numpy on the rows of a
        (windows x every) matrix: when every column is numeric, the matching ones hold no
        NaN and no statistic's name clashes. The same values as window by window (the same
        reductions per row, one sort for the median and the percentiles); False, having done
        nothing, otherwise."""
        every = self.every
        assert every is not None
        if self._order or self._last or self._columns or self._writes:
            return False
        windows = (batch_length(columns) - start) // every
        stop = start + windows * every
        match = self.match
        matrices: dict[str, np.ndarray] = {}
        for key, column in columns.items():
            if numeric(column) is None:
                return False
            if match(key):
                matrix = np.asarray(column[start:stop], dtype=np.float64)
                if np.isnan(matrix).any():
                    return False
                matrices[key] = matrix.reshape(windows, every)
        names = [name for key in matrices for name in self._stat_names(key)]
        if any(clashes([key for key in columns if key not in matrices], names)):
            return False
        out: dict[str, Any] = {}
        for key, column in columns.items():
            window_rows = matrices.get(key)
            if window_rows is None:  # the last value of each window
                out[key] = column[start + every - 1 : stop : every].copy()
            else:
                out.update(zip(self._stat_names(key), _row_statistics(window_rows, self.stats),
                               strict=True))
        self.emit_batch(out)
        return True

    def add_partials(
        self,
        partials: Mapping[str, Partial],
        last: Mapping[str, Any] | None = None,
        records: int = 1,
        order: Sequence[str] | None = None,
        *,
        window: int | None = None,
        step: Any = None,
        stepless: int = 0,
    ) -> bool:
        """Merges partial statistics of some records (`filters.partials.Partial`, e.g. a
        Hub sender's) into the open window, as if those records had been written: each
        key's statistics then cover its values written here and in every partial merged
        (exact with exact partials; a sketched median or percentile within
        `filters.partials.RANK_ERROR` in rank). `last` holds the records' last value of each
        other key, `records` how many records the partials stand for, `order` the keys in
        the order they first appeared (default: the partials', then `last`'s). The partials
        become the window's (do not reuse them). Their NaN values are counted as written
        ones. A window cut by `every` takes no partial (a partial cannot be split between
        two windows): ValueError.

        With windows by step (`every_steps`), `window` is the partials' window id (None: the
        current window, as a record without a step), `step` their largest step, `stepless`
        how many of their records had no usable step (counted). A window already emitted
        takes nothing: False, the records counted in `counts["late"]`; True otherwise."""
        self._settle()
        steps = self._steps
        if steps is not None:
            if not steps.enter(window, records):
                return False
            steps.raise_top(step)
            if stepless:
                steps.stepless(stepless)
        if self._every_n is not None:
            raise ValueError(
                f"{self!r} cuts its windows every {self._every_n} records: a partial, which "
                "cannot be split between two windows, cannot be merged into it"
            )
        keys = order if order is not None else [*partials, *(last or {})]
        window_order = self._order
        for key in keys:
            if key not in window_order:
                window_order[key] = None
        own = self._partials
        for key, partial in partials.items():
            mine = own.get(key)
            if mine is None:
                own[key] = partial
            else:
                mine.merge(partial)
            if partial.nan:
                self._nan(key, partial.nan)
        if last:
            for key, value in last.items():
                if value is not None:
                    self._last[key] = snapshot(value)
        if not self._writes:
            self._window_start = self._clock()
        self._writes += max(records, 1)
        self._set_due()
        if self.seconds is not None and self._clock() - self._window_start >= self.seconds:
            self._emit_window()
        return True

    def hold_windows(self) -> None:
        """Windows by step are cut by the caller (a Hub): a record or partial of a later
        window no longer emits the earlier ones; `emit_windows`, `flush()` and `close()` do."""
        if self._steps is None:
            raise ValueError(f"{self!r} has no windows by step (every_steps) to hold")
        self._steps.holding = True

    def emit_windows(self, through: int) -> None:
        """Emits every open window by step whose id is at most `through`, in id order; a
        later partial or record of them is late."""
        if self._steps is not None:
            self._steps.emit_through(through)

    def stepless_window(self, window: int | None) -> None:
        """While a Hub holds the windows: the records without a usable step written next join
        `window` (their stream's current window; late if it was emitted), until a record with
        a step (of the same batch) names another; None: the open window."""
        if self._steps is not None:
            self._steps.stepless_to = window

    def window_emitted(self, window: int) -> bool:
        """Whether a window by step of this id was emitted (or an older one was cut off by a
        later window): a partial of it is late."""
        return self._steps is not None and self._steps.is_late(window)

    def _not_a_number(self, key: str, value: Any) -> None:
        last = self._last
        if key not in last and key not in self._order:
            self._order[key] = None
        last[key] = snapshot(value)
        self.counts.note(
            "skipped",
            f"{key!r} = {shown(value)} is not a real number; its last value is passed on as it is "
            "instead of statistics",
            key=key,
            category=UserWarning,
        )

    def _nan(self, key: str, count: int = 1) -> None:
        self.counts.note(
            "nan",
            f"{key!r} is NaN; NaN values are left out of the statistics",
            key=key,
            n=count,
            category=UserWarning,
        )

    @property
    def nan_counts(self) -> dict[str, int]:
        """NaN values left out of the statistics, per key (`counts.by_key["nan"]`)."""
        return dict(self.counts.by_key.get("nan", {}))

    def on_flush(self) -> None:
        if self._steps is not None:
            self._steps.emit_all()
        elif self._writes:
            self._emit_window()

    def fresh(self) -> bool:
        return not (self._writes or self._order or (self._steps and self._steps.held))

    def _stash(self) -> _Stash:
        """The open window's state, taken out (the window becomes empty)."""
        self._settle()
        stash = (self._columns, self._last, self._order, self._writes, self._window_start,
                 self._partials)
        self._reset()
        return stash

    def _unstash(self, stash: _Stash) -> None:
        """Makes a stashed window the open one (the open one must be empty)."""
        self._reset()
        (self._columns, self._last, self._order, self._writes, self._window_start,
         self._partials) = stash
        self._set_due()

    def node_state(self) -> dict[str, Any]:
        self._settle()
        state = super().node_state()
        state["window"] = {
            "columns": {key: np.frombuffer(column, dtype=np.float64).copy()
                        for key, column in self._columns.items()},
            "last": dict(self._last),
            "order": list(self._order),
            "writes": self._writes,
            "age": self._clock() - self._window_start if self._writes else 0.0,
        }
        if self._partials:  # merged partial statistics (a Hub's): copies, later merges
            state["window"]["partials"] = {  # change the window's, not the state's
                key: partial.copy() for key, partial in self._partials.items()}
        if self._steps is not None:
            state["steps"] = self._steps.state()
        return state

    def load_node_state(self, state: dict[str, Any]) -> None:
        super().load_node_state(state)
        window = state["window"]
        self._reset()
        self._columns = {key: array("d", values.tobytes()) for key, values in
                         window["columns"].items()}
        self._last = dict(window["last"])
        self._order = dict.fromkeys(window["order"])
        self._partials = {key: partial.copy()
                          for key, partial in window.get("partials", {}).items()}
        self._writes = window["writes"]
        self._window_start = self._clock() - window["age"]
        self._set_due()
        if self._steps is not None and "steps" in state:
            self._steps.load(state["steps"])

    def _emit_window(self) -> None:
        self._settle()
        columns, last, order, partials = self._columns, self._last, self._order, self._partials
        self._reset()
        out: dict[str, Any] = {}
        # A statistic's name that the window's record holds (a key passed on as it is, or
        # the statistic of an earlier key of the same text) keeps that value (`clashes`).
        clashed = clashes(
            last,
            [name for key in order if key in columns or key in partials
             for name in self._stat_names(key)],
        )
        flags = iter(clashed) if any(clashed) else None
        for key in order:
            column = columns.get(key)
            partial = partials.get(key) if partials else None
            if column is not None or partial is not None:
                names = self._stat_names(key)
                if partial is not None:
                    values = _merged_statistics(partial, column, self.stats)
                elif column is not None and len(column):
                    values = window_statistics(np.frombuffer(column, dtype=np.float64),
                                               self.stats)
                else:
                    values = [0 if stat == "count" else 0.0 if stat == "sum" else math.nan
                              for stat in self.stats]
                if flags is None:
                    out.update(zip(names, values, strict=True))
                else:
                    for name, value in zip(names, values, strict=True):
                        if next(flags):
                            note_clash(self.counts, name, stacklevel=4)
                        else:
                            out[name] = value
            if key in last:
                out[key] = last[key]
        self.emit(out)

    def _stat_names(self, key: str) -> tuple[str, ...]:
        """The names of `key`'s statistics, in the order of `stats` (cached per key)."""
        names = self._names.get(key)
        if names is None:
            if len(self._names) >= CACHE_LIMIT:
                self._names.clear()
            names = self._names[key] = tuple(stat_name(key, stat) for stat in self.stats)
        return names

    def __repr__(self) -> str:
        if self.every_steps is not None:
            return (f"AggregateFilter({self.match.regex!r}, every_steps={self.every_steps}, "
                    f"step_key={self.step_key!r})")
        return f"AggregateFilter({self.match.regex!r}, every={self.every}, seconds={self.seconds})"


_BY_STEP = "every_steps cuts windows by step: give it without every= and seconds="


def _checked_seconds(seconds: float | None) -> float | None:
    """`seconds` as a float, or None; a ValueError for anything but a number > 0 or None."""
    if seconds is not None and (not isinstance(seconds, (int, float)) or not seconds > 0):
        raise ValueError(f"seconds must be a number > 0 or None, got {seconds!r}")
    return None if seconds is None else float(seconds)


_Stash = tuple[dict[str, "array[float]"], dict[str, Any], dict[str, None], int, float,
               dict[str, Partial]]
"""An open window's state taken out of its AggregateFilter (`_stash`)."""


def step_number(value: Any) -> int | float | None:
    """A step as a number: an int for integers (exact however large), a float otherwise;
    None when `value` is no usable step (None, a bool, not a real number, NaN, infinite)."""
    if type(value) is int:
        return value
    if value is None or isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, np.integer):
        return int(value)
    x = to_float(value)
    if x is None or not math.isfinite(x):
        return None
    return x


def step_window(value: Any, every_steps: int) -> int | None:
    """The window id of a step: `floor(step / every_steps)`; None for no usable step."""
    number = step_number(value)
    if number is None:
        return None
    if type(number) is int:
        return number // every_steps
    return math.floor(number / every_steps)


class StepWindows:
    """An AggregateFilter's windows by step: the id of its open window, the largest step in
    it, the other open windows' state (only while a Hub holds them), the newest id emitted.

    Invariant: the open window has no id only while no other window is open (records
    without a step before the first window's; they join it)."""

    def __init__(self, aggregate: AggregateFilter, every_steps: int, step_key: str) -> None:
        self.aggregate = aggregate
        self.every_steps = every_steps
        self.key = step_key
        self.current: int | None = None
        self.top: Any = None  # the largest step of the open window (as written)
        self.top_number: int | float | None = None
        self.held: dict[int, tuple[_Stash, Any]] = {}
        self.emitted: int | None = None
        self.holding = False
        # while held (a Hub): the window a record without a step joins (its stream's current
        # one, see AggregateFilter.stepless_window); None: the open window
        self.stepless_to: int | None = None
        self._buffer = AggregateFilter.write.__get__(aggregate)  # the window's own write

    def write(self, data: Record) -> None:
        """AggregateFilter.write for windows by step: the record goes into its step's
        window (emitting the windows before it), unless that window is late."""
        step = data.get(self.key)
        number = step if type(step) is int else step_number(step)
        if number is None:
            self.stepless(1)
            if not self.enter(self.stepless_to if self.holding else None, 1):
                return
        else:
            window = number // self.every_steps if type(number) is int else math.floor(
                number / self.every_steps)
            if self.holding:  # the records without a step after it, in its batch, join it
                self.stepless_to = window
            if window != self.current and not self.enter(window, 1):
                return
            if self.top_number is None or number > self.top_number:  # a copy of it as
                self.top, self.top_number = (  # written (a counter may change in place)
                    step if type(step) in IMMUTABLE_TYPES else snapshot(step)), number
        self._buffer(data)

    def stepless(self, records: int) -> None:
        self.aggregate.counts.note(
            "stepless",
            f"a record without a usable {self.key!r} (a finite real number) joins the current "
            "window",
            n=records,
            category=UserWarning,
        )

    def raise_top(self, step: Any) -> None:
        number = step_number(step)
        if number is not None and (self.top_number is None or number > self.top_number):
            self.top, self.top_number = (
                step if type(step) in IMMUTABLE_TYPES else snapshot(step)), number

    def is_late(self, window: int) -> bool:
        if self.emitted is not None and window <= self.emitted:
            return True
        return not self.holding and self.current is not None and window < self.current

    def enter(self, window: int | None, records: int) -> bool:
        """Makes `window` the open one (None: a record without a step, which joins the
        current window, or the newest held one); False, the records counted late, when that
        window was emitted already."""
        if window is None:
            if self.current is None and self.held:
                self.switch(max(self.held))
            return True
        if window == self.current:
            return True
        if self.is_late(window):
            self.aggregate.counts.note(
                "late",
                f"records of window {window!r} ({self.key} {window * self.every_steps} to "
                f"{(window + 1) * self.every_steps - 1}) came after that window was emitted "
                "(late): dropped, not merged into another window",
                n=records,
                category=UserWarning,
            )
            return False
        if not self.holding and self.current is not None:
            self.emit_through(window - 1)
        self.switch(window)
        return True

    def _open_is_empty(self) -> bool:
        aggregate = self.aggregate
        return not (aggregate._writes or aggregate._order)

    def switch(self, window: int) -> None:
        """Stashes the open window (if it has an id) and opens `window` (a held one, or a
        new one; the open window without an id becomes it)."""
        if window == self.current:
            return
        aggregate = self.aggregate
        if self.current is not None:
            self.held[self.current] = (aggregate._stash(), self.top)
            self.top = self.top_number = None
        elif not self._open_is_empty():  # records without a step: they join `window`
            self.current = window
            return
        held = self.held.pop(window, None)
        if held is not None:
            aggregate._unstash(held[0])
            self.raise_top(held[1])
        self.current = window

    def emit_through(self, through: int | float) -> None:
        """Emits every open window of id <= `through`, in id order; later records and
        partials of those ids are late."""
        if through != math.inf:
            self.emitted = int(through) if self.emitted is None else max(self.emitted,
                                                                         int(through))
        ids = sorted(window for window in self.held if window <= through)
        if self.current is not None and self.current <= through:
            ids = sorted([*ids, self.current])
        for window in ids:
            self.switch(window)
            self._emit_open()

    def _emit_open(self) -> None:
        aggregate = self.aggregate
        aggregate._settle()  # the window's last values before its top step
        if self.top is not None:
            aggregate._last[self.key] = self.top
            aggregate._order.setdefault(self.key)
        if aggregate._writes:
            aggregate._emit_window()
        else:
            aggregate._reset()
        if self.current is not None:
            self.emitted = self.current if self.emitted is None else max(self.emitted,
                                                                         self.current)
        self.current = None
        self.top = self.top_number = None

    def emit_all(self) -> None:
        """Emits every open window, in id order (flush, close). Unless a Hub holds the
        windows, a flush cuts the open window as it cuts one of `every=`: a later record of
        its block opens it again (a second row for that block), rather than being late."""
        current = self.current
        self.emit_through(math.inf)
        if self.current is None and not self._open_is_empty():
            self._emit_open()
        if not self.holding and current is not None:
            self.emitted = current - 1

    def state(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "top": self.top,
            "emitted": self.emitted,
            "holding": self.holding,
            "held": {window: (_stash_copy(stash), top)
                     for window, (stash, top) in self.held.items()},
        }

    def load(self, state: dict[str, Any]) -> None:
        self.current, self.emitted = state["current"], state["emitted"]
        self.holding = state["holding"]
        self.top = self.top_number = None
        self.raise_top(state["top"])
        self.held = {window: (_stash_copy(stash), top)
                     for window, (stash, top) in state["held"].items()}


def _stash_copy(stash: _Stash) -> _Stash:
    columns, last, order, writes, start, partials = stash
    return ({key: array("d", column) for key, column in columns.items()}, dict(last),
            dict(order), writes, start, {key: partial.copy() for key, partial in partials.items()})


def _merged_statistics(partial: Partial, column: array[float] | None,
                       stats: tuple[str, ...]) -> list[Any]:
    """The `stats` of a window's merged partials and the values written into it."""
    if column is not None and len(column):
        partial.merge(Partial.from_values(np.frombuffer(column, dtype=np.float64),
                                          exact=partial.exact,
                                          sketch=partial.sketch is not None))
    return partial.statistics(stats)


class _Plan:
    """How an AggregateFilter takes the records of one key tuple: `write(data)`, one
    straight-line function (see `_plan_maker`); `numbers` are the tuple's matching keys,
    `others` its other keys."""

    __slots__ = ("numbers", "others", "write")

    def __init__(self, node: AggregateFilter, numbers: list[Any], others: list[Any],
                 examples: list[Any]) -> None:
        self.numbers = tuple(numbers)
        self.others = tuple(others)
        make = _plan_maker(len(numbers), len(others), node.seconds is not None)
        pending = [node._pending[key] for key in numbers]
        # each other key's expected type (its value's now, if plain): checked first
        types = [type(value) if type(value) in _PLAIN else _Never for value in examples]
        self.write: Callable[[Record], None] = make(node, self, *numbers, *pending, *others,
                                                    *types)


_PLAIN = frozenset(IMMUTABLE_TYPES - {type(None)}) | {
    np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint64,
    np.uint32, np.uint16, np.uint8, np.bool_}
"""Types of values a plan keeps as they are until the fold: no caller can change them."""


class _Never:
    """A type no value has."""


@lru_cache(maxsize=256)
def _plan_maker(numbers: int, others: int, timed: bool
                ) -> Callable[..., Callable[[Record], None]]:
    """A maker of plan writes for records of `numbers` matching keys and `others` other keys
    (for windows by time, if `timed`): `make(node, plan, *number_keys,
    *their_pending_lists, *other_keys, *their_expected_types)`. The write takes a dict of
    exactly the plan's keys (any other record goes to `node._miss`), one statement per key:
    a float that is not NaN is appended to its key's pending values, any other value goes to
    `node._kept`; the record's values are held as one tuple, other keys' first, when none of
    the other keys' values is None or of a type a caller could change in place (else they
    go to `node._held_slowly`); then the write is counted."""
    size = numbers + others
    names = [f"a{index}" for index in range(numbers)]
    number_keys = [f"n{index}" for index in range(numbers)]
    appends = [f"p{index}" for index in range(numbers)]
    values = [f"b{index}" for index in range(others)]
    other_keys = [f"o{index}" for index in range(others)]
    body = [  # an early return: a short jump, before which CPython specializes the test
        "    def write(data):",
        f"        if type(data) is not dict or len(data) != {size}:",
        "            miss(data)",
        "            return",
    ]
    if size:  # the plan's keys' values, in one call (KeyError: the dict has another key)
        body += [
            "        try:",
            f"            v = {'(get(data),)' if size == 1 else 'get(data)'}",
            "        except KeyError:",
            "            miss(data)",
            "            return",
            f"        {', '.join([*values, *names])}, = v",
        ]
    for name, key, append in zip(names, number_keys, appends, strict=True):
        body += [
            f"        if type({name}) is float and {name} == {name}:",
            f"            {append}.append({name})",
            "        else:",
            f"            kept({key}, {name})",
        ]
    if values:
        plain = " and ".join(f"(type({name}) is t{index} or type({name}) in plain)"
                             for index, name in enumerate(values))
        body += [
            f"        if {plain}:",
            "            held[0] = v",
            "        else:",
            "            held_slowly(plan, v)",
        ]
    body.append("        writes = node._writes = node._writes + 1")
    if timed:
        body.append("        node._timed(writes)")
    else:
        body += ["        if writes >= node._due:", "            node._reached()"]
    types = [f"t{index}" for index in range(others)]
    parameters = ", ".join(["node", "plan", *number_keys, *appends, *other_keys, *types])
    source = "\n".join([
        f"def make({parameters}):",
        "    held, miss, kept, held_slowly = node._held, node._miss, node._kept, node._held_slowly",
        f"    get = itemgetter({', '.join([*other_keys, *number_keys])})" if size else "",
        *body,
        "    return write",
    ])
    namespace: dict[str, Any] = {"plain": _PLAIN, "itemgetter": itemgetter}
    exec(source, namespace)
    make: Callable[..., Callable[[Record], None]] = namespace["make"]
    return make


def _row_statistics(matrix: np.ndarray, stats: tuple[str, ...]) -> list[np.ndarray]:
    """`window_statistics` of each row of `matrix` (no NaN), as one column per statistic:
    the same floating-point operations, per row."""
    windows, n = matrix.shape
    out: list[np.ndarray] = []
    mean: np.ndarray | None = None
    ordered: np.ndarray | None = None
    for stat in stats:
        if stat == "mean" or stat == "std":
            if mean is None:
                mean = np.add.reduce(matrix, axis=1) / n
            if stat == "mean":
                out.append(mean)
            else:
                deviations = matrix - mean[:, None]
                np.multiply(deviations, deviations, out=deviations)
                out.append(np.sqrt(np.add.reduce(deviations, axis=1) / n))
        elif stat == "median" or stat[0] == "p":
            if ordered is None:
                ordered = np.sort(matrix, axis=1)
            if stat == "median":
                middle = n // 2
                out.append(ordered[:, middle].copy() if n % 2 else
                           (ordered[:, middle - 1] + ordered[:, middle]) / 2)
            else:
                q = percentile_of(stat)
                assert q is not None  # check_stats let only percentiles through
                out.append(_sorted_percentiles(ordered, q))
        elif stat == "count":
            out.append(np.full(windows, n))
        else:  # max, min, sum
            reduce: Callable[..., np.ndarray] = STATISTICS[stat]
            out.append(reduce(matrix, axis=1))
    return out


def _sorted_percentiles(ordered: np.ndarray, q: float) -> np.ndarray:
    """`sorted_percentile` of each row of `ordered` (rows sorted): the same operations."""
    n = ordered.shape[1]
    index = (n - 1) * (q / 100)
    if index >= n - 1:
        a = b = ordered[:, -1]
        gamma = index + 1.0
    else:
        lower = int(index)
        a, b = ordered[:, lower], ordered[:, lower + 1]
        gamma = index - lower
    diff = b - a
    return b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma


def _first_value(part: Any) -> int | None:
    """The index of the first value that is not None, or None."""
    for index, value in enumerate(part):
        if value is not None:
            return index
    return None


def _last_value(part: Any) -> Any:
    """The last value that is not None (None if there is none)."""
    if numeric(part) is not None:
        return part[-1]
    for value in reversed(part):
        if value is not None:
            return value
    return None
