"""Attack tests: whole pipelines with file sinks checkpointed, crashed and resumed, against
the uninterrupted run.

A plan is one logical run (writes, batches, flushes, ticks of a fake clock) played by a
chain of processes: each takes checkpoints (pickled states) on the way, may write records
the final run never writes (new keys: a CSV header widens) after its last checkpoint, then
crashes (held rows lost, or flushed first; a torn last line left in some files); the next
process builds the same graph, loads any checkpoint its files went through (an older one
after a newer was written, the same one twice) and plays the run on from there. The last
one closes. Its files must be the uninterrupted run's (CSV byte for byte, JSON Lines line
for line, and byte for byte when the `fast` extra is the same in both), and so must every
node's counts and a MemorySink's records.

The defects these attacks found are pinned, each with a minimal case."""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from filters import AggregateFilter, RateFilter, TimeFilter
from pipeline import Pipeline
from sinks import CsvSink, JsonlSink, MemorySink
from tests.conftest import FakeClock, crash, fast_path

CSV_FILES = ("raw.csv", "smooth.csv", "run.csv")
JSONL_FILES = ("raw.jsonl", "window.jsonl")
FILES = CSV_FILES + JSONL_FILES


# -- the graph ------------------------------------------------------------------------------


@dataclass
class Graph:
    pipe: Pipeline
    memory: MemorySink


def build(
    folder: Path, clock: FakeClock, mode: str, every: int, declared: tuple[str, ...] = ()
) -> Graph:
    """One graph with a node of each stateful kind above file sinks that hold rows;
    `declared`: raw.csv's `fieldnames`."""

    def csv_sink(name: str, **options: Any) -> CsvSink:
        return CsvSink(folder / name, mode=mode, flush_every=every, flush_seconds=None, **options)

    def jsonl_sink(name: str) -> JsonlSink:
        return JsonlSink(folder / name, mode=mode, flush_every=every + 1, flush_seconds=None)

    memory = MemorySink()
    pipe = Pipeline("attack", close_at_exit=False).to(
        csv_sink("raw.csv", fieldnames=declared),
        jsonl_sink("raw.jsonl"),
        Pipeline("smooth", close_at_exit=False)
        .smooth("^x$", coeff=0.5)
        .then(TimeFilter(1.0, keep_last=True, clock=clock))
        .to(csv_sink("smooth.csv", lineterminator="\n")),
        Pipeline("window", close_at_exit=False)
        .then(AggregateFilter("^(x|y)$", every=3, seconds=2.5, stats=("mean", "max"), clock=clock))
        .to(jsonl_sink("window.jsonl"), memory),
        Pipeline("run", close_at_exit=False)
        .rolling("^x$", window=3, stats=("mean", "max"))
        .lifetime("^y$")
        .then(RateFilter("^y$", clock=clock))
        .to(csv_sink("run.csv", delimiter=";")),
    )
    return Graph(pipe, memory)


# -- plans ----------------------------------------------------------------------------------

KEYS = ("x", "y", "s", "late")
JUNK_KEYS = ("x", "y", "junk", "zz")
texts = st.sampled_from(["a", "b,c", 'q"uote', "two\r\nlines", "semi;colon", ""])
scalars = st.one_of(
    st.none(),
    st.floats(-1e3, 1e3, allow_nan=False).map(lambda value: round(value, 3)),
    st.integers(-5, 5),
    st.just(math.nan),
    st.sampled_from([1e-05, 1e16, -0.0, 2.5]),
    texts,
)


def records(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), scalars, max_size=4)


@st.composite
def batches(draw: st.DrawFn, keys: tuple[str, ...]) -> dict[str, Any]:
    """A batch of numeric columns (held as a block with the `fast` extra), at times long
    enough for polars (CSV: 256 rows, JSON Lines: 512)."""
    length = draw(st.sampled_from([1, 2, 3, 5, 600]))
    names = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True))
    columns: dict[str, Any] = {}
    for name in names:
        kind = draw(st.sampled_from(["f", "i", "fnone", "b"]))
        start = draw(st.integers(-3, 3))
        if kind == "f":
            columns[name] = np.arange(length, dtype=np.float64) * 0.25 + start
        elif kind == "i":
            columns[name] = np.arange(length, dtype=np.int64) + start
        elif kind == "b":
            columns[name] = (np.arange(length) + start) % 2 == 0
        else:
            columns[name] = [
                None if (index + start) % 3 == 0 else index * 0.5 for index in range(length)
            ]
    return columns


