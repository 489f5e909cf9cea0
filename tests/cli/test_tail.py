"""`rlpipe tail`: the latest values of files that grow while it watches.

Files are written by the real CsvSink/JsonlSink (flushed after each record), including the
CsvSink's atomic rewrite with a wider header when a key first appears late; the command runs
both in-process (next to a writer thread) and as a process stopped with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import io
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.cli import main as rlpipe
from pipeline.cli.tail import DelimitedFollower, JsonlFollower, Tail, follow, format_value, main
from sinks import CsvSink, JsonlSink


def test_a_csv_follower_reads_only_new_rows_and_survives_a_wider_header(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    sink = CsvSink(path, flush_every=1)
    follower = DelimitedFollower(path)
    assert not follower.poll() and follower.rows == 0  # empty file: nothing yet

    sink.write({"steps": 10, "episode_return": 1.5})
    assert follower.poll()
    assert follower.rows == 1 and follower.latest == {"steps": "10", "episode_return": "1.5"}
    assert not follower.poll()  # nothing new

    sink.write({"steps": 20, "episode_return": 2.5})
    assert follower.poll() and follower.rows == 2 and follower.latest["steps"] == "20"

    sink.write({"steps": 30, "episode_return": 3.5, "loss": 0.25})  # rewrites the header
    assert follower.poll()
    assert follower.rows == 3
    assert follower.keys == ["steps", "episode_return", "loss"]
    assert follower.latest == {"steps": "30", "episode_return": "3.5", "loss": "0.25"}

    sink.write({"steps": 40, "episode_return": None})  # an empty cell keeps the last value
    assert follower.poll()
    assert follower.latest == {"steps": "40", "episode_return": "3.5", "loss": "0.25"}
    assert follower.last_keys == {"steps"}
    sink.close()


def test_a_row_still_being_written_waits_for_its_line_end(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_bytes(b'step,note\r\n1,"two\r\nlines"\r\n2,torn')
    follower = DelimitedFollower(path)
    follower.poll()
    assert follower.rows == 1 and follower.latest == {"step": "1", "note": "two\r\nlines"}
    with path.open("ab") as handle:
        handle.write(b' row\r\n3,"open quote\r\n')
    follower.poll()
    assert follower.rows == 2 and follower.latest["note"] == "torn row"
    with path.open("ab") as handle:
        handle.write(b'closed"\r\n')
    follower.poll()
    assert follower.rows == 3 and follower.latest["note"] == "open quote\r\nclosed"


def test_a_truncated_or_replaced_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    with CsvSink(path) as sink:
        for i in range(5):
            sink.write({"step": i})
    follower = DelimitedFollower(path)
    follower.poll()
    assert follower.rows == 5
    with CsvSink(path, mode="w") as sink:  # a new run over the old file
        sink.write({"step": 100, "return": 7})
    assert follower.poll()
    assert follower.rows == 1 and follower.latest == {"step": "100", "return": "7"}


def test_a_jsonl_follower_flattens_and_skips_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    sink = JsonlSink(path, flush_every=1)
    follower = JsonlFollower(path)
    sink.write({"step": 1, "eval": {"return": 10.0}})
    follower.poll()
    assert follower.latest == {"step": "1", "eval/return": "10.0"}
    with path.open("a") as handle:
        handle.write("not json\n")
    sink.write({"step": 2, "loss": float("nan")})
    with path.open("a") as handle:
        handle.write('{"step": 3')  # torn
    follower.poll()
    assert follower.rows == 2
    assert follower.latest == {"step": "2", "eval/return": "10.0", "loss": "NaN"}
    sink.close()


def test_a_run_folder_picks_up_files_that_appear_later(tmp_path: Path) -> None:
    run = tmp_path / "run"
    tail = Tail(run)
    assert not tail.poll() and tail.render() == f"waiting for {run} ..."
    run.mkdir()
    with CsvSink(run / "eval.csv") as sink:
        sink.write({"train_steps": 100, "episode_return_mean": 42.5})
    assert tail.poll()
    with CsvSink(run / "train.csv") as sink:
        sink.write({"steps": 120, "episode_return": 50.0})
    assert tail.poll()
    view = tail.render(now=time.time())
    assert view.index("train.csv: 1 row") < view.index("eval.csv: 1 row")
    assert "episode_return_mean  42.5" in view and "steps           120" in view


def test_a_folder_of_runs_shows_each_run_including_spinning_up_progress_txt(
    tmp_path: Path,
) -> None:
    (tmp_path / "ppo_s0").mkdir()
    (tmp_path / "ppo_s0" / "progress.txt").write_text(
        "Epoch\tAverageEpRet\tTotalEnvInteracts\n0\t-120.5\t4000\n1\t-80.25\t8000\n"
    )
    with JsonlSink(tmp_path / "sac_s0" / "metrics.jsonl") as sink:
        sink.write({"actor_steps": 50, "episode_return": 3.5})
    tail = Tail(tmp_path)
    assert tail.poll()
    view = tail.render()
    assert view.index("ppo_s0/progress.txt: 2 rows") < view.index("sac_s0/metrics.jsonl: 1 row")
    assert "AverageEpRet       -80.25" in view and "TotalEnvInteracts  8000" in view
    assert "episode_return  3.5" in view


def test_values_are_shown_briefly() -> None:
    assert format_value("120") == "120"
    assert format_value("120.0") == "120"
    assert format_value("3.14159265358979") == "3.14159"
    assert format_value("NaN") == "nan"
    assert format_value("[1, 2]") == "[1, 2]"


def test_keys_selects_what_is_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "train.csv"
    with CsvSink(path) as sink:
        sink.write({"steps": 5, "episode_return": 9.5, "loss": 0.1})
    assert rlpipe(["tail", str(path), "--once", "--keys", "return|steps"]) == 0
    out = capsys.readouterr().out
    assert "train.csv: 1 row" in out and "episode_return  9.5" in out and "loss" not in out


def test_keys_matching_no_key_is_an_error_not_empty_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "train.csv"
    with CsvSink(path) as sink:
        sink.write({"steps": 5, "episode_return": 9.5})
    assert rlpipe(["tail", str(path), "--once", "--keys", "nomatch"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "rlpipe tail: --keys 'nomatch' matches none of the keys: steps, episode_return\n"
    )
    assert "train.csv: 1 row" in captured.out and "(no key matches --keys nomatch)" in captured.out


def test_keys_on_files_without_rows_yet_is_no_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "train.csv").touch()
    assert rlpipe(["tail", str(tmp_path), "--once", "--keys", "return"]) == 0
    assert "train.csv: 0 rows" in capsys.readouterr().out


def test_once_on_a_missing_path_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nothing"), "--once"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_a_timeout_that_ends_before_the_path_appears_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing"
    assert main([str(missing), "--timeout", "0"]) == 2
    captured = capsys.readouterr()
    assert f"waiting for {missing} ..." in captured.out
    assert captured.err == f"rlpipe tail: {missing}: no such file or folder (waited 0 s)\n"


def test_follow_redraws_in_place_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    with CsvSink(path) as sink:
        sink.write({"steps": 1})
    out = io.StringIO()
    shown = follow(Tail(path), out, interval=0.001, max_updates=3, redraw=True)
    assert shown == 3 and out.getvalue().count("\x1b[H\x1b[J") == 3


class Views(io.StringIO):
    """What `rlpipe tail` prints (not a terminal: a view per change, blank-line separated),
    with a way to wait until it printed a given number of views."""

    def __init__(self) -> None:
        super().__init__()
        self.printed = threading.Condition()

    def write(self, text: str) -> int:
        with self.printed:
            written = super().write(text)
            self.printed.notify_all()
        return written

    def views(self) -> list[str]:
        text = self.getvalue()
        return text.split("\n\n") if text else []

    def wait_for(self, count: int, seconds: float = 120.0) -> None:
        with self.printed:
            shown = self.printed.wait_for(lambda: len(self.views()) >= count, timeout=seconds)
        assert shown, f"tail printed {len(self.views())} views, not {count}, in {seconds} s"


def test_tail_shows_the_latest_values_while_a_writer_thread_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    sink = CsvSink(run / "train.csv", flush_every=1)
    sink.write({"steps": 0, "episode_return": 0.0})
    out = Views()
    monkeypatch.setattr(sys, "stdout", out)
    problems: list[BaseException] = []

    def writer() -> None:
        # Each row once tail showed the one before: every row is a change of its own, however
        # late a busy machine runs either thread.
        try:
            for i in range(1, 6):
                out.wait_for(i)
                sink.write({"steps": 100 * i, "episode_return": 10.0 * i})
            out.wait_for(6)
            sink.write({"steps": 600, "episode_return": 61.5, "loss": 0.125})  # a wider header
        except BaseException as error:
            problems.append(error)
        finally:
            sink.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        # 1 first view + 6 changes; the timeout only bounds a tail that misses a change
        status = main([str(run), "--interval", "0.01", "--max-updates", "7", "--timeout", "300"])
    finally:
        thread.join()
    assert not problems, problems
    assert status == 0
    views = out.views()
    assert len(views) == 7
    assert "train.csv: 1 row" in views[0] and "episode_return  0" in views[0]
    last = views[-1]
    assert "train.csv: 7 rows" in last
    assert "steps           600" in last
    assert "episode_return  61.5" in last
    assert "loss            0.125" in last


def test_ctrl_c_stops_a_running_tail_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    sink = CsvSink(path, flush_every=1)
    sink.write({"steps": 1, "episode_return": 1.0})
    # Run the command as a user would, with Python's own Ctrl-C handler (a process started in
    # the background by a non-interactive shell inherits an ignored SIGINT otherwise).
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, "tail", str(path), "--interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output = process.stdout
    assert output is not None

    def read() -> None:
        for line in output:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 120  # a busy machine may be slow to start the process
        while time.monotonic() < deadline:
            try:
                if text in lines.get(timeout=0.1):
                    return
            except queue.Empty:
                continue
        process.kill()
        raise AssertionError(f"tail never showed {text!r}")

    try:
        wait_for("episode_return  1")
        sink.write({"steps": 2, "episode_return": 77.25})
        wait_for("episode_return  77.25")
        sink.write({"steps": 3, "episode_return": 80.0, "entropy": 0.5})
        wait_for("entropy         0.5")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0
        assert process.stderr is not None and "Traceback" not in process.stderr.read()
    finally:
        sink.close()
        if process.poll() is None:
            process.kill()
        process.wait()
