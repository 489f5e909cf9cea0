"""NeptuneSink: records to a Neptune run (neptune 1.x or neptune-scale), offline by default.

Importing this module does not import a Neptune client: the client is imported when a sink
makes its run (`pip install 'rlpipe[neptune]'`), and a run the caller made is recognised by
the client module it comes from.
"""

from __future__ import annotations

import atexit
import math
import numbers
import os
import sys
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from math import isfinite
from pathlib import Path
from typing import Any

from pipeline.core import lifecycle
from pipeline.core.node import Record
from pipeline.core.values import plain, to_float
from sinks.base import Sink

INSTALL_HINT = "pip install 'rlpipe[neptune]'"
CONFIG_NAMESPACE = "config"
"""Where `log_config` puts the run's configuration (at the run's root, whatever the prefix)."""

Step = int | float
Row = tuple[Step, float, dict[str, float], dict[str, str]]
"""One record as buffered: (step, unix timestamp, float series, string series), by path."""

_env_lock = threading.Lock()


class NeptuneSinkWarning(UserWarning):
    """A value NeptuneSink could not send (warned once per key and reason, and counted)."""


def _import_classic() -> Any:
    try:
        import neptune
    except ImportError as error:
        raise ImportError(
            f"NeptuneSink needs the Neptune client (the `neptune` package): {INSTALL_HINT}"
        ) from error
    return neptune


def _import_scale() -> Any:
    try:
        import neptune_scale
    except ImportError as error:
        raise ImportError(
            f"NeptuneSink needs the neptune-scale client for a neptune-scale run: {INSTALL_HINT}"
        ) from error
    return neptune_scale


class _ClassicRun:
    """Sends rows to a neptune 1.x run: one `extend` per series per push.

    The 1.x client skips NaN and +-inf in float series (with its own warning), so they are
    not sent; steps may be any number. `flush` asks the client to write its queue to disk
    (`wait(disk_only=True)`), never to wait for the network.
    """

    kind = "neptune"
    accepts_non_finite = False
    min_step: float = -math.inf
    max_step: float = math.inf

    def __init__(self, run: Any) -> None:
        self.run = run

    def send(self, rows: list[Row], failed: Any) -> None:
        columns: dict[str, tuple[list[Any], list[Step], list[float]]] = {}
        for step, stamp, metrics, strings in rows:
            for series in (metrics, strings):
                for path, value in series.items():
                    column = columns.get(path)
                    if column is None:
                        column = columns[path] = ([], [], [])
                    column[0].append(value)
                    column[1].append(step)
                    column[2].append(stamp)
        run = self.run
        for path, (values, steps, stamps) in columns.items():
            try:
                run[path].extend(values, steps=steps, timestamps=stamps)
            except Exception as error:  # a client refusal must not stop the other series
                failed(path, len(values), error)

    def flush(self) -> None:
        self.run.wait(disk_only=True)

    def assign(self, values: Mapping[str, Any]) -> None:
        for path, value in values.items():
            self.run[path] = value

    def add_tags(self, tags: list[str]) -> None:
        self.run["sys/tags"].add(tags)

    def stop(self) -> None:
        self.run.stop()


class _ScaleRun:
    """Sends rows to a neptune-scale run: one `log_metrics` (and `log_string_series` when a
    record has strings) per record. The client stores each call in its local SQLite database
    at once (an fsync per call), which is why the sink buffers and pushes from a thread.

    neptune-scale takes NaN and +-inf as float values and steps in [0, 1e12).
    """

    kind = "neptune-scale"
    accepts_non_finite = True
    min_step: float = 0.0
    max_step: float = 1e12

    def __init__(self, run: Any) -> None:
        self.run = run

    def send(self, rows: list[Row], failed: Any) -> None:
        run = self.run
        for step, stamp, metrics, strings in rows:
            when = datetime.fromtimestamp(stamp)
            for series, log in ((metrics, run.log_metrics), (strings, run.log_string_series)):
                if not series:
                    continue
                try:
                    log(series, step=step, timestamp=when)
                except Exception as error:  # a client refusal must not stop the other rows
                    for path in series:
                        failed(path, 1, error)

    def flush(self) -> None:
        """Nothing to do: every call is already committed to the local database."""

    def assign(self, values: Mapping[str, Any]) -> None:
        self.run.log_configs(dict(values))

    def add_tags(self, tags: list[str]) -> None:
        self.run.add_tags(tags)

    def stop(self) -> None:
        self.run.close()


