"""What a record costs in NeptuneSink, against a bare MemorySink.write in the same run.

    python benchmarks/neptune_write.py [--records 20000] [--repeat 3] [--json out.json]

Each row times `write` over an Acme-like stream (7 keys: ints, floats, a numpy scalar), then
the `flush()` that hands the buffered records to the client, on a fresh offline run in a
temporary folder (nothing is sent anywhere). "write" is what the training loop pays per
record; "write+flush" includes the client's own work (1.x: JSON lines on disk; neptune-scale:
one SQLite commit per record). For reference, the "direct" rows call the client per record
the way a sink without a buffer would (1.x: `run[key].append(...)` per key; neptune-scale:
`run.log_metrics(...)` per record). Best of `--repeat` runs; numbers in ns per record.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sinks.memory import MemorySink
from sinks.neptune import NeptuneSink


@dataclass
class Timing:
    """ns per record: `write` per chunk of records, and the flush spread over all records."""

    chunks: list[float]
    flush: float


def stream(n: int) -> list[dict[str, Any]]:
    """Acme EnvironmentLoop-like records: counters, floats and a numpy scalar."""
    rng = np.random.default_rng(0)
    records = []
    actor_steps = 0
    for episode in range(n):
        length = int(rng.integers(5, 50))
        actor_steps += length
        records.append(
            {
                "actor_steps": actor_steps,
                "episodes": episode,
                "episode_length": length,
                "episode_return": float(rng.normal(10.0, 3.0)),
                "steps_per_second": float(rng.uniform(100, 200)),
                "epsilon": np.float32(0.05),
                "phase": 1,
            }
        )
    return records


def classic_run(folder: Path) -> Any:
    import neptune

    os.environ["NEPTUNE_DATA_DIRECTORY"] = str(folder)
    return neptune.init_run(
        mode="offline",
        capture_stdout=False,
        capture_stderr=False,
        capture_hardware_metrics=False,
        git_ref=False,
        source_files=[],
    )


def scale_run(folder: Path) -> Any:
    from neptune_scale import Run

    return Run(
        project="rlpipe/bench",
        mode="offline",
        log_directory=folder,
        enable_console_log_capture=False,
        source_tracking_config=None,
    )


CHUNK = 500


def time_sink(make: Callable[[Path], Any], records: list[dict[str, Any]]) -> Timing:
    """Times `write` in chunks of CHUNK records, then the `flush` after it, on a fresh sink."""
    with tempfile.TemporaryDirectory() as folder:
        sink = make(Path(folder))
        write = sink.write
        chunks = []
        clock = time.perf_counter_ns
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            began = clock()
            for record in chunk:
                write(record)
            chunks.append((clock() - began) / len(chunk))
        began = clock()
        sink.flush()
        flush = (clock() - began) / len(records)
        sink.close()
        return Timing(chunks, flush)


def time_direct(kind: str, records: list[dict[str, Any]]) -> Timing:
    """The client called per record, without a sink."""
    with tempfile.TemporaryDirectory() as folder:
        if kind == "neptune":
            run = classic_run(Path(folder))
            start = time.perf_counter_ns()
            for record in records:
                step = record["actor_steps"]
                for key, value in record.items():
                    run[f"train/{key}"].append(float(value), step=step)
            spent = time.perf_counter_ns() - start
            run.stop()
            return Timing([spent / len(records)], 0.0)
        else:
            run = scale_run(Path(folder))
            start = time.perf_counter_ns()
            for record in records:
                data = {f"train/{key}": float(value) for key, value in record.items()}
                run.log_metrics(data, step=record["actor_steps"])
            spent = time.perf_counter_ns() - start
            run.close()
            return Timing([spent / len(records)], 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument(
        "--direct-records",
        type=int,
        default=2_000,
        help="records for the (slow) direct-client rows",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    records = stream(args.records)
    direct_records = records[: args.direct_records]

    # Import both clients first, so every case (MemorySink too) runs with the same heap: a
    # client's many objects make each full garbage collection slower for everyone.
    import neptune  # noqa: F401
    import neptune_scale  # noqa: F401

    def sink_case(make: Callable[[Path], Any]) -> Callable[[], Timing]:
        return lambda: time_sink(make, records)

    cases: list[tuple[str, int, Callable[[], Timing]]] = [
        ("MemorySink", len(records), sink_case(lambda _: MemorySink())),
        (
            "NeptuneSink (neptune 1.x, offline)",
            len(records),
            sink_case(lambda d: NeptuneSink(prefix="train", step_key="actor_steps", data_dir=d)),
        ),
        (
            "NeptuneSink (neptune-scale, offline)",
            len(records),
            sink_case(
                lambda d: NeptuneSink.scale(prefix="train", step_key="actor_steps", data_dir=d)
            ),
        ),
        (
            "direct run[k].append (1.x)",
            len(direct_records),
            lambda: time_direct("neptune", direct_records),
        ),
        (
            "direct run.log_metrics (scale)",
            len(direct_records),
            lambda: time_direct("scale", direct_records),
        ),
    ]
    rows: list[dict[str, Any]] = []
    for name, count, run_case in cases:
        timings = [run_case() for _ in range(args.repeat)]
        chunks = [chunk for timing in timings for chunk in timing.chunks]
        mean = statistics.fmean(chunks)
        rows.append(
            {
                "case": name,
                "records": count,
                "write_median_ns": statistics.median(chunks),
                "write_mean_ns": mean,
                "write_flush_ns": min(statistics.fmean(t.chunks) + t.flush for t in timings),
            }
        )
    base = rows[0]["write_median_ns"]
    print(
        f"{'case':38} {'records':>8} {'write median':>13} {'x Mem':>6} {'write mean':>11} "
        f"{'write+flush':>12} {'x Mem':>7}   (ns per record)"
    )
    for row in rows:
        row["write_ratio"] = row["write_median_ns"] / base
        row["write_flush_ratio"] = row["write_flush_ns"] / base
        print(
            f"{row['case']:38} {row['records']:>8} {row['write_median_ns']:>13.0f} "
            f"{row['write_ratio']:>6.1f} {row['write_mean_ns']:>11.0f} "
            f"{row['write_flush_ns']:>12.0f} {row['write_flush_ratio']:>7.1f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
