"""What the tests of the tracking-service sinks share: an Acme-like stream, and one reader per
tool (`read_points`) that reads a sink's points back with the tool's own reader."""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.conformance.normalise import Histogram


def episodes(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """A synthetic Acme-like stream: actor_steps grows by a random episode length from 0."""
    rng = np.random.default_rng(seed)
    actor_steps = 0
    for episode in range(n):
        length = int(rng.integers(5, 50))
        yield {
            "actor_steps": actor_steps,
            "episodes": episode,
            "episode_length": length,
            "return": float(rng.normal(10.0, 3.0)),
            "steps_per_second": np.float32(rng.uniform(100, 200)),
        }
        actor_steps += length


def number_kinds() -> dict[str, Any]:
    """One value of every kind of number a training loop writes (torch's too): a record."""
    import torch

    return {
        "float": 0.25,
        "int": 3,
        "bool": True,
        "np_float32": np.float32(1.5),
        "np_int64": np.int64(7),
        "np_bool": np.bool_(False),
        "zero_d_array": np.array(2.5),
        "torch_scalar": torch.tensor(4.5),
        "torch_int": torch.tensor(9),
    }


NUMBER_FLOATS = {
    "float": 0.25,
    "int": 3.0,
    "bool": 1.0,
    "np_float32": 1.5,
    "np_int64": 7.0,
    "np_bool": 0.0,
    "zero_d_array": 2.5,
    "torch_scalar": 4.5,
    "torch_int": 9.0,
}
"""The float a tracking service stores for each of `number_kinds()`."""


# -- reading a tracking sink's run back with the tool's own reader ----------------------------

Step = int | float
Points = dict[str, list[tuple[Step, Any]]]
"""Per stored name: (step, value) of every point, in step order (ties in the order stored)."""

KINDS = ("tensorboard", "mlflow", "wandb", "neptune", "neptune-scale")
"""The tools `read_points` reads."""


def read_points(kind: str, where: Any) -> Points:
    """Every point a tracking sink stored, read back with the tool's own reader.

    `kind` and `where`:

    - "tensorboard": the logdir; TensorBoard's `EventAccumulator` (every point kept, purges
      applied as TensorBoard applies them): scalars as float32 values, texts as str.
    - "mlflow": `(tracking_uri, run_id)`; `MlflowClient.get_metric_history` per metric.
    - "wandb": the run's folder (`WandbSink.run_dir`); its `.wandb` transaction log decoded
      with wandb's own protobuf `Record`, once wandb's service has written the run's end.
    - "neptune": the `data_dir` of one neptune 1.x offline run (its operation log).
    - "neptune-scale": the folder of one neptune-scale offline run's database, read with its
      own `OperationsRepository`.
    """
    if kind == "tensorboard":
        run = read_tensorboard(Path(where))
        points: Points = {tag: list(series) for tag, series in run.scalars.items()}
        for tag, texts in run.texts.items():
            points.setdefault(tag, []).extend(texts)
        for tag, histograms in run.histograms.items():
            points.setdefault(tag, []).extend(histograms)
        return {tag: sorted(series, key=lambda point: point[0]) for tag, series in points.items()}
    if kind == "mlflow":
        uri, run_id = where
        return read_mlflow(uri, run_id)
    if kind == "wandb":
        return read_wandb(Path(where)).points()
    if kind == "neptune":
        return _in_step_order(read_classic(Path(where)).series)
    if kind == "neptune-scale":
        return _in_step_order(read_scale(Path(where)).series)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def points_of(sink: Any) -> Points:
    """`read_points` for what a (closed) tracking sink stored, wherever it stored it."""
    kind = type(sink).__name__
    if kind == "TensorBoardSink":
        return read_points("tensorboard", sink.logdir)
    if kind == "MlflowSink":
        return read_points("mlflow", (sink.tracking_uri, sink.run_id))
    if kind == "WandbSink":
        return read_points("wandb", sink.run_dir)
    if kind == "NeptuneSink":
        return read_points(sink.kind, sink.data_dir)
    raise TypeError(f"not a tracking sink: {sink!r}")


def _in_step_order(series: dict[str, list[tuple[Step, Any]]]) -> Points:
    return {path: sorted(points, key=lambda point: point[0]) for path, points in series.items()}


# TensorBoard


@dataclass
class TensorBoardRun:
    """What TensorBoard reads from a folder: series as (step, value) lists, by tag."""

    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    texts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    histograms: dict[str, list[tuple[int, Histogram]]] = field(default_factory=dict)
    wall_times: dict[str, list[float]] = field(default_factory=dict)

    def values(self, tag: str) -> list[float]:
        return [value for _, value in self.scalars[tag]]


def read_tensorboard(logdir: Path) -> TensorBoardRun:
    """Reads every event file in `logdir` with TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    sizes = {  # 0: keep all
        event_accumulator.SCALARS: 0,
        event_accumulator.TENSORS: 0,
        event_accumulator.HISTOGRAMS: 0,
    }
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance=sizes)
    accumulator.Reload()
    run = TensorBoardRun()
    for tag in accumulator.Tags()["scalars"]:
        events = accumulator.Scalars(tag)
        run.scalars[tag] = [(event.step, event.value) for event in events]
        run.wall_times[tag] = [event.wall_time for event in events]
    for tag in accumulator.Tags()["histograms"]:
        run.histograms[tag] = [
            (event.step, Histogram(value.num, value.min, value.max))
            for event in accumulator.Histograms(tag)
            for value in [event.histogram_value]
        ]
    for tag in accumulator.Tags()["tensors"]:
        if accumulator.SummaryMetadata(tag).plugin_data.plugin_name != "text":
            continue  # another plugin's (the hparams session's)
        run.texts[tag] = [
            (event.step, tensor_util.make_ndarray(event.tensor_proto).item().decode())
            for event in accumulator.Tensors(tag)
        ]
    return run


# MLflow


def read_mlflow(uri: str, run_id: str) -> Points:
    """Every metric of the run: (step, value) pairs in step order (then time), as the store
    holds them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    names = client.get_run(run_id).data.metrics
    return {
        name: [
            (m.step, m.value)
            for m in sorted(
                client.get_metric_history(run_id, name), key=lambda m: (m.step, m.timestamp)
            )
        ]
        for name in names
    }


# W&B: the run's transaction log, `<run_dir>/run-<id>.wandb`. wandb 0.31 ships no Python
# reader of it any more (the old `wandb.sdk.internal.datastore` is gone; its Go service writes
# the file), so `wandb_records` walks the file's framing (LevelDB's log format with W&B's
# 7-byte header) and each record is decoded with wandb's own protobuf.

BLOCK = 32768
"""The log's block size: a record's 7-byte header never straddles two blocks."""
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(data: bytes) -> Iterator[bytes]:
    """The records of a `.wandb` file, joined from their chunks, up to the first incomplete
    or corrupt one (a file still being written ends mid-record)."""
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), "not a W&B transaction log"
    position, pending = 7, b""
    while True:
        room = BLOCK - position % BLOCK
        if room < 7:  # the block's zero trailer
            position += room
            continue
        if position + 7 > len(data):
            return
        checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        if kind == 0 or len(chunk) < length:
            return
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != checksum:
            return
        position += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk


