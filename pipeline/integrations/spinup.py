"""Spinning Up adapter: an `EpochLogger` with Spinning Up's API that also feeds a pipeline.

    from pipeline import Pipeline
    from pipeline.integrations.spinup import EpochLogger
    from sinks import CsvSink

    logger = EpochLogger(
        output_dir="runs/ppo", pipeline=Pipeline("ppo").to(CsvSink("runs/ppo/rlpipe.csv"))
    )
    logger.save_config(locals())
    for epoch in range(epochs):
        ...
        logger.store(EpRet=ep_ret, EpLen=ep_len)        # many times per epoch
        ...
        logger.log_tabular("Epoch", epoch)
        logger.log_tabular("EpRet", with_min_and_max=True)
        logger.log_tabular("EpLen", average_only=True)
        logger.dump_tabular()                            # table, progress.txt, pipeline
    logger.close()

Spinning Up (openai/spinningup, `spinup/utils/logx.py`) is not installable from PyPI with its
TensorFlow-1 and MPI dependencies; this module reproduces its logging API, statistics, table
and files for one process, without them.
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from pipeline.builder import Pipeline
from pipeline.core.node import ClosedError, Node
from pipeline.core.values import plain, text
from sinks.csv import CsvSink

__all__ = ["EpochLogger", "colorize", "convert_json", "statistics_scalar"]

_COLORS = {
    "gray": 30,
    "red": 31,
    "green": 32,
    "yellow": 33,
    "blue": 34,
    "magenta": 35,
    "cyan": 36,
    "white": 37,
    "crimson": 38,
}


def colorize(string: str, color: str, bold: bool = False, highlight: bool = False) -> str:
    """`string` wrapped in ANSI colour codes, as Spinning Up prints its messages."""
    codes = [str(_COLORS[color] + (10 if highlight else 0))]
    if bold:
        codes.append("1")
    return f"\x1b[{';'.join(codes)}m{string}\x1b[0m"


def statistics_scalar(values: Any, with_min_and_max: bool = False) -> tuple[np.float32, ...]:
    """Mean and population standard deviation (and min, max) of `values`, computed as Spinning
    Up's `mpi_statistics_scalar` does on one process: in float32, std with divisor n.

    Returns `(mean, std)` or `(mean, std, min, max)` as numpy float32 scalars. No values give
    NaN for each statistic (Spinning Up fails on them).
    """
    x = np.asarray(values, dtype=np.float32).ravel()
    if x.size == 0:
        nan = np.float32("nan")
        return (nan, nan, nan, nan) if with_min_and_max else (nan, nan)
    total, count = np.asarray([np.sum(x), len(x)], dtype=np.float32)
    mean = total / count
    std = np.sqrt(np.float32(np.sum((x - mean) ** 2)) / count)
    if with_min_and_max:
        return mean, std, np.float32(np.min(x)), np.float32(np.max(x))
    return mean, std


def convert_json(obj: Any) -> Any:
    """`obj` in a form `json.dumps` takes, by Spinning Up's rule: JSON values stay; mappings,
    lists and tuples are converted item by item; numpy scalars and arrays become Python
    numbers and lists; a named object (function, class) becomes its name unless it is a
    lambda; another object with attributes becomes `{str(obj): <its attributes>}`; anything
    else becomes `str(obj)`."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Mapping):
        return {_json_key(key): convert_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [convert_json(item) for item in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return convert_json(plain(obj))
    name = getattr(obj, "__name__", None)
    if isinstance(name, str) and "lambda" not in name:
        return name
    attributes = getattr(obj, "__dict__", None)
    if attributes:
        return {str(obj): convert_json(attributes)}
    return str(obj)


def _cell(value: Any) -> str:
    """A value as the table prints it: `%8.3g` for a number (Spinning Up's rule: a value
    with `__float__`), its text for anything else, and for a value `float()` refuses (an
    array of several values, an int beyond float range): printing never fails a dump."""
    if hasattr(value, "__float__"):
        try:
            return f"{float(value):8.3g}"
        except Exception:  # any value's float() may raise anything
            pass
    return text(value)


def _json_key(key: Any) -> str:
    converted = convert_json(key)
    return converted if isinstance(converted, str) else json.dumps(converted)


class EpochLogger:
    """Spinning Up's `EpochLogger` (and its base `Logger`), for one process, plus a pipeline.

    The API and output are Spinning Up's:

    - `store(**values)` buffers values during an epoch; `log_tabular(key)` turns a stored key
      into `Average<key>` and `Std<key>` columns (population std, float32 as Spinning Up),
      plus `Max<key>`/`Min<key>` with `with_min_and_max=True`, or only `<key>` (the mean) with
      `average_only=True`; `log_tabular(key, val)` logs one value as it is. Stored arrays
      are flattened and pooled with the scalars.
    - `dump_tabular()` prints the epoch's table (a value with `__float__` as `%8.3g`, as
      Spinning Up does; any other value, and one whose `float()` fails, such as an array of
      several values or an int beyond float range, as its text: printing never fails a
      dump), appends the row to the tab-separated
      `output_dir/output_fname`, and writes the row to `pipeline` (if given) as one record
      `{column: value}`, numpy scalars as Python numbers (a mapping as it is: what a sink cannot
      keep of it, two keys of one text, it counts). The row is in the file when
      `dump_tabular` returns; if storing it fails, the epoch still ends (the record still
      reaches the pipeline), the file's sink keeps the row and retries it, and the error
      is raised. The pipeline is not flushed per epoch: its nodes and sinks keep their
      own policies.
    - Every `dump_tabular()` is one row of the progress file. An epoch that logged nothing
      is a row of empty cells (Spinning Up writes the same once it has a header) and writes
      no record to the pipeline. Before any column was logged there is no header to write
      it under (Spinning Up would write an empty header line, and fail at the next epoch):
      its row is held and written, empty, under the header the first epoch with a column
      writes, so the file reads back with `pandas.read_table` with every column in place.
      A run that never logs a column leaves the file empty (the sink warns at close).
    - The progress file is written by `output_file`, a `CsvSink` with `delimiter="\\t"` and
      `lineterminator="\\n"` (Spinning Up's attribute name; here a sink, not a file
      object), byte for byte as Spinning Up writes it: a tab-separated header line, then one
      line per epoch of the values' `str()` (numpy's float32 digits; an object whose
      `str()` raises: its repr) in header order, a
      missing key an empty cell, each line ending in "\\n". Only where Spinning Up's file
      would not read back does it differ: a cell holding a tab, a line break or a quote is
      quoted, and a row of one empty cell is written `""`. `pandas.read_table` reads it,
      as Spinning Up's `plot.py` does.
    - `failures()` names what was not stored as logged: progress.txt's rows its CsvSink
      held or lost (a lone surrogate, which UTF-8 cannot encode), and the pipeline's.
    - `save_config(config)` writes `config.json` (with `exp_name`) and prints it.

    Columns: Spinning Up fixes them at the first `dump_tabular` and fails on a key new in a
    later epoch. Here they are fixed at the first `dump_tabular` that has a column, and
    (unless `strict_columns=True`, which keeps Spinning Up's error as a ValueError) nothing
    is lost:

    - a key missing from a later epoch leaves its `progress.txt` cell empty and its table
      value blank (as Spinning Up does) and is simply absent from that epoch's record;
    - a key new in a later epoch is added as a column at the end: `progress.txt` is
      rewritten with the wider header (atomically, by the CsvSink; earlier rows get an
      empty cell), a warning names the key once, and the record carries it.

    Errors replace Spinning Up's asserts: logging a key twice in an epoch is a ValueError;
    a key that is not a str is a TypeError (Spinning Up takes it and fails at every later
    `dump_tabular`);
    `log_tabular(key)` for a key never stored is a KeyError; a key stored in earlier epochs
    but not in this one gives NaN statistics; `dump_tabular` after `close` raises
    `ClosedError`. `close()` closes the file and the pipeline
    (also a context manager); the file is closed at interpreter exit as in Spinning Up.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str] | None = None,
        output_fname: str = "progress.txt",
        exp_name: str | None = None,
        pipeline: Node | None = None,
        *,
        strict_columns: bool = False,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        if pipeline is not None and not isinstance(pipeline, Node):
            raise ValueError(
                f"pipeline must be an rlpipe Pipeline or None, got {type(pipeline).__name__}"
            )
        if not isinstance(output_fname, str) or not output_fname:
            raise ValueError(f"output_fname must be a file name, got {output_fname!r}")
        if output_dir is None:
            output_dir = Path(tempfile.gettempdir(), "experiments", str(int(time.time())))
        self.output_dir = str(output_dir)
        if os.path.exists(self.output_dir):
            print(f"Warning: Log dir {self.output_dir} already exists! Storing info there anyway.")
        else:
            os.makedirs(self.output_dir)
        self.output_path = Path(self.output_dir, output_fname)
        self.output_file = CsvSink(
            self.output_path,
            mode="w" if state is None else "a",
            delimiter="\t",
            lineterminator="\n",
            flush_every=1,
            flush_seconds=None,
        )
        atexit.register(self._close_file)
        print(colorize(f"Logging data to {self.output_path}", "green", bold=True))
        self.exp_name = exp_name
        self.pipeline = pipeline
        self.strict_columns = strict_columns
        self.first_row = True
        self.log_headers: list[str] = []
        self.log_current_row: dict[str, Any] = {}
        self.epoch_dict: dict[str, list[Any]] = {}
        self.closed = False
        if state is not None:
            self._load_state_dict(state)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a restarted run needs to go on as if it had not stopped: progress.txt's
        position, the columns, what was stored or logged in the epoch under way, and the
        pipeline's state. Pass it back as `EpochLogger(..., state=...)` (same output_dir):
        progress.txt is cut back to the checkpoint and appended to."""
        return {
            "progress": self.output_file.node_state(),
            "log_headers": list(self.log_headers),
            "first_row": self.first_row,
            "epoch": {key: list(values) for key, values in self.epoch_dict.items()},
            "row": dict(self.log_current_row),
            "pipeline": None if self.pipeline is None else self.pipeline.state_dict(),
        }

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        if (state["pipeline"] is None) != (self.pipeline is None):
            raise ValueError(
                "state: the checkpointed EpochLogger "
                f"{'had no' if state['pipeline'] is None else 'had a'} pipeline; this one "
                f"{'has' if self.pipeline is not None else 'has none'}"
            )
        self.output_file.load_node_state(state["progress"])
        self.log_headers = list(state["log_headers"])
        self.first_row = state["first_row"]
        self.epoch_dict = {key: list(values) for key, values in state["epoch"].items()}
        self.log_current_row = dict(state["row"])
        if self.pipeline is not None:
            self.pipeline.load_state_dict(state["pipeline"])

    # -- Spinning Up's Logger ---------------------------------------------------------------

    def log(self, msg: str, color: str = "green") -> None:
        """Prints a coloured message."""
        print(colorize(msg, color, bold=True))

    def save_config(self, config: Mapping[str, Any]) -> None:
        """Writes `config` (with `exp_name`) as `config.json` in `output_dir` and prints it;
        values JSON cannot hold are converted by `convert_json`."""
        config_json = convert_json(config)
        if not isinstance(config_json, dict):
            config_json = {"config": config_json}
        if self.exp_name is not None:
            config_json["exp_name"] = self.exp_name
        output = json.dumps(config_json, separators=(",", ":\t"), indent=4, sort_keys=True)
        print(colorize("Saving config:\n", color="cyan", bold=True))
        print(output)
        Path(self.output_dir, "config.json").write_text(output, encoding="utf-8")

    def dump_tabular(self) -> None:
        """Prints this epoch's row, appends it to the progress file, writes it to the
        pipeline, and starts a new epoch."""
        if self.closed:
            raise ClosedError(f"{self!r} is closed; it dumps no more rows")
        row = self.log_current_row
        key_width = max(15, *(len(key) for key in self.log_headers)) if self.log_headers else 15
        line = "-" * (22 + key_width)
        print(line)
        for key in self.log_headers:
            print(f"| {key:>{key_width}} | {_cell(row.get(key, '')):>15} |")
        print(line)
        logged = [key for key in self.log_headers if key in row]
        try:
            # Spinning Up's cells: str() of each value as logged; a missing key is empty. An
            # empty row before the file has a column is held by the sink until it has one.
            self.output_file.write({key: text(row[key]) for key in logged})
        finally:  # a row the sink could not store yet is kept and retried by it: go on
            if self.pipeline is not None and row:
                # a mapping as it is: the sinks count what they cannot keep of it (two keys
                # of one text), which plain data would leave out unseen
                self.pipeline.write(
                    {
                        key: row[key] if isinstance(row[key], Mapping) else plain(row[key])
                        for key in logged
                    }
                )
            self.log_current_row = {}
            self.first_row = not self.log_headers  # fixed by the first row with a column

    def failures(self) -> list[str]:
        """What was not stored as logged, one line per place: progress.txt's storage (rows
        held for retry or lost, as its CsvSink counts them), then the pipeline's
        `failures()`; empty while nothing failed."""
        lines = []
        storage = self.output_file.storage_failures
        if storage is not None:
            lines.append(f"{self.output_path.name}: {storage}")
        if isinstance(self.pipeline, Pipeline):
            lines += self.pipeline.failures()
        return lines

    # -- Spinning Up's EpochLogger ----------------------------------------------------------

    def store(self, **kwargs: Any) -> None:
        """Buffers values for this epoch: `store(EpRet=1.0, EpLen=20)`."""
        for key, value in kwargs.items():
            self.epoch_dict.setdefault(key, []).append(value)

    def log_tabular(
        self,
        key: str,
        val: Any = None,
        with_min_and_max: bool = False,
        average_only: bool = False,
    ) -> None:
        """Logs `val` under `key`, or (with no `val`) the statistics of the values stored
        under `key` this epoch: `Average<key>`, `Std<key>`, then `Max<key>`, `Min<key>` with
        `with_min_and_max`; only `<key>` (the mean) and no std with `average_only`."""
        if val is not None:
            self._log_column(key, val)
        else:
            if key not in self.epoch_dict:
                raise KeyError(
                    f"log_tabular({key!r}) has no value and nothing was stored under {key!r}: "
                    f"store({key}=...) during the epoch, or pass val="
                )
            stats = self.get_stats(key, with_min_and_max=with_min_and_max)
            self._log_column(key if average_only else "Average" + key, stats[0])
            if not average_only:
                self._log_column("Std" + key, stats[1])
            if with_min_and_max:
                self._log_column("Max" + key, stats[3])
                self._log_column("Min" + key, stats[2])
        self.epoch_dict[key] = []

    def get_stats(self, key: str, with_min_and_max: bool = False) -> tuple[np.float32, ...]:
        """Mean and std (and min, max) of the values stored under `key` this epoch."""
        stored = self.epoch_dict[key]
        values = [np.asarray(value, dtype=np.float32).ravel() for value in stored]
        pooled = np.concatenate(values) if values else np.empty(0, dtype=np.float32)
        return statistics_scalar(pooled, with_min_and_max=with_min_and_max)

    # -- columns ------------------------------------------------------------------------------

    def _log_column(self, key: str, value: Any) -> None:
        if not isinstance(key, str):  # the table and progress.txt's header name it
            raise TypeError(f"log_tabular: a key is a column name, a str; got {key!r}")
        if key in self.log_current_row:
            raise ValueError(
                f"You already set {key} this iteration. Maybe you forgot to call dump_tabular()"
            )
        if self.first_row:
            self.log_headers.append(key)
        elif key not in self.log_headers:
            if self.strict_columns:
                raise ValueError(
                    f"Trying to introduce a new key {key} that you didn't include in the "
                    "first iteration"
                )
            self._add_column(key)
        self.log_current_row[key] = value

    def _add_column(self, key: str) -> None:
        """Adds a column after the first row; the progress file widens when the row is
        stored."""
        warnings.warn(
            f"rlpipe: column {key!r} first logged after the first epoch; it is added at the "
            f"end and {self.output_path.name} is rewritten with it (earlier rows empty)",
            RuntimeWarning,
            stacklevel=4,
        )
        self.log_headers.append(key)

    # -- lifecycle ----------------------------------------------------------------------------

    def _close_file(self) -> None:
        if not self.output_file.closed:
            self.output_file.close()

    def close(self) -> None:
        """Closes the progress file and the pipeline; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self._close_file()
        atexit.unregister(self._close_file)
        if self.pipeline is not None:
            self.pipeline.close()

    def __enter__(self) -> EpochLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EpochLogger({self.output_dir!r}, pipeline={self.pipeline!r})"
