"""Reading the files a run writes: CSV (CsvSink, SB3's progress.csv), JSON Lines (JsonlSink) and
Spinning Up's tab-separated `progress.txt`, shared by `rlpipe plot` and `rlpipe tail`.

A run folder is the data files directly inside it. Only complete lines are read: a line still
being written (no line break yet) is left out. Nested JSON objects are flattened with `/`
(`pipeline.core.flatten`); cells are numbers when their text or JSON value is one.

Any bytes are read without an error: text that is not UTF-8 is decoded with U+FFFD in place of
the bad bytes, a line that is not a JSON object or a CSV row the csv module cannot parse is
skipped, and cells of any size are read (CsvSink writes cells beyond the csv module's default
128 KiB field limit: `csv_rows` raises that process-wide limit, as `sinks.csv` does).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.flatten import flatten
from pipeline.core.values import to_float

DATA_SUFFIXES = (".csv", ".jsonl", ".ndjson")
"""The suffixes of the data files in a run folder (besides Spinning Up's `progress.txt`)."""

SPINUP_NAME = "progress.txt"

NO_RUN_FILES = "no .csv, .jsonl or progress.txt file in it"
"""What is said of a folder holding no data file (nor a sub-folder that has some)."""

SUFFIX_FORMATS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".tsv": "tsv",
    ".txt": "tsv",
}
"""The suffixes of the files `rlpipe plot` and `rlpipe tail` read when given by name, and the
format each names (a run folder's files: `is_data_file`)."""

NOT_A_RUN_FILE = (
    "not a run file: rlpipe reads .csv, .jsonl (.ndjson, .json), .tsv and .txt files "
    "(such as Spinning Up's progress.txt) and run folders"
)
"""What is said of a file given by name whose suffix names no format rlpipe reads."""

FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)
"""The csv field size limit while reading: the largest the csv module takes."""


@dataclass
class Table:
    """One file's numeric columns, in file order; NaN marks a missing or non-numeric cell."""

    path: Path
    columns: dict[str, np.ndarray]
    rows: int

    @property
    def label(self) -> str:
        """The file's name without its suffix ("train" for train.csv)."""
        return self.path.name.split(".")[0] if self.path.name != SPINUP_NAME else "progress"


def is_data_file(path: Path) -> bool:
    """Whether `path` names a file `rlpipe plot`/`tail` read in a run folder."""
    return not path.name.startswith(".") and (
        path.suffix.lower() in DATA_SUFFIXES or path.name == SPINUP_NAME
    )


def run_files(folder: Path) -> list[Path]:
    """The data files directly inside `folder`: `train.*` first, then the others by name;
    hidden files (such as CsvSink's temporary `.train.csv.rewrite`) are skipped."""
    files = (p for p in folder.iterdir() if p.is_file() and is_data_file(p))
    return sorted(files, key=lambda p: (p.name.split(".")[0] != "train", p.name))


def check_given_file(path: Path) -> None:
    """The check `rlpipe plot` and `rlpipe tail` make of a file given by name (not of the
    files in a run folder): raises ValueError (`NOT_A_RUN_FILE`) when its suffix names no
    format they read, such as README.md, rather than read it as a CSV file."""
    if path.suffix.lower() not in SUFFIX_FORMATS:
        raise ValueError(f"{path}: {NOT_A_RUN_FILE}")


