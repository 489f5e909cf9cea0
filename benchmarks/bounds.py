"""The pure-Python bounds of throughput.py's scenarios: each scenario's work written by hand
as one function (or two: write and flush), with no graph, for the benchmark's stream.

A bound does what the scenario's chain does to the stream's records (drop the None keys,
smooth `episode_return`, throttle, aggregate `return|loss`, format CSV rows and terminal
lines) and hands the result to the same leaf (a NullSink, or a file), but knows the stream's
keys up front: no key matching, no plans, no calls from node to node, no isolation, no lock,
no copies beyond the one record it emits. What rlpipe pays above a bound is the cost of its
generality and of the graph itself. throughput.py checks that each bound's output equals
rlpipe's in the same run, record for record or byte for byte.
"""

from __future__ import annotations

import io
import math
import time
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from benchmarks.stream import KEYS
from sinks.terminal import format_value, humanize

Record = dict[str, Any]
Columns = dict[str, Any]

RETURN = "episode_return"
COEFF = 0.99
SMOOTHED = f"{RETURN}_smoothed_{COEFF}"
"""The key the train chain adds (rlpipe's `smoothed_name(RETURN, COEFF)`)."""
STEP = 0.1 * COEFF
"""c_{t+1} = 0.9 c_t + 0.1 coeff: the constant term, computed as rlpipe computes it."""

MATCHED = ("episode_return", "critic_loss", "policy_loss")
"""The stream's keys that `aggregate('return|loss')` turns into statistics, in stream order."""
OTHERS = ("episode_length", "steps_per_second", "episodes", "steps")
"""The stream's other keys (the aggregate passes their last value)."""
STATS = ("mean", "std", "median", "max", "min")

CSV_EVERY = 1000
"""CsvSink's default `flush_every`: the bounds append to the file at the same row counts."""


@dataclass
class Bound:
    """A hand-written scenario: `write` per record (or `write_batch` per batch), `flush` at
    the end (an aggregate's window, a file's last rows), `close` to release a file."""

    write: Callable[[Any], None]
    flush: Callable[[], None] = lambda: None
    close: Callable[[], None] = lambda: None


# -- (a), (b): the train chain --------------------------------------------------------------


def train(write: Callable[[Record], None]) -> Bound:
    """drop_none > smooth('return', 0.99) > throttle(0) > sink, as one function."""
    state = [math.nan, 0.0]  # smoothed value, warm-up coefficient c_t

    def chain(data: Record) -> None:
        if None in data.values():
            out = {k: v for k, v in data.items() if v is not None}
        else:
            out = data.copy()
        x = out[RETURN]
        c = state[1]
        s = state[0] = x if c == 0.0 else (1.0 - c) * x + c * state[0]
        state[1] = 0.9 * c + STEP
        out[SMOOTHED] = s
        write(out)

    return Bound(chain)


def throttled_train(
    write: Callable[[Record], None], seconds: float, clock: Callable[[], float] = time.monotonic
) -> Bound:
    """The train chain with throttle(`seconds`): every record moves the moving average, only
    a record that passes the throttle is built and written."""
    state = [math.nan, 0.0, -math.inf]  # smoothed value, c_t, time of the last record passed

    def chain(data: Record) -> None:
        x = data[RETURN]
        c = state[1]
        s = state[0] = x if c == 0.0 else (1.0 - c) * x + c * state[0]
        state[1] = 0.9 * c + STEP
        now = clock()
        if now - state[2] < seconds:
            return
        state[2] = now
        if None in data.values():
            out = {k: v for k, v in data.items() if v is not None}
        else:
            out = data.copy()
        out[SMOOTHED] = s
        write(out)

    return Bound(chain)


# -- (c), (d): the aggregate ----------------------------------------------------------------


REDUCE: dict[str, Callable[..., Any]] = {
    "mean": np.mean, "std": np.std, "median": np.median, "max": np.max, "min": np.min}


def _statistics(values: list[float] | np.ndarray, stats: Sequence[str] = STATS) -> list[float]:
    """`stats` (of mean/std/median/max/min) of the values that are numbers (NaN left out),
    with numpy."""
    array = np.asarray(values, dtype=np.float64)  # None -> NaN
    kept = array == array
    if not kept.all():
        array = array[kept]
    return [float(REDUCE[stat](array)) for stat in stats]


