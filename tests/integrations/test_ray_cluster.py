"""The Hub on a Ray cluster of three nodes simulated on this machine (`ray.cluster_utils.Cluster`,
issue 27's "a cluster on one machine"): senders on different nodes, a node removed mid-run
(its workers die with it), the hub's node removed (Ray restarts the hub elsewhere, from its
checkpoint). Each case reads the JSONL file back and checks sent = stored + counted.

One cluster for the module. The test run's own local Ray (`ray_session`), if it is running,
is shut down first and started again afterwards, so later tests get a working Ray.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray._common.utils import get_ray_address_file
from ray.cluster_utils import Cluster

from pipeline import Pipeline
from pipeline.integrations.ray import Hub, HubSender
from sinks import JsonlSink
from tests.integrations import local_ray

pytestmark = pytest.mark.slow

NODE_ARGS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}
# A removed node is found dead after health checks fail: every 1 s, 3 misses (not 5 x 3 s).
HEAD_ARGS: dict[str, Any] = {
    **NODE_ARGS,
    "include_dashboard": False,
    "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
}


def start_cluster(base: Path) -> Cluster:
    """Three nodes (1 CPU each; resources n0, n1, n2 to place workers on them), the driver
    connected to the head. A node, like any local Ray, may miss Ray's fixed start-up limits
    on a busy machine: a start that fails is tried again after its processes are stopped."""
    # Ray's Cluster records the head's address in Ray's default folder, whatever temp_dir
    # says, and fails where that folder was never made (a fresh machine).
    Path(get_ray_address_file(None)).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, local_ray.STARTS + 1):
        folder = local_ray.short_folder(base / str(attempt))
        cluster = None
        try:
            cluster = Cluster(
                initialize_head=True,
                head_node_args={**HEAD_ARGS, "resources": {"n0": 1}, "temp_dir": str(folder)},
            )
            for index in (1, 2):
                add_node(cluster, f"n{index}")
            cluster.wait_for_nodes(timeout=120)
            ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
            return cluster
        except Exception as error:
            ray.shutdown()
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.shutdown()
            local_ray.stop_processes_of(folder)
            if attempt == local_ray.STARTS:
                raise
            warnings.warn(f"the cluster did not start (attempt {attempt}): {error}", stacklevel=1)
    raise AssertionError("unreachable")


def add_node(cluster: Cluster, resource: str) -> Any:
    """Adds a node holding `resource` (its files beside the head's)."""
    return cluster.add_node(**NODE_ARGS, resources={resource: 1})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The three-node cluster for the module; afterwards the test run's local Ray as it was
    (started again if it was running)."""
    session_ray = ray.is_initialized()
    ray.shutdown()
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("c"))
        try:
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()
    finally:
        if session_ray:  # the session fixture's Ray, again (it shuts it down at the end)
            local_ray.start(tmp_path_factory.mktemp("r"))
        elif saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)


def windowed(raw: Path, windows: Path) -> Pipeline:
    """Every record to `raw`; an aggregate over all workers (count, sum of `index`) to
    `windows`, one window per `hub.flush()`."""
    window = Pipeline("window").aggregate(r"^index$", stats=("count", "sum"))
    return Pipeline("hub").to(
        JsonlSink(raw, flush_every=1_000_000, flush_seconds=None),
        window.to(JsonlSink(windows, flush_every=1_000_000, flush_seconds=None)),
    )


@ray.remote(num_cpus=0.25)
class Writer:
    """A worker on a chosen node writing `{"index": i}` through its sender (worker=w)."""

    def __init__(self, log: HubSender) -> None:
        self.log = log

    def node(self) -> str:
        return str(ray.get_runtime_context().get_node_id())

    def write(self, start: int, stop: int) -> int:
        for index in range(start, stop):
            self.log.write({"index": index})
        return self.log.written

    def flush(self) -> int:
        self.log.flush()
        return self.log.sent

    def close(self) -> tuple[int, int, int, int]:
        self.log.close()
        return self.log.written, self.log.sent, self.log.lost, self.log.unconfirmed


def on(resource: str) -> dict[str, Any]:
    """Options placing an actor on the node holding `resource`."""
    return {"resources": {resource: 0.01}}


def stored(path: Path) -> Counter[tuple[int, int]]:
    """How often each (worker, index) is in the hub's JSONL file."""
    with path.open() as handle:
        return Counter((row["worker"], row["index"]) for row in map(json.loads, handle))


def until(condition: Callable[[], bool], what: str, seconds: float = 180.0) -> None:
    """Waits (bounded, generously) until `condition()` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what} {LAST_ERROR}")
        time.sleep(0.1)


def dead(actor: Any) -> bool:
    try:
        ray.get(actor.node.remote(), timeout=60)
    except ray.exceptions.RayActorError:
        return True
    return False


def restarted(hub: Hub) -> bool:
    """Whether the hub answers from a restarted instance (False while it is restarting)."""
    try:
        return bool(ray.get(hub.actor.status.remote(), timeout=30).restarted)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as error:
        LAST_ERROR[:] = [f"{type(error).__name__}: {error}"[:500]]
        return False


LAST_ERROR: list[str] = []  # why the hub did not answer, for a failing wait's message


def node_of(cluster: Cluster, resource: str) -> Any:
    return next(
        node
        for node in cluster.list_all_nodes()
        if resource in node._ray_params.resources  # the resources the node was added with
    )


def test_senders_on_three_nodes_and_a_node_removed_mid_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    """One writer per node; node n2 is removed (its processes killed) after its writer wrote
    without a flush. The others' records are in the file exactly once; the dead writer's
    stream is a prefix stored once, and the hub reconciles what its sender reported: shipped
    = stored + missing. Over the run: sent (acknowledged) + reported by the dead stream =
    stored + counted missing."""
    raw, windows = tmp_path / "raw.jsonl", tmp_path / "windows.jsonl"
    hub = Hub(
        functools.partial(windowed, raw, windows),
        batch_size=64,
        flush_seconds=None,
        write_timeout=180.0,  # 32 batches a writer through 8 slots: the 5 s default is short
        flush_timeout=180.0,  # on a busy machine (a batch counted lost as "behind")
        actor_options={"num_cpus": 0, **on("n0")},
    )
    writers = [
        Writer.options(**on(f"n{w}")).remote(hub.sender(worker=w))  # type: ignore[attr-defined]
        for w in range(3)
    ]
    assert len(set(ray.get([writer.node.remote() for writer in writers]))) == 3
    n = 2000
    assert ray.get([writer.write.remote(0, n) for writer in writers]) == [n] * 3
    cluster.remove_node(node_of(cluster, "n2"), allow_graceful=False)
    until(lambda: dead(writers[2]), "the removed node's writer is dead")
    assert ray.get([writer.close.remote() for writer in writers[:2]]) == [(n, n, 0, 0)] * 2

    with pytest.warns(RuntimeWarning, match="did not close"):
        status = hub.close()
    assert status is not None
    on_disk = stored(raw)
    assert max(on_disk.values()) == 1
    for w in (0, 1):
        assert {i for ww, i in on_disk if ww == w} == set(range(n))
    kept = sorted(i for w, i in on_disk if w == 2)
    assert kept == list(range(len(kept)))
    cut = next(s for s in status.streams.values() if s.tags == {"worker": 2})
    assert not cut.ended and cut.records == len(kept) and cut.lost == 0
    assert cut.written == cut.records + cut.missing
    assert 2 * n + cut.written == sum(on_disk.values()) + cut.missing
    assert any("worker': 2" in line and "did not close" in line for line in status.failures)
    with windows.open() as handle:
        (window,) = map(json.loads, handle)  # the last window, closed by hub.close()
    assert window["index_count"] == sum(on_disk.values())


def test_the_hub_restarted_on_another_node_from_its_checkpoint(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The hub runs on a node of its own (the only one holding `hub_host` when it starts)
    with max_restarts=1 and a checkpoint; a second such node is added, and the hub's node is
    removed while writers on two other nodes write. Ray restarts the hub on the other node;
    it loads the checkpoint (the open window, each stream's marks) and the senders resend
    what was not acknowledged: every record stored exactly once, the window counts every
    record, sent = stored."""
    hub_node = cluster.add_node(**NODE_ARGS, resources={"n3": 1, "hub_host": 1})
    cluster.wait_for_nodes(timeout=120)
    raw, windows = tmp_path / "raw.jsonl", tmp_path / "windows.jsonl"
    hub = Hub(
        functools.partial(windowed, raw, windows),
        batch_size=64,
        flush_seconds=None,
        max_restarts=1,
        write_timeout=180.0,
        flush_timeout=180.0,
        checkpoint=tmp_path / "checkpoints",
        actor_options={
            "num_cpus": 0,
            "resources": {"hub_host": 0.01},  # where it starts, and where it may restart
        },
    )
    writers = [
        Writer.options(**on(f"n{w}")).remote(hub.sender(worker=w))  # type: ignore[attr-defined]
        for w in range(2)
    ]
    n = 3000
    writing = [writer.write.remote(0, n) for writer in writers]
    until(lambda: hub.status().records >= 256, "the hub applied some batches")
    cluster.add_node(**NODE_ARGS, resources={"hub_host": 1})  # where the hub restarts
    cluster.wait_for_nodes(timeout=120)
    cluster.remove_node(hub_node, allow_graceful=False)
    until(lambda: restarted(hub), "the hub answers from a restarted instance", seconds=300.0)
    assert ray.get(writing) == [n] * 2
    assert ray.get([writer.close.remote() for writer in writers]) == [(n, n, 0, 0)] * 2
    hub.flush()
    status = hub.close()
    assert status is not None and status.restarted
    assert stored(raw) == Counter((w, i) for w in range(2) for i in range(n))
    with windows.open() as handle:
        (window,) = map(json.loads, handle)
    assert (window["index_count"], window["index_sum"]) == (2 * n, 2 * sum(range(n)))
    assert status.records + status.earlier == status.written == 2 * n
    assert status.missing == status.lost == 0 and status.failures == []


# -- with one relay per node (Hub(relays=True)) ---------------------------------------------


def aggregated(windows: Path) -> Pipeline:
    """An aggregate over every worker's `index` (count, sum), one window per `hub.flush()`,
    to `windows`: the hub's pipeline begins with it, so the senders ship partials."""
    return (
        Pipeline("hub")
        .aggregate(r"^index$", stats=("count", "sum"))
        .to(JsonlSink(windows, flush_every=1_000_000, flush_seconds=None))
    )


def window_rows(path: Path) -> list[tuple[int, int]]:
    with path.open() as handle:
        return [(row["index_count"], row["index_sum"]) for row in map(json.loads, handle)]


def test_relays_on_three_nodes_and_a_node_removed_mid_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A writer per node, each through its node's relay. After a first window, every writer
    writes and flushes again (its relay confirmed: it holds the records), then one node is
    removed: its relay and writer die. The others' records are in the windows exactly once;
    the dead relay's stream is named (it did not close) with what it forwarded, stored once;
    what it held is gone with the node's writer (no live process knows of it: the hub says it
    is unknown)."""
    node = add_node(cluster, "n5")
    cluster.wait_for_nodes(timeout=120)
    windows = tmp_path / "windows.jsonl"
    hub = Hub(
        functools.partial(aggregated, windows),
        batch_size=64,
        flush_seconds=None,
        relays=True,
        actor_options={"num_cpus": 0, **on("n0")},
    )
    writers = [
        Writer.options(**on(r)).remote(hub.sender(worker=w))  # type: ignore[attr-defined]
        for w, r in enumerate(("n0", "n1", "n5"))
    ]
    n = 1000
    assert ray.get([writer.write.remote(0, n) for writer in writers]) == [n] * 3
    assert ray.get([writer.flush.remote() for writer in writers]) == [n] * 3
    hub.flush()  # each relay forwards its node's partials; the hub cuts the window
    assert ray.get([writer.write.remote(n, 2 * n) for writer in writers]) == [2 * n] * 3
    assert ray.get([writer.flush.remote() for writer in writers]) == [2 * n] * 3
    cluster.remove_node(node, allow_graceful=False)
    until(lambda: dead(writers[2]), "the removed node's writer is dead")
    assert ray.get([writer.close.remote() for writer in writers[:2]]) == [(2 * n, 2 * n, 0, 0)] * 2

    with pytest.warns(RuntimeWarning, match="did not close"):
        status = hub.close()
    assert status is not None
    first, last = window_rows(windows)
    assert first == (3 * n, 3 * sum(range(n)))
    assert last == (2 * n, 2 * sum(range(n, 2 * n)))  # the live nodes' second half, once
    relays = {s.tags["relay"]: s for s in status.streams.values()}
    assert len(relays) == 3  # the hub saw the relays only
    cut = relays[node.node_id]
    assert not cut.ended and cut.records + cut.earlier == cut.written == n  # its first half
    assert all(s.ended and s.records == 2 * n for r, s in relays.items() if r != node.node_id)
    # sent = stored + counted: the live writers' 4n stored; the dead node's writer wrote 2n,
    # n stored from its relay, the rest named with the relay that died holding it.
    assert status.records + status.earlier == 5 * n
    assert any(node.node_id in line and "did not close" in line for line in status.failures)

