"""SIGTERM and SIGINT (Ctrl-C) at any moment of a training process, inside a file sink's
store included, lose no row that was written: the file holds every record whose write
returned, each once, whole (and at most the record whose write was cut short)."""

from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conformance.known import LONG

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    from pipeline import Pipeline
    from sinks import CsvSink, JsonlSink

    folder, kind, name, moment, at = Path(sys.argv[1]), *sys.argv[2:5], int(sys.argv[5])
    number = getattr(signal, name)
    stores = 0


    class Sink(CsvSink if kind == "csv" else JsonlSink):
        def _store(self, rows):
            global stores
            stores += 1
            if moment == "store" and stores == at:
                os.kill(os.getpid(), number)  # delivered inside this store
            super()._store(rows)


    progress = (folder / "progress").open("r+b", buffering=0)
    sink = Sink(folder / ("out." + kind), mode="w", flush_every=50, flush_seconds=None)
    logger = Pipeline("train").to(sink)
    for i in range(1_000_000):
        logger.write({"i": i, **{f"k{j}": i * j * 0.5 for j in range(30)}})
        progress.seek(0)
        progress.write(i.to_bytes(8, "little", signed=True))  # record i's write returned
        if moment == "between" and i == at:
            os.kill(os.getpid(), number)
        if moment == "timer" and i == 0:
            print("ready", flush=True)
    """
)


def train(
    folder: Path, kind: str, name: str, moment: str, at: int
) -> tuple[int, list[int], str]:
    """Runs the child until the signal stops it; returns its exit status, and the records
    whose write returned (`i` in order) with those the file holds."""
    (folder / "progress").write_bytes((-1).to_bytes(8, "little", signed=True))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder), kind, name, moment, str(at)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if moment == "timer":
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        time.sleep(at / 1000)
        child.send_signal(getattr(signal, name))
    _, errors = child.communicate(timeout=120)
    returned = int.from_bytes((folder / "progress").read_bytes(), "little", signed=True) + 1
    return child.returncode, [returned, *read(folder / f"out.{kind}", kind)], errors


def read(path: Path, kind: str) -> list[int]:
    if kind == "csv":
        with path.open(newline="") as handle:
            return [int(row["i"]) for row in csv.DictReader(handle)]
    return [json.loads(line)["i"] for line in path.read_text().split("\n") if line]


def check(status: int, name: str, result: list[int], errors: str) -> None:
    returned, *stored = result
    assert status == (143 if name == "SIGTERM" else -signal.SIGINT), errors[-2000:]
    assert stored == list(range(len(stored))), "rows doubled, reordered or torn"
    assert len(stored) in (returned, returned + 1), (
        f"{returned} writes returned, the file holds {len(stored)} rows"
    )


@pytest.mark.parametrize(
    ("kind", "name", "at"),
    [("csv", "SIGTERM", 123), ("jsonl", "SIGTERM", 77), ("csv", "SIGINT", 149)],
)
def test_a_signal_between_writes_loses_no_row(
    tmp_path: Path, kind: str, name: str, at: int
) -> None:
    status, result, errors = train(tmp_path, kind, name, "between", at)
    check(status, name, result, errors)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_inside_a_file_sinks_store_loses_no_row(
    tmp_path: Path, kind: str, name: str
) -> None:
    status, result, errors = train(tmp_path, kind, name, "store", 3)
    check(status, name, result, errors)


TRIALS = 12 if LONG else 2


@pytest.mark.parametrize("trial", range(TRIALS))
@pytest.mark.parametrize(("kind", "name"), [("csv", "SIGTERM"), ("jsonl", "SIGINT")])
def test_a_signal_at_a_random_moment_leaves_whole_rows_each_once(
    tmp_path: Path, kind: str, name: str, trial: int
) -> None:
    """Sent from outside after a random delay."""
    delay = random.Random(f"{kind}{name}{trial}").randrange(50, 600)  # milliseconds
    status, result, errors = train(tmp_path, kind, name, "timer", delay)
    check(status, name, result, errors)
