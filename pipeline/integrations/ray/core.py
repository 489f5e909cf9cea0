"""The hub actor's body: the central pipeline, and each stream's batches applied once, in order."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pipeline.core.node import ClosedError, Node
from pipeline.integrations.ray.partials import PartialEntry, PartialPlan, apply_entry, plan_of
from pipeline.integrations.ray.status import HubStatus, StreamStatus
from sinks.base import Sink
from sinks.file import BufferedFileSink

__all__ = ["HubCore", "Report", "remote_core"]

Report = tuple[int, int, int]
"""What a sender reports with each call: records it shipped or counted lost, records it
counted lost, records the hub confirmed (those in its batches below its acknowledged mark)."""


class _Stream:
    """The hub's book-keeping for one sender: the next sequence number to apply, the batches
    that arrived ahead of it (held until the gap is filled), and what the sender reported."""

    __slots__ = (
        "batches",
        "below",
        "duplicates",
        "ended",
        "failed",
        "first_error",
        "held",
        "lost",
        "low",
        "records",
        "tags",
        "written",
    )

    def __init__(self, tags: dict[str, Any], low: int, report: Report | None) -> None:
        self.tags = tags
        self.low = low  # every sequence number below it was applied (here or by a predecessor)
        self.held: dict[int, tuple[int, list[Any]]] = {}
        self.records = 0  # applied by this instance
        self.below = report[2] if report else 0  # records in the batches below `low`
        self.written = 0  # records the sender reported shipped or counted lost
        self.lost = 0  # records the sender reported it counted lost
        self.batches = 0
        self.duplicates = 0
        self.failed = 0
        self.first_error = ""
        self.ended = False
        self.hear(report)

    def hear(self, report: Report | None) -> None:
        """Takes a sender's report (records shipped or lost, lost, confirmed); its counts only
        grow, so a report re-sent late by Ray changes nothing."""
        if report is not None:
            self.written = max(self.written, report[0])
            self.lost = max(self.lost, report[1])

    def status(self, final: bool = False) -> StreamStatus:
        held = sum(count for count, _ in self.held.values())
        missing = self.written - self.lost - self.below - held
        return StreamStatus(
            dict(self.tags),
            self.records,
            self.batches,
            self.duplicates,
            self.failed,
            self.ended,
            self.first_error,
            len(self.held),
            written=self.written,
            lost=self.lost,
            missing=max(0, missing) if final or self.ended else 0,
            earlier=max(0, self.below - self.records),
        )


class HubCore:
    """The hub actor's body: builds the central pipeline and applies each sender's batches
    exactly once, in sequence order.

    A batch that arrives ahead of its predecessor (Ray re-sends the calls in flight after a
    restart in no particular order) is held until the predecessor arrives, or until the sender
    says (`acked`, `sync`) that the predecessor was applied by an earlier incarnation. Ray runs
    it as an actor, one call at a time; it needs Ray only to learn whether it was restarted
    (and asks nothing of Ray outside a Ray worker: a plain HubCore starts no Ray).

    Acknowledged means stored: before a call that applied records answers, every sink of the
    central pipeline is flushed (a file sink: one write), so a record its sender counts as
    sent survives the hub's death. Aggregates are not flushed (their windows stay whole).

    Each call carries the sender's report (`Report`), so the hub knows how many records each
    stream shipped: a stream whose sender died shows them as `missing` in its status, and
    `earlier` counts the records a dead predecessor of a restarted hub applied.
    """

    def __init__(
        self, factory: Callable[[], Node], *, partials: bool = True, exact: bool = False
    ) -> None:
        pipeline = factory()
        if not isinstance(pipeline, Node):
            raise TypeError(
                f"the hub's factory must return an rlpipe Pipeline (or Node), "
                f"got {type(pipeline).__name__}"
            )
        self.pipeline = pipeline
        self.sinks = [node for node in pipeline.nodes() if isinstance(node, Sink)]
        self._plan, self._aggregate, self.mode = (
            plan_of(pipeline, exact=exact) if partials else (None, None, "records (asked)")
        )
        self.by_partials: set[_Stream] = set()  # the streams that shipped partials
        self.streams: dict[str, _Stream] = {}
        self.closed = False
        self.store_errors = 0
        self.first_store_error = ""
        self.restarted = _in_a_restarted_actor()
        if self.restarted:  # the run goes on: file sinks append to what the dead hub stored
            for sink in self.sinks:
                if isinstance(sink, BufferedFileSink):
                    sink.continue_file()

    def ready(self) -> bool:
        """Answers once the pipeline is built; True if this actor is a restarted one."""
        return self.restarted

    def plan(self) -> PartialPlan | None:
        """What senders ship: partials (by this plan) or records (None)."""
        return self._plan

    def describe(self) -> str:
        """The central pipeline's graph, the hub's mode and each stream's."""
        describe = getattr(self.pipeline, "describe", None)
        lines = [describe() if callable(describe) else repr(self.pipeline), f"hub: {self.mode}"]
        for name, state in self.streams.items():
            mode = "partials" if state in self.by_partials else "records"
            lines.append(f"stream {state.tags or name}: {mode}")
        return "\n".join(lines)

    def push(
        self,
        stream: str,
        seq: int,
        acked: int,
        count: int,
        entries: list[Any],
        tags: dict[str, Any],
        report: Report | None = None,
    ) -> int:
        """Applies batch `seq` of `stream` once, in order, and stores it; returns the stream's
        lowest sequence number not yet applied (every batch below it is applied and stored:
        the acknowledgement). `acked` is the sender's own such number when it sent the batch;
        `report` its counts then."""
        if self.closed:
            raise ClosedError("the hub is closed; it takes no more records")
        state = self.streams.get(stream)
        if state is None:
            state = self.streams[stream] = _Stream(tags, acked, report)
        else:
            state.hear(report)
        if seq < state.low or seq in state.held:
            state.duplicates += 1
        else:
            state.held[seq] = (count, entries)
        self._advance(state, acked, report)
        return state.low

    def sync(self, stream: str, acked: int, report: Report | None = None) -> int:
        """Learns from a sender that every batch below `acked` was applied (by this actor or
        an earlier incarnation); applies what that releases; returns the stream's low mark."""
        state = self.streams.get(stream)
        if state is None:
            return acked
        state.hear(report)
        self._advance(state, acked, report)
        return state.low

    def _advance(self, state: _Stream, acked: int, report: Report | None) -> None:
        if acked > state.low:
            for seq in [seq for seq in state.held if seq < acked]:
                del state.held[seq]
                state.duplicates += 1
            state.low = acked
            if report is not None:  # the sender's confirmed records are those below `acked`
                state.below = max(state.below, report[2])
        held = state.held
        if state.low in held:
            while state.low in held:
                count, entries = held.pop(state.low)
                self._apply(state, count, entries)
                state.low += 1
            self._store()

    def _store(self) -> None:
        """Flushes every sink (not the aggregates): what was applied is stored before it is
        acknowledged. A sink that cannot store keeps its rows and retries (and counts what it
        drops); the hub counts the failure."""
        for sink in self.sinks:
            try:
                sink.flush()
            except Exception as error:
                self.store_errors += 1
                self.first_store_error = self.first_store_error or (
                    f"{sink!r}: {type(error).__name__}: {error}"
                )

    def _apply(self, state: _Stream, count: int, entries: list[Any]) -> None:
        write, write_batch = self.pipeline.write, self.pipeline.write_batch
        for entry in entries:
            try:
                if type(entry) is dict:
                    write(entry)
                elif type(entry) is PartialEntry:
                    self._partial(state, entry)
                else:
                    write_batch(entry[0])
            except Exception as error:  # count it, apply the rest of the batch
                state.failed += (1 if type(entry) is dict else entry.records
                                 if type(entry) is PartialEntry else entry[1])
                state.first_error = state.first_error or f"{type(error).__name__}: {error}"
        state.records += count
        state.below += count
        state.batches += 1

    def _partial(self, state: _Stream, entry: PartialEntry) -> None:
        if self._aggregate is None:
            raise ValueError("this hub takes records, not partials (its plan changed?)")
        apply_entry(self._aggregate, entry)
        self.by_partials.add(state)

    def end(self, stream: str, report: Report | None = None) -> None:
        """Marks a stream as ended: its sender closed after every batch was acknowledged;
        `report` holds its final counts."""
        state = self.streams.get(stream)
        if state is not None:
            state.hear(report)
            state.ended = True

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Runs `fn(pipeline, *args, **kwargs)` on the central pipeline; returns its result."""
        return fn(self.pipeline, *args, **kwargs)

    def flush(self) -> None:
        """Flushes the central pipeline (aggregates emit their windows, files are written)."""
        self.pipeline.flush()

    def status(self, warned: list[str] | None = None) -> HubStatus:
        """Every stream's counts, and a line in `failures` for each loss the hub knows of:
        the central pipeline's failing sinks, a sink that could not store, and (once closed)
        each stream whose sender did not close or whose records did not all arrive."""
        final = self.closed
        streams = {name: state.status(final) for name, state in self.streams.items()}
        for name, state in self.streams.items():
            if state in self.by_partials:
                streams[name] = replace(streams[name], mode="partials")
        failures = getattr(self.pipeline, "failures", None)
        lines = list(failures()) if callable(failures) else []
        if self.store_errors:
            lines.append(
                f"hub: storing failed {self.store_errors} times ({self.first_store_error}); "
                "the sinks keep the rows and retry"
            )
        for stream in streams.values():
            lines.extend(_stream_failures(stream, final))
        return HubStatus(streams, self.restarted, self.closed, lines, warned or [])

    def close(self) -> HubStatus:
        """Closes the central pipeline; returns the final status with the warnings it raised.
        Batches still held behind a gap are applied, in order; the gap is counted missing."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if not self.closed:
                for state in self.streams.values():  # a gap nobody filled: apply in order
                    for seq in sorted(state.held):
                        self._apply(state, *state.held.pop(seq))
                self.pipeline.close()
        self.closed = True
        return self.status([str(warning.message) for warning in caught])


