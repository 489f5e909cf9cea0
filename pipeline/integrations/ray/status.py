"""What a Hub reports: a status per stream (sender) and one for the hub."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["HUB_LINES", "HubStatus", "StreamStatus"]

HUB_LINES = ("sender ", "hub:")
"""How the hub's own lines in `HubStatus.failures` begin (the others are the central
pipeline's)."""


@dataclass(frozen=True)
class StreamStatus:
    """What the hub received from one sender (one stream).

    `records` were applied by this hub instance, `earlier` by a dead predecessor (a
    restarted hub); `written` is what the sender reported it shipped or counted `lost`;
    `missing` (known once the stream ended or the hub closed) were shipped and never arrived.
    `epoch` counts the copies of the sender that took the stream over (a retried task);
    `replayed` the records a later copy sent again below what was applied (not applied
    twice). `windows_missing` lists the window ids closed without this stream's part, `late`
    the reports of a window that had closed.
    `cut_back` counts records a dead hub acknowledged after its last checkpoint that was
    written (the later ones failed): the restart cut the files back to that checkpoint, so
    they are lost (and said in `failures`).
    They reconcile: `written == records + earlier + lost + missing + via_relay + cut_back`,
    `held` (batches waiting behind a gap) aside; `via_relay` (records a relay that died had
    confirmed) is in the relay's stream (`records`, `missing`) or its `relay_lost`.
    """

    tags: dict[str, Any]
    records: int
    batches: int
    duplicates: int
    failed: int
    ended: bool
    first_error: str = ""
    held: int = 0
    written: int = 0
    lost: int = 0
    missing: int = 0
    earlier: int = 0
    epoch: int = 0
    replayed: int = 0
    windows_missing: tuple[Any, ...] = ()
    late: int = 0
    mode: str = "records"  # or "partials": it shipped partial statistics (see partials.py)
    via_relay: int = 0  # records its relay had confirmed when it died (then it shipped here)
    relay_lost: int = 0  # a relay's stream: records it confirmed that died with it
    cut_back: int = 0  # acknowledged after the checkpoint a restart loaded: cut from the files


@dataclass(frozen=True)
class HubStatus:
    """The hub's view: every stream it saw, whether the actor was restarted, `failures` (one
    line per loss the hub knows of: failing central sinks, streams that lost or missed
    records, senders that never closed) and `warnings`: the texts of the warnings the central
    pipeline raised in the actor (applying batches, flushing, closing), each once, at most
    1,000; `Hub.close()` raises them again in the caller's process."""

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
    def written(self) -> int:
        """Records the senders reported shipping or counting lost, over every stream."""
        return sum(stream.written for stream in self.streams.values())

    @property
    def earlier(self) -> int:
        """Records applied by a dead predecessor of a restarted hub, over every stream."""
        return sum(stream.earlier for stream in self.streams.values())

    @property
    def lost(self) -> int:
        """Records the senders counted lost, over every stream."""
        return sum(stream.lost for stream in self.streams.values())

    @property
    def missing(self) -> int:
        """Records shipped that never arrived (known at close), over every stream."""
        return sum(stream.missing for stream in self.streams.values())

    @property
    def relay_lost(self) -> int:
        """Records relays had confirmed to their senders and died holding, over every relay."""
        return sum(stream.relay_lost for stream in self.streams.values())

    @property
    def duplicates(self) -> int:
        """Batches received twice (retries) and applied once."""
        return sum(stream.duplicates for stream in self.streams.values())
