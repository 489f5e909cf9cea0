"""`rlpipe plot` and `rlpipe tail` on bad input, and every command without its extra.

The contract: a command either does its job with what it can read, or prints ONE line on
stderr starting with `rlpipe <command>: ` and returns a non-zero status (2 for bad input,
1 for a missing extra or anything else). Never a traceback.

In-process runs set `RLPIPE_DEBUG=1`, under which an error the commands do not expect is
raised with its traceback: so these tests fail on a bug instead of passing on the catch-all's
one-line report.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from sinks import CsvSink

COMMANDS = ("plot", "tail")
RUN_FILE_NAMES = ("train.csv", "train.jsonl", "progress.txt")
DEFAULT_FIELD_LIMIT = 128 * 1024
"""The csv module's field size limit in a fresh process."""


@dataclass
class Outcome:
    status: int
    out: str
    err: str


def rlpipe(*args: str | os.PathLike[str]) -> Outcome:
    """Runs `rlpipe ARGS` in this process with RLPIPE_DEBUG=1 (see the module's docstring)."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, {"RLPIPE_DEBUG": "1"}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        status = main([str(arg) for arg in args])
    return Outcome(status, out.getvalue(), err.getvalue())


def run_command(command: str, path: Path, *options: str) -> Outcome:
    """`rlpipe plot PATH` (the picture in a temporary folder) or `rlpipe tail PATH --once`."""
    if command == "plot":
        with tempfile.TemporaryDirectory() as folder:
            return rlpipe("plot", path, "--out", Path(folder) / "curves.png", *options)
    return rlpipe("tail", path, "--once", *options)


def assert_handled(outcome: Outcome, command: str) -> None:
    """It worked, or it said what is wrong in one line and failed; no traceback either way."""
    assert "Traceback" not in outcome.err
    if outcome.status != 0:
        lines = outcome.err.splitlines()
        assert len(lines) == 1, outcome.err
        assert lines[0].startswith(f"rlpipe {command}: "), outcome.err


def assert_one_line_error(outcome: Outcome, command: str, status: int, says: str) -> None:
    assert outcome.status == status, outcome
    assert_handled(outcome, command)
    assert says in outcome.err


@pytest.fixture
def fresh_csv_limit() -> Iterator[None]:
    """The csv module's field size limit as a fresh process has it (importing `sinks` here
    raised it; the commands must not depend on that)."""
    before = csv.field_size_limit()
    csv.field_size_limit(DEFAULT_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def write_big_cell_run(path: Path) -> Path:
    """A CSV CsvSink writes with a 200+ KiB cell in every row (a 30,000-element array)."""
    with CsvSink(path) as sink:
        for step in range(3):
            sink.write({"steps": step, "episode_return": 10.0 * step, "obs": np.arange(30_000)})
    assert len(path.read_bytes()) > 3 * 150_000
    return path


# -- what rlpipe writes, it reads ------------------------------------------------------------


@pytest.mark.usefixtures("fresh_csv_limit")
def test_plot_draws_the_numbers_of_a_csv_with_a_200_kib_cell(tmp_path: Path) -> None:
    path = write_big_cell_run(tmp_path / "train.csv")
    outcome = rlpipe("plot", path)
    assert outcome.status == 0, outcome
    assert "(1 panel, 1 run)" in outcome.out and (tmp_path / "train.png").is_file()


@pytest.mark.usefixtures("fresh_csv_limit")
def test_tail_shows_the_latest_values_of_a_csv_with_a_200_kib_cell(tmp_path: Path) -> None:
    path = write_big_cell_run(tmp_path / "train.csv")
    outcome = rlpipe("tail", path, "--once")
    assert outcome.status == 0, outcome
    assert "train.csv: 3 rows" in outcome.out and "episode_return  20" in outcome.out
    assert " obs" in outcome.out and max(len(line) for line in outcome.out.splitlines()) <= 100


def test_a_fresh_process_reads_a_csv_with_a_200_kib_cell(tmp_path: Path) -> None:
    path = write_big_cell_run(tmp_path / "train.csv")

    def rlpipe_process(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pipeline.cli", *args]
        env = without_debug()
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    plotted = rlpipe_process("plot", str(path))
    assert plotted.returncode == 0 and not plotted.stderr, plotted.stderr
    assert (tmp_path / "train.png").is_file()
    tailed = rlpipe_process("tail", str(path), "--once")
    assert tailed.returncode == 0 and not tailed.stderr, tailed.stderr
    assert "episode_return  20" in tailed.stdout


# -- files that are not what they claim -------------------------------------------------------

GARBAGE = {
    "random bytes": random.Random(0).randbytes(8192),
    "NUL bytes": b"\0" * 4096,
    "invalid UTF-8": b"\xff\xfe\xfd\xc3\x28\xa0\xa1\xe2\x28\xa1\n" * 50,
    "a lone CR in a row": b"steps,episode_return\r\n1,2\r3\r\n",
    "control characters": b"\x1b[2J\x1b]0;title\x07,\x08\x7f\n\x1b[31m,\x9b\n",
    "an unclosed quote": b'steps,episode_return\n1,"2\n3,4\n',
    "deeply nested JSON": b"[" * 100_000 + b"\n" + b'{"a":' * 100_000 + b"\n",
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", RUN_FILE_NAMES)
@pytest.mark.parametrize("content", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_named_as_a_run_file_is_handled(
    tmp_path: Path, command: str, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert_handled(run_command(command, path), command)
    assert_handled(run_command(command, tmp_path), command)


def test_the_readable_rows_among_garbage_are_shown(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(
        b"steps,episode_return,note\r\n"
        b"1,1.5,\xff\xfe\r\n"
        b"\0\0\0\r\n"
        b"2,2.5,\x1b[2J\r\n"
        b"\xc3\x28,\xa0\xa1,\r\n"
        b"3,3.5,ok\r\n"
    )
    plotted = run_command("plot", path)
    assert plotted.status == 0 and "(1 panel, 1 run)" in plotted.out, plotted
    tailed = run_command("tail", path)
    assert tailed.status == 0 and "episode_return  3.5" in tailed.out, tailed
    assert "\x1b" not in tailed.out


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", RUN_FILE_NAMES)
def test_an_empty_file_has_nothing_to_show(tmp_path: Path, command: str, name: str) -> None:
    path = tmp_path / name
    path.touch()
    outcome = run_command(command, path)
    if command == "plot":
        assert_one_line_error(outcome, command, 2, "nothing to plot")
    else:
        assert outcome.status == 0 and f"{name}: 0 rows" in outcome.out, outcome


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_without_run_files_is_an_error(tmp_path: Path, command: str) -> None:
    (tmp_path / "notes.md").write_text("no data here\n")
    outcome = run_command(command, tmp_path)
    assert_one_line_error(outcome, command, 2, "no .csv, .jsonl or progress.txt file in it")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_path_is_an_error(tmp_path: Path, command: str) -> None:
    outcome = run_command(command, tmp_path / "nothing.csv")
    assert_one_line_error(outcome, command, 2, "no such file or folder")


AS_NOBODY = """
import os, sys
import matplotlib.backends.backend_agg, pipeline.cli.plot, pipeline.cli.tail
from pipeline.cli import main
if os.geteuid() == 0:  # root reads any file: drop to nobody once everything is imported
    os.setgroups([]), os.setgid(65534), os.setuid(65534)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("given", ["file", "folder"])
