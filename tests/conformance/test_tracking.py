"""Every tracking sink (TensorBoard, MLflow on a local SQLite store, W&B offline, Neptune 1.x
offline, neptune-scale offline) keeps the contract on generated streams, read back with the
tool's own reader (`tests/sinks/tracking.py`): each point written is stored once as written
(under the sink's documented normalisation) or counted; a record holding a key with no text
costs no other point.

A run of a tracking sink costs a second or more (a run made, a client closed), so each
property runs a few cases in the fast profile (`TRACKING_CASES`) and more in the long one.
"""

from __future__ import annotations

import errno
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from pipeline.core.isolation import StoreError
from tests.conformance import harness, strategies
from tests.conformance.known import suite
from tests.conformance.sinks import TRACKING, SinkSpec

TRACKING_CASES = 10
"""Generated streams per tracking sink and property in the fast profile."""
LONG_CASES = 150
"""The same in the long profile (a case costs about a second: minutes per sink)."""

SPECS = [
    pytest.param(
        spec,
        id=spec.name,
        marks=pytest.mark.skipif(
            not harness.importable(module), reason=f"{module} is not installed"
        ),
    )
    for spec, module in TRACKING
]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("spec", SPECS)
@suite(TRACKING_CASES, LONG_CASES)
@given(stream=strategies.streams(max_size=6))
def test_each_point_is_stored_once_as_written_or_counted(
    spec: SinkSpec, stream: list[strategies.Op], tmp_path_factory: pytest.TempPathFactory
) -> None:
    harness.describe(stream)
    folder = tmp_path_factory.mktemp(spec.name.split(".")[0])
    harness.check(harness.run(spec, stream, folder))


