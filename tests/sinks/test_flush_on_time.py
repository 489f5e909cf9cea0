"""Held rows reach the file within `flush_seconds` of being written, with no further call."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline import Pipeline
from sinks import CsvSink, JsonlSink, flusher
from sinks.file import BufferedFileSink
from tests.conftest import FakeClock


def wait_for_lines(path: Path, count: int, timeout: float) -> float:
    """Seconds until `path` has `count` lines; fails after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if path.read_bytes().count(b"\n") >= count:
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"{path} did not get {count} lines within {timeout} s")


class SeenClock(FakeClock):
    """A FakeClock that notes the times the flusher thread read from it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_by_flusher: list[float] = []
        self.looked = threading.Condition()

    def __call__(self) -> float:
        now = self.now
        if threading.current_thread().name == "rlpipe-flusher":
            with self.looked:
                self.seen_by_flusher.append(now)
                self.looked.notify_all()
        return now

    def wait_for_a_look_at(self, now: float, seconds: float = 60.0) -> None:
        """Waits (bounded, generously) until the flusher thread read `now` or later."""
        with self.looked:
            seen = self.looked.wait_for(
                lambda: any(t >= now for t in self.seen_by_flusher), timeout=seconds
            )
        assert seen, f"the flusher thread did not look at the clock within {seconds} s"


def test_a_lone_row_is_in_the_csv_within_three_seconds_with_default_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sink's clock is moved by hand, so that a busy machine cannot make the row look
    # early or late; the flusher thread's naps are noted, to bound the delay it adds.
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(flusher, "time", SimpleNamespace(sleep=nap))
    clock = SeenClock()
    path = tmp_path / "train.csv"
    sink = CsvSink(path)
    sink._clock = clock  # CsvSink takes no clock= (BufferedFileSink does); it holds no row yet
    assert sink.flush_seconds == 2.0  # the default
    logger = Pipeline("train", close_at_exit=False).to(sink)
    written_at = clock.now
    logger.write({"step": 1, "return": 0.5})
    clock.advance(1.99)
    clock.wait_for_a_look_at(written_at + 1.99)
    assert path.read_text() == ""  # the flusher saw the row 1.99 s old: held, not written
    clock.now = written_at + 2.0  # flush_seconds since the write: due, with no further call
    wait_for_lines(path, 2, timeout=60.0)
    with path.open(newline="") as handle:
        assert list(csv.DictReader(handle)) == [{"step": "1", "return": "0.5"}]
    # stored by the flusher once due; it never napped longer than 1 s between two looks, so
    # with the real clock the row is in the file within 3 s of its write
    assert naps and max(naps) <= 1.0
    logger.close()


def test_a_run_that_goes_quiet_shows_its_last_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    sink = JsonlSink(path, flush_seconds=0.2)
    for step in range(5):
        sink.write({"step": step})
    wait_for_lines(path, 5, timeout=60.0)  # the real clock: 0.2 s, or more on a busy machine
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [
        0, 1, 2, 3, 4,
    ]
    sink.close()


@pytest.mark.parametrize("sink_class", [CsvSink, JsonlSink])
def test_rows_written_while_the_flusher_stores_are_neither_lost_nor_doubled(
    tmp_path: Path, sink_class: type[BufferedFileSink]
) -> None:
    path = tmp_path / f"rows.{sink_class.__name__}"
    sink = sink_class(path, flush_every=1_000_000, flush_seconds=0.0005)
    rows = 20_000
    for step in range(rows):
        sink.write({"step": step, "late": step} if step > rows // 2 else {"step": step})
        if step % 1000 == 0:
            time.sleep(0.002)  # let the flusher in mid-stream
    sink.close()
    if sink_class is CsvSink:
        with path.open(newline="") as handle:
            steps = [int(row["step"]) for row in csv.DictReader(handle)]
    else:
        steps = [json.loads(line)["step"] for line in path.read_text().splitlines()]
    assert steps == list(range(rows))
    assert sink.rows_written == rows


def test_no_thread_is_left_once_every_file_sink_is_closed(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import threading, time
        from sinks import CsvSink
        sinks = [CsvSink({str(tmp_path)!r} + f"/{{i}}.csv") for i in range(3)]
        for sink in sinks:
            sink.write({{"a": 1}})
        print(sum(t.name == "rlpipe-flusher" for t in threading.enumerate()))
        for sink in sinks:
            sink.close()
        # the thread ends at its next look (within IDLE_WAKE, 0.5 s; later on a busy machine)
        deadline = time.monotonic() + 60.0
        while any(t.name == "rlpipe-flusher" for t in threading.enumerate()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        print(sum(t.name == "rlpipe-flusher" for t in threading.enumerate()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=180
    )
    assert result.stdout.split() == ["1", "0"]


def test_a_sink_without_flush_seconds_waits_for_flush_every_or_close(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    sink = CsvSink(path, flush_seconds=None)
    sink.write({"a": 1})
    time.sleep(0.7)
    assert path.read_text() == ""
    sink.close()
    assert path.read_bytes() == b"a\r\n1\r\n"


def test_close_waits_for_a_store_the_flusher_thread_is_doing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    append = BufferedFileSink._append
    storing = threading.Event()

    def slow_in_the_flusher(self: BufferedFileSink, text: str) -> None:
        if threading.current_thread().name == "rlpipe-flusher":
            storing.set()
            time.sleep(0.5)  # a slow disk: the flusher is mid-store when close() comes
        append(self, text)

    monkeypatch.setattr(BufferedFileSink, "_append", slow_in_the_flusher)
    path = tmp_path / "a.jsonl"
    sink = JsonlSink(path, flush_every=10**6, flush_seconds=0.05)
    for step in range(3):
        sink.write({"step": step})
    assert storing.wait(60.0)  # the flusher has taken the rows and is storing them
    sink.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [0, 1, 2]
    assert sink.lost == 0
