"""What a record costs in each tracking sink, against a bare MemorySink and against the
tool's own logger called directly, in the same run.

    python benchmarks/sink_write.py [--records 2000] [--direct-records 300] [--repeat 5]
                                    [--only neptune,tensorboard,mlflow,wandb] [--quick]
                                    [--json PATH]

For each tool, one repeat times, one after the other on the same stream
(benchmarks/stream.py: 7 keys, ints and floats, an occasional None; `steps` as the step):

- MemorySink: `MemorySink.write` per record, the least a sink can cost;
- the sink: `write` per record (what the training loop pays: the record converted and held),
  then `flush()` (the sink's background work done at once: the client called with every
  held record), on a fresh sink over a fresh run;
- direct: the tool's own logger called per record, as a loop without rlpipe would call it,
  on the first `--direct-records` records (they are slow), then the tool's own flush:
  NeptuneSink (neptune 1.x): `run["train/<key>"].append(value, step=step)` per key, then
  `run.wait(disk_only=True)`; NeptuneSink.scale (neptune-scale): `run.log_metrics(...)` per
  record; TensorBoardSink: tensorboard's `EventFileWriter.add_event` with one Event per
  scalar, as `SummaryWriter.add_scalar` writes them, then `flush()`; MlflowSink:
  `MlflowClient.log_batch(run_id, metrics=[...], synchronous=True)` per record; WandbSink:
  `run.log({...}, step=step)` per record.

Repeats are interleaved (every case of every tool once, then again) and the best of
`--repeat` is kept; figures are ns per record. Ratios: "x Mem" is the sink's `write` over
MemorySink's (its best in the run); "direct/write" is the tool called directly over the
sink's `write` (what the loop saves); "(+flush)/(+flush)" is the tool's total over the
sink's total, flushes included (what the work itself saves).

Everything is offline and local: Neptune offline runs, TensorBoard event files, an MLflow
SQLite store and W&B offline runs, all in one temporary folder, which is also the process's
HOME and W&B's config, cache and data folders while the script runs; nothing is sent
anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import stream
from benchmarks.machine import load
from sinks.memory import MemorySink

STEP_KEY = "steps"
PREFIX = "train"
TOOLS = ("neptune", "neptune-scale", "tensorboard", "mlflow", "wandb")

Record = dict[str, Any]


@dataclass
class Timing:
    """Seconds spent in the per-record calls and in the flush after them."""

    loop_s: float
    flush_s: float


# -- the sinks and the tools called directly -------------------------------------------------


def values(record: Record) -> Iterator[tuple[str, float]]:
    """A record's values as the tools take them: floats, None left out (there is no value)."""
    for key, value in record.items():
        if value is not None:
            yield key, float(value)


def timed(write: Callable[[Record], None], flush: Callable[[], None], records: Sequence[Record]
          ) -> Timing:
    gc.collect()
    start = time.perf_counter()
    for record in records:
        write(record)
    loop = time.perf_counter() - start
    start = time.perf_counter()
    flush()
    return Timing(loop, time.perf_counter() - start)


def time_sink(make: Callable[[Path], Any], folder: Path, records: Sequence[Record]) -> Timing:
    sink = make(folder)
    try:
        return timed(sink.write, sink.flush, records)
    finally:
        sink.close()


def neptune_sink(folder: Path) -> Any:
    from sinks.neptune import NeptuneSink

    return NeptuneSink(prefix=PREFIX, step_key=STEP_KEY, data_dir=folder, mode="offline")


def neptune_direct(folder: Path, records: Sequence[Record]) -> Timing:
    import neptune

    os.environ["NEPTUNE_DATA_DIRECTORY"] = str(folder)  # read when the run starts
    run = neptune.init_run(
        mode="offline",
        capture_stdout=False,
        capture_stderr=False,
        capture_hardware_metrics=False,
        git_ref=False,
        source_files=[],
    )

    def write(record: Record) -> None:
        step = record[STEP_KEY]
        for key, value in values(record):
            run[f"{PREFIX}/{key}"].append(value, step=step)

    try:
        return timed(write, lambda: run.wait(disk_only=True), records)
    finally:
        run.stop()