@dataclass
class WandbRun:
    """A run's history rows by step (W&B's own `_step`, `_runtime`, `_timestamp` apart),
    in file order, its configuration, and whether its closing record was read."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    times: dict[int, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    all_rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """Every history row in file order (a step written twice appears twice)."""

    def series(self, name: str) -> list[tuple[int, Any]]:
        """(step, value) of every row holding `name`, in step order."""
        return [(step, row[name]) for step, row in sorted(self.rows.items()) if name in row]

    def points(self) -> Points:
        points: Points = {}
        for step, row in self.all_rows:
            for name, value in row.items():
                points.setdefault(name, []).append((step, wandb_value(value)))
        return _in_step_order(points)


def wandb_value(value: Any) -> Any:
    """A value of a W&B history row as a point: a histogram as a `Histogram`."""
    if isinstance(value, dict) and value.get("_type") == "histogram":
        bins = value["bins"]
        return Histogram(sum(value["values"]), bins[0], bins[-1])
    return value


def parse_wandb(path: Path) -> WandbRun:
    """The run in the `.wandb` file at `path`, as far as it is written."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = WandbRun()
    for raw in wandb_records(path.read_bytes()):
        record = Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            step = record.history.step.num
            row = {}
            for item in record.history.item:
                name = "/".join(item.nested_key) or item.key
                value = json.loads(item.value_json)
                if len(item.nested_key) > 1:  # a part of a media or histogram value
                    row.setdefault("/".join(item.nested_key[:-1]), {})[item.nested_key[-1]] = value
                elif name == "_timestamp":
                    data.times[step] = value
                elif name not in ("_step", "_runtime"):
                    row[name] = value
            data.rows[step] = row
            data.steps.append(step)
            data.all_rows.append((step, row))
        elif kind == "config":
            for item in record.config.update:
                name = "/".join(item.nested_key) or item.key
                data.config[name] = json.loads(item.value_json)
        elif kind == "exit":
            data.finished = True
    return data


