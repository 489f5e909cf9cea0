"""Many Ray workers, one pipeline: the Hub on a real local Ray cluster (2 CPUs, no dashboard;
the test run's one Ray, `ray_session` in tests/conftest.py).

Workers are real Ray tasks and actors writing known streams through `hub.sender(...)`; the
central pipeline lives in the hub actor, and what it holds is fetched with `hub.call(...)` or
read back from its CSV file.
"""

from __future__ import annotations

import csv
import functools
import os
import pickle
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from pipeline import Pipeline
from pipeline.core.node import ClosedError, Record
from pipeline.integrations.ray import Hub, HubCore, HubSender
from sinks import CsvSink, MemorySink
from sinks.base import Sink
from tests.integrations.local_ray import wait_until_dead

pytestmark = pytest.mark.slow

STATS = ("mean", "std", "median", "max", "min")


# -- what runs in the hub actor and in the workers (module level: Ray pickles them) ---------


def central(csv_path: Path | None = None) -> Pipeline:
    """Every record into a MemorySink (and a CSV file), and one aggregate over all workers."""
    targets: list[Any] = [MemorySink()]
    if csv_path is not None:
        targets.append(CsvSink(csv_path))
    window = Pipeline("window").aggregate(r"^return$", stats=STATS).to(MemorySink())
    return Pipeline("hub").to(*targets, window)


def csv_only(csv_path: Path) -> Pipeline:
    """A central CSV file that writes only on flush and close (rows in memory until then)."""
    return Pipeline("hub").to(CsvSink(csv_path, flush_every=1_000_000, flush_seconds=None))


def all_records(pipeline: Pipeline) -> list[dict[str, Any]]:
    sink = pipeline.steps[1]
    assert isinstance(sink, MemorySink)
    return sink.records


def window_records(pipeline: Pipeline) -> list[dict[str, Any]]:
    window = next(n for n in pipeline.nodes() if isinstance(n, Pipeline) and n.name == "window")
    sink = window.nodes()[-1]
    assert isinstance(sink, MemorySink)
    return sink.records


def stream(worker: int, n: int) -> list[dict[str, Any]]:
    """The known stream worker `worker` writes: steps 0..n-1 with seeded returns."""
    returns = np.random.default_rng(worker).normal(10.0 * worker, 3.0, size=n)
    return [{"step": step, "return": float(value)} for step, value in enumerate(returns)]


@ray.remote(num_cpus=0.25)
def write_stream(log: HubSender, worker: int, n: int) -> tuple[int, int, int, int]:
    """A Ray task: writes its stream record by record, closes, returns its counts."""
    with log:
        for record in stream(worker, n):
            log.write(record)
    return log.written, log.sent, log.lost, log.unconfirmed


@ray.remote(num_cpus=0.25)
class Learner:
    """A Ray actor: writes its stream as column batches of 50 records."""

    def __init__(self, log: HubSender) -> None:
        self.log = log

    def run(self, worker: int, n: int) -> None:
        records = stream(worker, n)
        for start in range(0, n, 50):
            chunk = records[start : start + 50]
            self.log.write_batch(
                {
                    "step": [r["step"] for r in chunk],
                    "return": np.array([r["return"] for r in chunk]),
                }
            )

    def close(self) -> tuple[int, int, int, int]:
        self.log.close()
        return self.log.written, self.log.sent, self.log.lost, self.log.unconfirmed


class GatedSink(Sink):
    """A congested backend: a record waits (bounded) until the file `gate` exists, which the
    test makes when the backend may catch up; keeps what it took."""

    def __init__(self, gate: Path) -> None:
        super().__init__()
        self.gate = gate
        self.records: list[dict[str, Any]] = []

    def write(self, data: Record) -> None:
        import time

        deadline = time.monotonic() + 300.0
        while not self.gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.records.append(dict(data))


def gated_central(gate: Path) -> Pipeline:
    return Pipeline("slow").to(GatedSink(gate))


def slow_records(pipeline: Pipeline) -> list[dict[str, Any]]:
    sink = pipeline.steps[1]
    assert isinstance(sink, GatedSink)
    return sink.records


def failing_factory() -> Pipeline:
    raise ValueError("no such sink")