def scale_sink(folder: Path) -> Any:
    from sinks.neptune import NeptuneSink

    return NeptuneSink.scale(prefix=PREFIX, step_key=STEP_KEY, data_dir=folder, mode="offline")


def scale_direct(folder: Path, records: Sequence[Record]) -> Timing:
    from neptune_scale import Run

    run = Run(
        project="rlpipe/offline",
        mode="offline",
        log_directory=folder,
        enable_console_log_capture=False,
        source_tracking_config=None,
    )

    def write(record: Record) -> None:
        run.log_metrics({f"{PREFIX}/{key}": value for key, value in values(record)},
                        step=record[STEP_KEY])

    try:
        return timed(write, lambda: None, records)  # each call is committed to its database
    finally:
        run.close()


def tensorboard_sink(folder: Path) -> Any:
    from sinks.tensorboard import TensorBoardSink

    return TensorBoardSink(folder, step_key=STEP_KEY, prefix=PREFIX)


def tensorboard_direct(folder: Path, records: Sequence[Record]) -> Timing:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))

    def write(record: Record) -> None:  # SummaryWriter.add_scalar, once per key
        step = record[STEP_KEY]
        for key, value in values(record):
            summary = Summary(value=[Summary.Value(tag=f"{PREFIX}/{key}", simple_value=value)])
            writer.add_event(Event(summary=summary, wall_time=time.time(), step=step))

    try:
        return timed(write, writer.flush, records)
    finally:
        writer.close()


def mlflow_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def store_uri() -> str:
    """The one SQLite store of the run (made by `prepare`, named by `local_only`)."""
    return os.environ["MLFLOW_TRACKING_URI"]


def mlflow_sink(folder: Path) -> Any:
    from sinks.mlflow import MlflowSink

    return MlflowSink(
        tracking_uri=store_uri(), experiment="bench", step_key=STEP_KEY, prefix=PREFIX
    )


def mlflow_direct(folder: Path, records: Sequence[Record]) -> Timing:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store_uri())
    found = client.get_experiment_by_name("bench")
    experiment = found.experiment_id if found else client.create_experiment("bench")
    run_id = client.create_run(experiment).info.run_id

    def write(record: Record) -> None:
        step, stamp = record[STEP_KEY], int(time.time() * 1000)
        metrics = [Metric(f"{PREFIX}/{key}", value, stamp, step) for key, value in values(record)]
        client.log_batch(run_id, metrics=metrics, synchronous=True)

    try:
        return timed(write, lambda: None, records)  # each call is committed to the store
    finally:
        client.set_terminated(run_id, "FINISHED")


def wandb_sink(folder: Path) -> Any:
    from sinks.wandb import WandbSink

    return WandbSink(mode="offline", dir=folder, step_key=STEP_KEY, prefix=PREFIX)


def wandb_direct(folder: Path, records: Sequence[Record]) -> Timing:
    import wandb

    settings = wandb.Settings(
        console="off",
        x_disable_stats=True,
        x_disable_meta=True,
        save_code=False,
        disable_git=True,
        x_save_requirements=False,
    )
    run = wandb.init(mode="offline", dir=str(folder), reinit="create_new", settings=settings)

    def write(record: Record) -> None:
        run.log({f"{PREFIX}/{key}": value for key, value in values(record)},
                step=record[STEP_KEY])

    try:
        return timed(write, lambda: None, records)  # handed to W&B's service process
    finally:
        run.finish()


@dataclass
class Tool:
    """A tracking sink and its tool's own logger."""

    name: str
    sink: str
    direct: str
    module: str
    make_sink: Callable[[Path], Any]
    run_direct: Callable[[Path, Sequence[Record]], Timing]


