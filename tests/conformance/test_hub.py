"""The Ray hub keeps the contract: generated streams written by 2-3 worker processes, each
through its own sender, into one hub whose pipeline stores JSON Lines; read back from the
file the hub wrote, each worker's records are stored once as written, in its order, or
counted (by its sender, the hub's sink, or the hub's status), and the counts reconcile:
written = stored + counted.

A case costs a hub actor (a second or more), so it runs a few cases in the fast profile and
more in the long one; marked `slow` (a local Ray, `ray_session` in tests/conftest.py).
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from pipeline import Pipeline
from pipeline.core.counts import Counts
from sinks import JsonlSink
from tests.conformance import harness, strategies
from tests.conformance.known import suite
from tests.conformance.sinks import JSONL, read_jsonl

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")

TAG = "conformance_worker"
"""The tag each sender adds: the worker a stored row came from."""


def central(path: Path) -> Pipeline:
    """The hub's pipeline (built inside the hub actor): one JSON Lines file."""
    return Pipeline("hub", strict=False, close_at_exit=False).to(
        JsonlSink(path, mode="w", flush_every=3)
    )


@ray.remote(num_cpus=0)
class Worker:
    """A worker process: plays a stream of calls through the sender it is given, changing
    its own objects after a call that says so (as a loop reusing its buffers does)."""

    def play(self, sender: Any, stream: list[strategies.Op]) -> tuple[dict[str, Any], list[str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for op in stream:
                data = copy.deepcopy(op.data)
                if op.kind == "flush":
                    sender.flush()
                    continue
                if op.kind == "write":
                    sender.write(data)
                else:
                    sender.write_batch(data)
                if op.reuse:
                    strategies.scribble(data)
            sender.close()
        return {"counts": sender.counts.state(), "name": repr(sender)}, [
            str(w.message) for w in caught
        ]


class Counted:
    """What the check needs of the node that counted: the counts of every sender and of the
    hub's sink together; named as the first part that counted anything (the check looks for
    its name in the warnings)."""

    def __init__(self, *parts: Counts) -> None:
        counted = [part for part in parts if sum(part.values())]
        self.name = (counted or list(parts))[0].owner
        self.counts = Counts(self.name)
        for part in parts:
            self.counts.update(part)
            for reason, keys in part.by_key.items():
                self.counts.by_key.setdefault(reason, Counter()).update(keys)

    def __repr__(self) -> str:
        return self.name


def counts_of(state: dict[str, Any], owner: str) -> Counts:
    counts = Counts(owner)
    counts.load(state)
    return counts


@pytest.fixture(scope="module")
def workers(ray_session: Path) -> list[Any]:
    """Three worker processes for the module; each case hands them senders of its hub."""
    return [Worker.remote() for _ in range(3)]  # type: ignore[attr-defined]


def sink_counts(pipeline: Pipeline) -> dict[str, Any]:
    """The hub's sink's counts (runs inside the hub actor)."""
    sink = next(node for node in pipeline.nodes() if isinstance(node, JsonlSink))
    return sink.counts.state()


@suite(6, 60)
@given(
    streams=st.lists(strategies.streams(max_size=5), min_size=2, max_size=3),
)
def test_each_workers_records_are_stored_once_in_its_order_or_counted(
    streams: list[list[strategies.Op]],
    workers: list[Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    for stream in streams:
        harness.describe(stream)
    event(f"workers: {len(streams)}")
    from pipeline.integrations.ray import Hub

    folder = tmp_path_factory.mktemp("hub")
    path = folder / "out.jsonl"
    hub = Hub(functools.partial(central, path), batch_size=4, flush_seconds=None)
    try:
        senders = [hub.sender(**{TAG: w}) for w in range(len(streams))]
        played = ray.get(
            [
                worker.play.remote(sender, stream)
                for worker, sender, stream in zip(workers, senders, streams, strict=False)
            ]
        )
        at_sink = counts_of(hub.call(sink_counts), "JsonlSink")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status = hub.close()
    finally:
        ray.kill(hub.actor, no_restart=True)
    rows = read_jsonl(None, folder)
    assert all(TAG in row for row in rows), f"a stored row without its worker: {rows!r}"
    # each worker's rows in its own order, the workers one after the other
    stored = [
        {key: value for key, value in row.items() if key != TAG}
        for w in range(len(streams))
        for row in rows
        if row[TAG] == w
    ]
    written = [row for stream in streams for op in stream for row in strategies.written_rows(op)]
    hub_lines = status.failures + status.warnings + [str(w.message) for w in caught]
    node = Counted(at_sink, *(counts_of(sender["counts"], sender["name"]) for sender, _ in played))
    on_the_way = status.missing + status.lost
    harness.check(
        harness.Outcome(
            spec=JSONL,
            node=node,  # type: ignore[arg-type]
            written=written,
            stored=stored,
            counted=JSONL.counted(node) + on_the_way,
            isolation_lost=0,
            failures=hub_lines,
            warnings=[line for _, warned in played for line in warned] + hub_lines,
        )
    )
    for w, stream in enumerate(streams):
        mine = sum(len(strategies.written_rows(op)) for op in stream)
        state = next((s for s in status.streams.values() if s.tags == {TAG: w}), None)
        if state is None:  # a sender that shipped nothing opened no stream
            assert mine == 0, f"worker {w} wrote {mine} records and the hub never heard"
            continue
        assert state.written == mine, state
        assert state.records + state.earlier + state.lost + state.missing == mine, state
