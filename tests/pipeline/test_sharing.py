"""A sink shared by several pipelines: closed by the last one, never written twice."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from pipeline import Pipeline
from sinks import CsvSink, MemorySink


def test_a_shared_sink_gets_the_last_window_of_the_pipeline_closed_second(
    tmp_path: Path,
) -> None:
    log = CsvSink(tmp_path / "log.csv")
    train = Pipeline("train", close_at_exit=False).to(log)
    evaluation = Pipeline("eval", close_at_exit=False).aggregate("return", every=10).to(log)
    for episode in range(25):
        train.write({"episode": episode})
        evaluation.write({"return": float(episode)})
    train.close()
    assert not log.closed  # eval still feeds it
    evaluation.close()
    assert log.closed
    means = pd.read_csv(tmp_path / "log.csv")["return_mean"].dropna().tolist()
    assert means == [4.5, 14.5, 22.0]  # three windows: 0-9, 10-19, 20-24


def test_at_exit_pipelines_sharing_a_sink_close_in_any_order(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        from pipeline import Pipeline
        from sinks import CsvSink
        log = CsvSink({str(tmp_path / "log.csv")!r})
        train = Pipeline("train").to(log)
        evaluation = Pipeline("eval").aggregate("return", every=10).to(log)
        for episode in range(25):
            train.write({{"episode": episode}})
            evaluation.write({{"return": float(episode)}})
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    frame = pd.read_csv(tmp_path / "log.csv")
    assert frame["return_mean"].dropna().tolist() == [4.5, 14.5, 22.0]
    assert frame["episode"].dropna().astype(int).tolist() == list(range(25))


def test_closing_one_of_two_pipelines_leaves_the_shared_sink_writable() -> None:
    shared = MemorySink()
    first = Pipeline("a", close_at_exit=False).to(shared)
    second = Pipeline("b", close_at_exit=False).to(shared)
    first.write({"x": 1})
    first.close()
    second.write({"x": 2})
    second.close()
    assert shared.column("x") == [1, 2] and shared.closed


def test_a_sink_under_an_async_branch_and_a_direct_one_is_refused_when_built() -> None:
    shared = MemorySink()
    with pytest.raises(ValueError, match="written from two threads"):
        Pipeline(close_at_exit=False).to(
            Pipeline(close_at_exit=False).async_().to(shared),
            Pipeline(close_at_exit=False).to(shared),
        )


def test_two_pipelines_one_async_sharing_a_sink_are_refused(tmp_path: Path) -> None:
    log = CsvSink(tmp_path / "log.csv")
    Pipeline("train", close_at_exit=False).async_().to(log)
    with pytest.raises(ValueError, match="give each branch its own sink"):
        Pipeline("eval", close_at_exit=False).to(log)


def test_a_refused_graph_is_left_as_it_was() -> None:
    shared, other = MemorySink(), MemorySink()
    Pipeline("a", close_at_exit=False).async_().to(shared)
    second = Pipeline("b", close_at_exit=False).drop_none()
    with pytest.raises(ValueError):
        second.to(shared)
    second.to(other)  # the chain can still be ended elsewhere
    second.write({"x": 1, "y": None})
    assert other.records == [{"x": 1}] and shared.records == []


def test_an_async_pipeline_may_feed_a_pipeline_of_its_own() -> None:
    memory = MemorySink()
    inner = Pipeline("inner", close_at_exit=False).to(memory)
    outer = Pipeline("outer", close_at_exit=False).async_().to(inner)
    for i in range(100):
        outer.write({"i": i})
    outer.close()
    assert memory.column("i") == list(range(100))
