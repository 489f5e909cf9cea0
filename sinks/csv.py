"""CsvSink: records as rows of a CSV file whose columns are every key ever written."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from pipeline.core.columns import Columns
from pipeline.core.values import (
    BeyondFloat,
    exact_json,
    json_number,
    jsonable,
    paired_surrogates,
    plain,
)
from sinks.blocks import RowBlock, held_segments
from sinks.file import (
    BufferedFileSink,
    fast_frames,
    fast_json,
    note_nested_clashes,
    repair_torn_tail,
)

# CsvSink writes cells of any size; reading them back (a header rewrite, a resume) must not
# stop at the csv module's default 128 KiB field limit. The limit is process-wide.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

NUL_REFUSED = sys.version_info < (3, 11)
"""Python 3.10's csv module can neither write nor read a NUL character."""


def csv_cell(value: Any, clashed: list[str] | None = None) -> Any:
    """The text a CSV cell holds for `value`: floats at full precision (`nan`, `inf` as such),
    None as an empty cell, arrays, lists and mappings as JSON, scalars of numpy/jax/torch as
    the Python number they hold. Nested keys with one text: see `plain` (the earlier kept,
    the later's text put in `clashed`)."""
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is int or kind is str:
        return value
    if value is None:
        return ""
    value = plain(value, clashed)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        try:
            return json.dumps(value, default=json_number)
        except BeyondFloat:
            return exact_json(value)
    return value


_AS_THEY_ARE = frozenset({float, int, str, bool, type(None)})
"""Types whose CSV cell is what the csv module writes for them (str(); None as empty)."""

_NUMBERS = frozenset({float, int, bool, type(None)})
"""Types whose cell text is their repr (None: empty), with nothing to quote."""

_PLAIN_DELIMITERS = frozenset(",;\t| ")
"""Delimiters that no number's repr contains."""


def _cells(
    rows: list[dict[str, Any]], fields: list[str], clashed: list[str] | None = None
) -> list[list[Any]]:
    """The cells of `rows` under `fields`. When every value is a plain float, int, str, bool
    or None (the common case), the csv module's own conversion is `csv_cell`'s, so the values
    go as they are, gathered at C speed."""
    if _AS_THEY_ARE.issuperset(map(type, chain.from_iterable(map(dict.values, rows)))):
        return [list(map(row.get, fields)) for row in rows]
    return [[csv_cell(row.get(name), clashed) for name in fields] for row in rows]


def _value_types(rows: list[dict[str, Any]]) -> set[type]:
    """The types of the values of `rows`."""
    return set(map(type, chain.from_iterable(map(dict.values, rows))))


def _paired_in_json(rows: list[dict[str, Any]], kinds: set[type]) -> int:
    """How many texts in the lists and mappings of `rows` (cells written as JSON; `kinds`:
    their value types) hold lone surrogates side by side (see `paired_surrogates`); 0 at once
    when every value is plain."""
    if _AS_THEY_ARE.issuperset(kinds):
        return 0
    return sum(
        paired_surrogates(value)
        for value in chain.from_iterable(map(dict.values, rows))
        if isinstance(value, (list, tuple, dict))
    )


def _number_lines(
    rows: list[dict[str, Any]], fields: list[str], delimiter: str, line_end: str
) -> str | None:
    """The CSV text of `rows` (whose keys are all among `fields`) when every value is a
    number, bool or None: the same text the csv module writes (repr of each value, None or a
    missing key as an empty cell), built at C speed; None when some value needs the csv
    module (text to quote, other objects)."""
    if len(fields) < 2 or delimiter not in _PLAIN_DELIMITERS:
        return None  # a lone empty cell is written `""` by the csv module
    if not _NUMBERS.issuperset(map(type, chain.from_iterable(map(dict.values, rows)))):
        return None
    row_text = delimiter.join(["%r"] * len(fields)).__mod__
    cells = itemgetter(*fields)
    width = len(fields)  # a row's keys are among the fields: as many keys, every field
    lines = [
        row_text(cells(row)) if len(row) == width
        else delimiter.join(map(repr, map(row.get, fields)))
        for row in rows
    ]
    lines.append("")
    return line_end.join(lines).replace("None", "")


_JSON_AS_REPR = frozenset({float, int, type(None)})
"""Types whose JSON text (orjson's) is their repr but for the cells `_json_lines` looks for
(None: `null`, an empty cell)."""


