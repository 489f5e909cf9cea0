"""Attacks on the Hub's partial mode, each checked against record mode: the same records
written row by row into the same central pipeline (a local AggregateFilter). Partial mode
must give the same rows (same keys, in the same order, the same values; with `exact=True`
the median and percentiles too) and lose nothing silently.

These drive the hub's body (HubCore) and a sender's Accumulator without Ray."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import Pipeline
from pipeline.integrations.ray import HubCore
from pipeline.integrations.ray.core import ForwardMarks
from pipeline.integrations.ray.partials import Accumulator
from sinks import MemorySink
from tests.integrations.test_ray_partials import ray_up  # noqa: F401 (a fixture)

pytestmark = pytest.mark.filterwarnings("ignore:.*is not a real number:UserWarning",
                                "ignore:.*is NaN:UserWarning")

STATS = ("mean", "std", "min", "max", "sum", "count", "median", "p90")


def central() -> Pipeline:
    return Pipeline("hub", close_at_exit=False).aggregate(r"^x", stats=STATS).to(MemorySink())


def record_mode(records: list[dict[str, Any]], factory: Any = central) -> list[dict[str, Any]]:
    pipeline = factory()
    for record in records:
        pipeline.write(record)
    pipeline.flush()
    sink = pipeline.nodes()[-1]
    assert isinstance(sink, MemorySink)
    return sink.records


def partial_mode(
    records: list[dict[str, Any]], every: int = 1_000_000, factory: Any = central
) -> list[dict[str, Any]]:
    """What a partial-mode sender ships (a PartialEntry per `every` records, a record the
    partials cannot take as it is), applied by the hub, then `hub.flush()`."""
    core = HubCore(factory, exact=True)
    plan = core.plan()
    assert plan is not None
    accumulator = Accumulator(plan)
    entries: list[Any] = []
    for index, record in enumerate(records, 1):
        if not accumulator.add(record):
            taken = accumulator.take()
            entries += [taken] if taken else []
            entries.append(dict(record))
        if index % every == 0:
            taken = accumulator.take()
            entries += [taken] if taken else []
    taken = accumulator.take()
    entries += [taken] if taken else []
    core.push("s", 0, 0, len(records), entries, {}, (len(records), 0, 0))
    core.flush()
    rows: list[dict[str, Any]] = core.call(lambda p: p.nodes()[-1].records, (), {})
    return rows


def assert_same_rows(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for want, row in zip(expected, got, strict=True):
        assert list(row) == list(want)  # the same keys, in the same order
        for key, value in want.items():
            if isinstance(value, float):
                scale = max(1.0, abs(value)) if math.isfinite(value) else 1.0
                assert (math.isnan(value) and math.isnan(row[key])) or (
                    value == row[key] or abs(value - row[key]) <= 1e-12 * scale
                ), key
            else:
                assert row[key] == value, key


def test_a_row_keeps_the_key_order_record_mode_gives() -> None:
    records = [{"step": 0, "x": 1.0}, {"step": 1, "x": 2.0}]
    assert_same_rows(record_mode(records), partial_mode(records))


def test_keys_that_appear_mid_window_take_record_modes_place() -> None:
    records: list[dict[str, Any]] = [
        {"a": 1, "x": 1.0}, {"x": 2.0, "b": 2, "xa": 3.0}, {"c": "text"}]
    assert_same_rows(record_mode(records), partial_mode(records, every=1))


KEYS = st.sampled_from(["step", "x", "xb", "tag", "x2", "x_mean", "x_count"])
VALUES = st.one_of(
    st.none(),
    st.floats(-1e6, 1e6),
    st.just(math.nan),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.builds(np.float32, st.floats(-1e3, 1e3, width=32)),
    st.text(max_size=3),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(KEYS, VALUES, max_size=5), min_size=1, max_size=12),
       st.integers(1, 5))
def test_any_records_give_record_modes_rows(records: list[dict[str, Any]], every: int) -> None:
    assert_same_rows(record_mode(records), partial_mode(records, every))


def test_a_value_that_cannot_be_pickled_costs_only_its_own_record() -> None:
    import pickle
    import threading

    from pipeline.integrations.ray.pickling import picklable_part

    records: list[dict[str, Any]] = [{"x": float(i), "note": "ok"} for i in range(10)]
    records[-1]["note"] = threading.Lock()  # the last value of "note" in the window
    plan = HubCore(central, exact=True).plan()
    assert plan is not None
    accumulator = Accumulator(plan)
    for record in records:
        assert accumulator.add(record)
    entry = accumulator.take()
    as_records = picklable_part([dict(r) for r in records], pickle.dumps)
    as_partials = picklable_part([entry], pickle.dumps)
    assert as_records.left_out == 1  # record mode
    assert as_partials.left_out == as_records.left_out
    [kept] = as_partials.entries  # the other records' partials and last values still go
    assert kept.records + as_partials.left_out == len(records)  # sent = stored + counted
    assert "note" not in kept.last and kept.partials["x"].n == len(records)


def mixed_record_mode(ops: list[Any]) -> list[dict[str, Any]]:
    pipeline = central()
    for op in ops:
        if isinstance(op, tuple):
            pipeline.write_batch(op[0])
        else:
            pipeline.write(op)
    pipeline.flush()
    sink = pipeline.nodes()[-1]
    assert isinstance(sink, MemorySink)
    return sink.records


def mixed_partial_mode(ops: list[Any], exact: bool) -> list[dict[str, Any]]:
    """A sender's entries for records (`write`) and column batches (`write_batch`): the
    partials held go before a column batch, which goes as it is."""
    core = HubCore(central, exact=exact)
    plan = core.plan()
    assert plan is not None
    accumulator = Accumulator(plan)
    entries: list[Any] = []
    count = 0
    for op in ops:
        taken = None
        if isinstance(op, tuple):
            taken = accumulator.take()
            entries += [taken] if taken else []
            entries.append(op)
            count += op[1]
            continue
        if not accumulator.add(op):
            taken = accumulator.take()
            entries += [taken] if taken else []
            entries.append(dict(op))
        count += 1
    taken = accumulator.take()
    entries += [taken] if taken else []
    core.push("s", 0, 0, count, entries, {}, (count, 0, 0))
    core.end("s", (count, 0, count))
    core.flush()
    rows: list[dict[str, Any]] = core.call(lambda p: p.nodes()[-1].records, (), {})
    status = core.close()
    assert status.records == count and not status.failures
    return rows


NUMBERS = st.one_of(st.none(), st.floats(-1e6, 1e6), st.just(math.nan), st.integers(-5, 5))
ROWS = st.dictionaries(KEYS, NUMBERS, max_size=4)
BATCHES = st.integers(1, 4).flatmap(
    lambda n: st.dictionaries(KEYS, st.lists(NUMBERS, min_size=n, max_size=n), min_size=1,
                              max_size=3).map(lambda columns: (columns, n))
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(ROWS, BATCHES), min_size=1, max_size=10), st.booleans())
def test_write_batch_mixed_with_write_gives_record_modes_rows(
    ops: list[Any], exact: bool
) -> None:
    expected, got = mixed_record_mode(ops), mixed_partial_mode(ops, exact)
    if not exact:  # a sketched median or percentile: within the rank error, checked elsewhere
        drop = ("_median", "_p90")
        expected = [{k: v for k, v in row.items() if not k.endswith(drop)} for row in expected]
        got = [{k: v for k, v in row.items() if not k.endswith(drop)} for row in got]
    assert_same_rows(expected, got)


HEADS = {
    "none": lambda: Pipeline("hub", close_at_exit=False),
    "keep": lambda: Pipeline("hub", close_at_exit=False).keep("^x|^step$"),
    "drop": lambda: Pipeline("hub", close_at_exit=False).drop("^tag$|2"),
    "keep, drop": lambda: Pipeline("hub", close_at_exit=False).keep("^x|^tag").drop("b$"),
}


@pytest.mark.parametrize("regex", ["^x", "^x$"])  # a caller's own `x_mean`: matching or not
@pytest.mark.parametrize("head", list(HEADS))
@settings(max_examples=40, deadline=None)
@given(records=st.lists(st.dictionaries(KEYS, VALUES, max_size=5), min_size=1, max_size=12),
       every=st.integers(1, 5))
def test_an_aggregate_after_key_filters_gives_record_modes_rows(
    regex: str, head: str, records: list[dict[str, Any]], every: int
) -> None:
    def factory() -> Pipeline:
        return HEADS[head]().aggregate(regex, stats=STATS).to(MemorySink())

    assert_same_rows(record_mode(records, factory), partial_mode(records, every, factory))


def entry_of(records: list[dict[str, Any]], core: HubCore) -> list[Any]:
    plan = core.plan()
    assert plan is not None
    accumulator = Accumulator(plan)
    for record in records:
        assert accumulator.add(record)
    return [accumulator.take()]


@pytest.mark.parametrize("exact", [True, False])
def test_a_restarted_hub_goes_on_with_the_partials_of_its_open_window(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, exact: bool
) -> None:
    from pipeline.integrations.ray import core as hub_core

    first = [{"step": i, "x": float(i) ** 2} for i in range(10)]
    then = [{"step": i, "x": -float(i)} for i in range(10, 15)]
    dead = HubCore(central, checkpoint=str(tmp_path), restarts=1, exact=exact)
    dead.push("s", 0, 0, len(first), entry_of(first, dead), {}, (10, 0, 0))
    monkeypatch.setattr(hub_core, "_in_a_restarted_actor", lambda: True)
    hub = HubCore(central, checkpoint=str(tmp_path), restarts=1, exact=exact)
    assert hub.restarted
    low = hub.push("s", 1, 1, len(then), entry_of(then, hub), {}, (15, 0, 10))
    assert low == 2
    hub.end("s", (15, 0, 15))
    hub.flush()
    rows: list[dict[str, Any]] = hub.call(lambda p: p.nodes()[-1].records, (), {})
    expected = record_mode(first + then)
    if not exact:
        expected[0].pop("x_median"), expected[0].pop("x_p90")
        rows[0].pop("x_median"), rows[0].pop("x_p90")
    assert_same_rows(expected, rows)
    assert not hub.close().failures



def test_a_retried_task_replays_its_partials_and_the_window_counts_them_once() -> None:
    """Ray retries a task: the sender's copy in the new attempt (a new epoch of the same
    stream) ships the same partials from sequence number 0 again."""
    first = [{"step": i, "x": float(i)} for i in range(6)]
    then = [{"step": i, "x": 100.0 + i} for i in range(6, 9)]
    hub = HubCore(central, exact=True)
    hub.push("s", 0, 0, 6, entry_of(first, hub), {}, (6, 0, 0), "attempt 1")
    # attempt 1 dies; attempt 2 writes the same records, then more
    hub.push("s", 0, 0, 6, entry_of(first, hub), {}, (6, 0, 0), "attempt 2")
    hub.push("s", 1, 1, 3, entry_of(then, hub), {}, (9, 0, 6), "attempt 2")
    hub.end("s", (9, 0, 9), "attempt 2")
    hub.flush()
    rows: list[dict[str, Any]] = hub.call(lambda p: p.nodes()[-1].records, (), {})
    assert_same_rows(record_mode(first + then), rows)
    status = hub.close()
    [stream] = status.streams.values()
    assert stream.replayed == 6 and stream.records == 9 and not status.failures


WITHOUT_DATASKETCHES = """
import pickle, sys
sys.modules["datasketches"] = None  # as if it were not installed
from pipeline import Pipeline
from pipeline.integrations.ray import HubCore
from pipeline.integrations.ray.partials import Accumulator
from sinks import MemorySink

