"""The hub actor's body: the central pipeline, and each stream's batches applied once, in order."""

from __future__ import annotations

import os
import pickle
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from filters.aggregate import step_window
from filters.dispatch import Dispatcher
from pipeline.core.node import ClosedError, Node
from pipeline.integrations.ray.partials import (
    PartialEntry,
    PartialPlan,
    apply_entry,
    key_filters,
    leading_aggregate,
    passes,
    plan_of,
)
from pipeline.integrations.ray.status import HubStatus, StreamStatus
from sinks.base import Sink
from sinks.file import BufferedFileSink

__all__ = ["CHECKPOINT_NEEDED", "HubCore", "Report", "remote_core"]

CHECKPOINT_NEEDED = "give Hub(..., checkpoint=folder)"
"""How HubCore's refusal of restarts without a checkpoint ends (Hub raises it as ValueError)."""

WINDOW_DEADLINE = 60.0
"""Seconds a window by step stays open, after its first partial arrived, waiting for the
streams that did not report it (`Hub(window_deadline=)`)."""

RELAY_RUN = "relay"
"""The `run` of a relay's stream: its stream id is `relay/<node id>/<uuid>`."""

WARNINGS_KEPT = 1000
"""Distinct warning texts of the central pipeline the hub keeps for `status()`."""

Report = tuple[int, int, int]
"""What a sender reports with each call: records it shipped or counted lost, records it
counted lost, records the hub confirmed (those in its batches below its acknowledged mark)."""


class ForwardMarks:
    """What a relay's batch to the hub covers of its senders' streams: for each, the lowest
    batch number not yet in it and the records in the batches below (`_Stream.low`,
    `.below` at the relay). Shipped with the relay's batch and taken by the hub only when
    that batch is applied, so the hub knows which of a sender's batches reached it through
    the relay, even those the relay died before answering."""

    __slots__ = ("marks",)

    def __init__(self, marks: dict[str, tuple[int, int]]) -> None:
        self.marks = marks