def _window_record(
    columns: dict[str, list[float]] | dict[str, np.ndarray],
    last: Sequence[Any],
    stats: Sequence[str] = STATS,
) -> Record:
    """One window's record, keys in the stream's order: the statistics of each matching key
    (left out if the window had no value of it), the last value of the others."""
    others = dict(zip(OTHERS, last, strict=True))
    out: Record = {}
    for key in KEYS:
        if key in others:
            out[key] = others[key]
        elif len(columns[key]):
            names = [f"{key}_{stat}" for stat in stats]  # rlpipe's `stat_name`
            out.update(zip(names, _statistics(columns[key], stats), strict=True))
    return out


def aggregate(
    write: Callable[[Record], None], every: int | None = None, stats: Sequence[str] = STATS
) -> Bound:
    """aggregate('return|loss', every, stats) > sink: per record, each matching float
    appended to its key's list (None skipped) and a tuple of the other keys' values kept; per
    window, numpy's statistics of each list."""
    others = itemgetter(*OTHERS)
    lists: dict[str, list[float]] = {}
    held: list[Any] = [None, 0]  # last values of the other keys, writes in the window
    appends: list[Callable[[float], None]] = []

    def reset() -> None:
        lists.clear()
        lists.update({key: [] for key in MATCHED})
        appends[:] = [lists[key].append for key in MATCHED]
        held[0], held[1] = None, 0

    reset()

    def flush() -> None:
        if held[1]:
            out = _window_record(lists, held[0], stats)
            reset()
            write(out)

    def write_record(data: Record) -> None:
        returns, critic, policy = appends
        returns(data["episode_return"])
        critic(data["critic_loss"])
        x = data["policy_loss"]
        if x is not None:
            policy(x)
        held[0] = others(data)
        held[1] += 1
        if held[1] == every:
            flush()

    return Bound(write_record, flush)


# -- (e), (f): CSV and terminal -------------------------------------------------------------


class CsvFile:
    """A CSV file with fixed columns, rows formatted as CsvSink formats numbers (the repr of
    each value, an empty cell for None or a missing key, "\\r\\n" line ends) and appended
    every CSV_EVERY rows with no user-space buffer, as CsvSink appends them."""

    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        self.fields = list(fields)
        self.lines: list[str] = []
        self.text = ",".join(["%r"] * len(self.fields)).__mod__
        """A row's text from its values in column order: one format call."""
        self._file = io.FileIO(path, "w")
        self._file.write((",".join(self.fields) + "\r\n").encode("utf-8"))

    def row(self) -> Callable[[Record], None]:
        """`row(record)`: formats one record and holds it (storing every CSV_EVERY rows)."""
        fields, lines, due = self.fields, self.lines, self.store_due
        append, text = lines.append, self.text

        def row(data: Record) -> None:
            append(text(tuple(map(data.get, fields))))
            if len(lines) >= CSV_EVERY:
                due()

        return row

    def store_due(self) -> None:
        """Appends the held rows CSV_EVERY at a time, as CsvSink's writes do."""
        lines = self.lines
        while len(lines) >= CSV_EVERY:
            self._append(lines[:CSV_EVERY])
            del lines[:CSV_EVERY]

    def store(self) -> None:
        """Appends every held row (a flush)."""
        self.store_due()
        if self.lines:
            self._append(self.lines[:])
            self.lines.clear()

    def _append(self, lines: list[str]) -> None:
        lines.append("")
        self._file.write("\r\n".join(lines).replace("None", "").encode("utf-8"))

    def close(self) -> None:
        self.store()
        self._file.close()


def csv(path: Path, fields: Sequence[str]) -> Bound:
    """CsvSink(path) alone: each record a row."""
    file = CsvFile(path, fields)
    return Bound(file.row(), file.store, file.close)


