"""A restarted hub says when it is at least once (a batch stored by the dead instance and not
acknowledged is stored again): the HubCore alone, with Ray's restart flag set by hand.

Specification: after a restart that does not resume from a checkpoint (none given, or its
file not found), the batch in flight at the death is stored twice, and `status().failures`
says so; a restart that resumes from its checkpoint stores it once and says nothing of the
kind; batches the dead instance acknowledged after its last good checkpoint are cut from the
files by the restart, and counted (`cut_back`) and said."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline import Pipeline
from pipeline.core import lifecycle
from pipeline.integrations.ray import HubCore
from sinks import JsonlSink, flusher

AT_LEAST_ONCE = "restarted without a checkpoint"


def _factory(path: Path) -> Any:
    def central() -> Pipeline:
        return Pipeline(close_at_exit=False).to(JsonlSink(path, flush_seconds=None))

    return central


def _die_after_storing(core: HubCore, batch: list[dict[str, Any]]) -> None:
    """The dead instance stores batch 0 (flushed) and dies before its answer reaches the
    sender, which re-sends the call to the restarted instance; its sinks' locks go with it."""
    core.push("s", 0, 0, len(batch), list(batch), {}, (len(batch), 0, 0))
    for sink in core.sinks:
        lifecycle.forget(sink)
        flusher.forget(sink)  # type: ignore[arg-type]
        sink._release()  # type: ignore[attr-defined]
        sink.closed = True


def _steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


BATCH = [{"step": i, "x": float(i)} for i in range(5)]


def test_a_restart_without_a_checkpoint_stores_the_batch_in_flight_twice_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.integrations.ray import core as hub_core

    data = tmp_path / "hub.jsonl"
    _die_after_storing(HubCore(_factory(data)), BATCH)
    monkeypatch.setattr(hub_core, "_in_a_restarted_actor", lambda: True)
    hub = HubCore(_factory(data))
    hub.push("s", 0, 0, len(BATCH), list(BATCH), {}, (len(BATCH), 0, 0))
    hub.flush()
    assert _steps(data) == [0, 1, 2, 3, 4] * 2
    assert any(AT_LEAST_ONCE in line for line in hub.status().failures)
    assert any(AT_LEAST_ONCE in line for line in hub.close().failures)


def test_a_restart_from_its_checkpoint_stores_the_batch_in_flight_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.integrations.ray import core as hub_core

    data, folder = tmp_path / "hub.jsonl", tmp_path / "checkpoints"
    _die_after_storing(HubCore(_factory(data), checkpoint=str(folder), restarts=1), BATCH)
    monkeypatch.setattr(hub_core, "_in_a_restarted_actor", lambda: True)
    hub = HubCore(_factory(data), checkpoint=str(folder), restarts=1)
    hub.push("s", 0, 0, len(BATCH), list(BATCH), {}, (len(BATCH), 0, 0))
    hub.flush()
    assert _steps(data) == [0, 1, 2, 3, 4]
    assert not any(AT_LEAST_ONCE in line for line in hub.status().failures)
    hub.close()


def test_a_restart_that_finds_no_checkpoint_file_says_it_is_at_least_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.integrations.ray import core as hub_core

    data = tmp_path / "hub.jsonl"
    dead_node, new_node = tmp_path / "node-a", tmp_path / "node-b"
    _die_after_storing(HubCore(_factory(data), checkpoint=str(dead_node), restarts=1), BATCH)
    monkeypatch.setattr(hub_core, "_in_a_restarted_actor", lambda: True)
    # restarted on another node: the same checkpoint= names a folder without the file
    hub = HubCore(_factory(data), checkpoint=str(new_node), restarts=1)
    hub.push("s", 0, 0, len(BATCH), list(BATCH), {}, (len(BATCH), 0, 0))
    hub.flush()
    stored = _steps(data)
    status = hub.status()
    hub.close()
    assert stored == [0, 1, 2, 3, 4] * 2  # stored twice ...
    assert any(AT_LEAST_ONCE in line for line in status.failures)  # ... and said so


def test_a_restart_from_a_stale_checkpoint_loses_no_acknowledged_batch_unsaid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch 0 is stored and checkpointed; batch 1 is stored and acknowledged, but its
    checkpoint fails (counted by the dead instance, whose status no one reads once it is
    dead); the restart loads the checkpoint of batch 0, cuts the file back to it, and the
    sender (its batch 1 acknowledged) never sends it again."""
    from pipeline.integrations.ray import core as hub_core

    data, folder = tmp_path / "hub.jsonl", tmp_path / "checkpoints"
    batches = [[{"step": i} for i in range(5 * seq, 5 * seq + 5)] for seq in range(3)]
    dead = HubCore(_factory(data), checkpoint=str(folder), restarts=1)
    assert dead.push("s", 0, 0, 5, batches[0], {}, (5, 0, 0)) == 1
    dead.checkpoint = tmp_path / "gone" / "hub.pickle"  # the next checkpoint fails
    assert dead.push("s", 1, 1, 5, batches[1], {}, (10, 0, 5)) == 2  # acknowledged
    assert dead.status().failures  # the dead instance knew
    for sink in dead.sinks:
        lifecycle.forget(sink)
        flusher.forget(sink)  # type: ignore[arg-type]
        sink._release()  # type: ignore[attr-defined]
        sink.closed = True
    monkeypatch.setattr(hub_core, "_in_a_restarted_actor", lambda: True)
    hub = HubCore(_factory(data), checkpoint=str(folder), restarts=1)
    assert hub.push("s", 2, 2, 5, batches[2], {}, (15, 0, 10)) == 3
    hub.end("s", (15, 0, 15))
    hub.flush()
    stored = _steps(data)
    status = hub.close()
    assert stored == [*range(5), *range(10, 15)]  # batch 1 was cut back with the file ...
    (stream,) = status.streams.values()
    assert stream.cut_back == 5 and stream.earlier == 5 and stream.records == 5  # ... counted
    assert stream.written == stream.records + stream.earlier + stream.cut_back
    assert any("5 records the dead hub had acknowledged" in line for line in status.failures)
