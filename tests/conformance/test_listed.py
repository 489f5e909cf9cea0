"""One case per loss path listed in issue 22, named after the behaviour it checks. Each failed
before its fix (a strict xfail while open, see `known.listed`); item 1 (a signal
inside a store) is in test_signals.py."""

from __future__ import annotations

import csv
import json
import math
import pickle
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from filters import AsyncNode, SmoothingFilter, TimeFilter
from pipeline import Node, Pipeline
from sinks import CsvSink, JsonlSink, MemorySink, TerminalSink
from sinks.file import BufferedFileSink
from tests.conformance.sinks import Screen
from tests.conftest import FakeClock, crash

pytestmark = pytest.mark.filterwarnings("ignore")


# -- item 2 -----------------------------------------------------------------------------------


class RefusesNaN:
    """A logger that cannot take a NaN loss (as a tracking client refusing one)."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def write(self, data: dict[str, Any]) -> None:
        if math.isnan(data["loss"]):
            raise ValueError("NaN loss")
        self.steps.append(int(data["step"]))


def test_a_batch_into_a_logger_that_refuses_one_row_stores_the_others_once() -> None:
    logger = RefusesNaN()
    pipe = Pipeline("p", close_at_exit=False).to(logger)
    pipe.write_batch({"step": np.arange(4), "loss": np.array([0.1, 0.2, math.nan, 0.3])})
    pipe.close()
    assert logger.steps == [0, 1, 3]


def test_a_batch_into_a_terminal_with_an_unprintable_value_prints_each_row_once() -> None:
    class NoText:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    screen = Screen()
    pipe = Pipeline("p", close_at_exit=False).to(TerminalSink(stream=screen))  # type: ignore[arg-type]
    pipe.write_batch({"step": [0, 1, 2, 3], "x": [1.0, 2.0, NoText(), 4.0]})
    pipe.close()
    assert len(screen.writes) == 3


# -- item 3 -----------------------------------------------------------------------------------


def test_an_aggregate_never_overwrites_a_key_the_record_holds_silently() -> None:
    memory = MemorySink()
    pipe = Pipeline("p", close_at_exit=False).aggregate("^x$", every=2, stats=("mean",))
    pipe.to(memory)
    pipe.write({"x": 1.0, "x_mean": 100.0})
    pipe.write({"x": 3.0, "x_mean": 100.0})
    pipe.close()
    (window,) = memory.records
    kept = 2.0 in window.values() and 100.0 in window.values()
    assert kept or any(node.counts["clashed"] for node in pipe.nodes())


def test_smoothing_never_overwrites_a_key_the_record_holds_silently() -> None:
    memory = MemorySink()
    pipe = Pipeline("p", close_at_exit=False).smooth("^return$", 0.9).to(memory)
    pipe.write({"return": 2.0, "return_smoothed_0.9": 100.0})
    pipe.close()
    (record,) = memory.records
    kept = 2.0 in record.values() and record["return_smoothed_0.9"] == 100.0
    assert kept or any(node.counts["clashed"] for node in pipe.nodes())


# -- item 4 -----------------------------------------------------------------------------------


def test_jsonl_keeps_the_first_of_two_keys_with_one_text_and_counts_the_later(
    tmp_path: Path,
) -> None:
    sink = JsonlSink(tmp_path / "a.jsonl")
    with Pipeline("p", close_at_exit=False).to(sink) as pipe:
        pipe.write({1: 10.0, "1": 20.0})  # type: ignore[dict-item]
    stored = json.loads((tmp_path / "a.jsonl").read_text())
    assert stored == {"1": 10.0} and sink.counts["dropped"] == 1


@pytest.mark.parametrize("call", ["write", "write_batch"])
@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_file_sinks_keep_the_earlier_of_two_nested_keys_with_one_text_and_count_the_later(
    tmp_path: Path, kind: str, call: str
) -> None:
    """In a nested mapping, as at the top level of a record (`pipeline.core.keys.clashes`):
    the earlier key is written, the later counted in `counts["clashed"]` and warned."""
    sink = CsvSink(tmp_path / "a.csv") if kind == "csv" else JsonlSink(tmp_path / "a.jsonl")
    value = {"d": {1: 10.0, "1": 20.0, "e": [{True: 1, "True": 2}]}}
    with pytest.warns(UserWarning, match="clashed"), Pipeline(
        "p", close_at_exit=False
    ).to(sink) as pipe:
        if call == "write":
            pipe.write(value)
        else:
            pipe.write_batch({"d": [value["d"]]})
    if kind == "csv":
        (row,) = _rows(tmp_path / "a.csv")
        stored = json.loads(row["d"])
    else:
        stored = json.loads((tmp_path / "a.jsonl").read_text())["d"]
    assert stored == {"1": 10.0, "e": [{"True": 1}]}
    assert sink.counts["clashed"] == 2
    assert sink.counts.by_key["clashed"] == {"1": 1, "True": 1}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_smoothing_keeps_or_counts_two_keys_with_one_text() -> None:
    smoothing, memory = SmoothingFilter(".*", coeff=0.5), MemorySink()
    smoothing.connect(memory)
    smoothing.write({1: 10.0, "1": 20.0})  # type: ignore[dict-item]
    smoothed = [key for key in memory.records[0] if "smoothed" in str(key)]
    assert len(smoothed) == 2 or smoothing.counts["clashed"] == 1


# -- item 5 -----------------------------------------------------------------------------------


def test_a_kept_write_reaches_a_node_connected_later() -> None:
    smoothing = SmoothingFilter("r", coeff=0.5)
    pipe = Pipeline("p", close_at_exit=False).then(smoothing).to(MemorySink())
    write = pipe.write  # as an integration keeps it
    later = MemorySink()
    smoothing.connect(later)
    write({"r": 1.0})
    pipe.close()
    assert later.records == [{"r": 1.0, "r_smoothed_0.5": 1.0}]


# -- item 6 -----------------------------------------------------------------------------------


def test_a_throttles_held_batch_row_is_what_was_written() -> None:
    clock = FakeClock()
    throttle, memory = TimeFilter(10.0, keep_last=True, clock=clock), MemorySink()
    throttle.connect(memory)
    infos = [{"episode": 1}, {"episode": 2}]  # SB3 passes a list of info dicts
    throttle.write_batch({"info": infos})
    infos[1]["episode"] = 99  # the caller reuses its dicts
    throttle.flush()
    assert memory.records[-1]["info"] == {"episode": 2}


# -- item 7 -----------------------------------------------------------------------------------


def _final_observation() -> np.ndarray:
    observation = np.empty(2, dtype=object)  # gymnasium's final_observation
    observation[0], observation[1] = np.zeros(2), np.zeros(2)
    return observation


def _sink_of(kind: str, folder: Path) -> tuple[Node, Any]:
    if kind == "csv":
        return CsvSink(folder / "a.csv"), lambda: _rows(folder / "a.csv")[0]["obs"]
    if kind == "jsonl":
        return JsonlSink(folder / "a.jsonl"), lambda: json.dumps(
            json.loads((folder / "a.jsonl").read_text())["obs"]
        )
    memory = MemorySink()
    return memory, lambda: json.dumps([item.tolist() for item in memory.records[0]["obs"]])


@pytest.mark.parametrize("kind", ["csv", "jsonl", "memory"])
@pytest.mark.parametrize("call", ["write", "write_batch", "async write_batch"])
def test_an_object_array_is_stored_as_written(tmp_path: Path, kind: str, call: str) -> None:
    sink, stored = _sink_of(kind, tmp_path)
    pipe = Pipeline("p", close_at_exit=False)
    if call.startswith("async"):
        pipe.async_()
    pipe.to(sink)
    observation = _final_observation()
    if call == "write":
        pipe.write({"obs": observation})
    else:
        column = np.empty(1, dtype=object)
        column[0] = observation
        pipe.write_batch({"obs": column})
    observation[0][:] = 1.0  # the environment reuses its buffers
    pipe.close()
    assert json.loads(stored()) == [[0.0, 0.0], [0.0, 0.0]]


# -- item 8 -----------------------------------------------------------------------------------


def test_jsonl_writes_long_doubles_as_numbers(tmp_path: Path) -> None:
    with JsonlSink(tmp_path / "a.jsonl") as sink:
        sink.write({
            "x": np.longdouble(0.5),
            "y": np.array(np.longdouble(1.5)),
            "z": np.array([0.5, 1.5], dtype=np.longdouble),
        })
    assert json.loads((tmp_path / "a.jsonl").read_text()) == {"x": 0.5, "y": 1.5, "z": [0.5, 1.5]}


def test_csv_writes_long_doubles_inside_lists_and_mappings_as_json_numbers(
    tmp_path: Path,
) -> None:
    """A CSV cell holding a list or a mapping is JSON by the same rule as a JSONL line."""
    with CsvSink(tmp_path / "a.csv") as sink:
        sink.write({"x": [np.longdouble("0.5")], "y": {"a": np.longdouble(1.5)}})
        sink.write_batch({"x": [[np.longdouble("0.0")]], "y": [{"a": np.longdouble(2)}]})
    rows = _rows(tmp_path / "a.csv")
    assert [json.loads(row["x"]) for row in rows] == [[0.5], [0.0]]
    assert [json.loads(row["y"]) for row in rows] == [{"a": 1.5}, {"a": 2.0}]


# -- item 9 -----------------------------------------------------------------------------------


def _train_and_eval(path: Path, mode: str) -> tuple[Pipeline, Pipeline]:
    shared = CsvSink(path, mode=mode)
    train = Pipeline("train", close_at_exit=False).to(shared)
    evaluation = Pipeline("eval", close_at_exit=False).aggregate("r", every=2).to(shared)
    return train, evaluation


def test_two_pipelines_sharing_a_sink_resume_as_if_uninterrupted(tmp_path: Path) -> None:
    def steps(train: Pipeline, evaluation: Pipeline, start: int, stop: int) -> None:
        for step in range(start, stop):
            train.write({"step": step, "r": float(step)})
            evaluation.write({"step": step, "r": float(step)})

    train, evaluation = _train_and_eval(tmp_path / "whole.csv", "w")
    steps(train, evaluation, 0, 10)
    train.close()
    evaluation.close()

    train, evaluation = _train_and_eval(tmp_path / "resumed.csv", "w")
    steps(train, evaluation, 0, 5)
    states = pickle.dumps((train.state_dict(), evaluation.state_dict()))
    steps(train, evaluation, 5, 7)
    train.flush()
    evaluation.flush()
    crash(train, evaluation)
    train, evaluation = _train_and_eval(tmp_path / "resumed.csv", "a")
    saved_train, saved_eval = pickle.loads(states)
    train.load_state_dict(saved_train)
    evaluation.load_state_dict(saved_eval)
    steps(train, evaluation, 5, 10)
    train.close()
    evaluation.close()
    assert (tmp_path / "resumed.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


# -- item 10 ----------------------------------------------------------------------------------


class RefusesBad(Node):
    """A node that raises on a record with `bad`, and passes the others on."""

    def write(self, data: Any) -> None:
        if "bad" in data:
            raise ValueError("bad record")
        self.emit(data)


def test_the_write_that_reraises_a_background_error_keeps_its_record() -> None:
    queue, refuser, memory = AsyncNode(), RefusesBad(), MemorySink()
    queue.connect(refuser)
    refuser.connect(memory)
    queue.write({"bad": 1})
    queue.drain()
    with pytest.raises(RuntimeError):
        queue.write({"good": 1})
    queue.close()
    assert memory.records == [{"good": 1}] or queue.counts["lost"] == 1


# -- item 11 ----------------------------------------------------------------------------------


class StoredMeanwhile(BufferedFileSink):
    """Where CsvSink's checkpoint lets go of the store lock between its two parts, the
    flusher thread stores the held rows (the race of item 11, made to happen)."""

    def node_state(self) -> dict[str, Any]:
        state = super().node_state()
        flusher = threading.Thread(target=self.flush_on_time)
        flusher.start()
        flusher.join(timeout=2.0)  # a sink that holds the lock throughout makes it wait
        return state


class CaughtCsv(CsvSink, StoredMeanwhile):
    pass


def test_a_checkpoint_during_a_flusher_store_resumes_as_if_uninterrupted(
    tmp_path: Path,
) -> None:
    def rows(pipe: Pipeline, start: int, stop: int) -> None:
        for step in range(start, stop):
            pipe.write({"step": step, "x": step / 2})

    whole = Pipeline("p", close_at_exit=False).to(CaughtCsv(tmp_path / "whole.csv"))
    rows(whole, 0, 10)
    whole.close()

    pipe = Pipeline("p", close_at_exit=False).to(CaughtCsv(tmp_path / "resumed.csv"))
    rows(pipe, 0, 5)
    state = pickle.dumps(pipe.state_dict())
    rows(pipe, 5, 7)
    pipe.flush()
    crash(pipe)
    pipe = Pipeline("p", close_at_exit=False).to(
        CaughtCsv(tmp_path / "resumed.csv", mode="a")
    )
    pipe.load_state_dict(pickle.loads(state))
    rows(pipe, 5, 10)
    pipe.close()
    assert (tmp_path / "resumed.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


# -- one writer per file; a fresh run never appends unnoticed ---------------------------------


def test_a_second_sink_on_a_path_open_in_this_process_is_refused(tmp_path: Path) -> None:
    first = CsvSink(tmp_path / "a.csv")
    try:
        with pytest.raises(Exception, match=r"a\.csv"):
            CsvSink(tmp_path / "a.csv").close()
    finally:
        first.close()


HOLDER = textwrap.dedent(
    """
    import sys
    from sinks import CsvSink
    sink = CsvSink(sys.argv[1])
    sink.write({"x": 1})
    print("open", flush=True)
    sys.stdin.readline()
    sink.close()
    """
)


def test_a_file_another_process_writes_is_refused(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "a.csv")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with pytest.raises(Exception, match=r"a\.csv"):
            CsvSink(tmp_path / "a.csv").close()
    finally:
        holder.communicate("\n", timeout=60)


@pytest.mark.parametrize("kind", [CsvSink, JsonlSink], ids=lambda kind: kind.__name__)
def test_a_fresh_run_never_appends_to_an_old_runs_file_unnoticed(
    tmp_path: Path, kind: type[BufferedFileSink]
) -> None:
    path = tmp_path / "train.out"
    with kind(path) as first:
        first.write({"run": 1})
    before = path.read_bytes()
    try:
        second = kind(path)
    except Exception:
        return  # refused, with a message saying how to append or resume
    with second:
        second.write({"run": 2})
    after = path.read_bytes()
    assert after == before or b"1" not in after  # a new file elsewhere, or replaced


def test_a_file_sink_on_a_directory_is_refused_when_built(tmp_path: Path) -> None:
    with pytest.raises((ValueError, OSError)):
        Pipeline("p", close_at_exit=False).to(CsvSink(tmp_path))


def test_a_file_sink_with_an_empty_path_is_refused() -> None:
    with pytest.raises((ValueError, OSError)):
        JsonlSink("")


def test_a_sink_class_instead_of_a_sink_is_refused_when_built() -> None:
    with pytest.raises((TypeError, ValueError)):
        Pipeline("p", close_at_exit=False).to(CsvSink)  # type: ignore[arg-type]


# -- failures() lists storage failures too ----------------------------------------------------


class BadKey:
    def __str__(self) -> str:
        raise RuntimeError("no name")

    def __hash__(self) -> int:
        return 1


def test_failures_names_a_file_sink_that_lost_a_row(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "a.jsonl")
    pipe = Pipeline("p", close_at_exit=False).to(sink)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.write({BadKey(): 1.0})  # type: ignore[dict-item]
        pipe.write({"x": 1.0})
        pipe.close()
    assert sink.counts["lost"] == 1
    assert any(repr(sink) in line for line in pipe.failures())


# -- a record with no keys (found while closing the list) -------------------------------------


@pytest.mark.parametrize("kind", ["csv", "jsonl", "memory", "terminal"])
def test_an_empty_record_is_an_empty_row_or_nothing_to_store(tmp_path: Path, kind: str) -> None:
    """A record with no keys holds no value: it is the empty row of the sink's format, and
    where the format has none (a CSV file that never gets a column) it is not stored, not
    counted, and `failures()` stays empty."""
    made: dict[str, Any] = {
        "csv": lambda: CsvSink(tmp_path / "a.csv"),
        "jsonl": lambda: JsonlSink(tmp_path / "a.jsonl"),
        "memory": MemorySink,
        "terminal": lambda: TerminalSink("t", stream=Screen()),  # type: ignore[arg-type]
    }
    stored: list[Any] = []
    for records in ([{}, {}], [{}, {"a": 1}, {}]):
        sink = made[kind]()
        pipe = Pipeline("p", close_at_exit=False).to(sink)
        for record in records:
            pipe.write(record)
        pipe.close()
        assert not any(sink.counts[reason] for reason in sink.counts)
        assert pipe.failures() == []
        if kind == "csv":
            stored.append((tmp_path / "a.csv").read_text())
        elif kind == "jsonl":
            stored.append((tmp_path / "a.jsonl").read_text())
        elif kind == "memory":
            stored.append(sink.records)
        else:
            stored.append(sink.stream.writes)
    expected = {
        "csv": ["", 'a\n""\n1\n""\n'],  # a lone empty cell is `""` (csv module)
        "jsonl": ["{}\n{}\n", '{}\n{"a":1}\n{}\n'],
        "memory": [[{}, {}], [{}, {"a": 1}, {}]],
        "terminal": [["[T] \n", "[T] \n"], ["[T] \n", "[T] A = 1\n", "[T] \n"]],
    }[kind]
    assert stored == expected
