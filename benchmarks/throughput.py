"""Throughput and memory of rlpipe's chains against the same chains built from Acme's loggers
and against their pure-Python bound.

    python benchmarks/throughput.py [--records 100000] [--repeat 5] [--quick] [--only adg]
                                    [--json PATH]

Every scenario runs, in this process and on one seeded stream shaped like an Acme
EnvironmentLoop's output plus learner losses (7 keys, ints and floats, an occasional None):

- rlpipe: the chain built with `pipeline.Pipeline`;
- acme: the equivalent chain built from `acme.utils.loggers` (NoneFilter, TimeFilter,
  Dispatcher, CSVLogger, TerminalLogger; smoothing and aggregation written in their style,
  see benchmarks/acme_baseline.py);
- bound: the scenario's work written by hand as one pure-Python function with no graph, for
  this stream (benchmarks/bounds.py): drop the None keys, smooth `episode_return`, throttle,
  aggregate (lists of floats, numpy at the flush), format CSV rows and terminal lines, and
  hand the result to the same leaf. It is the bound of a pure-Python pipeline: what rlpipe
  pays above it is the cost of the graph and of its generality (one call per node, the
  pipeline's lock, plans looked up per key tuple, the dispatcher's isolation, copies that
  protect against callers mutating their records, keys matched rather than known);
- floor: a bare `NullSink().write` per record (`write_batch` per batch for the batched
  scenarios): the least a pipeline can cost;
- rows (batched scenarios g-i only): rlpipe's row-by-row form of the same chain, so the
  batched speed-up is a ratio of one run.

Each is timed `--repeat` times, interleaved, and the median is reported: records/s, ns per
record, speed-up over acme (acme time / rlpipe time), cost over the floor (rlpipe time /
floor time), distance to the bound (rlpipe time / bound time) and peak traced memory
(tracemalloc, in a separate untimed run). In the same run, every bound's output is checked
to equal rlpipe's (records, key order and values; files byte for byte), and rlpipe's output to
equal the Acme-built chain's where both write the same thing (the train chain record for
record, the aggregates, the CSV files' parsed rows). The results go to
benchmarks/results/throughput-<time>.json (or `--json PATH`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import gc
import importlib
import io
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks import bounds, stream
from benchmarks.machine import load
from filters import AggregateFilter, TimeFilter
from pipeline import Pipeline
from pipeline.cli.progress import Progress, progress
from pipeline.core.node import Node
from sinks import CsvSink, MemorySink, NullSink, TerminalSink

BATCH = 4096
"""Rows per batch in the batched scenarios (a vectorized environment's worth of episodes)."""

VARIANTS = ("floor", "rlpipe", "bound", "acme", "rows")
"""The variants timed per scenario, in the order each repeat runs them ("rows" only for the
batched scenarios)."""

Feed = Callable[[], None]
Build = Callable[[Path], "Chain"]


@dataclass
class Chain:
    """A built chain: `feed` writes the whole input and flushes; `done` releases it."""

    feed: Feed
    done: Callable[[], None] = lambda: None


@dataclass
class Scenario:
    """One row of the table: how to build each variant over a work folder."""

    key: str
    title: str
    rlpipe: Build
    acme: Build
    bound: Build
    rows: Build | None = None
    """The row-by-row rlpipe chain a batched scenario is compared with."""

    @property
    def batched(self) -> bool:
        return self.rows is not None


@dataclass
class Result:
    """The figures of one scenario (times are medians over the repeats)."""

    key: str
    title: str
    records: int
    values: int
    rlpipe_s: float
    acme_s: float
    floor_s: float
    bound_s: float
    rlpipe_peak_bytes: int
    acme_peak_bytes: int
    rows_s: float | None = None
    times_s: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def records_per_s(self) -> float:
        return self.records / self.rlpipe_s

    @property
    def ns_per_record(self) -> float:
        return self.rlpipe_s / self.records * 1e9

    @property
    def bound_ns_per_record(self) -> float:
        return self.bound_s / self.records * 1e9

    @property
    def speedup(self) -> float:
        return self.acme_s / self.rlpipe_s

    @property
    def over_floor(self) -> float:
        return self.rlpipe_s / self.floor_s

    @property
    def over_bound(self) -> float:
        return self.rlpipe_s / self.bound_s

    @property
    def over_rows(self) -> float | None:
        """rlpipe's row-by-row time over its batched time (batched scenarios)."""
        return None if self.rows_s is None else self.rows_s / self.rlpipe_s

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            records_per_s=self.records_per_s,
            ns_per_record=self.ns_per_record,
            values_per_s=self.values / self.rlpipe_s,
            acme_records_per_s=self.records / self.acme_s,
            bound_ns_per_record=self.bound_ns_per_record,
            speedup_over_acme=self.speedup,
            cost_over_floor=self.over_floor,
            cost_over_bound=self.over_bound,
            bound_speedup_over_acme=self.acme_s / self.bound_s,
            speedup_over_rows=self.over_rows,
        )
        return data


# -- the chains ---------------------------------------------------------------------------


def rows_feed(write: Callable[[Any], None], rows: Sequence[Any], finish: Feed) -> Feed:
    def feed() -> None:
        for row in rows:
            write(row)
        finish()

    return feed


def pipeline_chain(pipe: Pipeline, inputs: Sequence[Any], *, batched: bool = False) -> Chain:
    write = pipe.write_batch if batched else pipe.write
    return Chain(rows_feed(write, inputs, pipe.flush), pipe.close)


def bound_chain(bound: bounds.Bound, inputs: Sequence[Any]) -> Chain:
    return Chain(rows_feed(bound.write, inputs, bound.flush), bound.close)


def acme_chain(logger: Any, rows: Sequence[Any], finish: Feed | None = None) -> Chain:
    flush = getattr(logger, "flush", None)
    return Chain(rows_feed(logger.write, rows, finish or flush or (lambda: None)), logger.close)


def train_pipeline(seconds: float, *targets: Node, clock: Callable[[], float] | None = None
                   ) -> Pipeline:
    pipe = Pipeline("train", close_at_exit=False).drop_none().smooth("return", coeff=0.99)
    if clock is None:
        pipe.throttle(seconds)
    else:
        pipe.then(TimeFilter(seconds, clock=clock))
    return pipe.to(*targets)


def eval_pipeline(every: int | None, *targets: Node) -> Pipeline:
    return Pipeline("eval", close_at_exit=False).aggregate("return|loss", every=every).to(*targets)


def fresh_file(path: Path) -> Path:
    """`path`, with the previous run's file there removed: a new run's sink (mode="w") would
    otherwise truncate it in its first store, inside the timed feed, which the Acme-built
    variants (their file removed likewise) do not pay."""
    path.unlink(missing_ok=True)
    return path