def terminal_line(label: str) -> Callable[[Record], str]:
    """TerminalSink(label)'s line for a record, with sinks.terminal's own `format_value` and
    `humanize`; each key tuple's sorted, humanized names made once."""
    prefix = f"[{humanize(label)}] "
    names: dict[tuple[str, ...], list[tuple[str, str]]] = {}

    def line(data: Record) -> str:
        keys = tuple(data)
        shown = names.get(keys)
        if shown is None:
            shown = names[keys] = [(key, humanize(key)) for key in sorted(keys)]
        return prefix + " | ".join([f"{name} = {format_value(data[key])}" for key, name in shown])

    return line


def full(stream: TextIO, path: Path, fields: Sequence[str]) -> Bound:
    """The train chain (a) ending in TerminalSink('train', stream) and CsvSink(path)."""
    file = CsvFile(path, fields)
    to_csv = file.row()
    line = terminal_line("train")
    write_text, flush_text = stream.write, stream.flush

    def leaves(out: Record) -> None:
        write_text(line(out) + "\n")
        flush_text()
        to_csv(out)

    return Bound(train(leaves).write, file.store, file.close)


# -- (g), (h), (i): batched -----------------------------------------------------------------


def _none_runs(column: Any, length: int) -> list[tuple[int, int, bool]]:
    """(start, stop, holds None) for the runs of rows where `column` is None or not."""
    if isinstance(column, np.ndarray):
        return [(0, length, False)]
    nones = np.flatnonzero(np.equal(np.array(column, dtype=object), None))  # type: ignore[call-overload]
    if not len(nones):
        return [(0, length, False)]
    runs: list[tuple[int, int, bool]] = []
    start = 0
    for index in nones.tolist():
        if index > start:
            runs.append((start, index, False))
        if runs and runs[-1][2] and runs[-1][1] == index:
            runs[-1] = (runs[-1][0], index + 1, True)
        else:
            runs.append((index, index + 1, True))
        start = index + 1
    if start < length:
        runs.append((start, length, False))
    return runs


def batched_train(write_batch: Callable[[Columns], None]) -> Bound:
    """The train chain (a) on column batches: the moving average in one loop over the return
    column, the batch cut where `policy_loss` is None (those rows go on without it)."""
    state = [math.nan, 0.0]

    def chain(columns: Columns) -> None:
        s, c = state
        smoothed: list[float] = []
        append = smoothed.append
        for x in columns[RETURN].tolist():
            s = x if c == 0.0 else (1.0 - c) * x + c * s
            c = 0.9 * c + STEP
            append(s)
        state[0], state[1] = s, c
        out = dict(columns)
        out[SMOOTHED] = np.array(smoothed)
        policy = columns["policy_loss"]
        runs = _none_runs(policy, len(smoothed))
        if len(runs) == 1 and not runs[0][2]:
            write_batch(out)
            return
        for start, stop, none in runs:
            part = {key: column[start:stop] for key, column in out.items()}
            if none:
                del part["policy_loss"]
            write_batch(part)

    return Bound(chain)


def batched_aggregate(write: Callable[[Record], None], every: int | None = None) -> Bound:
    """aggregate('return|loss', every) on column batches: each matching column as a float64
    array (None as NaN), cut at the window bounds; numpy's statistics per window."""
    chunks: dict[str, list[np.ndarray]] = {key: [] for key in MATCHED}
    held: list[Any] = [0, ()]  # rows in the window, the last row's values of the other keys

    def flush() -> None:
        if held[0]:
            window = {key: np.concatenate(parts) for key, parts in chunks.items()}
            out = _window_record(window, held[1])
            for parts in chunks.values():
                parts.clear()
            held[0] = 0
            write(out)

    def chain(columns: Columns) -> None:
        arrays = [(key, np.asarray(columns[key], dtype=np.float64)) for key in MATCHED]
        length = len(arrays[0][1])
        start = 0
        while start < length:
            stop = length if every is None else min(length, start + every - held[0])
            for key, array in arrays:
                chunks[key].append(array[start:stop])
            held[0] += stop - start
            held[1] = [columns[key][stop - 1] for key in OTHERS]
            if held[0] == every:
                flush()
            start = stop

    return Bound(chain, flush)


