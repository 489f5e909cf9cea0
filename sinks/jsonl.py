"""JsonlSink: one JSON object per record, one record per line."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Collection, Iterable
from itertools import chain
from types import ModuleType
from typing import Any

import numpy as np

from pipeline.core.columns import Columns, FloatsText, none_mask, row
from pipeline.core.values import BeyondFloat as _BeyondFloat
from pipeline.core.values import exact_json as _exact_text
from pipeline.core.values import json_number as _number
from pipeline.core.values import jsonable, paired_surrogates, plain
from sinks.blocks import RowBlock, held_column, held_segments
from sinks.file import (
    BufferedFileSink,
    fast_frames,
    fast_json,
    note_nested_clashes,
)

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
        if type(column) not in (np.ndarray, list):  # a polars Series (`_held_floats`)
            column = column.to_list()
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
    try:
        template = b"{%b}" % b",".join(
            orjson.dumps(key).replace(b"%", b"%%") + b":%b" for key in block.columns
        )
    except TypeError:  # a key holding a lone surrogate: json escapes it
        return None
    if not _one_line(template):
        return None
    return list(map(template.__mod__, zip(*cells, strict=True))), np.flatnonzero(odd).tolist()


_FRAME_ROWS = 512
"""The fewest rows a store's column block (its consecutive blocks joined) must have to be
written through polars: below, polars' fixed cost per block (tens of us to make the DataFrame) is
more than what it saves on orjson's cells per row (both cost the same at about 512 rows of
the benchmark's stream)."""

_FRAME_TYPES = frozenset(
    {
        "Boolean",
        "Int8",
        "Int16",
        "Int32",
        "Int64",
        "UInt8",
        "UInt16",
        "UInt32",
        "UInt64",
        "Float64",
        "Null",
    }
)
"""The polars column types a frame's JSON is written from: what numpy's bools, ints and
floats become, and a list of ints or floats with None (an int beyond 64 bits makes another
type, and takes the row path)."""


def _or(mask: np.ndarray | None, more: np.ndarray) -> np.ndarray:
    """`mask | more`, `more` alone when there is no mask yet."""
    return more if mask is None else mask | more


def _or_some(mask: np.ndarray | None, more: np.ndarray | None) -> np.ndarray | None:
    """`mask | more`, either of which may be None (no row)."""
    return mask if more is None else _or(mask, more)


def _odd_floats(values: np.ndarray, nones: int, column: Any) -> np.ndarray | None:
    """The rows of a column of floats and None holding a NaN or an infinity, None for none:
    `values` its float64 values (None as NaN), `nones` how many Nones it holds. Each None is
    one NaN in `values`: more are floats' (the Nones are then looked for in `column`)."""
    bad = ~np.isfinite(values)
    if np.count_nonzero(bad) == nones:
        return None
    if isinstance(column, list):
        where = none_mask(column, len(column))
    else:  # a polars Series
        where = column.is_null().to_numpy()
    return bad if where is None else bad & ~where