def csv_pipeline(path: Path, *, stream: Any = None, train: bool = False) -> Pipeline:
    """CsvSink(path) alone, or (`train`) the train chain to a terminal on `stream` and it."""
    sink = CsvSink(fresh_file(path))
    if train:
        return train_pipeline(0.0, TerminalSink("train", stream=stream), sink)
    return Pipeline("csv", close_at_exit=False).to(sink)


def acme_train(seconds: float, *targets: Any) -> Any:
    from acme.utils import loggers

    from benchmarks.acme_baseline import SmoothingLogger

    return loggers.NoneFilter(
        SmoothingLogger(
            loggers.TimeFilter(loggers.Dispatcher(list(targets)), seconds), "return", 0.99
        )
    )


def noop() -> Any:
    from acme.utils.loggers.base import NoOpLogger

    return NoOpLogger()


def acme_csv(path: Path) -> Any:
    from acme.utils.loggers import CSVLogger

    return CSVLogger(fresh_file(path).open("a"), add_uid=False)


CSV_FIELDS = stream.KEYS
TRAIN_CSV_FIELDS = (*stream.KEYS, bounds.SMOOTHED)
WINDOW_FIELDS = tuple(f"{key}_mean" if key in bounds.MATCHED else key for key in stream.KEYS)
"""The columns of the CSV files the scenarios write (the stream's first record has every key)."""


def scenarios(rows: list[dict[str, Any]]) -> list[Scenario]:
    """Scenarios (a)-(f) on `rows`, and the batched ones (g)-(i) on its 4096-row batches."""
    from acme.utils.loggers import TerminalLogger

    from benchmarks.acme_baseline import AggregatingLogger

    batches = stream.batches(rows, BATCH)
    devnull = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    to_devnull = functools.partial(print, file=devnull)

    def csv_done(logger: Any) -> Callable[[], None]:
        def done() -> None:
            logger.close()
            logger._file.close()

        return done

    def acme_full(work: Path) -> Chain:
        csv = acme_csv(work / "acme.csv")
        terminal = TerminalLogger("train", print_fn=to_devnull)
        return Chain(
            rows_feed(acme_train(0.0, terminal, csv).write, rows, csv.flush), csv_done(csv)
        )

    def acme_csv_only(work: Path) -> Chain:
        csv = acme_csv(work / "acme.csv")
        return Chain(rows_feed(csv.write, rows, csv.flush), csv_done(csv))

    def acme_eval(work: Path) -> Chain:
        return acme_chain(AggregatingLogger(noop(), "return|loss", every=1000), rows)

    def rlpipe_train(work: Path) -> Chain:
        return pipeline_chain(train_pipeline(0.0, NullSink()), rows)

    def rlpipe_eval(work: Path) -> Chain:
        return pipeline_chain(eval_pipeline(1000, NullSink()), rows)

    def rlpipe_csv(work: Path) -> Chain:
        return pipeline_chain(csv_pipeline(work / "rlpipe.csv"), rows)

    return [
        Scenario(
            "a",
            "train chain: drop_none > smooth > throttle(0) > dispatch > null",
            rlpipe_train,
            lambda work: acme_chain(acme_train(0.0, noop()), rows),
            lambda work: bound_chain(bounds.train(NullSink().write), rows),
        ),
        Scenario(
            "b",
            "train chain with throttle(1 s)",
            lambda work: pipeline_chain(train_pipeline(1.0, NullSink()), rows),
            lambda work: acme_chain(acme_train(1.0, noop()), rows),
            lambda work: bound_chain(bounds.throttled_train(NullSink().write, 1.0), rows),
        ),
        Scenario(
            "c",
            "eval chain: aggregate('return|loss', every=1000) > null",
            rlpipe_eval,
            acme_eval,
            lambda work: bound_chain(bounds.aggregate(NullSink().write, 1000), rows),
        ),
        Scenario(
            "d",
            f"aggregate all {len(rows):,} records, one flush",
            lambda work: pipeline_chain(eval_pipeline(None, NullSink()), rows),
            lambda work: acme_chain(AggregatingLogger(noop(), "return|loss"), rows),
            lambda work: bound_chain(bounds.aggregate(NullSink().write), rows),
        ),
        Scenario(
            "e",
            "CSV sink on disk",
            rlpipe_csv,
            acme_csv_only,
            lambda work: bound_chain(bounds.csv(work / "bound.csv", CSV_FIELDS), rows),
        ),
        Scenario(
            "f",
            "full train pipeline > terminal (/dev/null) + CSV",
            lambda work: pipeline_chain(
                csv_pipeline(work / "rlpipe.csv", stream=devnull, train=True), rows
            ),
            acme_full,
            lambda work: bound_chain(
                bounds.full(devnull, work / "bound.csv", TRAIN_CSV_FIELDS), rows
            ),
        ),
        Scenario(
            "g",
            f"batched train chain (a), {BATCH}-row write_batch",
            lambda work: pipeline_chain(train_pipeline(0.0, NullSink()), batches, batched=True),
            lambda work: acme_chain(acme_train(0.0, noop()), rows),
            lambda work: bound_chain(bounds.batched_train(NullSink().write_batch), batches),
            rlpipe_train,
        ),
        Scenario(
            "h",
            f"batched eval chain (c), {BATCH}-row write_batch",
            lambda work: pipeline_chain(eval_pipeline(1000, NullSink()), batches, batched=True),
            acme_eval,
            lambda work: bound_chain(bounds.batched_aggregate(NullSink().write, 1000), batches),
            rlpipe_eval,
        ),
        Scenario(
            "i",
            f"batched CSV sink (e), {BATCH}-row write_batch",
            lambda work: pipeline_chain(csv_pipeline(work / "rlpipe.csv"), batches, batched=True),
            acme_csv_only,
            lambda work: bound_chain(bounds.batched_csv(work / "bound.csv", CSV_FIELDS), batches),
            rlpipe_csv,
        ),
    ]


def floor_chain(rows: list[dict[str, Any]], batches: list[dict[str, Any]], batched: bool) -> Chain:
    sink = NullSink()
    if batched:
        return Chain(rows_feed(sink.write_batch, batches, sink.flush))
    return Chain(rows_feed(sink.write, rows, sink.flush))


# -- checking outputs -----------------------------------------------------------------------


def items(records: Sequence[Any]) -> list[list[tuple[str, Any]]]:
    """Records as lists of (key, value): equal when keys, key order and values are."""
    return [list(record.items()) for record in records]