def ops(keys: tuple[str, ...]) -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(
        records(keys).map(lambda record: ("write", record)),
        records(keys).map(lambda record: ("write", record)),
        batches(keys).map(lambda columns: ("batch", columns)),
        st.just(("flush", None)),
        st.sampled_from([0.25, 1.0, 3.0]).map(lambda seconds: ("tick", seconds)),
    )


@dataclass
class Attempt:
    """A process that crashes: it loads checkpoint `load` (None: a new run), plays the run
    from there up to position `stop`, checkpointing at `checkpoints`, then plays `junk`
    (records the final run does not write), flushes or not, and leaves torn lines in
    `torn` files."""

    load: int | None
    stop: int
    checkpoints: list[int]
    junk: list[tuple[str, Any]]
    flush: bool
    torn: list[str]
    fast: bool


@dataclass
class Plan:
    run: list[tuple[str, Any]]
    attempts: list[Attempt]
    final_load: int
    final_fast: bool
    mode: str
    every: int
    checkpoints_at: list[int]
    earlier: str | None = None
    declared: tuple[str, ...] = ()
    config: bool = False


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """Plans of a run: its records, the processes that play it (each resumed from a checkpoint
    its files went through), an earlier file and configuration, `fieldnames`. Left out: an
    earlier writer's ragged rows, byte order mark or blank line (pinned below)."""
    run = draw(st.lists(ops(KEYS), min_size=1, max_size=14))
    mode = draw(st.sampled_from(["w", "a"]))
    every = draw(st.sampled_from([1, 2, 4, 50]))
    fast = draw(st.booleans())
    taken: list[int] = []  # positions of the checkpoints taken so far (index: checkpoint id)
    attempts: list[Attempt] = []
    reached = 0
    for _ in range(draw(st.integers(1, 3))):
        # a checkpoint this history went through (positions up to where it crashed)
        usable = [index for index, position in enumerate(taken) if position <= reached]
        load = draw(st.sampled_from([None, *usable])) if not attempts else draw(
            st.sampled_from(usable)) if usable else None
        if attempts and load is None:
            break  # nothing to resume from
        start = 0 if load is None else taken[load]
        stop = draw(st.integers(start, len(run)))
        # the first process takes one at least: the last one resumes from some checkpoint
        points = sorted(
            draw(st.lists(st.integers(start, stop), min_size=0 if attempts else 1, max_size=3))
        )
        first_id = len(taken)
        taken.extend(points)
        attempts.append(
            Attempt(
                load=load,
                stop=stop,
                checkpoints=list(range(first_id, len(taken))),
                junk=draw(st.lists(ops(JUNK_KEYS), max_size=4)),
                flush=draw(st.booleans()),
                torn=draw(st.lists(st.sampled_from(FILES), max_size=2, unique=True)),
                fast=fast,
            )
        )
        reached = stop
    usable = [index for index, position in enumerate(taken) if position <= reached]
    final_load = draw(st.sampled_from(usable))
    earlier = draw(st.sampled_from([None, "plain", "torn"]))
    declared = draw(st.sampled_from([(), ("late",), ("extra", "x")]))
    config = draw(st.booleans())
    return Plan(run, attempts, final_load, fast, mode, every, taken, earlier, declared, config)


# -- playing plans --------------------------------------------------------------------------


def play(graph: Graph, clock: FakeClock, steps: list[tuple[str, Any]]) -> None:
    for kind, data in steps:
        if kind == "write":
            graph.pipe.write(data)
        elif kind == "batch":
            graph.pipe.write_batch(data)
        elif kind == "flush":
            graph.pipe.flush()
        else:
            clock.advance(data)


