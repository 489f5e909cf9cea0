"""RemoteSink: the base of sinks that send records to a tracking service's client."""

from __future__ import annotations

import math
import numbers
import signal
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any, Generic, TypeVar

from pipeline.core import lifecycle
from pipeline.core.config import merge_config
from pipeline.core.isolation import StoreError
from pipeline.core.node import Record
from pipeline.core.values import shown, text, to_float
from sinks.base import Sink
from sinks.steps import Step, Steps
from sinks.summary import BEST_PREFIX, Best

RowT = TypeVar("RowT")
"""What a subclass holds per record: whatever its `_send` takes."""


_NO_KEY = object()
"""`_note`'s key when a count is of no key (a record key may be None)."""


class RemoteSink(Sink, Generic[RowT]):
    """A sink whose client (Neptune, MLflow, W&B, TensorBoard, ...) is called from a background
    thread, never from `write`, so a slow or failing service never slows or breaks the loop.

    Guarantees:

    - `write(record)` turns the record into a row (`_row`, on the caller's thread) and holds
      it; it never calls the client. A background thread, started by the first write, pushes
      the held rows every `push_seconds`, and at once when more than `max_buffered` are held.
    - A push is all or retry: the held rows go to `_send` as one list, in order. If `_send`
      raises, all of them are held again, ahead of the rows written since, and sent again by
      the next push (the thread retries after `push_seconds`, doubling up to
      `max_retry_seconds`; `flush()` retries at once): nothing lost, nothing sent twice. The
      failure is counted in `counts["errors"]` and warned once per error type. Ctrl-C or
      SIGTERM never cut a push in two: on the main thread (the only one Python interrupts),
      SIGINT and SIGTERM that arrive during a push are handled once it is over. A push that
      raises KeyboardInterrupt or SystemExit all the same holds its rows again, uncounted,
      for the close that follows (at exit, if nothing else closes the sink).
    - At most `max_buffered` rows are held. Beyond that, while the client takes rows, `write`
      waits for the thread to take them (a slow client slows the caller; nothing is lost);
      while the client is failing, the oldest rows are dropped, counted in `counts["lost"]`
      and warned once.
    - `flush()` pushes every held row, then calls `_flush_client()`; if the push fails it
      raises StoreError and the rows stay held.
    - `close()` flushes, stops the thread, pushes what is left and calls `_close_client()`
      once, even when that push failed (the rows it could not push are then counted in
      `counts["lost"]` and reported by a StoreError).
    - Once the subclass called `_close_at_exit()`, the sink is closed at interpreter exit and
      on SIGTERM if it is still open then (pipeline.core.lifecycle), before the exit handlers
      registered until then, such as a client's own handler that stops its run.

    For subclass authors:

    - `_row(record) -> row` (required): the row to hold for a record, taken on the caller's
      thread. Convert and copy here (values may be mutated after `write` returns); never call
      the client. Count and warn about what is not kept with `self._note(...)`.
    - `_send(rows)` (required): send the rows, in order, from the push thread (or from
      `flush`/`close`). Send all or raise: a raise means none is sent and all are resent, so
      it must not leave part of them sent (or resending it must be harmless). A value the
      client refuses for good is the subclass's to count (`self._note("dropped", ...)`), not a
      reason to raise.
    - `_flush_client()` (optional): make the client persist what it was sent (`flush()`).
    - `_close_client()` (optional): release the client; called once, by `close()`.
    - Make the client in `__init__` (after `super().__init__()`), then call
      `self._close_at_exit()` last.
    - Call the client from other methods (e.g. to log a configuration) only inside
      `with self._client_lock:`; the hooks above are already called inside it.
    - Set `warning` to the sink's warning category.
    """

    push_seconds: float = 1.0
    """How often the background thread pushes the held rows to the client."""
    max_buffered: int = 100_000
    """Rows held before `write` has them pushed at once (and waits, or drops while failing)."""
    max_retry_seconds: float = 60.0
    """The longest wait between two tries of a failing push by the background thread."""
    warning: type[Warning] = RuntimeWarning
    """The category of the warnings this sink gives."""

    def __init__(self) -> None:
        super().__init__()
        self._held: deque[RowT] = deque()
        self._room = threading.Condition(threading.Lock())
        """Guards taking rows out of `_held`; notified when the thread took them."""
        self._client_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._failing = False
        self._numeric_types: set[type] = {int, bool}
        """Types whose values `_row` may turn into floats with `float()` (see `_number`)."""
        self._config_given: dict[str, Any] = {}
        """The configuration logged so far, flat (see `_count_config_changes`)."""

    # -- the hooks ------------------------------------------------------------------------

    def _row(self, data: Record) -> RowT:
        """The row to hold for `data` (see the class docstring)."""
        raise NotImplementedError

    def _send(self, rows: list[RowT]) -> None:
        """Sends `rows` to the client, all or none (see the class docstring)."""
        raise NotImplementedError

    def _flush_client(self) -> None:
        """Makes the client persist what it was sent. Default: nothing to do."""

    def _close_client(self) -> None:
        """Releases the client. Default: nothing to release."""

    _best: Best | None = None
    """The best values of the keys asked by `best=` (see `sinks.summary.Best`)."""

    def _send_best(self, best: dict[str, tuple[float, Step]]) -> None:
        """Stores the best values (name -> (value, step)) in the run's summary, on
        `close()`, before `_close_client`. Default: nothing (no `best=`)."""

    # -- checkpoints --------------------------------------------------------------------

    _steps: Steps
    """The steps of the records this sink takes (subclasses make it in `__init__`)."""

    def node_state(self) -> dict[str, Any]:
        """Adds the rows held (not yet sent) and where the steps are. What was sent is in the
        service's run; a restored sink sends the held rows and goes on counting steps from
        the checkpoint, into the run it was given or made (see each sink for how to continue
        the same run)."""
        with self._client_lock:  # a push in progress holds rows that are in neither place
            with self._counts_lock:
                state = super().node_state()
            with self._room:
                state["held"] = list(self._held)
            state["steps"] = self._steps.state()
            if self._best is not None:
                state["best"] = self._best.state()
            self._add_state(state)
        return state

    def _add_state(self, state: dict[str, Any]) -> None:
        """Adds what a subclass needs to go on after a restart (called while no push runs).
        Default: nothing."""

    def fresh(self) -> bool:
        return not self._steps.taken

    def load_node_state(self, state: dict[str, Any]) -> None:
        super().load_node_state(state)
        self._steps.load(state["steps"])
        if self._best is not None:
            self._best.load(state.get("best", {}))
        with self._room:
            self._held.extend(state["held"])
        if self._held and self._worker is None:
            self._start_worker()

    # -- values -------------------------------------------------------------------------

    not_a_number = (
        "{kind} is not a number or a string; its values are not sent (flatten or aggregate "
        "it upstream)"
    )
    """Why a value `_number` cannot take is dropped ({kind}: `text` or `a <type name>`)."""

    def _number(self, key: Any, value: Any) -> float | None:
        """A value of a type not seen before (or not cached) as a float, or None (dropped,
        counted, warned once per key). Real-number scalar types (numpy's) join
        `_numeric_types`, so their next values take `_row`'s fast path; arrays and tensors
        do not (their shape varies)."""
        number = to_float(value)
        if number is None:
            kind = "text" if isinstance(value, str) else f"a {type(value).__name__}"
            self._drop(key, self.not_a_number.format(kind=kind), stacklevel=5)
        elif isinstance(value, numbers.Real):
            self._numeric_types.add(type(value))
        return number

    def _drop(self, key: Any, why: str, count: int = 1, stacklevel: int = 4) -> None:
        """Counts `count` values of `key` not sent, in `counts["dropped"]` (per key in
        `dropped`); warns once per key. `stacklevel` 4 names the caller of `write` when
        called from `_row`."""
        self._note("dropped", f"key {text(key)!r}: {why}", key=key, n=count, stacklevel=stacklevel)

    def _text(self, key: Any, value: str) -> str:
        """A string value as a tool stores it: a str subclass (numpy.str_, a str enum) as its
        text; lone surrogates, which have no UTF-8 form, escaped as `\\ud800`, counted in
        `counts["changed"]` and warned once per key. The hot path calls it only for str
        subclasses and strings that are not ASCII."""
        if type(value) is not str:
            value = str.__str__(value)
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self._note(
                "changed",
                f"key {text(key)!r}: a text holding a lone surrogate (no UTF-8 form) is stored "
                "with it escaped ('\\udXXX')",
                key=key,
                stacklevel=4,
            )
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value

    losses: tuple[str, ...] = ("dropped", "changed", "lost", "errors")
    """The reasons in `counts` that `storage_failures` reports."""

    @property
    def storage_failures(self) -> str | None:
        """One line naming this sink and what it did not store as written (values dropped
        or changed, rows lost: see `counts.by_key`) and the pushes that failed; None while
        there is none. `Pipeline.failures()` asks each sink for it, as for the file sinks'."""
        counts = self.counts
        parts = [f"{counts[reason]} {reason}" for reason in self.losses if counts[reason]]
        if not parts:
            return None
        return f"{self!r}: {', '.join(parts)} (per key: .counts.by_key)"

    @property
    def dropped(self) -> Counter[str]:
        """Values not sent, per key: `counts.by_key["dropped"]`."""
        return Counter(self.counts.by_key.get("dropped", {}))

    def _count_config_changes(self, config: Mapping[Any, Any]) -> None:
        """Counts (`merge_config`'s rule) the values of `config` that change a value logged
        before, for a sink whose tool overwrites them: `counts["overwritten"]` under
        `config/<name>`, warned once per name."""
        with self._counts_lock:
            merge_config(self._config_given, config, self.counts, stacklevel=6)

    # -- the hot path ---------------------------------------------------------------------

    def write(self, data: Record) -> None:
        """Holds the record as a row; never calls the client."""
        if self.closed:
            self._check_open()
        held = self._held
        if self._several_axes:  # a row per axis (see `Steps.split`)
            steps = self._steps
            try:
                for step, part in steps.split(data):
                    steps.given = step
                    held.append(self._row(part))
            finally:
                steps.given = None
        else:
            held.append(self._row(data))
        if self._worker is None:
            self._start_worker()
        if len(held) > self.max_buffered:
            self._make_room()

    _several_axes = False
    """Whether `step_key` is a mapping (several step axes; set by `_use_steps`)."""

    def _use_steps(self, steps: Steps) -> None:
        """Takes `steps` as this sink's steps (subclasses call it in `__init__`)."""
        self._steps = steps
        self._several_axes = steps.axes is not None

    @property
    def pending(self) -> int:
        """Rows written but not yet pushed to the client."""
        return len(self._held)

    overflow_limit = "float range"
    """What a finite number stored as +-inf is beyond (in `_overflow`'s note)."""

    def _overflow(self, key: Any, value: float | int) -> float:
        """Notes a finite value beyond `overflow_limit`; returns the +-inf it is stored as."""
        self._note(
            "overflow",
            f"key {text(key)!r}: {shown(value, 40)} is beyond {self.overflow_limit}; "
            "written as infinity",
            key=key,
            stacklevel=4,
        )
        return math.inf if value > 0 else -math.inf

    def _make_room(self) -> None:
        held, room = self._held, self._room
        with room:
            if not self._failing:  # while it fails, the thread retries at its own pace
                self._wake.set()
            while len(held) > self.max_buffered and not self._failing and self._pushing():
                room.wait(1.0)
            excess = len(held) - self.max_buffered
            for _ in range(excess):
                held.popleft()
        if excess > 0:
            self._lose(excess, stacklevel=4)

    def _lose(self, excess: int, stacklevel: int) -> None:
        self._note(
            "lost",
            f"the client is failing and {self.max_buffered} rows are held; the oldest are dropped",
            n=excess,
            stacklevel=stacklevel,
        )

    # -- pushing --------------------------------------------------------------------------

    def _push(self) -> None:
        """Sends every held row to the client, in order; if that fails or is interrupted
        (KeyboardInterrupt, SystemExit on SIGTERM), holds them again (ahead of newer rows)
        and raises."""
        with self._client_lock, _signals_held():
            held = self._held
            rows: list[RowT] = []
            try:
                with self._room:
                    rows = list(held)  # one call: an interruption lands before or after it
                    held.clear()
                    self._room.notify_all()
                if not rows:
                    return
                if self._best is not None:
                    self._best.take(rows)
                self._send(rows)
            except Exception as error:
                self._failing = True
                self._hold_again(rows)
                self._note(
                    "errors",
                    f"pushing to the client failed ({type(error).__name__}: {error}); the rows "
                    "are kept and retried",
                    key=type(error).__name__,
                    stacklevel=3,
                )
                raise
            except BaseException:  # interrupted, not failed: hold the rows for the close
                if rows and not (held and held[0] is rows[0]):  # they were taken out
                    self._hold_again(rows)
                raise
            self._failing = False

    def _hold_again(self, rows: list[RowT]) -> None:
        with self._room:
            held = self._held
            held.extendleft(reversed(rows))
            excess = len(held) - self.max_buffered
            for _ in range(excess):
                held.popleft()
            self._room.notify_all()
        if excess > 0:
            self._lose(excess, stacklevel=4)

    def _start_worker(self) -> None:
        name = f"rlpipe-push-{type(self).__name__}"
        worker = threading.Thread(target=self._work, name=name, daemon=True)
        self._worker = worker
        worker.start()

    def _work(self) -> None:
        retry_in = 0.0
        while True:
            self._wake.wait(retry_in or self.push_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._push()
            except Exception:  # counted and warned by _push; retried after a back-off
                retry_in = min(max(2 * retry_in, self.push_seconds), self.max_retry_seconds)
            else:
                retry_in = 0.0

    def _pushing(self) -> bool:
        worker = self._worker
        return worker is not None and worker.is_alive() and not self._stopping.is_set()

    def _stop_worker(self) -> None:
        self._stopping.set()
        self._wake.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()
        with self._room:
            self._room.notify_all()

    # -- the other calls ------------------------------------------------------------------

    def on_flush(self) -> None:
        try:
            self._push()
        except Exception as error:
            raise StoreError(
                f"{self!r} could not push its rows ({type(error).__name__}: {error}); "
                f"{self.pending} rows are kept and retried"
            ) from error
        with self._client_lock:
            self._flush_client()

    def on_close(self) -> None:
        lifecycle.forget(self)
        self._stop_worker()
        try:
            self._push()
        except Exception as error:
            with self._room:
                left = len(self._held)
                self._held.clear()
            with self._counts_lock:
                self.counts["lost"] += left
            raise StoreError(
                f"{self!r}: {left} rows could not be pushed before close; lost"
            ) from error
        finally:
            with self._client_lock:
                try:
                    if self._best is not None and self._best.values:
                        self._keep_callers_names(self._best.values)
                        if self._best.values:
                            self._send_best(self._best.values)
                finally:
                    self._close_client()

    def _best_names(self) -> tuple[Names | None, str]:
        """The names the caller's keys are stored under, and what `_send_best` puts before a
        name to store its best (Neptune overrides it: its bests are at the run's root)."""
        return getattr(self, "_names", None), BEST_PREFIX

    def _keep_callers_names(self, best: dict[str, tuple[float, Step]]) -> None:
        """Takes out of `best` each best whose stored name is already a key the caller
        wrote (a caller's own `best/loss` beside `best={"loss": "min"}`): that key keeps its
        values, and the best is not stored, counted in `counts["clashed"]` and warned."""
        names, prefix = self._best_names()
        if names is None:
            return
        for name in [name for name in best if names.taken(prefix + name)]:
            del best[name]
            self._note(
                "clashed",
                f"{prefix + name!r} is the name of a key this sink was given: that key keeps "
                f"its values and the best of {text(names.key_of(name))!r} is not stored "
                "(rename the key)",
                key=prefix + name,
                stacklevel=4,
            )

    def _close_at_exit(self) -> None:
        """Has this sink closed at interpreter exit and on SIGTERM if it is still open then,
        before every exit handler registered so far (a client's own handler, registered when
        its run was made, would stop the run first). Call it once the client exists."""
        lifecycle.track(self)
        lifecycle.close_before_exit_handlers_so_far()

    # -- accounting -----------------------------------------------------------------------

    def _note(
        self,
        reason: str,
        message: str,
        *,
        key: object = _NO_KEY,
        n: int = 1,
        stacklevel: int = 2,
    ) -> None:
        """`self.counts.note(...)` in this sink's `warning` category, safe to call from the
        caller's thread and the push thread at once; `stacklevel` as for `counts.note`, from
        the caller of this method. A key whose `str()` raises is counted under its `text`."""
        if key is _NO_KEY:
            key = None
        elif type(key) is not str:  # a key None too: counted and warned as the key 'None'
            key = text(key)
        with self._counts_lock:
            self.counts.note(
                reason, message, key=key, n=n, category=self.warning, stacklevel=stacklevel + 1
            )


_HELD_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)
)


