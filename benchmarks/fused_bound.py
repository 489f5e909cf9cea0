"""How fast the train chain (scenario (a) of throughput.py) can be in pure Python at best.

    python benchmarks/fused_bound.py [--records 100000] [--repeat 5]

Times, interleaved on the same stream, four writers of the same records: the rlpipe train
chain (Pipeline > NoneFilter > SmoothingFilter > TimeFilter(0) > Dispatcher > NullSink), the
Acme-built equivalent, one hand-fused Python function doing the same work (drop the None keys,
smooth `episode_return`, pass the record to the sink) with no nodes at all, and a bare
`NullSink.write` (the floor). The fused function is the bound of a pure-Python graph: what
rlpipe pays above it is the cost of the graph itself (one call per node, the pipeline's lock,
the smoothing plan's lookup, the dispatcher's isolation). Its output is checked to equal the
chain's.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import stream, throughput
from pipeline.core.node import Record
from sinks import MemorySink, NullSink

KEY = "episode_return"
NAME = f"{KEY}_smoothed_0.99"


def fused(write: Callable[[Record], None]) -> Callable[[Record], None]:
    """The whole train chain as one function writing to `write` (warm-up EMA, coeff 0.99)."""
    state = [math.nan, 0.0]

    def chain(data: Record) -> None:
        for value in data.values():
            if value is None:
                data = {k: v for k, v in data.items() if v is not None}
                break
        out = dict(data)
        x = data[KEY]
        c = state[1]
        state[0] = x if c == 0.0 else (1.0 - c) * x + c * state[0]
        state[1] = 0.9 * c + 0.1 * 0.99
        out[NAME] = state[0]
        write(out)

    return chain


def run(write: Callable[[Record], None], rows: Sequence[Record]) -> float:
    start = time.perf_counter()
    for row in rows:
        write(row)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    rows = stream.records(args.records)

    ours, theirs = MemorySink(), MemorySink()
    pipe = throughput.train_pipeline(0.0, ours)
    check = fused(theirs.write)
    for row in rows:
        pipe.write(row)
        check(row)
    pipe.close()
    assert ours.records == theirs.records, "the fused function must give the chain's output"

    writers: dict[str, Callable[[], Callable[[Record], None]]] = {
        "rlpipe chain": lambda: throughput.train_pipeline(0.0, NullSink()).write,
        "acme chain": lambda: throughput.acme_train(0.0, throughput.noop()).write,
        "fused function": lambda: fused(NullSink().write),
        "floor": lambda: NullSink().write,
    }
    times: dict[str, list[float]] = {name: [] for name in writers}
    for _ in range(args.repeat):
        for name, make in writers.items():
            times[name].append(run(make(), rows))
    median = {name: statistics.median(runs) for name, runs in times.items()}
    print(f"train chain (a), {args.records:,} records, median of {args.repeat} runs")
    print(f"{'writer':<16} {'ns/record':>10} {'x acme':>7}")
    for name, seconds in median.items():
        print(
            f"{name:<16} {seconds / args.records * 1e9:>10,.0f} "
            f"{median['acme chain'] / seconds:>7.1f}"
        )
    return {"records": args.records, "seconds": median, "runs": times}


if __name__ == "__main__":
    main()
