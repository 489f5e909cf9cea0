"""Exactly once across failures (issue 27; issue 23 item 8): stable stream ids and the hub's
checkpoint.

A stream is (run, worker, epoch): a task that Ray retries continues its first attempt's stream
(not doubled), and a hub restarted by Ray restores the central pipeline's state (an
aggregate's open window) with every stream's marks from its checkpoint. Every record is
tagged `(worker, index)` and read back from the JSONL file the hub wrote.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from pipeline import Pipeline
from pipeline.integrations.ray import Hub, HubCore, HubSender
from sinks import JsonlSink, MemorySink

# -- epochs, without Ray: the hub's side ----------------------------------------------------


def records(worker: int, start: int, stop: int) -> list[dict[str, Any]]:
    return [{"worker": worker, "index": index} for index in range(start, stop)]


def memory() -> Pipeline:
    return Pipeline("hub").to(MemorySink())


def test_a_later_copy_of_a_stream_replays_what_was_applied_and_continues() -> None:
    """Copy "a" (the first attempt) delivers batches 0 and 1 and dies; copy "b" (the retry)
    sends batches 0..2 again with the same records: batches 0 and 1 are its replay (counted,
    not applied), batch 2 is applied; the stream's counts are copy b's."""
    core = HubCore(memory)
    assert core.push("s", 0, 0, 2, records(0, 0, 2), {"worker": 0}, (2, 0, 0), "a") == 1
    assert core.push("s", 1, 1, 2, records(0, 2, 4), {"worker": 0}, (4, 0, 2), "a") == 2
    for seq in range(3):
        batch = records(0, 2 * seq, 2 * seq + 2)
        core.push("s", seq, 0, 2, batch, {"worker": 0}, (2 * seq + 2, 0, 0), "b")
    core.end("s", (6, 0, 6), "b")
    status = core.close()
    stream = status.streams["s"]
    (sink,) = [node for node in core.pipeline.nodes() if isinstance(node, MemorySink)]
    assert sink.records == records(0, 0, 6)
    assert (stream.epoch, stream.replayed, stream.records, stream.ended) == (1, 4, 6, True)
    assert (stream.written, stream.missing, stream.lost) == (6, 0, 0)
    assert status.failures == []


def test_an_earlier_copys_late_calls_count_for_nothing() -> None:
    """Once copy b took the stream over, copy a's reports and its end no longer count: the
    stream ends when b ends."""
    core = HubCore(memory)
    core.push("s", 0, 0, 1, records(0, 0, 1), {"worker": 0}, (1, 0, 0), "a")
    core.push("s", 0, 0, 1, records(0, 0, 1), {"worker": 0}, (1, 0, 0), "b")
    core.end("s", (99, 0, 1), "a")
    assert not core.status().streams["s"].ended
    assert core.status().streams["s"].written == 1


def test_window_hooks_close_a_window_and_name_the_streams_without_it() -> None:
    """A window closes when every live stream reported it, or at its deadline; a stream that
    had not reported it is named with the window in `failures`; a report after the close is
    counted late."""
    core = HubCore(memory)
    for name, worker in (("a", 0), ("b", 1)):
        core.push(name, 0, 0, 1, records(worker, 0, 1), {"worker": worker})
    assert core.report_window("a", 0) and core.report_window("b", 0)
    assert 0 in core.closed_windows
    assert core.report_window("a", 1)
    assert core.close_windows_older_than(-1.0) == [1]
    assert not core.report_window("b", 1)
    stream = core.status().streams["b"]
    assert (stream.windows_missing, stream.late) == ((1,), 1)
    lines = [line for line in core.status().failures if "worker': 1" in line]
    assert any("1 windows closed without its part (1)" in line for line in lines), lines
    assert any("1 reports came after their window closed" in line for line in lines), lines


def test_a_stream_that_never_closed_misses_the_windows_open_at_close() -> None:
    """At close, a window still open is closed: a stream that did not end (its worker died)
    and had not reported it is named with it; one that ended is not."""
    core = HubCore(memory)
    for name, worker in (("a", 0), ("b", 1)):
        core.push(name, 0, 0, 1, records(worker, 0, 1), {"worker": worker})
    core.report_window("a", 7)
    core.end("a")
    status = core.close()
    assert status.streams["b"].windows_missing == (7,)
    assert status.streams["a"].windows_missing == ()
    assert any("worker': 1" in line and "(7)" in line for line in status.failures)


def windowed(raw: Path, windows: Path) -> Pipeline:
    """Every record to `raw`; one aggregate over every worker (count and sum of `index`) to
    `windows`, a window per `hub.flush()`."""
    window = Pipeline("window").aggregate(r"^index$", stats=("count", "sum"))
    return Pipeline("hub").to(
        JsonlSink(raw, flush_every=1_000_000, flush_seconds=None),
        window.to(JsonlSink(windows, flush_every=1_000_000, flush_seconds=None)),
    )


def test_a_checkpoint_keeps_an_open_window_for_a_restarted_core(tmp_path: Path) -> None:
    """The checkpoint written before each acknowledgement holds the aggregate's open window
    and the stream's marks: a core built from it (as a restarted actor is) takes a resent
    batch as a duplicate and closes the window over every record."""
    factory = functools.partial(windowed, tmp_path / "raw.jsonl", tmp_path / "windows.jsonl")
    core = HubCore(factory, run="r", checkpoint=str(tmp_path / "ckpt"), restarts=1)
    core.push("s", 0, 0, 3, records(0, 0, 3), {"worker": 0}, (3, 0, 0))
    saved = pickle.loads((tmp_path / "ckpt" / "hub-r.pickle").read_bytes())
    assert saved["streams"]["s"]["low"] == 1
    window = next(state for state in saved["pipeline"]["nodes"] if "window" in state)
    assert window["window"]["writes"] == 3


def test_restarts_without_a_checkpoint_are_refused_only_when_a_node_holds_state(
    tmp_path: Path,
) -> None:
    """An aggregate's open window would die with the actor: refused, naming the option. Sinks
    (two of them, fanned out) store what they hold before each acknowledgement: allowed."""
    factory = functools.partial(windowed, tmp_path / "raw.jsonl", tmp_path / "windows.jsonl")
    with pytest.raises(ValueError, match=r"holds state in AggregateFilter.*checkpoint=folder"):
        HubCore(factory, restarts=1)
    sinks_only = Pipeline("hub").to(JsonlSink(tmp_path / "a.jsonl"), MemorySink())
    HubCore(lambda: sinks_only, restarts=1).close()


# -- on a real local Ray -----------------------------------------------------------------

WORKERS = 3
BATCH = 32


def stored(path: Path) -> Counter[tuple[int, int]]:
    """How often each (worker, index) is in a JSONL file the hub wrote."""
    with path.open() as handle:
        return Counter((row["worker"], row["index"]) for row in map(json.loads, handle))


@ray.remote(max_retries=1, num_cpus=0.25)
def attempt(log: HubSender, n: int, marker: str) -> tuple[int, int, int, int]:
    """Writes indices 0..n-1 and flushes (the hub acknowledges them); the first attempt then
    dies (its process exits), the retry closes the sender."""
    for index in range(n):
        log.write({"index": index})
    log.flush()
    if not os.path.exists(marker):
        Path(marker).write_text("died once")
        os._exit(1)
    for index in range(n, 2 * n):
        log.write({"index": index})
    log.close()
    return log.written, log.sent, log.lost, log.unconfirmed


@pytest.mark.slow
def test_a_retried_task_continues_its_stream_and_doubles_nothing(
    ray_session: Path, tmp_path: Path
) -> None:
    """Ray retries a task whose process died after its sender's flush: the sender is
    unpickled a second time, in a new process, for the same task. The retry continues the
    stream in epoch 1; what the first attempt delivered is its replay: each record is in the
    file once, and the counts reconcile (written = stored, nothing missing)."""
    raw = tmp_path / "raw.jsonl"
    hub = Hub(functools.partial(lazy_raw, raw), batch_size=BATCH, flush_seconds=None)
    n = 200
    counts = ray.get(attempt.remote(hub.sender(worker=0), n, str(tmp_path / "marker")))
    assert counts == (2 * n, 2 * n, 0, 0)
    status = hub.close()
    assert status is not None
    assert stored(raw) == Counter((0, index) for index in range(2 * n))
    (stream,) = status.streams.values()
    assert (stream.epoch, stream.replayed, stream.ended) == (1, n, True)
    assert stream.written == stream.records + stream.earlier == 2 * n
    assert (stream.missing, stream.lost) == (0, 0) and status.failures == []


def lazy_raw(path: Path) -> Pipeline:
    return Pipeline("hub").to(JsonlSink(path, flush_every=1_000_000, flush_seconds=None))


@pytest.mark.slow
def test_max_restarts_with_an_aggregate_and_no_checkpoint_is_refused(
    ray_session: Path, tmp_path: Path
) -> None:
    factory = functools.partial(windowed, tmp_path / "raw.jsonl", tmp_path / "windows.jsonl")
    with pytest.raises(ValueError, match=r"checkpoint=folder"):
        Hub(factory, max_restarts=1)


@ray.remote(num_cpus=0.25)
class Writer:
    """A worker writing `{"index": i}` through a sender of the hub (tagged worker=w)."""

    def __init__(self, log: HubSender) -> None:
        self.log = log

    def write(self, start: int, stop: int) -> int:
        for index in range(start, stop):
            self.log.write({"index": index})
        return self.log.written

    def close(self) -> tuple[int, int, int, int]:
        self.log.close()
        return self.log.written, self.log.sent, self.log.lost, self.log.unconfirmed


@pytest.fixture
def kill_at_end() -> Iterator[list[Any]]:
    actors: list[Any] = []
    yield actors
    for actor in actors:
        ray.kill(actor, no_restart=True)


def until(condition: Callable[[], bool], what: str, seconds: float = 120.0) -> None:
    """Waits (bounded, generously) until `condition()` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def restarted(hub: Hub) -> bool:
    try:
        return hub.status().restarted
    except ray.exceptions.RayActorError:
        return False


