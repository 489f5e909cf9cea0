"""A pipeline shared by actor threads gives the totals of one thread."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pandas as pd

from pipeline import Pipeline
from sinks import CsvSink, MemorySink
from tests.reference import warmup_ema


def test_threads_sharing_a_pipeline_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    threads, per_thread = 4, 5000
    memory = MemorySink()
    raw = CsvSink(tmp_path / "raw.csv", flush_every=97)
    aggregated = Pipeline("agg").aggregate("return", every=100, stats=("count", "sum")).to(memory)
    pipe = Pipeline("shared").smooth("return").to(aggregated, raw)
    start = threading.Barrier(threads)

    def actor(worker: int) -> None:
        start.wait()
        for i in range(per_thread):
            pipe.write({"return": float(i), "worker": worker})

    workers = [threading.Thread(target=actor, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    pipe.close()
    assert sum(r["return_count"] for r in memory.records) == threads * per_thread
    assert all(r["return_count"] == 100 for r in memory.records)
    assert sum(r["return_sum"] for r in memory.records) == threads * sum(range(per_thread))
    frame = pd.read_csv(tmp_path / "raw.csv")
    assert len(frame) == threads * per_thread
    assert frame.groupby("worker")["return"].apply(list).tolist() == [
        [float(i) for i in range(per_thread)]
    ] * threads
    # one record at a time: the file's smoothed column is the EMA of its returns, in its order
    with (tmp_path / "raw.csv").open(newline="") as file:  # floats read back exactly
        rows = list(csv.DictReader(file))
    returns = [float(row["return"]) for row in rows]
    assert [float(row["return_smoothed_0.99"]) for row in rows] == warmup_ema(returns, 0.99)
