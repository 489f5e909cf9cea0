"""Many Ray workers, one pipeline: a Hub actor owns the pipeline, workers write through senders.

    import ray
    from pipeline import Pipeline
    from pipeline.integrations.ray import Hub
    from sinks import CsvSink

    def central() -> Pipeline:  # runs inside the hub actor: module-level, hence picklable
        return Pipeline("hub").aggregate(r"return", every=100).to(CsvSink("runs/all.csv"))

    @ray.remote
    def rollout(log, seed: int) -> None:
        with log:  # closing ships what is held and waits for the acks
            for step in range(1000):
                log.write({"step": step, "return": float(seed + step)})

    hub = Hub(central)
    ray.get([rollout.remote(hub.sender(worker=i), i) for i in range(4)])
    hub.close()  # drains, closes the central pipeline, ends the actor

`Hub(factory)` starts one Ray actor that builds `factory()` (a Pipeline, made inside the
actor, so the factory must be picklable by Ray: a module-level function, a functools.partial,
a lambda) and owns it. `hub.sender(**tags)` is a Node that any Ray task or actor can use: it
adds `tags` to every record and ships records to the hub in batches, asynchronously. Records
from every worker meet in the one central pipeline, so an aggregate there is over all workers.

Guarantees (what the sender and the hub promise):

- Order: records of one sender reach the central pipeline in the order they were written
  (Ray runs the calls of one caller on a synchronous actor in submission order).
- Exactly once while the hub lives: every batch carries the sender's stream id and a sequence
  number; the hub applies each (stream, number) once and counts a repeat as a duplicate.
- Bounded: a sender holds at most `batch_size` records plus `max_in_flight` batches in flight.
  When the hub is behind and every slot is taken, `write` waits at most `write_timeout`
  seconds for an acknowledgement; then the batch is dropped, counted in `.lost` and warned
  about once, and the sender stops waiting (it drops, without blocking, while every slot is
  still taken, and waits again once an ack frees a slot). `flush()` and `close()` wait at most
  `flush_timeout` seconds for the acks.
- Faults: when the hub actor dies for good, each sender warns once and counts in `.lost`
  every record it could not deliver (those in flight and all later ones); nothing blocks.
  A batch the hub cannot take (a value its process cannot unpickle) is lost alone, counted
  and warned about; an empty batch takes its sequence number and the stream goes on.
- Restarts: with `Hub(..., max_restarts=n)` Ray restarts a dead hub actor and re-sends the
  calls that were in flight. The new actor rebuilds the pipeline with `factory()`, so file
  sinks (append mode, the default) continue their files, and the senders go on unchanged.
  What the dead actor held in memory is gone: rows its file sinks had not yet written (at most
  `flush_every` rows or `flush_seconds` of them) and its aggregates' open windows. A batch the
  dead actor applied but did not acknowledge is applied again (at least once across a
  restart); every other batch is applied exactly once.

Counts: `sender.written == sender.sent + sender.lost + sender.unconfirmed` once it is closed
(`unconfirmed`: shipped but not acknowledged within `flush_timeout`). `hub.status()` lists
every stream the hub has seen (tags, records, batches, duplicates, whether it ended).

Importing this module does not import Ray; making a Hub does (`pip install 'rlpipe[ray]'`).
"""

from __future__ import annotations

import sys
import time
import uuid
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.columns import Columns
from pipeline.core.node import ClosedError, Node, Record
from sinks.base import Sink

__all__ = ["Hub", "HubSender", "HubStatus", "StreamStatus"]

_EXTRA = "pip install 'rlpipe[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as error:  # pragma: no cover - the CI installs every extra
        raise ImportError(f"pipeline.integrations.ray needs Ray: {_EXTRA}") from error
    return ray


# -- what the hub reports ------------------------------------------------------------------


@dataclass(frozen=True)
class StreamStatus:
    """What the hub received from one sender (one stream)."""

    tags: dict[str, Any]
    records: int
    batches: int
    duplicates: int
    failed: int
    ended: bool
    first_error: str = ""
    held: int = 0


@dataclass(frozen=True)
class HubStatus:
    """The hub's view: every stream it saw, whether the actor was restarted, and (after
    `close`) the warnings the central pipeline raised while closing."""

    streams: dict[str, StreamStatus]
    restarted: bool
    closed: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        """Records applied to the central pipeline, over every stream."""
        return sum(stream.records for stream in self.streams.values())

    @property
    def duplicates(self) -> int:
        """Batches received twice (retries) and applied once."""
        return sum(stream.duplicates for stream in self.streams.values())


