"""Partial mode of the Hub: when the central pipeline begins with an aggregate whose windows
the hub cuts, senders ship per-key partial statistics instead of records, and the window's
statistics are still those of every record (numpy's over all values).

The first tests drive the hub's body (HubCore) and a sender's accumulator without Ray; the
others run real Ray tasks on the test run's local Ray (`ray_session`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.aggregate import AggregateFilter
from filters.partials import RANK_ERROR
from pipeline import Pipeline
from pipeline.integrations.ray import HubCore
from pipeline.integrations.ray.partials import Accumulator, PartialEntry
from sinks import MemorySink
from tests.integrations.local_ray import wait_until_dead

STATS = ("mean", "std", "min", "max", "sum", "count", "median")


def central(stats: tuple[str, ...] = STATS, every: int | None = None) -> Pipeline:
    return (
        Pipeline("hub", close_at_exit=False)
        .drop("^ignored$")
        .aggregate(r"^return$", every=every, stats=stats)
        .to(MemorySink())
    )


def windows(pipeline: Pipeline) -> list[dict[str, Any]]:
    sink = pipeline.nodes()[-1]
    assert isinstance(sink, MemorySink)
    return sink.records


def ship(core: HubCore, stream: str, records: list[dict[str, Any]], every: int) -> int:
    """What a partial-mode sender does: partials of every `every` records, pushed in order."""
    plan = core.plan()
    assert plan is not None
    accumulator = Accumulator(plan)
    seq = 0
    for start in range(0, len(records), every):
        chunk = records[start : start + every]
        entries: list[Any] = []
        for record in chunk:
            if not accumulator.add(record):
                taken = accumulator.take()
                entries += [taken] if taken else []
                entries.append(record)
        taken = accumulator.take()
        entries += [taken] if taken else []
        report = (start + len(chunk), 0, start)  # shipped, lost, confirmed
        core.push(stream, seq, seq, len(chunk), entries, {"worker": stream}, report)
        seq += 1
    core.end(stream, (len(records), 0, len(records)))
    return seq


def check_window(window: dict[str, Any], values: np.ndarray, exact: bool) -> None:
    real = values[~np.isnan(values)]
    scale = float(np.abs(real).max())
    assert window["return_count"] == len(real)
    assert window["return_min"] == real.min() and window["return_max"] == real.max()
    assert abs(window["return_mean"] - np.mean(real)) <= 1e-12 * scale
    assert abs(window["return_std"] - np.std(real)) <= 1e-12 * scale
    assert abs(window["return_sum"] - np.sum(real)) <= 1e-12 * scale * len(real)
    if exact:
        assert window["return_median"] == np.median(real)
    else:
        assert within_rank(real, window["return_median"], 0.5)


def within_rank(values: np.ndarray, estimate: float, q: float) -> bool:
    """True if `estimate` is a value whose normalized rank (a range, for repeated values
    and small samples: [values below, values at or below] / n) comes within RANK_ERROR
    of `q`."""
    ordered = np.sort(values)
    low = np.searchsorted(ordered, estimate, side="left") / len(values)
    high = np.searchsorted(ordered, estimate, side="right") / len(values)
    return bool(low - RANK_ERROR <= q <= high + RANK_ERROR)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(math.nan)), min_size=1,
                      max_size=40),
             min_size=1, max_size=4),
    st.integers(1, 12),
    st.booleans(),
)
def test_partials_from_any_senders_give_the_statistics_of_every_record(
    streams: list[list[float]], every: int, exact: bool
) -> None:
    core = HubCore(central, exact=exact)
    assert core.plan() is not None and core.mode.startswith("partials")
    for worker, values in enumerate(streams):
        records = [{"step": i, "return": x, "ignored": 1.0} for i, x in enumerate(values)]
        ship(core, f"w{worker}", records, every)
    core.flush()
    everything = np.array([x for stream in streams for x in stream])
    [window] = core.call(windows, (), {})
    assert "ignored" not in window and "step" in window
    if np.isnan(everything).all():
        assert window["return_count"] == 0 and math.isnan(window["return_mean"])
    else:
        check_window(window, everything, exact)
    aggregate = next(n for n in core.pipeline.nodes() if isinstance(n, AggregateFilter))
    assert aggregate.counts["nan"] == int(np.isnan(everything).sum())  # as in record mode
    status = core.close()
    assert status.records == everything.size == status.written
    assert {stream.mode for stream in status.streams.values()} == {"partials"}


def test_a_matching_value_that_is_not_a_number_goes_as_a_record_in_order() -> None:
    core = HubCore(central)
    records: list[dict[str, Any]] = [{"return": 1.0}, {"return": "oops"}, {"return": 3.0}]
    ship(core, "w", records, 10)
    core.flush()
    [window] = core.call(windows, (), {})
    assert window["return"] == "oops" and window["return_mean"] == 2.0
    aggregate = next(n for n in core.pipeline.nodes() if isinstance(n, AggregateFilter))
    assert aggregate.counts["skipped"] == 1
    assert core.close().records == 3


def test_partials_and_records_meet_in_one_window() -> None:
    """A record-mode stream (an older sender, a column batch) and partials, one window."""
    core = HubCore(central)
    ship(core, "partials", [{"return": x} for x in (1.0, 2.0, 3.0)], 2)
    core.push("records", 0, 0, 2, [{"return": 10.0}, {"return": 20.0}], {})
    core.flush()
    [window] = core.call(windows, (), {})
    check_window(window, np.array([1.0, 2.0, 3.0, 10.0, 20.0]), exact=True)
    status = core.close()
    assert {name: s.mode for name, s in status.streams.items()} == {
        "partials": "partials", "records": "records"}


def test_windows_cut_every_n_records_stay_in_record_mode() -> None:
    core = HubCore(functools.partial(central, every=5))
    assert core.plan() is None
    assert "every 5 records" in core.mode and "cannot be split" in core.mode
    aggregate = AggregateFilter("x", every=5)
    with pytest.raises(ValueError, match="cannot be split"):
        aggregate.add_partials({})


def test_pipelines_not_beginning_with_an_aggregate_stay_in_record_mode() -> None:
    core = HubCore(lambda: Pipeline("hub", close_at_exit=False).smooth("r").to(MemorySink()))
    assert core.plan() is None and "does not begin with an aggregate" in core.mode
    assert HubCore(central, partials=False).plan() is None


def test_a_seconds_window_takes_partials_and_closes_on_time() -> None:
    now = [0.0]
    aggregate = AggregateFilter("r", seconds=10, stats=("mean", "count"), clock=lambda: now[0])
    sink = MemorySink()
    aggregate.connect(sink)
    from filters.partials import Partial

    aggregate.add_partials({"r": Partial.from_values([1.0, 2.0])}, {"step": 2}, records=2)
    now[0] = 5.0
    aggregate.write({"r": 3.0, "step": 3})
    assert sink.records == []
    now[0] = 11.0
    aggregate.add_partials({"r": Partial.from_values([4.0])}, {"step": 4}, records=1)
    assert sink.records == [{"r_mean": 2.5, "r_count": 4, "step": 4}]


def test_an_entry_pickles_small() -> None:
    import pickle

    plan = HubCore(central).plan()
    assert plan is not None
    accumulator = Accumulator(plan)
    for x in np.random.default_rng(0).normal(size=10_000):
        accumulator.add({"return": float(x), "step": 1})
    entry = accumulator.take()
    assert isinstance(entry, PartialEntry) and entry.records == 10_000
    assert len(pickle.dumps(entry)) < 8_000  # the sketch, not 10,000 records


# -- on a real local Ray -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A local Ray for this module's tests: the run's one (`ray_session`) if it is up, else
    one of its own (an earlier module may have ended the run's Ray with its own)."""
    import ray

    if ray.is_initialized():
        yield
        return
    from tests.integrations.local_ray import local_ray

    with local_ray(tmp_path_factory.mktemp("ray")):
        yield


