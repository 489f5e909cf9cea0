"""Partial mode with windows by step (`every_steps`): each sender ships its partials per
window id; the hub merges them into that window and emits windows in id order once every
live stream delivered its part (or at the deadline). The rows must be record mode's (the
same records, in step order, through the same pipeline) and numpy's statistics of each
window's records; a late partial is counted, never merged into another window.

The first tests drive the hub's body (HubCore) and senders' Accumulators without Ray; the
last runs sender actors on the test run's local Ray."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.partials import has_sketches
from pipeline import Pipeline
from pipeline.integrations.ray import HubCore
from pipeline.integrations.ray import core as core_module
from pipeline.integrations.ray.partials import Accumulator, PartialEntry
from sinks import MemorySink
from tests.integrations.test_ray_partials import (
    ray_up,  # noqa: F401 (a fixture)
    within_rank,
)
from tests.integrations.test_ray_partials_attacks import assert_same_rows

pytestmark = pytest.mark.filterwarnings("ignore:.*came after that window:UserWarning",
                                        "ignore:.*without a usable:UserWarning")

EVERY = 10
STATS = ("mean", "std", "min", "max", "sum", "count", "median")


def central() -> Pipeline:
    return (Pipeline("hub", close_at_exit=False)
            .aggregate(r"^[xy]$", stats=STATS, every_steps=EVERY)
            .to(MemorySink()))


def rows_of(core: HubCore) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = core.call(lambda p: p.nodes()[-1].records, (), {})
    return rows


def record_mode(streams: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every stream's records, in step order, through the same pipeline in one process."""
    pipeline = central()
    for record in sorted((r for s in streams for r in s), key=lambda r: r["steps"]):
        pipeline.write(record)
    pipeline.flush()
    sink = pipeline.nodes()[-1]
    assert isinstance(sink, MemorySink)
    return sink.records


class Sender:
    """What a partial-mode sender does, without Ray: an Accumulator, numbered batches."""

    def __init__(self, core: HubCore, name: str, ship_every: int) -> None:
        plan = core.plan()
        assert plan is not None and plan.every_steps == EVERY
        self.core, self.name, self.ship_every = core, name, ship_every
        self.accumulator = Accumulator(plan)
        self.seq = self.written = self.unshipped = 0

    def write(self, record: dict[str, Any]) -> None:
        self.add(record)
        self.written += 1
        self.unshipped += 1
        if self.unshipped >= self.ship_every:
            self.ship()

    def add(self, record: dict[str, Any]) -> None:
        assert self.accumulator.add(record)

    def take(self) -> list[Any]:
        return self.accumulator.take_windows()

    def ship(self) -> None:
        entries = self.take()
        if entries:
            self.core.push(self.name, self.seq, self.seq, self.unshipped, list(entries), {},
                           (self.written, 0, 0))
            self.seq += 1
        self.unshipped = 0

    def close(self) -> None:
        self.ship()
        self.core.end(self.name, (self.written, 0, self.written))


class RecordSender(Sender):
    """What a record-mode sender does (Hub(partials=False)): the records themselves."""

    def __init__(self, core: HubCore, name: str, ship_every: int) -> None:
        self.core, self.name, self.ship_every = core, name, ship_every
        self.records: list[dict[str, Any]] = []
        self.seq = self.written = self.unshipped = 0

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def take(self) -> list[Any]:
        records, self.records = self.records, []
        return records


