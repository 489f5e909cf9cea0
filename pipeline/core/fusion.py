"""Fusion: a run of record-to-record nodes crossed in one call, with no call per node."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
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

    pure = False
    """Whether `transform` does nothing but make its result: no state, no counts, no
    warnings (a fused run leaves it out where its result is not used, see `gate`)."""

    def transform(self, data: Record) -> Record | None:
        """The record to pass on for `data`, or None."""
        raise NotImplementedError

    def passes_all(self) -> bool:
        """True when `transform` returns every record as it is (a fused run leaves it out)."""
        return False

    def observe(self, data: Record) -> None:
        """Does to this node's state and counts what `transform(data)` does, without making
        the record to pass on: a fused run calls it for a record that a gate below drops (see
        `gate`). Default: `transform`, result unused."""
        self.transform(data)

    def specialized(self, keys: tuple[Any, ...], name: str) -> Special | None:
        """This node's `transform` as statements valid for records whose key tuple is `keys`
        (a plan made once per key tuple, written into the fused run compiled for it), the
        node being `name` in them; None (the default) when it has none. A node that has them
        must ask its parents to fuse again (`_changed`) when the state they hold is replaced."""
        return None

    def gate(self, name: str) -> Gate | None:
        """For a node that passes or drops a record without looking at it (a throttle, a
        count gate): its `transform` as a `Gate`, statements in which the node is `name`.
        A fused run then decides first, before the nodes above it that do not drop records,
        and for a record it drops only lets them `observe` it. None (the default): the node
        is called as usual."""
        return None

    def write(self, data: Record) -> None:
        out = self.transform(data)
        if out is not None:
            self.emit(out)


def transform_of(statements: list[str]) -> Any:
    """A `transform` method made of Python statements, using only builtins, that rebind
    `data` to the record to pass on (or `return` to pass nothing). A fused run writes the
    statements in place of the call, as long as the node's `transform` is this one (not a
    subclass's or an instance's own); so the statements' own names must not be the fused
    function's (`end`, `check`, `acquire`, `release`, `dispatch_failed`, a letter and
    digits such as `t0`, or such a name, `_` and a word, such as `g3_now`)."""
    namespace: dict[str, Any] = {}
    body = [f"    {line}" for line in statements]
    exec("\n".join(["def transform(self, data):", *body, "    return data"]), namespace)
    transform = namespace["transform"]
    transform.statements = tuple(statements)
    return transform


class Gate(NamedTuple):
    """A gate's `transform` as statements for a fused run (see `Transform.gate`), which writes

        <decide>
        if <condition>:
            <the nodes above, each making its record> <passed> <the nodes below>
        else:
            <the nodes above, the last with state observing> <dropped>

    so a gate's state changes only once the nodes above it took the record, as unfused. The
    statements use the gate's name and names made of it with `_` and a word (`g3_now`)."""

    decide: list[str]
    """Reads what the decision needs (the clock, a count), changing nothing."""
    condition: str
    """True when the record passes."""
    passed: list[str]
    """The gate's state after passing the record, as `transform` leaves it."""
    dropped: list[str]
    """The gate's state and counts after dropping the record, as `transform` leaves them."""
    names: dict[str, object] | None = None
    """Names the statements read besides the gate's own (the gate's name, `_` and a word),
    with their objects: ones the gate never replaces (its clock, its counts)."""