def batched_csv(path: Path, fields: Sequence[str]) -> Bound:
    """CsvSink(path) on column batches: each column's values as Python numbers (`tolist`),
    each row's text in one format call."""
    file = CsvFile(path, fields)
    lines, due = file.lines, file.store_due

    def chain(columns: Columns) -> None:
        values = [
            column.tolist() if isinstance(column, np.ndarray) else column
            for column in map(columns.__getitem__, fields)
        ]
        lines.extend(map(file.text, zip(*values, strict=True)))
        due()

    return Bound(chain, file.store, file.close)


# -- (j), (k), (l): rolling windows and percentiles (the peers' statistics) ------------------

WINDOW = 100
"""The rolling window of (j) and (l): SB3's `stats_window_size`, RLlib's `window=100`."""
ROLLING_MEAN = f"{RETURN}_last{WINDOW}_mean"
"""The key (j) adds (rlpipe's `rolling_name(RETURN, WINDOW, "mean")`)."""
QUANTILES = (5.0, 50.0, 95.0, 99.0)
"""The percentiles of (k) and (l)."""
ROLLING_QUANTILES = tuple(f"{RETURN}_last{WINDOW}_p{q:g}" for q in QUANTILES)
PERCENTILE_EVERY = 1000
"""(k)'s window: records per aggregate."""
PERCENTILE_NAMES = {
    key: tuple(f"{key}_p{q:g}" for q in QUANTILES) for key in MATCHED
}


def rolling_mean(write: Callable[[Record], None]) -> Bound:
    """rolling('^episode_return$', window=100): a deque and a running sum, recomputed with
    fsum once per window as rlpipe does (the stream's returns are finite)."""
    window: deque[float] = deque()
    state = [0.0, 0]  # running sum, values since it was recomputed

    def chain(data: Record) -> None:
        x = data[RETURN]
        if len(window) == WINDOW:
            state[0] -= window.popleft()
        window.append(x)
        state[0] += x
        state[1] += 1
        if state[1] >= WINDOW:
            state[0], state[1] = math.fsum(window), 0
        out = data.copy()
        out[ROLLING_MEAN] = state[0] / len(window)
        write(out)

    return Bound(chain)


def rolling_quantiles(write: Callable[[Record], None]) -> Bound:
    """rolling('^episode_return$', window=100, stats=p5/p50/p95/p99): a deque and a sorted
    list kept with bisect (insort and a deletion: a memmove of at most 100 pointers), each
    percentile read from the order by numpy's linear rule."""
    window: deque[float] = deque()
    ordered: list[float] = []
    fractions = [q / 100 for q in QUANTILES]

    def chain(data: Record) -> None:
        x = data[RETURN]
        if len(window) == WINDOW:
            del ordered[bisect_left(ordered, window.popleft())]
        window.append(x)
        insort(ordered, x)
        n1 = len(ordered) - 1
        out = data.copy()
        for name, fraction in zip(ROLLING_QUANTILES, fractions, strict=True):
            index = n1 * fraction
            lower = int(index)
            if lower >= n1:
                out[name] = ordered[-1]
                continue
            a, b = ordered[lower], ordered[lower + 1]
            gamma = index - lower
            diff = b - a
            out[name] = b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma
        write(out)

    return Bound(chain)


def percentile_aggregate(write: Callable[[Record], None]) -> Bound:
    """aggregate('return|loss', every=1000, stats=p5/p50/p95/p99): lists of floats per key,
    `np.percentile` per key at each window's end, the others' last values."""
    columns: dict[str, list[float]] = {key: [] for key in MATCHED}
    appends = [(key, columns[key].append) for key in MATCHED]
    last: dict[str, Any] = {}
    count = [0]

    def emit() -> None:
        out: Record = {}
        for key in MATCHED:
            values = [v for v in columns[key] if v is not None]
            for name, value in zip(
                PERCENTILE_NAMES[key], np.percentile(values, QUANTILES).tolist(), strict=True
            ):
                out[name] = value
            columns[key].clear()
        for key in OTHERS:
            out[key] = last[key]
        count[0] = 0
        write(out)

    def chain(data: Record) -> None:
        for key, append in appends:
            append(data[key])
        for key in OTHERS:
            last[key] = data[key]
        count[0] += 1
        if count[0] == PERCENTILE_EVERY:
            emit()

    def flush() -> None:
        if count[0]:
            emit()

    return Bound(chain, flush)