class _Stream:
    """The hub's book-keeping for one sender: the next sequence number to apply, the batches
    that arrived ahead of it (held until the gap is filled), and what the sender reported."""

    __slots__ = (
        "batches",
        "below",
        "copy",
        "cut",
        "done_through",
        "duplicates",
        "ended",
        "epoch",
        "failed",
        "first_error",
        "from_checkpoint",
        "held",
        "late",
        "lost",
        "low",
        "records",
        "relay",
        "replayed",
        "retired",
        "tags",
        "top_window",
        "via_relay",
        "windows",
        "windows_missing",
        "written",
    )

    SAVED = (
        "tags",
        "low",
        "below",
        "copy",
        "retired",
        "epoch",
        "written",
        "lost",
        "batches",
        "duplicates",
        "replayed",
        "failed",
        "first_error",
        "ended",
        "windows",
        "windows_missing",
        "late",
        "relay",
        "via_relay",
        "top_window",
        "done_through",
        "cut",
    )
    """What a checkpoint keeps of a stream (not `held`: unacknowledged, the sender resends)."""

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
        self.copy = ""  # the sender's copy whose reports count (the stream's latest epoch)
        self.retired: set[str] = set()  # the copies of earlier epochs
        self.epoch = 0
        self.replayed = 0  # records a later epoch sent again below the mark: not applied
        self.windows: set[Any] = set()  # the window ids this stream reported
        self.top_window: Any = None  # the newest window id it reported
        self.done_through: Any = None  # its part of every window up to this id was delivered
        self.windows_missing: list[Any] = []  # windows closed without it
        self.late = 0  # reports of a window that had closed
        self.relay = ""  # the node whose relay it shipped through, until that relay died
        self.via_relay = 0  # records that relay had confirmed (merged) when it died
        self.cut = 0  # acknowledged by a dead instance after its last checkpoint: cut back
        self.from_checkpoint = False  # taken from a dead instance's checkpoint
        self.hear(report)

    def current(self, copy: str) -> bool:
        """Whether `copy` is the stream's latest; a copy not seen before starts a new epoch
        (Ray retried the task that unpickled the sender): its counts start afresh, and those
        of the earlier copies no longer count."""
        if copy == self.copy or not copy:
            return True
        if copy in self.retired:
            return False
        if self.copy:
            self.retired.add(self.copy)
            self.epoch += 1
            self.written = self.lost = 0
            self.ended = False
        self.copy = copy
        return True

    def saved(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.SAVED}

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> _Stream:
        """A stream as a checkpoint left it: what this instance applies is counted anew."""
        stream = cls(saved["tags"], saved["low"], None)
        stream.from_checkpoint = True
        for name in cls.SAVED:
            if name in saved:  # (a checkpoint of an older version lacks the newer names)
                setattr(stream, name, saved[name])
        return stream

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
            earlier=max(0, self.below - self.records - self.via_relay - self.cut),
            via_relay=self.via_relay,
            cut_back=self.cut,
            epoch=self.epoch,
            replayed=self.replayed,
            windows_missing=tuple(self.windows_missing),
            late=self.late,
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

    With a `checkpoint` folder, the central pipeline's `state_dict()` and every stream's
    marks are written to `<checkpoint>/hub-<run>.pickle` (replaced atomically) after the sinks
    are flushed and before the call answers: acknowledged then means stored or held by a node
    whose state the checkpoint keeps. A restarted instance loads it (file sinks are cut back to
    their checkpointed length; what the dead instance stored after it is applied again, once).
    `restarts` (the actor's `max_restarts`) with a node that holds state and no checkpoint
    is refused: that state would die with the actor.
    """

    def __init__(
        self,
        factory: Callable[[], Node],
        run: str = "",
        checkpoint: str | None = None,
        restarts: int = 0,
        *,
        partials: bool = True,
        exact: bool = False,
        window_deadline: float = WINDOW_DEADLINE,
    ) -> None:
        number = isinstance(window_deadline, (int, float)) and not isinstance(window_deadline,
                                                                              bool)
        if not number or not window_deadline >= 0:
            raise ValueError(f"window_deadline must be a number of seconds >= 0, got "
                             f"{window_deadline!r}")
        self.window_deadline = float(window_deadline)
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
        aggregate, filters = leading_aggregate(pipeline)
        self._steps = aggregate if aggregate is not None and aggregate.every_steps else None
        # whether the aggregate sees the step key (its key filters do not take it out)
        self._sees_step = self._steps is not None and passes(
            key_filters(filters), self._steps.step_key)
        """The aggregate with windows by step the hub cuts (in record mode too): the
        streams' records and partials report their windows (see report_window)."""
        if self._steps is not None:
            self._steps.hold_windows()
        self.by_partials: set[_Stream] = set()  # the streams that shipped partials
        self.streams: dict[str, _Stream] = {}
        self.closed = False
        self.store_errors = 0
        self.warned: dict[str, None] = {}
        """The texts of the warnings the central pipeline raised, in order (`status()`)."""
        self.first_store_error = ""
        self.restarted = _in_a_restarted_actor()
        self.resumed = False
        """Whether this instance loaded a dead one's checkpoint (a restart without one is at
        least once)."""
        self.checkpoint = None if checkpoint is None else Path(checkpoint) / f"hub-{run}.pickle"
        self.checkpoint_errors = 0
        self.first_checkpoint_error = ""
        self.forwarded: dict[str, tuple[int, int]] = {}
        """Per relayed sender stream, what its relay's applied batches covered (ForwardMarks)."""
        self.closed_windows: set[Any] = set()
        self.open_windows: dict[Any, float] = {}  # window id -> when first reported
        self.expected: dict[str, None] = {}  # workers with a sender that has not shipped
        if self.checkpoint is None and restarts:
            stateful = [node for node in pipeline.nodes() if _holds_state(node)]
            if stateful:
                raise ValueError(
                    f"the hub's pipeline holds state in {stateful[0]!r}, which a restart "
                    f"(max_restarts) would lose: {CHECKPOINT_NEEDED}"
                )
        if self.restarted and self.checkpoint is not None and self.checkpoint.is_file():
            with self.checkpoint.open("rb") as handle:
                saved = pickle.load(handle)
            self.resumed = True
            pipeline.load_state_dict(saved["pipeline"])
            self.streams = {name: _Stream.restored(s) for name, s in saved["streams"].items()}
            self.closed_windows = saved["closed_windows"]
            self.forwarded = saved.get("forwarded", {})
            now = time.monotonic()  # a restored window's deadline starts again
            self.open_windows = dict.fromkeys(saved.get("open_windows", ()), now)
            self.expected = dict.fromkeys(saved.get("expected", ()))
        elif self.restarted:  # the run goes on: file sinks append to what the dead hub stored
            for sink in self.sinks:
                if isinstance(sink, BufferedFileSink):
                    sink.continue_file()
        if self.checkpoint is not None:
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            self._checkpoint()

    def ready(self) -> bool:
        """Answers once the pipeline is built; True if this actor is a restarted one."""
        return self.restarted

    def by_step(self) -> bool:
        """Whether the hub cuts an aggregate's windows by step (see report_window)."""
        return self._steps is not None

    def expect(self, worker: str) -> None:
        """Notes that a sender of `worker` was made (`Hub.sender`): no window by step closes
        by delivery until a stream of that worker shipped or ended (the deadline still
        closes windows)."""
        if self._steps is not None and not any(
            _worker_of(name) == worker for name in self.streams
        ):
            self.expected[worker] = None

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
        copy: str = "",
    ) -> int:
        """Applies batch `seq` of `stream` once, in order, and stores it; returns the stream's
        lowest sequence number not yet applied (every batch below it is applied and stored:
        the acknowledgement). `acked` is the sender's own such number when it sent the batch;
        `report` its counts then; `copy` names the sender's copy (its epoch)."""
        if self.closed:
            raise ClosedError("the hub is closed; it takes no more records")
        state = self.streams.get(stream)
        if state is None:
            if stream.startswith(RELAY_RUN + "/"):  # a relay's: named by its node
                tags = {"relay": stream.split("/")[1]}
            state = self.streams[stream] = _Stream(tags, acked, report)
            self.expected.pop(_worker_of(stream), None)
        current = state.current(copy)
        if current:
            state.hear(report)
        else:
            report = None
        if seq < state.low or seq in state.held:
            if state.epoch and current and seq < state.low:
                state.replayed += count  # a retried task writes again what its first did
            else:
                state.duplicates += 1
        else:
            state.held[seq] = (count, entries)
        self._advance(state, acked, report)
        self._close_due_windows()
        return state.low

    def sync(self, stream: str, acked: int, report: Report | None = None, copy: str = "") -> int:
        """Learns from a sender that every batch below `acked` was applied (by this actor or
        an earlier incarnation); applies what that releases; returns the stream's low mark."""
        state = self.streams.get(stream)
        if state is None:
            return acked
        if state.current(copy):
            state.hear(report)
        else:
            report = None
        self._advance(state, acked, report)
        self._close_due_windows()
        return state.low

    def relayed(
        self,
        stream: str,
        node: str,
        records: int,
        acked: int,
        tags: dict[str, Any],
        report: Report | None = None,
        copy: str = "",
    ) -> int:
        """Learns from a sender whose relay (on `node`) died that the relay had confirmed
        `records` of its records (merged them) and every batch below `acked`; the sender
        ships here from now on. What the relay forwarded of them is in the relay's stream;
        the rest died with it (`relay_lost`). A batch the relay forwarded but died before
        answering (its marks say so) counts as delivered through the relay: the low mark
        returned covers it, so the sender does not send it again. Returns the stream's low
        mark."""
        forwarded_low, forwarded_below = self.forwarded.get(stream, (0, 0))
        acked = max(acked, forwarded_low)
        state = self.streams.get(stream)
        if state is None:
            state = self.streams[stream] = _Stream(tags, acked, report)
        if state.current(copy):
            state.hear(report)
            state.relay = node
            state.via_relay = max(state.via_relay, records, forwarded_below)
        else:
            report = None
        self._advance(state, acked, report)
        state.below = max(state.below, forwarded_below)
        self._checkpoint()
        return state.low

    def _advance(self, state: _Stream, acked: int, report: Report | None) -> None:
        if acked > state.low and report is not None and state.from_checkpoint:
            # The dead instance acknowledged batches past the checkpoint this one loaded (its
            # later checkpoints failed): the files were cut back to the checkpoint, and the
            # sender will not send those batches again. (This instance answers only marks
            # it checkpointed, so a mark above its own comes from the dead one.)
            state.cut += max(0, report[2] - state.below)
        if acked > state.low:
            for seq in [seq for seq in state.held if seq < acked]:
                del state.held[seq]
                state.duplicates += 1
            state.low = acked
            if report is not None:  # the sender's confirmed records are those below `acked`
                state.below = max(state.below, report[2])
        held = state.held
        if state.low in held:
            with self._keeping_warnings():
                while state.low in held:
                    count, entries = held.pop(state.low)
                    self._apply(state, count, entries)
                    state.low += 1
                self._store()
            self._checkpoint()

    @contextmanager
    def _keeping_warnings(self) -> Iterator[None]:
        """Keeps the texts of the warnings the central pipeline raises in the block for
        `status()` (the caller's only view of them: they are raised in the actor's process),
        each text once, and shows them as usual too."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            message = str(warning.message)
            if message not in self.warned and len(self.warned) < WARNINGS_KEPT:
                self.warned[message] = None
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )

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

    def _checkpoint(self) -> None:
        """Writes the pipeline's state and every stream's marks (when a folder was given),
        atomically: a restarted instance finds this one or the one before, never a torn
        file. A failure is counted (`failures`), and the call still answers."""
        if self.checkpoint is None:
            return
        try:
            saved = {
                "pipeline": self.pipeline.state_dict(),
                "streams": {name: state.saved() for name, state in self.streams.items()},
                "closed_windows": self.closed_windows,
                "open_windows": list(self.open_windows),
                "expected": list(self.expected),
                "forwarded": self.forwarded,
            }
            part = self.checkpoint.with_name(self.checkpoint.name + ".part")
            with part.open("wb") as handle:
                pickle.dump(saved, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(part, self.checkpoint)
        except Exception as error:
            self.checkpoint_errors += 1
            self.first_checkpoint_error = self.first_checkpoint_error or (
                f"{type(error).__name__}: {error}"
            )

    def _apply(self, state: _Stream, count: int, entries: list[Any]) -> None:
        write, write_batch = self.pipeline.write, self.pipeline.write_batch
        steps = self._steps
        for entry in entries:
            try:
                if type(entry) is dict:
                    if steps is None:
                        write(entry)
                    else:
                        self._write_by_step(state, entry, batch=False)
                elif type(entry) is PartialEntry:
                    self._partial(state, entry)
                elif type(entry) is ForwardMarks:
                    forwarded = self.forwarded
                    for stream, mark in entry.marks.items():
                        if mark[0] > forwarded.get(stream, (0, 0))[0]:
                            forwarded[stream] = mark
                else:
                    if steps is None:
                        write_batch(entry[0])
                    else:
                        self._write_by_step(state, entry[0], batch=True)
            except Exception as error:  # count it, apply the rest of the batch
                state.failed += (1 if type(entry) is dict else entry.records
                                 if type(entry) is PartialEntry else entry[1])
                state.first_error = state.first_error or f"{type(error).__name__}: {error}"
        state.records += count
        state.below += count
        state.batches += 1

    def _write_by_step(self, state: _Stream, data: Any, *, batch: bool) -> None:
        """Writes a stream's record (or column batch) into an aggregate with windows by step
        (record mode): a record without a step joins the stream's own window, each window
        its steps reach is reported, and what the aggregate found late is counted in the
        stream."""
        steps = self._steps
        assert steps is not None
        late = steps.counts["late"]
        if self._sees_step:
            steps.stepless_window(state.top_window)
        if batch:
            self.pipeline.write_batch(data)
            self._records_reported(state, data.get(steps.step_key, ()))
        else:
            self.pipeline.write(data)
            self._records_reported(state, [data.get(steps.step_key)])
        self._late_records(state, steps.counts["late"] - late)

    @staticmethod
    def _late_records(state: _Stream, late: int) -> None:
        """Records of a stream that the aggregate dropped as late (record mode): counted in
        the stream's `late` and `failed`, as a late partial's."""
        if late:
            state.late += late
            state.failed += late
            state.first_error = state.first_error or (
                "late: a record of a window already emitted (not merged into another window)")

    def _partial(self, state: _Stream, entry: PartialEntry) -> None:
        if self._aggregate is None:
            raise ValueError("this hub takes records, not partials (its plan changed?)")
        self.by_partials.add(state)
        if not apply_entry(self._aggregate, entry):
            state.late += 1
            raise ValueError(
                f"late: window {entry.window!r} had been emitted when its partial arrived "
                "(not merged into another window)"
            )
        if entry.window is not None:
            self._reported(state, entry.window, entry.complete)

    def end(self, stream: str, report: Report | None = None, copy: str = "") -> None:
        """Marks a stream as ended: its sender closed after every batch was acknowledged;
        `report` holds its final counts."""
        state = self.streams.get(stream)
        if self.expected.pop(_worker_of(stream), 0) is None and self.open_windows:
            with self._keeping_warnings():  # a sender that shipped nothing held them
                self._close_delivered()
                self._store()
        if state is not None and state.current(copy):
            state.hear(report)
            state.ended = True
            if self.open_windows:  # it may be the last stream a window waited for
                with self._keeping_warnings():
                    self._close_delivered()
                    self._store()
            self._checkpoint()

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Runs `fn(pipeline, *args, **kwargs)` on the central pipeline; returns its result."""
        try:
            return fn(self.pipeline, *args, **kwargs)
        finally:
            self._checkpoint()

    def flush(self) -> None:
        """Flushes the central pipeline (aggregates emit their windows, files are written)."""
        if self.closed:
            raise ClosedError("the hub is closed; there is nothing to flush")
        with self._keeping_warnings():
            for window in sorted(self.open_windows):
                self.close_window(window)
            self.pipeline.flush()
        self._checkpoint()

    # -- windows by step: streams report window ids with their partials --------------------

    def report_window(self, stream: str, window: Any) -> bool:
        """Notes that `stream` delivered its (whole) part of `window` (an id that orders
        windows: an int); closes, in id order, every open window whose part every live
        stream (not ended) delivered: it reported the window complete, or a later window.
        False (the report is counted `late`) when the window had closed already."""
        state = self.streams.get(stream)
        if state is None:
            return False
        if window in self.closed_windows:
            state.late += 1
            return False
        self._reported(state, window)
        return True

    def _records_reported(self, state: _Stream, steps: Any) -> None:
        """A stream's records of these steps arrived (record mode, or a record among
        partials): each new window it reaches is reported, its part so far."""
        aggregate = self._steps
        assert aggregate is not None
        every = aggregate.every_steps
        assert every is not None
        for step in steps:
            window = step_window(step, every)
            if window is not None and (state.top_window is None or window > state.top_window):
                self._reported(state, window, complete=False)

    def _reported(self, state: _Stream, window: Any, complete: bool = True) -> None:
        """A stream's part of `window` arrived: whole (`complete`), or so far (then its
        part of every earlier window is whole: a sender goes in step order)."""
        state.windows.add(window)
        if state.top_window is None or window > state.top_window:
            state.top_window = window
        done = window if complete else window - 1
        if state.done_through is None or done > state.done_through:
            state.done_through = done
        self.open_windows.setdefault(window, time.monotonic())
        self._close_delivered()

    def _close_delivered(self) -> None:
        """Closes, oldest first, the open windows whose part every live stream delivered
        (none while a sender made for the hub has not shipped)."""
        if self.expected:
            return
        live = [s for s in self.streams.values() if not s.ended]
        while self.open_windows:
            oldest = min(self.open_windows)
            if not all(s.done_through is not None and s.done_through >= oldest for s in live):
                break
            self.close_window(oldest)

    def close_window(self, window: Any) -> list[str]:
        """Closes `window` (every live stream reported it or a later one, or its deadline
        passed) and emits the aggregate's windows by step up to it, in id order: each live
        stream that had reported neither it nor a later window gets it in its
        `windows_missing`; returns their names. Later reports of it are `late`."""
        self.open_windows.pop(window, None)
        self.closed_windows.add(window)
        missing = []
        for name, state in self.streams.items():
            behind = state.top_window is None or state.top_window < window
            if window not in state.windows and behind and not state.ended:
                state.windows_missing.append(window)
                missing.append(name)
            state.windows.discard(window)
        if self._steps is not None:
            self._steps.emit_windows(window)
        return missing

    def close_windows_older_than(self, seconds: float) -> list[Any]:
        """Closes every open window first reported more than `seconds` ago (the deadline),
        and every older one before it (windows close in id order); returns them."""
        now = time.monotonic()
        due = [w for w, opened in self.open_windows.items() if now - opened > seconds]
        if not due:
            return []
        newest = max(due)
        closed = sorted(w for w in self.open_windows if w <= newest)
        for window in closed:
            self.close_window(window)
        return closed

    def _close_due_windows(self) -> None:
        """Closes the windows whose deadline passed (checked at each push and sync), and
        stores the rows that emitted."""
        if not self.open_windows:
            return
        with self._keeping_warnings():
            closed = self.close_windows_older_than(self.window_deadline)
            if closed:
                self._store()
        if closed:
            self._checkpoint()

    def status(self) -> HubStatus:
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
        if self.checkpoint_errors:
            lines.append(
                f"hub: checkpointing failed {self.checkpoint_errors} times "
                f"({self.first_checkpoint_error}); a restart goes back to the last checkpoint"
            )
        if self.restarted and not self.resumed:
            lines.append(
                "hub: restarted without a checkpoint (none given, or its file not found): a "
                "batch the dead instance stored and had "
                "not acknowledged (in flight at its death) is stored twice (at least once "
                "across a restart); checkpoint= makes a restart exactly once"
            )
        if self.store_errors:
            lines.append(
                f"hub: storing failed {self.store_errors} times ({self.first_store_error}); "
                "the sinks keep the rows and retry"
            )
        for stream in streams.values():
            lines.extend(_stream_failures(stream, final))
        streams.update(self._relays_lost(streams, lines))
        return HubStatus(streams, self.restarted, self.closed, lines, list(self.warned))

    def _relays_lost(
        self, streams: dict[str, StreamStatus], lines: list[str]
    ) -> dict[str, StreamStatus]:
        """The relays that died (a sender said so): what their senders reported they had
        confirmed, less what reached the hub from them (stored, or counted lost or missing in
        the relay's stream), died with them. Returns the relays' streams with `relay_lost`;
        adds a line for each."""
        confirmed: dict[str, int] = {}
        for state in self.streams.values():
            if state.relay:
                confirmed[state.relay] = confirmed.get(state.relay, 0) + state.via_relay
        changed = {}
        for name, stream in streams.items():
            node = name.split("/")[1] if name.startswith(RELAY_RUN + "/") else ""
            if node not in confirmed:
                continue
            arrived = stream.records + stream.earlier + stream.lost + stream.missing
            lost = max(0, confirmed[node] - arrived)
            changed[name] = replace(stream, relay_lost=lost)
            lines.append(
                f"hub: the relay on node {node} died holding {lost} records its senders had "
                f"delivered (merged, not forwarded): lost; its senders then shipped here"
            )
            if arrived > confirmed[node]:
                lines.append(
                    f"hub: the relay on node {node} forwarded {arrived - confirmed[node]} "
                    f"records of senders that did not report its death (they died with it): "
                    f"stored; what those senders shipped after its last forward is unknown"
                )
        return changed

    def close(self) -> HubStatus:
        """Closes the central pipeline; returns the final status with the warnings it raised.
        Batches still held behind a gap are applied, in order; the gap is counted missing."""
        with self._keeping_warnings():
            if not self.closed:
                for state in self.streams.values():  # a gap nobody filled: apply in order
                    for seq in sorted(state.held):
                        self._apply(state, *state.held.pop(seq))
                for window in sorted(self.open_windows):  # a stream that never closed missed it
                    self.close_window(window)
                self.pipeline.close()
        self.closed = True
        return self.status()


