"""KeyedFilter: the base of filters that add, to each record holding a key matching a regex,
values computed from that key's values so far (rolling windows, lifetime sums, rates)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from pipeline.core.columns import Columns, batch_length, rows_slice
from pipeline.core.fusion import Transform
from pipeline.core.keys import KeyMatcher, clashes, note_clash
from pipeline.core.node import Record
from pipeline.core.values import shown, to_float

_PLANS_LIMIT = 4096
"""Key tuples whose plan is cached; beyond that the cache starts afresh (bounded memory)."""

Outputs = tuple[Any, ...]


class KeyState(Protocol):
    """One key's running state: what a KeyedFilter keeps per matching key."""

    def push(self, x: float, now: float) -> Outputs | None:
        """Takes the key's next value (a real number, not NaN) at clock reading `now`; returns
        the outputs to add (one per output name), or None for none yet."""
        ...

    def current(self) -> Outputs | None:
        """The outputs to add to a record whose value is not taken (None if none yet)."""
        ...

    def state(self, now: float) -> dict[str, Any]:
        """The state as plain data (times as ages relative to `now`)."""
        ...


Step = tuple[str, KeyState, Callable[[float, float], "Outputs | None"], tuple[str, ...],
             tuple[str, ...], str]
Plan = tuple[Step, ...]
"""Per matching key of a key tuple: (key, its state, the state's `push`, output names the
record does not hold, output names it holds already, the one output name when there is one
and the record does not hold it, else ""); the names are in the order of the state's
outputs, with held ones blanked out of the first tuple (see `KeyedFilter._put`)."""