_Backend = _ClassicRun | _ScaleRun


def _backend_for(run: Any) -> _Backend:
    """The adapter for a run made by either client, recognised without importing a client."""
    scale = sys.modules.get("neptune_scale")
    if scale is not None and isinstance(run, scale.Run):
        return _ScaleRun(run)
    classic = sys.modules.get("neptune")
    if classic is not None and isinstance(run, getattr(classic, "Run", ())):
        return _ClassicRun(run)
    raise TypeError(
        "run must be a neptune 1.x Run (neptune.init_run(...)) or a neptune_scale.Run, "
        f"got {type(run).__module__}.{type(run).__qualname__}"
    )


class _RunUsers:
    """How many open NeptuneSinks write into one run, and whether the sink that made it has
    closed (the run is then stopped when the last of them closes)."""

    def __init__(self) -> None:
        self.open = 0
        self.stop_when_unused = False


_run_users: dict[int, _RunUsers] = {}
"""By `id(run)`; an entry lives while a sink holding the run is open."""
_run_users_lock = threading.Lock()


def _flatten_config(config: Mapping[Any, Any], namespace: str) -> dict[str, Any]:
    """`{a: {b: 1}}` -> `{"<namespace>/a/b": 1}`; values that are not a bool, int, finite float
    or str (None, lists, arrays, NaN, objects) are stored as their `str()`."""
    flat: dict[str, Any] = {}

    def walk(mapping: Mapping[Any, Any], path: str) -> None:
        for key, value in mapping.items():
            where = f"{path}/{key}"
            if isinstance(value, Mapping):
                walk(value, where)
                continue
            value = plain(value)
            if isinstance(value, (bool, int, str)) or (
                isinstance(value, float) and math.isfinite(value)
            ):
                flat[where] = value
            else:
                flat[where] = str(value)

    walk(config, namespace)
    return flat


