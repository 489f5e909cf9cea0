"""Runs never mix in one file, and a file has one open writer.

- A new file sink (`mode="w"`, the default) replaces an earlier run's file at its first
  store, warning once with the file's name and how to append or resume; a state loaded
  before the first write resumes instead. `mode="a"` appends.
- A second sink on the same file while the first is open is refused, whatever the name
  (a symlink, `..`, a hard link), in this process and in another one; closing releases it.
- A directory or an empty path is refused when the sink is made.
- A storage failure met outside a write (a flush, the flusher thread, close) is listed by
  `Pipeline.failures()`; the warning says what happens to the records.
- Unequal columns sent straight to a sink's `write_batch` raise, and the sink is not failed.
"""

from __future__ import annotations

import csv
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from pipeline import Pipeline
from sinks import CsvSink, JsonlSink
from sinks.file import FileBusyError


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("make", [CsvSink, JsonlSink])
def test_a_new_sink_replaces_an_earlier_runs_file_at_its_first_store_and_says_so(
    tmp_path: Path, make: type[CsvSink]
) -> None:
    path = tmp_path / "train.log"
    with make(path) as sink:
        sink.write({"run": 1})
    earlier = path.read_bytes()
    sink = make(path, flush_every=2, flush_seconds=None)
    assert path.read_bytes() == earlier  # nothing stored yet: nothing replaced yet
    sink.write({"run": 2})
    with pytest.warns(UserWarning) as caught:
        sink.write({"run": 2})
        sink.write({"run": 2})
        sink.close()
    (warning,) = caught
    message = str(warning.message)
    assert str(path) in message and "mode='a'" in message and "load_state_dict" in message
    text = path.read_text()
    assert "1" not in text and text.count("2") == 3


