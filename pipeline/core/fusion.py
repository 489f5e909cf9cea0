"""Fusion: a run of record-to-record nodes crossed in one call, with no call per node."""

from __future__ import annotations

from collections.abc import Callable
from types import CodeType, FunctionType
from typing import Any, NamedTuple, Protocol

from pipeline.core.node import Node, Record


class Transform(Node):
    """A node that turns each record into at most one record, at once: `transform(record)`
    returns the record to pass on (a new mapping when it changes anything), or None to pass
    nothing. `write` is `transform` then `emit`.

    A run of Transforms, each the only child of the one before, is fused by `fuse` into one
    function, so a record crosses the run with at most one call per node (none for a
    `transform` made by `transform_of`) and no `emit` between them.
    The nodes keep their classes, state, counts, `write_batch`, flush and close.
    """

    drops = True
    """Whether `transform` may return None (False lets a fused run skip that check)."""

    def transform(self, data: Record) -> Record | None:
        """The record to pass on for `data`, or None."""
        raise NotImplementedError

    def passes_all(self) -> bool:
        """True when `transform` returns every record as it is (a fused run leaves it out)."""
        return False

    def write(self, data: Record) -> None:
        out = self.transform(data)
        if out is not None:
            self.emit(out)


def transform_of(statements: list[str]) -> Any:
    """A `transform` method made of Python statements, using only builtins, that rebind
    `data` to the record to pass on (or `return` to pass nothing). A fused run writes the
    statements in place of the call, as long as the node's `transform` is this one (not a
    subclass's or an instance's own); so the statements' own names must not be the fused
    function's (`end`, `check`, `acquire`, `release`, `dispatch_failed`, or a letter and
    digits such as `t0`)."""
    namespace: dict[str, Any] = {}
    body = [f"    {line}" for line in statements]
    exec("\n".join(["def transform(self, data):", *body, "    return data"]), namespace)
    transform = namespace["transform"]
    transform.statements = tuple(statements)
    return transform


class Lock(Protocol):
    """What `fuse` needs of a lock (`threading.Lock` and `RLock` have it)."""

    def acquire(self) -> object: ...
    def release(self) -> object: ...


class Fused(NamedTuple):
    """What `fuse` makes of the nodes below a head."""

    write: Callable[[Record], None]
    """Does what `head.emit` does, with the run fused into it, behind the head's guard: the
    record's check, then the run under the lock."""
    run: list[Transform]
    """The fused nodes, in order."""


def fuse(
    head: Node,
    check: Callable[[object], None] | None = None,
    lock: Lock | None = None,
) -> Fused:
    """Fuses the run of Transforms below `head` (each the only child of its single parent)
    into one function that does what `head.emit` does, guarded: a record that is not a dict
    goes to `check` first (which raises for one it refuses), and the run is crossed holding
    `lock`.

    The run ends at the first node that is not a Transform (or overrides `write`) or has
    another parent, or at a Transform with no or several children; the function then calls
    that node's `write` (or the last Transform's own `emit`, which fans out or refuses). It is
    only valid until a node of the run is connected again: rebuild it then (see
    `Node._changed`).
    """
    run: list[Transform] = []
    node = head
    while len(node._children) == 1:
        child = node._children[0]
        if (
            not isinstance(child, Transform)
            or type(child).write is not Transform.write  # its own write: call it
            or len(child._parents) != 1
        ):
            break
        run.append(child)
        node = child
    namespace: dict[str, object] = {"end": node.emit, "check": check}
    body: list[str] = []
    for index, step in enumerate(step for step in run if not step.passes_all()):
        statements = getattr(step.transform, "statements", None)  # see transform_of
        if statements is not None:
            body += statements
            continue
        namespace[f"t{index}"] = step.transform
        body.append(f"data = t{index}(data)")
        if step.drops:
            body += ["if data is None:", "    return"]
    inlined = _inlined_write(node._children[0]) if len(node._children) == 1 else None
    if inlined is None:
        body.append("end(data)")
    else:
        lines, names = inlined
        body += lines
        namespace.update(names)
    guarded = body
    if lock is not None:  # acquire/release: cheaper than `with` on a lock
        namespace["acquire"], namespace["release"] = lock.acquire, lock.release
        indented = [f"    {line}" for line in body]
        guarded = ["acquire()", "try:", *indented, "finally:", "    release()"]
    if check is not None:
        guarded = ["if type(data) is not dict:", "    check(data)", *guarded]
    source = ["def write(data):", *(f"    {line}" for line in guarded)]
    exec("\n".join(source), namespace)  # one straight-line function: no loop, no emit
    return Fused(namespace["write"], run)  # type: ignore[arg-type]


def _inlined_write(node: Node) -> tuple[list[str], dict[str, object]] | None:
    """`node.inlined_write()`, if the `write` it stands for is the node's own: not when a
    subclass overrode `write` alone, nor when the instance has a `write` of its own."""
    owner = next(kind for kind in type(node).__mro__ if "inlined_write" in vars(kind))
    # Not vars(node): making an instance's __dict__ slows every attribute read of it after.
    if getattr(node.write, "__func__", None) is not owner.write:  # type: ignore[attr-defined]
        return None
    return node.inlined_write()


def rebind(kept: Callable[[Record], None], new: Callable[[Record], None]) -> None:
    """Makes `kept`, a function made by `fuse` (or any function without closure cells), do
    from now on what `new` does: its globals take `new`'s names and its code becomes
    `new`'s. Whoever holds `kept` (a `write = pipeline.write` kept before a node was
    connected, a parent's writer) calls the current graph, at no cost per call.

    Names `kept` no longer uses stay in its globals: a call of the old code still running
    (a sink that writes back and connects a node) finds them."""
    if not isinstance(kept, FunctionType) or not isinstance(new, FunctionType):
        raise TypeError("rebind takes two plain functions (as fuse makes them)")
    kept.__globals__.update(new.__globals__)
    kept.__code__ = new.__code__


def make_refuse(kept: Callable[[Record], None], refuse: Callable[[], None]) -> None:
    """Makes `kept`, a function made by `fuse`, call `refuse()` (which raises) from now on,
    compiling nothing: it runs when a pipeline closes, maybe at exit, where code compiled
    by `exec` makes Python forget a Ctrl-C (it then exits with status 1, not by SIGINT)."""
    if not isinstance(kept, FunctionType):
        raise TypeError("make_refuse takes a plain function (as fuse makes them)")
    kept.__globals__["refuse"] = refuse
    kept.__code__ = _REFUSING


def _refusing_code() -> CodeType:
    namespace: dict[str, Any] = {}
    exec("def write(data):\n    refuse()", namespace)
    code: CodeType = namespace["write"].__code__
    return code


_REFUSING = _refusing_code()
"""The code of a function of one record that calls `refuse()` from its globals."""
