"""What a Hub reports: a status per stream (sender) and one for the hub."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["HubStatus", "StreamStatus"]


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
