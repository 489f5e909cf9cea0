"""Sink: a leaf of the graph that stores records instead of passing them on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.core.node import ClosedError, Logger, Node


class Sink(Node):
    """A leaf node: formats and stores records (a file, a terminal, a tracking service).

    A sink has no children. `flush()` pushes its buffered output to storage; `close()`
    flushes and releases the file or connection; writing after `close()` raises ClosedError.
    """

    def connect(self, *children: Node | Logger) -> Node:
        raise TypeError(f"{type(self).__name__} is a sink: it has no children")

    def on_config(self, config: Mapping[str, Any]) -> None:
        """A graph's `log_config` reaches a sink as its own `log_config`."""
        self.log_config(config)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Keeps the run's configuration this sink's way (a file beside a data file, a
        tracking tool's params, ...); the graph's `log_config` calls it. The default keeps
        nothing: a sink that has no place for a configuration leaves it out (docs/sinks.md
        lists what each sink does with it)."""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")

    _restored: int | None = None
    """Records the sink had taken at the checkpoint of the state loaded into it, if any."""

    def _restore_once(self, taken: int) -> bool:
        """For `load_node_state`: whether this sink was restored already, from a state of
        the same checkpoint (then there is nothing to do). A sink shared by two pipelines
        gets a state from each; `taken` is the records it had taken in this one. A state of
        another moment is refused (ValueError)."""
        if self._restored is None:
            self._restored = taken
            return False
        if taken != self._restored:
            raise ValueError(
                f"{self!r} is shared by pipelines whose states were taken at different "
                f"moments ({self._restored} and {taken} records had reached it): take the "
                "states of pipelines that share a sink with no write in between"
            )
        return True

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"{self!r} is closed; it takes no more records")
