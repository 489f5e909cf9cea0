"""How the framework integrations join the conformance suite: what a framework hands over,
through the integration's public entry point, must reach the sinks under it as the contract
says (`harness.check`, per sink), with the record the integration promises as the written one.

`Leaves` are the sinks a run feeds (a CsvSink, a JsonlSink, a MemorySink, each read back with
its own reader); `check_leaves` checks each of them against the records the framework's own
values say the integration writes (each test builds those from the framework's own state:
SB3's `name_to_value`, Spinning Up's `log_current_row`, a Tune result, Acme's dict).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filters import Dispatcher
from pipeline import Node, Pipeline
from sinks import CsvSink, JsonlSink, MemorySink
from tests.conformance import harness
from tests.conformance.sinks import CSV, JSONL, MEMORY, SinkSpec


@dataclass
class Leaves:
    """A CsvSink and a JsonlSink under `folder` (`out.csv`, `out.jsonl`) and a MemorySink."""

    folder: Path
    csv: CsvSink
    jsonl: JsonlSink
    memory: MemorySink

    @classmethod
    def under(cls, folder: Path) -> Leaves:
        return cls(folder, CSV.make(folder), JSONL.make(folder), MEMORY.make(folder))

    def pipeline(self, name: str = "conformance") -> Pipeline:
        """A pipeline writing to the three sinks (not strict: a sink's failure is counted)."""
        return Pipeline(name, strict=False, close_at_exit=False).to(
            self.csv, self.jsonl, self.memory
        )

    def specs(self, *, memory: bool = True) -> Iterator[tuple[SinkSpec, Any]]:
        yield CSV, self.csv
        yield JSONL, self.jsonl
        if memory:
            yield MEMORY, self.memory


def lost_in_isolation(pipe: Pipeline, node: Node) -> int:
    """Records a Dispatcher of `pipe` lost on their way to `node` (its failure isolation)."""
    return sum(
        failed.lost
        for dispatcher in pipe.nodes()
        if isinstance(dispatcher, Dispatcher)
        for failed in [dispatcher.failures.get(id(node))]
        if failed is not None
    )


def check_leaves(
    pipe: Pipeline,
    sinks: Iterator[tuple[SinkSpec, Any]],
    written: list[dict[Any, Any]],
    caught: list[str],
    folder: Path,
) -> None:
    """The contract for each sink under the closed `pipe`: each record of `written` (what
    the integration promises to write, built from the framework's own values) is stored
    once as written or counted; `failures()` names a sink that lost anything; warned once."""
    for spec, sink in sinks:
        node = spec.node(sink)
        isolation = lost_in_isolation(pipe, node)
        harness.check(
            harness.Outcome(
                spec=spec,
                node=node,
                written=written,
                stored=spec.read(sink, folder),
                counted=spec.counted(sink) + isolation,
                isolation_lost=isolation,
                failures=pipe.failures(),
                warnings=caught,
            )
        )
