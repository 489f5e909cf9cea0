"""The hub actor's body: the central pipeline, and each stream's batches applied once, in order."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

from pipeline.core.node import ClosedError, Node
from pipeline.integrations.ray.status import HubStatus, StreamStatus

__all__ = ["HubCore", "remote_core"]


class _Stream:
    """The hub's book-keeping for one sender: the next sequence number to apply, and the
    batches that arrived ahead of it (held until the gap is filled)."""

    __slots__ = (
        "batches",
        "duplicates",
        "ended",
        "failed",
        "first_error",
        "held",
        "low",
        "records",
        "tags",
    )

    def __init__(self, tags: dict[str, Any], low: int) -> None:
        self.tags = tags
        self.low = low  # every sequence number below it was applied (here or by a predecessor)
        self.held: dict[int, tuple[int, list[Any]]] = {}
        self.records = 0
        self.batches = 0
        self.duplicates = 0
        self.failed = 0
        self.first_error = ""
        self.ended = False

    def status(self) -> StreamStatus:
        return StreamStatus(
            dict(self.tags),
            self.records,
            self.batches,
            self.duplicates,
            self.failed,
            self.ended,
            self.first_error,
            len(self.held),
        )


class HubCore:
    """The hub actor's body: builds the central pipeline and applies each sender's batches
    exactly once, in sequence order.

    A batch that arrives ahead of its predecessor (Ray re-sends the calls in flight after a
    restart in no particular order) is held until the predecessor arrives, or until the sender
    says (`acked`, `sync`) that the predecessor was applied by an earlier incarnation. Ray runs
    it as an actor, one call at a time; it needs Ray only to learn whether it was restarted.
    """

    def __init__(self, factory: Callable[[], Node]) -> None:
        pipeline = factory()
        if not isinstance(pipeline, Node):
            raise TypeError(
                f"the hub's factory must return an rlpipe Pipeline (or Node), "
                f"got {type(pipeline).__name__}"
            )
        self.pipeline = pipeline
        self.streams: dict[str, _Stream] = {}
        self.closed = False
        self.restarted = _in_a_restarted_actor()

    def ready(self) -> bool:
        """Answers once the pipeline is built; True if this actor is a restarted one."""
        return self.restarted

    def push(
        self,
        stream: str,
        seq: int,
        acked: int,
        count: int,
        entries: list[Any],
        tags: dict[str, Any],
    ) -> int:
        """Applies batch `seq` of `stream` once, in order; returns the stream's lowest sequence
        number not yet applied (every batch below it is applied: the acknowledgement).
        `acked` is the sender's own such number when it sent the batch."""
        if self.closed:
            raise ClosedError("the hub is closed; it takes no more records")
        state = self.streams.get(stream)
        if state is None:
            state = self.streams[stream] = _Stream(tags, acked)
        if seq < state.low or seq in state.held:
            state.duplicates += 1
        else:
            state.held[seq] = (count, entries)
        self._advance(state, acked)
        return state.low

    def sync(self, stream: str, acked: int) -> int:
        """Learns from a sender that every batch below `acked` was applied (by this actor or
        an earlier incarnation); applies what that releases; returns the stream's low mark."""
        state = self.streams.get(stream)
        if state is None:
            return acked
        self._advance(state, acked)
        return state.low

    def _advance(self, state: _Stream, acked: int) -> None:
        if acked > state.low:
            for seq in [seq for seq in state.held if seq < acked]:
                del state.held[seq]
                state.duplicates += 1
            state.low = acked
        held = state.held
        while state.low in held:
            count, entries = held.pop(state.low)
            self._apply(state, count, entries)
            state.low += 1

    def _apply(self, state: _Stream, count: int, entries: list[Any]) -> None:
        write, write_batch = self.pipeline.write, self.pipeline.write_batch
        for entry in entries:
            try:
                if type(entry) is dict:
                    write(entry)
                else:
                    write_batch(entry[0])
            except Exception as error:  # count it, apply the rest of the batch
                state.failed += 1 if type(entry) is dict else entry[1]
                state.first_error = state.first_error or f"{type(error).__name__}: {error}"
        state.records += count
        state.batches += 1

    def end(self, stream: str) -> None:
        """Marks a stream as ended: its sender closed after every batch was acknowledged."""
        state = self.streams.get(stream)
        if state is not None:
            state.ended = True

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Runs `fn(pipeline, *args, **kwargs)` on the central pipeline; returns its result."""
        return fn(self.pipeline, *args, **kwargs)

    def flush(self) -> None:
        """Flushes the central pipeline (aggregates emit their windows, files are written)."""
        self.pipeline.flush()

    def status(self, warned: list[str] | None = None) -> HubStatus:
        failures = getattr(self.pipeline, "failures", None)
        return HubStatus(
            {name: state.status() for name, state in self.streams.items()},
            self.restarted,
            self.closed,
            list(failures()) if callable(failures) else [],
            warned or [],
        )

    def close(self) -> HubStatus:
        """Closes the central pipeline; returns the final status with the warnings it raised."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if not self.closed:
                for state in self.streams.values():  # a gap nobody filled: apply in order
                    for seq in sorted(state.held):
                        self._apply(state, *state.held.pop(seq))
                self.pipeline.close()
        self.closed = True
        return self.status([str(warning.message) for warning in caught])


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