def test_a_file_without_read_permission_is_an_error(command: str, given: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        folder.chmod(0o755)
        path = folder / "train.csv"
        path.write_text("steps,episode_return\r\n1,2\r\n")
        path.chmod(0o600 if os.geteuid() == 0 else 0)
        if os.geteuid() != 0 and os.access(path, os.R_OK):
            pytest.skip("this user reads files without read permission")
        args = [command, str(path if given == "file" else folder)]
        args += ["--out", str(folder / "x.png")] if command == "plot" else ["--once"]
        result = subprocess.run(
            [sys.executable, "-c", AS_NOBODY, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=without_debug(),
        )
    outcome = Outcome(result.returncode, result.stdout, result.stderr)
    assert_one_line_error(outcome, command, 2, "train.csv: Permission denied")


def test_jsonl_lines_that_are_not_objects_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    lines = [
        b"[1, 2, 3]",
        b'"episode_return"',
        b"42",
        b"null",
        b"true",
        b'{"steps": 1, "episode_return": 5.0}',
        b'{"steps": 2, "episode_return": ',
        b"\xff\xfe{}",
        b"[" * 50_000,
        b'{"steps": 3, "episode_return": 7.0, "extra": {"nested": [1, 2]}}',
        b"1" * 5000,
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    plotted = run_command("plot", path)
    assert plotted.status == 0 and "(1 panel, 1 run)" in plotted.out, plotted
    tailed = run_command("tail", path)
    assert tailed.status == 0, tailed
    assert "train.jsonl: 2 rows" in tailed.out and "episode_return  7" in tailed.out


def test_jsonl_without_any_object_has_nothing_to_plot(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('[1]\n2\n"three"\n')
    assert_one_line_error(run_command("plot", path), "plot", 2, "nothing to plot")
    tailed = run_command("tail", path)
    assert tailed.status == 0 and "train.jsonl: 0 rows" in tailed.out, tailed


RAGGED = {
    "header shorter than the rows": "steps,episode_return\r\n1,2,3,4\r\n2,3,4\r\n",
    "header longer than the rows": "steps,episode_return,loss,extra\r\n1,2\r\n2,3,0.5\r\n",
    "blank and repeated names": "steps,,episode_return,episode_return,\r\n1,9,2,8,7\r\n2,9,3,8\r\n",
    "a blank first line": "\r\nsteps,episode_return\r\n1,2\r\n",
    "a header of one long quoted cell": '"steps,episode_return\r\n1,2\r\n2,3\r\n',
    "a header that is a number": "1,2\r\n3,4\r\n",
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("content", RAGGED.values(), ids=RAGGED.keys())
def test_a_ragged_header_is_handled(tmp_path: Path, command: str, content: str) -> None:
    path = tmp_path / "train.csv"
    path.write_text(content, newline="")
    assert_handled(run_command(command, path), command)


def test_rows_wider_or_narrower_than_the_header_keep_the_named_columns(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(RAGGED["header shorter than the rows"], newline="")
    plotted = run_command("plot", path)
    assert plotted.status == 0 and "(1 panel, 1 run)" in plotted.out, plotted
    tailed = run_command("tail", path)
    assert tailed.status == 0 and "episode_return  3" in tailed.out, tailed


# -- any bytes, any names, any numbers -------------------------------------------------------


def assert_tail_shows_printable_lines(outcome: Outcome) -> None:
    assert outcome.status == 0, outcome
    assert all(line.isprintable() for line in outcome.out.splitlines()), outcome.out


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=2048), name=st.sampled_from(RUN_FILE_NAMES))
def test_any_bytes_as_a_run_file_are_handled(content: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        assert_handled(run_command("plot", path, "--y", "^"), "plot")
        tailed = run_command("tail", path)
        assert_handled(tailed, "tail")
        assert_tail_shows_printable_lines(tailed)


FIRST_ROWS = {
    "train.csv": b"steps,episode_return\r\n1,2\r\n",
    "train.jsonl": b'{"steps": 1, "episode_return": 2}\n',
    "progress.txt": b"steps\tepisode_return\n1\t2\n",
}


@settings(max_examples=40, deadline=None)
@given(garbage=st.binary(max_size=2048), name=st.sampled_from(RUN_FILE_NAMES))
def test_the_rows_before_any_garbage_are_drawn_and_shown(garbage: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(FIRST_ROWS[name] + garbage)
        plotted = run_command("plot", path)
        assert plotted.status == 0 and "(1 panel, 1 run)" in plotted.out, plotted
        tailed = run_command("tail", path)
        assert_tail_shows_printable_lines(tailed)
        assert "episode_return  " in tailed.out


column_names = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
cell_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(["", "nan", "1e308", "-1.7976931348623157e308", "5e-324", "x"]),
)


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font:UserWarning")
@settings(max_examples=25, deadline=None)
@given(
    names=st.lists(column_names, min_size=1, max_size=4, unique=True),
    rows=st.lists(st.lists(cell_values, min_size=4, max_size=4), min_size=1, max_size=6),
)
def test_any_column_names_and_numbers_are_drawn(names: list[str], rows: list[list[object]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(names)
            writer.writerows(row[: len(names)] for row in rows)
        outcome = run_command("plot", path, "--y", "^")
        assert_handled(outcome, "plot")
        assert outcome.status == 0 or "nothing to plot" in outcome.err
        tailed = run_command("tail", path)
        assert tailed.status == 0 and all(line.isprintable() for line in tailed.out.splitlines())


def test_numbers_too_large_for_an_axis_are_skipped_and_the_rest_drawn(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        "steps,episode_return,episode_return_min,episode_return_max\r\n"
        "1,1e308,-1e308,1e308\r\n2,2,1,3\r\n1e308,4,3,5\r\n3,-1.7e308,0,1\r\n4,5,4,6\r\n"
    )
    outcome = run_command("plot", path)
    assert outcome.status == 0 and "(1 panel, 1 run)" in outcome.out, outcome


def test_names_matplotlib_would_read_as_math_are_drawn_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("steps,episode_return$x^{,$\\frac{$\r\n1,2,3\r\n2,3,4\r\n")
    outcome = run_command("plot", path, "--y", "return", "frac", "--title", "$\\sqrt{$")
    assert outcome.status == 0 and "(2 panels, 1 run)" in outcome.out, outcome


# -- failures that are not the input's -------------------------------------------------------


def test_an_output_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("steps,episode_return\r\n1,2\r\n")
    outcome = rlpipe("plot", path, "--out", path / "curves.png")  # inside a file
    assert_one_line_error(outcome, "plot", 1, "curves.png")


def test_an_unexpected_error_is_one_line_unless_rlpipe_debug_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "train.csv"
    path.write_text("steps,episode_return\r\n1,2\r\n")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr("pipeline.cli.plot.make_curves", broken)
    monkeypatch.delenv("RLPIPE_DEBUG", raising=False)
    assert main(["plot", str(path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("rlpipe plot: internal error: RuntimeError: a bug")
    assert "RLPIPE_DEBUG=1" in line
    monkeypatch.setenv("RLPIPE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="a bug"):
        main(["plot", str(path)])


def test_ctrl_c_stops_a_command_with_status_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "train.csv"
    path.write_text("steps,episode_return\r\n1,2\r\n")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("pipeline.cli.plot.make_curves", interrupted)
    assert main(["plot", str(path)]) == 130
    assert capsys.readouterr().err == "rlpipe plot: interrupted\n"


def test_the_debug_variable_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("plot", "tail", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "RLPIPE_DEBUG=1" in capsys.readouterr().out


# -- missing extras --------------------------------------------------------------------------


def without_debug() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "RLPIPE_DEBUG"}


def run_without(package: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline.cli ARGS` in a process where importing `package` fails as it does
    when the package is not installed (a stand-in first on PYTHONPATH raises ImportError)."""
    shadow = tmp_path / "shadow" / package
    shadow.mkdir(parents=True)
    message = f"No module named {package!r}"
    (shadow / "__init__.py").write_text(f"raise ImportError({message!r})\n")
    env = without_debug()
    env["PYTHONPATH"] = os.pathsep.join(
        [str(shadow.parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )


def test_plot_without_matplotlib_names_the_plot_extra(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("steps,episode_return\r\n1,2\r\n")
    result = run_without("matplotlib", tmp_path, "plot", str(path))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("rlpipe plot: ") and "pip install 'rlpipe[plot]'" in line
    assert not (tmp_path / "train.png").exists()


def test_demo_without_acme_names_the_acme_extra(tmp_path: Path) -> None:
    result = run_without("acme", tmp_path, "demo", "--episodes", "1", "--no-neptune")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("rlpipe demo: ") and "pip install 'rlpipe[acme]'" in line
    assert not (tmp_path / "runs").exists()


def test_tail_needs_no_extra(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("steps,episode_return\r\n1,2\r\n")
    result = run_without("matplotlib", tmp_path, "tail", str(path), "--once")
    assert result.returncode == 0 and "episode_return  2" in result.stdout, result.stderr


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", ["README.md", "notes", "run.log"])
def test_a_file_that_is_not_a_run_file_is_refused_by_both_commands(
    tmp_path: Path, command: str, name: str
) -> None:
    """One check for both: a Markdown file is not read as a CSV file of 112 rows."""
    path = tmp_path / name
    path.write_text("# rlpipe\n\nA fast, lossless pipeline, with commas, in prose.\n" * 40)
    outcome = run_command(command, path)
    assert_one_line_error(outcome, command, 2, f"{name}: not a run file")
    assert outcome.out == ""


def test_plot_refuses_an_out_folder_that_does_not_exist_and_creates_none(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("steps,episode_return\r\n1,2\r\n")
    out = tmp_path / "missing" / "deeper" / "x.png"
    outcome = rlpipe("plot", path, "--out", out)
    assert_one_line_error(outcome, "plot", 1, f"{out.parent} does not exist")
    assert not (tmp_path / "missing").exists()