EARLIER: dict[str, dict[str, bytes]] = {
    # an earlier run's files, which mode "a" appends to and mode "w" replaces
    "plain": {
        ".csv": b"x,s\r\n0.5,pre\r\n",
        ";": b"x;s\r\n0.5;pre\r\n",
        "\n": b"x,s\n0.5,pre\n",
        ".jsonl": b'{"x": 0.5}\n',
    },
    # the same, ending in a line torn by the earlier run's crash
    "torn": {
        ".csv": b'x,s\r\n0.5,pre\r\n1,"to',
        ";": b"x;s\r\n0.5;pre\r\n1;",
        "\n": b"x,s\n0.5,pre\n1,",
        ".jsonl": b'{"x": 0.5}\n{"x"',
    },
    # rows of another writer: a row with a cell more than the header, one with fewer, a
    # blank line, a byte order mark
    "ragged": {
        ".csv": b"x,s\r\n0.5,pre,3\r\n4\r\n",
        ";": b"x;s\r\n0.5;pre;3\r\n4\r\n",
        "\n": b"x,s\n0.5,pre,3\n4\n",
        ".jsonl": b'{"x": 0.5}\n',
    },
    "bom": {
        ".csv": b"\xef\xbb\xbfx,s\r\n0.5,pre\r\n",
        ";": b"\xef\xbb\xbfx;s\r\n0.5;pre\r\n",
        "\n": b"\xef\xbb\xbfx,s\n0.5,pre\n",
        ".jsonl": b'{"x": 0.5}\n',
    },
    "blank": {
        ".csv": b"x,s\r\n\r\n0.5,pre\r\n",
        ";": b"x;s\r\n\r\n0.5;pre\r\n",
        "\n": b"x,s\n\n0.5,pre\n",
        ".jsonl": b'{"x": 0.5}\n',
    },
}
FORMAT = {"run.csv": ";", "smooth.csv": "\n"}
TORN = {".csv": b'7,"half a row\r\n', ".jsonl": b'{"x": 1.'}


def seed(folder: Path, plan: Plan) -> None:
    """An earlier run's files (with its configuration beside raw.csv), or none."""
    folder.mkdir(parents=True, exist_ok=True)
    if plan.earlier is None:
        return
    for name in FILES:
        (folder / name).write_bytes(EARLIER[plan.earlier][FORMAT.get(name, Path(name).suffix)])
    if plan.config:
        (folder / "raw.csv.config.json").write_text('{"lr": 0.1}')


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def counts(graph: Graph) -> list[Any]:
    return [(type(node).__name__, dict(node.counts)) for node in graph.pipe.nodes()]


Outcome = tuple[dict[str, bytes], list[Any], list[Any]]


def outcome(folder: Path, graph: Graph) -> Outcome:
    """Every file in the folder (data, configuration, leftovers), every node's counts, the
    MemorySink's records."""
    return (
        {name: (folder / name).read_bytes() for name in listing(folder)},
        counts(graph),
        graph.memory.records,
    )


def uninterrupted(folder: Path, plan: Plan) -> Outcome:
    seed(folder, plan)
    clock = FakeClock()
    with fast_path(plan.final_fast):
        graph = build(folder, clock, plan.mode, plan.every, plan.declared)
        play(graph, clock, plan.run)
        graph.pipe.close()
    return outcome(folder, graph)


def interrupted(folder: Path, plan: Plan) -> Outcome:
    seed(folder, plan)
    states: list[bytes] = []
    for attempt in plan.attempts:
        clock = FakeClock()
        # another process: another clock (times a power of two apart, ticks of quarter
        # seconds: every reading and difference exact, so elapsed times are the same)
        clock.advance(len(states) * 1024.0)
        with fast_path(attempt.fast):
            graph = build(folder, clock, plan.mode, plan.every, plan.declared)
            start = 0
            if attempt.load is not None:
                graph.pipe.load_state_dict(pickle.loads(states[attempt.load]))
                start = plan.checkpoints_at[attempt.load]
            position = start
            for checkpoint in attempt.checkpoints:
                target = plan.checkpoints_at[checkpoint]
                play(graph, clock, plan.run[position:target])
                position = target
                states.append(pickle.dumps(graph.pipe.state_dict()))
            play(graph, clock, plan.run[position : attempt.stop])
            play(graph, clock, attempt.junk)
            if attempt.flush:
                graph.pipe.flush()
            crash(graph.pipe)
        for name in attempt.torn:
            with (folder / name).open("ab") as handle:
                handle.write(TORN[Path(name).suffix])
    clock = FakeClock()
    with fast_path(plan.final_fast):
        graph = build(folder, clock, plan.mode, plan.every, plan.declared)
        graph.pipe.load_state_dict(pickle.loads(states[plan.final_load]))
        play(graph, clock, plan.run[plan.checkpoints_at[plan.final_load] :])
        graph.pipe.close()
    return outcome(folder, graph)


