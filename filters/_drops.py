"""Gates that count the records they drop in bulk (see `pipeline.core.counts.Tally`)."""

from __future__ import annotations

from pipeline.core.counts import Counts, Tally
from pipeline.core.fusion import Transform


class DropsTallied(Transform):
    """A Transform that counts each record it drops with `self._dropped[0] += 1` (or takes
    one back with `-= 1`), in its own code and in the statements it gives a fused run, never
    on `counts` itself. Reading `counts` (a reader of the node, `node_state`, a checkpoint's
    load) first folds those into `counts["dropped"]`, so every reader sees every record
    dropped so far."""

    def __init__(self) -> None:
        self._drops = Tally("dropped")
        self._dropped = self._drops.cell
        super().__init__()

    @property
    def counts(self) -> Counts:
        """This node's counts, `counts["dropped"]` holding every record dropped so far."""
        return self._drops.fold(self._counts)

    @counts.setter
    def counts(self, counts: Counts) -> None:
        self._counts = counts