def same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Same records, key order and values, a numpy scalar equal to the Python number it holds
    (rlpipe's batched forms pass numpy scalars where the row forms pass Python numbers)."""
    return len(a) == len(b) and all(
        list(x) == list(y) and all(x[k] == y[k] and float(x[k]) == float(y[k]) for k in x)
        for x, y in zip(a, b, strict=True)
    )


def feed_rows(write: Callable[[Any], None], inputs: Sequence[Any]) -> None:
    for item in inputs:
        write(item)


def parsed(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows as dicts of text (column order aside)."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def check_outputs(rows: list[dict[str, Any]], keys: str, work: Path) -> dict[str, Any]:
    """For each scenario in `keys`, whether the bound's output equals rlpipe's ("bound"), and
    where the Acme-built chain writes the same thing, whether rlpipe's equals it ("acme");
    for the batched scenarios, whether rlpipe's batched output equals its row-by-row output
    ("rows"). Records: keys, key order and values; files: bytes (bound, rows) or parsed rows
    (Acme's CSVLogger sorts its columns)."""
    from acme.utils.loggers import CSVLogger

    from benchmarks.acme_baseline import AggregatingLogger, ListLogger

    batches = stream.batches(rows, BATCH)
    out: dict[str, dict[str, bool]] = {}

    def run_pipe(make: Callable[[MemorySink], Pipeline], inputs: Sequence[Any],
                 batched: bool = False) -> list[dict[str, Any]]:
        sink = MemorySink()
        pipe = make(sink)
        feed_rows(pipe.write_batch if batched else pipe.write, inputs)
        pipe.close()
        return sink.records

    def run_bound(make: Callable[[MemorySink], bounds.Bound], inputs: Sequence[Any]
                  ) -> list[dict[str, Any]]:
        sink = MemorySink()
        bound = make(sink)
        feed_rows(bound.write, inputs)
        bound.flush()
        bound.close()
        return sink.records

    def run_acme(logger: Any, sink: ListLogger) -> list[dict[str, Any]]:
        feed_rows(logger.write, rows)
        logger.close()
        return sink.records

    if "a" in keys or "g" in keys:
        train_rows = run_pipe(lambda s: train_pipeline(0.0, s), rows)
        theirs = ListLogger()
        train_acme = run_acme(acme_train(0.0, theirs), theirs)
    if "a" in keys:
        out["a"] = {
            "bound": items(train_rows) == items(run_bound(lambda s: bounds.train(s.write), rows)),
            "acme": items(train_rows) == items(train_acme),
        }
    if "b" in keys:
        now = [0.0]

        def clock() -> float:
            return now[0]

        def ticking(write: Callable[[Any], None]) -> Callable[[Any], None]:
            def timed_write(record: Any) -> None:
                now[0] += 0.05  # a record every 50 ms: one in 20 passes the 1 s throttle
                write(record)

            return timed_write

        sink = MemorySink()
        pipe = train_pipeline(1.0, sink, clock=clock)
        feed_rows(ticking(pipe.write), rows)
        pipe.close()
        now[0] = 0.0
        theirs_sink = MemorySink()
        bound = bounds.throttled_train(theirs_sink.write, 1.0, clock)
        feed_rows(ticking(bound.write), rows)
        out["b"] = {"bound": bool(sink.records) and items(sink.records) == items(
            theirs_sink.records)}
    if "c" in keys or "h" in keys:
        eval_rows = run_pipe(lambda s: eval_pipeline(1000, s), rows)
    if "c" in keys:
        theirs = ListLogger()
        out["c"] = {
            "bound": items(eval_rows)
            == items(run_bound(lambda s: bounds.aggregate(s.write, 1000), rows)),
            "acme": items(eval_rows)
            == items(run_acme(AggregatingLogger(theirs, "return|loss", every=1000), theirs)),
        }
    if "d" in keys:
        theirs = ListLogger()
        all_rows = run_pipe(lambda s: eval_pipeline(None, s), rows)
        out["d"] = {
            "bound": items(all_rows) == items(run_bound(lambda s: bounds.aggregate(s.write), rows)),
            "acme": items(all_rows)
            == items(run_acme(AggregatingLogger(theirs, "return|loss"), theirs)),
        }
    if "e" in keys or "i" in keys:
        csv_path = work / "check-rlpipe.csv"
        pipe = csv_pipeline(csv_path)
        feed_rows(pipe.write, rows)
        pipe.close()
    if "e" in keys:
        bound = bounds.csv(work / "check-bound.csv", CSV_FIELDS)
        feed_rows(bound.write, rows)
        bound.close()
        logger = CSVLogger((work / "check-acme.csv").open("a"), add_uid=False)
        feed_rows(logger.write, rows)
        logger.close()
        logger._file.close()
        out["e"] = {
            "bound": csv_path.read_bytes() == (work / "check-bound.csv").read_bytes(),
            "acme": parsed(csv_path) == parsed(work / "check-acme.csv"),
        }
    if "f" in keys:
        ours_text, theirs_text = io.StringIO(), io.StringIO()
        pipe = csv_pipeline(work / "check-rlpipe-f.csv", stream=ours_text, train=True)
        feed_rows(pipe.write, rows)
        pipe.close()
        bound = bounds.full(theirs_text, work / "check-bound-f.csv", TRAIN_CSV_FIELDS)
        feed_rows(bound.write, rows)
        bound.close()
        logger = CSVLogger((work / "check-acme-f.csv").open("a"), add_uid=False)
        full = acme_train(0.0, logger)
        feed_rows(full.write, rows)
        logger.close()
        logger._file.close()
        out["f"] = {
            "bound": ours_text.getvalue() == theirs_text.getvalue()
            and (work / "check-rlpipe-f.csv").read_bytes()
            == (work / "check-bound-f.csv").read_bytes(),
            "acme": parsed(work / "check-rlpipe-f.csv") == parsed(work / "check-acme-f.csv"),
        }
    if "g" in keys:
        batched = run_pipe(lambda s: train_pipeline(0.0, s), batches, batched=True)
        sink = MemorySink()
        feed_rows(bounds.batched_train(sink.write_batch).write, batches)
        out["g"] = {
            "bound": same(batched, sink.records),
            "rows": same(batched, train_rows),
            "acme": same(batched, train_acme),
        }
    if "h" in keys:
        batched = run_pipe(lambda s: eval_pipeline(1000, s), batches, batched=True)
        out["h"] = {
            "bound": same(
                batched, run_bound(lambda s: bounds.batched_aggregate(s.write, 1000), batches)
            ),
            "rows": same(batched, eval_rows),
        }
    if "i" in keys:
        pipe = csv_pipeline(work / "check-rlpipe-i.csv")
        feed_rows(pipe.write_batch, batches)
        pipe.close()
        bound = bounds.batched_csv(work / "check-bound-i.csv", CSV_FIELDS)
        feed_rows(bound.write, batches)
        bound.close()
        data = (work / "check-rlpipe-i.csv").read_bytes()
        out["i"] = {
            "bound": data == (work / "check-bound-i.csv").read_bytes(),
            "rows": data == csv_path.read_bytes(),
        }
    return out


# -- measuring ----------------------------------------------------------------------------


def timed(build: Callable[[], Chain]) -> float:
    chain = build()
    gc.collect()
    start = time.perf_counter()
    chain.feed()
    elapsed = time.perf_counter() - start
    chain.done()
    return elapsed


def peak_memory(build: Callable[[], Chain]) -> int:
    """Peak bytes traced while the chain is built and fed (the input existed before)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        chain = build()
        chain.feed()
        _, peak = tracemalloc.get_traced_memory()
        chain.done()
    finally:
        tracemalloc.stop()
    return peak - base


def fresh(record: dict[str, Any]) -> dict[str, Any]:
    """A copy holding new float objects, as a training loop makes for every record."""
    return {k: v * 1.0 if type(v) is float else v for k, v in record.items()}


def bytes_per_buffered_value(rows: list[dict[str, Any]], node: Any) -> tuple[float, int]:
    """Memory an aggregate keeps per buffered value: traced bytes still held after writing
    fresh copies of `rows` (before the flush), over the number of buffered values."""
    values = sum(
        1
        for row in rows
        for key, v in row.items()
        if v is not None and ("return" in key or "loss" in key)
    )
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for row in rows:
            node.write(fresh(row))
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (after - before) / values, values


def measure(
    scenario: Scenario,
    rows: list[dict[str, Any]],
    batches: list[dict[str, Any]],
    repeat: int,
    work: Path,
    bar: Progress[Any] | None = None,
) -> Result:
    builders: dict[str, Callable[[], Chain]] = {
        "floor": lambda: floor_chain(rows, batches, scenario.batched),
        "rlpipe": lambda: scenario.rlpipe(work),
        "bound": lambda: scenario.bound(work),
        "acme": lambda: scenario.acme(work),
    }
    if scenario.rows is not None:
        row_form = scenario.rows
        builders["rows"] = lambda: row_form(work)
    times: dict[str, list[float]] = {name: [] for name in builders}
    for _ in range(repeat):
        for name, build in builders.items():
            times[name].append(timed(build))
            if bar is not None:
                bar.update()
    values = sum(len(row) for row in rows)
    rlpipe_peak, acme_peak = peak_memory(builders["rlpipe"]), peak_memory(builders["acme"])
    if bar is not None:
        bar.update(2)
    median = {name: statistics.median(runs) for name, runs in times.items()}
    return Result(
        key=scenario.key,
        title=scenario.title,
        records=len(rows),
        values=values,
        rlpipe_s=median["rlpipe"],
        acme_s=median["acme"],
        floor_s=median["floor"],
        bound_s=median["bound"],
        rows_s=median.get("rows"),
        rlpipe_peak_bytes=rlpipe_peak,
        acme_peak_bytes=acme_peak,
        times_s=times,
    )


def flush_times(rows: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    """Scenario (d)'s flush alone: the time to turn the buffered window into one record."""
    from benchmarks.acme_baseline import AggregatingLogger, ListLogger

    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        node = AggregateFilter("return|loss").connect(NullSink())
        for row in rows:
            node.write(row)
        gc.collect()
        start = time.perf_counter()
        node.flush()
        ours.append(time.perf_counter() - start)
        logger = AggregatingLogger(ListLogger(), "return|loss")
        for row in rows:
            logger.write(row)
        gc.collect()
        start = time.perf_counter()
        logger.flush()
        theirs.append(time.perf_counter() - start)
    return {
        "rlpipe_flush_s": statistics.median(ours),
        "acme_flush_s": statistics.median(theirs),
        "flush_speedup": statistics.median(theirs) / statistics.median(ours),
    }


# -- the peers' statistics: rolling windows and percentiles ---------------------------------

PEER_RECORDS = 20_000
"""Records in the peer scenarios' stream (rlpipe, its bound and SB3's way)."""
RLLIB_RECORDS = 2_000
"""Records fed to RLlib's MetricsLogger, which costs 50-150 us per record: its time per
record is scaled to PEER_RECORDS."""


@dataclass
class Peer:
    """A peer scenario: each variant maps a leaf's `write` to a Bound-like chain (write and
    flush); `close` says whether two variants' outputs agree (exactly or within rounding)."""

    key: str
    title: str
    variants: dict[str, Callable[[Callable[[Any], None]], bounds.Bound]]
    exact: tuple[str, ...] = ()
    """The variants whose outputs must equal rlpipe's exactly (others: within 1e-9)."""


def _pipe_bound(
    pipe: Callable[[Node], Pipeline],
) -> Callable[[Callable[[Any], None]], bounds.Bound]:
    def build(write: Callable[[Any], None]) -> bounds.Bound:
        class Leaf(Node):
            def write(self, data: Any) -> None:
                write(data)

        built = pipe(Leaf())
        return bounds.Bound(built.write, built.flush, built.close)

    return build


def _sb3_rolling_mean(write: Callable[[Any], None]) -> bounds.Bound:
    """SB3's way: a `deque(maxlen=100)` (its ep_info_buffer) and its `safe_mean` (np.mean over
    the deque), here on every record to give the same output."""
    from collections import deque

    from stable_baselines3.common.utils import safe_mean

    buffer: deque[float] = deque(maxlen=bounds.WINDOW)

    def chain(data: dict[str, Any]) -> None:
        buffer.append(data[bounds.RETURN])
        out = data.copy()
        out[bounds.ROLLING_MEAN] = safe_mean(buffer)
        write(out)

    return bounds.Bound(chain)


def _rllib_rolling(write: Callable[[Any], None], *, quantiles: bool) -> bounds.Bound:
    """RLlib's way: `MetricsLogger.log_value(key, x, window=100)` (or
    `reduce="percentiles"`), then `peek(key)`, on every record."""
    from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

    logger = MetricsLogger()
    options: dict[str, Any] = {"window": bounds.WINDOW}
    if quantiles:
        options.update(reduce="percentiles", percentiles=list(bounds.QUANTILES))

    def chain(data: dict[str, Any]) -> None:
        logger.log_value(bounds.RETURN, data[bounds.RETURN], **options)
        peeked = logger.peek(bounds.RETURN)
        out = data.copy()
        if quantiles:
            for name, q in zip(bounds.ROLLING_QUANTILES, bounds.QUANTILES, strict=True):
                out[name] = peeked[q]
        else:
            out[bounds.ROLLING_MEAN] = peeked
        write(out)

    return bounds.Bound(chain)


def _rllib_percentile_aggregate(write: Callable[[Any], None]) -> bounds.Bound:
    """RLlib's way for (k): `log_value(key, x, reduce="percentiles", window=1000)` per matching
    value, `peek` per key at each window's end (other keys: their last value)."""
    from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

    logger = MetricsLogger()
    options = {"reduce": "percentiles", "percentiles": list(bounds.QUANTILES),
               "window": bounds.PERCENTILE_EVERY}
    last: dict[str, Any] = {}
    count = [0]

    def emit() -> None:
        out: dict[str, Any] = {}
        for key in bounds.MATCHED:
            peeked = logger.peek(key)
            for name, q in zip(bounds.PERCENTILE_NAMES[key], bounds.QUANTILES, strict=True):
                out[name] = peeked[q]
        out.update((key, last[key]) for key in bounds.OTHERS)
        logger.reset()
        count[0] = 0
        write(out)

    def chain(data: dict[str, Any]) -> None:
        for key in bounds.MATCHED:
            value = data[key]
            if value is not None:
                logger.log_value(key, value, **options)
        for key in bounds.OTHERS:
            last[key] = data[key]
        count[0] += 1
        if count[0] == bounds.PERCENTILE_EVERY:
            emit()

    def flush() -> None:
        if count[0]:
            emit()

    return bounds.Bound(chain, flush)


def peer_scenarios() -> list[Peer]:
    quantile_stats = tuple(f"p{q:g}" for q in bounds.QUANTILES)
    return [
        Peer(
            "j",
            "rolling mean of episode_return over the last 100, every record",
            {
                "rlpipe": _pipe_bound(lambda leaf: Pipeline("j").rolling(
                    f"^{bounds.RETURN}$", window=bounds.WINDOW).to(leaf)),
                "bound": bounds.rolling_mean,
                "sb3": _sb3_rolling_mean,
                "rllib": functools.partial(_rllib_rolling, quantiles=False),
            },
        ),
        Peer(
            "k",
            "aggregate('return|loss', every=1000, stats=p5/p50/p95/p99)",
            {
                "rlpipe": _pipe_bound(lambda leaf: Pipeline("k").aggregate(
                    "return|loss", every=bounds.PERCENTILE_EVERY, stats=quantile_stats).to(leaf)),
                "bound": bounds.percentile_aggregate,
                "rllib": _rllib_percentile_aggregate,
            },
            exact=("bound",),
        ),
        Peer(
            "l",
            "rolling p5/p50/p95/p99 of episode_return over the last 100, every record",
            {
                "rlpipe": _pipe_bound(lambda leaf: Pipeline("l").rolling(
                    f"^{bounds.RETURN}$", window=bounds.WINDOW, stats=quantile_stats).to(leaf)),
                "bound": bounds.rolling_quantiles,
                "rllib": functools.partial(_rllib_rolling, quantiles=True),
            },
            exact=("bound",),
        ),
    ]


def _agree(a: list[dict[str, Any]], b: list[dict[str, Any]], exact: bool) -> bool:
    if len(a) != len(b) or any(x.keys() != y.keys() for x, y in zip(a, b, strict=True)):
        return False
    if exact:
        return a == b
    for x, y in zip(a, b, strict=True):
        for key, value in x.items():
            other = y[key]
            if value != other and abs(value - other) > 1e-9 * max(1.0, abs(value)):
                return False
    return True


def measure_peers(records: int, repeat: int, only: str = "") -> list[dict[str, Any]]:
    """Each peer scenario's variants, timed `repeat` times interleaved (median), RLlib on
    RLLIB_RECORDS records; outputs checked against rlpipe's in the same run."""
    rows = stream.records(min(records, PEER_RECORDS))
    rllib_rows = rows[: min(len(rows), RLLIB_RECORDS)]
    out = []
    for peer in peer_scenarios():
        if only and peer.key not in only:
            continue
        times: dict[str, list[float]] = {name: [] for name in peer.variants}
        for _ in range(repeat):
            for name, build in peer.variants.items():
                fed = rllib_rows if name == "rllib" else rows
                chain = build(lambda data: None)
                gc.collect()
                start = time.perf_counter()
                for row in fed:
                    chain.write(row)
                chain.flush()
                times[name].append((time.perf_counter() - start) / len(fed))
                chain.close()
        outputs: dict[str, list[dict[str, Any]]] = {}
        for name, build in peer.variants.items():
            kept: list[dict[str, Any]] = []
            chain = build(lambda data, kept=kept: kept.append(dict(data)))
            for row in rllib_rows:
                chain.write(row)
            chain.flush()
            chain.close()
            outputs[name] = kept
        per_record = {name: statistics.median(runs) for name, runs in times.items()}
        out.append({
            "key": peer.key,
            "title": peer.title,
            "ns_per_record": {name: t * 1e9 for name, t in per_record.items()},
            "rlpipe_over_bound": per_record["rlpipe"] / per_record["bound"],
            "speedup": {name: t / per_record["rlpipe"] for name, t in per_record.items()
                        if name not in ("rlpipe", "bound")},
            "equal": {name: _agree(outputs["rlpipe"], found, name in peer.exact)
                      for name, found in outputs.items() if name != "rlpipe"},
        })
    return out


def peer_table(peers: list[dict[str, Any]]) -> str:
    head = (f"{'':2} {'scenario':<72} {'rlpipe ns':>10} {'bound ns':>9} {'x bound':>8} "
            f"{'sb3 x':>6} {'rllib x':>8}")
    lines = [head, "-" * len(head)]
    for p in peers:
        ns = p["ns_per_record"]
        sb3 = f"{p['speedup']['sb3']:.1f}" if "sb3" in p["speedup"] else "-"
        lines.append(
            f"{p['key']:2} {p['title']:<72} {ns['rlpipe']:>10,.0f} {ns['bound']:>9,.0f} "
            f"{p['rlpipe_over_bound']:>8.2f} {sb3:>6} {p['speedup']['rllib']:>8.1f}"
        )
    return "\n".join(lines)


# -- reporting ----------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    head = (
        f"{'':2} {'scenario':<60} {'records/s':>11} {'ns/rec':>8} {'x acme':>7} "
        f"{'x floor':>8} {'x bound':>8} {'bound ns':>9} {'bound x acme':>13} {'x rows':>7} "
        f"{'peak MB':>8} {'acme MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        rows = "" if r.over_rows is None else f"{r.over_rows:.1f}"
        lines.append(
            f"{r.key:2} {r.title:<60} {r.records_per_s:>11,.0f} {r.ns_per_record:>8,.0f} "
            f"{r.speedup:>7.1f} {r.over_floor:>8.1f} {r.over_bound:>8.2f} "
            f"{r.bound_ns_per_record:>9,.0f} {r.acme_s / r.bound_s:>13.1f} {rows:>7} "
            f"{r.rlpipe_peak_bytes / 1e6:>8.2f} {r.acme_peak_bytes / 1e6:>8.2f}"
        )
    return "\n".join(lines)




# -- peers side by side, and the column targets -----------------------------------------
#
# Each contest does one piece of work on the same stream with rlpipe and with each peer's own
# logger (SB3's Logger, RLlib's MetricsLogger, TorchRL's CSVLogger, Acme's loggers), and for
# the column targets with a hand-written bound; every variant is timed interleaved and the
# figure is each variant's median time over rlpipe's (above 1: rlpipe is faster).

PEERS_MISSING: dict[str, str] = {}
"""Peers left out of this run, with the reason (not installed)."""


def _peer(name: str, module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError as error:
        PEERS_MISSING[name] = f"{module} not importable ({error})"
        return False
    return True


@dataclass
class Contest:
    """One piece of work done by rlpipe ("rlpipe") and by each other variant."""

    key: str
    title: str
    variants: dict[str, Callable[[Path], Chain]]
    records: int
    check: Callable[[Path], dict[str, bool]] | None = None


def sb3_logger(path: Path) -> Any:
    from stable_baselines3.common.logger import CSVOutputFormat, Logger

    return Logger(str(path.parent), [CSVOutputFormat(str(path))])


def contests(rows: list[dict[str, Any]], batches: list[dict[str, Any]]) -> list[Contest]:
    """The peer contests (p-r) and the column targets (s, t)."""
    from acme.utils.loggers import CSVLogger

    import sinks.file
    from benchmarks.acme_baseline import AggregatingLogger
    from sinks import JsonlSink

    matched = bounds.MATCHED
    out: list[Contest] = []

    # (p) every record a CSV row on disk
    csv_rows: dict[str, Callable[[Path], Chain]] = {
        "rlpipe": lambda work: pipeline_chain(csv_pipeline(work / "rlpipe.csv"), rows),
    }

    def acme_rows(work: Path) -> Chain:
        logger = acme_csv(work / "acme.csv")

        def done() -> None:
            logger.close()
            logger._file.close()

        return Chain(rows_feed(logger.write, rows, logger.flush), done)

    csv_rows["acme"] = acme_rows
    if _peer("sb3", "stable_baselines3"):

        def sb3_rows(work: Path) -> Chain:
            logger = sb3_logger(work / "sb3.csv")
            record, dump = logger.record, logger.dump

            def feed() -> None:
                for step, row in enumerate(rows):
                    for key, value in row.items():
                        record(key, value)
                    dump(step)

            return Chain(feed, logger.close)

        csv_rows["sb3"] = sb3_rows
    if _peer("torchrl", "torchrl.record.loggers.csv"):

        def torchrl_rows(work: Path) -> Chain:
            from torchrl.record.loggers.csv import CSVLogger as TorchRLCSVLogger

            logger = TorchRLCSVLogger("torchrl", log_dir=str(work))
            log = logger.log_scalar

            def feed() -> None:
                for step, row in enumerate(rows):
                    for key, value in row.items():
                        if value is not None:  # a scalar logger: no None
                            log(key, value, step)

            def done() -> None:
                for handle in logger.experiment.files.values():
                    handle.close()

            return Chain(feed, done)

        csv_rows["torchrl"] = torchrl_rows
    out.append(Contest("p", "every record a CSV row on disk", csv_rows, len(rows)))

    # (q) an exponential moving average per key
    ema: dict[str, Callable[[Path], Chain]] = {
        "rlpipe": lambda work: pipeline_chain(
            Pipeline("ema", close_at_exit=False).drop_none().smooth("return|loss", coeff=0.99)
            .to(NullSink()), rows),
    }
    if _peer("rllib", "ray.rllib.utils.metrics.metrics_logger"):

        def rllib_ema(work: Path) -> Chain:
            from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

            logger = MetricsLogger()
            log = logger.log_value

            def feed() -> None:
                for row in rows:
                    for key in matched:
                        value = row[key]
                        if value is not None:
                            log(key, value, reduce="ema", ema_coeff=0.01)
                for key in matched:
                    logger.peek(key)

            return Chain(feed)

        ema["rllib"] = rllib_ema
    ema["acme"] = lambda work: acme_chain(
        acme_train_keys(0.0, "return|loss", noop()), rows)
    out.append(Contest("q", "moving average of 'return|loss' per key (coeff 0.99)", ema,
                       len(rows)))

    # (r) the mean over windows of 1000 records, a CSV row per window (the statistic every
    # peer here keeps: SB3's record_mean, RLlib's reduce="mean")
    window: dict[str, Callable[[Path], Chain]] = {
        "rlpipe": lambda work: pipeline_chain(
            Pipeline("mean", close_at_exit=False)
            .aggregate("return|loss", every=1000, stats=("mean",))
            .to(CsvSink(fresh_file(work / "rlpipe-w.csv"))),
            rows,
        ),
    }

    def acme_window(work: Path) -> Chain:
        logger = acme_csv(work / "acme-w.csv")
        aggregate = AggregatingLogger(logger, "return|loss", every=1000, stats=("mean",))

        def done() -> None:
            aggregate.close()
            logger._file.close()

        return Chain(rows_feed(aggregate.write, rows, aggregate.flush), done)

    window["acme"] = acme_window

    def bound_window(work: Path) -> Chain:
        file = bounds.csv(work / "bound-w.csv", WINDOW_FIELDS)
        aggregate = bounds.aggregate(file.write, every=1000, stats=("mean",))

        def finish() -> None:
            aggregate.flush()
            file.flush()

        return Chain(rows_feed(aggregate.write, rows, finish), file.close)

    window["bound"] = bound_window
    if "sb3" not in PEERS_MISSING:

        def sb3_window(work: Path) -> Chain:
            logger = sb3_logger(work / "sb3-w.csv")
            record, record_mean, dump = logger.record, logger.record_mean, logger.dump

            def feed() -> None:
                for step, row in enumerate(rows, 1):
                    for key, value in row.items():
                        if key in matched:
                            if value is not None:
                                record_mean(key, value)
                        else:
                            record(key, value)
                    if step % 1000 == 0:
                        dump(step)
                dump(len(rows))

            return Chain(feed, logger.close)

        window["sb3"] = sb3_window
    if "rllib" not in PEERS_MISSING:

        def rllib_window(work: Path) -> Chain:
            from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

            logger = MetricsLogger()
            log = logger.log_value

            def feed() -> None:
                for step, row in enumerate(rows, 1):
                    for key, value in row.items():
                        if key in matched:
                            if value is not None:
                                log(key, value, reduce="mean", window=1000)
                        else:
                            log(key, value, reduce="item")
                    if step % 1000 == 0:
                        logger.reduce()
                logger.reduce()

            return Chain(feed)

        window["rllib"] = rllib_window
    def same_means(work: Path) -> dict[str, bool]:
        """Whether rlpipe's file is the bound's, byte for byte, and each window's means in it
        are Acme's (`<key>_mean`, equal) and SB3's (`<key>`, a running mean: within 1e-9)."""
        ours = parsed(work / "rlpipe-w.csv")
        out = {
            "bound": (work / "rlpipe-w.csv").read_bytes() == (work / "bound-w.csv").read_bytes(),
            "acme": ours == parsed(work / "acme-w.csv"),
        }
        if "sb3" in window:
            theirs = parsed(work / "sb3-w.csv")[: len(ours)]
            out["sb3"] = len(ours) == -(-len(rows) // 1000) and len(theirs) == len(ours) and all(
                math.isclose(float(mine[f"{key}_mean"]), float(their[key]), rel_tol=1e-9)
                for mine, their in zip(ours, theirs, strict=True)
                for key in matched
            )
        return out

    out.append(Contest(
        "r", "the mean of 'return|loss' over windows of 1000 records, a CSV row per window",
        window, len(rows), same_means))

    # (s) the batched train chain to a CSV file: rlpipe's column path, the Acme-built row
    # chain, the numpy/scipy + orjson bound, and rlpipe with the fast extra off
    def rlpipe_train_csv(work: Path, fast: bool = True) -> Chain:
        pipe = train_pipeline(0.0, CsvSink(fresh_file(work / "rlpipe-s.csv")))

        def feed() -> None:
            before, sinks.file.FAST = sinks.file.FAST, fast
            try:
                for batch in batches:
                    pipe.write_batch(batch)
                pipe.flush()
            finally:
                sinks.file.FAST = before

        return Chain(feed, pipe.close)

    def acme_train_csv(work: Path) -> Chain:
        path = work / "acme-s.csv"
        path.unlink(missing_ok=True)  # the previous run's: Acme's CSVLogger appends
        logger = CSVLogger(path.open("a"), add_uid=False)
        chain = acme_train(0.0, logger)

        def done() -> None:
            logger.close()
            logger._file.close()

        return Chain(rows_feed(chain.write, rows, logger.flush), done)

    out.append(Contest(
        "s", f"batched train chain (a) to a CSV file, {BATCH}-row write_batch",
        {
            "rlpipe": rlpipe_train_csv,
            "acme": acme_train_csv,
            "bound": lambda work: bound_chain(
                bounds.columns_train_csv(work / "bound-s.csv", TRAIN_CSV_FIELDS), batches),
            "pure": lambda work: rlpipe_train_csv(work, fast=False),
        },
        len(rows),
        lambda work: {
            "bound": (work / "rlpipe-s.csv").read_bytes() == (work / "bound-s.csv").read_bytes(),
            "acme": parsed(work / "rlpipe-s.csv") == parsed(work / "acme-s.csv"),
        },
    ))

    # (t) batched JSON Lines against json.dumps per row
    # Each variant starts from no file, as a fresh run does: replacing the last run's file
    # (mode="w") would time its truncation too.
    def fresh(path: Path) -> Path:
        path.unlink(missing_ok=True)
        return path

    def rlpipe_jsonl(work: Path, fast: bool = True, batched: bool = True) -> Chain:
        name = ("rlpipe" if fast else "pure") if batched else "rows"
        sink = JsonlSink(fresh(work / f"{name}-t.jsonl"), mode="w")
        write = sink.write_batch if batched else sink.write

        def feed() -> None:
            before, sinks.file.FAST = sinks.file.FAST, fast
            try:
                for item in batches if batched else rows:
                    write(item)
                sink.flush()
            finally:
                sinks.file.FAST = before

        return Chain(feed, sink.close)

    def same_jsonl(work: Path) -> dict[str, bool]:
        def values(name: str) -> list[Any]:
            with (work / name).open() as handle:
                return [json.loads(line) for line in handle]

        ours = values("rlpipe-t.jsonl")
        same_bytes = (work / "rlpipe-t.jsonl").read_bytes() == (work / "bound-t.jsonl").read_bytes()
        return {
            "bound": same_bytes,
            **{name: ours == values(f"{name.split('.')[0]}-t.jsonl")
               for name in ("json.dumps", "rows", "pure")},
        }

    out.append(Contest(
        "t", f"batched JSON Lines, {BATCH}-row write_batch",
        {
            "rlpipe": rlpipe_jsonl,
            "json.dumps": lambda work: bound_chain(
                bounds.json_rows(fresh(work / "json-t.jsonl")), rows),
            "bound": lambda work: bound_chain(
                bounds.columns_jsonl(fresh(work / "bound-t.jsonl")), batches),
            "rows": lambda work: rlpipe_jsonl(work, batched=False),
            "pure": lambda work: rlpipe_jsonl(work, fast=False),
        },
        len(rows),
        same_jsonl,
    ))
    return out


def acme_train_keys(seconds: float, pattern: str, *targets: Any) -> Any:
    """The Acme-built smoothing of every key matching `pattern` (after NoneFilter)."""
    from acme.utils import loggers

    from benchmarks.acme_baseline import SmoothingLogger

    return loggers.NoneFilter(
        SmoothingLogger(
            loggers.TimeFilter(loggers.Dispatcher(list(targets)), seconds), pattern, 0.99
        )
    )


def measure_contests(
    chosen: list[Contest], repeat: int, work: Path, bar: Progress[Any] | None = None
) -> list[dict[str, Any]]:
    """Each contest's variants timed `repeat` times, interleaved; medians and each
    variant's time over rlpipe's; then the contest's output checks on the last run's files."""
    results = []
    for contest in chosen:
        times: dict[str, list[float]] = {name: [] for name in contest.variants}
        for _ in range(repeat):
            for name, build in contest.variants.items():
                times[name].append(timed(lambda build=build: build(work)))  # type: ignore[misc]
                if bar is not None:
                    bar.update()
        median = {name: statistics.median(runs) for name, runs in times.items()}
        results.append({
            "key": contest.key,
            "title": contest.title,
            "records": contest.records,
            "ns_per_record": {name: t / contest.records * 1e9 for name, t in median.items()},
            "x_rlpipe": {
                name: t / median["rlpipe"] for name, t in median.items() if name != "rlpipe"
            },
            "times_s": times,
            "checks": contest.check(work) if contest.check is not None else {},
        })
    return results


def contest_table(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        ns = r["ns_per_record"]
        figures = ", ".join(
            f"{name} {ns[name]:,.0f} ns ({ratio:.1f}x)" for name, ratio in r["x_rlpipe"].items()
        )
        lines.append(f"({r['key']}) {r['title']}: rlpipe {ns['rlpipe']:,.0f} ns/record; "
                     f"{figures}")
    return "\n".join(lines)


def peers_main(args: argparse.Namespace, given: list[str]) -> dict[str, Any]:
    """`--peers`: the peer contests and the column targets, one table."""
    rows = stream.records(args.records)
    batches = stream.batches(rows, BATCH)
    chosen = [c for c in contests(rows, batches) if not args.only or c.key in args.only]
    load_before = load()
    steps = sum(len(c.variants) for c in chosen) * args.repeat
    with (
        tempfile.TemporaryDirectory(prefix="rlpipe-peers-") as folder,
        progress(total=steps, description="peers", unit="run", leave=False) as bar,
        warnings.catch_warnings(),
    ):
        # each run starts its files afresh (mode="w"): the previous run's are replaced
        warnings.filterwarnings("ignore", message=".*they are replaced", category=UserWarning)
        results = measure_contests(chosen, args.repeat, Path(folder), bar)
    load_after = load()
    print(
        f"rlpipe against peers: {args.records:,} records x {len(stream.KEYS)} keys, median of "
        f"{args.repeat} interleaved runs; load average {load_before} before, {load_after} "
        "after; (Nx): the variant's time over rlpipe's"
    )
    print(contest_table(results))
    for r in results:
        if r["checks"]:
            print(f"({r['key']}) outputs equal: "
                  + ", ".join(f"{name} {ok}" for name, ok in r["checks"].items()))
    for name, reason in PEERS_MISSING.items():
        print(f"left out: {name}: {reason}")
    report = {
        "command": " ".join(["python benchmarks/throughput.py", *given]),
        "records": args.records,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "contests": results,
        "missing": dict(PEERS_MISSING),
        "all_equal": all(all(r["checks"].values()) for r in results),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.json or Path(__file__).resolve().parent / "results" / f"peers-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"results: {path}")
    return report


def load_fast_extra() -> None:
    """Imports the `fast` extra's modules (orjson, polars, scipy) that are installed, before
    anything is timed: a process imports them once, not per record (rlpipe loads them on
    first use, which would fall in its first timed run; the bounds import them while they
    are built, outside the timing)."""
    for module in ("orjson", "polars", "scipy.signal"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records in the stream")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per variant")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny stream, one run each: proves every scenario works",
    )
    parser.add_argument("--only", default="", help="scenario letters to run, e.g. 'adgj'")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="instead: rlpipe against SB3's, RLlib's, TorchRL's and Acme's loggers, and the "
        "column targets (batched CSV and JSON Lines)",
    )
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(given)
    if args.quick:
        args.records, args.repeat = BATCH + 500, 1
    if args.records < 1 or args.repeat < 1:
        parser.error("--records and --repeat must be >= 1")
    load_fast_extra()
    if args.peers:
        return peers_main(args, given)

    rows = stream.records(args.records)
    batches = stream.batches(rows, BATCH)
    chosen = [s for s in scenarios(rows) if not args.only or s.key in args.only]
    peers = measure_peers(args.records, args.repeat, args.only)
    keys = "".join(s.key for s in chosen)
    results: list[Result] = []
    load_before = load()
    # A bar on stderr when it is a terminal (nothing extra otherwise): one step per timed run
    # of each variant and per memory run.
    steps = sum((4 + scenario.batched) * args.repeat + 2 for scenario in chosen)
    with (
        tempfile.TemporaryDirectory(prefix="rlpipe-bench-") as folder,
        progress(total=steps, description="throughput", unit="run", leave=False) as bar,
    ):
        for scenario in chosen:
            bar.set_description(f"({scenario.key}) {scenario.title[:40]}")
            results.append(measure(scenario, rows, batches, args.repeat, Path(folder), bar))
        checks = check_outputs(rows, keys, Path(folder))
    load_after = load()
    by_key = {r.key: r for r in results}
    for r in results:
        if r.key in "ghi":
            r.extra["values_per_s"] = r.values / r.rlpipe_s
    if "d" in by_key:
        by_key["d"].extra.update(flush_times(rows, args.repeat))
    memory = {}
    from benchmarks.acme_baseline import AggregatingLogger

    for name, node in (
        ("rlpipe", AggregateFilter("return|loss").connect(NullSink())),
        ("acme", AggregatingLogger(noop(), "return|loss")),
    ):
        memory[f"{name}_bytes_per_value"], memory["buffered_values"] = bytes_per_buffered_value(
            rows, node
        )

    print(
        f"rlpipe throughput: {args.records:,} records x {len(stream.KEYS)} keys, "
        f"median of {args.repeat} interleaved runs; Python {platform.python_version()}, "
        f"numpy {np.__version__}, {os.cpu_count()} CPUs, load average {load_before} before, "
        f"{load_after} after"
    )
    print(table(results))
    print()
    print(
        "outputs equal in this run (bound: the bound's = rlpipe's; acme: rlpipe's = the "
        "Acme-built chain's; rows: batched = row by row):"
    )
    for key, found in checks.items():
        print(f"({key}) " + ", ".join(f"{name} {ok}" for name, ok in found.items()))
    for key in "ghi":
        if key in by_key:
            print(f"({key}) {by_key[key].extra['values_per_s'] / 1e6:,.1f} M values/s")
    if "d" in by_key:
        extra = by_key["d"].extra
        print(
            f"(d) flush of {args.records:,} buffered records: rlpipe "
            f"{extra['rlpipe_flush_s'] * 1e3:.2f} ms, acme {extra['acme_flush_s'] * 1e3:.2f} "
            f"ms ({extra['flush_speedup']:.1f}x)"
        )
    print(
        f"aggregate memory per buffered value: rlpipe {memory['rlpipe_bytes_per_value']:.1f} "
        f"bytes, acme {memory['acme_bytes_per_value']:.1f} bytes "
        f"({memory['buffered_values']:,} values)"
    )

    if peers:
        print()
        print(
            f"peers' statistics: {min(args.records, PEER_RECORDS):,} records (RLlib: "
            f"{min(args.records, RLLIB_RECORDS):,}), ns per record, median of {args.repeat}; "
            "x bound: rlpipe / its bound; sb3 x, rllib x: the peer's time / rlpipe's"
        )
        print(peer_table(peers))
        for p in peers:
            print(f"({p['key']}) outputs equal to rlpipe's: "
                  + ", ".join(f"{name} {ok}" for name, ok in p["equal"].items()))

    report = {
        "command": " ".join(["python benchmarks/throughput.py", *given]),
        "records": args.records,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "results": [r.as_json() for r in results],
        "checks": checks,
        "all_equal": all(all(found.values()) for found in checks.values()),
        "memory": memory,
        "peers": peers,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.json or Path(__file__).resolve().parent / "results" / f"throughput-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"results: {path}")
    return report


if __name__ == "__main__":
    main()
