"""Every local sink keeps the contract on generated streams of write and write_batch calls:
any keys, any values, steps, reused buffers; and with its storage failing at a random call,
recovering or not."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.conformance import harness, strategies
from tests.conformance.known import suite
from tests.conformance.sinks import ACME, SINKS, SinkSpec

SPECS = [pytest.param(spec, id=spec.name) for spec in SINKS] + [
    pytest.param(ACME, id=ACME.name, marks=pytest.mark.skipif(
        not harness.importable("acme"), reason="acme is not installed"))
]
FAULTABLE = [pytest.param(spec, id=spec.name) for spec in SINKS if spec.fail_storage]


@pytest.mark.parametrize("spec", SPECS)
@suite(40)
@given(stream=strategies.streams())
def test_each_record_is_stored_once_as_written_or_counted(
    spec: SinkSpec, stream: list[strategies.Op], tmp_path_factory: pytest.TempPathFactory
) -> None:
    harness.describe(stream)
    folder = tmp_path_factory.mktemp(spec.name.split("(")[0])
    harness.check(harness.run(spec, stream, folder))


@pytest.mark.parametrize("spec", FAULTABLE)
@suite(30)
@given(stream=strategies.streams(), data=st.data())
def test_storage_that_fails_at_any_call_loses_nothing_uncounted(
    spec: SinkSpec,
    stream: list[strategies.Op],
    data: st.DataObject,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    fault = data.draw(harness.storage_faults(len(stream)))
    event("fault: storage recovers" if fault.up_at is not None else "fault: never recovers")
    harness.describe(stream)
    folder = tmp_path_factory.mktemp(spec.name.split("(")[0])
    harness.check(harness.run(spec, stream, folder, fault=fault))


@pytest.mark.parametrize("spec", [pytest.param(spec, id=spec.name) for spec in SINKS])
@suite(25)
@given(stream=strategies.streams(bad_keys=True))
def test_a_record_the_sink_cannot_take_is_counted_and_costs_no_other(
    spec: SinkSpec, stream: list[strategies.Op], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Records holding a key with no text (its `str()` raises): a sink that cannot name a
    column or field after it refuses that record alone."""
    event(f"records with a key with no text: {sum(_bad(op) for op in stream)}")
    folder = tmp_path_factory.mktemp(spec.name.split("(")[0])
    harness.check(harness.run(spec, stream, folder))


def _bad(op: strategies.Op) -> bool:
    return any(isinstance(key, strategies.BadKey) for key in op.data)


def test_the_entry_point_for_a_users_sink_runs_the_suite(tmp_path: Path) -> None:
    harness.check_sink(SINKS[2], examples=5)