# -- inside the actor ----------------------------------------------------------------------


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
        self.restarted = False
        try:
            import ray

            with warnings.catch_warnings():  # Ray 2.60 warns about its own use of actor_id
                warnings.simplefilter("ignore", DeprecationWarning)
                context = ray.get_runtime_context()
                self.restarted = bool(context.was_current_actor_reconstructed)
        except Exception:  # not in an actor (a plain HubCore): never restarted
            self.restarted = False

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


_REMOTE_CORE: Any = None


def _remote_core(ray: Any) -> Any:
    global _REMOTE_CORE
    if _REMOTE_CORE is None:
        _REMOTE_CORE = ray.remote(HubCore)
    return _REMOTE_CORE


# -- inside the workers --------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    batch_size: int
    max_in_flight: int
    flush_seconds: float | None
    write_timeout: float
    flush_timeout: float


class _InFlight:
    """A batch shipped and not yet confirmed (applied, by the hub's low mark)."""

    __slots__ = ("count", "entries", "ref", "seq")

    def __init__(self, seq: int, entries: list[Any], count: int) -> None:
        self.ref: Any = None  # the pending call; None once it answered
        self.seq = seq
        self.entries = entries
        self.count = count


class HubSender(Sink):
    """A Node that ships records to a Hub's central pipeline; made by `hub.sender(**tags)`.

    `write(record)` adds the sender's tags to a copy of the record (a key the record has
    itself keeps the record's value) and holds it; a batch is shipped, without waiting for the
    hub, when `batch_size` records are held, at the first write `flush_seconds` after the
    oldest held one, and on `flush()`/`close()`. `write_batch(columns)` ships the columns as
    one entry (the hub writes them with `write_batch`). `flush()` ships what is held and waits
    (at most `flush_timeout` s) until the hub acknowledged every batch: the records were then
    written into the central pipeline (which `hub.flush()` flushes; a sender's flush does not,
    so that one worker cannot cut the others' aggregate windows). `close()` also tells the hub
    this stream ended. Back-pressure and failures: see the module documentation.

    Picklable: pass it to a Ray task or actor. Each copy (each process it is unpickled in)
    is a stream of its own, with its own sequence numbers and counts. Not thread-safe: share a
    Pipeline that ends in it between threads (`Pipeline().to(hub.sender())`), not the sender.

    Counts: `written` records taken, `sent` acknowledged by the hub, `lost` dropped (hub dead,
    closed or behind), `unconfirmed` shipped but unacknowledged when the sender closed.
    """

    def __init__(self, actor: Any, tags: Mapping[str, Any], settings: _Settings) -> None:
        super().__init__()
        self._ray = _import_ray()
        self._actor = actor
        self.tags: dict[str, Any] = dict(tags)
        self._settings = settings
        self._batch_size = settings.batch_size
        self._flush_seconds = settings.flush_seconds
        self.stream = uuid.uuid4().hex
        self._entries: list[Any] = []
        self._count = 0
        self._deadline = float("inf")
        self._in_flight: deque[_InFlight] = deque()
        self._seq = 0
        self._acked = 0
        self._behind = False
        self._dead = ""
        self._warned: set[str] = set()
        self.written = 0
        self.sent = 0
        self.lost = 0
        self.unconfirmed = 0

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_sender, (self._actor, self.tags, self._settings))

    # -- taking records ---------------------------------------------------------------------

    def write(self, data: Record) -> None:
        if self.closed:
            self._check_open()
        self._entries.append({**self.tags, **data} if self.tags else dict(data))
        self.written += 1
        count = self._count = self._count + 1
        if count >= self._batch_size:
            self._ship()
        elif count == 1:
            if self._flush_seconds is not None:
                self._deadline = time.monotonic() + self._flush_seconds
        elif time.monotonic() >= self._deadline:
            self._ship()

    def write_batch(self, columns: Columns) -> None:
        if self.closed:
            self._check_open()
        lengths = {key: len(column) for key, column in columns.items()}
        if not lengths:
            return
        rows = next(iter(lengths.values()))
        if any(length != rows for length in lengths.values()):
            raise ValueError(f"write_batch needs columns of equal length, got {lengths}")
        if rows == 0:
            return
        tagged = {key: [value] * rows for key, value in self.tags.items()}
        tagged.update(columns)
        self._entries.append((tagged, rows))
        self.written += rows
        count = self._count = self._count + rows
        if count >= self._batch_size:
            self._ship()
        elif count == rows and self._flush_seconds is not None:
            self._deadline = time.monotonic() + self._flush_seconds
        elif time.monotonic() >= self._deadline:
            self._ship()

    # -- shipping ---------------------------------------------------------------------------

    def _ship(self) -> None:
        entries, count = self._entries, self._count
        self._entries, self._count, self._deadline = [], 0, float("inf")
        if not count:
            return
        limit = self._settings.max_in_flight
        if not self._dead:
            self._collect(0.0, limit - 1)
            if len(self._in_flight) >= limit and not self._behind:
                self._collect(self._settings.write_timeout, limit - 1)
        if self._dead:
            self._lose(count, self._dead)
            return
        if len(self._in_flight) >= limit:
            self._behind = True
            self._lose(
                count,
                f"the hub is behind: {limit} batches were unacknowledged for "
                f"{self._settings.write_timeout} s",
            )
            return
        self._behind = False
        batch = _InFlight(self._seq, entries, count)
        self._seq += 1
        self._in_flight.append(batch)
        self._submit(batch)

    def _submit(self, batch: _InFlight) -> None:
        batch.ref = self._actor.push.remote(
            self.stream, batch.seq, self._acked, batch.count, batch.entries, self.tags
        )

    def _collect(self, timeout: float, target: int) -> None:
        """Takes the hub's answers and confirms the batches it applied, waiting at most
        `timeout` seconds for at most `target` batches to remain unconfirmed. Answered
        batches the hub holds back (after a restart) are released with a `sync`, and sent
        again if the hub does not have them."""
        ray = self._ray
        deadline = time.monotonic() + timeout
        in_flight = self._in_flight
        while in_flight and not self._dead:
            pending = [batch.ref for batch in in_flight if batch.ref is not None]
            remaining = max(0.0, deadline - time.monotonic())
            if len(in_flight) <= target:
                remaining = 0.0
            if pending:
                ready, _ = ray.wait(pending, num_returns=1, timeout=remaining)
                if ready and len(pending) > 1:
                    ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
                done = set(ready)
                for batch in list(in_flight):
                    if batch.ref is not None and batch.ref in done:
                        self._settle(batch)
                self._confirm()
                if not ready and remaining <= 0.0:
                    return
            else:
                # Every unconfirmed batch was answered, none applied: the hub holds them
                # behind a gap, or (restarted) lost them. Tell it what was applied; resend.
                self._sync(remaining)
                if not in_flight or self._dead or remaining <= 0.0:
                    return
                for batch in in_flight:
                    if batch.ref is None:
                        self._submit(batch)
        if self._dead:
            for batch in in_flight:
                self._lose(batch.count, self._dead)
            in_flight.clear()

    def _settle(self, batch: _InFlight) -> None:
        """Reads one answer from the hub."""
        ray = self._ray
        ref, batch.ref = batch.ref, None
        try:
            low = ray.get(ref)
        except ray.exceptions.ActorUnavailableError:
            pass  # it may or may not have run: `_collect` syncs and resends, applied once
        except ray.exceptions.RayActorError as error:
            self._died(f"the hub actor died ({_first_line(error)})")
        except ClosedError:
            self._died("the hub is closed")
        except Exception as error:
            # The call failed without applying the batch (e.g. a value the hub's process
            # cannot unpickle). Its records are lost; an empty batch takes its sequence number,
            # so the hub does not hold the batches after it behind a gap forever.
            self._lose(batch.count, f"the hub failed ({type(error).__name__}: {error})")
            if batch.entries:
                batch.entries, batch.count = [], 0
                self._submit(batch)
            else:  # even an empty batch fails: give the number up (the hub waits, then closes)
                self._in_flight.remove(batch)
        else:
            self._acked = max(self._acked, int(low))

    def _confirm(self) -> None:
        in_flight, acked = self._in_flight, self._acked
        while in_flight and in_flight[0].seq < acked:
            self.sent += in_flight.popleft().count

    def _sync(self, timeout: float) -> None:
        ray = self._ray
        try:
            low = ray.get(self._actor.sync.remote(self.stream, self._acked), timeout=timeout)
        except ray.exceptions.ActorUnavailableError:
            time.sleep(min(timeout, 0.05))
            return
        except ray.exceptions.RayActorError as error:
            self._died(f"the hub actor died ({_first_line(error)})")
            return
        except ray.exceptions.GetTimeoutError:
            return
        except ClosedError:
            self._died("the hub is closed")
            return
        self._acked = max(self._acked, int(low))
        self._confirm()

    def _died(self, reason: str) -> None:
        if not self._dead:
            self._dead = reason

    def _lose(self, count: int, reason: str) -> None:
        self.lost += count
        kind = reason.split(" (")[0].split(":")[0]
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(
                f"rlpipe: {self!r} could not send {count} records: {reason}; training goes on, "
                "and every record it cannot send is counted in .lost",
                RuntimeWarning,
                stacklevel=_user_stacklevel(),
            )

    # -- flush and close --------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Records shipped and not yet confirmed as applied by the hub."""
        return sum(batch.count for batch in self._in_flight)

    def on_flush(self) -> None:
        self._ship()
        self._collect(self._settings.flush_timeout, 0)
        if self._in_flight and "flush" not in self._warned:
            self._warned.add("flush")
            warnings.warn(
                f"rlpipe: {self!r}: {len(self._in_flight)} batches still unacknowledged after "
                f"{self._settings.flush_timeout} s; they stay in flight",
                RuntimeWarning,
                stacklevel=_user_stacklevel(),
            )

    def on_close(self) -> None:
        if self._seq and not self._dead and not self._in_flight:
            try:
                self._ray.get(
                    self._actor.end.remote(self.stream), timeout=self._settings.flush_timeout
                )
            except Exception as error:
                self._died(f"the hub did not answer ({type(error).__name__})")
        self.unconfirmed = self.in_flight
        self._in_flight.clear()
        if self.lost or self.unconfirmed:
            warnings.warn(
                f"rlpipe: {self!r} closed: {self.sent} records delivered, {self.lost} lost, "
                f"{self.unconfirmed} unconfirmed" + (f" ({self._dead})" if self._dead else ""),
                RuntimeWarning,
                stacklevel=_user_stacklevel(),
            )

    def __repr__(self) -> str:
        tags = ", ".join(f"{key}={value!r}" for key, value in self.tags.items())
        return f"HubSender({tags})"