def returns(worker: int, n: int) -> np.ndarray:
    values = np.random.default_rng(worker).normal(10.0 * worker, 1.0 + worker, size=n)
    values[::97] = np.nan  # NaN: left out, counted
    return values


def write_returns(log: Any, worker: int, n: int) -> tuple[int, int, int, int]:
    """A Ray task: writes its returns record by record, closes, returns its counts."""
    with log:
        for step, value in enumerate(returns(worker, n)):
            log.write({"step": step, "return": float(value), "ignored": 0})
    return log.written, log.sent, log.lost, log.unconfirmed


@pytest.mark.slow
@pytest.mark.parametrize("exact", [False, True])
def test_senders_on_ray_ship_partials_and_the_window_is_over_every_record(
    ray_up: None, exact: bool
) -> None:
    import ray

    from pipeline.integrations.ray import Hub

    task = ray.remote(num_cpus=0.25)(write_returns)
    hub = Hub(central, batch_size=200, exact=exact)  # no option asks for partials
    assert hub.mode.startswith("partials") and ("exact" in hub.mode) == exact
    senders = [hub.sender(worker=i) for i in range(3)]
    assert "partials" in repr(senders[0])
    counts = ray.get([task.remote(log, i, 1000 + 37 * i) for i, log in enumerate(senders)])
    hub.flush()  # the hub cuts the window
    [window] = hub.call(windows)
    values = np.concatenate([returns(i, 1000 + 37 * i) for i in range(3)])
    check_window(window, values, exact)
    assert "partials" in hub.describe()
    status = hub.close()
    assert status is not None and not status.failures
    written = sum(c[0] for c in counts)
    assert [c[2] + c[3] for c in counts] == [0, 0, 0]
    assert sum(c[1] for c in counts) == written == status.records == status.written
    assert written == status.records + status.earlier + status.lost + status.missing
    assert {stream.mode for stream in status.streams.values()} == {"partials"}
    assert sum(stream.batches for stream in status.streams.values()) < written / 100


