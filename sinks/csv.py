"""CsvSink: records as rows of a CSV file whose columns are every key ever written."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Sequence
from typing import Any

from pipeline.core.values import plain
from sinks.file import BufferedFileSink


def csv_cell(value: Any) -> Any:
    """The text a CSV cell holds for `value`: floats at full precision (`nan`, `inf` as such),
    None as an empty cell, arrays, lists and mappings as JSON, scalars of numpy/jax/torch as
    the Python number they hold."""
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is int or kind is str:
        return value
    if value is None:
        return ""
    value = plain(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return value


class CsvSink(BufferedFileSink):
    """Writes records as CSV rows under a header that is the union of every key seen.

    Columns are in first-seen order. A key that first appears late (in row 500, say) adds a
    column: the file is rewritten with the wider header into a temporary file that replaces
    the old one atomically (`os.replace`), so a crash leaves either file whole. Rows without
    a key leave its cell empty. Opening an existing file appends to it and keeps its columns
    (`mode="w"` starts afresh); `fieldnames` fixes the first columns' order up front.

    Rows end in "\\r\\n" (RFC 4180), so cells holding line breaks are quoted and read back
    whole. Cells: see `csv_cell`. Output is read back by `csv.DictReader` and `pandas.read_csv`.
    Flush policy and crash repair: see BufferedFileSink.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "a",
        flush_every: int = 1000,
        flush_seconds: float | None = 2.0,
        fsync: bool = False,
        max_pending: int = 1_000_000,
        fieldnames: Sequence[str] = (),
    ) -> None:
        super().__init__(
            path,
            mode=mode,
            flush_every=flush_every,
            flush_seconds=flush_seconds,
            fsync=fsync,
            max_pending=max_pending,
        )
        self.fieldnames: list[str] = self._read_header()
        self._has_header = bool(self.fieldnames)
        for name in fieldnames:
            if name not in self.fieldnames:
                self.fieldnames.append(str(name))

    def _read_header(self) -> list[str]:
        if not self.path.is_file():  # a device such as /dev/full has no header to read
            return []
        with self.path.open(encoding="utf-8", newline="") as handle:
            return next(csv.reader(handle), [])

    def _store(self, rows: list[dict[str, Any]]) -> None:
        fields = list(self.fieldnames)
        known = set(fields)
        for row in rows:
            for key in row:
                if key not in known:
                    name = str(key)
                    known.add(name)
                    fields.append(name)
        widened = len(fields) > len(self.fieldnames)
        if widened and self._has_header:
            self._rewrite_with_header(fields, rows)
        else:
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\r\n")
            if not self._has_header:
                writer.writerow(fields)
            writer.writerows([csv_cell(row.get(name)) for name in fields] for row in rows)
            self._append(text.getvalue())
        self.fieldnames = fields
        self._has_header = True

    def _rewrite_with_header(self, fields: list[str], rows: list[dict[str, Any]]) -> None:
        self._drop_handle()
        temporary = self.path.with_name(f".{self.path.name}.rewrite")
        try:
            with self.path.open(encoding="utf-8", newline="") as old, temporary.open(
                "w", encoding="utf-8", newline=""
            ) as new:
                reader = csv.reader(old)
                next(reader, None)
                writer = csv.writer(new, lineterminator="\r\n")
                writer.writerow(fields)
                padding = len(fields)
                writer.writerows(row + [""] * (padding - len(row)) for row in reader)
                writer.writerows([csv_cell(row.get(name)) for name in fields] for row in rows)
                new.flush()
                os.fsync(new.fileno())
            os.replace(temporary, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