def _cannot_rebuild() -> Any:
    raise RuntimeError("cannot rebuild this value here")


class Unloadable:
    """A value that pickles but cannot be unpickled (like a class the hub's process lacks)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_cannot_rebuild, ())


def wait_until_restarted(hub: Hub, seconds: float = 60.0) -> None:
    """Waits until the hub answers from its restarted instance (a call during the restart
    fails as a dead actor's, or is answered by the dying one)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if hub.status().restarted:
                return
        except ray.exceptions.RayActorError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the hub was not restarted within {seconds} s")


def csv_steps(path: Path) -> list[int]:
    """The steps of a CSV file's rows, in order."""
    with path.open(newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


# -- the union, exactly once, and one aggregate over every worker --------------------------


def test_many_workers_reach_one_pipeline_exactly_once_in_order(
    ray_session: Path, tmp_path: Path
) -> None:
    csv_path = tmp_path / "all.csv"
    # 13 batches per worker through 4 slots: a write waits for the hub, which a busy machine
    # may keep past the 5 s default (the batch would be counted lost as "behind")
    hub = Hub(
        functools.partial(central, csv_path),
        batch_size=32,
        max_in_flight=4,
        write_timeout=120.0,
        flush_timeout=120.0,
    )
    n = 400
    tasks = [write_stream.remote(hub.sender(worker=w), w, n) for w in range(3)]
    learner = Learner.remote(hub.sender(worker=3))  # type: ignore[attr-defined]
    ray.get(learner.run.remote(3, n))
    counts = [*ray.get(tasks), ray.get(learner.close.remote())]
    # Every worker's sender: all written, all acknowledged, nothing lost or unconfirmed.
    assert counts == [(n, n, 0, 0)] * 4

    hub.flush()  # the aggregate emits its window over everything received
    received = hub.call(all_records)
    windows = hub.call(window_records)
    status = hub.close()
    with pytest.raises(ClosedError):  # said at once, whether or not the actor is gone yet
        hub.flush()

    # The union, each record exactly once, each worker's records in the order it wrote them.
    assert len(received) == 4 * n
    for w in range(4):
        mine = [{k: v for k, v in r.items() if k != "worker"} for r in received if r["worker"] == w]
        assert mine == stream(w, n)
    # One aggregate over all workers equals numpy over the union.
    union = np.array([r["return"] for w in range(4) for r in stream(w, n)])
    assert len(windows) == 1
    expected = {
        "return_mean": np.mean(union),
        "return_std": np.std(union),
        "return_median": np.median(union),
        "return_max": np.max(union),
        "return_min": np.min(union),
    }
    assert {key: windows[0][key] for key in expected} == pytest.approx(expected, rel=1e-12)
    # The hub's books agree, every stream ended, and closing lost nothing: the file has all.
    assert status is not None and status.closed
    assert status.records == 4 * n and status.duplicates == 0
    assert sorted(s.tags["worker"] for s in status.streams.values()) == [0, 1, 2, 3]
    assert all(s.ended and s.records == n and s.held == 0 for s in status.streams.values())
    with csv_path.open(newline="") as handle:
        rows = [
            (int(r["worker"]), int(r["step"]), float(r["return"])) for r in csv.DictReader(handle)
        ]
    assert sorted(rows) == sorted(
        (w, r["step"], r["return"]) for w in range(4) for r in stream(w, n)
    )


def test_flush_delivers_a_senders_records_and_each_copy_is_a_stream(ray_session: Path) -> None:
    hub = Hub(central, flush_seconds=None)
    sender = hub.sender(run="a")
    for record in stream(0, 10):
        sender.write(record)
    assert hub.call(lambda p: len(all_records(p))) == 0  # held in the sender: a batch is 256
    sender.flush()  # ships and waits for the acknowledgement, without flushing the hub
    assert sender.sent == 10
    assert hub.call(lambda p: len(all_records(p))) == 10

    copy = pickle.loads(pickle.dumps(sender))  # what a Ray task receives
    assert isinstance(copy, HubSender) and copy.tags == {"run": "a"}
    assert copy.stream != sender.stream and copy.written == 0
    copy.write({"step": 99})
    copy.close()
    sender.write({"step": 10})
    status = hub.close()  # closes the senders this process made (`sender`)
    assert sender.closed and sender.sent == 11
    assert status is not None
    assert sorted(s.records for s in status.streams.values()) == [1, 11]
    assert all(s.ended for s in status.streams.values())


def test_the_hub_applies_each_batch_once_and_in_sequence_order(ray_session: Path) -> None:
    """The protocol a sender speaks: (stream, sequence number) is applied once; a batch
    arriving ahead of its predecessor waits for it; a sender's acknowledged mark releases it."""
    hub = Hub(central)
    push = hub.actor.push.remote

    def batch(*steps: int) -> list[dict[str, Any]]:
        return [{"step": step} for step in steps]

    assert ray.get(push("s", 0, 0, 2, batch(0, 1), {})) == 1
    assert ray.get(push("s", 0, 0, 2, batch(0, 1), {})) == 1  # sent again: not applied
    assert ray.get(push("s", 2, 1, 1, batch(4), {})) == 1  # ahead of batch 1: held
    assert ray.get(push("s", 1, 1, 2, batch(2, 3), {})) == 3  # fills the gap: 1 then 2
    # A restarted hub meets a stream mid-way: the sender's mark says what came before.
    assert ray.get(push("t", 7, 5, 1, batch(70), {})) == 5  # waits for 5 and 6
    assert ray.get(hub.actor.sync.remote("t", 7)) == 8  # 5 and 6 were applied earlier
    assert [r["step"] for r in hub.call(all_records)] == [0, 1, 2, 3, 4, 70]
    with pytest.warns(RuntimeWarning, match="2 senders had not closed"):
        status = hub.close()  # waits 1 s (grace) for streams that never said they ended
    assert status is not None
    assert status.streams["s"].duplicates == 1 and status.streams["s"].records == 5


# -- faults: a dead hub, a restarted hub, a slow hub ---------------------------------------


def test_a_killed_hub_makes_senders_warn_and_count_not_hang(ray_session: Path) -> None:
    # Timeouts a busy machine cannot run out before the kill (a write or flush that timed out
    # would count records lost); after it a dead hub's calls fail at once, whatever they are.
    hub = Hub(central, batch_size=10, write_timeout=120.0, flush_timeout=120.0)
    sender = hub.sender(worker=0)
    for record in stream(0, 100):
        sender.write(record)
    sender.flush()
    assert sender.sent == 100
    ray.kill(hub.actor)
    wait_until_dead(hub.actor)  # dead for good (max_restarts=0)

    with pytest.warns(RuntimeWarning, match="could not send 10 records: the hub actor died"):
        for record in stream(0, 200):
            sender.write(record)
        sender.flush()
    with pytest.warns(RuntimeWarning, match="100 records delivered, 200 lost"):
        sender.close()
    assert (sender.written, sender.sent, sender.lost, sender.unconfirmed) == (300, 100, 200, 0)
    # A worker task on the dead hub finishes too, and counts everything as lost.
    assert ray.get(write_stream.remote(hub.sender(worker=1), 1, 50)) == (50, 0, 50, 0)
    with pytest.warns(RuntimeWarning, match="the hub actor died before it was closed"):
        assert hub.close() is None


def test_a_restarted_hub_rebuilds_its_pipeline_and_the_stream_goes_on(
    ray_session: Path, tmp_path: Path
) -> None:
    """Ray restarts the hub (max_restarts=1); factory() rebuilds the pipeline, whose CSV sink
    (mode "w", the default) continues the file: every record is in it once, in order (the
    hub acknowledges a batch only once it is stored, and nothing was in flight at the
    crash). The restarted hub says that a restart without a checkpoint is at least once."""
    csv_path = tmp_path / "all.csv"
    hub = Hub(
        functools.partial(csv_only, csv_path), batch_size=10, max_restarts=1, write_timeout=30.0
    )
    sender = hub.sender(worker=0)
    for step in range(100):
        sender.write({"step": step})
    hub.flush()  # sender acknowledged, then the CSV file written: 0..99 are on disk
    for step in range(100, 110):
        sender.write({"step": step})
    sender.flush()  # applied and stored by the hub, acknowledged

    ray.kill(hub.actor, no_restart=False)  # the crash
    wait_until_restarted(hub)
    for step in range(110, 200):
        sender.write({"step": step})
    sender.close()
    assert (sender.written, sender.sent, sender.lost) == (200, 200, 0)
    with pytest.warns(RuntimeWarning, match="restarted without a checkpoint"):
        status = hub.close()
    assert status is not None and status.restarted

    assert csv_steps(csv_path) == list(range(200))


class DiesAfterStoring(MemorySink):
    """Kills its actor's process when flushed holding step `fatal`, unless the actor is a
    restarted one: the hub dies after its other sinks stored the batch and before it answers
    (the batch was applied, stored and not acknowledged)."""

    def __init__(self, fatal: int) -> None:
        super().__init__()
        self.fatal = fatal

    def flush(self) -> None:
        super().flush()
        with warnings.catch_warnings():  # Ray warns about its own use of actor_id
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = ray.get_runtime_context().was_current_actor_reconstructed
        if not restarted and any(r.get("step") == self.fatal for r in self.records):
            os._exit(1)


def csv_then_death(csv_path: Path) -> Pipeline:
    """The CSV file first (flushed first), then the sink that kills the hub after it."""
    return Pipeline("hub").to(CsvSink(csv_path, flush_seconds=None), DiesAfterStoring(115))


def test_a_batch_stored_and_not_acknowledged_when_the_hub_dies_is_stored_twice_and_said(
    ray_session: Path, tmp_path: Path
) -> None:
    """Without a checkpoint a restart is at least once: the dead hub stored batch 11 (steps
    110-119) and died before answering; Ray re-sends the call to the restarted hub, which
    cannot know the batch was stored, and stores it again. Nothing is lost, the doubled rows
    are exactly that batch's, and the hub says so (status and close's warning); with
    checkpoint= the same death stores each row once (test_ray_hub_exactly.py)."""
    csv_path = tmp_path / "all.csv"
    hub = Hub(
        functools.partial(csv_then_death, csv_path),
        batch_size=10,
        max_restarts=1,
        write_timeout=60.0,
        flush_timeout=60.0,
    )
    sender = hub.sender(worker=0)
    for step in range(200):
        sender.write({"step": step})
    sender.close()
    assert (sender.written, sender.sent, sender.lost) == (200, 200, 0)
    status = hub.status()
    assert status.restarted
    assert any("restarted without a checkpoint" in line for line in status.failures)
    with pytest.warns(RuntimeWarning, match="at least once across a restart"):
        hub.close()

    assert csv_steps(csv_path) == [*range(120), *range(110, 200)]


def test_a_slow_hub_never_blocks_a_worker_beyond_the_write_timeout(
    ray_session: Path, tmp_path: Path
) -> None:
    """A hub stuck on its first record until the test lets it go on, a sender allowed 2
    batches in flight and 0.2 s of waiting: the third write waits 0.2 s, then it and every
    write while the hub is still behind are dropped and counted, without waiting; once the
    hub caught up, sending resumes. (The hub is held by the test, not by a sleep: a busy
    machine cannot let it catch up in the middle of the writes.)"""
    gate = tmp_path / "caught-up"
    hub = Hub(
        functools.partial(gated_central, gate),
        batch_size=1,
        max_in_flight=2,
        write_timeout=0.2,
        flush_timeout=120.0,
    )
    sender = hub.sender()
    with pytest.warns(RuntimeWarning, match="could not send 1 records: the hub is behind"):
        for step in range(30):
            sender.write({"step": step})
    assert (sender.sent + sender.in_flight, sender.lost) == (2, 28)
    gate.touch()  # the hub catches up
    sender.flush()  # waits for the hub to apply the two in flight
    for step in range(30, 32):
        sender.write({"step": step})
    sender.flush()
    assert (sender.sent, sender.lost) == (4, 28)
    assert [r["step"] for r in hub.call(slow_records)] == [0, 1, 30, 31]
    with pytest.warns(RuntimeWarning, match="4 records delivered, 28 lost"):
        hub.close()


def test_a_batch_the_hub_cannot_take_is_lost_alone_and_the_stream_goes_on(
    ray_session: Path,
) -> None:
    """A value the hub cannot unpickle fails its whole batch (2 records here): those are
    counted as lost, and every later batch is still applied, in order, without waiting."""
    # Timeouts a busy machine cannot run out: a hub slow to answer must not count as behind.
    hub = Hub(central, batch_size=2, max_in_flight=2, write_timeout=120.0, flush_timeout=120.0)
    sender = hub.sender()
    with pytest.warns(RuntimeWarning, match="could not send 2 records: the hub failed"):
        for step in range(20):
            sender.write({"step": step, "bad": Unloadable()} if step == 2 else {"step": step})
        sender.flush()
    with pytest.warns(RuntimeWarning, match="18 records delivered, 2 lost, 0 unconfirmed"):
        sender.close()
    assert [r["step"] for r in hub.call(all_records)] == [0, 1, *range(4, 20)]
    status = hub.close()
    assert status is not None
    (stream_status,) = status.streams.values()
    assert (stream_status.records, stream_status.duplicates, stream_status.ended) == (18, 0, True)


def test_a_record_that_cannot_be_pickled_is_lost_alone_and_the_stream_goes_on(
    ray_session: Path,
) -> None:
    """A lock in a record fails the Ray call that ships its batch. The sender then pickles
    the batch's records one by one: the records holding a lock (and only those: one row of a
    column batch) are counted lost and warned about once; the rest of each batch and every
    later batch reach the hub in order, at once; write, flush and close never raise."""
    # timeouts a busy machine cannot run out: a hub slow to answer must not count as behind
    hub = Hub(central, batch_size=4, max_in_flight=2, write_timeout=120.0, flush_timeout=120.0)
    sender = hub.sender(worker=0)
    with pytest.warns(RuntimeWarning, match="a record cannot be pickled") as caught:
        for step in range(20):
            lock = {"lock": threading.Lock()} if step in (5, 13) else {}
            sender.write({"step": step, **lock})
        sender.write_batch(
            {"step": [20, 21, 22], "x": np.array([0.5, 1.5, 2.5]), "y": [1, threading.Lock(), 3]}
        )
        sender.flush()
    assert [str(w.message) for w in caught if "pickled" in str(w.message)] == [
        "HubSender(worker=0): could not send 1 records: a record cannot be pickled (TypeError: "
        "cannot pickle '_thread.lock' object); training goes on "
        "(counted in .counts['lost']; warned once per key)"
    ]
    assert (sender.written, sender.sent, sender.lost, sender.in_flight) == (23, 20, 3, 0)
    received = hub.call(all_records)  # after the sender's flush: nothing held behind a gap
    assert [r["step"] for r in received] == [*range(5), *range(6, 13), *range(14, 20), 20, 22]
    assert received[-2:] == [
        {"worker": 0, "step": 20, "x": 0.5, "y": 1},
        {"worker": 0, "step": 22, "x": 2.5, "y": 3},
    ]
    with pytest.warns(RuntimeWarning, match="20 records delivered, 3 lost, 0 unconfirmed"):
        sender.close()
    status = hub.close()
    assert status is not None
    (stream_status,) = status.streams.values()
    assert (stream_status.records, stream_status.held, stream_status.ended) == (20, 0, True)
    assert (stream_status.duplicates, stream_status.failed) == (0, 0)


def test_a_hub_checks_its_arguments_and_reports_a_failing_factory(ray_session: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Hub(central, batch_size=0)
    with pytest.raises(ValueError, match="write_timeout"):
        Hub(central, write_timeout=-1)
    with pytest.raises(TypeError, match="callable"):
        Hub(central())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no such sink"):
        Hub(failing_factory)
    with pytest.raises(TypeError, match="must return an rlpipe Pipeline"):
        HubCore(lambda: "not a pipeline")  # type: ignore[arg-type,return-value]


def test_a_closed_sender_and_a_closed_hub_refuse_records(ray_session: Path) -> None:
    from pipeline.core.node import ClosedError

    hub = Hub(central)
    sender = hub.sender()
    sender.close()
    with pytest.raises(ClosedError):
        sender.write({"step": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sender that never wrote closes silently
        assert hub.close() is not None
    with pytest.raises(ClosedError):
        hub.sender()
