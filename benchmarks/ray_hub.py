"""Records per second from N Ray workers into one central pipeline (a Hub), N = 1, 2, 4.

    python benchmarks/ray_hub.py [--records 40000] [--repeat 3] [--cpus 2] [--json out.json]

Each worker is a Ray task that writes a prepared list of Acme-like records (7 keys) through
`hub.sender(worker=i)`, record by record ("write") or as column batches of 256 ("batch"),
then closes the sender (which waits until the hub applied everything). The central pipeline
is the one a distributed run would use: an aggregate of the returns over all workers every
1000 records, into a NullSink. Throughput = all records / (last worker's close - first
worker's start), so it counts delivery into the central pipeline, not just the enqueueing.
"worker us/rec" is what a worker's loop pays per record (its write + close time over its
records). The "local" row is the same pipeline written in one process, without Ray.
Median of `--repeat` runs. Writes JSON to benchmarks/results/ray_hub-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import Pipeline
from pipeline.cli.progress import progress
from sinks import NullSink

BATCH_ROWS = 256


def central() -> Pipeline:
    """The hub's pipeline: the mean/std/min/max of returns over every worker, each 1000."""
    return (
        Pipeline("hub")
        .aggregate(r"return", every=1000, stats=("mean", "std", "max", "min"))
        .to(NullSink())
    )


def records(worker: int, n: int) -> list[dict[str, Any]]:
    """Acme EnvironmentLoop-like records: counters, floats and a numpy scalar."""
    rng = np.random.default_rng(worker)
    lengths = rng.integers(5, 50, size=n)
    returns = rng.normal(10.0, 3.0, size=n)
    steps = np.cumsum(lengths)
    return [
        {
            "actor_steps": int(steps[i]),
            "episodes": i,
            "episode_length": int(lengths[i]),
            "episode_return": float(returns[i]),
            "steps_per_second": 150.0,
            "epsilon": np.float32(0.05),
            "phase": 1,
        }
        for i in range(n)
    ]


def columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same records as column batches of BATCH_ROWS rows."""
    batches = []
    for start in range(0, len(rows), BATCH_ROWS):
        chunk = rows[start : start + BATCH_ROWS]
        batches.append({key: np.array([row[key] for row in chunk]) for key in chunk[0]})
    return batches


def run_worker(log: Any, worker: int, n: int, mode: str) -> tuple[float, float, int, int]:
    """Writes `n` records through `log` and closes it; returns (start, end, sent, lost)."""
    rows = records(worker, n)
    data: list[Any] = columns(rows) if mode == "batch" else rows
    write = log.write_batch if mode == "batch" else log.write
    start = time.time()
    for item in data:
        write(item)
    log.close()
    return start, time.time(), log.sent, log.lost


def local_rate(n: int, mode: str) -> float:
    """Records/s of the same central pipeline written in one process."""
    rows = records(0, n)
    data: list[Any] = columns(rows) if mode == "batch" else rows
    pipeline = central()
    write = pipeline.write_batch if mode == "batch" else pipeline.write
    start = time.perf_counter()
    for item in data:
        write(item)
    pipeline.close()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40_000, help="records per worker")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to the local Ray")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--modes", nargs="+", default=["write", "batch"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from pipeline.integrations.ray import Hub

    temp = tempfile.mkdtemp(prefix="rlpipe-ray-bench-")
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        _temp_dir=temp,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    worker_task = ray.remote(num_cpus=0.01)(run_worker)
    rows: list[dict[str, Any]] = []
    runs = len(args.modes) * len(args.workers) * args.repeat
    bar = progress(total=runs, description="ray hub", unit="run", leave=False)  # terminal only
    try:
        hub = Hub(central)  # warm-up: start worker processes, import everything
        ray.get([worker_task.remote(hub.sender(worker=i), i, 500, "write") for i in range(4)])
        hub.close()
        for mode in args.modes:
            local = [local_rate(args.records, mode) for _ in range(args.repeat)]
            rows.append(
                {
                    "mode": mode,
                    "workers": 0,
                    "records_per_s": statistics.median(local),
                    "runs": local,
                    "worker_us_per_record": 1e6 / statistics.median(local),
                }
            )
            for n_workers in args.workers:
                rates, costs = [], []
                for _ in range(args.repeat):
                    bar.set_description(f"ray hub: {mode}, {n_workers} workers")
                    hub = Hub(central)
                    results = ray.get(
                        [
                            worker_task.remote(hub.sender(worker=i), i, args.records, mode)
                            for i in range(n_workers)
                        ]
                    )
                    status = hub.close()
                    total = n_workers * args.records
                    assert status is not None and status.records == total, status
                    assert all(lost == 0 for _, _, _, lost in results)
                    first = min(start for start, _, _, _ in results)
                    last = max(end for _, end, _, _ in results)
                    rates.append(total / (last - first))
                    costs.append(
                        statistics.mean(
                            (end - start) / args.records * 1e6 for start, end, _, _ in results
                        )
                    )
                    bar.update()
                rows.append(
                    {
                        "mode": mode,
                        "workers": n_workers,
                        "records_per_s": statistics.median(rates),
                        "runs": rates,
                        "worker_us_per_record": statistics.median(costs),
                    }
                )
    finally:
        bar.close()
        ray.shutdown()

    print(f"{'mode':<6} {'workers':>7} {'records/s':>11} {'worker us/rec':>14}  runs (records/s)")
    for row in rows:
        workers = "local" if row["workers"] == 0 else str(row["workers"])
        runs = ", ".join(f"{rate:,.0f}" for rate in row["runs"])
        print(
            f"{row['mode']:<6} {workers:>7} {row['records_per_s']:>11,.0f} "
            f"{row['worker_us_per_record']:>14.2f}  {runs}"
        )
    out = args.json or (
        Path(__file__).resolve().parent / "results" / time.strftime("ray_hub-%Y%m%d-%H%M%S.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "ray": ray.__version__,
        "cpus": args.cpus,
        "machine_cpus": os.cpu_count(),
        "records_per_worker": args.records,
        "repeat": args.repeat,
        "batch_size": 256,
        "max_in_flight": 8,
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