class NeptuneSink(Sink):
    """Sends each record to a Neptune run as series: numbers to float series, strings to
    string series, at the record's step.

    The run: pass one made by `neptune.init_run(...)` (neptune 1.x) or `neptune_scale.Run(...)`;
    the sink then never stops it. Without `run`, the sink makes a neptune 1.x run with
    `mode` (default: `$NEPTUNE_MODE`, else `"offline"`: no token, no network), `project`,
    `api_token` (default: `$NEPTUNE_PROJECT`, `$NEPTUNE_API_TOKEN`, read by the client),
    `name` and `tags`, with data under `data_dir` (default: `$NEPTUNE_DATA_DIRECTORY`, else
    `./.neptune`; neptune 1.x's `neptune sync --path P` reads only `P/.neptune`, so name the
    folder `.neptune`, e.g. `runs/x/.neptune`, to upload the run later), and no
    stdout/stderr/hardware monitoring, git or source-file capture; it stops that run on
    `close()` (or, while other NeptuneSinks given the same run are still open, when the
    last of them closes, so that none of them writes into a stopped run).
    `NeptuneSink.scale(...)` makes a neptune-scale run instead.
    The run is `.run`; `.kind` is `"neptune"` or `"neptune-scale"`.

    Keys: a record's key `k` lands at `prefix/k` (or `k` without a prefix); a `/` in a key
    nests it further. Values:

    - float, int, bool, numpy scalars and 0-d arrays, jax/torch scalars -> float series.
    - NaN and +-inf: sent to a neptune-scale run (it stores them); a neptune 1.x run cannot
      store them (its client skips them), so they are dropped and counted.
    - str -> string series. None -> skipped (not a loss: there is no value).
    - anything else (arrays with elements, lists, dicts, objects) -> not sent; warned once per
      key and counted in `.dropped` (use `Pipeline.flatten()` or `.aggregate()` upstream).

    Steps: with `step_key`, the step of every value of a record is that record's value of
    `step_key` (0 is a step; integral values become ints), and `step_key` itself is logged
    as a series too; a record without a usable step value is logged at the last step seen
    (0 before any), with one warning. Without `step_key`, the step is the record's index in
    this sink (0, 1, 2, ...). Neptune needs the steps of each series to strictly increase
    (both clients document it; the 1.x client does not check it locally, so a bad step would
    only fail later, at upload): a value whose step is not above the last step sent for its
    series is dropped, warned once per key and counted, never raised; other series of the
    same record are unaffected. neptune-scale also needs 0 <= step < 1e12; values outside
    are dropped the same way. (A run passed in that already holds a series is not read: its
    old steps are unknown to the sink.)

    Configuration: `config=` or `log_config(mapping)` stores single values under `config/`
    (see `log_config`).

    Throughput: `write` only converts the values and appends the record to a buffer; a
    background thread (started at the first write) pushes the buffer to the client every
    `push_seconds`, and `flush()` / `close()` push at once (1.x: one `extend` per series;
    scale: one `log_metrics` per record). Neither client makes a network call there (1.x
    queues operations on disk and uploads from its own thread; neptune-scale commits to a
    local SQLite database and syncs from its own process), so `write` never blocks on the
    network; when more than `max_buffered` records wait, `write` pushes itself.
    `flush()` also makes a 1.x client write its queue to disk. Buffered records are pushed at
    interpreter exit, before the client stops its run.

    Failures never reach the training loop: values the client refuses are counted in
    `.dropped` (by record key) and warned about once per key and reason (NeptuneSinkWarning).
    `write` is meant to be called from one thread at a time (a Pipeline serialises its
    writes); pushing from the background thread is safe alongside it.
    """

    push_seconds: float = 1.0
    """How often the background thread pushes buffered records to the client."""
    max_buffered: int = 100_000
    """Records held before `write` pushes by itself (back-pressure on a slow client)."""

    def __init__(
        self,
        run: Any = None,
        *,
        prefix: str = "",
        step_key: str | None = None,
        mode: str | None = None,
        project: str | None = None,
        api_token: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, got {type(prefix).__name__}")
        if step_key is not None and not isinstance(step_key, str):
            raise ValueError(f"step_key must be a string or None, got {type(step_key).__name__}")
        if config is not None and not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        if isinstance(tags, str):
            raise ValueError("tags must be a collection of strings, not one string")
        self.prefix = prefix.strip("/")
        self.step_key = step_key
        self.data_dir: Path | None = None
        if run is None:
            self.data_dir = Path(
                data_dir or os.environ.get("NEPTUNE_DATA_DIRECTORY") or ".neptune"
            ).absolute()
            run = self._make_classic_run(mode, project, api_token, name, tags)
            self.owns_run = True
        else:
            given = {
                "mode": mode,
                "project": project,
                "api_token": api_token,
                "data_dir": data_dir,
                "name": name,
            }
            extra = sorted(key for key, value in given.items() if value is not None)
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} only apply when NeptuneSink makes its run; "
                    "set them on the run you pass instead"
                )
            self.owns_run = False
        self._backend: _Backend = _backend_for(run)
        self.run: Any = run
        self.kind: str = self._backend.kind
        if tags is not None and not self.owns_run:
            self._backend.add_tags(list(tags))
        self.dropped: Counter[str] = Counter()
        """Values not sent, by record key (unsupported type, step, or refused by the client)."""
        self.records_written = 0
        self._warned: set[tuple[str, str]] = set()
        self._keys: dict[str, str] = {}
        self._rows: deque[Row] = deque()
        self._last_step: Step = 0
        self._series: dict[str, list[Any]] = {}
        """Per record key: [its series path, True for a float series (False: string), the
        last step sent]."""
        self._low = self._backend.min_step
        self._high = self._backend.max_step
        self._finite_only = not self._backend.accepts_non_finite
        self._numeric_types: set[type] = {int, bool}
        """Types whose values `float()` converts exactly as `to_float` does."""
        self._push_lock = threading.Lock()
        self._account_lock = threading.Lock()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        # Both clients stop a run at exit from an atexit handler registered when the run was
        # made; pipelines still open then must be closed (and this sink pushed) before it.
        lifecycle.close_before_exit_handlers_so_far()
        atexit.register(self._push_at_exit)
        if config is not None:
            self.log_config(config)
        with _run_users_lock:
            self._users = _run_users.setdefault(id(run), _RunUsers())
            self._users.open += 1

    # -- making runs ----------------------------------------------------------------------

    def _make_classic_run(
        self,
        mode: str | None,
        project: str | None,
        api_token: str | None,
        name: str | None,
        tags: Iterable[str] | None,
    ) -> Any:
        neptune = _import_classic()
        assert self.data_dir is not None
        # The 1.x client reads its data folder from the environment when the run starts.
        with _env_lock:
            saved = os.environ.get("NEPTUNE_DATA_DIRECTORY")
            os.environ["NEPTUNE_DATA_DIRECTORY"] = str(self.data_dir)
            try:
                return neptune.init_run(
                    project=project,
                    api_token=api_token,
                    mode=mode or os.environ.get("NEPTUNE_MODE") or "offline",
                    name=name,
                    tags=list(tags) if tags is not None else None,
                    capture_stdout=False,
                    capture_stderr=False,
                    capture_hardware_metrics=False,
                    git_ref=False,
                    source_files=[],
                )
            finally:
                if saved is None:
                    del os.environ["NEPTUNE_DATA_DIRECTORY"]
                else:
                    os.environ["NEPTUNE_DATA_DIRECTORY"] = saved

    @classmethod
    def scale(
        cls,
        *,
        prefix: str = "",
        step_key: str | None = None,
        mode: str | None = None,
        project: str | None = None,
        api_token: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        run_id: str | None = None,
    ) -> NeptuneSink:
        """A sink on a neptune-scale run that it makes (and closes on `close()`).

        `mode`: `$NEPTUNE_MODE`, else `"offline"` (neptune-scale knows "async", "offline" and
        "disabled"). `project`: `$NEPTUNE_PROJECT`, else (offline only) `"rlpipe/offline"`;
        name the real project if you will `neptune sync` the run later. `data_dir`: where the
        run's SQLite database goes; default `$NEPTUNE_LOG_DIRECTORY`, then
        `$NEPTUNE_DATA_DIRECTORY`, else `./.neptune`. `name` is the run's experiment name.
        No console capture and no source tracking are started.
        """
        neptune_scale = _import_scale()
        mode = mode or os.environ.get("NEPTUNE_MODE") or "offline"
        if mode not in ("async", "offline", "disabled"):
            raise ValueError(
                f"mode must be 'async', 'offline' or 'disabled' for neptune-scale, got {mode!r}"
            )
        project = project or os.environ.get("NEPTUNE_PROJECT")
        if project is None and mode != "async":
            project = "rlpipe/offline"
        directory = Path(
            data_dir
            or os.environ.get("NEPTUNE_LOG_DIRECTORY")
            or os.environ.get("NEPTUNE_DATA_DIRECTORY")
            or ".neptune"
        ).absolute()
        run = neptune_scale.Run(
            run_id=run_id,
            project=project,
            api_token=api_token,
            mode=mode,
            experiment_name=name,
            log_directory=directory,
            enable_console_log_capture=False,
            source_tracking_config=None,
        )
        try:
            sink = cls(run, prefix=prefix, step_key=step_key, config=config, tags=tags)
        except BaseException:
            run.close()
            raise
        sink.owns_run = True
        sink.data_dir = directory
        return sink

    @property
    def pending(self) -> int:
        """Records written but not yet pushed to the client."""
        return len(self._rows)

    # -- configuration --------------------------------------------------------------------

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Records the run's configuration once, as single values (not series) under
        `config/`: nested mappings become namespaces (`{"opt": {"lr": 0.1}}` ->
        `config/opt/lr`); bools, ints, finite floats and strings are kept as they are
        (numpy/torch scalars first become Python ones); anything else (None, lists, arrays,
        NaN) is stored as its `str()`. Logging again overwrites the fields given."""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        self._check_open()
        flat = _flatten_config(config, CONFIG_NAMESPACE)
        if flat:
            with self._push_lock:
                self._backend.assign(flat)

    # -- the hot path ---------------------------------------------------------------------

    def write(self, data: Record) -> None:
        """Converts the record's values and buffers them; never calls the client (unless
        more than `max_buffered` records wait)."""
        if self.closed:
            self._check_open()
        step = self.records_written if self.step_key is None else self._step_of(data)
        metrics: dict[str, float] = {}
        strings: dict[str, str] = {}
        if self._low <= step < self._high:
            # The values Neptune will take: per series one kind (float or string) and
            # strictly increasing steps; finite floats where the client needs them.
            series = self._series
            numeric = self._numeric_types
            finite_only = self._finite_only
            for key, value in data.items():
                kind = type(value)
                if kind is float:
                    target: dict[str, Any] = metrics
                elif kind is str:
                    target = strings
                elif kind in numeric:
                    try:
                        value = float(value)
                    except OverflowError:  # an int beyond float range
                        value = to_float(value)
                    target = metrics
                elif value is None:
                    continue
                else:
                    number = self._number(key, value)
                    if number is None:
                        continue
                    value = number
                    target = metrics
                if finite_only and target is metrics and not isfinite(value):
                    self._drop(key, "non-finite", f"{self.kind} runs cannot store NaN or infinity")
                    continue
                is_float = target is metrics
                state = series.get(key)
                if state is None:
                    state = series[key] = [self._path_of(key), is_float, step]
                elif state[1] is not is_float:
                    self._drop(
                        key,
                        "kind",
                        f"the series is a {'float' if state[1] else 'string'} series; "
                        "values of the other kind are not sent",
                    )
                    continue
                elif step <= state[2]:
                    self._drop(
                        key,
                        "step order",
                        f"step {step} is not above the series' last step {state[2]}; Neptune "
                        "needs strictly increasing steps per series",
                    )
                    continue
                else:
                    state[2] = step
                target[state[0]] = value
        else:
            for key, value in data.items():
                if value is not None:
                    self._drop(
                        str(key),
                        "step range",
                        f"step {step} is outside what {self.kind} runs take "
                        f"({self._low} <= step < {self._high})",
                    )
        self._rows.append((step, time.time(), metrics, strings))
        self.records_written += 1
        if self._worker is None:
            self._start_worker()
        if len(self._rows) > self.max_buffered:
            self._push_quietly()

    def _number(self, key: str, value: Any) -> float | None:
        """A value of a type not seen before (or not cached) as a float, or None (dropped,
        counted, warned). Real-number scalar types (numpy's) are remembered so that their
        next values take the fast path; arrays and tensors are not (their shape varies)."""
        number = to_float(value)
        if number is None:
            self._drop(
                key,
                "type",
                f"a {type(value).__name__} is not a number or a string; its values are not "
                "sent (flatten or aggregate it upstream)",
                stacklevel=5,
            )
        elif isinstance(value, numbers.Real):
            self._numeric_types.add(type(value))
        return number

    def _step_of(self, data: Record) -> Step:
        step_key = self.step_key
        assert step_key is not None
        raw = data.get(step_key)
        if type(raw) is int:
            self._last_step = raw
            return raw
        number = to_float(raw) if raw is not None else None
        if number is None or not math.isfinite(number):
            self._warn_once(
                step_key,
                "missing step",
                f"records without a numeric {step_key!r} are logged at the last step seen",
            )
            return self._last_step
        step: Step = int(number) if number.is_integer() and abs(number) < 2**53 else number
        self._last_step = step
        return step

    def _path_of(self, key: Any) -> str:
        name = str(key)
        path = f"{self.prefix}/{name}" if self.prefix else name
        self._keys[path] = name
        return path

    # -- pushing to the client ------------------------------------------------------------

    def _push(self) -> None:
        """Sends every buffered record to the client, in order (one pusher at a time)."""
        with self._push_lock:
            rows = self._rows
            if not rows:
                return
            popleft = rows.popleft
            batch = [popleft() for _ in range(len(rows))]
            self._backend.send(batch, self._refused)

    def _refused(self, path: str, count: int, error: Exception) -> None:
        self._drop(
            self._keys.get(path, path),
            f"client:{type(error).__name__}",
            f"the Neptune client refused {path!r}: {error}",
            count,
        )

    def _push_quietly(self) -> None:
        """Pushes; an unexpected failure is warned about instead of reaching the caller."""
        try:
            self._push()
        except Exception as error:
            self._warn_once("", f"push:{type(error).__name__}", f"pushing failed: {error!r}")

    def _start_worker(self) -> None:
        worker = threading.Thread(target=self._work, name="rlpipe-neptune-push", daemon=True)
        self._worker = worker
        worker.start()

    def _work(self) -> None:
        while not self._stopping.wait(self.push_seconds):
            self._push_quietly()

    def _stop_worker(self) -> None:
        self._stopping.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    def _push_at_exit(self) -> None:
        if self.closed:
            return
        self._stop_worker()
        self._push_quietly()
        try:
            self._backend.flush()
        except Exception as error:
            self._warn_once("", "exit", f"saving the run at exit failed: {error!r}")

    # -- the other calls ------------------------------------------------------------------

    def on_flush(self) -> None:
        self._push()
        self._backend.flush()

    def on_close(self) -> None:
        atexit.unregister(self._push_at_exit)
        self._stop_worker()
        try:
            self._push()
        finally:
            if self._release_run():
                self._backend.stop()

    def _release_run(self) -> bool:
        """Counts this sink out of its run's users; True when the run is to be stopped now:
        its maker has closed and no other sink on it is open."""
        with _run_users_lock:
            users = self._users
            users.open -= 1
            if self.owns_run:
                users.stop_when_unused = True
            if users.open > 0:
                return False
            if _run_users.get(id(self.run)) is users:
                del _run_users[id(self.run)]
            return users.stop_when_unused

    # -- accounting -----------------------------------------------------------------------

    def _drop(self, key: str, reason: str, why: str, count: int = 1, stacklevel: int = 4) -> None:
        with self._account_lock:
            self.dropped[key] += count
        self._warn_once(key, reason, why, stacklevel)

    def _warn_once(self, key: str, reason: str, why: str, stacklevel: int = 4) -> None:
        """Warns once per (key, reason); `stacklevel` 4 names the caller of `write` when
        called from a method that `write` calls."""
        with self._account_lock:
            if (key, reason) in self._warned:
                return
            self._warned.add((key, reason))
        where = f" for key {key!r}" if key else ""
        warnings.warn(
            f"NeptuneSink{where}: {why} (warned once{where})",
            NeptuneSinkWarning,
            stacklevel=stacklevel,
        )

    def __repr__(self) -> str:
        return f"NeptuneSink({self.kind}, prefix={self.prefix!r}, step_key={self.step_key!r})"