class Special(NamedTuple):
    """A node's `transform` as statements for records of one key tuple (see
    `Transform.specialized`). A statement `bail` (alone on its line) hands the record over to
    the general path: in `made`, with `data` rebound to the record to pass on; in `observed`,
    before any state changed."""

    made: list[str]
    """Rebind `data` to the record to pass on (the record never becomes None)."""
    observed: list[str] | None
    """Do what `observe` does (None: `observe` is called)."""
    names: dict[str, object]
    """The names the statements use besides builtins and `data`: the node's name, or that
    name, `_` and a word."""
    keys: tuple[Any, ...] | None
    """The key tuple of the record `made` passes on (None: it depends on the values)."""
    removes_none: bool = False
    """`made` only takes out the keys whose value is None."""
    none_as_absent: bool = False
    """`observed` does to a record of the key tuple holding None values what it does to the
    same record without those keys (so the steps above that only take them out are left out
    for a record a gate drops)."""


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
    into: Callable[[Record], None] | None = None,
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

    `into` is the function made by an earlier `fuse` that the caller `rebind`s to the new one
    (None: the caller uses the new one). A run compiled per key tuple (see
    `Transform.specialized`) rebinds it once more, under `lock`, when the first key tuple's
    run is compiled: that run then sits in the function itself, with no call to it (unless
    the function was rebound to another meanwhile).
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
    inlined = _inlined_write(node._children[0]) if len(node._children) == 1 else None
    if inlined is None:
        end = ["end(data)"]
    else:
        end, names = inlined
        namespace.update(names)
    if lock is not None:
        namespace["acquire"], namespace["release"] = lock.acquire, lock.release
    steps = [step for step in run if not step.passes_all()]
    if not _specializes(steps):
        return Fused(_guarded(_Body(steps, namespace, end).lines(0, None), namespace), run)
    specializing = _Specializing(steps, namespace, end)
    write = _guarded(specializing.dispatch(), namespace)
    specializing.target = write if into is None else into
    specializing.general = write.__code__
    return Fused(write, run)


def _guarded(body: list[str], namespace: dict[str, object]) -> Callable[[Record], None]:
    """`write(data)`: the statements `body` behind the guard `fuse` puts in `namespace`: the
    record's `check`, then `body` holding the lock (`acquire`, `release`)."""
    guarded = body
    if "acquire" in namespace:  # acquire/release: cheaper than `with` on a lock
        indented = [f"    {line}" for line in body]
        guarded = ["acquire()", "try:", *indented, "finally:", "    release()"]
    if namespace["check"] is not None:
        guarded = ["if type(data) is not dict:", "    check(data)", *guarded]
    source = ["def write(data):", *(f"    {line}" for line in guarded)]
    exec("\n".join(source), namespace)  # one straight-line function: no loop, no emit
    write: Callable[[Record], None] = namespace["write"]  # type: ignore[assignment]
    return write


SPECIALIZED_LIMIT = 64
"""Key tuples whose fused run is compiled; the ones met after that take the general path
(so a stream cycling through more key tuples never compiles again and again)."""


def _specializes(steps: list[Transform]) -> bool:
    """Whether a step with state has statements for a key tuple (see `Transform.specialized`)
    where the run's key tuple is still known: after pure steps that have some too, and gates,
    which pass a record as it is."""
    for step in steps:
        if _owns(step, "specialized"):
            if not step.pure:
                return True
        elif not (_owns(step, "gate") and step.gate("g") is not None):
            return False
    return False


