"""MemorySink: keeps every record in a list, for tests and notebooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.core.columns import Columns, MaskedColumns, batch_rows, present
from pipeline.core.config import merge_config
from pipeline.core.node import Record
from pipeline.core.values import snapshot_record
from sinks.base import Sink


class MemorySink(Sink):
    """Keeps a copy of every record it receives, in order, in `.records`.

    Records are shallow-copied into plain dicts, so later changes upstream never alter what
    was stored (a record with no keys is kept as `{}`). `flushes` counts the flushes it saw.
    `config` holds the run's configuration given by `log_config` (one level of `/`-joined
    names, plain JSON values).
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []
        self.flushes = 0
        self.config: dict[str, Any] = {}

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Merges the configuration into `config` (see `pipeline.core.config.merge_config`:
        a changed value is kept, counted and warned once)."""
        merge_config(self.config, config, self.counts)

    def write(self, data: Record) -> None:
        if self.closed:
            self._check_open()
        self.records.append(snapshot_record(data))

    takes_absent = True

    def write_batch(self, columns: Columns) -> None:
        """Keeps the batch's rows; a `MaskedColumns` row without its None cells (absent)."""
        if self.closed:
            self._check_open()
        rows = batch_rows(columns)
        self.records.extend(map(present, rows) if type(columns) is MaskedColumns else rows)

    def state_key(self) -> str:
        return "MemorySink()"

    def fresh(self) -> bool:
        """Nothing written yet, or nothing since a state was loaded (a sink shared by two
        pipelines takes the state of each)."""
        return len(self.records) == (self._restored or 0)

    def node_state(self) -> dict[str, Any]:
        state = super().node_state()
        state["records"] = list(self.records)
        state["config"] = dict(self.config)
        return state

    def load_node_state(self, state: dict[str, Any]) -> None:
        if self._restore_once(len(state["records"])):
            return
        super().load_node_state(state)
        self.records = list(state["records"])
        self.config = {**state.get("config", {}), **self.config}

    def on_flush(self) -> None:
        self.flushes += 1

    def column(self, key: str) -> list[Any]:
        """The values written under `key`, in order, from the records that have it."""
        return [record[key] for record in self.records if key in record]

    def __repr__(self) -> str:
        return f"MemorySink({len(self.records)} records)"