def json_lines(text: bytes) -> list[Any]:
    return [json.loads(line) for line in text.decode("utf-8").splitlines()]


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, key order compared."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def check(plan: Plan, base: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_files, expected_counts, expected_records = uninterrupted(base / "whole", plan)
        got_files, got_counts, got_records = interrupted(base / "resumed", plan)
    assert list(got_files) == list(expected_files)
    for name in CSV_FILES:
        assert got_files[name] == expected_files[name], name
    for name in JSONL_FILES:
        assert same(json_lines(got_files[name]), json_lines(expected_files[name])), name
        assert got_files[name] == expected_files[name], name
    assert got_files == expected_files  # the configuration file too
    assert got_counts == expected_counts
    assert same(got_records, expected_records)


def batch(length: int, **starts: float) -> dict[str, Any]:
    return {key: np.arange(length, dtype=np.float64) + start for key, start in starts.items()}


HELD_BLOCK_THEN_WIDENING = Plan(
    # a checkpoint with a block of 600 rows held (polars formats it uninterrupted, the state
    # holds it as rows), then a key that widens every CSV header; resumed twice from it
    run=[
        ("write", {"x": 1.5, "s": "b,c"}),
        ("batch", batch(600, x=0.25, y=2.0)),
        ("write", {"x": 2.0, "late": "two\r\nlines"}),
        ("tick", 3.0),
        ("write", {"y": 1.0}),
    ],
    attempts=[
        Attempt(None, 3, [0], [("write", {"zz": 1})], True, ["raw.csv", "raw.jsonl"], True),
        Attempt(0, 2, [], [("write", {"junk": 'q"uote'}), ("flush", None)], True, [], True),
    ],
    final_load=0,
    final_fast=True,
    mode="w",
    every=50,
    checkpoints_at=[2],
)
OLDER_AFTER_NEWER = Plan(
    # checkpoints before and after a widening; the older one resumed after the newer one
    # was written, then the newer one, each crash leaving a torn line
    run=[
        ("write", {"x": 1.0}),
        ("flush", None),
        ("write", {"x": 2.0, "late": 3}),
        ("flush", None),
        ("write", {"x": 3.0, "y": 4}),
        ("tick", 1.0),
        ("flush", None),
    ],
    attempts=[
        Attempt(None, 7, [0, 1], [], True, ["raw.csv", "run.csv"], False),
        Attempt(0, 7, [], [("write", {"junk": 1})], True, ["smooth.csv", "window.jsonl"], False),
    ],
    final_load=1,
    final_fast=False,
    mode="a",
    every=1,
    checkpoints_at=[2, 4],
    earlier="torn",
    config=True,
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=plans())
@example(plan=HELD_BLOCK_THEN_WIDENING)
@example(plan=OLDER_AFTER_NEWER)
def test_any_chain_of_checkpoints_crashes_and_resumes_ends_as_the_uninterrupted_run(
    plan: Plan, tmp_path_factory: pytest.TempPathFactory
) -> None:
    check(plan, tmp_path_factory.mktemp("plan"))


# -- pinned cases -------------------------------------------------------------------------


def sink_pipe(sink: Any) -> Pipeline:
    return Pipeline("pinned", close_at_exit=False).to(sink)


def csv_at(path: Path, **options: Any) -> CsvSink:
    return CsvSink(path, flush_every=1, flush_seconds=None, **options)


def test_a_file_removed_between_the_crash_and_the_resume_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    pipe = sink_pipe(csv_at(path))
    pipe.write({"a": 1})
    state = pickle.dumps(pipe.state_dict())
    crash(pipe)
    path.unlink()
    resumed = sink_pipe(csv_at(path))
    with pytest.raises(ValueError, match="fewer than"):
        resumed.load_state_dict(pickle.loads(state))
    crash(resumed)


def test_a_file_truncated_below_the_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    pipe = sink_pipe(JsonlSink(path, flush_every=1, flush_seconds=None))
    for step in range(3):
        pipe.write({"step": step})
    state = pickle.dumps(pipe.state_dict())
    crash(pipe)
    with path.open("rb+") as handle:
        handle.truncate(path.stat().st_size - 3)
    resumed = sink_pipe(JsonlSink(path, flush_every=1, flush_seconds=None))
    with pytest.raises(ValueError, match="fewer than"):
        resumed.load_state_dict(pickle.loads(state))
    crash(resumed)