def hub(stats):
    return lambda: Pipeline("hub", close_at_exit=False).aggregate("^x$", stats=stats).to(
        MemorySink())

print(HubCore(hub(("mean", "median"))).mode)
print(HubCore(hub(("mean", "median")), exact=True).mode)
core = HubCore(hub(("mean", "std", "count")))
accumulator = Accumulator(core.plan())
for i in range(5):
    accumulator.add({"x": float(i)})
core.push("s", 0, 0, 5, [accumulator.take()], {}, (5, 0, 0))
core.flush()
print(core.call(lambda p: p.nodes()[-1].records, (), {}))
try:
    pickle.loads(sys.stdin.buffer.read())
except ImportError as error:
    print("ImportError:", error)
"""


def test_without_datasketches_the_hub_says_why_and_moments_still_go_as_partials(
    tmp_path: Any,
) -> None:
    import os
    import pickle
    import subprocess
    import sys

    from filters.partials import Partial

    sketched = pickle.dumps(Partial.from_values([1.0, 2.0]))  # made where it is installed
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_DATASKETCHES], input=sketched, capture_output=True,
        check=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ).stdout.decode().splitlines()
    assert out[0].startswith("records (a median or percentile of partials needs datasketches")
    assert out[1].startswith("partials") and "exact values" in out[1]
    assert out[2] == str([{"x_mean": 2.0, "x_std": 2.0**0.5, "x_count": 5}])
    assert out[3].startswith("ImportError: a sketched Partial needs datasketches")


# -- on a real local Ray -----------------------------------------------------------------


def kinds_of_records() -> Iterator[Any]:
    """Every kind of value in matching keys, an array the caller reuses in another key, and
    a column batch in between (`(columns, rows)`); made as they are written."""
    import torch

    buffer = np.zeros(3)
    for step in range(40):
        buffer[:] = step  # the caller reuses its array: the value written must stay
        value: Any = [float(step), np.float32(step / 3), np.uint64(2**63 + step),
                      torch.tensor(step * 0.5), np.array(-0.0), True, 2**60 + step,
                      math.inf if step == 7 else math.nan, None][step % 9]
        yield {"step": step, "x": value, "obs": buffer,
               **({"x2": "text"} if step == 20 else {"x2": step})}
        if step == 25:
            yield ({"x": np.arange(5.0), "step": np.arange(5)}, 5)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_up")
def test_a_sender_on_ray_gives_record_modes_row_for_every_kind_of_value() -> None:
    from pipeline.integrations.ray import Hub

    hub = Hub(central, batch_size=7, exact=True)
    assert hub.mode.startswith("partials")
    sender = hub.sender(worker=1)
    expected_pipeline = central()
    for op in kinds_of_records():
        record = op if isinstance(op, dict) else None
        if record is None:
            sender.write_batch(op[0])
            expected_pipeline.write_batch({"worker": [1] * op[1], **op[0]})
        else:
            sender.write(record)
            expected_pipeline.write({"worker": 1, **record})
        if isinstance(op, dict):
            op["obs"][:] = -1  # after the write: neither mode may see it
    sender.close()
    hub.flush()
    rows = hub.call(lambda p: p.nodes()[-1].records)
    expected_pipeline.flush()
    sink = expected_pipeline.nodes()[-1]
    assert isinstance(sink, MemorySink)
    expected = sink.records
    assert rows[0]["obs"].tolist() == [39.0] * 3
    assert_same_rows([{k: v for k, v in r.items() if k != "obs"} for r in expected],
                     [{k: v for k, v in r.items() if k != "obs"} for r in rows])
    status = hub.close()
    assert status is not None and not status.failures
    assert sender.written == sender.sent == status.records == 40 + 5


@pytest.mark.slow
@pytest.mark.usefixtures("ray_up")
def test_on_ray_an_unpicklable_last_value_costs_one_record_not_the_shipping() -> None:
    import threading
    import warnings

    from pipeline.integrations.ray import Hub

    hub = Hub(central, batch_size=1000, exact=True)
    sender = hub.sender()
    for step in range(10):
        sender.write({"step": step, "x": float(step),
                      "note": threading.Lock() if step == 9 else "ok"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sender.close()
    assert any("cannot be pickled" in str(w.message) for w in caught)
    assert (sender.written, sender.sent, sender.lost) == (10, 9, 1)  # sent + counted
    hub.flush()
    [row] = hub.call(lambda p: p.nodes()[-1].records)
    assert row["x_count"] == 10 and row["x_sum"] == 45.0 and "note" not in row
    status = hub.close()
    assert status is not None and status.records == 9 and status.lost == 1


def test_a_batch_the_relay_forwarded_but_did_not_answer_is_not_sent_twice() -> None:
    """The race a relay's death leaves open: it merged and forwarded a sender's batch, then
    died before answering it. The relay's forward carries its marks of each sender's stream,
    so the hub's answer to the sender covers that batch, which is not shipped again."""
    core = HubCore(central)
    records = [{"x": float(i)} for i in range(5)]
    marks = ForwardMarks({"s": (2, 5)})  # batches 0 and 1 of stream s: 5 records
    core.push("relay/node-a", 0, 0, 5, [*records, marks], {}, (5, 0, 0))
    # the relay had answered batch 0 only (3 records): the sender's mark is 1
    low = core.relayed("s", "node-a", 3, 1, {"worker": 0}, (5, 0, 3))
    assert low == 2  # batch 1 came through the relay: not to be sent again
    core.sync("s", 2, (5, 0, 5))  # the sender confirms it
    core.push("s", 1, 2, 2, records[3:], {"worker": 0}, (5, 0, 5))  # a late resend anyway
    status = core.close()
    stream = next(s for s in status.streams.values() if s.tags == {"worker": 0})
    assert (stream.records, stream.via_relay, stream.missing, stream.duplicates) == (0, 5, 0, 1)
    assert status.relay_lost == 0
    assert not [line for line in status.failures if "did not report its death" in line]
    rows = core.call(lambda p: p.nodes()[-1].records, (), {})
    assert rows[0]["x_count"] == 5  # each record once


def test_a_relay_that_forwarded_records_of_senders_that_died_with_it_says_so() -> None:
    """Records a relay forwarded for a sender that never reported the relay's death (it died
    with it) are stored; the hub names them, since it cannot know what that sender shipped
    after the relay's last forward."""
    core = HubCore(central)
    records = [{"x": float(i)} for i in range(5)]
    core.push("relay/node-a", 0, 0, 5, records, {}, (5, 0, 0))  # no marks of a living sender
    core.relayed("s", "node-a", 3, 0, {"worker": 0}, (3, 0, 0))
    status = core.status()
    assert status.relay_lost == 0
    [line] = [line for line in status.failures if "did not report its death" in line]
    assert "node-a forwarded 2 records" in line