def _stream_failures(stream: StreamStatus, final: bool) -> list[str]:
    """The losses of one stream the hub knows of, one line each."""
    name = f"sender {stream.tags or '{}'}"
    lines = []
    if final and not stream.ended:
        lines.append(
            f"{name} did not close (its process died?): it reported {stream.written} records, "
            f"{stream.records + stream.earlier} stored, {stream.missing} missing, "
            f"{stream.lost} lost; what it wrote after its last batch is unknown"
        )
    elif stream.missing:
        lines.append(f"{name}: {stream.missing} records shipped never arrived")
    if stream.lost:
        lines.append(f"{name}: {stream.lost} records lost by the sender (see its warning)")
    if stream.failed:
        lines.append(f"{name}: {stream.failed} records refused ({stream.first_error})")
    return lines


def _in_a_restarted_actor() -> bool:
    """True in a Ray actor that Ray restarted. Outside a Ray worker it asks Ray nothing: a
    plain HubCore must not start Ray (`ray.get_runtime_context()` would start a local
    instance, and its files)."""
    ray = sys.modules.get("ray")  # an actor's process has imported Ray; a plain one may not
    if ray is None or not ray.is_initialized():
        return False
    try:
        with warnings.catch_warnings():  # Ray 2.60 warns about its own use of actor_id
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ray.get_runtime_context()
            return bool(context.was_current_actor_reconstructed)
    except Exception:  # a driver, not an actor: never restarted
        return False


_REMOTE_CORE: Any = None


def remote_core(ray: Any) -> Any:
    """HubCore as a Ray actor class, made once per process."""
    global _REMOTE_CORE
    if _REMOTE_CORE is None:
        _REMOTE_CORE = ray.remote(HubCore)
    return _REMOTE_CORE