@contextmanager
def _signals_held() -> Iterator[None]:
    """On the main thread, the only one whose Python code a signal interrupts: SIGINT and
    SIGTERM arriving inside the block are handled, by the handlers they had, when it ends;
    the same signal a second time is handled at once (a push that hangs can still be
    stopped). Only handlers set from Python are held: the default SIGTERM runs no code.
    Elsewhere, nothing to do."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved: dict[int, Any] = {}
    arrived: list[int] = []

    def restore() -> None:
        while saved:
            signum, handler = saved.popitem()
            signal.signal(signum, handler)

    def hold(signum: int, frame: FrameType | None) -> None:
        if signum not in arrived:
            arrived.append(signum)
            return
        handler = saved.get(signum)
        restore()
        arrived.clear()
        if callable(handler):
            handler(signum, frame)

    try:
        for signum in _HELD_SIGNALS:
            if callable(signal.getsignal(signum)):
                saved[signum] = signal.signal(signum, hold)
        yield
    finally:
        restore()
        for signum in arrived:
            signal.raise_signal(signum)


class Names:
    """The name a tracking tool stores each record key under, decided once per key, so that
    the hot path pays one dict lookup (`by_key.get(key)`) for a key it has seen.

    A name has one key: the first that reaches it. A later key with the same name (`1` after
    `"1"`, both named "1"; `np.str_("x")` after `"x"`) is refused: two keys under one name
    would merge (one value kept per step, or two streams of steps in one series). So is a key
    whose name has no UTF-8 form (a lone surrogate: no tool can encode it), and one whose
    name `check(name)` refuses (it returns why, or None). A refused key stays refused.

    `by_key` maps the string keys that have a name to it (other keys are kept apart by type:
    `1`, `1.0` and `True` are one dict key but three names). `new(key)` decides a key not
    found there: its name, or None (`why(key)` says why it is refused). A key whose `str()`
    raises is named by its `repr` (`pipeline.core.values.text`): its values are stored.
    """

    __slots__ = ("_check", "_keys", "_make", "_others", "_refused", "by_key", "checked")

    def __init__(
        self, make: Callable[[Any], str], check: Callable[[str], str | None] | None = None
    ) -> None:
        self._make = make
        self._check = check
        self.by_key: dict[str, str] = {}
        self._others: dict[tuple[type, Any], str] = {}
        self._refused: dict[Any, str] = {}
        """Why each refused key is refused, by `_token`."""
        self._keys: dict[str, Any] = {}
        """Name -> the key that has it (kept while the key is refused after the fact)."""
        self.checked = 0
        """Keys decided so far (each once)."""

    def new(self, key: Any) -> str | None:
        """The name of `key`, decided now if it is new; None if it is refused."""
        token = _token(key)
        if token in self._refused:
            return None
        known = self.by_key.get(key) if type(key) is str else self._others.get(token)
        if known is not None:
            return known
        self.checked += 1
        name = self._make(key)
        why: str | None = None
        if not name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                why = f"its name {name!r} holds a lone surrogate, which has no UTF-8 form"
        if why is None and self._check is not None:
            why = self._check(name)
        if why is None and name in self._keys:
            why = (
                f"it is stored as {name!r}, already written by key {shown(self._keys[name], 40)}; "
                "its values are not sent (two keys under one name would merge)"
            )
        if why is not None:
            self._refused[token] = why
            return None
        self._keys[name] = key
        if type(key) is str:
            self.by_key[key] = name
        else:
            self._others[token] = name
        return name

    def taken(self, name: str) -> bool:
        """Whether a key has (or had) `name`."""
        return name in self._keys

    def why(self, key: Any) -> str:
        """Why `key` is refused."""
        return self._refused.get(_token(key), "the tool refuses its name")

    def key_of(self, name: str) -> Any:
        """The record key whose name is `name` (`name` if none)."""
        return self._keys.get(name, name)

    def refuse(self, name: str, why: str) -> None:
        """Refuses, from now on, the key of `name` (the tool refused it after all); the name
        stays taken."""
        key = self._keys.get(name, name)
        token = _token(key)
        self._refused[token] = why
        if type(key) is str:
            self.by_key.pop(key, None)
        else:
            self._others.pop(token, None)


def _token(key: Any) -> Any:
    """What tells keys apart: the key if it is a str, else (its type, the key)."""
    return key if type(key) is str else (type(key), key)