ALL_TOOLS = [
    Tool("neptune", "NeptuneSink (neptune 1.x, offline)", 'run["train/<key>"].append per key',
         "neptune", neptune_sink, neptune_direct),
    Tool("neptune-scale", "NeptuneSink.scale (neptune-scale, offline)",
         "run.log_metrics per record", "neptune_scale", scale_sink, scale_direct),
    Tool("tensorboard", "TensorBoardSink", "EventFileWriter, one Event per scalar",
         "tensorboard", tensorboard_sink, tensorboard_direct),
    Tool("mlflow", "MlflowSink (SQLite store)", "MlflowClient.log_batch per record", "mlflow",
         mlflow_sink, mlflow_direct),
    Tool("wandb", "WandbSink (offline)", "run.log per record", "wandb", wandb_sink,
         wandb_direct),
]


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Row:
    """One tool's figures: best of the repeats, ns per record."""

    tool: str
    sink: str
    direct: str
    records: int
    direct_records: int
    memory_ns: float = float("inf")
    write_ns: float = float("inf")
    write_flush_ns: float = float("inf")
    direct_ns: float = float("inf")
    direct_flush_ns: float = float("inf")
    runs: list[dict[str, float]] = field(default_factory=list)

    def take(self, memory: Timing, sink: Timing, direct: Timing) -> None:
        n, d = self.records, self.direct_records
        run = {
            "memory_ns": memory.loop_s / n * 1e9,
            "write_ns": sink.loop_s / n * 1e9,
            "write_flush_ns": (sink.loop_s + sink.flush_s) / n * 1e9,
            "direct_ns": direct.loop_s / d * 1e9,
            "direct_flush_ns": (direct.loop_s + direct.flush_s) / d * 1e9,
        }
        self.runs.append(run)
        for name, ns in run.items():
            setattr(self, name, min(getattr(self, name), ns))

    def as_json(self, memory_ns: float) -> dict[str, Any]:
        """The figures, with the ratios to `memory_ns` (MemorySink's best in the run)."""
        return {
            **self.__dict__,
            "write_over_memory": self.write_ns / memory_ns,
            "direct_over_write": self.direct_ns / self.write_ns,
            "direct_over_write_flush": self.direct_flush_ns / self.write_flush_ns,
        }