class KeyedFilter(Transform):
    """For each key matching `regex` (`re.search`) that a record holds, adds the outputs of the
    key's state (`<key>_...` names from `names`); the record's own keys are kept.

    A value that is not a real number (None, a string, an array) or is NaN leaves the key's
    state unchanged, and the record carries the state's current outputs (if it has any yet).
    NaN values are counted in `counts["nan"]`, other non-numbers in `counts["skipped"]` (both
    warned about once per key); None is no value and is not counted. Ints, bools and numpy
    scalars count as their float value; infinities are taken as they are.

    An output name the record already holds keeps the record's value: the filter's value is
    not written, and is counted in `counts["clashed"]` (warned about once per name).

    `write_batch` gives the records row by row would give; a timed filter (`timed = True`)
    reads its clock once per record that holds a matching key, and once per batch: a batch
    counts as written at one instant.
    """

    drops = False
    timed = False

    def __init__(self, regex: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.match = KeyMatcher(regex)
        self._clock = clock
        self._states: dict[str, KeyState] = {}
        self._plans: dict[tuple[str, ...], Plan] = {}
        self._keys: tuple[str, ...] | None = None  # the last record's key tuple, and its plan
        self._last_plan: Plan = ()

    # -- what a subclass defines ----------------------------------------------------------

    def names(self, key: str) -> tuple[str, ...]:
        """The output names for `key`, in the order of its state's outputs."""
        raise NotImplementedError

    def new_state(self, key: str) -> KeyState:
        """A fresh state for `key`."""
        raise NotImplementedError

    def load_key_state(self, key: str, state: dict[str, Any], now: float) -> KeyState:
        """A state for `key` from `KeyState.state(...)`'s data, at clock reading `now`."""
        raise NotImplementedError

    # -- the hot path ---------------------------------------------------------------------

    def _plan(self, keys: tuple[str, ...]) -> Plan:
        match = self.match
        names_of = {key: self.names(key) for key in keys if match(key)}
        clashed = iter(clashes(keys, [name for names in names_of.values() for name in names]))
        plan = []
        for key in keys:
            if not match(key):
                continue
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = self.new_state(key)
            names = names_of[key]
            flags = [next(clashed) for _ in names]
            clashing = tuple(name for name, clash in zip(names, flags, strict=True) if clash)
            single = names[0] if len(names) == 1 and not clashing else ""
            plan.append((
                key,
                state,
                state.push,
                tuple("" if clash else name for name, clash in zip(names, flags, strict=True)),
                clashing,
                single,
            ))
        if len(self._plans) >= _PLANS_LIMIT:
            self._plans.clear()
        self._plans[keys] = result = tuple(plan)
        return result

    def transform(self, data: Record) -> Record:
        keys = tuple(data)
        if keys == self._keys:
            plan = self._last_plan
        else:
            cached = self._plans.get(keys)
            plan = self._plan(keys) if cached is None else cached
            self._keys, self._last_plan = keys, plan
        if not plan:
            return data
        out = dict(data)
        now = self._clock() if self.timed else 0.0
        for key, state, push, names, held, single in plan:
            value = data[key]
            x = value if type(value) is float else to_float(value)
            if x is None or x != x:
                self._skip(key, value)
                outputs = state.current()
            else:
                outputs = push(x, now)
            if outputs is None:
                continue
            if single:
                out[single] = outputs[0]
                continue
            if held:
                self._put(out, names, held, outputs)
                continue
            for name, output in zip(names, outputs):  # noqa: B905  (equal by construction)
                out[name] = output
        return out

    def _put(self, out: dict[str, Any], names: tuple[str, ...], held: tuple[str, ...],
             outputs: Outputs) -> None:
        for name, output in zip(names, outputs, strict=True):
            if name:
                out[name] = output
        for name in held:
            note_clash(self.counts, name, stacklevel=4)

    def _skip(self, key: str, value: Any, n: int = 1, stacklevel: int = 4) -> None:
        if value is None:
            return
        if isinstance(value, float) or to_float(value) is not None:  # NaN
            self.counts.note(
                "nan", f"{key!r} is NaN; NaN values are left out of {self!r}'s statistics",
                key=key, n=n, category=UserWarning, stacklevel=stacklevel,
            )
        else:
            self.counts.note(
                "skipped",
                f"{key!r} = {shown(value)} is not a real number; it is passed on as it is and "
                "left out of the statistics",
                key=key, n=n, category=UserWarning, stacklevel=stacklevel,
            )

    # -- batches --------------------------------------------------------------------------

    def write_batch(self, columns: Columns) -> None:
        """Computes each matching column's outputs in one loop over its values (no per-row
        record); rows before a key's first output do not carry its output keys, as row by
        row. Same records as row by row."""
        length = batch_length(columns)
        if not length:
            return
        keys = tuple(columns)
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._plan(keys)
        if not plan:
            self.emit_batch(columns)
            return
        now = self._clock() if self.timed else 0.0
        added: list[tuple[int, str, np.ndarray]] = []  # (first row with a value, name, column)
        for key, state, _, names, held, _ in plan:
            first, rows = self._column_outputs(key, columns[key], state, now)
            if first == length:
                continue
            for index, name in enumerate(names):
                if name:
                    added.append((first, name, np.asarray([row[index] for row in rows])))
            for name in held:
                note_clash(self.counts, name, length - first, stacklevel=3)
        if all(first == 0 for first, _, _ in added):
            self.emit_batch({**columns, **{name: column for _, name, column in added}})
            return
        bounds = sorted({0, *(first for first, _, _ in added)})
        for start, stop in zip(bounds, [*bounds[1:], length], strict=True):
            part: dict[str, Any] = dict(rows_slice(columns, start, stop))
            for first, name, column in added:
                if first <= start:
                    part[name] = column[start - first : stop - first]
            self.emit_batch(part)

    def _column_outputs(
        self, key: str, column: Any, state: KeyState, now: float
    ) -> tuple[int, list[Outputs]]:
        """The index of the first row with outputs (the length if none has), and the outputs
        of that row and each one after it."""
        # a masked array's rows are its own (`np.ma.masked`, not a number), not tolist's None
        plain_array = isinstance(column, np.ndarray) and not isinstance(column, np.ma.MaskedArray)
        values: Any = column.tolist() if plain_array else column
        rows: list[Outputs] = []
        append = rows.append
        first = -1
        push, current = state.push, state.current
        for index, value in enumerate(values):
            x = value if type(value) is float else to_float(value)
            if x is None or x != x:
                self._skip(key, value, stacklevel=5)
                outputs = current()
            else:
                outputs = push(x, now)
            if outputs is not None:
                if first < 0:
                    first = index
                append(outputs)
        return (first, rows) if first >= 0 else (len(values), rows)

    # -- checkpoints ----------------------------------------------------------------------

    def fresh(self) -> bool:
        return not self._states

    def node_state(self) -> dict[str, Any]:
        state = super().node_state()
        now = self._clock() if self.timed else 0.0
        state["keys"] = {key: key_state.state(now) for key, key_state in self._states.items()}
        return state

    def load_node_state(self, state: dict[str, Any]) -> None:
        super().load_node_state(state)
        now = self._clock() if self.timed else 0.0
        self._states = {
            key: self.load_key_state(key, data, now) for key, data in state["keys"].items()
        }
        self._plans.clear()  # plans hold the old states
        self._keys, self._last_plan = None, ()