def test_mode_a_appends(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    with CsvSink(path) as sink:
        sink.write({"run": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with CsvSink(path, mode="a") as sink:
            sink.write({"run": 2})
    assert read(path) == [{"run": "1"}, {"run": "2"}]


def test_a_new_sink_that_stores_nothing_still_replaces_the_file_on_close(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("run\r\n1\r\n")
    with pytest.warns(UserWarning, match="replaced"):
        CsvSink(path).close()
    assert path.read_bytes() == b""


def test_a_state_loaded_before_the_first_write_resumes_even_after_a_replacing_run(
    tmp_path: Path,
) -> None:
    whole = tmp_path / "whole.csv"
    with CsvSink(whole) as sink:
        for step in range(10):
            sink.write({"step": step})

    path = tmp_path / "train.csv"
    path.write_text("old\r\nrun\r\n")
    with pytest.warns(UserWarning, match="replaced"):
        first = Pipeline("t", close_at_exit=False).to(CsvSink(path, flush_every=2))
        for step in range(6):
            first.write({"step": step})
        checkpoint = pickle.dumps(first.state_dict())
        first.write({"step": 6})
        first.close()  # as if the process went away here

    again = Pipeline("t", close_at_exit=False).to(CsvSink(path, flush_every=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # resuming replaces nothing
        again.load_state_dict(pickle.loads(checkpoint))
        for step in range(6, 10):
            again.write({"step": step})
        again.close()
    assert path.read_bytes() == whole.read_bytes()


def test_a_second_sink_on_an_open_file_is_refused_by_any_name_until_the_first_closes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs" / "train.csv"
    first = CsvSink(path)
    (tmp_path / "link.csv").symlink_to(path)
    os.link(path, tmp_path / "hard.csv")
    names = [path, tmp_path / "runs" / ".." / "runs" / "train.csv", tmp_path / "link.csv"]
    for name in names:
        with pytest.raises(FileBusyError, match="close that sink first") as refused:
            JsonlSink(name)
        assert str(name) in str(refused.value)
    with pytest.raises(FileBusyError, match="one open writer per file"):
        CsvSink(tmp_path / "hard.csv")  # another name of the same file: its lock tells
    first.write({"run": 1})
    first.close()
    with pytest.warns(UserWarning, match="replaced"), CsvSink(tmp_path / "link.csv") as second:
        second.write({"run": 2})
    assert read(path) == [{"run": "2"}]


def test_a_file_open_in_another_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from sinks import CsvSink
                sink = CsvSink({str(path)!r})
                print("open", flush=True)
                sys.stdin.readline()
                sink.close()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with pytest.raises(FileBusyError, match="another process"):
            CsvSink(path)
    finally:
        holder.communicate("\n", timeout=60)
    CsvSink(path).close()  # released with the other process's close


@pytest.mark.parametrize("make", [CsvSink, JsonlSink])
def test_a_directory_or_an_empty_path_is_refused(tmp_path: Path, make: type[CsvSink]) -> None:
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        make(tmp_path / "runs")
    with pytest.raises(ValueError, match="path must be a file's path"):
        make("")
    with pytest.raises(ValueError, match="path must be a file's path"):
        make(CsvSink)  # type: ignore[arg-type]


def test_a_storage_failure_met_by_a_flush_is_listed_by_failures(tmp_path: Path) -> None:
    sink = CsvSink("/dev/full", flush_every=100, flush_seconds=None)
    pipe = Pipeline("p", close_at_exit=False).to(sink)
    pipe.write({"a": 1})
    with pytest.warns(RuntimeWarning, match="No space left"):
        pipe.flush()  # not a write: no Dispatcher meets the error
    (line,) = pipe.failures()
    assert line.startswith("CsvSink('/dev/full'): 1 errors, 0 records lost, 1 held for retry")
    with pytest.warns(RuntimeWarning, match="closed with failures"):
        pipe.close()
    (line,) = pipe.failures()
    assert "1 records lost" in line


def test_a_storage_failure_on_the_flusher_thread_is_warned_and_listed() -> None:
    sink = CsvSink("/dev/full", flush_every=100, flush_seconds=None)
    pipe = Pipeline("p", close_at_exit=False).to(sink)
    pipe.write({"a": 1})
    with pytest.warns(RuntimeWarning) as caught:
        sink.flush_on_time()  # what the flusher thread calls when the rows are due
        sink.flush_on_time()
    (warning,) = caught
    assert "holds the records it could not store and retries" in str(warning.message)
    assert "held for retry" in pipe.failures()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.close()


def test_the_warning_says_a_refused_record_is_lost() -> None:
    class Refuses(JsonlSink):
        def write(self, data: object) -> None:
            raise TypeError("not a record I take")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = Pipeline("p", close_at_exit=False).to(Refuses("/dev/null"))
        pipe.write({"a": 1})
        pipe.close()
    assert "the record it refused is lost" in str(caught[0].message)


def test_unequal_columns_sent_straight_to_a_sink_raise_and_leave_it_working(
    tmp_path: Path,
) -> None:
    path = tmp_path / "train.csv"
    sink = CsvSink(path)
    with pytest.raises(ValueError, match="equal length"):
        sink.write_batch({"a": [1, 2], "b": [1]})
    assert sink.storage_failures is None and not sink.counts
    sink.write_batch({"a": [1, 2], "b": [3, 4]})
    sink.close()
    assert read(path) == [{"a": "1", "b": "3"}, {"a": "2", "b": "4"}]
    assert sink.storage_failures is None


def test_a_sink_told_to_continue_its_file_appends_under_the_earlier_header(
    tmp_path: Path,
) -> None:
    """`continue_file()` (a restarted Ray hub calls it on the sinks it rebuilds) makes a new
    sink append to the file an earlier process of the same run wrote, keeping its columns;
    after the first store it changes nothing."""
    path = tmp_path / "run.csv"
    with CsvSink(path) as first:
        first.write({"step": 0, "loss": 1.5})
    sink = CsvSink(path, fieldnames=["extra"])
    sink.continue_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is replaced, so nothing is said
        sink.write({"loss": 0.5, "step": 1})
        sink.close()
    assert read(path) == [
        {"step": "0", "loss": "1.5", "extra": ""},
        {"step": "1", "loss": "0.5", "extra": ""},
    ]
    with CsvSink(path, mode="a") as late:
        late.write({"step": 2})
        late.flush()
        late.continue_file()  # already storing into its own file: nothing changes
        late.write({"step": 3})
    assert [row["step"] for row in read(path)] == ["0", "1", "2", "3"]


def test_appending_with_a_declared_column_the_file_lacks_widens_its_header(
    tmp_path: Path,
) -> None:
    """`fieldnames` naming a column the earlier header lacks: the header is rewritten with it
    at the first store, so every cell stays under its own column."""
    path = tmp_path / "run.csv"
    with CsvSink(path) as first:
        first.write({"step": 0, "loss": 1.5})
    with CsvSink(path, mode="a", fieldnames=["extra"]) as sink:
        sink.write({"step": 1, "loss": 0.5, "extra": 7})
    assert read(path) == [
        {"step": "0", "loss": "1.5", "extra": ""},
        {"step": "1", "loss": "0.5", "extra": "7"},
    ]