@contextlib.contextmanager
def local_only(folder: Path) -> Iterator[None]:
    """HOME, W&B's folders and the tools' settings pointed at `folder`, offline modes, no
    telemetry; the environment restored afterwards."""
    changes = {
        "HOME": str(folder / "home"),
        "XDG_CONFIG_HOME": str(folder / "home" / ".config"),
        "XDG_CACHE_HOME": str(folder / "home" / ".cache"),
        "WANDB_CONFIG_DIR": str(folder / "wandb-config"),
        "WANDB_CACHE_DIR": str(folder / "wandb-cache"),
        "WANDB_DATA_DIR": str(folder / "wandb-data"),
        "WANDB_DIR": str(folder / "wandb"),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "NEPTUNE_MODE": "offline",
        "NEPTUNE_DATA_DIRECTORY": str(folder / "neptune"),
        "MLFLOW_TRACKING_URI": mlflow_uri(folder / "mlflow"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    saved = {name: os.environ.get(name) for name in changes}
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        Path(changes[name]).mkdir(parents=True, exist_ok=True)
    os.environ.update(changes)
    quiet = {name: logging.getLogger(name) for name in ("neptune", "mlflow")}
    levels = {name: logger.level for name, logger in quiet.items()}
    for logger in quiet.values():  # their INFO lines and "not synced" warnings are expected
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, logger in quiet.items():
            logger.setLevel(levels[name])
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def available(tool: Tool) -> bool:
    try:
        __import__(tool.module)
    except ImportError:
        return False
    return True


def measure(tools: Sequence[Tool], records: list[Record], direct_records: list[Record],
            repeat: int, folder: Path) -> list[Row]:
    rows = [
        Row(tool.name, tool.sink, tool.direct, len(records), len(direct_records))
        for tool in tools
    ]
    for run in range(repeat):
        for tool, row in zip(tools, rows, strict=True):
            place = folder / f"{tool.name}-{run}"
            (place / "sink").mkdir(parents=True)
            (place / "direct").mkdir()
            memory = timed(MemorySink().write, lambda: None, records)
            sink = time_sink(tool.make_sink, place / "sink", records)
            direct = tool.run_direct(place / "direct", direct_records)
            row.take(memory, sink, direct)
    return rows


def prepare(tools: Sequence[Tool], folder: Path) -> None:
    """Imports every client, and makes the MLflow store's tables, before any timing (a client
    imported later would make every full garbage collection after it slower)."""
    for tool in tools:
        __import__(tool.module)
        if tool.name == "mlflow":
            from mlflow.tracking import MlflowClient

            (folder / "mlflow").mkdir(parents=True, exist_ok=True)
            MlflowClient(tracking_uri=store_uri()).search_experiments()


def table(rows: Sequence[Row], memory_ns: float) -> str:
    head = (
        f"{'sink':44} {'write':>7} {'x Mem':>6} {'write+flush':>12} | "
        f"{'the tool own logger, called directly':40} {'direct':>11} {'+flush':>11} "
        f"{'direct/write':>12} {'(+flush)/(+flush)':>17}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        data = row.as_json(memory_ns)
        lines.append(
            f"{row.sink:44} {row.write_ns:>7,.0f} {data['write_over_memory']:>6.1f} "
            f"{row.write_flush_ns:>12,.0f} | {row.direct:40} {row.direct_ns:>11,.0f} "
            f"{row.direct_flush_ns:>11,.0f} {data['direct_over_write']:>12,.0f} "
            f"{data['direct_over_write_flush']:>17,.1f}"
        )
    return "\n".join(lines)




def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="records per sink run")
    parser.add_argument(
        "--direct-records", type=int, default=300, help="records per direct run (slow)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (best kept)")
    parser.add_argument(
        "--only", default=",".join(TOOLS), help=f"tools, comma-separated ({', '.join(TOOLS)})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few records, one run: proves every case works"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(given)
    if args.quick:
        args.records, args.direct_records, args.repeat = 200, 20, 1
    if min(args.records, args.direct_records, args.repeat) < 1:
        parser.error("--records, --direct-records and --repeat must be >= 1")
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(TOOLS))
    if unknown:
        parser.error(f"unknown tools {unknown}; choose among {', '.join(TOOLS)}")
    tools = [tool for tool in ALL_TOOLS if tool.name in names]
    missing = [tool.name for tool in tools if not available(tool)]
    tools = [tool for tool in tools if tool.name not in missing]

    records = stream.records(args.records)
    direct_records = records[: args.direct_records]
    with tempfile.TemporaryDirectory(prefix="rlpipe-sinks-") as name:
        folder = Path(name)
        with local_only(folder):
            prepare(tools, folder)
            load_before = load()
            rows = measure(tools, records, direct_records, args.repeat, folder)
            load_after = load()
    print(
        f"rlpipe sink write cost: ns per record, best of {args.repeat} interleaved runs; "
        f"sinks on {args.records:,} records, tools called directly on {args.direct_records:,}; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{load_before} before, {load_after} after"
    )
    memory_ns = min((row.memory_ns for row in rows), default=float("nan"))
    print(f"MemorySink.write: {memory_ns:,.0f} ns (best of every run)")
    print(table(rows, memory_ns))
    if missing:
        print(f"not installed, left out: {', '.join(missing)}")
    report = {
        "command": " ".join(["python benchmarks/sink_write.py", *given]),
        "records": args.records,
        "direct_records": args.direct_records,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "missing": missing,
        "memory_ns": memory_ns,
        "rows": [row.as_json(memory_ns) for row in rows],
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