def _json_lines(
    orjson: ModuleType,
    rows: list[dict[str, Any]],
    fields: list[str],
    kinds: set[type],
    delimiter: str,
    line_end: str,
) -> bytes | None:
    """The CSV text of `rows` (whose keys are all among `fields`; their value types are
    `kinds`) when every value is an int, float or None: orjson's JSON of the rows' cells, cut
    into lines, byte for byte `_number_lines`'. None when a cell's JSON is not its repr, or
    may not be: ints beyond 64 bits, NaN and infinities (`null`, as None), floats written
    with an exponent or below 1e-4 in magnitude (`0.00001`, repr `1e-05`; a text such as
    `10.00001` is taken for one too)."""
    if len(fields) < 2 or delimiter not in _PLAIN_DELIMITERS or not _JSON_AS_REPR.issuperset(
        kinds
    ):
        return None
    try:
        cells = list(map(itemgetter(*fields), rows))
    except KeyError:  # a row without some field: an empty cell, as None
        cells = [tuple(map(row.get, fields)) for row in rows]
    try:
        text = orjson.dumps(cells)
    except TypeError:  # an int beyond 64 bits
        return None
    if b"e" in text or b"0.0000" in text:
        return None
    if b"null" in text:
        size = len(text)
        text = text.replace(b"null", b"")
        if (size - len(text)) // 4 != sum(map(tuple.count, cells, repeat(None))):
            return None  # NaN or an infinity
    body = text[2:-2].replace(b"],[", line_end.encode())
    if delimiter != ",":
        body = body.replace(b",", delimiter.encode())
    return body + line_end.encode()


_BOOL_CELLS = np.array([b"False", b"True"], dtype=object)


_NONE_UNUSUAL = np.empty(0, dtype=np.intp)


def _unusual(values: np.ndarray, nulls: int = 0) -> np.ndarray:
    """Indexes of the float64 values whose shortest text orjson or polars may write otherwise
    than `repr`: NaN (orjson: null, polars: `NaN`), infinities (orjson: null), nonzero values
    below 1e-4 in magnitude (`repr`: `1e-05`, `1.5e-07`; orjson: `1e-5`, polars: `0.00001`,
    `1.5e-7`). Every other float's text is `repr`'s in both. `nulls` of the values are NaN
    standing for empty cells: when no other value is unusual, none is given; else they are
    among the indexes (the caller tells them apart)."""
    magnitudes = np.abs(values)
    if magnitudes.size:  # the common case, none unusual, in a few passes
        if not nulls:  # NaN fails both tests
            usual = magnitudes.min() >= 1e-4 and magnitudes.max() < np.inf
        else:  # fmin and fmax leave NaN out: the NaN must be the nulls alone
            usual = (
                np.fmin.reduce(magnitudes) >= 1e-4
                and np.fmax.reduce(magnitudes) < np.inf
                and np.count_nonzero(np.isnan(values)) == nulls
            )
        if usual:
            return _NONE_UNUSUAL
    with np.errstate(invalid="ignore"):
        usual = np.isfinite(values) & ((magnitudes >= 1e-4) | (values == 0))
    return np.flatnonzero(~usual)


def _column_cells(orjson: ModuleType, column: Any) -> list[bytes] | None:
    """The CSV cells of a block's column as UTF-8 bytes, each the text `csv_cell` gives
    (None: an empty cell), formatted by orjson at C speed; None when the column needs the
    csv module (an int beyond 64 bits)."""
    if type(column) is np.ndarray:
        if column.dtype.kind == "b":
            bools: list[bytes] = _BOOL_CELLS[column.view(np.uint8)].tolist()
            return bools
        cells: list[bytes] = orjson.dumps(column, option=orjson.OPT_SERIALIZE_NUMPY)[
            1:-1
        ].split(b",")
        if column.dtype.kind == "f":
            for index in _unusual(column).tolist():
                cells[index] = repr(float(column[index])).encode()
        return cells
    try:
        cells = orjson.dumps(column)[1:-1].split(b",")
    except TypeError:  # an int beyond 64 bits
        return None
    if float in map(type, column) or None in column:
        unusual = _unusual(np.array(column, dtype=np.float64))  # None as NaN
        for index in unusual.tolist():
            value = column[index]
            cells[index] = b"" if value is None else repr(value).encode()
    return cells


_MERGED = {"f": np.float64, "i": np.int64, "b": np.bool_}
"""The dtypes the pieces of one column from consecutive blocks are joined into."""


def _kind(column: Any) -> str | None:
    """What a block's column joins with: "f" (float64, or a list of floats with None), "i"
    (numpy ints that int64 holds exactly), "b" (bools); None: it is formatted alone."""
    if type(column) is not np.ndarray:
        return "f" if float in map(type, column) or int not in map(type, column) else None
    dtype = column.dtype
    if dtype.kind == "u" and dtype.itemsize == 8:
        return None
    return "i" if dtype.kind in "iu" else dtype.kind