# -- the column targets: numpy and the fast extra's writer, no graph ------------------------


def _csv_column(polars: Any, column: Any) -> Any:
    """CsvSink's cells of a numeric column as a polars Series (floats polars writes otherwise
    than `repr`, NaN and magnitudes below 1e-4, as `repr`'s text; None as null: an empty
    cell)."""
    values = np.array(column, dtype=np.float64) if type(column) is list else column
    series = polars.Series(values)
    if values.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            usual = np.isfinite(values) & ((np.abs(values) >= 1e-4) | (values == 0))
        if type(column) is list:
            usual |= np.equal(np.array(column, dtype=object), None)  # type: ignore[call-overload]
        odd = np.flatnonzero(~usual)
        if odd.size:
            texts = [repr(value) for value in values[odd].tolist()]
            series = series.cast(polars.String).scatter(odd, texts)
    if type(column) is list:
        nones = np.flatnonzero(np.equal(np.array(column, dtype=object), None))  # type: ignore[call-overload]
        if nones.size:
            series = series.scatter(nones, None)
    return series


def columns_train_csv(path: Path, fields: Sequence[str]) -> Bound:
    """The batched train chain to a CSV file with numpy, scipy and polars, as columns: the
    moving average over the return column by `scipy.signal.lfilter` once its warm-up (the
    first values, while the coefficient still moves) is over, None cells left empty (the
    rows that `drop_none` passes without the key), the columns written by polars' CSV writer,
    one append per batch."""
    import polars
    from scipy.signal import lfilter

    state = [math.nan, 0.0]
    file = io.FileIO(path, "w")
    file.write((",".join(fields) + "\r\n").encode("utf-8"))

    def chain(columns: Columns) -> None:
        s, c = state
        values = columns[RETURN].tolist()
        smoothed: list[float] = []
        append = smoothed.append
        warm = 0
        while warm < len(values) and 0.9 * c + STEP != c:  # the warm-up, value by value
            x = values[warm]
            s = x if c == 0.0 else (1.0 - c) * x + c * s
            c = 0.9 * c + STEP
            append(s)
            warm += 1
        column_smoothed = np.array(smoothed)
        if warm < len(values):  # from here on a constant coefficient: a recurrence in C
            tail, _ = lfilter([1.0 - c], [1.0, -c], columns[RETURN][warm:], zi=[c * s])
            column_smoothed = np.concatenate([column_smoothed, tail])
            s = float(tail[-1])
        state[0], state[1] = s, c
        frame = polars.DataFrame(
            [
                _csv_column(polars, column_smoothed if key == SMOOTHED else columns[key]).alias(key)
                for key in fields
            ]
        )
        out = io.BytesIO()
        frame.write_csv(out, include_header=False, line_terminator="\r\n")
        file.write(out.getvalue())

    return Bound(chain, close=file.close)


def columns_jsonl(path: Path) -> Bound:
    """Batched JSON Lines with polars and no sink: each batch as a DataFrame (a column with
    None as a nullable float column), polars' JSON array of its rows made lines in place,
    one append per batch. The writer `JsonlSink` chooses for column batches, alone: what the
    sink pays above it is holding, storing every `flush_every` rows and its checks."""
    import polars

    file = io.FileIO(path, "w")

    def chain(columns: Columns) -> None:
        frame = polars.DataFrame(
            [polars.Series(key, column, strict=True) for key, column in columns.items()]
        )
        out = io.BytesIO()
        frame.write_json(out)
        view = out.getbuffer()
        text = np.frombuffer(view, dtype=np.uint8)
        starts = np.flatnonzero(text == ord("{"))  # each row's start: no key holds a `{`
        text[starts[1:] - 1] = ord("\n")
        text[-1] = ord("\n")
        file.write(view[1:])
        del text, view

    return Bound(chain, lambda: None, file.close)


def json_rows(path: Path) -> Bound:
    """`json.dumps` per record, a line each, to a buffered file: the plain way to write
    JSON Lines."""
    import json

    handle = path.open("w", encoding="utf-8")
    dumps, write = json.dumps, handle.write

    def row(data: Record) -> None:
        write(dumps(data) + "\n")

    return Bound(row, handle.flush, handle.close)