def _rebuild_sender(actor: Any, tags: dict[str, Any], settings: _Settings) -> HubSender:
    return HubSender(actor, tags, settings)


def _user_stacklevel() -> int:
    """The stacklevel of the first frame outside rlpipe's node machinery, for warnings."""
    internal = (__file__, sys.modules[Node.__module__].__file__)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename in internal:
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- the driver's handle -------------------------------------------------------------------


class Hub:
    """Starts a Ray actor that builds `factory()` and owns it; hands out senders to workers.

    Arguments: `batch_size` records per batch (default 256), `max_in_flight` batches a sender
    may have unacknowledged (8), `flush_seconds` after which a partial batch is shipped at the
    next write (1.0; None: only by size, flush and close), `write_timeout` the longest a write
    waits for the hub when every slot is taken (5.0 s), `flush_timeout` the longest flush and
    close wait for acknowledgements (30.0 s), `max_restarts` how often Ray restarts a dead hub
    actor (0), `actor_options` more `ray.remote` options for the actor (name, num_cpus,
    resources, scheduling_strategy...), `start_timeout` how long to wait for `factory()`.

    `call(fn, *args)` runs `fn(pipeline, *args)` inside the actor and returns the result (for
    tests and inspection); `flush()` flushes the central pipeline; `status()` reports every
    stream; `close()` closes senders made in this process, waits for the others' streams to
    end (at most `timeout` s, and no longer than `grace` s without a new batch), closes the
    central pipeline, ends the actor and returns the final status. The actor handle is
    `hub.actor`.
    """

    def __init__(
        self,
        factory: Callable[[], Node],
        *,
        batch_size: int = 256,
        max_in_flight: int = 8,
        flush_seconds: float | None = 1.0,
        write_timeout: float = 5.0,
        flush_timeout: float = 30.0,
        max_restarts: int = 0,
        actor_options: Mapping[str, Any] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {type(factory).__name__}")
        for name, value in (("batch_size", batch_size), ("max_in_flight", max_in_flight)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name, seconds in (
            ("write_timeout", write_timeout),
            ("flush_timeout", flush_timeout),
            ("flush_seconds", 1.0 if flush_seconds is None else flush_seconds),
        ):
            if not isinstance(seconds, (int, float)) or not seconds >= 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {seconds!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < -1:
            raise ValueError(f"max_restarts must be an int >= -1, got {max_restarts!r}")
        ray = self._ray = _import_ray()
        self._settings = _Settings(
            batch_size, max_in_flight, flush_seconds, float(write_timeout), float(flush_timeout)
        )
        options: dict[str, Any] = {
            "max_restarts": max_restarts,
            "max_task_retries": -1 if max_restarts else 0,
        }
        options.update(actor_options or {})
        self.actor = _remote_core(ray).options(**options).remote(factory)
        self.closed = False
        self.final: HubStatus | None = None
        self._senders: weakref.WeakSet[HubSender] = weakref.WeakSet()
        try:
            ray.get(self.actor.ready.remote(), timeout=start_timeout)
        except ray.exceptions.GetTimeoutError as error:
            ray.kill(self.actor, no_restart=True)
            raise TimeoutError(f"the hub's factory did not finish in {start_timeout} s") from error
        except ray.exceptions.RayActorError as error:
            ray.kill(self.actor, no_restart=True)
            raise RuntimeError(f"the hub could not start: {error}") from error

    def sender(self, **tags: Any) -> HubSender:
        """A new sender (a picklable Node) that adds `tags` to every record it ships here."""
        if self.closed:
            raise ClosedError("the hub is closed; it hands out no more senders")
        sender = HubSender(self.actor, tags, self._settings)
        self._senders.add(sender)
        return sender

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs `fn(pipeline, *args, **kwargs)` inside the actor; returns its (pickled) result.
        Calls are applied in between batches, never during one."""
        return self._ray.get(self.actor.call.remote(fn, args, kwargs))

    def flush(self) -> None:
        """Flushes the senders made in this process, then the central pipeline."""
        for sender in list(self._senders):
            if not sender.closed:
                sender.flush()
        self._ray.get(self.actor.flush.remote(), timeout=self._settings.flush_timeout)

    def status(self) -> HubStatus:
        """Every stream the hub has seen, with its counts."""
        if self.final is not None:
            return self.final
        status: HubStatus = self._ray.get(self.actor.status.remote())
        return status

    def close(self, timeout: float = 30.0, grace: float = 1.0) -> HubStatus | None:
        """Drains, closes the central pipeline and ends the actor; returns the final status
        (None when the actor had died). Idempotent."""
        if self.closed:
            return self.final
        ray = self._ray
        for sender in list(self._senders):
            sender.close()
        self.closed = True
        try:
            self._drain(timeout, grace)
            self.final = ray.get(self.actor.close.remote(), timeout=timeout)
        except ray.exceptions.RayActorError as error:
            warnings.warn(
                f"rlpipe: the hub actor died before it was closed ({_first_line(error)}); "
                "the senders counted what they could not deliver",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        finally:
            ray.kill(self.actor, no_restart=True)
        final = self.final
        assert final is not None
        for message in final.warnings:
            warnings.warn(f"rlpipe: hub: {message}", RuntimeWarning, stacklevel=2)
        open_streams = [s for s in final.streams.values() if not s.ended]
        if open_streams:
            listed = "; ".join(f"{s.tags or '{}'}: {s.records} records" for s in open_streams)
            warnings.warn(
                f"rlpipe: the hub closed while {len(open_streams)} senders had not closed "
                f"(what they shipped after this is lost): {listed}",
                RuntimeWarning,
                stacklevel=2,
            )
        failed = [s for s in final.streams.values() if s.failed]
        if failed:
            listed = "; ".join(f"{s.tags}: {s.failed} ({s.first_error})" for s in failed)
            warnings.warn(
                f"rlpipe: the central pipeline refused records: {listed}",
                RuntimeWarning,
                stacklevel=2,
            )
        return final

    def _drain(self, timeout: float, grace: float) -> None:
        """Waits until every stream the hub saw has ended, at most `timeout` seconds, and no
        more than `grace` seconds in a row without a new batch arriving."""
        ray = self._ray
        deadline = time.monotonic() + timeout
        last_batches, quiet_since = -1, time.monotonic()
        while True:
            status: HubStatus = ray.get(self.actor.status.remote(), timeout=timeout)
            if all(stream.ended for stream in status.streams.values()):
                return
            batches = sum(stream.batches for stream in status.streams.values())
            now = time.monotonic()
            if batches != last_batches:
                last_batches, quiet_since = batches, now
            if now >= deadline or now - quiet_since >= grace:
                return
            time.sleep(0.05)

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Hub({'closed' if self.closed else 'open'})"
