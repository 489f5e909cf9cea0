"""SIGTERM or Ctrl-C while a file sink stores its held rows loses none and doubles none: the
signal takes effect once the store is over, and the rows still held are stored at exit.

Each case runs a child process that writes 30-key records, row by row or as batches of
numeric columns (which the fast path holds and stores as blocks), to
`Pipeline("t").to(CsvSink(out, mode="w", flush_every=1000, flush_seconds=None))` (stores by
count only: with the default 2 s, a busy machine made the second store come early, by time,
at another row); the sink signals its own
process from inside its second store, at a given step of it (before the rows are written,
after they are written, or half-way through the append), so the signal lands in the store
window every time."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pipeline import Pipeline
    from sinks import CsvSink

    # a suite run in the background may hand down an ignored SIGINT: Ctrl-C as in a shell
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out, signum, step, how = sys.argv[1], getattr(signal, sys.argv[2]), sys.argv[3], sys.argv[4]

    class SignalledCsvSink(CsvSink):
        stores = 0

        def _store(self, rows):
            SignalledCsvSink.stores += 1
            second = SignalledCsvSink.stores == 2
            if second and step == "before":
                os.kill(os.getpid(), signum)
            super()._store(rows)
            if second and step == "after":
                os.kill(os.getpid(), signum)

        def _append(self, text):
            if SignalledCsvSink.stores == 2 and step == "midway":
                half = len(text) // 2
                super()._append(text[:half])
                os.kill(os.getpid(), signum)
                super()._append(text[half:])
            else:
                super()._append(text)

    logger = Pipeline("t").to(
        SignalledCsvSink(out, mode="w", flush_every=1000, flush_seconds=None)
    )
    if how == "rows":
        for n in range(5000):
            logger.write({"step": n, **{f"k{i}": n * 100 + i for i in range(29)}})
    else:  # numeric columns: held and stored as blocks on the fast path
        import numpy as np

        for start in range(0, 5000, 500):
            steps = np.arange(start, start + 500)
            logger.write_batch({"step": steps, **{f"k{i}": steps * 0.5 + i for i in range(29)}})
    logger.close()
    """
)

ROWS_WRITTEN = 2000
"""The write that starts the second store is the 2000th; the signal ends the loop there."""


CELLS = {
    "rows": lambda n, i: str(n * 100 + i),
    "batch": lambda n, i: repr(n * 0.5 + i),
}
"""What the child writes in column k<i> of row n, as the CSV holds it."""


@pytest.mark.parametrize("how", ["rows", "batch"])
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("step", ["before", "midway", "after"])
def test_a_signal_during_a_store_loses_and_doubles_no_row(
    tmp_path: Path, signame: str, step: str, how: str
) -> None:
    out = tmp_path / "train.csv"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), signame, step, how],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if signame == "SIGTERM":
        assert child.returncode == 128 + signal.SIGTERM, child.stderr  # rlpipe's SystemExit
    else:
        assert "KeyboardInterrupt" in child.stderr, child.stderr
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == list(range(ROWS_WRITTEN))
    assert all(
        row == {"step": str(n), **{f"k{i}": CELLS[how](n, i) for i in range(29)}}
        for n, row in enumerate(rows)
    )
