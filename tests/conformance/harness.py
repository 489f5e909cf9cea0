"""The contract, checked: runs a stream of calls through a pipeline into one sink, with an
optional fault, reads back what the sink stored and checks that each record written is
stored exactly once as written (under the sink's normalisation) or counted.

`check_sink(spec)` runs the generated streams of `strategies` on a sink described by a
`SinkSpec`: the entry point for a sink of your own (docs/sinks.md).
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from filters import Dispatcher
from pipeline import Node, Pipeline
from tests.conformance import strategies
from tests.conformance.known import is_open, suite
from tests.conformance.sinks import SinkSpec


@dataclass
class StorageFault:
    """The sink's storage fails (an OSError) from call `down_at` on, and works again from
    call `up_at` (None: never again, not even at close)."""

    down_at: int
    up_at: int | None = None

    def before(self, index: int, spec: SinkSpec, sink: Any) -> None:
        assert spec.fail_storage is not None
        if index == self.down_at:
            spec.fail_storage(sink, True)
        if self.up_at is not None and index == self.up_at:
            spec.fail_storage(sink, False)

    def at_close(self, spec: SinkSpec, sink: Any) -> None:
        if self.up_at is not None and spec.fail_storage is not None:
            spec.fail_storage(sink, False)


@dataclass
class Outcome:
    """What a run wrote, what its sink stored, and what was counted and reported."""

    spec: SinkSpec
    node: Node
    written: list[dict[Any, Any]]
    stored: list[Any]
    counted: int
    isolation_lost: int
    failures: list[str]
    warnings: list[str] = field(default_factory=list)


def run(
    spec: SinkSpec,
    stream: list[strategies.Op],
    folder: Path,
    *,
    fault: StorageFault | None = None,
) -> Outcome:
    """Writes `stream` through `Pipeline(...).to(sink)`, changing the caller's objects after
    each call that says so, then closes; reads back what the sink stored."""
    sink = spec.make(folder)
    pipe = Pipeline("conformance", strict=False, close_at_exit=False).to(sink)
    node = spec.node(sink)
    written: list[dict[Any, Any]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index, op in enumerate(stream):
            if fault is not None:
                fault.before(index, spec, sink)
            data = copy.deepcopy(op.data)
            if op.kind == "flush":
                pipe.flush()
                continue
            written += strategies.written_rows(op)
            if op.kind == "write":
                pipe.write(data)
            else:
                pipe.write_batch(data)
            if op.reuse:
                strategies.scribble(data)
        if fault is not None:
            fault.at_close(spec, sink)
        pipe.close()
    dispatcher = next(n for n in pipe.nodes() if isinstance(n, Dispatcher))
    failed = dispatcher.failures.get(id(node))
    isolation_lost = failed.lost if failed is not None else 0
    return Outcome(
        spec=spec,
        node=node,
        written=written,
        stored=spec.read(sink, folder),
        counted=spec.counted(sink) + isolation_lost,
        isolation_lost=isolation_lost,
        failures=pipe.failures(),
        warnings=[str(w.message) for w in caught],
    )


def _matches(spec: SinkSpec, expected: dict[Any, Any], read: Any) -> tuple[bool, int]:
    """Whether a stored row is the row of `expected`: (its keys are, values that differ)."""
    if not isinstance(read, dict):
        return False, 0
    if spec.exact_keys:
        if list(read) != list(expected):
            return False, 0
    else:
        if any(key not in read for key in expected):
            return False, 0
        if any(read[key] not in ("", None) for key in read if key not in expected):
            return False, 0
    return True, sum(not spec.same(expected[key], read[key]) for key in expected)


def check(outcome: Outcome) -> None:
    """The contract: each record written is stored exactly once as written, or counted;
    written = stored + counted; `failures()` names a sink that lost anything; what was
    counted was warned about, once."""
    spec, node = outcome.spec, outcome.node
    if spec.kind == "points":
        _check_points(outcome)
        return
    expected = [spec.expect(record) for record in outcome.written]
    stored = outcome.stored
    may_change = node.counts["changed"] + node.counts["overwritten"]
    changed = 0
    missing: list[int] = []
    empty_missing = 0  # records with no keys not stored: nothing to store (a CSV with no
    # column has no row for them), or lost with the rows around them (then counted)
    position = 0
    for index, row in enumerate(expected):
        if position < len(stored):
            keys_match, differ = _matches(spec, row, stored[position])
            if keys_match and differ and index + 1 < len(expected):
                # a row that is the next record's exactly: this record was lost (counted),
                # not stored changed (the changed budget is for the rows that were)
                next_match, next_differ = _matches(spec, expected[index + 1], stored[position])
                keys_match = not (next_match and not next_differ)
            if keys_match and changed + differ <= may_change:
                changed += differ
                position += 1
                continue
        if row:
            missing.append(index)
        else:
            empty_missing += 1
    first = (
        f"first record not stored as written: #{missing[0]} "
        f"{outcome.written[missing[0]]!r} -> expected {expected[missing[0]]!r}, "
        f"next stored {stored[position] if position < len(stored) else None!r}"
        if missing
        else ""
    )
    assert position == len(stored), (
        f"{spec.name}: {len(stored) - position} stored rows that no record accounts for "
        f"(doubled, torn or changed): {stored[position:position + 3]!r}; {first}"
    )
    assert len(missing) <= outcome.counted <= len(missing) + empty_missing, (
        f"{spec.name}: written = stored + counted fails: {len(expected)} written, "
        f"{len(stored)} stored, {outcome.counted} counted; {first}"
    )
    lost_here = outcome.isolation_lost if is_open("failures") else outcome.counted
    if lost_here:
        assert any(repr(node) in line for line in outcome.failures), (
            f"{spec.name} lost {lost_here} records; failures() = {outcome.failures!r}"
        )
    if outcome.counted or changed:
        names = (type(node).__name__, repr(node))
        assert any(name in text for text in outcome.warnings for name in names), (
            f"{spec.name} counted {outcome.counted} records and {changed} values, "
            f"warned nothing: {outcome.warnings!r}"
        )
    _warned_once_per_key(outcome)


def _warned_once_per_key(outcome: Outcome) -> None:
    """No reason counted was warned about more than once per key."""
    spec, node = outcome.spec, outcome.node
    owner = f"{node.counts.owner}: "
    for reason in node.counts:
        marker = f"counts[{reason!r}]"
        warned = [t for t in outcome.warnings if t.startswith(owner) and marker in t]
        keys = len(node.counts.by_key.get(reason, ())) or 1
        assert len(warned) <= keys, (
            f"{spec.name}: {len(warned)} warnings for {keys} keys counted in {marker}: "
            f"warned more than once per key: {warned[:2]!r}"
        )


def _check_points(outcome: Outcome) -> None:
    """Points keyed by (name, step): each written point stored once, as written (a value
    the sink counted as changed may differ), or counted; no point stored that was not
    written, none stored twice."""
    spec, node = outcome.spec, outcome.node
    waiting: dict[tuple[Any, Any], list[Any]] = {}
    for index, record in enumerate(outcome.written):
        for name, step, expected in spec.expect(record, index):
            waiting.setdefault((name, step), []).append(expected)
    written = sum(len(forms) for forms in waiting.values())
    may_change = node.counts["changed"] + node.counts["overflow"]
    changed = 0
    for name, step, value in outcome.stored:
        forms = waiting.get((name, step))
        assert forms, (
            f"{spec.name}: point {(name, step, value)!r} stored but never written "
            f"(or stored twice); written there: {_written_at(outcome, name, step)!r}"
        )
        match = next((i for i, form in enumerate(forms) if spec.same(form, value)), None)
        if match is None:
            changed += 1
            assert changed <= may_change, (
                f"{spec.name}: {(name, step)!r} stored {value!r}, written {forms[0]!r} "
                f"({may_change} values counted as changed)"
            )
            match = 0
        del forms[match]
    missing = sum(len(forms) for forms in waiting.values())
    assert missing == outcome.counted, (
        f"{spec.name}: {written} points written, {written - missing} stored, "
        f"{outcome.counted} counted; not stored: "
        f"{[(key, forms) for key, forms in waiting.items() if forms][:3]!r}"
    )
    if outcome.counted:
        assert any(repr(node) in line or type(node).__name__ in line
                   for line in outcome.failures), (
            f"{spec.name} lost {outcome.counted} points; failures() = {outcome.failures!r}"
        )
        names = (type(node).__name__, repr(node))
        assert any(name in text for text in outcome.warnings for name in names), (
            f"{spec.name} counted {outcome.counted} points, warned nothing: "
            f"{outcome.warnings!r}"
        )
    _warned_once_per_key(outcome)


def _written_at(outcome: Outcome, name: Any, step: Any) -> list[Any]:
    return [
        form
        for index, record in enumerate(outcome.written)
        for n, s, form in outcome.spec.expect(record, index)
        if (n, s) == (name, step)
    ]


def describe(stream: list[strategies.Op]) -> None:
    """Notes the kinds of calls of a generated stream (`--hypothesis-show-statistics`)."""
    kinds = Counter(op.kind for op in stream)
    for kind in ("write", "batch", "flush"):
        if kinds[kind]:
            event(f"calls: {kind}")
    if any(op.reuse for op in stream):
        event("caller reuses its objects")


def check_sink(spec: SinkSpec, *, examples: int = 50, faults: bool = True) -> None:
    """Runs the conformance suite on the sink `spec` describes: `examples` generated streams
    of write and write_batch calls (any keys, any values, reused buffers), then, if the spec
    can fail its storage and `faults` is set, as many streams whose storage fails at a
    random call and recovers (or not). Raises AssertionError, with the smallest failing
    stream, if the contract does not hold."""

    @suite(examples)
    @given(stream=strategies.streams())
    def plain(stream: list[strategies.Op]) -> None:
        describe(stream)
        with tempfile.TemporaryDirectory() as folder:
            check(run(spec, stream, Path(folder)))

    plain()
    if not faults or spec.fail_storage is None:
        return

    @suite(examples)
    @given(stream=strategies.streams(), data=st.data())
    def down(stream: list[strategies.Op], data: st.DataObject) -> None:
        fault = data.draw(storage_faults(len(stream)))
        event("storage recovers" if fault.up_at is not None else "storage never recovers")
        with tempfile.TemporaryDirectory() as folder:
            check(run(spec, stream, Path(folder), fault=fault))

    down()


def storage_faults(length: int) -> st.SearchStrategy[StorageFault]:
    """A storage failure from a random call on, recovering at a later one or never."""
    return st.integers(0, max(length - 1, 0)).flatmap(
        lambda down_at: st.builds(
            StorageFault,
            st.just(down_at),
            st.one_of(st.none(), st.integers(down_at + 1, length + 1)),
        )
    )


def importable(module: str) -> bool:
    """Whether `module` can be imported (an optional dependency is installed)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None
