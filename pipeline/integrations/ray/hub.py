"""The driver's handle: Hub starts the hub actor and hands out senders."""

from __future__ import annotations

import os
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from pipeline.core.node import ClosedError, Node
from pipeline.integrations.ray.core import CHECKPOINT_NEEDED, WINDOW_DEADLINE, remote_core
from pipeline.integrations.ray.relay import relays_of
from pipeline.integrations.ray.sender import HubSender, SenderSettings
from pipeline.integrations.ray.status import HUB_LINES, HubStatus
from pipeline.integrations.ray.support import first_line, import_ray

__all__ = ["Hub"]


class Hub:
    """Starts a Ray actor that builds `factory()` and owns it; hands out senders to workers.

    Arguments: `batch_size` records per batch (default 256), `max_in_flight` batches a sender
    may have unacknowledged (8), `flush_seconds` after which a partial batch is shipped at the
    next write (1.0; None: only by size, flush and close), `write_timeout` the longest a write
    waits for the hub when every slot is taken (5.0 s), `flush_timeout` the longest flush and
    close wait for acknowledgements (30.0 s), `max_restarts` how often Ray restarts a dead hub
    actor (0), `actor_options` more `ray.remote` options for the actor (name, num_cpus,
    resources, scheduling_strategy...), `start_timeout` how long to wait for `factory()`,
    `checkpoint` a folder where the hub keeps the central pipeline's state with each stream's
    acknowledged mark (required with `max_restarts` when the pipeline has a node that holds
    state, such as an aggregate; see the module documentation).

    Partial mode (pipeline/integrations/ray/partials.py): when `factory()` begins with an
    aggregate whose windows the hub cuts, senders ship per-key partial statistics instead of
    records (`partials=False`: always records); `exact=True` ships the values so that medians
    and percentiles are exact; `relays=True` adds one relay actor per node that merges its
    node's senders' partials and forwards them to the hub (relay.py). `mode` says which;
    `describe()` shows the central pipeline and each stream's mode. With an aggregate's
    windows by step (`every_steps`), each window is emitted once every live stream reported
    it (or a later one, or ended), or `window_deadline` seconds (default 60) after its first
    partial arrived, checked whenever a sender ships or syncs and at `flush()`; a partial of
    a window already emitted is counted late (the stream's `late`, and `failures`). Each
    `sender()` of such a hub is expected: no window closes by delivery before every sender
    made shipped or closed (without relays).

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
        checkpoint: str | os.PathLike[str] | None = None,
        partials: bool = True,
        exact: bool = False,
        relays: bool = False,
        window_deadline: float = WINDOW_DEADLINE,
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
            ("window_deadline", window_deadline),
        ):
            if not isinstance(seconds, (int, float)) or not seconds >= 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {seconds!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < -1:
            raise ValueError(f"max_restarts must be an int >= -1, got {max_restarts!r}")
        ray = self._ray = import_ray()
        self._settings = SenderSettings(
            batch_size, max_in_flight, flush_seconds, float(write_timeout), float(flush_timeout)
        )
        options: dict[str, Any] = {
            "max_restarts": max_restarts,
            "max_task_retries": -1 if max_restarts else 0,
        }
        options.update(actor_options or {})
        self.run = uuid.uuid4().hex  # the run: every stream's id begins with it
        folder = None if checkpoint is None else os.path.abspath(os.fspath(checkpoint))
        self.actor = (
            remote_core(ray)
            .options(**options)
            .remote(
                factory,
                run=self.run,
                checkpoint=folder,
                restarts=max_restarts,
                partials=partials,
                exact=exact,
                window_deadline=window_deadline,
            )
        )
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
            refused = [line for line in str(error).splitlines() if CHECKPOINT_NEEDED in line]
            if refused:  # HubCore refused max_restarts without a checkpoint: say why, plainly
                reason = refused[-1].split("ValueError: ", 1)[-1].strip()
                raise ValueError(f"the hub could not start: {reason}") from error
            raise RuntimeError(f"the hub could not start: {error}") from error
        plan = ray.get(self.actor.plan.remote())
        by_step = ray.get(self.actor.by_step.remote())
        self._settings = replace(self._settings, plan=plan, relays=relays and plan is not None,
                                 by_step=by_step)
        self.relay_final: dict[str, HubStatus | None] = {}

    def sender(self, **tags: Any) -> HubSender:
        """A new sender (a picklable Node) that adds `tags` to every record it ships here."""
        if self.closed:
            raise ClosedError("the hub is closed; it hands out no more senders")
        sender = HubSender(self.actor, tags, self._settings, self.run)
        if self._settings.by_step and not self._settings.relays:
            # before any sender ships: no window by step closes until this worker's stream
            # shipped or ended (or the deadline)
            self._ray.get(self.actor.expect.remote(sender.worker))
        self._senders.add(sender)
        return sender

    @property
    def settings(self) -> SenderSettings:
        """How this hub's senders batch and wait: with `hub.actor`, what a sender made in
        another process needs (`HubSender(hub.actor, tags, hub.settings)`)."""
        return self._settings

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs `fn(pipeline, *args, **kwargs)` inside the actor; returns its (pickled) result.
        Calls are applied in between batches, never during one."""
        return self._ray.get(self.actor.call.remote(fn, args, kwargs))

    def flush(self) -> None:
        """Flushes the senders made in this process, then the central pipeline. ClosedError
        once the hub is closed."""
        if self.closed:
            raise ClosedError("the hub is closed; there is nothing to flush")
        for sender in list(self._senders):
            if not sender.closed:
                sender.flush()
        if self._settings.relays:  # what the relays merged reaches the window first
            self._ray.get([relay.forward.remote() for relay in relays_of(self.actor)],
                          timeout=self._settings.flush_timeout)
        self._ray.get(self.actor.flush.remote(), timeout=self._settings.flush_timeout)

    def describe(self) -> str:
        """The central pipeline's graph with its counts, the hub's mode (partials or records,
        and why) and each stream's."""
        text: str = self._ray.get(self.actor.describe.remote())
        return text

    @property
    def mode(self) -> str:
        """What the senders ship, in words: partials (of which keys, sketched or exact) or
        records (and why)."""
        settings = self._settings
        return "records" if settings.plan is None else settings.plan.describe()

    def status(self) -> HubStatus:
        """Every stream the hub has seen, with its counts."""
        if self.final is not None:
            return self.final
        status: HubStatus = self._ray.get(self.actor.status.remote())
        return status

    def failures(self) -> list[str]:
        """One line per loss the hub knows of (`status().failures`): failing central sinks,
        streams that lost, missed or were missing from windows, senders that never closed."""
        return list(self.status().failures)

    def close(self, timeout: float = 30.0, grace: float = 1.0) -> HubStatus | None:
        """Drains, closes the central pipeline and ends the actor; returns the final status
        (None when the actor had died). Idempotent."""
        if self.closed:
            return self.final
        ray = self._ray
        for sender in list(self._senders):
            sender.close()
        self.closed = True
        if self._settings.relays:
            self._close_relays(timeout)
        try:
            self._drain(timeout, grace)
            self.final = ray.get(self.actor.close.remote(), timeout=timeout)
        except ray.exceptions.RayActorError as error:
            warnings.warn(
                f"rlpipe: the hub actor died before it was closed ({first_line(error)}); "
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
        # The central pipeline warned of its own failures while closing (above); these are
        # the hub's: streams that lost or missed records, senders that never closed.
        lines = [line for line in final.failures if line.startswith(HUB_LINES)]
        if lines:
            cut = sum(1 for stream in final.streams.values() if not stream.ended)
            warnings.warn(
                "rlpipe: the hub closed with failures"
                + (f" ({cut} senders had not closed)" if cut else "")
                + f": written {final.written}, applied {final.records + final.earlier}: "
                + "; ".join(lines),
                RuntimeWarning,
                stacklevel=2,
            )
        return final

    def relay_status(self) -> dict[str, HubStatus | None]:
        """Each relay's view of its node's senders (`Hub(relays=True)`), by node id."""
        if self.closed:
            return dict(self.relay_final)
        relays = relays_of(self.actor)
        statuses = self._ray.get([relay.status.remote() for relay in relays])
        nodes = self._ray.get([relay.call.remote(_node_of, (), {}) for relay in relays])
        return dict(zip(nodes, statuses, strict=True))

    def _close_relays(self, timeout: float) -> None:
        """Closes every relay (each forwards what it holds and ends its stream), keeps their
        final statuses, ends their actors."""
        ray = self._ray
        for relay in relays_of(self.actor):
            try:
                node = ray.get(relay.call.remote(_node_of, (), {}), timeout=timeout)
                self.relay_final[node] = ray.get(relay.close.remote(), timeout=timeout)
            except Exception as error:
                warnings.warn(f"rlpipe: a relay could not close ({first_line(error)}); what "
                              "it held is counted missing", RuntimeWarning, stacklevel=3)
            finally:
                ray.kill(relay, no_restart=True)

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


def _node_of(pipeline: Node) -> str:
    """The node id of the process it runs in (a relay's)."""
    import ray

    return str(ray.get_runtime_context().get_node_id())
