"""File sinks meet real storage failures: a full disk, a read-only filesystem, a size limit."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import Pipeline
from pipeline.core.isolation import StoreError
from sinks import CsvSink, JsonlSink, MemorySink


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of our own (root can mount on this machine kind, as in CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_dev_full_does_not_stop_training_and_the_loss_is_reported() -> None:
    healthy = MemorySink()
    pipe = Pipeline("p").to(CsvSink("/dev/full", flush_every=2), healthy)
    with pytest.warns(RuntimeWarning, match="No space left"):
        for i in range(10):
            pipe.write({"i": i})
        pipe.close()
    assert len(healthy.records) == 10
    assert pipe.failures() == [  # the store at write 2, and on close the flush and a retry
        "CsvSink('/dev/full'): 3 errors, 10 records lost "
        "(first error: OSError: [Errno 28] No space left on device)"
    ]


def test_a_full_disk_keeps_whole_rows_and_counts_the_rest(small_disk: Path) -> None:
    path = small_disk / "train.csv"
    sink = CsvSink(path, flush_every=50, max_pending=1000)
    pipe = Pipeline("p").to(sink)
    payload = "x" * 200
    with pytest.warns(RuntimeWarning):
        for i in range(2000):
            pipe.write({"i": i, "payload": payload})
        pipe.close()
    rows = read_rows(path)
    assert [int(r["i"]) for r in rows] == list(range(len(rows)))  # a whole prefix, no tears
    assert 0 < len(rows) < 2000
    assert sink.rows_written == len(rows) and len(rows) + sink.lost == 2000


def test_a_filesystem_turned_read_only_mid_run_then_back(small_disk: Path) -> None:
    path = small_disk / "train.jsonl"
    sink = JsonlSink(path, flush_every=2)
    pipe = Pipeline("p").to(sink)
    pipe.write({"i": 0})  # held: no file handle is open yet, so the remount is allowed
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.warns(RuntimeWarning, match="Read-only file system"):
        for i in range(1, 5):
            pipe.write({"i": i})
    assert path.read_text() == ""
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    pipe.flush()
    pipe.close()
    assert [json.loads(line)["i"] for line in path.read_text().splitlines()] == [0, 1, 2, 3, 4]
    assert sink.lost == 0


def test_a_read_only_directory_is_a_clear_error_at_construction(small_disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(OSError, match="Read-only file system"):
        CsvSink(small_disk / "train.csv")


def test_an_explicit_flush_reports_a_store_failure_to_a_bare_sink() -> None:
    sink = JsonlSink("/dev/full")
    sink.write({"a": 1})
    with pytest.raises(StoreError, match="kept and retried"):
        sink.flush()


def test_a_file_size_limit_leaves_only_whole_rows(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, resource, signal, sys, warnings
        warnings.simplefilter("ignore")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000))
        from pipeline import Pipeline
        from sinks import CsvSink, JsonlSink
        csv_sink = CsvSink(sys.argv[1] + "/run.csv", flush_every=7)
        jsonl_sink = JsonlSink(sys.argv[1] + "/run.jsonl", flush_every=7)
        pipe = Pipeline("p").to(csv_sink, jsonl_sink)
        for i in range(1000):
            pipe.write({"i": i, "value": i / 3})
        pipe.close()
        print(json.dumps({"csv": [csv_sink.rows_written, csv_sink.lost],
                          "jsonl": [jsonl_sink.rows_written, jsonl_sink.lost]}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    counts = json.loads(result.stdout)
    rows = pd.read_csv(tmp_path / "run.csv")
    assert rows["i"].tolist() == list(range(len(rows))) and rows["value"].notna().all()
    assert counts["csv"] == [len(rows), 1000 - len(rows)]
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert [json.loads(line)["i"] for line in lines] == list(range(len(lines)))
    assert counts["jsonl"] == [len(lines), 1000 - len(lines)]
    assert os.path.getsize(tmp_path / "run.csv") <= 5000


# -- a value that cannot be written blocks nothing ------------------------------------------


class NoText:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    def __repr__(self) -> str:
        return "<NoText>"


def test_a_cell_over_the_csv_field_limit_then_a_late_key_loses_no_row(tmp_path: Path) -> None:
    # The late key makes the sink read its own file back (header rewrite): that read once
    # stopped at the csv module's 128 KiB field limit, and every later row was lost.
    path = tmp_path / "a.csv"
    pipe = Pipeline("p", close_at_exit=False).to(CsvSink(path, flush_every=1))
    pipe.write({"step": 0, "hist": np.zeros(30_000)})
    for step in range(1, 1001):
        pipe.write({"step": step, "late": step * 2})
    pipe.close()
    frame = pd.read_csv(path)
    assert frame["step"].tolist() == list(range(1001))
    assert frame["late"].tolist()[1:] == [step * 2 for step in range(1, 1001)]
    assert json.loads(frame["hist"][0]) == [0.0] * 30_000
    assert pipe.failures() == []


@pytest.mark.parametrize("sink_class", [CsvSink, JsonlSink])
def test_unprintable_values_are_written_as_text_and_the_other_rows_as_they_are(
    tmp_path: Path, sink_class: type[CsvSink] | type[JsonlSink]
) -> None:
    path = tmp_path / "rows"
    sink = sink_class(path, flush_every=5)
    huge = 10**5000  # beyond Python's int-to-text digit limit
    for step in range(25):
        record: dict[str, object] = {"step": step}
        if step == 7:
            record["big"] = huge
        if step == 11:
            record["odd"] = NoText()
        sink.write(record)
    sink.close()
    if sink_class is CsvSink:
        rows = read_rows(path)
        cells = {(int(r["step"]), key): r[key] for r in rows for key in ("big", "odd")}
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        cells = {(r["step"], key): r.get(key, "") for r in rows for key in ("big", "odd")}
    assert [int(r["step"]) for r in rows] == list(range(25))
    assert cells[7, "big"] == "1" + "0" * 5000
    assert cells[11, "odd"] == "<NoText>"
    assert sink.lost == 0 and sink.rows_written == 25


def test_batches_into_a_full_disk_are_neither_doubled_nor_miscounted(small_disk: Path) -> None:
    path = small_disk / "train.csv"
    sink = CsvSink(path, flush_every=100, max_pending=100_000)
    pipe = Pipeline("p", close_at_exit=False).to(sink)
    payload = np.array(["x" * 100] * 400, dtype=object)  # 3 batches: twice the disk
    with pytest.warns(RuntimeWarning):
        for batch in range(3):
            steps = np.arange(batch * 400, (batch + 1) * 400)
            pipe.write_batch({"episode": steps, "payload": payload})
        pipe.close()
    episodes = [int(r["episode"]) for r in read_rows(path)]
    assert episodes == list(range(len(episodes)))  # a whole prefix: none doubled, no tears
    assert len(episodes) + sink.lost == 1200
    assert f"{sink.lost} records lost" in pipe.failures()[0]


@pytest.mark.parametrize("sink_class", [CsvSink, JsonlSink])
def test_a_row_lost_before_storage_fails_in_the_same_store_is_not_counted_stored(
    tmp_path: Path, sink_class: type[CsvSink] | type[JsonlSink]
) -> None:
    """A store whose rows go one by one (a key with no text makes its row unwritable, counted
    lost) and whose storage fails at a later row: the rows before are stored, the lost one is
    counted once (lost, not stored too), the rest held; stored + held + lost = written."""

    class NoText:
        def __str__(self) -> str:
            raise RuntimeError("no text")

        __repr__ = __str__

    appends = [0]

    class Flaky(sink_class):  # type: ignore[valid-type,misc]
        def _append(self, text: str | bytes | memoryview) -> None:
            appends[0] += 1
            if appends[0] == 3:  # the row after the lost one
                raise OSError(28, "No space left on device")
            super()._append(text)

    path = tmp_path / "out"
    sink = Flaky(path, flush_every=4, flush_seconds=None)
    lost = pytest.warns(RuntimeWarning, match="could not be written even as text")
    with lost, pytest.raises(StoreError):
        for row in ({"a": 1}, {NoText(): 2}, {"a": 3}, {"a": 4}):
            sink.write(row)
    held = sink.state_dict()["nodes"][0]["file"]["held"]
    assert (sink.rows_written, held, sink.lost) == (2, [{"a": 4}], 1)
    sink.close()
    assert (sink.rows_written, sink.lost) == (3, 1)
    assert len(path.read_bytes().splitlines()) == 3 + (sink_class is CsvSink)  # and a header


@pytest.mark.parametrize("sink_class", [CsvSink, JsonlSink])
def test_a_batch_on_a_filling_disk_stores_the_runs_that_fit_as_rows_do(
    small_disk: Path, sink_class: type[CsvSink] | type[JsonlSink]
) -> None:
    """A batch spanning many `flush_every` runs is stored in one append; when the disk has
    room for only part of it, the runs that fit are stored all the same (as row by row, and
    at close), not one of them lost with the rest."""
    length = 5000
    outcomes = []
    for how in ("rows", "batch"):
        path = small_disk / f"{how}.out"
        sink = sink_class(path, flush_every=100, flush_seconds=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.suppress(StoreError):
                if how == "rows":
                    for index in range(length):
                        with contextlib.suppress(StoreError):
                            sink.write({"x": index / 7, "i": index})
                else:
                    sink.write_batch({"x": np.arange(length) / 7, "i": np.arange(length)})
            at_return = sink.rows_written
            with contextlib.suppress(StoreError):
                sink.close()
        outcomes.append((at_return, sink.rows_written, sink.lost, path.read_bytes()))
        path.unlink()
    assert outcomes[1] == outcomes[0]
    assert 0 < outcomes[0][1] < length and outcomes[0][1] + outcomes[0][2] == length