def streams_of(steps: list[list[int]], seed: int = 0) -> list[list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    return [
        [{"steps": step, "x": float(rng.normal(5.0 * i, 1.0 + i)),
          "y": float(rng.integers(-3, 4))} for step in own]
        for i, own in enumerate(steps)
    ]


def run_hub(streams: list[list[dict[str, Any]]], order: list[int], ship_every: list[int],
            exact: bool = True, partials: bool = True, **options: Any) -> HubCore:
    """The records go in `order` (stream indices; each stream's records in its own order);
    every sender closes; the hub flushes. The hub expects every sender (as `Hub.sender`
    tells it) before any ships."""
    core = HubCore(central, exact=exact, partials=partials, **options)
    kind = Sender if partials else RecordSender
    senders = [kind(core, f"s{i}", every) for i, every in enumerate(ship_every)]
    for i in range(len(senders)):
        core.expect(f"s{i}")
    position = [0] * len(streams)
    for i in order:
        if position[i] < len(streams[i]):
            senders[i].write(streams[i][position[i]])
            position[i] += 1
    for sender in senders:
        sender.close()
    core.flush()
    return core


def assert_numpy_statistics(rows: list[dict[str, Any]],
                            streams: list[list[dict[str, Any]]]) -> None:
    records = [r for s in streams for r in s]
    windows = sorted({r["steps"] // EVERY for r in records})
    assert len(rows) == len(windows)
    for row, window in zip(rows, windows, strict=True):
        mine = [r for r in records if r["steps"] // EVERY == window]
        assert row["steps"] == max(r["steps"] for r in mine)
        for key in "xy":
            values = np.array([r[key] for r in mine])
            expected = {"mean": values.mean(), "std": values.std(), "min": values.min(),
                        "max": values.max(), "sum": values.sum(), "count": len(values),
                        "median": np.median(values)}
            for stat, value in expected.items():
                assert math.isclose(row[f"{key}_{stat}"], value, rel_tol=1e-12,
                                    abs_tol=1e-12), (window, key, stat)


def interleaved(senders: int, per_sender: int) -> list[list[int]]:
    """Sender i writes steps i, i + senders, ...: every window holds every sender's steps."""
    return [list(range(i, senders * per_sender, senders)) for i in range(senders)]


@pytest.mark.parametrize("senders", [2, 3, 4])
@pytest.mark.parametrize("ship_every", [1, 7, 50])
def test_interleaved_senders_give_numpys_statistics_and_record_modes_rows(
    senders: int, ship_every: int
) -> None:
    streams = streams_of(interleaved(senders, 40), seed=senders)
    order = [i for _ in range(40) for i in range(senders)]  # round robin, in step order
    core = run_hub(streams, order, [ship_every + i for i in range(senders)])
    rows = rows_of(core)
    assert_numpy_statistics(rows, streams)
    assert_same_rows(record_mode(streams), rows)
    status = core.status()
    assert not status.failures and status.records == status.written == senders * 40
    assert {stream.mode for stream in status.streams.values()} == {"partials"}
    assert "windows by step" in core.mode


def test_windows_are_emitted_while_the_senders_run_not_only_at_flush() -> None:
    core = HubCore(central, exact=True)
    senders = [Sender(core, name, 1) for name in "ab"]
    for step in range(35):
        senders[step % 2].write({"steps": step, "x": 1.0, "y": 2.0})
    assert [row["steps"] for row in rows_of(core)] == [9, 19, 29]  # window 3 still open
    for sender in senders:
        sender.close()
    assert [row["steps"] for row in rows_of(core)] == [9, 19, 29, 34]  # the ends closed them


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[list[int]], list[int], list[int]]:
    senders = draw(st.integers(2, 4))
    steps = []
    for _ in range(senders):
        gaps = draw(st.lists(st.integers(0, 12), min_size=1, max_size=25))
        steps.append(list(np.cumsum(gaps).tolist()))
    order = draw(st.permutations([i for i, own in enumerate(steps) for _ in own]))
    ship_every = draw(st.lists(st.integers(1, 8), min_size=senders, max_size=senders))
    return steps, order, ship_every


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(run=runs(), partials=st.booleans())
def test_any_interleaving_of_the_streams_gives_record_modes_rows(
    run: tuple[list[list[int]], list[int], list[int]], partials: bool
) -> None:
    """Partials or records (Hub(partials=False)) shipped in any interleaving: the rows of
    every record in step order in one process."""
    steps, order, ship_every = run
    streams = streams_of(steps)
    core = run_hub(streams, order, ship_every, partials=partials)
    rows = rows_of(core)
    assert_same_rows(record_mode(streams), rows)
    assert_numpy_statistics(rows, streams)
    status = core.status()
    assert not status.failures and sum(map(len, streams)) == status.records == status.written


@pytest.fixture
def hub_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """The hub's monotonic clock, moved by hand."""
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(core_module, "time", SimpleNamespace(monotonic=lambda: clock.now))
    yield clock


def test_a_stream_that_stops_reporting_holds_windows_until_the_deadline_then_is_late(
    hub_clock: SimpleNamespace,
) -> None:
    core = HubCore(central, exact=True, window_deadline=30.0)
    a, b = Sender(core, "a", 1), Sender(core, "b", 1)
    for step in range(0, 15):  # both write windows 0 and 1
        (a if step % 2 else b).write({"steps": step, "x": float(step), "y": 0.0})
    for step in range(15, 50):  # a stopped; b goes on to window 4
        b.write({"steps": step, "x": float(step), "y": 0.0})
    assert [row["steps"] for row in rows_of(core)] == [9]  # window 1 waits for a
    hub_clock.now += 31.0
    b.write({"steps": 50, "x": 50.0, "y": 0.0})  # the hub handles a call: the deadline passed
    assert [row["steps"] for row in rows_of(core)] == [9, 19, 29, 39, 49]
    a.write({"steps": 25, "x": 1e9, "y": 0.0})  # a comes back: window 2 was emitted
    a.write({"steps": 26, "x": 1e9, "y": 0.0})
    b.close()
    status = core.close()
    assert [row["x_count"] for row in rows_of(core)] == [10, 10, 10, 10, 10, 1]
    assert all(row["x_max"] < 1e9 for row in rows_of(core))  # merged into no other window
    stream_a = status.streams["a"]
    # window 1 had its part (a reported it); a never closed: window 5 closed without it too
    assert stream_a.windows_missing == (2, 3, 4, 5)
    assert stream_a.late == 2 and stream_a.failed == 2
    assert any("2 reports came after their window closed" in line for line in status.failures)
    assert any("late: window 2" in line for line in status.failures), status.failures
    assert status.written == status.records + status.earlier + status.lost + status.missing
    assert status.records == 53


def test_no_window_closes_by_delivery_before_every_expected_sender_shipped_or_ended() -> None:
    core = HubCore(central, exact=True)
    for name in "abc":
        core.expect(name)
    a, b = Sender(core, "a", 1), Sender(core, "b", 1)
    a.write({"steps": 3, "x": 1.0, "y": 0.0})
    b.write({"steps": 24, "x": 2.0, "y": 0.0})
    a.write({"steps": 31, "x": 1.0, "y": 0.0})
    assert rows_of(core) == []  # c has not shipped: its window 0 may still come
    c = Sender(core, "c", 1)
    c.write({"steps": 5, "x": 4.0, "y": 0.0})
    c.write({"steps": 12, "x": 4.0, "y": 0.0})
    assert [row["x_count"] for row in rows_of(core)] == [2]  # window 0: a and c


def test_a_sender_that_ends_without_shipping_releases_the_windows() -> None:
    core = HubCore(central, exact=True)
    for name in "ab":
        core.expect(name)
    a = Sender(core, "a", 1)
    a.write({"steps": 3, "x": 1.0, "y": 0.0})
    a.write({"steps": 14, "x": 1.0, "y": 0.0})
    assert rows_of(core) == []
    core.end("b")  # b closed having written nothing
    assert [row["steps"] for row in rows_of(core)] == [3]


def test_a_stream_that_ends_releases_the_windows_waiting_for_it() -> None:
    core = HubCore(central, exact=True)
    a, b = Sender(core, "a", 1), Sender(core, "b", 1)
    a.write({"steps": 3, "x": 1.0, "y": 0.0})
    b.write({"steps": 4, "x": 2.0, "y": 0.0})
    b.write({"steps": 27, "x": 2.0, "y": 0.0})
    assert rows_of(core) == []  # window 0 waits for a
    a.close()
    assert [row["x_count"] for row in rows_of(core)] == [2]
    b.close()
    core.flush()
    assert [row["steps"] for row in rows_of(core)] == [4, 27]


def test_flush_emits_every_open_window_in_id_order_and_later_parts_are_late() -> None:
    core = HubCore(central, exact=True)
    a, b = Sender(core, "a", 1), Sender(core, "b", 1)
    a.write({"steps": 31, "x": 1.0, "y": 0.0})
    b.write({"steps": 12, "x": 2.0, "y": 0.0})
    core.flush()
    assert [row["steps"] for row in rows_of(core)] == [12, 31]
    b.write({"steps": 13, "x": 3.0, "y": 0.0})
    status = core.status()
    assert status.streams["b"].late == 1 and len(rows_of(core)) == 2


def test_without_steps_a_senders_records_join_its_first_window_and_are_counted() -> None:
    core = HubCore(central, exact=True)
    a = Sender(core, "a", 10)
    a.write({"x": 1.0, "y": 0.0})  # no step yet
    for step in (3, 4):
        a.write({"steps": step, "x": 1.0, "y": 0.0})
    a.write({"steps": None, "x": 5.0, "y": 0.0})  # joins window 0
    a.close()
    core.flush()
    [row] = rows_of(core)
    assert row["x_count"] == 4 and row["steps"] == 4
    aggregate = core.call(lambda p: p.nodes()[1], (), {})
    assert aggregate.counts["stepless"] == 2


@pytest.mark.parametrize("deadline", [-1.0, math.nan, True, "60"])
def test_the_window_deadline_is_a_number_of_seconds(deadline: Any) -> None:
    with pytest.raises(ValueError, match="window_deadline"):
        HubCore(central, window_deadline=deadline)


def test_windows_by_step_ship_one_partial_per_window_and_say_so() -> None:
    core = HubCore(central)
    plan = core.plan()
    assert plan is not None and (plan.every_steps, plan.step_key) == (EVERY, "steps")
    accumulator = Accumulator(plan)
    for step in (1, 2, 11, 35, 36):
        accumulator.add({"steps": step, "x": 1.0})
    entries = accumulator.take_windows()
    assert [(e.window, e.records, e.step, e.complete) for e in entries] == [
        (0, 2, 2, True), (1, 1, 11, True), (3, 2, 36, False)]
    assert "windows by step" in core.mode and "every 10 of 'steps'" in core.mode
    with pytest.raises(ValueError, match="take_windows"):
        accumulator.take()


@pytest.mark.parametrize("as_batches", [False, True])
def test_in_record_mode_too_the_hub_holds_each_window_until_every_stream_passed_it(
    as_batches: bool,
) -> None:
    """Hub(partials=False): records, not partials, report the windows they reach; the rows
    are record mode's in one process however the streams interleave."""
    streams = streams_of(interleaved(3, 30), seed=3)
    core = HubCore(central, partials=False)
    assert core.plan() is None and core.by_step()
    for i in range(3):
        core.expect(f"s{i}")
    seqs = [0, 0, 0]
    for start in range(0, 30, 4):  # each stream ships 4 records at a time, in turn
        for i in (2, 0, 1):
            chunk = streams[i][start : start + 4]
            entry: Any = chunk
            if as_batches:
                entry = [({key: [r[key] for r in chunk] for key in chunk[0]}, len(chunk))]
            core.push(f"s{i}", seqs[i], seqs[i], len(chunk), entry, {},
                      (start + len(chunk), 0, start))
            seqs[i] += 1
    assert len(rows_of(core)) == 8  # windows 0 to 7 passed by every stream; 8 waits
    for i in range(3):
        core.end(f"s{i}", (30, 0, 30))
    core.flush()
    assert_same_rows(record_mode(streams), rows_of(core))
    assert not core.status().failures


@pytest.mark.skipif(not has_sketches(), reason="the sketch needs datasketches")
def test_with_sketches_the_median_is_within_the_rank_error_and_the_rest_exact() -> None:
    streams = streams_of(interleaved(3, 400), seed=7)
    order = [i for _ in range(400) for i in range(3)]
    core = run_hub(streams, order, [64, 100, 37], exact=False)
    rows = rows_of(core)
    records = [r for s in streams for r in s]
    assert len(rows) == 120
    for row in rows:
        values = np.array([r["x"] for r in records if r["steps"] // EVERY
                           == row["steps"] // EVERY])
        assert within_rank(values, row["x_median"], 0.5)
        assert math.isclose(row["x_std"], values.std(), rel_tol=1e-12)
        assert row["x_count"] == len(values)


def test_a_relay_merging_its_senders_partials_keeps_them_per_window() -> None:
    core = HubCore(central, exact=True)
    plan = core.plan()
    assert plan is not None
    senders = [Accumulator(plan) for _ in range(2)]
    relay = Accumulator(plan)
    for step in range(25):
        senders[step % 2].add({"steps": step, "x": float(step), "y": 0.0})
    for sender in senders:
        for entry in sender.take_windows():
            relay.merge(entry)
    entries = relay.take_windows()
    assert [(e.window, e.records, e.step) for e in entries] == [(0, 10, 9), (1, 10, 19),
                                                               (2, 5, 24)]
    core.push("relay/node/1", 0, 0, 25, list(entries), {}, (25, 0, 0))
    core.flush()
    assert [row["x_sum"] for row in rows_of(core)] == [45.0, 145.0, 110.0]


def test_a_checkpoint_keeps_every_open_window_of_the_hubs_aggregate() -> None:
    plan = HubCore(central, exact=True).plan()
    assert plan is not None
    accumulator = Accumulator(plan)
    for step in (3, 15, 27):
        accumulator.add({"steps": step, "x": float(step), "y": 0.0})
    entries = accumulator.take_windows()
    before = central()
    aggregate = before.nodes()[1]
    aggregate.hold_windows()  # as the hub does
    for entry in entries:
        aggregate.add_partials(entry.partials, entry.last, entry.records, entry.order,
                               window=entry.window, step=entry.step)
    after = central()
    after.load_state_dict(before.state_dict())
    after.nodes()[1].emit_windows(1)
    assert [row["steps"] for row in after.nodes()[-1].records] == [3, 15]
    assert not after.nodes()[1].add_partials({}, {"y": 0.0}, 1, window=0)  # late
    after.flush()
    assert [row["steps"] for row in after.nodes()[-1].records] == [3, 15, 27]


def test_an_entry_with_a_window_pickles_with_it() -> None:
    import pickle

    entry = PartialEntry({}, {"y": 1}, ("y",), 3, window=4, step=47, stepless=1,
                         complete=True)
    copy = pickle.loads(pickle.dumps(entry))
    assert (copy.window, copy.step, copy.stepless, copy.complete, copy.records) == (
        4, 47, 1, True, 3)


# -- on a real local Ray -----------------------------------------------------------------


class StepWriter:
    """A Ray actor holding one sender: writes the steps it is given, flushes on demand."""

    def __init__(self, log: Any, worker: int) -> None:
        self.log, self.worker = log, worker

    def write(self, steps: list[int]) -> int:
        for step in steps:
            self.log.write({"steps": step, "x": value(self.worker, step), "y": 1.0})
        self.log.flush()
        return int(self.log.sent)

    def close(self) -> tuple[int, int, int, int]:
        self.log.close()
        return self.log.written, self.log.sent, self.log.lost, self.log.unconfirmed


def value(worker: int, step: int) -> float:
    return math.sin(step * 0.37 + worker) * (10.0 + worker)


def set_hub_clock(_: Pipeline, now: float) -> None:
    """Runs in the hub's actor (`hub.call`): from now on its window deadlines read the time
    `now`, not the real clock."""
    from pipeline.integrations.ray import core

    vars(core)["time"] = SimpleNamespace(monotonic=lambda: now)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_up")
def test_sender_actors_on_ray_give_numpys_rows_and_a_silent_one_is_closed_out() -> None:
    import ray

    from pipeline.integrations.ray import Hub

    # The hub's clock stands still while the phases below write (a dozen sequential Ray
    # calls each: seconds, or more, on a busy machine, which with the real clock closed
    # window 4 before its time) and is moved past the deadline by hand.
    deadline = 10.0
    hub = Hub(central, exact=True, batch_size=64, window_deadline=deadline)
    hub.call(set_hub_clock, 1000.0)
    assert "windows by step" in hub.mode
    writer = ray.remote(num_cpus=0.25)(StepWriter)
    actors = [writer.remote(hub.sender(worker=i), i) for i in range(3)]
    written: dict[int, list[int]] = {0: [], 1: [], 2: []}

    def write(i: int, steps: list[int]) -> None:
        ray.get(actors[i].write.remote(steps))
        written[i] += steps

    for start in range(0, 40, 10):  # every actor writes windows 0 to 3, interleaved steps
        for i in range(3):
            write(i, list(range(start + i, start + 10, 3)))
    write(2, [41])  # then actor 2 falls silent in window 4
    for start in range(40, 80, 10):  # the others go on to window 7
        for i in range(2):
            write(i, list(range(start + i, start + 10, 3)))
    rows = hub.call(lambda p: p.nodes()[-1].records)
    assert [row["steps"] for row in rows] == [9, 19, 29, 39]  # window 4 waits for actor 2
    hub.call(set_hub_clock, 1000.0 + deadline + 0.5)
    write(0, [80])  # a call after the deadline: windows 4 to 7 close without actor 2
    write(2, [45])  # actor 2 comes back, late for window 4
    counts = ray.get([actor.close.remote() for actor in actors])
    hub.flush()
    rows = hub.call(lambda p: p.nodes()[-1].records)
    stored = [(step, i) for i, steps in written.items() for step in steps if step != 45]
    assert [row["steps"] for row in rows] == [9, 19, 29, 39, 49, 59, 69, 79, 80]
    for row in rows:
        window = row["steps"] // EVERY
        values = np.array([value(i, s) for s, i in stored if s // EVERY == window])
        assert row["x_count"] == len(values)
        assert math.isclose(row["x_mean"], values.mean(), rel_tol=1e-12)
        assert math.isclose(row["x_std"], values.std(), rel_tol=1e-12, abs_tol=1e-12)
        assert (row["x_min"], row["x_max"]) == (values.min(), values.max())
        assert math.isclose(row["x_median"], float(np.median(values)), rel_tol=1e-12)
    with pytest.warns(RuntimeWarning, match="closed with failures"):
        status = hub.close()
    assert status is not None
    silent = next(s for s in status.streams.values() if s.tags.get("worker") == 2)
    assert silent.windows_missing == (5, 6, 7) and silent.late == 1 and silent.failed == 1
    assert any("late: window 4" in line for line in status.failures), status.failures
    sent = sum(c[1] for c in counts)
    assert [c[2] + c[3] for c in counts] == [0, 0, 0]
    assert sent == sum(map(len, written.values())) == status.records == status.written
    assert sent == status.records + status.earlier + status.lost + status.missing


def dropping_the_step() -> Pipeline:
    """A central pipeline whose key filter drops the step key before the aggregate: its
    aggregate never sees a step."""
    return (Pipeline("hub", close_at_exit=False)
            .drop("^steps$")
            .aggregate(r"^[xy]$", stats=STATS, every_steps=EVERY)
            .to(MemorySink()))


def test_a_step_key_the_key_filters_drop_is_no_step_in_partial_mode_as_in_record_mode() -> None:
    """The aggregate sees the records the key filters pass: without its step key they have
    no step (they join the open window, counted stepless), in partial mode too, where the
    senders cut windows before the filters."""
    streams = streams_of(interleaved(2, 15), seed=5)
    rows = {}
    for partials in (False, True):
        core = HubCore(dropping_the_step, exact=True, partials=partials)
        kind = Sender if partials else RecordSender
        if partials:  # the Sender helper checks the plan's window length
            plan = core.plan()
            assert plan is not None and plan.every_steps == EVERY
        senders = [kind(core, f"s{i}", 4) for i in range(2)]
        for position in range(15):
            for i in range(2):
                senders[i].write(streams[i][position])
        for sender in senders:
            sender.close()
        core.flush()
        rows[partials] = rows_of(core)
        aggregate = core.call(lambda p: p.nodes()[2], (), {})
        assert aggregate.counts["stepless"] == 30
    assert [row["x_count"] for row in rows[False]] == [30]
    assert_same_rows(rows[False], rows[True])


@pytest.mark.parametrize("as_batch", [False, True])
def test_in_record_mode_a_late_record_is_counted_in_its_streams_late_and_named(
    as_batch: bool,
) -> None:
    """As a late partial: the stream that sent a record of an emitted window has it in its
    `late` and `failed`, and `failures` names it (not only the aggregate's counts)."""
    core = HubCore(central, exact=True, partials=False)
    a, b = RecordSender(core, "a", 1), RecordSender(core, "b", 1)
    a.write({"steps": 31, "x": 1.0, "y": 0.0})
    b.write({"steps": 12, "x": 2.0, "y": 0.0})
    core.flush()
    late = [{"steps": 13, "x": 3.0, "y": 0.0}, {"steps": 14, "x": 4.0, "y": 0.0}]
    entry: Any = late
    if as_batch:
        entry = [({key: [r[key] for r in late] for key in late[0]}, len(late))]
    core.push("b", 1, 1, 2, entry, {}, (3, 0, 1))
    a.close()
    b.close()
    status = core.close()
    assert [row["x_count"] for row in rows_of(core)] == [1, 1]
    stream_b = status.streams["b"]
    assert stream_b.late == 2 and stream_b.failed == 2
    assert any("2 reports came after their window closed (late)" in line
               for line in status.failures), status.failures
    assert status.written == status.records + status.earlier + status.lost + status.missing


def test_a_senders_window_step_is_the_value_written_even_if_mutated_after() -> None:
    """A step counter incremented in place (a numpy 0-d array) between a sender's writes:
    each entry's step is its window's largest step as written."""
    plan = HubCore(central, exact=True).plan()
    assert plan is not None
    accumulator = Accumulator(plan)
    step = np.array(0)
    for _ in range(15):
        accumulator.add({"steps": step, "x": 1.0})
        step += 1
    entries = accumulator.take_windows()
    assert [int(entry.step) for entry in entries] == [9, 14]


def test_a_record_without_a_step_joins_its_own_streams_window_in_record_mode_too() -> None:
    """Partial mode puts a record without a step into its sender's current window; record
    mode must give the same rows, whatever another stream sent in between."""
    def interleave(partials: bool) -> list[dict[str, Any]]:
        core = HubCore(central, exact=True, partials=partials)
        kind = Sender if partials else RecordSender
        a, b = kind(core, "a", 1), kind(core, "b", 1)
        a.write({"steps": 3, "x": 1.0, "y": 0.0})
        b.write({"steps": 4, "x": 2.0, "y": 0.0})
        a.write({"steps": 15, "x": 3.0, "y": 0.0})
        b.write({"steps": 5, "x": 4.0, "y": 0.0})  # the hub's aggregate opens window 0 again
        a.write({"x": 100.0, "y": 0.0})  # a's current window is 1
        a.close()
        b.close()
        core.flush()
        return rows_of(core)

    partial_rows = interleave(True)
    assert [row["x_max"] for row in partial_rows] == [4.0, 100.0]
    assert_same_rows(interleave(False), partial_rows)


def test_in_a_batch_a_row_without_a_step_joins_the_window_of_its_streams_row_before() -> None:
    """Record mode, batches: a row without a step joins the window of the row before it in
    its batch, or its stream's current window for a first row; never another stream's."""
    core = HubCore(central, exact=True, partials=False)
    core.expect("a")
    core.expect("b")

    def push(stream: str, seq: int, steps: list[Any], xs: list[float]) -> None:
        columns = {"steps": steps, "x": xs, "y": [0.0] * len(xs)}
        core.push(stream, seq, seq, len(xs), [(columns, len(xs))], {}, (seq + len(xs), 0, 0))

    push("a", 0, [3, 15], [1.0, 3.0])  # a is in window 1
    push("b", 0, [4, 5], [2.0, 4.0])  # the hub's aggregate opens window 0 again
    push("a", 1, [None, 27, None], [100.0, 5.0, 200.0])  # window 1, then window 2
    core.end("a")
    core.end("b")
    core.flush()
    assert [(row["steps"], row["x_max"], row["x_count"]) for row in rows_of(core)] == [
        (5, 4.0, 3), (15, 100.0, 2), (27, 200.0, 2)]