class _Frame:
    """A run of blocks' rows as one polars DataFrame, and which of them hold a NaN or an
    infinity (polars writes null for those; None is null too), a boolean mask or None for
    none; made when a store writes the run."""

    __slots__ = ("data", "odd")

    def __init__(self, data: Any, odd: np.ndarray | None) -> None:
        self.data = data
        self.odd = odd

    @classmethod
    def of(cls, polars: ModuleType, block: RowBlock) -> _Frame | None:
        """The block's frame (its arrays and Series shared, not copied), or None: a key
        holding a `{` (which `lines` takes for a row's start) or a character `str.splitlines`
        breaks at (which polars leaves unescaped), a column polars refuses or makes another
        type of."""
        if not _lines_take(block.columns):
            return None
        odd: np.ndarray | None = None
        look = not block.finite  # for NaN and infinities
        try:
            series = []
            for key, column in block.columns.items():
                kind = type(column)
                if kind is np.ndarray:
                    if look and column.dtype.kind == "f" and not np.isfinite(column).all():
                        odd = _or(odd, ~np.isfinite(column))
                    series.append(polars.Series(key, column))
                elif kind is not list:  # a polars Series of floats and None (`_held_floats`)
                    if look:
                        found = _odd_floats(column.to_numpy(), column.null_count(), column)
                        odd = _or_some(odd, found)
                    series.append(column)
                elif float in map(type, column):  # floats and None
                    values = np.array(column, dtype=np.float64)  # None as NaN
                    odd = _or_some(odd, _odd_floats(values, column.count(None), column))
                    series.append(polars.Series(key, values, nan_to_null=True))
                else:  # ints and None, or None alone
                    series.append(polars.Series(key, column))
        except Exception:  # a lone surrogate in a key, ints no 64-bit type holds, ...
            return None
        frame = _data_frame(polars, block.columns, series)
        return None if frame is None else cls(frame, odd)

    def lines(self) -> memoryview | None:
        """The rows as JSON lines, each ending in a newline: polars' JSON array of row
        objects, `[{...},{...}]`, with the `,` before each `{` and the closing `]` made
        newlines in place and the opening `[` left out (no `{` is in a key, and a value is a
        number, a bool or null: each `{` starts a row). None if polars' text is not such an
        array (another version's). From `_NDJSON_ROWS` rows: polars' JSON Lines as they are
        (the same text, row for row)."""
        buffer = io.BytesIO()
        if self.data.height >= _NDJSON_ROWS:
            self.data.write_ndjson(buffer)
            lines = buffer.getbuffer()
            return lines if lines[:1] == b"{" and lines[-2:] == b"}\n" else None
        self.data.write_json(buffer)
        view = buffer.getbuffer()  # the text itself, not a copy (the buffer is not resized)
        if view[:2] != b"[{" or view[-2:] != b"}]":
            return None
        text = np.frombuffer(view, dtype=np.uint8)
        end = len(text) - 1
        # a slice at a time: the mask of a whole block's text is as large as the text, and
        # allocating that much costs page faults every time
        for start in range(0, end, _SPAN):
            stop = min(start + _SPAN, end)
            np.copyto(text[start:stop], 10, where=text[start + 1 : stop + 1] == 123)
        text[end] = 10
        return view[1:]


def _lines_take(keys: Iterable[str]) -> bool:
    """Whether `_Frame.lines` can write rows of these keys: none holds a `{` (which it takes
    for a row's start) nor a character `str.splitlines` breaks at (which polars leaves
    unescaped)."""
    text = "".join(keys)
    return "{" not in text and _one_line(text.encode("utf-8", "surrogatepass"))


def _data_frame(polars: ModuleType, keys: Collection[str], series: list[Any]) -> Any:
    """The DataFrame of `series` (one per key, in order), or None when polars refuses them or
    makes a column of a type `_Frame.lines` does not write."""
    try:
        # from a list (a third of a dict's cost), but polars names a Series named "" anew
        frame = polars.DataFrame(dict(zip(keys, series, strict=True)) if "" in keys else series)
    except Exception:  # a lone surrogate in a key, ...
        return None
    return frame if _FRAME_TYPES.issuperset(map(str, frame.dtypes)) else None


_NDJSON_ROWS = 16384
"""The fewest rows `_Frame.lines` writes with polars' `write_ndjson` (the same lines as
`write_json`'s): it runs on polars' threads and costs a fixed ~0.1 ms a call where
`write_json` costs none, but `write_json`'s time a row grows with the rows (polars 2.1: about
450 ns a row at 4,000 rows, 560-760 at 16,000, against 25-380 for `write_ndjson`). Measured
within the throughput contest on a loaded 2-CPU machine, `write_ndjson` made 4,000-row stores
slower (waiting on its threads), as an earlier quiet run found below about 16,000 rows."""

_SPAN = 1 << 16
"""Bytes of a block's text `_Frame.lines` rewrites at once."""


Parts = list[list[dict[str, Any]] | list[RowBlock]]


def _runs(segments: list[list[dict[str, Any]] | RowBlock]) -> Parts:
    """The segments (`held_segments`) with each run of blocks of the same columns (keys, and
    arrays of one dtype or lists) as one list of blocks, which one frame writes: one polars
    call for the rows of several batches (a batch's rows held from one store to the next and
    the next batch's); runs of rows as they are."""
    out: Parts = []
    for segment in segments:
        if not isinstance(segment, RowBlock):
            if segment:
                out.append(segment)
        elif out and isinstance(out[-1][0], RowBlock) and _joinable(out[-1][0], segment):
            out[-1].append(segment)
        else:
            out.append([segment])
    return out