@pytest.mark.parametrize("spec", SPECS)
@suite(TRACKING_CASES, LONG_CASES)
@given(stream=strategies.streams(bad_keys=True, max_size=6))
def test_a_record_the_sink_cannot_take_costs_no_other_point(
    spec: SinkSpec, stream: list[strategies.Op], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Records holding a key with no text (its `str()` raises): its value is counted, the
    record's other values and every later record stored."""
    event(f"keys with no text: {sum(_bad(op) for op in stream)}")
    folder = tmp_path_factory.mktemp(spec.name.split(".")[0])
    harness.check(harness.run(spec, stream, folder))


@pytest.mark.parametrize("spec", SPECS)
@suite(TRACKING_CASES, LONG_CASES)
@given(stream=strategies.streams(max_size=6), data=st.data())
def test_a_storage_that_fails_at_any_call_loses_no_point_uncounted(
    spec: SinkSpec,
    stream: list[strategies.Op],
    data: st.DataObject,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The tool's storing call (an event write, `log_batch`, `run.log`, `extend`,
    `log_metrics`) fails from a random call on, recovering later or never: the sink retries,
    no point is stored twice, and what a close cannot push is counted."""
    fault = data.draw(harness.storage_faults(len(stream)))
    event("fault: storage recovers" if fault.up_at is not None else "fault: never recovers")
    folder = tmp_path_factory.mktemp(spec.name.split(".")[0])
    harness.check(harness.run(spec, stream, folder, fault=fault))


def _bad(op: strategies.Op) -> bool:
    return any(isinstance(key, strategies.BadKey) for key in op.data)


@pytest.mark.parametrize("spec", SPECS)
def test_a_refused_key_with_no_text_costs_no_other_point(
    spec: SinkSpec, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Found by the suite: MLflow refuses the name of a key with no text (`<BadKey>`), and
    counting it raised from `str(key)`, so the record's other values were lost with it."""
    stream = [
        strategies.Op("write", {strategies.BadKey(): 1.0, "y": 2.0}),
        strategies.Op("write", {"y": 3.0}),
    ]
    outcome = harness.run(spec, stream, tmp_path_factory.mktemp(spec.name.split(".")[0]))
    harness.check(outcome)
    assert [(name, value) for name, _, value in outcome.stored if name == "y"] == [
        ("y", 2.0),
        ("y", 3.0),
    ]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("up_at", [None, 4], ids=["never-recovers", "recovers"])
def test_points_held_while_the_storage_fails_are_stored_once_or_counted(
    spec: SinkSpec, up_at: int | None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The storage fails after a flush stored the first record: the next ones are held and
    retried; stored once when it recovers, counted when it never does. (Found by the suite:
    NeptuneSink took an OSError from its client for a refusal and dropped the held points
    for good instead of retrying them.)"""
    stream = [
        strategies.Op("write", {"x": 1.0, "s": "a"}),
        strategies.Op("flush"),
        strategies.Op("write", {"x": 2.0}),
        strategies.Op("flush"),
        strategies.Op("write", {"x": 3.0}),
    ]
    folder = tmp_path_factory.mktemp(spec.name.split(".")[0])
    fault = harness.StorageFault(down_at=2, up_at=up_at)
    outcome = harness.run(spec, stream, folder, fault=fault)
    harness.check(outcome)
    stored = sorted(value for name, _, value in outcome.stored if name == "x")
    assert stored == ([1.0] if up_at is None else [1.0, 2.0, 3.0])
    assert outcome.node.lost_points == (2 if up_at is None else 0)  # type: ignore[attr-defined]


class _FailsOnce:
    """A neptune run whose `n`-th storing call (`run[path].extend`, `log_metrics`) raises
    an OSError once: a push that fails half-way."""

    def __init__(self, run: Any, n: int) -> None:
        self.real, self.calls, self.n = run, 0, n

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.n:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return method(*args, **kwargs)

    def __getitem__(self, path: str) -> Any:
        series = self.real[path]
        return SimpleNamespace(extend=lambda *a, **k: self._call(series.extend, *a, **k))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)
        if name in ("log_metrics", "log_string_series"):
            return lambda *a, **k: self._call(method, *a, **k)
        return method


@pytest.mark.parametrize("spec", [p for p in SPECS if p.values[0].name.startswith("Neptune")])
def test_a_push_that_fails_half_way_stores_each_point_once(
    spec: SinkSpec, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The client's second storing call of a push fails: the retry sends what the first did
    not, once."""
    folder = tmp_path_factory.mktemp(spec.name.split(".")[0])
    sink = spec.make(folder)
    sink._backend.run = _FailsOnce(sink._backend.run, n=2)
    with pytest.warns(UserWarning, match="OSError"):
        sink.write({"a": 1.0, "b": 2.0, "s": "t"})
        sink.write({"a": 3.0, "b": 4.0, "s": "u"})
        with pytest.raises(StoreError):
            sink.flush()
    sink._backend.run = sink._backend.run.real
    sink.close()
    assert sink.counts["dropped"] == 0
    stored = sorted(spec.read(sink, folder))
    assert stored == [
        ("a", 0, 1.0), ("a", 1, 3.0), ("b", 0, 2.0), ("b", 1, 4.0), ("s", 0, "t"), ("s", 1, "u")
    ]


@pytest.mark.parametrize("spec", SPECS)
def test_a_key_none_is_counted_under_its_own_name(
    spec: SinkSpec, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Found by the suite: a value under the key None that a sink drops was counted as of no
    key (not in `.dropped`, warned once for all such counts) instead of under 'None'."""
    stream = [strategies.Op("write", {None: {"v": 1.0}, "x": {"v": 2.0}})]  # dropped by all
    outcome = harness.run(spec, stream, tmp_path_factory.mktemp(spec.name.split(".")[0]))
    harness.check(outcome)
    assert outcome.node.counts.by_key["dropped"] == {"None": 1, "x": 1}


# -- several step axes: points keyed by (name, their axis' step) ------------------------------

AXES = {"^eval/": "eval_round", "": "steps"}
"""Training keys at env steps, evaluation keys at evaluation rounds."""


@st.composite
def two_axis_streams(draw: st.DrawFn) -> list[strategies.Op]:
    """Writes and flushes of records holding a training part (`steps`, `loss`), an
    evaluation part (`eval_round`, `eval/return`) or both; each axis' steps go up, and the
    values are any the suite makes (the refused ones must be counted)."""
    values = strategies.make_values()
    ops: list[strategies.Op] = []
    steps = rounds = 0
    for _ in range(draw(st.integers(1, 6))):
        record: dict[Any, Any] = {}
        train, evaluate = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
        if train:
            steps += draw(st.integers(1, 1000))
            record.update(steps=steps, loss=draw(values))
        if evaluate:
            rounds += 1
            record.update({"eval_round": rounds, "eval/return": draw(values)})
        ops.append(strategies.Op("write", record, draw(st.booleans())))
        if draw(st.booleans()):
            ops.append(strategies.Op("flush"))
    return ops


def _on_axes(spec: SinkSpec) -> SinkSpec:
    """`spec` with `step_key=AXES`: each point at its axis' step (W&B: read against the
    `step_metric` W&B plots it on)."""
    from tests.conformance.normalise import form
    from tests.sinks.tracking import wandb_axis_points

    def expect(record: dict[Any, Any], index: int) -> list[tuple[str, Any, Any]]:
        return [
            (key, record["eval_round"] if key.startswith("eval") else record["steps"], form(v))
            for key, v in record.items()
            if v is not None
        ]

    def read(sink: Any, folder: Any) -> list[tuple[str, Any, Any]]:
        if spec.name != "WandbSink":
            return spec.read(sink, folder)
        points = wandb_axis_points(sink.run_dir, AXES.values())
        return [(n, step, value) for n, series in points.items() for step, value in series]

    make = spec.make
    return replace(
        spec,
        name=spec.name + " on two axes",
        make=lambda folder: make(folder, step_key=AXES),
        expect=expect,
        read=read,
    )


@pytest.mark.parametrize("spec", SPECS)
@suite(TRACKING_CASES, LONG_CASES)
@given(stream=two_axis_streams(), data=st.data())
def test_on_two_step_axes_each_point_is_stored_once_at_its_axis_step_or_counted(
    spec: SinkSpec,
    stream: list[strategies.Op],
    data: st.DataObject,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`step_key={"^eval/": "eval_round", "": "steps"}`: each point is stored once at its own
    axis' step, none dropped for being behind the other axis, whether the storage works or
    fails from a random call on (recovering or not: what a close cannot push is counted)."""
    fault = data.draw(st.none() | harness.storage_faults(len(stream)))
    event("fault: none" if fault is None else "fault: storage")
    folder = tmp_path_factory.mktemp(spec.name.split(".")[0])
    harness.check(harness.run(_on_axes(spec), stream, folder, fault=fault))