def file_format(path: Path) -> str:
    """The file's format, "csv", "tsv" or "jsonl": by suffix (`SUFFIX_FORMATS`), else by its
    first line."""
    known = SUFFIX_FORMATS.get(path.suffix.lower())
    if known is not None:
        return known
    with path.open(encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    if first.lstrip().startswith("{"):
        return "jsonl"
    return "tsv" if "\t" in first else "csv"


def complete_text(path: Path) -> str:
    """The file's text up to its last line break: a line still being written is left out.
    A UTF-8 byte-order mark (spreadsheet programs write one) is dropped."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    end = text.rfind("\n")
    return text[: end + 1] if end >= 0 else ""


def cell_number(cell: Any) -> float:
    """The number a cell holds: a text cell parsed as a number ("12", "1e3", "nan"), any other
    value (a JSON number or boolean) as `pipeline.core.values.to_float` takes it; NaN when the
    cell is empty, missing or not a number."""
    if isinstance(cell, str):
        try:
            return float(cell)
        except ValueError:
            return math.nan
    number = to_float(cell)
    return math.nan if number is None else number


def _number_column(cells: Sequence[Any]) -> np.ndarray:
    try:  # the fast path: every cell is a number or a number's text
        column = np.asarray(cells, dtype=np.float64)
        if column.ndim == 1:  # not JSON lists of one length, which numpy would stack
            return column
    except (ValueError, TypeError, OverflowError):
        pass
    return np.fromiter((cell_number(c) for c in cells), dtype=np.float64, count=len(cells))


def csv_rows(text: str, delimiter: str = ",") -> Iterator[list[str]]:
    """The rows of CSV (or tab-separated) text, as the csv module reads a file: a row ends at
    a line break outside quotes (`\\n`, `\\r\\n` or a lone `\\r`); an empty line is an empty
    row. Cells of any size are read; a row the csv module cannot parse (before Python 3.11: a
    NUL character) is skipped."""
    if csv.field_size_limit() < FIELD_LIMIT:
        csv.field_size_limit(FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:  # the reader starts afresh on the next line
            continue
        yield row


def read_delimited(text: str, delimiter: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of CSV (or tab-separated) text (`csv_rows`); empty lines
    after the header are skipped."""
    rows = csv_rows(text, delimiter)
    header = [name.strip() for name in next(rows, [])]
    return header, [row for row in rows if row]


def json_record(line: str | bytes) -> dict[str, Any] | None:
    """The record a JSON Lines line holds, flattened with "/" (`pipeline.core.flatten`); None
    when the line is not a JSON object: blank, an array or a number, text that does not parse,
    bytes that are not UTF-8, or nesting too deep for Python's parser."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return flatten(value) if isinstance(value, Mapping) else None


def read_table(path: str | os.PathLike[str]) -> Table:
    """Reads a CSV, JSONL or Spinning Up progress.txt file into numeric columns.

    A torn last line, blank lines and lines that are not JSON objects (`json_record`) are
    skipped. A CSV row with fewer cells than the header leaves the rest missing; cells beyond
    the header are dropped. Columns with no number at all are dropped (text, JSON lists).
    Raises OSError when the file cannot be read."""
    path = Path(path)
    text = complete_text(path)
    kind = file_format(path)
    names: list[str]
    cells: dict[str, Sequence[Any]]
    if kind == "jsonl":
        # split at line feeds only: a JSON string may hold U+2028 and other line breaks
        records = [r for line in text.split("\n") if (r := json_record(line)) is not None]
        names = list(dict.fromkeys(key for record in records for key in record))
        cells = {name: [record.get(name) for record in records] for name in names}
        count = len(records)
    else:
        header, rows = read_delimited(text, "\t" if kind == "tsv" else ",")
        names = list(dict.fromkeys(header))
        width = len(header)
        if any(len(row) != width for row in rows):
            rows = [row[:width] + [""] * (width - len(row)) for row in rows]
        transposed = list(zip(*rows, strict=True)) if rows else [() for _ in header]
        cells = {name: transposed[header.index(name)] for name in names}
        count = len(rows)
    columns: dict[str, np.ndarray] = {}
    for name in names:
        values = _number_column(cells[name])
        if count and not np.all(np.isnan(values)):
            columns[name] = values
    return Table(path, columns, count)


__all__ = [
    "DATA_SUFFIXES",
    "FIELD_LIMIT",
    "NOT_A_RUN_FILE",
    "NO_RUN_FILES",
    "SPINUP_NAME",
    "SUFFIX_FORMATS",
    "Table",
    "cell_number",
    "check_given_file",
    "complete_text",
    "csv_rows",
    "file_format",
    "is_data_file",
    "json_record",
    "read_delimited",
    "read_table",
    "run_files",
]