def _kind(column: Any) -> Any:
    """What a column joins with: an array of its dtype; a list holding floats (or a polars
    Series of floats and None, `_held_floats`'), or a list holding none (ints with None, None
    alone), never both (joined, 1 would be written as 1.0)."""
    kind = type(column)
    if kind is np.ndarray:
        return column.dtype
    return float in map(type, column) if kind is list else True


def _joinable(first: RowBlock, block: RowBlock) -> bool:
    """Whether `block` has `first`'s keys in the same order, each column of the same kind."""
    return (
        first.masked == block.masked
        and list(first.columns) == list(block.columns)
        and all(
            _kind(column) == _kind(other)
            for column, other in zip(first.columns.values(), block.columns.values(), strict=True)
        )
    )


def _join(blocks: list[RowBlock]) -> RowBlock:
    """Blocks `_joinable` with the first as one block: arrays and lists copied, polars Series
    (`_held_floats`') put end to end (not copied)."""
    columns: dict[str, Any] = {}
    for key, column in blocks[0].columns.items():
        parts = [block.columns[key] for block in blocks]
        kinds = set(map(type, parts))
        if type(column) is np.ndarray:
            columns[key] = np.concatenate(parts)
        elif list in kinds:
            columns[key] = list(chain.from_iterable(parts))  # a Series gives its values
        else:
            joined = column.clone()  # a new Series sharing the data: `append` changes it
            for part in parts[1:]:
                joined.append(part)
            columns[key] = joined
    return RowBlock(
        columns,
        sum(block.length for block in blocks),
        blocks[0].masked,
        all(block.finite for block in blocks),
    )


def _table(polars: ModuleType, columns: dict[str, Any]) -> Any:
    """A block's DataFrame made when it is held, its data shared with the block's arrays and
    Series: when every column is a numpy array or a Series (`_held_floats`) of a type a frame
    is written from and the keys can be written by `_Frame.lines`; else None (the store
    makes the frame, or writes the block otherwise)."""
    if not _lines_take(columns) or list in map(type, columns.values()):
        return None
    try:
        series = [
            polars.Series(key, column) if type(column) is np.ndarray else column
            for key, column in columns.items()
        ]
    except Exception:  # a lone surrogate in a key, ...
        return None
    return _data_frame(polars, columns, series)


def _held_floats(polars: ModuleType, key: str, column: list[Any]) -> tuple[Any, bool] | None:
    """A list holding exactly floats and None (no int, bool, float subclass or numpy scalar:
    `FloatsText`) as a block holds it, and whether its floats are all finite; None if it holds
    other values. Floats alone become a float64 array, floats with None a polars Float64
    Series named `key` (None as null, NaN as NaN), both copies. Two C passes over the list
    (marshal's and polars')."""
    text = FloatsText.of(column)
    if text is None:
        return None
    if not text.nones:
        values = text.floats()
        return None if values is None else (values, bool(np.isfinite(values).all()))
    try:
        series = polars.Series(key, column, dtype=polars.Float64, strict=True)
    except Exception:  # a value polars refuses (a float would not be)
        return None
    if series.null_count() != text.nones:
        return None
    nones = ~np.isfinite(series.to_numpy())  # None as NaN
    finite = np.count_nonzero(nones) == text.nones
    if not finite:  # NaN or infinite floats too
        nones = series.is_null().to_numpy()
    return (series, finite) if text.holds(nones) else None