class _Specializing:
    """The statements that cross the run with the function compiled for the record's key
    tuple (see `Transform.specialized`), compiled the second time a key tuple arrives; until
    then, and for the key tuples met once `SPECIALIZED_LIMIT` are compiled, the run's general
    function. The first key tuple compiled is written into the fused function itself."""

    def __init__(
        self, steps: list[Transform], namespace: dict[str, object], end: list[str]
    ) -> None:
        self.steps, self.namespace, self.end = steps, namespace, end
        self.generic = _compiled(_Body(steps, dict(namespace), end), None)
        self.cache: dict[tuple[Any, ...], Callable[[Record], None]] = {}
        self.seen: set[tuple[Any, ...]] = set()
        self.last: list[Any] = [None, self.generic]  # the last key list and its function
        self.target: Callable[[Record], None] | None = None  # see fuse's `into`
        self.general: CodeType | None = None  # the code of the function fuse made
        namespace["last"], namespace["special"] = self.last, self.special

    def dispatch(self) -> list[str]:
        """The fused function's body: a call of the function for the record's key tuple."""
        return ["arrived = [*data]", *_CALLED]  # a list: made and compared faster than a tuple

    def special(self, arrived: list[Any]) -> Callable[[Record], None]:
        """The function for records whose keys are `arrived` (see the class)."""
        keys = tuple(arrived)
        cache = self.cache
        run = cache.get(keys)
        if run is None:
            if len(cache) >= SPECIALIZED_LIMIT:
                run = self.generic
            elif keys not in self.seen:  # a key tuple met once may never come back
                if len(self.seen) >= SPECIALIZED_LIMIT * 16:
                    self.seen.clear()
                self.seen.add(keys)
                return self.generic
            else:
                body = _Body(self.steps, dict(self.namespace), self.end)
                run = cache[keys] = _compiled(body, keys)
                if len(cache) == 1:
                    self._write_in(keys)
        self.last[0], self.last[1] = arrived, run
        return run

    def _write_in(self, keys: tuple[Any, ...]) -> None:
        """Rebinds the fused function to one with the run for `keys` written in it, unless
        it was rebound meanwhile (the graph changed, or it was closed)."""
        target = self.target
        if target is None or getattr(target, "__code__", None) is not self.general:
            return
        namespace = dict(self.namespace)
        body = _Body(self.steps, namespace, self.end).lines(0, keys)
        namespace["first"] = list(keys)
        dispatch = [
            "arrived = [*data]",
            "if arrived == first:",
            *(f"    {line}" for line in body),
            f"el{_CALLED[0]}",
            *_CALLED[1:],
        ]
        rebind(target, _guarded(dispatch, namespace))


_CALLED = ["if arrived == last[0]:", "    last[1](data)", "else:", "    special(arrived)(data)"]
"""A call of the function for the key list `arrived` (see `_Specializing.special`)."""


def _compiled(body: _Body, keys: tuple[Any, ...] | None) -> Callable[[Record], None]:
    """The run as a function of one record whose key tuple is `keys` (any, if None)."""
    source = ["def run(data):", *(f"    {line}" for line in body.lines(0, keys))]
    exec("\n".join(source), body.namespace)
    run: Callable[[Record], None] = body.namespace["run"]  # type: ignore[assignment]
    return run


def _continued(lines: list[str], continuation: list[str]) -> list[str]:
    """`lines` with each `bail` statement (see `Special`) replaced by `continuation`, then
    `return`, at its indentation."""
    out: list[str] = []
    for line in lines:
        if line.strip() != "bail":
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out += [f"{indent}{statement}" for statement in [*continuation, "return"]]
    return out