def wandb_file(run_dir: Path) -> Path:
    (path,) = run_dir.glob("run-*.wandb")
    return path


def read_wandb(run_dir: Path | None, timeout: float = 60.0) -> WandbRun:
    """The finished run in `run_dir`, once wandb's service has written all of it."""
    assert run_dir is not None
    deadline = time.monotonic() + timeout
    while True:
        data = parse_wandb(wandb_file(run_dir))
        if data.finished:
            return data
        assert time.monotonic() < deadline, f"{run_dir} was not finished in {timeout} s"
        time.sleep(0.05)


# Neptune


@dataclass
class NeptuneRun:
    """What an offline run holds: series as (step, value) lists, single values, tags."""

    series: dict[str, list[tuple[float, Any]]] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)

    def steps(self, path: str) -> list[float]:
        return [step for step, _ in self.series[path]]

    def values(self, path: str) -> list[Any]:
        return [value for _, value in self.series[path]]


def classic_run_dirs(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "offline").glob("run__*"))


def read_classic(data_dir: Path) -> NeptuneRun:
    """Reads the one neptune 1.x offline run under `data_dir` from its operation log."""
    (run_dir,) = classic_run_dirs(data_dir)
    logs = sorted(run_dir.glob("data-*.log"), key=lambda p: int(p.stem.split("-")[1]))
    data = NeptuneRun()
    for log in logs:
        for line in log.read_text().splitlines():
            op = json.loads(line)["obj"]
            path = "/".join(op["path"])
            if op["type"] in ("LogFloats", "LogStrings"):
                data.series.setdefault(path, []).extend(
                    (entry["step"], entry["value"]) for entry in op["values"]
                )
            elif op["type"].startswith("Assign"):
                data.fields[path] = op["value"]
            elif op["type"] == "AddStrings" and path == "sys/tags":
                data.tags.update(op["values"])
    return data


def read_scale(data_dir: Path) -> NeptuneRun:
    """Reads the one neptune-scale offline run under `data_dir` from its SQLite database."""
    from neptune_scale.sync.operations_repository import OperationsRepository

    (db_path,) = data_dir.glob("*/run_operations.sqlite3")
    repository = OperationsRepository(db_path=db_path.absolute())
    try:
        operations = repository.get_operations(up_to_bytes=1 << 30)
    finally:
        repository.close(cleanup_files=False)
    data = NeptuneRun()
    for operation in operations:
        snapshot = operation.operation
        if not hasattr(snapshot, "append"):
            continue  # the CreateRun operation
        step = snapshot.step.whole + snapshot.step.micro / 1e6
        for path, value in snapshot.append.items():
            value_of = getattr(value, value.WhichOneof("value"))
            if value.WhichOneof("value") == "histogram":
                edges = value_of.bin_edges
                value_of = Histogram(sum(value_of.counts.values), edges[0], edges[-1])
            data.series.setdefault(path, []).append((step, value_of))
        for path, value in snapshot.assign.items():
            data.fields[path] = getattr(value, value.WhichOneof("value"))
        for path, change in snapshot.modify_sets.items():
            if path == "sys/tags":
                data.tags.update(change.string.values)
    return data


def wandb_axis_points(run_dir: Path, axes: Iterable[str] = ()) -> Points:
    """Each name's points in a W&B run against the axis W&B plots it on: the value of its
    `step_metric` (from the run's `metric` records, `define_metric`) in the same history
    row; an axis (a step metric, or a name in `axes`) against its own value; any other
    name against W&B's own step."""
    from wandb.proto.wandb_internal_pb2 import Record

    rows = read_wandb(run_dir).all_rows  # once W&B's service has written the whole run
    axis_of: dict[str, str] = {}
    for raw in wandb_records(wandb_file(run_dir).read_bytes()):
        record = Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "metric" and record.metric.step_metric:
            axis_of[record.metric.name] = record.metric.step_metric
    for axis in {*axis_of.values(), *axes}:
        axis_of[axis] = axis  # an axis against its own value
    points: Points = {}
    for step, row in rows:
        for name, value in row.items():
            axis = axis_of.get(name)
            point = (step if axis is None else row[axis], wandb_value(value))
            points.setdefault(name, []).append(point)
    return _in_step_order(points)
