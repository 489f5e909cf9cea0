"""Fields added to every record: constants (seed, environment, run name; Acme's
ConstantLogger) and the wall-clock time (Acme's TimestampLogger)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.core.columns import Columns, batch_length
from pipeline.core.fusion import Transform
from pipeline.core.keys import note_clash
from pipeline.core.node import Record
from pipeline.core.values import snapshot


class ConstantFields(Transform):
    """Adds `fields` (name -> value) to every record, before the record's own keys (as Acme's
    ConstantLogger). A field the record already holds keeps the record's value: the constant
    is not written there, counted in `counts["clashed"]` and warned about once per name.

    The values are copied when the node is made (`snapshot`), so changing the mapping or a
    list given as a value later changes nothing.
    """

    drops = False

    def __init__(self, fields: Mapping[str, Any]) -> None:
        super().__init__()
        if not isinstance(fields, Mapping) or not fields:
            raise ValueError(f"fields must be a non-empty mapping of names to values, got "
                             f"{fields!r}")
        bad = [name for name in fields if not isinstance(name, str)]
        if bad:
            raise ValueError(f"field names must be strings, got {bad!r}")
        self.fields = {name: snapshot(value) for name, value in fields.items()}
        self._width = len(self.fields)

    def transform(self, data: Record) -> Record:
        out = {**self.fields, **data}
        if len(out) != self._width + len(data):  # a field the record holds: its value won
            for name in self.fields:
                if name in data:
                    note_clash(self.counts, name, stacklevel=3)
        return out

    def write_batch(self, columns: Columns) -> None:
        length = batch_length(columns)
        if not length:
            return
        out: dict[str, Any] = {}
        for name, value in self.fields.items():
            if name in columns:  # keeps its place before the record's keys, as in a row
                note_clash(self.counts, name, length)
            out[name] = [value] * length
        out.update(columns)
        self.emit_batch(out)

    def __repr__(self) -> str:
        return f"ConstantFields({sorted(self.fields)!r})"


class Timestamp(Transform):
    """Adds `key` (default `wall_time`), the wall-clock time of the write in seconds since the
    epoch (`clock`, `time.time` by default), after the record's own keys. A batch counts as
    written at one instant (one reading for all its rows). A record that already holds `key`
    keeps its value: counted in `counts["clashed"]` and warned about once."""

    drops = False

    def __init__(self, key: str = "wall_time", *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        self.key = key
        self._clock = clock

    def transform(self, data: Record) -> Record:
        key = self.key
        if key in data:
            note_clash(self.counts, key, stacklevel=3)
            return data
        out = dict(data)
        out[key] = self._clock()
        return out

    def write_batch(self, columns: Columns) -> None:
        length = batch_length(columns)
        if not length:
            return
        if self.key in columns:
            note_clash(self.counts, self.key, length)
            self.emit_batch(columns)
            return
        self.emit_batch({**columns, self.key: [self._clock()] * length})

    def __repr__(self) -> str:
        return f"Timestamp({self.key!r})"
