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

    python benchmarks/ray_hub.py --thousand [--quick] [--cpus 2] [--json out.json]

A thousand workers, one aggregate (issue 27): 1,000 simulated workers, hosted 250 per Ray
task, each writing 200 episodes (`episode_return`) through its own `hub.sender(worker=i)`;
the hub's pipeline aggregates `episode_return` (mean/std/min/max/median/count) in one window
that `hub.flush()` cuts. For record mode (`Hub(partials=False)`), partial mode (the default)
and partial mode with one relay per node (`Hub(relays=True)`): the hub's CPU time per
record, measured inside the hub's process through `hub.call` from the hub's start to its
last window (`time.process_time`: every thread, Ray's too; `time.thread_time`: the thread
running the hub's calls; "busy": that thread's CPU less its idle rate, measured on the idle
hub for 5 s before, times the run's wall time), the hub's calls, and the window's
statistics against numpy over all records (mean/std/min/max to 1e-12, the median's rank
within the sketch's bound).
Then the latency from a worker's write to the hub's sink (record mode, a sink that notes
each record's arrival) at 8 and 64 senders, p50/p99.
`--quick`: 8 workers, 4 per task, 20 episodes, senders 2 and 4.
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
from pipeline.core.node import Record
from sinks import MemorySink, NullSink
from sinks.base import Sink

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


# -- a thousand workers, one aggregate --------------------------------------------------

THOUSAND_STATS = ("mean", "std", "min", "max", "median", "count")


def thousand_central() -> Pipeline:
    """The hub's pipeline of the thousand-worker benchmark: one window per hub.flush()."""
    return (
        Pipeline("hub")
        .aggregate(r"^episode_return$", stats=THOUSAND_STATS)
        .to(MemorySink())
    )


def episode_returns(worker: int, episodes: int) -> np.ndarray:
    """Worker `worker`'s episode returns: its own mean and spread, seeded."""
    rng = np.random.default_rng(worker)
    return rng.normal(10.0 + worker % 17, 1.0 + worker % 5, size=episodes)


def run_host(senders: list[Any], first: int, episodes: int) -> int:
    """One Ray task hosting many simulated workers: episode by episode, each worker writes
    one record through its own sender; then every sender closes. Returns records lost."""
    returns = [episode_returns(first + i, episodes) for i in range(len(senders))]
    for episode in range(episodes):
        for sender, values in zip(senders, returns, strict=True):
            sender.write({"episode": episode, "episode_return": float(values[episode])})
    for sender in senders:
        sender.close()
    return sum(sender.lost for sender in senders)


def hub_cpu(pipeline: Pipeline) -> tuple[float, float]:
    """The hub process's CPU time so far (every thread: Ray's own too), and that of the thread
    running the hub's calls (runs inside the hub actor)."""
    return time.process_time(), time.thread_time()


def the_window(pipeline: Pipeline) -> dict[str, Any]:
    """The last window the hub's aggregate emitted."""
    sink = pipeline.nodes()[-1]
    assert isinstance(sink, MemorySink)
    return sink.records[-1]


class ArrivalSink(Sink):
    """Notes, for each record holding its write time `t`, how long it took to arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.latencies: list[float] = []

    def write(self, data: Record) -> None:
        self.latencies.append(time.time() - data["t"])


def latency_central() -> Pipeline:
    return Pipeline("hub").to(ArrivalSink())


def latencies(pipeline: Pipeline) -> list[float]:
    sink = pipeline.nodes()[-1]
    assert isinstance(sink, ArrivalSink)
    return sink.latencies


def write_timed(log: Any, n: int) -> None:
    """A worker writing `n` records stamped with their write time, then closing."""
    for step in range(n):
        log.write({"step": step, "t": time.time()})
    log.close()


def thousand(args: argparse.Namespace, ray: Any) -> dict[str, Any]:
    """The thousand-worker benchmark (module docstring); returns its report."""
    from filters.partials import RANK_ERROR
    from pipeline.integrations.ray import Hub

    workers, per_task, episodes = (8, 4, 20) if args.quick else (1000, 250, 200)
    senders_for_latency = (2, 4) if args.quick else (8, 64)
    host = ray.remote(num_cpus=0.01)(run_host)
    values = np.concatenate([episode_returns(i, episodes) for i in range(workers)])
    ordered = np.sort(values)
    report: dict[str, Any] = {"workers": workers, "per_task": per_task, "episodes": episodes,
                              "records": int(values.size), "modes": {}}
    for mode in ("records", "partials", "partials+relays"):
        hub = Hub(thousand_central, partials=mode != "records", relays=mode.endswith("relays"))
        # The idle hub's own CPU (Ray polls in its threads, ~5 ms/s here), to subtract.
        idle = hub.call(hub_cpu)
        idle_wall = time.perf_counter()
        time.sleep(1.0 if args.quick else 5.0)
        start = hub.call(hub_cpu)
        wall = time.perf_counter()
        idle_rate = [(b - a) / (wall - idle_wall) for a, b in zip(idle, start, strict=True)]
        senders = [hub.sender(worker=i) for i in range(workers)]
        lost = ray.get([host.remote(senders[first : first + per_task], first, episodes)
                        for first in range(0, workers, per_task)])
        hub.flush()
        end = hub.call(hub_cpu)
        wall = time.perf_counter() - wall
        cpu, thread_cpu = end[0] - start[0], end[1] - start[1]
        busy = thread_cpu - idle_rate[1] * wall  # the calls' thread, its idle CPU subtracted
        window = hub.call(the_window)
        status = hub.close()
        assert status is not None and sum(lost) == 0, (lost, status)
        scale = float(np.abs(values).max())
        low = np.searchsorted(ordered, window["episode_return_median"], side="left")
        high = np.searchsorted(ordered, window["episode_return_median"], side="right")
        checks = {
            "records": status.records == values.size == status.written,
            "count": window["episode_return_count"] == values.size,
            "min": window["episode_return_min"] == values.min(),
            "max": window["episode_return_max"] == values.max(),
            "mean": abs(window["episode_return_mean"] - np.mean(values)) <= 1e-12 * scale,
            "std": abs(window["episode_return_std"] - np.std(values)) <= 1e-12 * scale,
            "median_rank": bool(low / values.size - RANK_ERROR <= 0.5
                                <= high / values.size + RANK_ERROR),
        }
        checks = {name: bool(held) for name, held in checks.items()}
        report["modes"][mode] = {
            "hub_cpu_s": cpu,
            "hub_cpu_us_per_record": cpu / values.size * 1e6,
            "hub_thread_cpu_us_per_record": thread_cpu / values.size * 1e6,
            "hub_busy_cpu_us_per_record": busy / values.size * 1e6,
            "idle_cpu_ms_per_s": [rate * 1e3 for rate in idle_rate],
            "wall_s": wall,
            "hub_calls": sum(s.batches for s in status.streams.values())
            + len(status.streams),  # + ends
            "mean_error": float(window["episode_return_mean"] - np.mean(values)),
            "std_error": float(window["episode_return_std"] - np.std(values)),
            "median": window["episode_return_median"],
            "numpy_median": float(np.median(values)),
            "median_rank": float((low + high) / 2 / values.size),
            "checks": checks,
        }
    records, partials, relays = (report["modes"][m]["hub_cpu_us_per_record"]
                                 for m in ("records", "partials", "partials+relays"))
    report["cpu_ratio"] = records / partials
    report["cpu_ratio_relays"] = records / relays
    records, partials, relays = (report["modes"][m]["hub_thread_cpu_us_per_record"]
                                 for m in ("records", "partials", "partials+relays"))
    report["thread_cpu_ratio"] = records / partials
    report["thread_cpu_ratio_relays"] = records / relays
    records, partials, relays = (report["modes"][m]["hub_busy_cpu_us_per_record"]
                                 for m in ("records", "partials", "partials+relays"))
    # None: the busy CPU is within the noise of the idle CPU subtracted (at or below zero)
    report["busy_cpu_ratio"] = records / partials if partials > 0 else None
    report["busy_cpu_ratio_relays"] = records / relays if relays > 0 else None
    writer = ray.remote(num_cpus=0.01)(write_timed)
    report["latency"] = {}
    n = 50 if args.quick else 1000
    for count in senders_for_latency:
        hub = Hub(latency_central)
        ray.get([writer.remote(hub.sender(worker=i), n) for i in range(count)])
        seconds = np.array(hub.call(latencies))
        hub.close()
        report["latency"][str(count)] = {
            "p50_ms": float(np.percentile(seconds, 50) * 1e3),
            "p99_ms": float(np.percentile(seconds, 99) * 1e3),
            "records": int(seconds.size),
        }
    report["all_checks"] = all(all(m["checks"].values()) for m in report["modes"].values())
    return report


def print_thousand(report: dict[str, Any]) -> None:
    print(f"{report['workers']} workers ({report['per_task']} per Ray task), "
          f"{report['episodes']} episodes each: {report['records']:,} records")
    print(f"{'mode':<15} {'hub us/rec':>10} {'thread us/rec':>13} {'busy us/rec':>11} "
          f"{'hub CPU s':>9} {'calls':>6}  "
          f"{'mean err':>9} {'std err':>9} {'median rank':>11}  checks")
    for mode, row in report["modes"].items():
        print(f"{mode:<15} {row['hub_cpu_us_per_record']:>10.3f} "
              f"{row['hub_thread_cpu_us_per_record']:>13.3f} "
              f"{row['hub_busy_cpu_us_per_record']:>11.3f} {row['hub_cpu_s']:>9.3f} "
              f"{row['hub_calls']:>6} {row['mean_error']:>9.1e} {row['std_error']:>9.1e} "
              f"{row['median_rank']:>11.4f}  {all(row['checks'].values())}")
    print(f"hub CPU per record, records / partials: {report['cpu_ratio']:.1f}x, "
          f"records / partials with relays: {report['cpu_ratio_relays']:.1f}x; the calls' "
          f"thread alone: {report['thread_cpu_ratio']:.1f}x, "
          f"{report['thread_cpu_ratio_relays']:.1f}x; busy (idle CPU subtracted): "
          f"{_ratio(report['busy_cpu_ratio'])}, {_ratio(report['busy_cpu_ratio_relays'])}")
    for count, row in report["latency"].items():
        print(f"latency write -> hub sink, {count} senders: p50 {row['p50_ms']:.1f} ms, "
              f"p99 {row['p99_ms']:.1f} ms ({row['records']} records)")


def _ratio(ratio: float | None) -> str:
    return "below the idle CPU's noise" if ratio is None else f"{ratio:.1f}x"


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40_000, help="records per worker")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to the local Ray")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--modes", nargs="+", default=["write", "batch"])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--thousand", action="store_true",
                        help="the thousand-worker benchmark (partials vs records, latency)")
    parser.add_argument("--quick", action="store_true", help="--thousand on a tiny size")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from pipeline.integrations.ray import Hub

    temp = tempfile.mkdtemp(prefix="rlpipe-ray-bench-")
    for attempt in range(1, 5):  # a busy machine can time Ray's own startup out
        try:
            ray.init(
                address="local",  # a Ray of its own, never one already running here
                num_cpus=args.cpus,
                include_dashboard=False,
                _temp_dir=temp,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
            break
        except Exception:
            ray.shutdown()
            if attempt == 4:
                raise
            time.sleep(5 * attempt)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hub imports nothing
    if args.thousand:
        try:
            report = thousand(args, ray)
        finally:
            ray.shutdown()
        report["command"] = "python benchmarks/ray_hub.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        report["meta"] = {"python": platform.python_version(), "ray": ray.__version__,
                          "cpus": args.cpus, "machine_cpus": os.cpu_count()}
        print_thousand(report)
        out = args.json or (Path(__file__).resolve().parent / "results"
                            / time.strftime("ray_hub_thousand-%Y%m%d-%H%M%S.json"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
        return report
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
    return None


if __name__ == "__main__":
    main()