class _Body:
    """The statements of a fused run: each step's `transform` (its statements, or a call,
    or its statements for a known key tuple), with each gate's decision taken before the
    steps above it that do not drop records."""

    def __init__(self, steps: list[Transform], namespace: dict[str, object], end: list[str]
                 ) -> None:
        self.steps = steps
        self.namespace = namespace
        self.end = end

    def lines(self, start: int, keys: tuple[Any, ...] | None) -> list[str]:
        """Statements for `steps[start:]`, then the end, for records reaching `steps[start]`
        with the key tuple `keys` (None: any)."""
        steps = self.steps
        for index in range(start, len(steps)):
            gate = steps[index].gate(f"g{index}") if _owns(steps[index], "gate") else None
            if gate is None:
                continue
            self.namespace[f"g{index}"] = steps[index]
            self.namespace.update(gate.names or {})
            first = index  # the steps that do not drop records, just above the gate
            while first > start and not steps[first - 1].drops:
                first -= 1
            head, keys = self.made(start, first, keys, partial(self.lines, first, None))
            made, known = self.made(first, index, keys, partial(self.passed_on, gate, index))
            passed = [*made, *gate.passed, *self.lines(index + 1, known)]
            dropped = [*self.observed(first, index, keys, gate.dropped), *gate.dropped]
            return [
                *head,
                *gate.decide,
                f"if {gate.condition}:",
                *(f"    {line}" for line in passed),
                "else:",
                *(f"    {line}" for line in dropped or ["pass"]),
            ]
        made, _ = self.made(start, len(steps), keys, lambda: self.end)
        return [*made, *self.end]

    def passed_on(self, gate: Gate, index: int) -> list[str]:
        """The general statements after the gate `steps[index]` passed a record."""
        return [*gate.passed, *self.lines(index + 1, None)]

    def made(
        self,
        start: int,
        stop: int,
        keys: tuple[Any, ...] | None,
        after: Callable[[], list[str]],
    ) -> tuple[list[str], tuple[Any, ...] | None]:
        """Statements making the record of `steps[start:stop]` in turn, for records arriving
        with the key tuple `keys`, and the key tuple they leave with (None: unknown); `after`
        gives the statements that follow (a specialized step that bails out continues with
        the general statements of the steps after it, then those)."""
        body: list[str] = []
        for index in range(start, stop):
            special = self.special(index, keys)
            if special is not None:
                rest, _ = self.made(index + 1, stop, None, after)
                body += _continued(special.made, [*rest, *after()])
                keys = special.keys
                continue
            keys = None
            step = self.steps[index]
            statements = getattr(step.transform, "statements", None)  # see transform_of
            if statements is not None:
                body += statements
                continue
            self.namespace[f"t{index}"] = step.transform
            body.append(f"data = t{index}(data)")
            if step.drops:
                body += ["if data is None:", "    return"]
        return body, keys

    def observed(
        self, start: int, stop: int, keys: tuple[Any, ...] | None, after: list[str]
    ) -> list[str]:
        """Statements doing to `steps[start:stop]` what their transforms do, for a record a
        gate below drops: the last with state observes it, the ones above make its record,
        pure ones below it are left out; `after` follows (see `made`)."""
        steps = self.steps
        last = next(
            (i for i in range(stop - 1, start - 1, -1)
             if not (steps[i].pure and _owns(steps[i], "pure"))),
            None,
        )
        if last is None:
            return []
        if _owns(steps[last], "observe"):
            self.namespace[f"o{last}"] = steps[last].observe
            observe = [f"o{last}(data)"]
        else:
            observe, _ = self.made(last, last + 1, None, list)
        if keys is not None and all(
            (above := self.special(index, keys)) is not None and above.removes_none
            for index in range(start, last)
        ):
            special = self.special(last, keys)
            if special is not None and special.observed is not None and special.none_as_absent:
                general, _ = self.made(start, last, None, list)
                return _continued(special.observed, [*general, *observe, *after])
        made, keys = self.made(start, last, keys, lambda: [*observe, *after])
        special = self.special(last, keys)
        if special is not None and special.observed is not None:
            return [*made, *_continued(special.observed, [*observe, *after])]
        return [*made, *observe]

    def special(self, index: int, keys: tuple[Any, ...] | None) -> Special | None:
        """`steps[index].specialized(keys)`, its names put in the namespace; None when the
        key tuple is unknown or the step has no statements for it."""
        step = self.steps[index]
        if keys is None or not _owns(step, "specialized"):
            return None
        special = step.specialized(keys, f"s{index}")
        if special is not None:
            self.namespace.update(special.names)
        return special


def _owns(step: Transform, attribute: str) -> bool:
    """Whether the class that gives `step` its `attribute` also gives the `transform` it
    uses: not when a subclass overrode `transform` alone, nor when the instance has one."""
    owner = next(kind for kind in type(step).__mro__ if attribute in vars(kind))
    transform = vars(owner).get("transform")
    return transform is not None and getattr(step.transform, "__func__", None) is transform


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
