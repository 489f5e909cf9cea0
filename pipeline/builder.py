"""Pipeline: a metrics graph assembled in the order data flows."""

from __future__ import annotations

import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from filters import (
    AggregateFilter,
    AsyncNode,
    ConstantFields,
    Dispatcher,
    DropKeys,
    EveryNFilter,
    FlattenFilter,
    KeepKeys,
    LifetimeFilter,
    LogarithmicFilter,
    NoneFilter,
    PrefixKeys,
    RateFilter,
    RenameKeys,
    RollingFilter,
    SmoothingFilter,
    TimeFilter,
    Timestamp,
)
from pipeline.core import lifecycle
from pipeline.core.columns import Columns, MaskedColumns, batch_length, write_present
from pipeline.core.fusion import Transform, fuse, make_refuse, rebind
from pipeline.core.isolation import strict_from_env
from pipeline.core.node import ClosedError, Logger, Node, Record
from pipeline.core.values import shown


class Pipeline(Node):
    """A chain of nodes that ends in sinks, built in the order records flow through it.

        logger = (
            Pipeline("train")
            .drop_none()
            .smooth(r"return", coeff=0.99)
            .throttle(1.0)
            .to(TerminalSink(), CsvSink("runs/train.csv"))
        )

    Each builder method appends one node and returns the pipeline; `.to(*targets)` ends the
    chain with a Dispatcher that fans out to sinks, nodes or other (ended) pipelines. The
    same target under two chains is a join: it is flushed and closed once.

    A pipeline is itself a Node, hence an Acme logger: `write`, `flush`, `close`, and a
    context manager that closes on exit. Writing before `.to(...)` or after `close()` raises.

    Reliability: a sink that fails does not stop the others nor training (see Dispatcher);
    errors met while flushing or closing are warned about, not raised, unless `strict=True`
    (or `RLPIPE_STRICT=1`). With `thread_safe=True` (default) one re-entrant lock serialises
    `write`, `flush` and `close`, so threads sharing the pipeline get the totals of one
    thread. A pipeline still open at interpreter exit or on SIGTERM is closed then
    (`close_at_exit=False` opts out).
    """

    def __init__(
        self,
        name: str = "",
        *,
        strict: bool | None = None,
        thread_safe: bool = True,
        close_at_exit: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(name, str):
            raise ValueError(f"name must be a string, got {type(name).__name__}")
        self.name = name
        self.strict = strict_from_env() if strict is None else strict
        lock = threading.RLock() if thread_safe else None
        self._lock: AbstractContextManager[object] = lock or nullcontext()
        self._thread_lock = lock
        self._close_at_exit = close_at_exit
        self._tail: Node = self
        self._ended = False
        self._fused: list[Transform] = []
        self._write: Callable[[Record], None] | None = None  # the fused write, once ended

    # -- building -------------------------------------------------------------------------

    def then(self, node: Node) -> Pipeline:
        """Appends any node to the chain."""
        if self._ended:
            raise ValueError(f"{self!r} already ends with .to(...); add steps before it")
        if isinstance(node, Pipeline):
            raise ValueError("a Pipeline can only be a target: pass it to .to(...)")
        self._tail.connect(node)
        self._tail = node
        return self

    def drop_none(self) -> Pipeline:
        """Appends a NoneFilter: keys whose value is None are dropped."""
        return self.then(NoneFilter())

    def throttle(self, seconds: float, *, keep_last: bool = False) -> Pipeline:
        """Appends a TimeFilter: a record passes only if `seconds` passed since the last one;
        with `keep_last=True` the last held-back record is passed on flush and close, so the
        final values of a run always reach the sinks."""
        return self.then(TimeFilter(seconds, keep_last=keep_last))

    def every(
        self,
        n: int | None = None,
        *,
        seconds: float | None = None,
        logarithmic: int | None = None,
    ) -> Pipeline:
        """Passes every `n`-th record (EveryNFilter); with `seconds`, throttles by time
        (TimeFilter); with `logarithmic=base`, passes records at logarithmically spaced counts
        (LogarithmicFilter, Acme's `GatedFilter.logarithmic`: with 10, records 0-9, then every
        10th up to 100, every 100th up to 1000, ...)."""
        if sum(option is not None for option in (n, seconds, logarithmic)) != 1:
            raise ValueError("every() takes exactly one of n, seconds or logarithmic")
        if seconds is not None:
            return self.then(TimeFilter(seconds))
        if logarithmic is not None:
            return self.then(LogarithmicFilter(logarithmic))
        assert n is not None
        return self.then(EveryNFilter(n))

    def smooth(
        self, regex: str = "return", coeff: float = 0.99, *, bias_correction: bool = False
    ) -> Pipeline:
        """Appends a SmoothingFilter: adds `<key>_smoothed_<coeff>` (EMA) for matching keys."""
        return self.then(SmoothingFilter(regex, coeff=coeff, bias_correction=bias_correction))

    def aggregate(
        self,
        regex: str = ".*",
        every: int | None = None,
        seconds: float | None = None,
        stats: Sequence[str] = ("mean", "std", "median", "max", "min"),
        *,
        every_steps: int | None = None,
        step_key: str = "steps",
    ) -> Pipeline:
        """Appends an AggregateFilter: windowed statistics for matching keys (windows cut by
        `flush()`, `every` records, `seconds`, or `every_steps` of the `step_key` value)."""
        return self.then(AggregateFilter(regex, every=every, seconds=seconds, stats=stats,
                                         every_steps=every_steps, step_key=step_key))

    def rolling(
        self, regex: str, window: int = 100, stats: Sequence[str] = ("mean",)
    ) -> Pipeline:
        """Appends a RollingFilter: adds `<key>_last<window>_<stat>`, the statistics of each
        matching key's last `window` values, to every record holding it."""
        return self.then(RollingFilter(regex, window=window, stats=stats))

    def lifetime(self, regex: str) -> Pipeline:
        """Appends a LifetimeFilter: adds `<key>_lifetime`, the running sum of each matching
        key since the run began (carried across a resume)."""
        return self.then(LifetimeFilter(regex))

    def rate(self, regex: str, *, clock: Callable[[], float] = time.monotonic) -> Pipeline:
        """Appends a RateFilter: adds `<key>_per_second`, the change of each matching counter
        key per second since the previous record that held it."""
        return self.then(RateFilter(regex, clock=clock))

    def constant(self, **fields: Any) -> Pipeline:
        """Appends ConstantFields: adds `fields` (seed, environment, run name) to every
        record; a field the record already holds keeps the record's value (counted)."""
        return self.then(ConstantFields(fields))

    def timestamp(
        self, key: str = "wall_time", *, clock: Callable[[], float] = time.time
    ) -> Pipeline:
        """Appends a Timestamp: adds `key`, the wall-clock time of the write (seconds since
        the epoch); a record that already holds `key` keeps its value (counted)."""
        return self.then(Timestamp(key, clock=clock))

    def keep(self, regex: str) -> Pipeline:
        """Appends a KeepKeys filter: only keys matching `regex` go on."""
        return self.then(KeepKeys(regex))

    def drop(self, regex: str) -> Pipeline:
        """Appends a DropKeys filter: keys matching `regex` are removed."""
        return self.then(DropKeys(regex))

    def prefix(self, prefix: str, sep: str = "/") -> Pipeline:
        """Appends a PrefixKeys filter: every key becomes `<prefix><sep><key>`."""
        return self.then(PrefixKeys(prefix, sep=sep))

    def rename(self, mapping: Mapping[str, str]) -> Pipeline:
        """Appends a RenameKeys filter: keys in `mapping` are renamed."""
        return self.then(RenameKeys(mapping))

    def flatten(self, sep: str = "/") -> Pipeline:
        """Appends a FlattenFilter: nested mappings become `a/b/c` keys."""
        return self.then(FlattenFilter(sep=sep))

    def to(self, *targets: Node | Logger) -> Pipeline:
        """Ends the chain with a Dispatcher fanning out to `targets` (sinks, nodes, ended
        pipelines, or any logger with `write`, wrapped in a LoggerSink); returns the pipeline."""
        if not targets:
            raise ValueError("to() needs at least one target (a sink, a node or a pipeline)")
        for target in targets:
            if isinstance(target, Pipeline) and not target._ended:
                raise ValueError(
                    f"target {target!r} does not end in sinks: end it with .to(...) first"
                )
        tail = self._tail
        dispatcher = Dispatcher(*targets, strict=self.strict)
        self.then(dispatcher)
        try:
            _check_threads(self)
        except ValueError:
            tail.disconnect(dispatcher)
            for target in dispatcher.children:
                dispatcher.disconnect(target)
            self._tail = tail
            raise
        self._ended = True
        self._fuse()
        if self._close_at_exit:
            lifecycle.track(self)
        return self

    def async_(self, maxsize: int = 10_000, policy: str = "block") -> Pipeline:
        """Appends an AsyncNode: everything after it runs on a background thread."""
        return self.then(AsyncNode(maxsize=maxsize, policy=policy))

    # -- the three calls ------------------------------------------------------------------

    def write(self, data: Record) -> None:
        # Until the chain is ended (and again once closed): the hot path is _fuse's writer.
        if not self._ended or self.closed:
            self._refuse()
        _check_record(data)
        with self._lock:
            self.emit(data)

    def _fuse(self) -> None:
        """Fuses the chain and installs, as this pipeline's `write`, one function that checks
        the record, takes the lock and runs the fused chain. It stays the same function
        object from then on (fused again in place when a node is connected below, made to
        refuse records once closed), so a `write = pipeline.write` kept by a caller always
        writes through the current graph."""
        fused = fuse(self, _check_record, self._thread_lock, self._write)
        self._fused = fused.run
        with self._lock:  # no write of this pipeline is half-way through the old code
            if self._write is None:
                self._write = fused.write
            else:
                rebind(self._write, fused.write)
        self.write = self._write  # type: ignore[method-assign,assignment]
        self._rewire_parents()

    def _rewire_parents(self) -> None:
        """Nodes that feed this pipeline hold its `write` (a Dispatcher's writers, a fused
        function): give them the current one."""
        for parent in self._parents:
            parent._rewire()

    def write_batch(self, columns: Columns) -> None:
        if not self._ended or self.closed:
            self._refuse()
        if not isinstance(columns, Mapping):
            raise TypeError(
                f"write_batch takes a mapping of metric names to columns, got {shown(columns)}"
            )
        with self._lock:
            head = self._children[0]
            if type(columns) is MaskedColumns and not head.absent_ok():
                write_present(columns, batch_length(columns), head.write_batch, head.write)
            else:
                head.write_batch(columns)

    def flush(self) -> None:
        with self._lock:
            super().flush()

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Gives the run's configuration (a mapping; nested mappings become `a/b` names) to
        every node of this pipeline's graph, each once, under the pipeline's lock: each sink
        keeps it its own way (see docs/sinks.md, "Configuration"). Calling it again merges
        (a changed value is counted and warned once). Refused, like `write`, before `.to()`
        and after `close()`."""
        if not self._ended or self.closed:
            self._refuse()
        with self._lock:
            super().log_config(config)

    def close(self) -> None:
        with self._lock:
            already = self.closed
            super().close()
        lifecycle.forget(self)
        report = [] if already else self.failures()
        if report:
            warnings.warn(
                f"rlpipe: {self!r} closed with failures: " + "; ".join(report),
                RuntimeWarning,
                stacklevel=2,
            )

    def state_dict(self) -> dict[str, Any]:
        """The state of every node of this pipeline's graph (see `Node.state_dict`), taken
        under the pipeline's lock: `torch.save({"model": ..., "logging": p.state_dict()})`."""
        with self._lock:
            return super().state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a `state_dict()` into this freshly built pipeline (see
        `Node.load_state_dict`): file sinks cut their files back to the checkpoint."""
        with self._lock:
            super().load_state_dict(state)

    def _changed(self) -> None:
        if self._ended and not self.closed:  # a node below was connected anew: fuse again
            self._fuse()
        super()._changed()

    def on_close(self) -> None:
        self.__dict__.pop("write", None)  # the class's write refuses records from now on
        if self._write is not None:  # and so does the fused one, wherever it was kept
            make_refuse(self._write, self._refuse)
        self._rewire_parents()
        lifecycle.forget(self)  # also when closed as part of an outer pipeline

    def report_errors(self, errors: list[Exception]) -> None:
        if self.strict:
            super().report_errors(errors)
        for error in errors:
            warnings.warn(
                f"rlpipe: {self!r}: {type(error).__name__}: {error}", RuntimeWarning, stacklevel=3
            )

    def failures(self) -> list[str]:
        """One line per failing child in this graph: errors, records lost (and held for
        retry), first error. A sink whose own storage failed or lost rows (`storage_failures`:
        a flush on time, a close) is listed too, with what its storage costs."""
        lines: dict[int, str] = {}
        for node in self.nodes():  # a Dispatcher comes before its children
            if isinstance(node, Dispatcher):
                for failures in node.failures.values():
                    lines[id(failures.node)] = str(failures)
            storage = getattr(node, "storage_failures", None)
            if storage is not None:  # what the sink knows of its storage is the whole story,
                # unless records it refused were lost before reaching it
                refused = any(
                    parent.failures[id(node)].lost
                    for parent in node._parents
                    if isinstance(parent, Dispatcher) and id(node) in parent.failures
                )
                own = str(storage)
                lines[id(node)] = f"{lines[id(node)]}; {own}" if refused else own
        return list(lines.values())

    def _refuse(self) -> None:
        if self.closed:
            raise ClosedError(f"{self!r} is closed; it takes no more records")
        raise RuntimeError(f"{self!r} has no sinks yet: end the chain with .to(...)")

    @property
    def steps(self) -> list[Node]:
        """The nodes of this pipeline's graph in the order records reach them."""
        return self.nodes()[1:]

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r})"

    def __enter__(self) -> Pipeline:
        return self

    def describe(self) -> str:
        """A one-line-per-node text of the graph, in data-flow order, with each node's counts;
        the nodes of this pipeline's fused run (crossed in one call) are marked `[fused]`."""
        lines: list[str] = []
        fused = {id(node) for node in self._fused}

        def walk(node: Node, depth: int, seen: set[int]) -> None:
            mark = " (join, shown above)" if id(node) in seen else ""
            counts = {reason: n for reason, n in node.counts.items() if n}
            text = repr(node) + (" [fused]" if id(node) in fused else "")
            lines.append("  " * depth + text + (f"  {counts}" if counts else "") + mark)
            if mark:
                return
            seen.add(id(node))
            for child in node.children:
                walk(child, depth + 1, seen)

        walk(self, 0, set())
        return "\n".join(lines)