class JsonlSink(BufferedFileSink):
    """Appends each record to a JSON Lines file as one object, keys in the record's order.

    numpy/jax/torch scalars become JSON numbers, arrays become (nested) lists, nested
    mappings stay objects; a record with no keys is the line `{}`. NaN and infinities are
    written as the `NaN`/`Infinity` literals that Python's `json` and pandas read back
    (strict JSON has no form for them). Any other object is written as its `str()`. Flush
    policy, crash repair, one writer per file: see BufferedFileSink.

    A number reads back as the value written, of its type (1 and 1.0 stay apart, -0.0 keeps
    its sign); its text is `json`'s, orjson's or, for a batch of numeric columns with the
    `fast` extra, polars' (`1e+16`, `1e16`): see `sinks.file.FAST`.

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
        polars = fast_frames()
        if polars is None:
            return None if fast_json() is None else self.numeric_block(columns, length)
        held: dict[str, Any] = {}
        finite = True
        for key, column in columns.items():
            if type(key) is not str:
                return None
            floats = _held_floats(polars, key, column) if type(column) is list else None
            if floats is not None:
                held[key], column_finite = floats
                finite = finite and column_finite
                continue
            kept = held_column(column)
            if kept is None:
                return None
            if finite and type(kept) is np.ndarray:
                finite = kept.dtype.kind != "f" or bool(np.isfinite(kept).all())
            elif type(kept) is list:
                finite = False  # not looked at (`_Frame.of` looks)
            held[key] = kept
        table = _table(polars, held) if finite and length >= _FRAME_ROWS else None
        return RowBlock(held, length, finite=finite, table=table)

    def _store(self, rows: list[Any]) -> None:
        orjson = fast_json()
        chunks: list[bytes | memoryview] = []  # whole lines, each ending in a newline
        notes: list[tuple[str, str | None]] = []  # counted once the rows are stored
        clashed: list[str] = []  # nested keys with one text: the later ones
        paired = 0
        for part in _runs(held_segments(rows)) if self._held_blocks else [rows]:
            held: list[dict[str, Any]] = part  # type: ignore[assignment]
            if part and isinstance(part[0], RowBlock):
                run: list[RowBlock] = part  # type: ignore[assignment]
                text = self._block_text(run, notes, orjson, clashed)
                if text is not None:
                    chunks.append(text)
                    continue
                held = list(chain.from_iterable(block.rows() for block in run))
            lines = [self._line(row, notes, orjson, clashed) for row in held]
            lines.append(b"")
            text = b"\n".join(lines)
            # an escaped surrogate: an astral character (read back as written) or lone ones
            if b"\\ud" in text:
                paired += sum(map(paired_surrogates, held))
            chunks.append(text)
        self._append(chunks[0] if len(chunks) == 1 else b"".join(chunks))
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

    def _block_text(
        self,
        run: list[RowBlock],
        notes: list[tuple[str, str | None]],
        orjson: ModuleType | None,
        clashed: list[str],
    ) -> bytes | memoryview | None:
        """The lines of a run of `_joinable` blocks, each ending in a newline: polars'
        (`_Frame.lines`) when the run has `_FRAME_ROWS` rows and polars takes it, else orjson's
        cells (`_block_lines`, the blocks joined); a row holding a NaN or an infinity is made
        as a row (`_line`). None: the blocks are to be written as rows."""
        odd: list[int] = []
        lines: list[bytes] = []
        text = self._tables_text(run)
        if text is not None:
            return text
        block = run[0] if len(run) == 1 else _join(run)
        length = block.length
        polars = fast_frames() if length >= _FRAME_ROWS else None
        frame = None if polars is None else _Frame.of(polars, block)
        text = None if frame is None else frame.lines()
        if frame is not None and text is not None:
            if frame.odd is None:
                return text
            lines = bytes(text).split(b"\n")
            odd = np.flatnonzero(frame.odd).tolist()
        if len(lines) != length + 1:  # no frame, or polars' text is not a row a line
            made = None if orjson is None else _block_lines(orjson, block)
            if made is None:
                return None
            lines, odd = made
            lines.append(b"")
        for index in odd:
            lines[index] = self._line(row(block.columns, index), notes, orjson, clashed)
        return b"\n".join(lines)

    @staticmethod
    def _tables_text(run: list[RowBlock]) -> memoryview | None:
        """The run's lines from the DataFrames its blocks were held with (`_table`), put end
        to end (not copied), when every block has one and holds no NaN nor infinity; else
        None."""
        if sum(block.length for block in run) < _FRAME_ROWS or fast_frames() is None:
            return None
        if not all(block.table is not None and block.finite for block in run):
            return None
        data = run[0].table
        try:
            for block in run[1:]:
                data = data.vstack(block.table)
        except Exception:  # columns of another type (a block held by another version)
            return None
        return _Frame(data, None).lines()

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
