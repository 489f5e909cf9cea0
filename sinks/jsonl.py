"""JsonlSink: one JSON object per record, one record per line."""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

import numpy as np

from pipeline.core.columns import Columns, none_mask
from pipeline.core.values import BeyondFloat as _BeyondFloat
from pipeline.core.values import exact_json as _exact_text
from pipeline.core.values import json_number as _number
from pipeline.core.values import jsonable, note_nested_clashes, paired_surrogates, plain
from sinks.file import BufferedFileSink, RowBlock, fast_json, held_segments

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
    mappings stay objects; a record with no keys is the line `{}`. NaN and infinities are
    written as the `NaN`/`Infinity` literals that Python's `json` and pandas read back
    (strict JSON has no form for them). Any other object is written as its `str()`. Flush
    policy, crash repair, one writer per file: see BufferedFileSink.

    `np.longdouble` values (scalars, 0-d arrays, array elements) are numbers too: the
    float64 nearest to them. One beyond float64's range (`np.longdouble("1e4000")`, which
    float64 would make infinite, or `1e-4000`, zero) is written with all its digits as a
    JSON number, which `json.loads(line, parse_float=decimal.Decimal)` reads back exactly
    (plain `json.loads` reads it as infinity or zero); it is counted in `counts["changed"]`
    and warned about once.

    A text holding a high and a low lone surrogate side by side (`"\\ud800\\udc00"`, two
    characters) is written as JSON's escapes for them, which `json.loads` reads back as one
    character (`"\\U00010000"`): each such key or value is counted in `counts["changed"]`
    and warned about once.

    Keys are written as text. Two keys of one record with the same text (`1` and `"1"`)
    cannot both be JSON keys: the first is written, the later is refused, counted in
    `counts["dropped"]` under its key and warned about once. In a nested mapping the same
    rule keeps the earlier key; the later is counted in `counts["clashed"]` under its text.
    """

    def _as_text(self, value: Any) -> Any:
        clashed: list[str] = []
        out = jsonable(value, clashed)
        note_nested_clashes(self.counts, clashed)
        return out

    def _writable(self, value: Any) -> bool:
        try:
            json.dumps(plain(value), default=_number)
        except _BeyondFloat:
            return True
        except Exception:
            return False
        return True

    takes_absent = True  # a masked batch is held as rows without its None cells

    def _columns_held(self, columns: Columns, length: int) -> RowBlock | None:
        return None if fast_json() is None else self.numeric_block(columns, length)

    def _store(self, rows: list[Any]) -> None:
        orjson = fast_json()
        lines: list[bytes] = []
        notes: list[tuple[str, str | None]] = []  # counted once the rows are stored
        clashed: list[str] = []  # nested keys with one text: the later ones
        for part in held_segments(rows) if self._held_blocks else [rows]:
            if isinstance(part, RowBlock):
                block = None if orjson is None else _block_lines(orjson, part)
                if block is not None:
                    start = len(lines)
                    lines.extend(block[0])
                    for index in block[1]:
                        row = {key: column[index] for key, column in part.columns.items()}
                        lines[start + index] = self._line(row, notes, orjson, clashed)
                    continue
                part = part.rows()
            lines.extend([self._line(row, notes, orjson, clashed) for row in part])
        lines.append(b"")
        text = b"\n".join(lines)
        # an escaped surrogate: an astral character (read back as written) or lone ones (rare)
        paired = (  # a numeric block holds no text
            sum(paired_surrogates(row) for row in rows if type(row) is dict)
            if b"\\ud" in text
            else 0
        )
        self._append(text)
        if clashed:
            note_nested_clashes(self.counts, clashed, stacklevel=6)
        if paired:
            self.counts.note(
                "changed",
                "a text holding a high and a low lone surrogate side by side reads back from "
                "JSON as one character (JSON has no form for the two)",
                n=paired,
                category=UserWarning,
                stacklevel=6,
            )
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
        self,
        row: dict[Any, Any],
        notes: list[tuple[str, str | None]],
        orjson: ModuleType | None,
        clashed: list[str],
    ) -> bytes:
        """A row's JSON text: orjson's (when it is on) unless orjson refuses the row, the row
        holds a NaN or an infinity (which orjson writes as null) or a character that
        `str.splitlines` breaks at (U+0085, U+2028, U+2029, which orjson leaves unescaped),
        else `json.dumps`'s."""
        mark = len(clashed)
        line = {str(key): plain(value, clashed) for key, value in row.items()}
        if len(line) < len(row):
            del clashed[mark:]  # noted again by _named
            line = self._named(row, notes, clashed)
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
    def _named(
        row: dict[Any, Any], notes: list[tuple[str, str | None]], clashed: list[str]
    ) -> dict[str, Any]:
        """The row with its keys as text; a key whose text an earlier key has is left out
        and noted in `notes`."""
        named: dict[str, Any] = {}
        for key, value in row.items():
            name = str(key)
            if name in named:
                notes.append(("dropped", name))
            else:
                named[name] = plain(value, clashed)
        return named