def _nones(column: Sequence[Any], values: np.ndarray) -> np.ndarray:
    """Indexes of the None cells of a column of floats and None whose float64 array (None as
    NaN) is `values`: looked for among its NaN cells alone."""
    nan = np.flatnonzero(np.isnan(values))
    return nan[[column[index] is None for index in nan.tolist()]] if nan.size else nan


def _joined(pieces: list[tuple[Any, int]], total: int) -> tuple[np.ndarray, np.ndarray] | None:
    """One field's columns over consecutive blocks (`pieces`: its column in each block, None
    where the block lacks it, and the block's length; `total` rows) joined into one array,
    with the mask of its empty cells (None cells, blocks without the field), when their kinds
    agree (`_kind`); else None."""
    kinds = {_kind(column) for column, _ in pieces if column is not None}
    if len(kinds) != 1 or None in kinds:
        return None
    dtype = _MERGED[kinds.pop()]  # type: ignore[index]
    empty = np.zeros(total, dtype=bool)
    parts: list[np.ndarray] = []
    start = 0
    for column, length in pieces:
        if column is None:
            parts.append(np.zeros(length, dtype=dtype))
            empty[start : start + length] = True
        elif type(column) is list:
            values = np.array(column, dtype=np.float64)  # None as NaN ...
            parts.append(values)
            nones = _nones(column, values)
            if nones.size:  # ... and an empty cell
                empty[start + nones] = True
        else:
            parts.append(column)
        start += length
    return np.concatenate(parts).astype(dtype, copy=False), empty


def _field_cells(orjson: ModuleType, pieces: list[tuple[Any, int]]) -> list[bytes] | None:
    """The cells of one field over consecutive blocks (`pieces`: see `_joined`), joined into
    one column where their kinds agree, so orjson formats it in one call."""
    if len(pieces) == 1 and pieces[0][0] is not None:
        return _column_cells(orjson, pieces[0][0])
    total = sum(length for _, length in pieces)
    if all(column is None for column, _ in pieces):
        return [b""] * total
    joined = _joined(pieces, total)
    if joined is not None:
        values, empty = joined
        cells = _column_cells(orjson, values)
        if cells is not None:
            for index in np.flatnonzero(empty).tolist():
                cells[index] = b""
        return cells
    out: list[bytes] = []
    for column, length in pieces:
        if column is None:
            out.extend([b""] * length)
            continue
        column_cells = _column_cells(orjson, column)
        if column_cells is None:
            return None
        out.extend(column_cells)
    return out


FRAME_ROWS = 256
"""The rows from which a store's run of numeric blocks, or of numeric row dicts that
`_json_lines` leaves, is written by polars rather than by orjson's cells or `_number_lines`:
a polars write costs a fixed ~0.2 ms (its query engine) and then far less per row."""

_BOOL_TEXTS = np.array(["False", "True"])


def _frame_column(
    polars: ModuleType,
    column: Any,
    empty: np.ndarray | None = None,
    kinds: set[type] | None = None,
) -> Any:
    """A polars Series whose CSV cells are `csv_cell`'s text for each value of `column` (a 1-d
    numpy array of bools, ints or floats, or a sequence of ints, floats, bools and None, whose
    value types are `kinds` when given): the numbers polars writes as `repr` does stay
    numbers; the others (`_unusual` floats, bools, a column mixing ints and floats, ints
    beyond int64) are their `repr` as text. None cells and the cells `empty` marks are null
    (an empty cell)."""
    if type(column) is not np.ndarray:
        if kinds is None:
            kinds = set(map(type, column))
        if kinds <= {float, type(None)}:
            # polars reads Python floats faster than numpy does; None: null, an empty cell
            values = column if type(column) is list else list(column)
            series = polars.Series(values, dtype=polars.Float64)
            odd = _unusual(series.to_numpy(), series.null_count())  # null as NaN
            if odd.size:
                odd = odd[[values[index] is not None for index in odd.tolist()]]
            if empty is not None and odd.size:
                odd = odd[~empty[odd]]
            if odd.size:
                reprs = [repr(values[index]) for index in odd.tolist()]
                series = series.cast(polars.String).scatter(odd, reprs)
            return _emptied(series, empty)
        if kinds <= {int, type(None)}:
            try:
                series = polars.Series(list(column), dtype=polars.Int64)
            except (TypeError, OverflowError):  # an int beyond int64: its repr
                series = None
            if series is not None:
                return _emptied(series, empty)
        texts = [None if value is None else repr(value) for value in column]
        return _emptied(polars.Series(texts, dtype=polars.String), empty)
    kind = column.dtype.kind
    if kind == "b":
        return _emptied(polars.Series(_BOOL_TEXTS[column.view(np.uint8)]), empty)
    series = polars.Series(column)
    if kind == "f":
        odd = _unusual(column)
        if empty is not None and odd.size:
            odd = odd[~empty[odd]]
        if odd.size:
            texts = [repr(value) for value in column[odd].tolist()]
            series = series.cast(polars.String).scatter(odd, texts)
    return _emptied(series, empty)


