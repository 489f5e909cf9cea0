"""What survives: SIGKILL mid-run, SIGTERM, Ctrl-C and a program that never calls close()."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from sinks import CsvSink, JsonlSink

WRITER = textwrap.dedent(
    """
    import sys, time
    from pipeline import Pipeline
    from sinks import CsvSink, JsonlSink
    out = sys.argv[1]
    pipe = Pipeline("train").to(CsvSink(out + "/run.csv", flush_every=1),
                                JsonlSink(out + "/run.jsonl", flush_every=1))
    i = 0
    while True:
        pipe.write({"i": i, "return": i * 0.5, "note": "row, with \\"quotes\\"\\n" * (i % 3)})
        print(i, flush=True)  # acknowledged: flushed under flush_every=1
        i += 1
    """
)


def test_every_flushed_row_survives_sigkill_and_the_file_resumes(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acked = -1
    while acked < 300:
        acked = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait()
    frame = pd.read_csv(tmp_path / "run.csv")
    assert frame["i"].tolist()[: acked + 1] == list(range(acked + 1))
    with (tmp_path / "run.csv").open(newline="") as handle:
        assert all(len(row) == 3 for row in csv.reader(handle))
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert [json.loads(line)["i"] for line in lines[: acked + 1]] == list(range(acked + 1))
    # resume: the files take more rows and stay readable
    with CsvSink(tmp_path / "run.csv") as sink, JsonlSink(tmp_path / "run.jsonl") as jsonl:
        sink.write({"i": -1})
        jsonl.write({"i": -1})
    assert pd.read_csv(tmp_path / "run.csv")["i"].iloc[-1] == -1
    assert json.loads((tmp_path / "run.jsonl").read_text().splitlines()[-1]) == {"i": -1}


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pipeline import Pipeline
    from sinks import CsvSink
    pipe = (Pipeline("eval").aggregate("return", every=1000, stats=("mean", "count"))
            .to(CsvSink(sys.argv[1] + "/eval.csv")))
    for i in range(10):
        pipe.write({"return": float(i), "steps": i})
    print("ready", flush=True)
    if sys.argv[2] == "exit":
        sys.exit(0)   # never calls close()
    time.sleep(60)
    """
)


def like_a_terminal() -> None:
    """Run in the child before it starts: SIGINT back to its default, as in a program started
    from a terminal (a suite run in the background, `(pytest &)`, under CI or nohup, hands its
    children an ignored SIGINT, and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ignoring_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("how", "expected_status"),
    [("exit", 0), (signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)],
)
def test_the_last_aggregate_window_is_flushed_on_exit_and_signals(
    tmp_path: Path, how: object, expected_status: int
) -> None:
    mode = "exit" if how == "exit" else "wait"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=like_a_terminal,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    if isinstance(how, signal.Signals):
        child.send_signal(how)
    assert child.wait(timeout=30) == expected_status
    (row,) = pd.read_csv(tmp_path / "eval.csv").to_dict("records")
    assert row == {"return_mean": 4.5, "return_count": 10, "steps": 9}


def test_a_program_started_with_sigint_ignored_keeps_ignoring_it_and_sigterm_still_flushes(
    tmp_path: Path,
) -> None:
    """rlpipe takes SIGTERM only: a program that ignores SIGINT (started in the background by a
    shell, or under nohup) is not stopped by Ctrl-C because of rlpipe, and SIGTERM still closes
    its pipelines. An ignored signal is discarded when sent, so the SIGTERM sent after it is
    the one that ends the child."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignoring_sigint,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGINT)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    (row,) = pd.read_csv(tmp_path / "eval.csv").to_dict("records")
    assert row == {"return_mean": 4.5, "return_count": 10, "steps": 9}


ORDER = textwrap.dedent(
    """
    import atexit
    from pipeline import Pipeline
    from pipeline.core import lifecycle
    from sinks.base import Sink

    class Announcing(Sink):
        def write(self, data):
            print("record", dict(data), flush=True)
        def on_close(self):
            print("sink closed", flush=True)

    early = Pipeline("early").to(Announcing())        # rlpipe's exit handler registered here
    late = Pipeline("late").aggregate("x", every=100, stats=("mean",)).to(Announcing())
    atexit.register(print, "client stopped", flush=True)  # a client's own handler, made later
    lifecycle.close_before_exit_handlers_so_far()
    late.write({"x": 1.0})
    early.close()
    """
)


def test_pipelines_can_be_closed_before_exit_handlers_registered_after_them() -> None:
    result = subprocess.run(
        [sys.executable, "-c", ORDER], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.splitlines() == [
        "sink closed",  # early.close()
        "record {'x_mean': 1.0}",  # at exit: the aggregate's window, before the client's handler
        "sink closed",
        "client stopped",
    ]


def run_until_sigterm(code: str) -> subprocess.CompletedProcess[str]:
    """Runs `code`, which prints "ready" once set up, then sends it SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_sigterm_closes_a_pipeline_made_off_the_main_thread(tmp_path: Path) -> None:
    result = run_until_sigterm(
        f"""
        import threading, time
        from pipeline import Pipeline
        from sinks import CsvSink
        def build():  # e.g. an actor thread: the pipeline is made and written off main
            global logger
            logger = Pipeline("t").to(CsvSink({str(tmp_path / "a.csv")!r}, flush_seconds=None))
            for step in range(100):
                logger.write({{"step": step}})
        thread = threading.Thread(target=build)
        thread.start()
        thread.join()
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert pd.read_csv(tmp_path / "a.csv")["step"].tolist() == list(range(100))


def test_first_used_off_the_main_thread_rlpipe_says_it_cannot_take_sigterm() -> None:
    code = textwrap.dedent(
        """
        import threading, warnings
        warnings.simplefilter("always")
        def build():
            from pipeline import Pipeline
            from sinks import MemorySink
            Pipeline("t").to(MemorySink())
        thread = threading.Thread(target=build)
        thread.start()
        thread.join()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "could not take SIGTERM" in result.stderr and "take_sigterm()" in result.stderr


def test_a_sink_alone_is_closed_on_sigterm(tmp_path: Path) -> None:
    result = run_until_sigterm(
        f"""
        import time
        from sinks import JsonlSink
        sink = JsonlSink({str(tmp_path / "a.jsonl")!r}, flush_seconds=None)
        for step in range(10):
            sink.write({{"step": step}})
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(10))


def test_with_nothing_open_sigterm_does_what_its_default_does() -> None:
    result = run_until_sigterm(
        """
        import time
        import pipeline, sinks
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    assert result.returncode == -signal.SIGTERM


def test_pipelines_closed_through_an_outer_one_leave_the_exit_registry() -> None:
    from pipeline import Pipeline
    from pipeline.core import lifecycle
    from sinks import MemorySink

    before = len(lifecycle._open)
    outer = Pipeline("outer").to(*(Pipeline(f"inner{i}").to(MemorySink()) for i in range(20)))
    assert len(lifecycle._open) >= before + 21
    outer.close()
    assert len(lifecycle._open) == before