@pytest.mark.slow
def test_through_a_relay_per_node_the_hub_gets_one_partial_per_window(ray_up: None) -> None:
    import ray

    from pipeline.integrations.ray import Hub

    task = ray.remote(num_cpus=0.25)(write_returns)
    hub = Hub(central, batch_size=100, relays=True, flush_seconds=None)  # forward on flush
    counts = ray.get([task.remote(hub.sender(worker=i), i, 500) for i in range(4)])
    hub.flush()  # the relay forwards what it merged, then the hub cuts the window
    [window] = hub.call(windows)
    check_window(window, np.concatenate([returns(i, 500) for i in range(4)]), exact=False)
    relays = hub.relay_status()
    assert len(relays) == 1  # one node: one relay
    [(node, relay)] = relays.items()
    assert relay is not None and len(relay.streams) == 4 and relay.records == 2000
    assert {stream.mode for stream in relay.streams.values()} == {"partials"}
    status = hub.close()
    assert status is not None and not status.failures
    [forwarded] = status.streams.values()  # the hub sees the relay alone
    assert forwarded.records == 2000 and forwarded.mode == "partials"
    assert forwarded.batches == 1  # every sender's partials in one call to the hub
    written = sum(c[0] for c in counts)
    assert sum(c[1] for c in counts) == written == 2000 and [c[2] for c in counts] == [0] * 4
    final = hub.relay_final[node]
    assert final is not None and final.written == final.records == 2000 and not final.failures


class Writer:
    """A Ray actor holding one sender: it outlives its node's relay, and keeps writing."""

    def __init__(self, log: Any, worker: int) -> None:
        self.log, self.worker, self.step = log, worker, 0

    def write(self, n: int) -> int:
        for value in returns(self.worker, self.step + n)[self.step :]:
            self.log.write({"step": self.step, "return": float(value)})
            self.step += 1
        self.log.flush()  # acknowledged by the relay (or, after it died, by the hub)
        return int(self.log.sent)

    def close(self) -> tuple[int, int, int, int]:
        self.log.close()
        return self.log.written, self.log.sent, self.log.lost, self.log.unconfirmed


@pytest.mark.slow
def test_a_relay_that_dies_counts_what_it_held_and_its_senders_write_to_the_hub(
    ray_up: None,
) -> None:
    import ray

    from pipeline.integrations.ray import Hub
    from pipeline.integrations.ray.relay import relays_of

    hub = Hub(central, batch_size=100, relays=True, flush_seconds=None)  # forward on flush
    writer = ray.remote(num_cpus=0.25)(Writer)
    writers = [writer.remote(hub.sender(worker=i), i) for i in range(2)]
    assert ray.get([w.write.remote(200) for w in writers]) == [200, 200]
    hub.flush()  # the relay forwards 400 records: stored
    assert ray.get([w.write.remote(100) for w in writers]) == [300, 300]  # merged, held
    [relay] = relays_of(hub.actor)
    ray.kill(relay, no_restart=True)  # dies holding 200 records its senders had delivered
    # ray.kill is asynchronous: a batch shipped before the relay is dead may still reach it
    # (and die with it, or be forwarded at its close): write on once its calls fail.
    wait_until_dead(relay)
    assert ray.get([w.write.remote(150) for w in writers]) == [450, 450]  # to the hub now
    counts = ray.get([w.close.remote() for w in writers])
    hub.flush()
    first, second = hub.call(windows)  # the window of what reached the hub after the death
    check_window(first, np.concatenate([returns(i, 200) for i in range(2)]), exact=False)
    check_window(second, np.concatenate([returns(i, 450)[300:] for i in range(2)]), False)
    with pytest.warns(RuntimeWarning, match="relay"):
        status = hub.close()
    assert status is not None
    written = sum(c[0] for c in counts)
    stored = status.records + status.earlier
    assert (written, stored, status.relay_lost) == (900, 700, 200)
    assert written == stored + status.lost + status.missing + status.relay_lost
    assert any("relay" in line and "200 records" in line for line in status.failures)