def _emptied(series: Any, empty: np.ndarray | None) -> Any:
    """`series` with the cells `empty` marks as null."""
    if empty is None or not empty.any():
        return series
    return series.scatter(np.flatnonzero(empty), None)


def _alike(columns: Iterable[Any]) -> Any:
    """Columns of consecutive blocks joined as they are (each cell's text is the same in the
    join), when they are alike: numpy arrays of one dtype, or lists of floats and None; else
    None (a block without the field among them, too)."""
    pieces = list(columns)
    first = pieces[0]
    if type(first) is np.ndarray:
        if all(type(piece) is np.ndarray and piece.dtype == first.dtype for piece in pieces):
            return np.concatenate(pieces)
    elif all(type(piece) is list and _kind(piece) == "f" for piece in pieces):
        joined: list[Any] = []
        for piece in pieces:
            joined += piece  # list to list: a block copy, faster than a chain's iteration
        return joined
    return None


def _list_kinds(column: Any) -> set[type] | None:
    """For a block's list column (floats or ints, with None: see `_kind`), value types that
    hold its own, found without a look at each value; None for an array."""
    if type(column) is not list:
        return None
    if _kind(column) == "f":
        return {float, type(None)}
    return {int, type(None)}


def _field_frame_column(polars: ModuleType, pieces: list[tuple[Any, int]]) -> Any:
    """One field over consecutive blocks (`pieces`: see `_joined`) as one polars Series (see
    `_frame_column`): the pieces joined into one array where their kinds agree, else each
    piece's Series, as text where their dtypes differ."""
    if len(pieces) == 1 and pieces[0][0] is not None:
        column = pieces[0][0]
        return _frame_column(polars, column, kinds=_list_kinds(column))
    alike = _alike(column for column, _ in pieces)
    if alike is not None:
        return _frame_column(polars, alike, kinds=_list_kinds(alike))
    total = sum(length for _, length in pieces)
    joined = _joined(pieces, total)
    if joined is not None:
        return _frame_column(polars, *joined)
    parts = [None if column is None else _frame_column(polars, column) for column, _ in pieces]
    dtypes = {part.dtype for part in parts if part is not None}
    dtype = dtypes.pop() if len(dtypes) == 1 else polars.String
    return polars.concat(
        [
            polars.Series([None] * length, dtype=dtype) if part is None else part.cast(dtype)
            for part, (_, length) in zip(parts, pieces, strict=True)
        ]
    )


def _frame_text(polars: ModuleType, series: list[Any], delimiter: str, line_end: str) -> bytes:
    """The CSV rows (no header) of the columns `series`, written by polars."""
    frame = polars.DataFrame([column.alias(str(index)) for index, column in enumerate(series)])
    out = io.BytesIO()
    frame.write_csv(out, include_header=False, separator=delimiter, line_terminator=line_end)
    return out.getvalue()


def _numbers_frame_text(
    polars: ModuleType,
    rows: list[dict[str, Any]],
    fields: list[str],
    delimiter: str,
    line_end: str,
) -> bytes | None:
    """The CSV text of `rows` (whose keys are all among `fields`) written by polars column by
    column, byte for byte `_number_lines`' (None where that gives None)."""
    if len(fields) < 2 or delimiter not in _PLAIN_DELIMITERS:
        return None  # a lone empty cell is written `""` by the csv module
    try:  # every row has every field: the columns at C speed
        columns: list[Any] = list(zip(*map(itemgetter(*fields), rows), strict=True))
    except KeyError:
        columns = [[row.get(name) for row in rows] for name in fields]
    kinds = [set(map(type, column)) for column in columns]
    if not all(map(_NUMBERS.issuperset, kinds)):
        return None
    series = [
        _frame_column(polars, column, kinds=column_kinds)
        for column, column_kinds in zip(columns, kinds, strict=True)
    ]
    return _frame_text(polars, series, delimiter, line_end)


