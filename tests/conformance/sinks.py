"""How each sink joins the conformance suite: one `SinkSpec` per sink.

A spec says how to make the sink, how to read back what it stored with the tool's own
reader, what a written record is stored as (the sink's documented normalisation), and how
to make its storage fail. The suite then checks the contract (see `harness`) for it. A sink
stores either rows (one per record, in order: files, memory, a logger) or points keyed by
(key, step) (a tracking service); `kind` says which.
"""

from __future__ import annotations

import csv
import errno
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pipeline import Node
from pipeline.core.node import LoggerSink
from sinks import CsvSink, JsonlSink, MemorySink, TerminalSink
from tests.conformance.normalise import (
    FLOAT64_MAX,
    form,
    same_cell,
    same_json,
    same_object,
    same_point,
)

Row = dict[str, Any]
Point = tuple[str, Any, Any]  # (key, step, value)


@dataclass(frozen=True)
class SinkSpec:
    """A sink's description for the conformance suite.

    - `make(folder)`: a fresh sink (or any logger with `write`) that stores under `folder`
      (a file sink starts its file afresh);
    - `reopen(folder)`: the same sink made again on what `make` stored, to go on from a
      state (a file sink appending); None if it keeps nothing outside the process;
    - `read(sink, folder)`: what it stored, read back with the tool's own reader: rows in
      the order stored (`kind="rows"`), or (key, step, value) points (`kind="points"`);
    - `expect(record)`: what a written record is stored as: a row (`{name: form}`); for
      points, `expect(record, index)` (`index`: the record's place among those written) gives
      its `(name, step, form)` points;
    - `same(form, read)`: whether a value read back holds the form expected;
    - `exact_keys`: whether a stored row has exactly the record's keys (JSON, memory) or
      may hold more columns, empty (CSV);
    - `fail_storage(sink, down)`: makes its storage fail with an OSError from now on
      (`down=True`) or work again; None if the suite cannot fault it;
    - `counted(sink)`: records the sink itself counted as not stored;
    - `node(sink)`: the graph's node for it (a logger's LoggerSink).
    """

    name: str
    make: Callable[[Path], Any]
    read: Callable[[Any, Path], list[Any]]
    expect: Callable[..., Any]
    same: Callable[[Any, Any], bool]
    kind: str = "rows"
    exact_keys: bool = True
    reopen: Callable[[Path], Any] | None = None
    fail_storage: Callable[[Any, bool], None] | None = None
    counted: Callable[[Any], int] = field(
        default=lambda sink: sink.counts["lost"] + sink.counts["dropped"]
    )
    node: Callable[[Any], Node] = field(
        default=lambda sink: sink if isinstance(sink, Node) else LoggerSink.of(sink)
    )

    def __repr__(self) -> str:
        return f"SinkSpec({self.name!r})"


def name_of(key: Any) -> str:
    """A key's text: the column or field it is stored under (`<unprintable>` for a key whose
    text raises, which no sink can store: such a record must be counted)."""
    try:
        return str(key)
    except Exception:
        return "<unprintable>"


def _row_form(record: dict[Any, Any]) -> Row:
    return {name_of(key): form(value) for key, value in record.items()}


# -- file sinks -------------------------------------------------------------------------------


def _down(sink: Any, down: bool) -> None:
    """Storage faults of a file sink: each append (and a header rewrite) fails with ENOSPC."""

    def full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    for name in ("_append", "_rewrite_with_header"):
        if down:
            setattr(sink, name, full)
        else:
            sink.__dict__.pop(name, None)


