"""Throughput and memory of rlpipe's chains against the same chains built from Acme's loggers.

    python benchmarks/throughput.py [--records 100000] [--repeat 5] [--quick] [--json PATH]

Every scenario runs, in this process and on one seeded stream shaped like an Acme
EnvironmentLoop's output plus learner losses (7 keys, ints and floats, an occasional None):

- rlpipe: the chain built with `pipeline.Pipeline`;
- acme: the equivalent chain built from `acme.utils.loggers` (NoneFilter, TimeFilter,
  Dispatcher, CSVLogger, TerminalLogger; smoothing and aggregation written in their style,
  see benchmarks/acme_baseline.py);
- floor: a bare `NullSink().write` per record (`write_batch` per batch for the batched
  scenarios): the least a pipeline can cost.

Each is timed `--repeat` times, interleaved, and the median is reported: records/s, ns per
record, speed-up over acme (acme time / rlpipe time), cost over the floor (rlpipe time /
floor time) and peak traced memory (tracemalloc, in a separate untimed run). Scenario (a)'s
output is checked to be identical to the Acme-built chain's, record for record. The results
go to benchmarks/results/throughput-<time>.json (or `--json PATH`).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks import stream
from filters import AggregateFilter
from pipeline import Pipeline
from pipeline.cli.progress import Progress, progress
from pipeline.core.node import Node
from sinks import CsvSink, MemorySink, NullSink, TerminalSink

BATCH = 4096
"""Rows per batch in the batched scenarios (a vectorized environment's worth of episodes)."""

Feed = Callable[[], None]


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
    rlpipe: Callable[[Path], Chain]
    acme: Callable[[Path], Chain]
    batched: bool = False


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
    rlpipe_peak_bytes: int
    acme_peak_bytes: int
    times_s: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def records_per_s(self) -> float:
        return self.records / self.rlpipe_s

    @property
    def ns_per_record(self) -> float:
        return self.rlpipe_s / self.records * 1e9

    @property
    def speedup(self) -> float:
        return self.acme_s / self.rlpipe_s

    @property
    def over_floor(self) -> float:
        return self.rlpipe_s / self.floor_s

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            records_per_s=self.records_per_s,
            ns_per_record=self.ns_per_record,
            values_per_s=self.values / self.rlpipe_s,
            acme_records_per_s=self.records / self.acme_s,
            speedup_over_acme=self.speedup,
            cost_over_floor=self.over_floor,
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


def acme_chain(logger: Any, rows: Sequence[Any], finish: Feed | None = None) -> Chain:
    flush = getattr(logger, "flush", None)
    return Chain(rows_feed(logger.write, rows, finish or flush or (lambda: None)), logger.close)


def train_pipeline(seconds: float, *targets: Node) -> Pipeline:
    return (
        Pipeline("train", close_at_exit=False)
        .drop_none()
        .smooth("return", coeff=0.99)
        .throttle(seconds)
        .to(*targets)
    )


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

    return CSVLogger(path.open("a"), add_uid=False)


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

    def acme_aggregate_all(work: Path) -> Chain:
        logger = AggregatingLogger(noop(), "return|loss")
        return acme_chain(logger, rows)

    return [
        Scenario(
            "a",
            "train chain: drop_none > smooth > throttle(0) > dispatch > null",
            lambda work: pipeline_chain(train_pipeline(0.0, NullSink()), rows),
            lambda work: acme_chain(acme_train(0.0, noop()), rows),
        ),
        Scenario(
            "b",
            "train chain with throttle(1 s)",
            lambda work: pipeline_chain(train_pipeline(1.0, NullSink()), rows),
            lambda work: acme_chain(acme_train(1.0, noop()), rows),
        ),
        Scenario(
            "c",
            "eval chain: aggregate('return|loss', every=1000) > null",
            lambda work: pipeline_chain(
                Pipeline("eval", close_at_exit=False)
                .aggregate("return|loss", every=1000)
                .to(NullSink()),
                rows,
            ),
            lambda work: acme_chain(AggregatingLogger(noop(), "return|loss", every=1000), rows),
        ),
        Scenario(
            "d",
            f"aggregate all {len(rows):,} records, one flush",
            lambda work: pipeline_chain(
                Pipeline("eval", close_at_exit=False).aggregate("return|loss").to(NullSink()),
                rows,
            ),
            acme_aggregate_all,
        ),
        Scenario(
            "e",
            "CSV sink on disk",
            lambda work: pipeline_chain(
                Pipeline("csv", close_at_exit=False).to(CsvSink(work / "rlpipe.csv", mode="w")),
                rows,
            ),
            acme_csv_only,
        ),
        Scenario(
            "f",
            "full train pipeline > terminal (/dev/null) + CSV",
            lambda work: pipeline_chain(
                train_pipeline(
                    0.0,
                    TerminalSink("train", stream=devnull),
                    CsvSink(work / "rlpipe.csv", mode="w"),
                ),
                rows,
            ),
            acme_full,
        ),
        Scenario(
            "g",
            f"batched train chain (a), {BATCH}-row write_batch",
            lambda work: pipeline_chain(train_pipeline(0.0, NullSink()), batches, batched=True),
            lambda work: acme_chain(acme_train(0.0, noop()), rows),
            batched=True,
        ),
        Scenario(
            "h",
            f"batched eval chain (c), {BATCH}-row write_batch",
            lambda work: pipeline_chain(
                Pipeline("eval", close_at_exit=False)
                .aggregate("return|loss", every=1000)
                .to(NullSink()),
                batches,
                batched=True,
            ),
            lambda work: acme_chain(AggregatingLogger(noop(), "return|loss", every=1000), rows),
            batched=True,
        ),
        Scenario(
            "i",
            f"batched CSV sink (e), {BATCH}-row write_batch",
            lambda work: pipeline_chain(
                Pipeline("csv", close_at_exit=False).to(CsvSink(work / "rlpipe.csv", mode="w")),
                batches,
                batched=True,
            ),
            acme_csv_only,
            batched=True,
        ),
    ]


def floor_chain(rows: list[dict[str, Any]], batches: list[dict[str, Any]], batched: bool) -> Chain:
    sink = NullSink()
    if batched:
        return Chain(rows_feed(sink.write_batch, batches, sink.flush))
    return Chain(rows_feed(sink.write, rows, sink.flush))


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


def check_train_output(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Scenario (a) through rlpipe (row by row and batched) and through the Acme-built chain:
    the records reaching the sink must be the same, key order, types and values."""
    from benchmarks.acme_baseline import ListLogger

    ours, batched, theirs = MemorySink(), MemorySink(), ListLogger()
    pipe = train_pipeline(0.0, ours)
    for row in rows:
        pipe.write(row)
    pipe.close()
    pipe = train_pipeline(0.0, batched)
    for batch in stream.batches(rows, BATCH):
        pipe.write_batch(batch)
    pipe.close()
    logger = acme_train(0.0, theirs)
    for row in rows:
        logger.write(row)

    def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
        return len(a) == len(b) and all(
            list(x) == list(y) and all(x[k] == y[k] and float(x[k]) == float(y[k]) for k in x)
            for x, y in zip(a, b, strict=True)
        )

    return {
        "records": len(ours.records),
        "identical_to_acme": [list(r.items()) for r in ours.records]
        == [list(r.items()) for r in theirs.records],
        "batched_identical_to_acme": same(batched.records, theirs.records),
    }


def measure(
    scenario: Scenario,
    rows: list[dict[str, Any]],
    batches: list[dict[str, Any]],
    repeat: int,
    work: Path,
    bar: Progress[Any] | None = None,
) -> Result:
    builders = {
        "floor": lambda: floor_chain(rows, batches, scenario.batched),
        "rlpipe": lambda: scenario.rlpipe(work),
        "acme": lambda: scenario.acme(work),
    }
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
    return Result(
        key=scenario.key,
        title=scenario.title,
        records=len(rows),
        values=values,
        rlpipe_s=statistics.median(times["rlpipe"]),
        acme_s=statistics.median(times["acme"]),
        floor_s=statistics.median(times["floor"]),
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


# -- reporting ----------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    head = (
        f"{'':2} {'scenario':<60} {'records/s':>11} {'ns/rec':>8} {'x acme':>7} "
        f"{'x floor':>8} {'peak MB':>8} {'acme MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.key:2} {r.title:<60} {r.records_per_s:>11,.0f} {r.ns_per_record:>8,.0f} "
            f"{r.speedup:>7.1f} {r.over_floor:>8.1f} {r.rlpipe_peak_bytes / 1e6:>8.2f} "
            f"{r.acme_peak_bytes / 1e6:>8.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records in the stream")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per variant")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny stream, one run each: proves every scenario works",
    )
    parser.add_argument("--only", default="", help="scenario letters to run, e.g. 'adg'")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.repeat = BATCH + 500, 1
    if args.records < 1 or args.repeat < 1:
        parser.error("--records and --repeat must be >= 1")

    rows = stream.records(args.records)
    batches = stream.batches(rows, BATCH)
    chosen = [s for s in scenarios(rows) if not args.only or s.key in args.only]
    results: list[Result] = []
    # A bar on stderr when it is a terminal (nothing extra otherwise): one step per timed run
    # of each variant and per memory run.
    steps = len(chosen) * (3 * args.repeat + 2)
    with (
        tempfile.TemporaryDirectory(prefix="rlpipe-bench-") as folder,
        progress(total=steps, description="throughput", unit="run", leave=False) as bar,
    ):
        for scenario in chosen:
            bar.set_description(f"({scenario.key}) {scenario.title[:40]}")
            results.append(measure(scenario, rows, batches, args.repeat, Path(folder), bar))
    by_key = {r.key: r for r in results}
    for r in results:
        if r.key in "ghi":
            r.extra["values_per_s"] = r.values / r.rlpipe_s
    checks = check_train_output(rows)
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
        f"median of {args.repeat} runs; Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    print(table(results))
    print()
    print(
        f"(a) output identical to the Acme-built chain: {checks['identical_to_acme']} "
        f"({checks['records']:,} records); batched (g) identical: "
        f"{checks['batched_identical_to_acme']}"
    )
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

    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "records": args.records,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "results": [r.as_json() for r in results],
        "checks": checks,
        "memory": memory,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.json or Path(__file__).resolve().parent / "results" / f"throughput-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"results: {path}")
    return report


if __name__ == "__main__":
    main()
