"""JsonlSink: one JSON object per record, one record per line."""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

import numpy as np

from pipeline.core.columns import Columns, none_mask
from pipeline.core.values import jsonable, plain
from sinks.file import BufferedFileSink, RowBlock, fast_json, held_segments


class _BeyondFloat(Exception):
    """A longdouble that no float64 holds: its row is written by `_exact_text`."""


def _number(value: Any) -> Any:
    """`json.dumps`'s `default`: what JSON has no type for. A `np.longdouble` (scalar, 0-d
    array or array element) becomes the float64 nearest to it, a JSON number; one beyond
    float64's range (which float64 would make infinite or zero) raises _BeyondFloat; any
    other object becomes its `str()`."""
    if isinstance(value, np.floating):
        with np.errstate(over="ignore", under="ignore"):
            number = float(value)
        if (math.isinf(number) or number == 0.0) and np.isfinite(value) and value != 0:
            raise _BeyondFloat
        return number
    return str(value)


def _exact_text(value: Any) -> str:
    """The JSON text of a plain value, a longdouble written with all its digits as a JSON
    number (for the rare row that holds one beyond float64's range)."""
    if isinstance(value, dict):
        return "{" + ", ".join(
            f"{json.dumps(key)}: {_exact_text(item)}" for key, item in value.items()
        ) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_exact_text, value)) + "]"
    try:
        return json.dumps(value, default=_number)
    except _BeyondFloat:
        return np.format_float_scientific(value, unique=True, trim="0")


_LINE_BREAKS = ("\x85".encode(), "\u2028".encode(), "\u2029".encode())
"""Characters that JSON leaves as they are but `str.splitlines` takes as line breaks (json,
which escapes all but ASCII, never writes them as they are)."""


def _one_line(text: bytes) -> bool:
    """Whether `text` reads as one line by any reader (`str.splitlines` too)."""
    return text.isascii() or not any(map(text.__contains__, _LINE_BREAKS))


def _non_finite(value: Any) -> bool:
    """Whether plain data (`plain`'s) holds a NaN or an infinity anywhere."""
    if type(value) is float:
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(map(_non_finite, value.values()))
    if isinstance(value, list):
        return any(map(_non_finite, value))
    return False


