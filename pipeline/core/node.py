"""The Node: one step of a metrics graph (a filter, a sink, or a whole pipeline); and
LoggerSink, which makes any logger with `write` a leaf of it."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol

from pipeline.core.columns import Columns, iter_rows, present_rows
from pipeline.core.config import config_values
from pipeline.core.counts import Counts
from pipeline.core.values import snapshot_record

Record = Mapping[str, Any]
"""One set of metrics written at once: metric name -> value."""


STATE_VERSION = 1
"""The version of `Node.state_dict()`'s layout."""


class Logger(Protocol):
    """Anything with Acme's `Logger.write`: a leaf that `connect` wraps in a LoggerSink."""

    def write(self, data: Record) -> None: ...


class ClosedError(RuntimeError):
    """Raised when a record is written to a node that was closed."""


class Node:
    """A step of a metrics graph: takes records with `write`, passes records to its children.

    The contract every node keeps:

    - `write(record)` takes one record and never mutates it; a node that changes a record
      emits a new mapping. It is the hot path.
    - `write_batch(columns)` takes many records at once as columns; the result is the same as
      writing the rows one by one, in order. A node's own `write_batch` that raises has taken
      no row of the batch, or every row when it raises a StoreError (it holds them); the
      default one writes the rows one by one, so a Dispatcher above gives such a node the
      rows itself, each through its isolation.
    - `flush()` makes every node reachable from this one push out what it holds (an aggregate
      emits its window, a sink writes its buffer to storage), parents before children, each
      node once.
    - `close()` flushes, then releases resources, over the same nodes in the same order. It is
      idempotent. Writing to a closed node raises `ClosedError`.
    - `log_config(config)` gives the run's configuration to the same nodes in the same
      order (`on_config`); filters pass it on unchanged, sinks keep it their own way.

    These are the methods of Acme's `Logger` (`write`, `close`), so a node is usable wherever
    Acme expects a logger.

    Subclasses override `write` (and `write_batch` where a column-wise path pays), and the
    node-local hooks `on_flush` and `on_close`; they send records on with `self.emit(record)`
    and batches with `self.emit_batch(columns)`. What a node does not pass on as written
    (dropped by design, skipped, lost) is counted in its `counts`, one view for every node.
    """

    takes_absent: bool = False
    """Whether this node's `write_batch` takes a `MaskedColumns` batch (None cells: the key is
    absent in that row) and gives its children only what `absent_ok` lets it."""

    def __init__(self) -> None:
        self._children: list[Node] = []
        self._parents: list[Node] = []
        self.closed = False
        self.emit: Callable[[Record], None] = self._emit_nowhere
        self.counts = Counts(type(self).__name__)

    # -- wiring ---------------------------------------------------------------------------

    @property
    def children(self) -> tuple[Node, ...]:
        """The nodes this node sends its records to."""
        return tuple(self._children)

    def connect(self, *children: Node | Logger) -> Node:
        """Sends this node's records to `children` as well; returns `self`.

        A child that is not a Node but has a `write(record)` method (an Acme logger, a
        user's own) is wrapped in a `LoggerSink`."""
        for target in children:
            child = target if isinstance(target, Node) else _as_leaf(self, target)
            if child is self or self in child.nodes():
                raise ValueError(
                    f"connecting {type(self).__name__} to {type(child).__name__} "
                    "would make a cycle; a metrics graph must be acyclic"
                )
            if child not in self._children:
                self._children.append(child)
                child._parents.append(self)
        self._rewire()
        return self

    def disconnect(self, child: Node) -> None:
        """Stops sending this node's records to `child`."""
        if child in self._children:
            self._children.remove(child)
            child._parents.remove(self)
            self._rewire()

    def _changed(self) -> None:
        """Called when this node or one below it is connected anew; tells the parents (a
        Pipeline rebuilds its fused function)."""
        self._rejoin = None
        for parent in self._parents:
            parent._changed()

    _rejoin: bool | None = None
    """Whether two of this node's children reach one node below (None: not asked since the
    graph last changed)."""

    def rejoins(self) -> bool:
        """Whether two of this node's children reach one node below: such a node takes a
        batch's rows in the order row by row gives them only if they are sent on one by one
        (a batch sent whole to each child in turn reaches it branch by branch)."""
        rejoin = self._rejoin
        if rejoin is None:
            below: set[int] = set()
            total = 0
            for child in self._children:
                reached = {id(node) for node in child.nodes()}
                total += len(reached)
                below |= reached
            rejoin = self._rejoin = len(below) < total
        return rejoin

    def _rewire(self) -> None:
        children = tuple(self._children)
        if not children:
            self.emit = self._emit_nowhere
        elif len(children) == 1:
            self.emit = children[0].write
        else:
            writers = tuple(child.write for child in children)

            def fan_out(record: Record) -> None:
                for write in writers:
                    write(record)

            self.emit = fan_out
        self._changed()

    def emit_batch(self, columns: Columns) -> None:
        """Sends a batch to each child, as `emit` sends a record; row by row where children
        rejoin below (`rejoins`)."""
        children = self._children
        if not children:
            self._emit_nowhere(columns)
        if len(children) > 1 and self.rejoins():
            for record in present_rows(columns):
                self.emit(record)
            return
        for child in children:
            child.write_batch(columns)

    def absent_ok(self) -> bool:
        """Whether a `MaskedColumns` batch may be written to this node: it takes them
        (`takes_absent`) and so does every node below it. Asked once per change of the graph
        (see `NoneFilter`), never per batch."""
        return self.takes_absent and all(child.absent_ok() for child in self._children)

    def _emit_nowhere(self, record: Record) -> None:
        raise RuntimeError(
            f"{self!r} has nowhere to send records: connect it to a sink "
            "(node.connect(sink), or end a Pipeline with .to(...))"
        )

    def nodes(self) -> list[Node]:
        """This node and every node below it, each once, parents before children."""
        reachable: list[Node] = []
        seen: set[int] = set()
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            reachable.append(node)
            stack.extend(node._children)
        indegree = {id(node): 0 for node in reachable}
        for node in reachable:
            for child in node._children:
                indegree[id(child)] += 1
        ready = [node for node in reachable if indegree[id(node)] == 0]
        order: list[Node] = []
        while ready:
            node = ready.pop(0)
            order.append(node)
            for child in node._children:
                indegree[id(child)] -= 1
                if indegree[id(child)] == 0:
                    ready.append(child)
        return order

    # -- the three calls ------------------------------------------------------------------

    def write(self, data: Record) -> None:
        """Takes one record. The base node passes it on unchanged."""
        self.emit(data)

    def write_batch(self, columns: Columns) -> None:
        """Takes a batch of records as columns of equal length; same result as row by row."""
        for row in iter_rows(columns):
            self.write(row)

    def flush(self) -> None:
        """Pushes out what this node and every node below it hold, parents first."""
        errors: list[Exception] = []
        for node in self.nodes():
            if not node.closed:
                try:
                    node.on_flush()
                except Exception as error:  # flush the rest, then report
                    errors.append(error)
        self.report_errors(errors)

    def close(self) -> None:
        """Flushes, then releases this node and every node below it; safe to call twice.

        A node below that another open node still feeds (a sink shared with a second
        pipeline) is only flushed: it closes when the last node feeding it closes."""
        errors: list[Exception] = []
        for node in self.nodes():
            if node.closed:
                continue
            if node is not self and any(not parent.closed for parent in node._parents):
                try:
                    node.on_flush()
                except Exception as error:
                    errors.append(error)
                continue
            flush_error: Exception | None = None
            try:
                node.on_flush()
            except Exception as error:  # close the rest, then report
                flush_error = error
            try:
                node.on_close()
            except Exception as error:  # the node's last word supersedes its flush error
                flush_error = None
                errors.append(error)
            if flush_error is not None:
                errors.append(flush_error)
            node.closed = True
        self.report_errors(errors)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Gives the run's configuration (hyperparameters, seed, settings: a mapping, nested
        or not) to this node and every node below it, each once, parents first, as `flush`
        goes: filters pass it on unchanged, and each sink keeps it its own way (see
        docs/sinks.md). Calling it again merges: see `pipeline.core.config.merge_config`.
        Closed nodes are passed over; errors are reported as `flush` reports them."""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        errors: list[Exception] = []
        for node in self.nodes():
            if not node.closed:
                try:
                    node.on_config(config)
                except Exception as error:  # give it to the rest, then report
                    errors.append(error)
        self.report_errors(errors)

    def report_errors(self, errors: list[Exception]) -> None:
        """Reports the errors met by `flush` or `close` after they went over every node:
        a bare node raises the first; a Pipeline warns unless it is strict."""
        if errors:
            raise errors[0]

    def on_flush(self) -> None:
        """Node-local flush: emit or store what this node holds. Default: nothing held."""

    def on_close(self) -> None:
        """Node-local release of resources, after the final `on_flush`. Default: none."""

    def on_config(self, config: Mapping[str, Any]) -> None:
        """Node-local part of `log_config`: what this node does with the run's configuration
        (as the caller gave it). Default: nothing (a filter passes it on unchanged)."""

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The state of this node and every node below it, as plain picklable data (dicts,
        lists, numbers, numpy arrays): what the graph needs to go on after a restart exactly
        as if there had been none. Taking it flushes nothing and emits nothing: a checkpoint
        changes no output. Nodes with a thread of their own are held still meanwhile."""
        nodes = self.nodes()
        for node in nodes:
            node.pause()
        try:
            return {
                "rlpipe_state": STATE_VERSION,
                "graph": [_signature(node) for node in nodes],
                "nodes": [node.node_state() for node in nodes],
            }
        finally:
            for node in nodes:
                node.resume()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a `state_dict()` into this freshly built graph, which must be the same
        graph (the same nodes, built the same way, in the same places); one that differs is
        refused with a ValueError naming the first difference, before anything changes."""
        if not isinstance(state, dict) or state.get("rlpipe_state") != STATE_VERSION:
            raise ValueError(
                f"not an rlpipe state of version {STATE_VERSION} (from state_dict()): "
                f"{_shown_keys(state)}"
            )
        nodes = self.nodes()
        graph = [_signature(node) for node in nodes]
        for index, (ours, theirs) in enumerate(zip(graph, state["graph"], strict=False)):
            if list(ours) != list(theirs):
                raise ValueError(
                    f"the state is of another graph: node {index} is {theirs[2]} with "
                    f"{theirs[1]} children in the state, {ours[2]} with {ours[1]} here"
                )
        if len(graph) != len(state["graph"]):
            raise ValueError(
                f"the state is of another graph: {len(state['graph'])} nodes in the state, "
                f"{len(graph)} here"
            )
        used = [node for node in nodes if not node.fresh()]
        if used:
            raise ValueError(
                f"{used[0]!r} was written to already: a state is loaded into a freshly built "
                "graph, before any record (what it holds would be lost)"
            )
        for node, node_state in zip(nodes, state["nodes"], strict=True):
            node.load_node_state(node_state)

    def state_key(self) -> str:
        """What tells this node from another of its class in a graph, for matching a state
        to it: its repr (its arguments, such as a regex or a file's path) by default."""
        return repr(self)

    def fresh(self) -> bool:
        """Whether nothing was written to this node yet (a state may be loaded into it).
        Nodes that hold or store records say so; others cannot tell and answer True."""
        return True

    def node_state(self) -> dict[str, Any]:
        """This node's own part of `state_dict()`; subclasses add theirs to the base's
        (its counts)."""
        return {"counts": self.counts.state()}

    def load_node_state(self, state: dict[str, Any]) -> None:
        """Takes back this node's own part of a state (see `load_state_dict`)."""
        self.counts.load(state["counts"])

    def inlined_write(self) -> tuple[list[str], dict[str, object]] | None:
        """Python statements (and the names they use) that do what `write(data)` does, for
        `fuse` to put in place of the call; None (the default) to be called as usual. Valid
        until the node is connected anew (which re-fuses)."""
        return None

    def pause(self) -> None:
        """Holds still a thread of this node's own, for a checkpoint. Default: it has none."""

    def resume(self) -> None:
        """Lets the thread `pause` held go on."""

    # -- conveniences ---------------------------------------------------------------------

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"



def _as_leaf(parent: Node, target: object) -> Node:
    if isinstance(target, type):
        raise TypeError(_a_class(f"{type(parent).__name__} can only send records to", target))
    if not callable(getattr(target, "write", None)):
        raise TypeError(
            f"{type(parent).__name__} can only send records to a Node or a logger with a "
            f"write(record) method, got {type(target).__name__}"
        )
    return LoggerSink.of(target)


def _a_class(what: str, target: type) -> str:
    """The refusal of a class given where an instance is needed (`.to(CsvSink)`): its
    `write` is a function of the class, which would take no record."""
    name = target.__name__
    return (
        f"{what} an instance (a Node or a logger with a write(record) method), got the class "
        f"{name} itself: pass {name}(...)"
    )


def _signature(node: Node) -> tuple[str, int, str]:
    return type(node).__qualname__, len(node._children), node.state_key()


def _shown_keys(state: object) -> str:
    if isinstance(state, dict):
        return f"a dict with keys {sorted(map(str, state))[:5]}"
    return f"a {type(state).__name__}"


class LoggerSink(Node):
    """A leaf that hands each record to a logger that is not a Node: any object with a
    `write(record)` method (an Acme logger such as `InMemoryLogger` or `TFSummaryLogger`, a
    user's own), calling its `flush()` and `close()` too when it has them.

    The logger receives a snapshot of each record as a plain dict (`snapshot_record`), so one
    that keeps what it receives keeps what was written. It sits behind the same failure
    isolation as any sink.
    `Node.connect` (and so `Pipeline.to`) wraps such a logger automatically, once per logger,
    so the same logger under two branches is one leaf (a join).
    """

    def __init__(self, logger: Any) -> None:
        super().__init__()
        if isinstance(logger, type):
            raise TypeError(_a_class("LoggerSink takes", logger))
        if isinstance(logger, Node) or not callable(getattr(logger, "write", None)):
            raise TypeError(
                f"LoggerSink takes a logger with a write(record) method that is not a Node, "
                f"got {type(logger).__name__}"
            )
        self.logger = logger
        self._write = logger.write

    @classmethod
    def of(cls, logger: Any) -> LoggerSink:
        """The one LoggerSink of `logger` (made on first use)."""
        sink = _sinks.get(id(logger))
        if sink is None or sink.logger is not logger:
            sink = _sinks[id(logger)] = cls(logger)
        return sink

    def connect(self, *children: Node | Logger) -> Node:
        raise TypeError(f"{self!r} is a leaf: it has no children")

    def write(self, data: Record) -> None:
        if self.closed:
            raise ClosedError(f"{self!r} is closed; it takes no more records")
        self._write(snapshot_record(data))

    def on_config(self, config: Mapping[str, Any]) -> None:
        """Hands the configuration to the logger's own `log_config(config)` when it has one,
        as one level of `/`-joined names with plain JSON values
        (`pipeline.core.config.config_values`); a logger without one is not given it."""
        log_config = getattr(self.logger, "log_config", None)
        if callable(log_config):
            log_config(config_values(config)[0])

    def on_flush(self) -> None:
        flush = getattr(self.logger, "flush", None)
        if callable(flush):
            flush()

    def on_close(self) -> None:
        close = getattr(self.logger, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"LoggerSink({type(self.logger).__name__})"


_sinks: weakref.WeakValueDictionary[int, LoggerSink] = weakref.WeakValueDictionary()
