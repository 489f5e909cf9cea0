"""SmoothingFilter: exponential moving averages of noisy metrics, with warm-up."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from filters._ema import SHORT, debiased_ema_column, warmup_ema_column
from pipeline.core.columns import (
    Columns,
    MaskedColumns,
    absent_runs,
    batch_length,
    none_mask,
    numeric,
    rows_slice,
)
from pipeline.core.fusion import Special, Transform
from pipeline.core.keys import KeyMatcher, clashes, note_clash
from pipeline.core.names import smoothed_name, warmup_ema
from pipeline.core.node import Record
from pipeline.core.values import shown, to_float

_PLANS_LIMIT = 4096
"""Key sets whose plan is cached; beyond that the cache starts afresh (bounded memory)."""


class SmoothingFilter(Transform):
    """For each key matching `regex` (`re.search`), adds `<key>_smoothed_<coeff>`, an
    exponential moving average of the key's values; the original key is kept.

    Default (warm-up EMA): c_0 = 0; s_t = (1 - c_t) x_t + c_t s_{t-1};
    c_{t+1} = 0.9 c_t + 0.1 coeff. The first smoothed value is the value itself and the
    coefficient anneals towards `coeff`.

    `bias_correction=True` gives TensorBoard's debiased EMA instead: m_t = coeff m_{t-1} +
    (1 - coeff) x_t with m_0 = 0, s_t = m_t / (1 - coeff^t).

    An output name the record already holds (a caller's own `return_smoothed_0.9`, or the
    name of two keys with one text, `1` and `"1"`) keeps the record's value (the earlier
    key's): the moving average goes on, but its value is not written there, counted in
    `counts["clashed"]` and warned once per name (see `pipeline.core.keys.clashes`).

    Each key has its own state; keys may come and go between records. A value that is not a
    finite real number (None, NaN, inf, a string, an array) leaves the state unchanged: the
    record keeps the value under its own key and carries the current smoothed value (if any).
    Such values other than None are counted in `counts["skipped"]`, with a warning once per
    key.
    """

    def __init__(
        self, regex: str = "return", coeff: float = 0.99, *, bias_correction: bool = False
    ) -> None:
        super().__init__()
        self.match = KeyMatcher(regex)
        # key -> [smoothed value, warm-up coefficient c_t or coeff^t]; NaN smoothed = no value yet
        self._state: dict[str, list[float]] = {}
        self.coeff = coeff
        self.bias_correction = bias_correction

    @property
    def bias_correction(self) -> bool:
        """Whether the moving average is TensorBoard's debiased one (see the class)."""
        return self._bias_correction

    @bias_correction.setter
    def bias_correction(self, bias_correction: bool) -> None:
        self._bias_correction = bias_correction
        self._changed()  # a fused run compiled for the other kind is compiled again

    @property
    def coeff(self) -> float:
        """The moving average's coefficient (the weight of the past), a number in [0, 1). Set
        anew, each key's moving average goes on from its state with it, under the name it
        gives (`<key>_smoothed_<coeff>`)."""
        return self._coeff

    @coeff.setter
    def coeff(self, coeff: float) -> None:
        if isinstance(coeff, bool) or not isinstance(coeff, (int, float)) or not 0 <= coeff < 1:
            raise ValueError(f"coeff must be a number in [0, 1), got {coeff!r}")
        # A float subclass (numpy's float64) as a plain float: a fused run writes the step
        # into its code by repr, and numpy's repr is no Python literal.
        self._coeff = coeff if type(coeff) is int else float(coeff)
        self._step = 0.1 * self._coeff  # the EMA step's constant term (see warmup_ema)
        # key tuple of a record -> its matching keys with their output names and states:
        # made again, as the names hold the coefficient
        self._plans: dict[tuple[str, ...], tuple[tuple[str, str, list[float]], ...]] = {}
        self._keys: tuple[str, ...] | None = None  # the last record's key tuple, and its plan
        self._last_plan: tuple[tuple[str, str, list[float]], ...] = ()
        self._changed()  # a fused run holds the step and the names (see specialized)

    def _plan(self, keys: tuple[str, ...]) -> tuple[tuple[Any, Any, list[float]], ...]:
        match = self.match
        plan = tuple((key, *self._key_state(key)) for key in keys if match(key))
        clashed = clashes(keys, [name for _, name, _ in plan])
        if any(clashed):  # the clashing outputs go under names of their own, then away
            plan = _Clashing(
                (key, _Unwritten(name) if clash else name, state)
                for (key, name, state), clash in zip(plan, clashed, strict=True)
            )
        if len(self._plans) >= _PLANS_LIMIT:
            self._plans.clear()
        self._plans[keys] = plan
        return plan

    def _key_state(self, key: str) -> tuple[str, list[float]]:
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = [math.nan, 0.0 if not self.bias_correction else 1.0]
        return smoothed_name(key, self.coeff), state

    drops = False

    def transform(self, data: Record) -> Record:
        keys = tuple(data)
        if keys == self._keys:
            plan = self._last_plan
        else:
            cached = self._plans.get(keys)
            plan = self._plan(keys) if cached is None else cached
            if type(plan) is _Clashing:
                return self._transform_clashing(keys, data, plan)
            self._keys, self._last_plan = keys, plan
        if not plan:
            return data
        out = dict(data)
        if self._bias_correction:
            for key, name, state in plan:
                smoothed = self._debiased(key, data[key], state)
                if smoothed == smoothed:
                    out[name] = smoothed
            return out
        step = self._step
        for key, name, state in plan:
            x = data[key]
            if type(x) is not float:
                x = to_float(x)
            if x is None or x - x != 0:  # not a number, NaN or inf
                self._skip(key, data[key])
                smoothed = state[0]
                if smoothed == smoothed:
                    out[name] = smoothed
                continue
            c = state[1]  # warmup_ema's step, inline: this is the train chain's hot loop
            out[name] = state[0] = x if c == 0.0 else (1.0 - c) * x + c * state[0]
            state[1] = 0.9 * c + step
        return out

    def specialized(self, keys: tuple[str, ...], name: str) -> Special | None:
        """`transform` and `observe` for records of `keys`, once a record of them made the
        plan: the moving average's step written once per matching key, no loop."""
        plan = self._plans.get(keys)
        if plan is None or type(plan) is _Clashing or self._bias_correction:
            return None
        if not plan:
            return Special([], [], {}, keys, none_as_absent=True)
        names: dict[str, object] = {name: self, f"{name}_to_float": to_float}
        made: list[str] = [  # dict(data) without a call, for a mapping with keys() (any other,
            "try:",  # which {**data} refuses, takes dict's way)
            f"    {name}_out = {{**data}}",
            "except TypeError:",
            f"    {name}_out = dict(data)",
        ]
        observed: list[str] = []
        for index, (key, output, state) in enumerate(plan):
            k, n, s = f"{name}_k{index}", f"{name}_n{index}", f"{name}_s{index}"
            names.update({k: key, n: output, s: state})
            x, c = f"{name}_x", f"{name}_c"
            ema = f"{x} if {c} == 0.0 else (1.0 - {c}) * {x} + {c} * {s}[0]"
            step = [f"{c} = {s}[1]", f"{s}[1] = 0.9 * {c} + {self._step!r}"]
            # A finite float first, in two tests (a float's x - x is 0.0 or NaN); any other
            # value as transform takes it.
            value = [
                f"{x} = data[{k}]",
                f"if type({x}) is float and {x} - {x} == 0.0:",
            ]
            other = [
                "else:",
                f"    if type({x}) is not float:",
                f"        {x} = {name}_to_float({x})",
                f"    if {x} is None or {x} - {x} != 0:",
                f"        {name}._skip({k}, data[{k}])",
            ]
            made += [
                *value,
                f"    {step[0]}",
                f"    {name}_out[{n}] = {s}[0] = {ema}",
                f"    {step[1]}",
                *other,
                f"        {x} = {s}[0]",
                f"        if {x} == {x}:",
                f"            {name}_out[{n}] = {x}",
                "    else:",
                f"        {step[0]}",
                f"        {name}_out[{n}] = {s}[0] = {ema}",
                f"        {step[1]}",
            ]
            observed += [
                *value,
                f"    {step[0]}",
                f"    {s}[0] = {ema}",
                f"    {step[1]}",
                *other,
                "    else:",
                f"        {step[0]}",
                f"        {s}[0] = {ema}",
                f"        {step[1]}",
            ]
        # A None value is skipped uncounted, as an absent key: plans of fewer keys hold
        # the same states and clash no more (observe on the record without it does the same).
        return Special([*made, f"data = {name}_out"], observed, names, None, none_as_absent=True)

    def observe(self, data: Record) -> None:
        """What `transform` does to the moving averages and counts, with no record made (for
        a record a throttle below drops, see `Transform.gate`)."""
        keys = tuple(data)
        if keys == self._keys:
            plan = self._last_plan
        else:
            cached = self._plans.get(keys)
            plan = self._plan(keys) if cached is None else cached
            if type(plan) is _Clashing:  # counts values it writes: it must write them
                self.transform(data)
                return
            self._keys, self._last_plan = keys, plan
        if self._bias_correction:
            for key, _, state in plan:
                self._debiased(key, data[key], state)
            return
        step = self._step
        for key, _, state in plan:  # transform's loop, with the record left unmade
            x = data[key]
            if type(x) is not float:
                x = to_float(x)
            if x is None or x - x != 0:
                self._skip(key, data[key])
                continue
            c = state[1]
            state[0] = x if c == 0.0 else (1.0 - c) * x + c * state[0]
            state[1] = 0.9 * c + step

    def _transform_clashing(
        self, keys: tuple[str, ...], data: Record, plan: _Clashing
    ) -> Record:
        """`transform` for a key tuple some of whose outputs clash (see `clashes`): their
        values go under stand-in names, taken out again and counted."""
        self._keys, self._last_plan = keys, plan
        try:
            out = self.transform(data)
        finally:
            self._keys = None  # the next record of these keys comes back here
        assert isinstance(out, dict)
        for _, name, _ in plan:
            if type(name) is _Unwritten and out.pop(name, _NONE) is not _NONE:
                note_clash(self.counts, name.name, stacklevel=5)
        return out

    def _debiased(self, key: str, value: Any, state: list[float]) -> float:
        x = value if type(value) is float else to_float(value)
        if x is None or x - x != 0:
            self._skip(key, value, stacklevel=4)
        else:
            coeff = self.coeff
            state[1] *= coeff
            mean = state[0] if state[0] == state[0] else 0.0
            state[0] = coeff * mean + (1.0 - coeff) * x
        smoothed = state[0]
        if smoothed == smoothed and state[1] != 1.0:
            smoothed = smoothed / (1.0 - state[1])
        return smoothed

    takes_absent = True

    def write_batch(self, columns: Columns) -> None:
        """Smooths each matching column in one pass (the moving average is sequential, so it
        is a loop over the column, with no per-row record); same result as row by row.

        In a `MaskedColumns` batch a None cell is an absent key: the moving average skips the
        row and the output column holds None there (absent too), as do the rows before a
        key's first smoothed value."""
        length = batch_length(columns)
        if not length:
            return
        keys = tuple(columns)
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._plan(keys)
        masked = type(columns) is MaskedColumns
        if masked:
            if type(plan) is _Clashing:  # which names clash depends on the row's keys
                for part, start, stop in absent_runs(columns, length):
                    if part:
                        self.write_batch(part)
                    else:
                        for _ in range(start, stop):
                            self.write({})
                return
            self._write_masked(columns, length, plan)
            return
        out: dict[str, Any] = dict(columns)
        starts: list[tuple[int, str]] = []  # (first row with a smoothed value, output name)
        for key, name, state in plan:
            smoothed, first = self._smooth_column(key, columns[key], state)
            if first < length:
                if type(name) is _Unwritten:
                    note_clash(self.counts, name.name, length - first)
                    continue
                out[name] = smoothed
                starts.append((first, name))
        if all(first == 0 for first, _ in starts):
            self.emit_batch(out)
            return
        # Rows before a key's first smoothed value do not carry its smoothed key.
        bounds = sorted({0, *(first for first, _ in starts)})
        for start, stop in zip(bounds, [*bounds[1:], length], strict=True):
            missing = {name for first, name in starts if first > start}
            part = {
                key: column for key, column in out.items()
                if key not in missing or key in columns
            }
            for name in missing & set(columns):
                part[name] = columns[name]
            self.emit_batch(rows_slice(part, start, stop))

    def _write_masked(
        self, columns: Columns, length: int, plan: tuple[tuple[Any, Any, list[float]], ...]
    ) -> None:
        """`write_batch` of a `MaskedColumns` batch whose output names clash with no key."""
        out = MaskedColumns(columns)
        for key, name, state in plan:
            column = columns[key]
            mask = none_mask(column, length)
            if mask is None:
                smoothed, first = self._smooth_column(key, column, state)
                if first == 0:
                    out[name] = smoothed
                elif first < length:  # rows before the first smoothed value: absent
                    values: list[Any] = smoothed.tolist()
                    values[:first] = [None] * first
                    out[name] = values
                continue
            rows = np.flatnonzero(~mask)
            if not len(rows):  # the key is absent in every row
                continue
            present: Any = (
                column[rows]
                if isinstance(column, np.ndarray)
                else [column[index] for index in rows.tolist()]
            )
            smoothed, first = self._smooth_column(key, present, state)
            if first < len(rows):
                values = [None] * length
                for index, value in zip(
                    rows[first:].tolist(), smoothed[first:].tolist(), strict=True
                ):
                    values[index] = value
                out[name] = values
        self.emit_batch(out)

    def _smooth_column(
        self, key: str, column: Any, state: list[float]
    ) -> tuple[np.ndarray, int]:
        """The smoothed values of a column (NaN where there is none yet) and the index of the
        first row that has one (the length if none has): the moving average runs over the
        column's finite values (`filters._ema`, in C with scipy), and each other row carries
        the smoothed value before it, as row by row."""
        array = numeric(column)
        if array is not None and len(array) < SHORT and not self.bias_correction:
            values = array.astype(np.float64, copy=False).tolist()  # as to_float
            total = sum(values)
            if total - total == 0:  # every value finite: a short column, in Python
                out, state[0], state[1] = warmup_ema(values, self.coeff, state[0], state[1])
                return np.array(out, dtype=np.float64), 0
        if array is not None:
            numbers = array.astype(np.float64, copy=False)  # as to_float: past float64, inf
            finite = np.isfinite(numbers)
            if not finite.all():
                bad = np.flatnonzero(~finite)
                self._skip(key, array[bad[0]], stacklevel=5, n=len(bad))
        else:
            values = []
            for value in column:
                x = value if type(value) is float else to_float(value)
                if x is None or x - x != 0:  # not a number, NaN or inf
                    self._skip(key, value, stacklevel=5)
                    x = math.nan
                values.append(x)
            numbers = np.array(values, dtype=np.float64)
            finite = np.isfinite(numbers)
        everywhere = bool(finite.all())
        finite_numbers = numbers if everywhere else numbers[finite]
        before = state[0]  # the smoothed value a row before the column's first number carries
        if self.bias_correction:
            if before == before and state[1] != 1.0:
                before = before / (1.0 - state[1])
            smoothed, state[0], state[1] = debiased_ema_column(
                finite_numbers, self.coeff, state[0], state[1]
            )
        else:
            smoothed, state[0], state[1] = warmup_ema_column(
                finite_numbers, self.coeff, state[0], state[1]
            )
        if not everywhere:  # each row carries the smoothed value after the last number
            smoothed = np.concatenate([[before], smoothed])[np.cumsum(finite)]
        if before == before or not len(numbers):
            return smoothed, 0
        return smoothed, int(finite.argmax()) if len(finite_numbers) else len(numbers)

    def fresh(self) -> bool:
        return not self._state

    def node_state(self) -> dict[str, Any]:
        state = super().node_state()
        state["ema"] = {key: list(values) for key, values in self._state.items()}
        return state

    def load_node_state(self, state: dict[str, Any]) -> None:
        super().load_node_state(state)
        self._state = {key: list(values) for key, values in state["ema"].items()}
        self._plans.clear()  # plans hold the old state lists
        self._keys, self._last_plan = None, ()
        self._changed()  # and so do fused runs compiled from them (see specialized)

    def _skip(self, key: str, value: object, stacklevel: int = 3, n: int = 1) -> None:
        if value is not None:
            self.counts.note(
                "skipped",
                f"{key!r} = {shown(value)} is not a finite number; it is passed on unsmoothed and "
                "the moving average is left as it was",
                key=key,
                n=n,
                category=UserWarning,
                stacklevel=stacklevel,
            )

    @property
    def skipped(self) -> int:
        """Values left out of the moving average (`counts["skipped"]`)."""
        return self.counts["skipped"]

    def __repr__(self) -> str:
        return f"SmoothingFilter({self.match.regex!r}, coeff={self.coeff})"


class _Unwritten:
    """The stand-in name of an output that clashes: a key no record holds."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"_Unwritten({self.name!r})"


class _Clashing(tuple):
    """A plan with some outputs under `_Unwritten` names."""


_NONE = object()
