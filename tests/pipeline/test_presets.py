"""make_logger: only the terminal is throttled (the CSV gets every record), and an argument
it refuses is refused before anything exists on disk."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from pipeline import make_logger
from sinks import MemorySink


@pytest.mark.parametrize("smoothing", [None, "return"])
def test_the_csv_gets_every_record_and_the_terminal_the_first_and_the_last(
    tmp_path: Path, smoothing: str | None
) -> None:
    screen = io.StringIO()
    memory = MemorySink()
    logger = make_logger(
        "train",
        directory=tmp_path,
        time_delta=3600.0,
        smoothing_regex=smoothing,
        terminal_stream=screen,
        extra_sinks=[memory],
    )
    for episode in range(1000):
        logger.write({"episode": episode, "return": float(episode)})
    logger.close()
    with open(tmp_path / "train.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["episode"]) for row in rows] == list(range(1000))
    assert [record["episode"] for record in memory.records] == list(range(1000))
    lines = screen.getvalue().splitlines()
    assert len(lines) == 2
    assert "Episode = 0 " in lines[0] and "Episode = 999 " in lines[1]


def test_terminal_time_delta_throttles_the_terminal_alone(tmp_path: Path) -> None:
    screen = io.StringIO()
    logger = make_logger(
        "eval", directory=tmp_path, time_delta=0, terminal_time_delta=3600.0,
        terminal_stream=screen,
    )
    for episode in range(10):
        logger.write({"episode": episode})
    logger.close()
    assert len(screen.getvalue().splitlines()) == 2
    assert len((tmp_path / "eval.csv").read_text().splitlines()) == 11


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"neptune": "yes"}, "neptune must be"),
        ({"neptune": {"projekt": "me/x"}}, "not NeptuneSink options"),
        ({"time_delta": -1}, "time_delta"),
        ({"terminal_time_delta": -1}, "terminal_time_delta"),
        ({"smoothing_regex": "return", "smoothing_coeff": 1.5}, "coeff"),
        ({"smoothing_regex": "("}, "regular expression"),
        ({"aggregate_regex": "return", "aggregate_every": 0}, "every"),
        ({"csv_mode": "append"}, "mode"),
        ({"extra_sinks": [MemorySink]}, "pass MemorySink"),
        ({"extra_sinks": [42]}, "write\\(record\\)"),
        ({"terminal": False, "csv": False}, "no sink"),
        ({"directory": None}, "directory"),
    ],
    ids=lambda value: value if isinstance(value, str) else repr(value),
)
def test_a_refused_argument_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises((ValueError, TypeError), match=message):
        make_logger("x", terminal_stream=io.StringIO(), **options)
    assert list(tmp_path.iterdir()) == []