class CsvSink(BufferedFileSink):
    """Writes records as CSV rows under a header that is the union of every key seen.

    Columns are in first-seen order. A key that first appears late (in row 500, say) adds a
    column: the file is rewritten with the wider header into a temporary file that replaces
    the old one atomically (`os.replace`), so a crash leaves either file whole. Rows without
    a key leave its cell empty; a record with no keys (`{}`) is a row of empty cells, held
    until the file has a column (in a file that never gets one there is no row for it: it
    holds no value, so nothing is lost or counted; the sink says so once at close). A new
    sink starts a new file (`mode="w"`, the default: see BufferedFileSink); `mode="a"`
    appends to an existing file and keeps its columns. `fieldnames` fixes the first columns'
    order up front.

    Rows end in `lineterminator`: "\\r\\n" by default (RFC 4180), or "\\n" (Unix text, as
    Spinning Up's `progress.txt`); either way cells holding line breaks are quoted and read
    back whole. Cells: see `csv_cell`; of two keys with one text in a nested mapping (a
    cell's JSON), the earlier is written and the later counted in `counts["clashed"]`.
    Output is read back by `csv.DictReader` and `pandas.read_csv`. Flush policy, crash
    repair, one writer per file: see BufferedFileSink.

    With the `fast` extra (`sinks.file.FAST`), a store's run of row dicts of ints, floats and
    None is written by orjson (its JSON of the rows, cut into lines) when each cell's JSON is
    its repr; column blocks held by `write_batch`, and numeric rows orjson would write
    otherwise (NaN, magnitudes below 1e-4, bools), by polars' CSV writer from `FRAME_ROWS`
    rows, below that by orjson's cells or in Python: the same bytes as the pure-Python path's
    in every case.

    `delimiter` (one character, `","` by default) separates cells in every row the sink
    writes or reads: the header read when appending to an existing file, new rows, and the
    rewrite under a wider header. `delimiter="\\t"` writes a tab-separated file, as Spinning
    Up's `progress.txt`, read back by `csv.DictReader(..., delimiter="\\t")` and
    `pandas.read_table`; a cell that holds the delimiter is quoted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "w",
        flush_every: int = 1000,
        flush_seconds: float | None = 2.0,
        fsync: bool = False,
        max_pending: int = 1_000_000,
        fieldnames: Sequence[str] = (),
        delimiter: str = ",",
        lineterminator: str = "\r\n",
    ) -> None:
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise ValueError(
                "delimiter must be one character other than a quote or a line break, "
                f"got {delimiter!r}"
            )
        if lineterminator not in ("\r\n", "\n"):
            raise ValueError(
                f"lineterminator must be '\\r\\n' or '\\n', got {lineterminator!r}"
            )
        self.delimiter = delimiter
        self.lineterminator = lineterminator
        self.line_end = lineterminator.encode()[-1:]
        super().__init__(
            path,
            mode=mode,
            flush_every=flush_every,
            flush_seconds=flush_seconds,
            fsync=fsync,
            max_pending=max_pending,
        )
        try:
            self.fieldnames: list[str] = [] if self._replace_first else self._read_header()
        except BaseException:
            self._abandon()
            raise
        self._has_header = bool(self.fieldnames)
        self._headless = 0  # rows with no keys held back until the file has a column
        self._aside = _Aside()  # what stores and checkpoints read, off the write path
        for name in fieldnames:
            if str(name) not in self.fieldnames:
                (self._aside.declared if self._has_header else self.fieldnames).append(str(name))

    def _continued(self) -> None:
        header = self._read_header()
        declared = [name for name in self.fieldnames if name not in header]
        self.fieldnames, self._has_header = (header, True) if header else (declared, False)
        self._aside.declared = declared if header else []

    def _read_header(self) -> list[str]:
        if not self.path.is_file():  # a device such as /dev/full has no header to read
            return []
        with self.path.open(encoding="utf-8-sig", newline="") as handle:  # a BOM is no name
            return next(csv.reader(handle, delimiter=self.delimiter), [])

    def _repair_tail(self) -> int:
        """Cuts off a torn last line and a last row torn inside a quoted cell."""
        return repair_torn_tail(self.path) + _cut_open_quote(self.path, self.delimiter)

    takes_absent = True
    blocks_take_absent = True  # a None cell is an empty cell; RowBlock.keys() for the header

    def _columns_held(self, columns: Columns, length: int) -> RowBlock | None:
        if fast_json() is None or self.delimiter not in _PLAIN_DELIMITERS:
            return None
        if NUL_REFUSED and any("\x00" in key for key in columns if type(key) is str):
            return None
        return self.numeric_block(columns, length)

    def _store(self, rows: list[Any]) -> None:
        segments = held_segments(rows) if self._held_blocks else [rows]
        if NUL_REFUSED:
            segments = [
                part if isinstance(part, RowBlock) else [self._without_nul(row) for row in part]
                for part in segments
            ]
        fields = self.fieldnames + self._aside.declared
        known = set(fields)
        renamed = False
        for part in segments:
            keys: Iterable[Any]
            if isinstance(part, RowBlock):
                keys = part.keys()
            elif known.issuperset(chain.from_iterable(part)):
                continue  # no new key, checked at C speed: no loop over every key
            else:
                keys = chain.from_iterable(part)
            for key in keys:
                if key not in known:
                    if type(key) is not str:
                        renamed = True
                    name = str(key)
                    if name not in known:
                        known.add(name)
                        fields.append(name)
        overwritten: list[str] = []  # a later key of a text an earlier key of its row has
        if renamed:
            segments = [
                part
                if isinstance(part, RowBlock)
                else [self._named(row, overwritten) for row in part]
                for part in segments
            ]
        kinds = [None if isinstance(part, RowBlock) else _value_types(part) for part in segments]
        paired = sum(
            _paired_in_json(part, part_kinds)
            for part, part_kinds in zip(segments, kinds, strict=True)
            if not isinstance(part, RowBlock) and part_kinds is not None
        )
        clashed: list[str] = []  # nested keys of one text left out by the cells
        if not fields:  # no column yet: these rows are written once there is a header
            self._headless += len(rows)
            return
        groups: list[tuple[list[dict[str, Any]] | list[RowBlock], set[type] | None]] = []
        for part, part_kinds in zip(segments, kinds, strict=True):
            if isinstance(part, RowBlock):  # consecutive blocks are formatted together
                if groups and groups[-1][0] and isinstance(groups[-1][0][0], RowBlock):
                    groups[-1][0].append(part)
                else:
                    groups.append(([part], None))
            else:
                groups.append((part, part_kinds))
        body = b"".join([self._text(group, fields, clashed, value_types)
                         for group, value_types in groups])
        widened = len(fields) > len(self.fieldnames)
        if widened and self._has_header:
            self._rewrite_with_header(fields, body)
        else:
            if self._has_header:
                self._append(body)
            else:
                text = io.StringIO()
                writer = csv.writer(
                    text, delimiter=self.delimiter, lineterminator=self.lineterminator
                )
                writer.writerow(fields)
                writer.writerows([""] * len(fields) for _ in range(self._headless))
                self._append(text.getvalue().encode("utf-8") + body)
        self.fieldnames = fields
        self._aside.declared = []
        self._has_header = True
        self._headless = 0
        if clashed:
            note_nested_clashes(self.counts, clashed, stacklevel=6)
        for name in overwritten:
            self.counts.note(
                "overwritten",
                f"keys {name!r} of different types share one CSV column; the later wins",
                key=name,
                category=UserWarning,
                stacklevel=6,
            )
        if paired:
            self.counts.note(
                "changed",
                "a text holding a high and a low lone surrogate side by side, in a list or "
                "mapping, reads back from the cell's JSON as one character (JSON has no form "
                "for the two)",
                n=paired,
                category=UserWarning,
                stacklevel=6,
            )

    def _text(
        self,
        part: list[dict[str, Any]] | list[RowBlock],
        fields: list[str],
        clashed: list[str],
        kinds: set[type] | None = None,
    ) -> bytes:
        """The CSV rows of `part` (row dicts, whose value types are `kinds`, or consecutive
        blocks of columns) under `fields`."""
        if part and isinstance(part[0], RowBlock):
            blocks: list[RowBlock] = part
            text = self._blocks_text(blocks, fields)
            if text is not None:
                return text
            part = [row for block in blocks for row in block.rows()]
            kinds = None
        rows: list[dict[str, Any]] = part  # type: ignore[assignment]
        orjson = fast_json()
        if orjson is not None:
            lines = _json_lines(
                orjson,
                rows,
                fields,
                _value_types(rows) if kinds is None else kinds,
                self.delimiter,
                self.lineterminator,
            )
            if lines is not None:
                return lines
        polars = fast_frames() if len(rows) >= FRAME_ROWS else None
        if polars is not None:
            frame_text = _numbers_frame_text(
                polars, rows, fields, self.delimiter, self.lineterminator
            )
            if frame_text is not None:
                return frame_text
        numbers = _number_lines(rows, fields, self.delimiter, self.lineterminator)
        if numbers is None:
            out = io.StringIO()
            writer = csv.writer(out, delimiter=self.delimiter, lineterminator=self.lineterminator)
            writer.writerows(_cells(rows, fields, clashed))
            numbers = out.getvalue()
        return numbers.encode("utf-8")

    def _blocks_text(self, blocks: list[RowBlock], fields: list[str]) -> bytes | None:
        """The CSV rows of consecutive blocks of numeric columns, the bytes the csv module
        writes for their rows, built column by column at C speed: by polars (from
        `FRAME_ROWS` rows on) or orjson (None: the rows are to be written as rows)."""
        if len(fields) < 2:  # a lone empty cell is written `""`
            return None
        polars = fast_frames() if sum(block.length for block in blocks) >= FRAME_ROWS else None
        if polars is not None:
            series = [
                _field_frame_column(
                    polars, [(block.columns.get(name), block.length) for block in blocks]
                )
                for name in fields
            ]
            return _frame_text(polars, series, self.delimiter, self.lineterminator)
        orjson = fast_json()
        if orjson is None:
            return None
        cells: list[list[bytes]] = []
        for name in fields:
            pieces = [(block.columns.get(name), block.length) for block in blocks]
            field_cells = _field_cells(orjson, pieces)
            if field_cells is None:
                return None
            cells.append(field_cells)
        end = self.lineterminator.encode()
        return end.join(map(self.delimiter.encode().join, zip(*cells, strict=True))) + end

    def _add_state(self, state: dict[str, Any]) -> None:
        """Adds the columns and the rows the file holds (under the store lock, with the
        file's part: a store in between would tear the checkpoint)."""
        # rows_written counts rows with no keys held back for want of a header (headless)
        on_disk = state["file"]["rows"] - self._headless
        if self._aside.rows_before is None:  # rows the file held before this sink wrote any
            self._aside.rows_before = self._count_rows() - on_disk
        state["csv"] = {
            "fieldnames": list(self.fieldnames),
            "declared": list(self._aside.declared),
            "has_header": self._has_header,
            "headless": self._headless,
            "rows_in_file": self._aside.rows_before + on_disk,
        }

    def _rows_on_disk(self) -> int:
        """The rows under the header (media files are named by row)."""
        return self._count_rows()

    def _count_rows(self) -> int:
        if not self._size():
            return 0
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            return max(sum(1 for _ in csv.reader(handle, delimiter=self.delimiter)) - 1, 0)

    def load_node_state(self, state: dict[str, Any]) -> None:
        if self._restored is not None:  # a shared sink's second state: the base checks it
            super().load_node_state(state)
            return
        saved = state["csv"]
        aside = self._aside
        aside.saved = (saved["fieldnames"] if saved["has_header"] else None, saved["rows_in_file"])
        super().load_node_state(state)
        aside.rows_before = saved["rows_in_file"] - (state["file"]["rows"] - saved["headless"])
        self.fieldnames = list(saved["fieldnames"])
        aside.declared = list(saved.get("declared", ()))  # columns the header is to gain
        self._has_header = saved["has_header"]
        self._headless = saved["headless"]

    def _cut_back(self, saved: dict[str, Any]) -> None:
        """As a file sink's, unless a key that came after the checkpoint widened the header
        (the file was rewritten): then the checkpoint's rows are kept under its header."""
        header, rows_in_file = self._aside.saved
        if header is None or self._read_header() == header or (
            self.path.stat().st_size < saved["bytes"]  # not rewritten: refused below
        ):
            super()._cut_back(saved)
            return
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=self.delimiter)
            next(reader, None)
            kept = zip(range(rows_in_file), reader, strict=False)
            rows = [_unpadded(row, len(header)) for _, row in kept]
        text = io.StringIO()
        writer = csv.writer(text, delimiter=self.delimiter, lineterminator=self.lineterminator)
        writer.writerow(header)
        writer.writerows(rows)
        bom = codecs.BOM_UTF8 if self._starts_with_bom() else b""
        body = bom + text.getvalue().encode("utf-8")
        if len(body) != saved["bytes"]:
            self.counts.note(
                "changed",
                "the file was widened after the checkpoint; its rows were rewritten under the "
                "checkpoint's header, every cell kept, but rows another writer left short, "
                "blank or otherwise quoted are written as CsvSink writes rows (their cells "
                "read back the same)",
                category=UserWarning,
                stacklevel=6,
            )
        temporary = self._rewrite_path
        temporary.write_bytes(body)
        self._replace_with(temporary)

    def on_close(self) -> None:
        if self._headless:  # nothing to store, nothing lost: said, not counted
            warnings.warn(
                f"{self!r}: {self._headless} records with no keys were written to a file "
                "that never got a column: a CSV file has no row for them (they hold no "
                "value: nothing is lost)",
                UserWarning,
                stacklevel=2,
            )
        super().on_close()

    def _as_text(self, value: Any) -> Any:
        clashed: list[str] = []
        value = jsonable(value, clashed)
        note_nested_clashes(self.counts, clashed)
        return json.dumps(value) if isinstance(value, (list, dict)) else value

    def _writable(self, value: Any) -> bool:
        try:
            str(csv_cell(value))
        except Exception:
            return False
        return True

    def _without_nul(self, row: dict[Any, Any]) -> dict[Any, Any]:
        """The row with NUL characters in its text keys and values replaced by U+FFFD, which
        Python 3.10's csv module can write (counted in counts["changed"], warned once)."""
        if not any("\x00" in item for pair in row.items() for item in pair if type(item) is str):
            return row
        self.counts.note(
            "changed",
            "Python 3.10's csv module cannot write NUL; it is written as U+FFFD",
            category=UserWarning,
            stacklevel=7,
        )

        def clean(item: Any) -> Any:
            return item.replace("\x00", "\ufffd") if type(item) is str else item

        return {clean(key): clean(value) for key, value in row.items()}

    @staticmethod
    def _named(row: dict[Any, Any], overwritten: list[str]) -> dict[str, Any]:
        """The row with every key as text; of two keys with one text, the later wins (the
        text is added to `overwritten`, counted once the rows are stored)."""
        named: dict[str, Any] = {}
        for key, value in row.items():
            name = str(key)
            if name in named:
                overwritten.append(name)
            named[name] = value
        return named

    def _starts_with_bom(self) -> bool:
        """Whether the file begins with UTF-8's byte order mark (another writer's, kept)."""
        with self.path.open("rb") as handle:
            return handle.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8

    def _rewrite_with_header(self, fields: list[str], body: bytes) -> None:
        """Rewrites the file under the wider header `fields`, then `body` (the new rows)."""
        self._drop_handle()
        temporary = self._rewrite_path
        encoding = "utf-8-sig" if self._starts_with_bom() else "utf-8"  # a BOM stays
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as old, temporary.open(
                "w", encoding=encoding, newline=""
            ) as new:
                reader = csv.reader(old, delimiter=self.delimiter)
                next(reader, None)
                writer = csv.writer(
                    new, delimiter=self.delimiter, lineterminator=self.lineterminator
                )
                writer.writerow(fields)
                padding = len(fields)
                writer.writerows(row + [""] * (padding - len(row)) for row in reader)
                new.write(body.decode("utf-8"))
                new.flush()
                os.fsync(new.fileno())
            self._replace_with(temporary)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()