def _block_lines(orjson: ModuleType, block: RowBlock) -> tuple[list[bytes], list[int]] | None:
    """The JSON lines of a block of numeric columns, each orjson's text of its row, built
    column by column at C speed; and the indexes of the rows holding a NaN or an infinity,
    whose lines are to be made as rows (`JsonlSink._line`; None is orjson's null). None:
    the block's rows are to be written as rows (an int beyond 64 bits, a key holding a
    character `str.splitlines` breaks at)."""
    cells: list[list[bytes]] = []
    odd = np.zeros(block.length, dtype=bool)
    for column in block.columns.values():
        if type(column) is np.ndarray:
            column_cells = orjson.dumps(column, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
            if column.dtype.kind == "f":
                odd |= ~np.isfinite(column)
        else:
            try:
                column_cells = orjson.dumps(column)[1:-1].split(b",")
            except TypeError:
                return None
            # a null that is no None is a NaN or an infinity (counted at C speed first)
            if column_cells.count(b"null") != column.count(None):
                values = np.array(column, dtype=np.float64)  # None as NaN
                nones = none_mask(column, block.length)
                odd |= ~np.isfinite(values) if nones is None else ~np.isfinite(values) & ~nones
        cells.append(column_cells)
    template = b"{%b}" % b",".join(
        orjson.dumps(key).replace(b"%", b"%%") + b":%b" for key in block.columns
    )
    if not _one_line(template):
        return None
    return list(map(template.__mod__, zip(*cells, strict=True))), np.flatnonzero(odd).tolist()


class JsonlSink(BufferedFileSink):
    """Appends each record to a JSON Lines file as one object, keys in the record's order.

    numpy/jax/torch scalars become JSON numbers, arrays become (nested) lists, nested
    mappings stay objects. NaN and infinities are written as the `NaN`/`Infinity` literals
    that Python's `json` and pandas read back (strict JSON has no form for them). Any other
    object is written as its `str()`. Flush policy, crash repair, one writer per file: see
    BufferedFileSink.

    `np.longdouble` values (scalars, 0-d arrays, array elements) are numbers too: the
    float64 nearest to them. One beyond float64's range (`np.longdouble("1e4000")`, which
    float64 would make infinite, or `1e-4000`, zero) is written with all its digits as a
    JSON number, which `json.loads(line, parse_float=decimal.Decimal)` reads back exactly
    (plain `json.loads` reads it as infinity or zero); it is counted in `counts["changed"]`
    and warned about once.

    Keys are written as text. Two keys of one record with the same text (`1` and `"1"`)
    cannot both be JSON keys: the first is written, the later is refused, counted in
    `counts["dropped"]` under its key and warned about once.
    """

    def _as_text(self, value: Any) -> Any:
        return jsonable(value)

    def _writable(self, value: Any) -> bool:
        try:
            json.dumps(plain(value), default=_number)
        except _BeyondFloat:
            return True
        except Exception:
            return False
        return True

    def _columns_held(self, columns: Columns, length: int) -> RowBlock | None:
        return None if fast_json() is None else self.numeric_block(columns, length)

    def _store(self, rows: list[Any]) -> None:
        orjson = fast_json()
        lines: list[bytes] = []
        notes: list[tuple[str, str | None]] = []  # counted once the rows are stored
        for part in held_segments(rows) if self._held_blocks else [rows]:
            if isinstance(part, RowBlock):
                block = None if orjson is None else _block_lines(orjson, part)
                if block is not None:
                    start = len(lines)
                    lines.extend(block[0])
                    for index in block[1]:
                        row = {key: column[index] for key, column in part.columns.items()}
                        lines[start + index] = self._line(row, notes, orjson)
                    continue
                part = part.rows()
            lines.extend([self._line(row, notes, orjson) for row in part])
        lines.append(b"")
        self._append(b"\n".join(lines))
        for reason, key in notes:
            if reason == "changed":
                self.counts.note(
                    "changed",
                    "a longdouble beyond float64's range is written with all its digits as a "
                    "JSON number (json.loads reads it as infinity or zero; "
                    "parse_float=decimal.Decimal reads it exactly)",
                    category=UserWarning,
                    stacklevel=6,
                )
            else:
                self.counts.note(
                    "dropped",
                    f"keys {key!r} of different types would be one JSON key; the first is "
                    "written, the later refused",
                    key=key,
                    category=UserWarning,
                    stacklevel=6,
                )

    def _line(
        self, row: dict[Any, Any], notes: list[tuple[str, str | None]], orjson: ModuleType | None
    ) -> bytes:
        """A row's JSON text: orjson's (when it is on) unless orjson refuses the row, the row
        holds a NaN or an infinity (which orjson writes as null) or a character that
        `str.splitlines` breaks at (U+0085, U+2028, U+2029, which orjson leaves unescaped),
        else `json.dumps`'s."""
        line = {str(key): plain(value) for key, value in row.items()}
        if len(line) < len(row):
            line = self._named(row, notes)
        if orjson is not None:
            try:
                text: bytes = orjson.dumps(line)
            except TypeError:  # an object, an int beyond 64 bits, a longdouble, ...
                pass
            else:
                if (b"null" not in text or not _non_finite(line)) and _one_line(text):
                    return text
        try:
            return json.dumps(line, default=_number).encode()
        except _BeyondFloat:
            notes.append(("changed", None))
            return _exact_text(line).encode()

    @staticmethod
    def _named(row: dict[Any, Any], notes: list[tuple[str, str | None]]) -> dict[str, Any]:
        """The row with its keys as text; a key whose text an earlier key has is left out
        and noted in `notes`."""
        named: dict[str, Any] = {}
        for key, value in row.items():
            name = str(key)
            if name in named:
                notes.append(("dropped", name))
            else:
                named[name] = plain(value)
        return named