def test_a_file_removed_when_the_checkpoint_had_stored_nothing_resumes_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "train.csv"
    pipe = sink_pipe(CsvSink(path, flush_every=10, flush_seconds=None))
    pipe.write({"a": 1})  # held
    state = pickle.dumps(pipe.state_dict())
    crash(pipe)
    path.unlink()
    resumed = sink_pipe(CsvSink(path, flush_every=10, flush_seconds=None))
    resumed.load_state_dict(pickle.loads(state))
    resumed.write({"a": 2})
    resumed.close()
    assert path.read_bytes() == b"a\r\n1\r\n2\r\n"


def test_a_state_through_torch_save_resumes_as_uninterrupted(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    clock = FakeClock()
    whole = build(tmp_path / "whole", clock, "w", 2)
    records = [{"x": n / 2, "y": n, "s": "t"} for n in range(9)]
    for record in records:
        clock.advance(1.0)
        whole.pipe.write(record)
    whole.pipe.close()

    clock = FakeClock()
    folder = tmp_path / "resumed"
    first = build(folder, clock, "w", 2)
    for record in records[:4]:
        clock.advance(1.0)
        first.pipe.write(record)
    torch.save({"logging": first.pipe.state_dict()}, tmp_path / "checkpoint.pt")
    for record in records[4:7]:
        clock.advance(1.0)
        first.pipe.write(record)
    first.pipe.flush()
    crash(first.pipe)
    clock = FakeClock()
    again = build(folder, clock, "w", 2)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    again.pipe.load_state_dict(saved["logging"])
    for record in records[4:]:
        clock.advance(1.0)
        again.pipe.write(record)
    again.pipe.close()
    for name in FILES:
        assert (folder / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


# -- defects ------------------------------------------------------------------------------


def test_a_column_fieldnames_declared_is_kept_by_a_resume(tmp_path: Path) -> None:
    def run(path: Path, resume: bool) -> bytes:
        pipe = sink_pipe(csv_at(path, mode="a", fieldnames=["c"]))
        state = pickle.dumps(pipe.state_dict())
        pipe.write({"a": 1})  # the first store widens the header to a,c
        if not resume:
            pipe.write({"a": 2})
            pipe.close()
            return path.read_bytes()
        crash(pipe)
        resumed = sink_pipe(csv_at(path, mode="a", fieldnames=["c"]))
        resumed.load_state_dict(pickle.loads(state))
        resumed.write({"a": 1})
        resumed.write({"a": 2})
        resumed.close()
        return path.read_bytes()

    (tmp_path / "whole.csv").write_bytes(b"a\r\n0\r\n")
    (tmp_path / "resumed.csv").write_bytes(b"a\r\n0\r\n")
    expected = run(tmp_path / "whole.csv", resume=False)
    assert expected == b"a,c\r\n0,\r\n1,\r\n2,\r\n"
    assert run(tmp_path / "resumed.csv", resume=True) == expected  # got b"a\r\n0\r\n1\r\n2\r\n"


def test_an_earlier_runs_configuration_file_goes_when_a_resumed_run_starts(
    tmp_path: Path,
) -> None:
    def run(folder: Path, resume: bool) -> tuple[list[str], dict[str, Any]]:
        earlier = JsonlSink(folder / "train.jsonl")
        earlier.log_config({"lr": 0.1})
        earlier.write({"old": 1})
        earlier.close()
        sink = JsonlSink(folder / "train.jsonl", flush_every=10, flush_seconds=None)
        pipe = sink_pipe(sink)
        pipe.write({"a": 0})  # held: nothing stored yet
        if resume:
            state = pickle.dumps(pipe.state_dict())
            crash(pipe)
            sink = JsonlSink(folder / "train.jsonl", flush_every=10, flush_seconds=None)
            pipe = sink_pipe(sink)
            pipe.load_state_dict(pickle.loads(state))
        pipe.write({"a": 1})
        pipe.close()
        assert json_lines((folder / "train.jsonl").read_bytes()) == [{"a": 0}, {"a": 1}]
        return listing(folder), sink.config

    (tmp_path / "whole").mkdir()
    (tmp_path / "resumed").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = run(tmp_path / "whole", resume=False)
        assert expected == (["train.jsonl"], {})
        assert run(tmp_path / "resumed", resume=True) == expected  # got the config file kept


def run_past_a_widening(path: Path, earlier: bytes, resume: bool) -> tuple[bytes, Any]:
    """An earlier writer's file appended to (mode "a"); resumed: from a checkpoint taken
    before a crashed process widened the header with a key the resumed run never writes."""
    path.write_bytes(earlier)
    pipe = sink_pipe(csv_at(path, mode="a"))
    pipe.write({"a": 1, "b": 2})
    if resume:
        state = pickle.dumps(pipe.state_dict())
        pipe.write({"a": 2, "new": 5})  # a key the resumed run does not write: widens
        crash(pipe)
        pipe = sink_pipe(csv_at(path, mode="a"))
        pipe.load_state_dict(pickle.loads(state))
    pipe.write({"a": 2})
    sink = pipe.nodes()[-1]
    pipe.close()
    return path.read_bytes(), sink.counts


@pytest.mark.parametrize(
    "earlier",
    [b"a,b\r\n1,2,3\r\n", b"\xef\xbb\xbfa,b\r\n1,2\r\n", b"a,b\r\n1,2\r\n"],
    ids=["longer-row", "bom", "regular"],
)
def test_rows_of_an_earlier_writer_survive_a_resume_past_a_widening(
    tmp_path: Path, earlier: bytes
) -> None:
    """Byte for byte: a row longer than the header keeps its cell, a byte order mark stays."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, _ = run_past_a_widening(tmp_path / "whole.csv", earlier, resume=False)
        assert expected.startswith(earlier)
        got, counts = run_past_a_widening(tmp_path / "resumed.csv", earlier, resume=True)
    assert got == expected
    assert counts["changed"] == 0


@pytest.mark.parametrize(
    "earlier", [b"a,b\r\n4\r\n", b"a,b\r\n\r\n1,2\r\n"], ids=["shorter-row", "blank-line"]
)
def test_short_rows_of_an_earlier_writer_are_padded_by_a_resume_past_a_widening_counted(
    tmp_path: Path, earlier: bytes
) -> None:
    """A row another writer left shorter than the header (or blank) cannot be told from the
    widening's padding: it comes back padded to the checkpoint header's width, every cell
    holding text kept, counted in `changed`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, _ = run_past_a_widening(tmp_path / "whole.csv", earlier, resume=False)
        got, counts = run_past_a_widening(tmp_path / "resumed.csv", earlier, resume=True)

    def cells(text: bytes) -> list[list[str]]:
        rows = csv.reader(io.StringIO(text.decode("utf-8-sig"), newline=""))
        return [[cell for cell in row if cell] for row in rows]

    assert cells(got) == cells(expected)
    assert counts["changed"] == 1


def test_a_cut_that_falls_inside_a_line_is_not_made_silently(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"

    def make() -> Pipeline:
        return sink_pipe(JsonlSink(path, flush_every=100, flush_seconds=None))

    with fast_path(False):  # json.dumps: {"x": 1}
        pipe = make()
        pipe.write({"x": 1})
        older = pickle.dumps(pipe.state_dict())  # the row held
        pipe.flush()
        newer = pickle.dumps(pipe.state_dict())  # the row stored: 9 bytes
        crash(pipe)
    with fast_path(True):  # orjson: {"x":1}
        pipe = make()
        pipe.load_state_dict(pickle.loads(older))
        pipe.write({"x": 2})
        pipe.flush()  # b'{"x":1}\n{"x":2}\n'
        crash(pipe)
        pipe = make()
        try:
            pipe.load_state_dict(pickle.loads(newer))  # a clear error would do
        except ValueError:
            crash(pipe)
            return
        pipe.write({"x": 2})
        pipe.close()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"x": 1}, {"x": 2}]
    # got b'{"x":1}\n{{"x":2}\n': the cut fell after the second line's "{"


def test_a_crash_inside_a_header_rewrite_leaves_no_file_behind_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    pipe = sink_pipe(csv_at(path))
    pipe.write({"a": 1})
    state = pickle.dumps(pipe.state_dict())
    pipe.write({"a": 2})
    crash(pipe)
    # killed while rewriting the file under a wider header: the rewrite's temporary file
    (tmp_path / ".train.csv.rewrite").write_bytes(b"a,b\r\n1,\r\n")
    resumed = sink_pipe(csv_at(path))
    resumed.load_state_dict(pickle.loads(state))
    resumed.write({"a": 2})
    resumed.close()
    assert path.read_bytes() == b"a\r\n1\r\n2\r\n"
    assert listing(tmp_path) == ["train.csv"]
