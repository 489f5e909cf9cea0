"""Fusion: a run of record-to-record nodes crossed in one call, with no call per node."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.core.node import Node, Record


class Transform(Node):
    """A node that turns each record into at most one record, at once: `transform(record)`
    returns the record to pass on (a new mapping when it changes anything), or None to pass
    nothing. `write` is `transform` then `emit`.

    A run of Transforms, each the only child of the one before, is fused by `fuse` into one
    function, so a record crosses the run with one call per node and no `emit` between them.
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


def fuse(head: Node) -> tuple[Callable[[Record], None], list[Transform]]:
    """A function that does what `head.emit` does, with the run of Transforms below `head`
    (each the only child of its single parent) fused into it, and the nodes of that run.

    The run ends at the first node that is not a Transform (or overrides `write`) or has
    another parent, or at a Transform with no or several children; the function then calls
    that node's `write` (or the last Transform's own `emit`, which fans out or refuses). The
    result is only valid until a node of the run is connected again: rebuild it then (see
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
    if not run:
        return head.emit, run
    steps = [step for step in run if not step.passes_all()]
    namespace: dict[str, object] = {"end": node.emit}
    lines = ["def fused(data):"]
    for index, step in enumerate(steps):
        namespace[f"t{index}"] = step.transform
        lines.append(f"    data = t{index}(data)")
        if step.drops:
            lines.append("    if data is None:")
            lines.append("        return")
    inlined = node._children[0].inlined_write() if len(node._children) == 1 else None
    if inlined is None:
        lines.append("    end(data)")
    else:
        body, names = inlined
        lines.extend(f"    {line}" for line in body)
        namespace.update(names)
    exec("\n".join(lines), namespace)  # one straight-line function: no loop, no emit
    fused: Callable[[Record], None] = namespace["fused"]  # type: ignore[assignment]
    return fused, run