def read_csv(sink: Any, folder: Path) -> list[Row]:
    with (folder / "out.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_jsonl(sink: Any, folder: Path) -> list[Row]:
    text = (folder / "out.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line]


CSV = SinkSpec(
    "CsvSink",
    make=lambda folder: CsvSink(folder / "out.csv", mode="w", flush_every=3),
    reopen=lambda folder: CsvSink(folder / "out.csv", mode="a", flush_every=3),
    read=read_csv,
    expect=_row_form,
    same=same_cell,
    exact_keys=False,
    fail_storage=_down,
)
JSONL = SinkSpec(
    "JsonlSink",
    make=lambda folder: JsonlSink(folder / "out.jsonl", mode="w", flush_every=3),
    reopen=lambda folder: JsonlSink(folder / "out.jsonl", mode="a", flush_every=3),
    read=read_jsonl,
    expect=_row_form,
    same=same_json,
    fail_storage=_down,
)

# -- in memory: MemorySink, a logger as a leaf ------------------------------------------------


def _memory_down(sink: Any, down: bool) -> None:
    def refuse(*args: Any) -> None:
        raise OSError(errno.EIO, "storage down (injected)")

    for name in ("write", "write_batch"):
        if down:
            setattr(sink, name, refuse)
        else:
            sink.__dict__.pop(name, None)
    for parent in sink._parents:  # a Dispatcher holds its children's write
        parent._rewire()


MEMORY = SinkSpec(
    "MemorySink",
    make=lambda folder: MemorySink(),
    read=lambda sink, folder: sink.records,
    expect=lambda record: dict(record),
    same=same_object,
    fail_storage=_memory_down,
)


class ListLogger:
    """A user's own logger (Acme's `Logger` interface: `write`, `close`): keeps each record
    it receives; its storage can be made to fail."""

    def __init__(self) -> None:
        self.rows: list[dict[Any, Any]] = []
        self.down = False

    def write(self, data: dict[Any, Any]) -> None:
        if self.down:
            raise OSError(errno.EIO, "logger storage down (injected)")
        self.rows.append(data)

    def close(self) -> None:
        pass


def _logger_down(logger: Any, down: bool) -> None:
    logger.down = down


LOGGER = SinkSpec(
    "LoggerSink(own logger)",
    make=lambda folder: ListLogger(),
    read=lambda logger, folder: logger.rows,
    expect=lambda record: dict(record),
    same=same_object,
    fail_storage=_logger_down,
    counted=lambda logger: LoggerSink.of(logger).counts["lost"],
)


def _acme_logger(folder: Path) -> Any:
    from acme.utils.loggers import InMemoryLogger

    return InMemoryLogger()


ACME = SinkSpec(
    "LoggerSink(acme InMemoryLogger)",
    make=_acme_logger,
    read=lambda logger, folder: logger.data,
    expect=lambda record: dict(record),
    same=same_object,
    counted=lambda logger: LoggerSink.of(logger).counts["lost"],
)

# -- the terminal -----------------------------------------------------------------------------


class Screen:
    """A text stream that keeps each `write` call's text (TerminalSink writes one per
    record)."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


class ScreenSink(TerminalSink):
    """A TerminalSink printing `key = value` with the keys as written, to a `Screen`."""

    def __init__(self) -> None:
        self.screen = Screen()
        super().__init__(stream=self.screen, humanize_keys=False)  # type: ignore[arg-type]


def _terminal_read(sink: Any, folder: Path) -> list[dict[str, Any]]:
    return [{"text": text} for text in sink.screen.writes]


TERMINAL = SinkSpec(
    "TerminalSink",
    make=lambda folder: ScreenSink(),
    read=_terminal_read,
    expect=lambda record: {"text": [f"{name_of(key)} = " for key in record]},
    same=lambda names, text: all(name in text for name in names),
)
"""The terminal's text is for people (precision, shortened values): what is checked is one
line per record holding every key's name."""

SINKS = [CSV, JSONL, MEMORY, LOGGER, TERMINAL]
"""Every local sink the suite runs (Acme's InMemoryLogger joins when acme is installed)."""

# -- tracking services: points keyed by (name, step) ------------------------------------------
#
# Each tracking sink runs without `step_key`, so a record's step is its index in the sink
# (0, 1, 2, ...): every record has its own step, and each (name, step) is written once. A
# value is a point unless it is None (no value: skipped, not a loss); a point the tool cannot
# take (a refused name, text where it stores numbers, arrays, objects) must be counted.


def _points(name: Callable[[Any], str]) -> Callable[[dict[Any, Any], int], list[Point]]:
    """`expect` of a tracking sink storing each key under `name(key)` at the record's index."""

    def expect(record: dict[Any, Any], index: int) -> list[Point]:
        return [
            (name(key), index, form(value)) for key, value in record.items() if value is not None
        ]

    return expect


def _read_points(sink: Any, folder: Path) -> list[Point]:
    """What a closed tracking sink stored, through `tracking.read_points` (the tool's reader),
    as (name, step, value) triples."""
    from tests.sinks.tracking import points_of

    return [
        (name, step, value)
        for name, series in points_of(sink).items()
        for step, value in series
    ]


def tracked_name(key: Any) -> str:
    """The name a tracking sink stores a key under: its text, or for a key whose text raises
    its `repr` (`sinks.remote.Names`: the value is stored, under a name the user can find)."""
    try:
        return str(key)
    except Exception:
        return repr(key)


def neptune_path(key: Any) -> str:
    """A key's Neptune path: its name without empty parts (`a//b`, `/a/b/` are `a/b`)."""
    return "/".join(part for part in tracked_name(key).split("/") if part)


def _tensorboard(folder: Path, **options: Any) -> Any:
    from sinks.tensorboard import TensorBoardSink

    return TensorBoardSink(folder / "tb", **options)


_MLFLOW_DB: list[bytes] = []
"""An empty MLflow SQLite store, as MLflow made it (its schema migrations take a second)."""


def _mlflow(folder: Path, **options: Any) -> Any:
    from sinks.mlflow import MlflowSink

    path = folder / "mlflow.db"
    if _MLFLOW_DB:
        path.write_bytes(_MLFLOW_DB[0])
    else:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
        _MLFLOW_DB.append(path.read_bytes())
    return MlflowSink(tracking_uri=f"sqlite:///{path}", **options)


def _wandb(folder: Path, **options: Any) -> Any:
    from sinks.wandb import WandbSink

    return WandbSink(mode="offline", dir=folder, **options)


def _neptune(folder: Path, **options: Any) -> Any:
    from sinks.neptune import NeptuneSink

    return NeptuneSink(mode="offline", data_dir=folder / ".neptune", **options)


def _neptune_scale(folder: Path, **options: Any) -> Any:
    from sinks.neptune import NeptuneSink

    return NeptuneSink.scale(mode="offline", data_dir=folder / ".neptune", **options)


# Storage faults of a tracking sink: the tool's client call that stores (TensorBoard's event
# writer, MLflow's `log_batch`, W&B's `run.log`, Neptune's `extend` / `log_metrics`) raises an
# OSError while down; the sink holds its rows and retries. Rows a close cannot push are lost
# (counted in `counts["lost"]`, per row): the suite counts their points.


def _full(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device (injected)")


class _FailingWriter:
    """TensorBoard's event writer on a full disk: every event and flush fails."""

    add_event = flush = staticmethod(_full)

    def close(self) -> None:
        pass

    def get_logdir(self) -> str:
        return ""


class _DownRun:
    """A tracking client's run whose storing calls fail; everything else is the run's."""

    def __init__(self, run: Any) -> None:
        self.real = run

    def __getitem__(self, path: str) -> Any:  # neptune 1.x: run[path].extend(...)
        return SimpleNamespace(extend=_full)

    def __getattr__(self, name: str) -> Any:
        if name in ("log_metrics", "log_string_series", "log"):
            return _full
        return getattr(self.real, name)


def _count_lost_points(sink: Any) -> None:
    """Has `sink`'s close note the points of the rows it could not push (`lost_points`)."""
    if "on_close" in sink.__dict__:
        return
    close = sink.on_close
    sink.lost_points = 0

    def on_close() -> None:
        held = [part for row in list(sink._held) for part in row if isinstance(part, dict)]
        lost = sink.counts["lost"]
        try:
            close()
        finally:
            if sink.counts["lost"] > lost:
                sink.lost_points += sum(len(values) for values in held)

    sink.on_close = on_close


def _tracking_down(client: Callable[[Any, bool], None]) -> Callable[[Any, bool], None]:
    def fail_storage(sink: Any, down: bool) -> None:
        _count_lost_points(sink)
        with sink._client_lock:  # not while a push is under way
            client(sink, down)

    return fail_storage


def _tensorboard_down(sink: Any, down: bool) -> None:
    if down:
        tb = sink.__dict__.setdefault("real_tb", sink._tb)
        failing = {"EventFileWriter": lambda *args, **kwargs: _FailingWriter()}
        sink._tb = SimpleNamespace(**{**vars(tb), **failing})
        if sink._writer is not None:
            sink._writer.add_event = _full
    else:
        sink._tb = sink.__dict__.get("real_tb", sink._tb)
        if sink._writer is not None:
            sink._writer.__dict__.pop("add_event", None)


def _mlflow_down(sink: Any, down: bool) -> None:
    if down:
        sink.client.log_batch = _full
    else:
        sink.client.__dict__.pop("log_batch", None)


def _wandb_down(sink: Any, down: bool) -> None:
    if down and not isinstance(sink.run, _DownRun):
        sink.run = _DownRun(sink.run)
    elif not down and isinstance(sink.run, _DownRun):
        sink.run = sink.run.real


def _neptune_down(sink: Any, down: bool) -> None:
    backend = sink._backend
    if down and not isinstance(backend.run, _DownRun):
        backend.run = _DownRun(backend.run)
    elif not down and isinstance(backend.run, _DownRun):
        backend.run = backend.run.real


def _tracking_counted(sink: Any) -> int:
    """Points a tracking sink counted as not stored: values dropped, and the points of the
    rows it lost."""
    return sink.counts["dropped"] + sink.__dict__.get("lost_points", 0)


TENSORBOARD = SinkSpec(
    "TensorBoardSink",
    make=_tensorboard,
    read=_read_points,
    expect=_points(tracked_name),
    same=lambda expected, read: same_point(expected, read, width=32),
    kind="points",
    fail_storage=_tracking_down(_tensorboard_down),
    counted=_tracking_counted,
)
"""Numbers as float32 scalars (beyond float32's range: +-inf, counted as overflow), strings
as text, anything else dropped and counted."""
MLFLOW = SinkSpec(
    "MlflowSink",
    make=_mlflow,
    read=_read_points,
    expect=_points(tracked_name),
    same=lambda expected, read: same_point(expected, read, texts=False, infinite=FLOAT64_MAX),
    kind="points",
    fail_storage=_tracking_down(_mlflow_down),
    counted=_tracking_counted,
)
"""Numbers as floats (+-inf and ints beyond float range as +-FLOAT64_MAX, as MLflow's SQL
store keeps them); text and anything else dropped and counted."""
WANDB = SinkSpec(
    "WandbSink",
    make=_wandb,
    read=_read_points,
    expect=_points(tracked_name),
    same=same_point,
    kind="points",
    fail_storage=_tracking_down(_wandb_down),
    counted=_tracking_counted,
)
"""Numbers as floats, strings as strings; an empty name and anything else dropped, counted."""
NEPTUNE = SinkSpec(
    "NeptuneSink",
    make=_neptune,
    read=_read_points,
    expect=_points(neptune_path),
    same=same_point,
    kind="points",
    fail_storage=_tracking_down(_neptune_down),
    counted=_tracking_counted,
)
"""neptune 1.x: numbers as float series (NaN and +-inf dropped, counted), strings as string
series (cut at 1000 characters, counted as changed); paths without empty parts."""
NEPTUNE_SCALE = SinkSpec(
    "NeptuneSink.scale",
    make=_neptune_scale,
    read=_read_points,
    expect=_points(neptune_path),
    same=same_point,
    kind="points",
    fail_storage=_tracking_down(_neptune_down),
    counted=_tracking_counted,
)
"""neptune-scale: numbers as floats (NaN and +-inf kept), strings as strings; paths without
empty parts, under 1024 bytes."""

TRACKING = [
    (TENSORBOARD, "tensorboard"),
    (MLFLOW, "mlflow"),
    (WANDB, "wandb"),
    (NEPTUNE, "neptune"),
    (NEPTUNE_SCALE, "neptune_scale"),
]
"""Every tracking sink, with the client module it needs (the suite skips a sink whose client
is not installed)."""
