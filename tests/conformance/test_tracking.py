"""Every tracking sink (TensorBoard, MLflow on a local SQLite store, W&B offline, Neptune 1.x
offline, neptune-scale offline) keeps the contract on generated streams, read back with the
tool's own reader (`tests/sinks/tracking.py`): each point written is stored once as written
(under the sink's documented normalisation) or counted; a record holding a key with no text
costs no other point.

A run of a tracking sink costs a second or more (a run made, a client closed), so each
property runs a few cases in the fast profile (`TRACKING_CASES`) and more in the long one.
"""

from __future__ import annotations

import pytest
from hypothesis import event, given

from tests.conformance import harness, strategies
from tests.conformance.known import suite
from tests.conformance.sinks import TRACKING, SinkSpec

TRACKING_CASES = 6
"""Generated streams per tracking sink and property in the fast profile."""

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
@suite(TRACKING_CASES)
@given(stream=strategies.streams(max_size=6))
def test_each_point_is_stored_once_as_written_or_counted(
    spec: SinkSpec, stream: list[strategies.Op], tmp_path_factory: pytest.TempPathFactory
) -> None:
    harness.describe(stream)
    folder = tmp_path_factory.mktemp(spec.name.split(".")[0])
    harness.check(harness.run(spec, stream, folder))


@pytest.mark.parametrize("spec", SPECS)
@suite(TRACKING_CASES)
@given(stream=strategies.streams(bad_keys=True, max_size=6))
def test_a_record_the_sink_cannot_take_costs_no_other_point(
    spec: SinkSpec, stream: list[strategies.Op], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Records holding a key with no text (its `str()` raises): its value is counted, the
    record's other values and every later record stored."""
    event(f"keys with no text: {sum(_bad(op) for op in stream)}")
    folder = tmp_path_factory.mktemp(spec.name.split(".")[0])
    harness.check(harness.run(spec, stream, folder))


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