def _worker_of(stream: str) -> str:
    """The worker of a stream id `run/worker/task` (the id itself if it has no such parts)."""
    parts = stream.split("/")
    return parts[1] if len(parts) >= 3 else stream


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
    if stream.cut_back:
        lines.append(
            f"{name}: {stream.cut_back} records the dead hub had acknowledged after its last "
            "checkpoint (the later checkpoints failed) were cut from the files by the restart: "
            "lost"
        )
    if stream.failed:
        lines.append(f"{name}: {stream.failed} records refused ({stream.first_error})")
    if stream.windows_missing:
        shown = ", ".join(map(repr, stream.windows_missing[:10]))
        more = len(stream.windows_missing) - 10
        lines.append(
            f"{name}: {len(stream.windows_missing)} windows closed without its part "
            f"({shown}{f', and {more} more' if more > 0 else ''})"
        )
    if stream.late:
        lines.append(f"{name}: {stream.late} reports came after their window closed (late)")
    return lines


def _holds_state(node: Node) -> bool:
    """Whether `node` holds records or statistics between calls beyond its counts (an
    aggregate, a moving average, a queue): its class adds to `Node.node_state`. Sinks store
    what they hold at each acknowledgement and are not counted."""
    if isinstance(node, (Sink, Dispatcher)):  # a fan-out queues only for a failing child
        return False
    return type(node).node_state is not Node.node_state


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
