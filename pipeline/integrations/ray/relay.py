"""One relay per node: the senders on a node ship their partials to a relay actor on that node,
which merges them and forwards one partial per window to the hub.

With `Hub(factory, relays=True)` (partial mode only), a sender unpickled in a Ray worker
looks up its node's relay (a named actor, made by the first sender there, pinned to the node
with Ray's NodeAffinitySchedulingStrategy) and ships to it instead of the hub. The relay is a
HubCore whose pipeline is the relay's own partial-mode sender to the hub: each (stream, seq)
is applied once, in order (the same de-duplication and counts as the hub), partials are
merged in memory and acknowledged then, as the hub acknowledges a partial once it is merged
into its aggregate's open window. The relay forwards what it merged at `hub.flush()` (before
the hub cuts the window), at the first batch `flush_seconds` after the oldest one held, and
when it closes (`hub.close()`): the hub handles calls in proportion to nodes, not workers.

What a relay holds dies with it, as an aggregate's open window dies with the hub; its
senders' streams (in `hub.relay_status()`) count what they reported.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

from pipeline.core.columns import Columns
from pipeline.core.node import Node, Record
from pipeline.integrations.ray.core import RELAY_RUN, ForwardMarks, HubCore
from pipeline.integrations.ray.partials import PartialEntry
from pipeline.integrations.ray.sender import HubSender, SenderSettings
from pipeline.integrations.ray.support import import_ray

__all__ = ["RelayCore", "relay_for", "relays_of"]

PREFIX = "rlpipe-relay-"


class _Forward(Node):
    """A relay's pipeline: what its senders' batches hold goes to its own sender."""

    def __init__(self, sender: HubSender) -> None:
        super().__init__()
        self.sender = sender

    def write(self, data: Record) -> None:
        self.sender.write(data)

    def write_batch(self, columns: Columns) -> None:
        self.sender.write_batch(columns)

    def on_close(self) -> None:
        self.sender.close()


class _RelaySender(HubSender):
    """A relay's sender to the hub: each batch it ships ends with the relay's marks of its
    senders' streams (`ForwardMarks`), what the batch's merged content covers. It never
    ships while the relay applies a batch (the marks would not say the half taken): a
    shipment due then goes once the relay's marks have moved past that batch."""

    relay: RelayCore | None = None
    due = False

    def _ship(self) -> None:
        if self.relay is not None and self.relay.applying:
            self.due = True
            return
        self.due = False
        super()._ship()

    def _take_partials(self) -> None:
        super()._take_partials()
        relay = self.relay
        if relay is not None and self._entries:
            marks = {name: (state.low, state.below) for name, state in relay.streams.items()}
            self._entries.append(ForwardMarks(marks))


class RelayCore(HubCore):
    """A node's relay (see the module documentation): a HubCore for the node's senders whose
    pipeline forwards to the hub through one partial-mode sender."""

    def __init__(self, hub: Any, settings: SenderSettings, node: str) -> None:
        relayed = replace(settings, relays=False, batch_size=sys.maxsize)
        self.sender = _RelaySender(hub, {}, relayed, run=RELAY_RUN, worker=node)
        self.sender.relay = self
        self.node = node
        super().__init__(lambda: _Forward(self.sender), partials=False)

    applying = False
    """Whether the relay is applying its senders' batches (its sender then holds back)."""

    def _advance(self, state: Any, acked: int, report: Any) -> None:
        self.applying = True
        try:
            super()._advance(state, acked, report)
        finally:
            self.applying = False
        if self.sender.due:
            self.sender._ship()

    def _partial(self, state: Any, entry: PartialEntry) -> None:
        self.by_partials.add(state)
        self.sender.merge_partials(entry)

    def forward(self) -> int:
        """Ships what the relay merged to the hub and waits for its acknowledgement; returns
        the records the hub confirmed from this relay so far."""
        if not self.closed:
            self.sender.flush()
        return self.sender.sent


_REMOTE_RELAY: Any = None


def relay_name(hub: Any) -> str:
    return f"{PREFIX}{hub._actor_id.hex()}-"


def relay_for(hub: Any, settings: SenderSettings) -> Any:
    """The relay of this process's node for `hub` (made if it does not exist yet)."""
    global _REMOTE_RELAY
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if _REMOTE_RELAY is None:
        _REMOTE_RELAY = ray.remote(RelayCore)
    node = ray.get_runtime_context().get_node_id()
    relay = _REMOTE_RELAY.options(
        name=relay_name(hub) + node,
        get_if_exists=True,
        lifetime="detached",  # not the creating worker's: the hub's close ends it
        num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote(hub, settings, node)
    ray.get(relay.ready.remote())
    return relay


def relays_of(hub: Any) -> list[Any]:
    """The relays made for `hub` (in this job's namespace)."""
    ray = import_ray()
    prefix = relay_name(hub)
    names = [name for name in ray.util.list_named_actors() if name.startswith(prefix)]
    relays = []
    for name in names:
        try:
            relays.append(ray.get_actor(name))
        except ValueError:  # gone meanwhile
            continue
    return relays
