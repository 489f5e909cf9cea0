"""The workers' side of a Hub: HubSender batches records and ships them to the hub actor."""

from __future__ import annotations

import time
import uuid
import warnings
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.core.columns import Columns, batch_length
from pipeline.core.node import ClosedError, Record
from pipeline.core.values import IMMUTABLE_TYPES, snapshot, snapshot_record
from pipeline.integrations.ray.partials import Accumulator, PartialPlan
from pipeline.integrations.ray.pickling import picklable_part
from pipeline.integrations.ray.support import first_line, import_ray, user_stacklevel
from sinks.base import Sink

__all__ = ["HubSender", "SenderSettings"]


@dataclass(frozen=True)
class SenderSettings:
    """How a Hub's senders batch and wait (the Hub's arguments of the same names)."""

    batch_size: int
    max_in_flight: int
    flush_seconds: float | None
    write_timeout: float
    flush_timeout: float
    plan: PartialPlan | None = None  # partial mode (see partials.py); None: records
    relays: bool = False  # partial mode through one relay per node (see relay.py)
    by_step: bool = False  # the hub cuts windows by step: a sender that shipped nothing ends too


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

    Picklable: pass it to a Ray task or actor. Its stream is (run, worker, epoch): `run` is
    the hub's, `worker` the sender made by `hub.sender()` together with the Ray task that
    unpickled it, and `epoch` counts the copies of that worker (the hub numbers them). So a
    task that Ray retries (a new process, the same task) continues the first attempt's stream
    in a new epoch: its sequence numbers start again at 0, and the batches the first attempt
    had delivered are taken as their replay (not stored twice, counted `replayed`). A copy in
    another task, in the driver or in a restarted actor is a stream of its own; a second copy
    in the same task is the first one. Not thread-safe: share a Pipeline that ends in it
    between threads (`Pipeline().to(hub.sender())`), not the sender.

    A record that cannot be pickled (a lock, an open file) is found when its batch is shipped:
    it alone is left out, counted in `lost` and warned about once; the rest of its batch and
    every later batch go on. `write`, `flush` and `close` never raise for it.

    Counts: `written` records taken, `sent` acknowledged by the hub, `lost` dropped (hub dead,
    closed or behind, or not picklable), `unconfirmed` shipped but unacknowledged when the
    sender closed.
    """

    def __init__(
        self,
        actor: Any,
        tags: Mapping[str, Any],
        settings: SenderSettings,
        run: str = "",
        worker: str | None = None,
        task: str | None = None,
    ) -> None:
        super().__init__()
        self._ray = import_ray()
        self._actor = actor
        self._hub = actor  # (`_actor` may be the node's relay)
        self.tags: dict[str, Any] = dict(tags)
        self.counts.owner = repr(self)  # warnings name the stream by its tags
        self._settings = settings
        self._batch_size = settings.batch_size
        self._flush_seconds = settings.flush_seconds
        self.run = run
        self.worker = worker or uuid.uuid4().hex  # fixed at hub.sender(): every copy keeps it
        self.stream = f"{run}/{self.worker}/{task or uuid.uuid4().hex}"
        self.copy = uuid.uuid4().hex  # this copy: the hub numbers a stream's copies (epochs)
        self._entries: list[Any] = []
        self._count = 0
        self._deadline = float("inf")
        self._in_flight: deque[_InFlight] = deque()
        self._seq = 0
        self._acked = 0
        self._shipped = 0  # records that left the buffer: into a batch, or counted lost
        self._behind = False
        self._dead = ""
        self._warned_unacknowledged = False
        self._relay_node = ""  # the node whose relay it ships to (`_actor`), if any
        self.written = 0
        self.sent = 0
        self.unconfirmed = 0
        self._partials = None if settings.plan is None else Accumulator(settings.plan)
        if self._partials is not None:
            self.write = self._write_partials  # type: ignore[method-assign]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_sender, (self._hub, self.tags, self._settings, self.run, self.worker))

    # -- taking records ---------------------------------------------------------------------

    def write(self, data: Record) -> None:
        if self.closed:
            self._check_open()
        record = {**self.tags, **data} if self.tags else dict(data)
        if not IMMUTABLE_TYPES.issuperset(map(type, record.values())):
            record = snapshot_record(record)  # shipped later: the caller may reuse its buffers
        self._entries.append(record)
        self._taken(1)

    def _write_partials(self, data: Record) -> None:
        """`write` in partial mode: the record's values go into the partials shipped at the
        same times as records would be; a record the partials cannot take goes as it is."""
        if self.closed:
            self._check_open()
        record = {**self.tags, **data} if self.tags else data
        partials = self._partials
        assert partials is not None
        if not partials.add(record):
            self._take_partials()  # the records before it go first
            self._entries.append(snapshot_record(record))
        self._taken(1)

    def merge_partials(self, entry: Any) -> None:
        """Takes a PartialEntry whole, as if its records were written here (a relay)."""
        if self.closed:
            self._check_open()
        assert self._partials is not None
        self._partials.merge(entry)
        self._taken(entry.records)

    def _take_partials(self) -> None:
        if self._partials is not None:
            self._entries += self._partials.take_windows()

    def write_batch(self, columns: Columns) -> None:
        if self.closed:
            self._check_open()
        rows = batch_length(columns)
        if rows == 0:
            return
        self._take_partials()
        tagged = {key: [value] * rows for key, value in self.tags.items()}
        tagged.update({key: snapshot(column) for key, column in columns.items()})
        self._entries.append((tagged, rows))
        self._taken(rows)

    def _taken(self, rows: int) -> None:
        """Counts `rows` records taken into the batch; ships it when it is full, or when
        `flush_seconds` have passed since its first record."""
        self.written += rows
        count = self._count = self._count + rows
        if count >= self._batch_size:
            self._ship()
        elif count == rows:
            if self._flush_seconds is not None:
                self._deadline = time.monotonic() + self._flush_seconds
        elif time.monotonic() >= self._deadline:
            self._ship()

    # -- shipping ---------------------------------------------------------------------------

    def _ship(self) -> None:
        self._take_partials()
        entries, count = self._entries, self._count
        self._entries, self._count, self._deadline = [], 0, float("inf")
        if not count:
            return
        self._shipped += count
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
        try:
            batch.ref = self._push(batch)
        except Exception as error:  # Ray could not serialize the batch (nothing was sent)
            self._submit_what_pickles(batch, error)

    def _push(self, batch: _InFlight) -> Any:
        self._confirm()  # `sent` then covers exactly the batches below `_acked`
        return self._actor.push.remote(
            self.stream,
            batch.seq,
            self._acked,
            batch.count,
            batch.entries,
            self.tags,
            self._report(),
            self.copy,
        )

    def _report(self) -> tuple[int, int, int]:
        """What the hub is told with each call (`core.Report`): records shipped or counted
        lost, records counted lost, records confirmed. With them the hub counts what a
        sender that dies had shipped."""
        return (self._shipped, self.counts["lost"], self.sent)

    def _submit_what_pickles(self, batch: _InFlight, error: Exception) -> None:
        """Ships `batch` without its records that cannot be pickled; they are counted lost
        (warned once). Should Ray still refuse it, the batch goes empty: its sequence number
        is delivered all the same, so the hub holds no later batch behind a gap."""
        found = picklable_part(batch.entries, self._ray.cloudpickle.dumps)
        if found.left_out:
            self._lose(found.left_out, f"a record cannot be pickled ({found.error})")
            batch.entries, batch.count = found.entries, batch.count - found.left_out
            try:
                batch.ref = self._push(batch)
                return
            except Exception as again:
                error = again
        if batch.count:
            self._lose(batch.count, f"the batch cannot be shipped ({first_line(error)})")
        batch.entries, batch.count = [], 0
        try:
            batch.ref = self._push(batch)
        except Exception as last:  # even an empty batch: the hub cannot be called at all
            self._died(f"the hub cannot be called ({type(last).__name__}: {first_line(last)})")

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
            self._actor_died(error)
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
            self._confirm()
            call = self._actor.sync.remote(self.stream, self._acked, self._report(), self.copy)
            low = ray.get(call, timeout=timeout)
        except ray.exceptions.ActorUnavailableError:
            time.sleep(min(timeout, 0.05))
            return
        except ray.exceptions.RayActorError as error:
            self._actor_died(error)
            return
        except ray.exceptions.GetTimeoutError:
            return
        except ClosedError:
            self._died("the hub is closed")
            return
        self._acked = max(self._acked, int(low))
        self._confirm()

    def _actor_died(self, error: Exception) -> None:
        """The actor it ships to died: the hub (every later record is lost), or its node's
        relay. Then it tells the hub how many of its records the relay had confirmed (the hub
        counts what the relay did not forward as `relay_lost`), ships to the hub from now on,
        and sends its unconfirmed batches there (the relay died before answering them)."""
        if self._actor is self._hub:
            self._died(f"the hub actor died ({first_line(error)})")
            return
        node, self._actor, self._relay_node = self._relay_node, self._hub, ""
        for batch in self._in_flight:
            batch.ref = None  # sent again by `_collect`
        self._confirm()
        warnings.warn(
            f"rlpipe: {self!r}: its relay died ({first_line(error)}); what the relay had "
            "not forwarded is counted lost by the hub; shipping to the hub directly",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )
        call = self._hub.relayed.remote(
            self.stream, node, self.sent, self._acked, self.tags, self._report(), self.copy
        )
        try:
            low = self._ray.get(call, timeout=self._settings.flush_timeout)
        except Exception as failed:
            self._died(f"the hub did not answer ({type(failed).__name__})")
            return
        self._acked = max(self._acked, int(low))
        self._confirm()

    def _died(self, reason: str) -> None:
        if not self._dead:
            self._dead = reason

    def _lose(self, count: int, reason: str) -> None:
        self.counts.note(
            "lost",
            f"could not send {count} records: {reason}; training goes on",
            key=reason.split(" (")[0].split(":")[0],  # warned once per kind of failure
            n=count,
            stacklevel=user_stacklevel(),
        )

    # -- flush and close --------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Records shipped and not yet confirmed as applied by the hub."""
        return sum(batch.count for batch in self._in_flight)

    @property
    def lost(self) -> int:
        """Records dropped: the hub dead, closed or behind, or not picklable
        (`counts["lost"]`)."""
        return self.counts["lost"]

    def on_flush(self) -> None:
        self._ship()
        self._collect(self._settings.flush_timeout, 0)
        if self._in_flight and not self._warned_unacknowledged:
            self._warned_unacknowledged = True
            warnings.warn(
                f"rlpipe: {self!r}: {len(self._in_flight)} batches still unacknowledged after "
                f"{self._settings.flush_timeout} s; they stay in flight",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    def on_close(self) -> None:
        if (self._seq or self._settings.by_step) and not self._dead and not self._in_flight:
            for _ in range(2):  # its relay may have died: then the hub, once
                try:
                    self._ray.get(
                        self._actor.end.remote(self.stream, self._report(), self.copy),
                        timeout=self._settings.flush_timeout,
                    )
                except self._ray.exceptions.RayActorError as error:
                    self._actor_died(error)
                    if not self._dead:
                        continue
                except Exception as error:
                    self._died(f"the hub did not answer ({type(error).__name__})")
                break
        self.unconfirmed = self.in_flight
        self._in_flight.clear()
        if self.lost or self.unconfirmed:
            warnings.warn(
                f"rlpipe: {self!r} closed: {self.sent} records delivered, {self.lost} lost, "
                f"{self.unconfirmed} unconfirmed" + (f" ({self._dead})" if self._dead else ""),
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    @property
    def mode(self) -> str:
        """What this sender ships: "records", or the partial plan in words."""
        partials = getattr(self, "_partials", None)  # (repr during __init__)
        return "records" if partials is None else partials.plan.describe()

    def __repr__(self) -> str:
        tags = ", ".join(f"{key}={value!r}" for key, value in self.tags.items())
        mode = self.mode
        mode = "" if mode == "records" else ("; " if tags else "") + mode
        return f"HubSender({tags}{mode})"


_COPIES: weakref.WeakValueDictionary[str, HubSender] = weakref.WeakValueDictionary()
"""The live copies unpickled in this process, by stream: a second copy in one task is the
first (two copies writing one stream would take each other's batches for replays)."""


def _rebuild_sender(
    actor: Any,
    tags: dict[str, Any],
    settings: SenderSettings,
    run: str = "",
    worker: str | None = None,
) -> HubSender:
    """Unpickles a HubSender: the stream of `worker` in the Ray task running here (a retried
    task continues its first attempt's stream in a new epoch); outside a task, in a restarted
    actor or without a worker id, a stream of its own. With `relays`, it ships through its
    node's relay."""
    task = _current_task()
    if task is not None and worker is not None:
        copy = _COPIES.get(f"{run}/{worker}/{task}")
        if copy is not None and not copy.closed:
            return copy
    sender = HubSender(actor, tags, settings, run, worker, task)
    if settings.relays and settings.plan is not None:
        from pipeline.integrations.ray.relay import relay_for

        sender._actor = relay_for(actor, settings)
        sender._relay_node = sender._ray.get_runtime_context().get_node_id()
    if task is not None:
        _COPIES[sender.stream] = sender
    return sender


def _current_task() -> str | None:
    """The id of the Ray task (or actor call) running in this process, which a retry keeps;
    None in the driver, outside Ray, and in an actor that Ray restarted (its calls after the
    restart are new work, not the replay of the dead instance's)."""
    ray = import_ray()
    if not ray.is_initialized():
        return None
    try:
        context = ray.get_runtime_context()
        if context.worker.mode != ray.WORKER_MODE:
            return None
        with warnings.catch_warnings():  # Ray 2.60 warns about its own use of actor_id
            warnings.simplefilter("ignore", DeprecationWarning)
            if context.get_actor_id() is not None and context.was_current_actor_reconstructed:
                return None
        task = context.get_task_id()
    except Exception:  # an older or newer Ray without these: a stream of its own
        return None
    return str(task) if task else None