def _check_record(data: object) -> None:
    if not isinstance(data, Mapping):
        raise TypeError(f"write takes a mapping of metric names to values, got {shown(data)}")


_contexts: weakref.WeakKeyDictionary[Node, dict[int, tuple[weakref.ref[Pipeline], str]]] = (
    weakref.WeakKeyDictionary()
)
"""Per node: the thread it is written from, by each open top-level pipeline whose graph holds
it ("caller", or the AsyncNode whose thread writes it)."""


def _check_threads(root: Pipeline) -> None:
    """Refuses a graph in which one node would be written from two threads: below an
    AsyncNode and also directly, or below two AsyncNodes (nodes do not lock; a pipeline's lock
    covers only its caller's thread). Pipelines written by the same caller may share nodes."""
    seen: dict[int, tuple[Node, str]] = {}
    inner: set[int] = set()
    stack: list[tuple[Node, str]] = [(root, "caller")]
    while stack:
        node, context = stack.pop()
        known = seen.get(id(node))
        if known is not None:
            if known[1] != context:
                raise ValueError(_two_threads(node, known[1], context))
            continue
        seen[id(node)] = (node, context)
        if isinstance(node, Pipeline) and node is not root:
            inner.add(id(node))
        below = repr(node) if isinstance(node, AsyncNode) else context
        stack.extend((child, below) for child in node.children)
    marks = []
    for node, context in seen.values():
        by_root: dict[int, tuple[weakref.ref[Pipeline], str]] = {}
        for other, (ref, theirs) in _contexts.get(node, {}).items():
            owner = ref()
            if other in inner or owner is None or owner.closed or owner is root:
                continue
            if theirs != context:
                raise ValueError(_two_threads(node, theirs, context))
            by_root[other] = (ref, theirs)
        by_root[id(root)] = (weakref.ref(root), context)
        marks.append((node, by_root))
    _contexts.update(marks)


def _two_threads(node: Node, first: str, second: str) -> str:
    def where(context: str) -> str:
        return "directly" if context == "caller" else f"by the thread of {context}"

    return (
        f"{node!r} would be written from two threads ({where(first)} and {where(second)}); "
        "nodes do not lock: give each branch its own sink, or put .async_() before the fan-out"
    )