@pytest.mark.slow
def test_a_restarted_hub_restores_its_open_window_and_stores_each_record_once(
    ray_session: Path, tmp_path: Path, kill_at_end: list[Any]
) -> None:
    """max_restarts=1 with a checkpoint: the hub is killed while the workers write. The
    restarted hub loads the checkpoint (its open window, each stream's marks; the raw file
    cut back to the checkpoint), the senders resend what was not acknowledged: every record
    is in the raw file exactly once, and the one window closed by `hub.flush()` counts every
    record: sent = stored, nothing lost, nothing doubled."""
    raw, windows = tmp_path / "raw.jsonl", tmp_path / "windows.jsonl"
    hub = Hub(
        functools.partial(windowed, raw, windows),
        batch_size=BATCH,
        flush_seconds=None,
        max_restarts=1,
        write_timeout=120.0,
        flush_timeout=120.0,
        checkpoint=tmp_path / "checkpoints",
    )
    kill_at_end.append(hub.actor)
    writers = [Writer.remote(hub.sender(worker=w)) for w in range(WORKERS)]  # type: ignore[attr-defined]
    kill_at_end.extend(writers)
    n = 1000
    writing = [writer.write.remote(0, n) for writer in writers]
    until(lambda: hub.status().records >= BATCH, "the hub applied a batch")
    ray.kill(hub.actor, no_restart=False)  # the crash, mid-run; Ray starts a new instance
    until(lambda: restarted(hub), "the hub answers from a restarted instance")
    assert ray.get(writing) == [n] * WORKERS
    closed = ray.get([writer.close.remote() for writer in writers])
    assert closed == [(n, n, 0, 0)] * WORKERS
    hub.flush()
    status = hub.close()
    assert status is not None and status.restarted
    assert stored(raw) == Counter((w, i) for w in range(WORKERS) for i in range(n))
    with windows.open() as handle:
        (window,) = map(json.loads, handle)
    assert window["index_count"] == WORKERS * n
    assert window["index_sum"] == WORKERS * sum(range(n))
    assert status.records + status.earlier == status.written == WORKERS * n
    assert status.missing == status.lost == 0 and status.failures == []