def _unpadded(row: list[str], width: int) -> list[str]:
    """A row of a file widened since (each row padded with empty cells to the wider
    header's width) as it stood under a header `width` cells wide: the padding goes down to
    that width, never a cell holding text."""
    end = len(row)
    while end > width and row[end - 1] == "":
        end -= 1
    return row[:end]


class _Aside:
    """CsvSink's state that stores and checkpoints read, kept off the instance so that the
    sink keeps CPython's compact attribute layout (its writes read attributes the faster)."""

    __slots__ = ("declared", "rows_before", "saved")

    def __init__(self) -> None:
        # declared columns that a header already on disk lacks: it is widened at the next store
        self.declared: list[str] = []
        self.rows_before: int | None = None  # rows the file held before, counted at a checkpoint
        # the checkpoint's header (None: no header yet) and rows, while a state is loaded
        self.saved: tuple[list[str] | None, int] = (None, 0)


def _cut_open_quote(path: Path, delimiter: str) -> int:
    """Truncates a CSV file after its last complete row when the file ends inside a quoted
    cell (a crash in the middle of a multi-line cell); returns the bytes removed."""
    if not path.is_file() or not _has_quote(path):
        return 0
    size = path.stat().st_size
    with path.open("rb") as handle:
        consumed = 0
        complete = 0

        def lines() -> Iterator[str]:
            nonlocal consumed
            for line in handle:
                consumed += len(line)
                yield line.decode("utf-8", errors="replace")

        reader = csv.reader(lines(), delimiter=delimiter, strict=True)
        while True:
            try:
                next(reader)
            except StopIteration:
                break
            except csv.Error:  # unexpected end of data: the last row is torn
                break
            complete = consumed
    if complete < size and consumed == size:
        with path.open("rb+") as torn:
            torn.truncate(complete)
        return size - complete
    return 0


def _has_quote(path: Path) -> bool:
    with path.open("rb") as handle:
        return any(b'"' in block for block in iter(lambda: handle.read(1 << 20), b""))
