"""NeptuneSink: records to a Neptune run (neptune 1.x or neptune-scale), offline by default.

Importing this module does not import a Neptune client: the client is imported when a sink
makes its run (`pip install 'rlpipe[neptune]'`), and a run the caller made is recognised by
the client module it comes from.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.flatten import flatten
from pipeline.core.node import Record
from pipeline.core.values import plain
from sinks import _neptune_runs
from sinks._neptune_clients import (
    INSTALL_HINT,
    Backend,
    Row,
    backend_for,
    make_classic_run,
    make_scale_run,
    neptune_path,
)
from sinks._neptune_series import KeySeries
from sinks._rich import NOT_FINITE, finite, rich
from sinks.remote import Names, RemoteSink
from sinks.steps import Step, StepKey, Steps
from sinks.summary import BEST_PREFIX, Best

__all__ = ["CONFIG_NAMESPACE", "INSTALL_HINT", "NeptuneSink", "NeptuneSinkWarning", "Row", "Step"]

CONFIG_NAMESPACE = "config"
"""Where `log_config` puts the run's configuration (at the run's root, whatever the prefix)."""
SUMMARY_NAMESPACE = "summary"
"""Where the best values (`best=`) go, on close: `summary/best/<path>`, at the run's root."""


HISTOGRAMS, FILES = "histogram", "file"
"""The kinds of series of arrays and of images and videos (a KeySeries state's kind)."""
_KINDS: dict[Any, str] = {True: "float", False: "string", HISTOGRAMS: "histogram", FILES: "file"}
NO_HISTOGRAMS = "{kind} runs have no histogram series: an array is not sent (aggregate it upstream)"


class NeptuneSinkWarning(UserWarning):
    """A value NeptuneSink could not send (warned once per key, and counted)."""


def config_fields(config: Mapping[Any, Any], int_bits: int = 32) -> dict[str, Any]:
    """`{a: {b: 1}}` -> `{"config/a/b": 1}`; values that are not a bool, int of `int_bits`
    bits (what the client's integer field holds: 32 for neptune 1.x, which leaves out a
    larger one, 64 for neptune-scale), finite float or str (None, lists, arrays, NaN, larger
    ints, objects, empty mappings) become their `str()`."""
    bound = 2 ** (int_bits - 1)
    return {
        path: _config_value(value, bound)
        for path, value in flatten(config, prefix=f"{CONFIG_NAMESPACE}/").items()
    }


def _config_value(value: Any, bound: int) -> Any:
    value = plain(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -bound <= value < bound else str(value)
    if isinstance(value, (bool, str)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return str(value)


class NeptuneSink(RemoteSink[Row]):
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
    nests it further. Paths are normalised as the 1.x client does, for both clients: empty
    parts are left out (`a//b`, `a/b/` and `/a/b` are all `a/b`; a key `1` is `1`). A series
    has one writer: the first key to reach its path, in this sink or in any sink on the same
    run (two sinks with one prefix). A later key landing on a taken path (`"a//b"` after
    `"a/b"`, `1` after `"1"`), or on no path at all (`""`, `"/"`), is not sent: warned once
    per key and counted in `.dropped`, never merged into another key's series. Values:

    - float, int, bool, numpy scalars and 0-d arrays, jax/torch scalars -> float series.
    - NaN and +-inf: sent to a neptune-scale run (it stores them); a neptune 1.x run cannot
      store them (its client skips them), so they are dropped and counted.
    - str and its subclasses (numpy.str_, a str enum: their text) -> string series; a lone
      surrogate is sent escaped (`\\ud800`), counted in `counts["changed"]`. A 1.x run keeps
      the first 1000 characters of a text (the rest counted in `counts["changed"]`); a
      neptune-scale run takes texts under 1 MiB (UTF-8): a longer one is dropped, counted.
    - None -> skipped (not a loss: there is no value).
    - arrays with elements (numpy, torch, jax; lists and tuples of numbers) -> histogram
      series on a neptune-scale run (`log_histograms`); a 1.x run has none: dropped, counted.
      `Image`, `Video` -> file series of PNG and animated GIF files (1.x:
      `run[path].append(File)`; scale: `log_files`), encoded on the push thread.
    - anything else (empty arrays, dicts, objects) -> not sent; warned once per key and
      counted in `.dropped` (use `Pipeline.flatten()` upstream).

    Steps: with `step_key`, the step of every value of a record is that record's value of
    `step_key` (0 is a step; integral values become ints), and `step_key` itself is logged
    as a series too; a record without a usable step value is logged at the last step seen
    (0 before any), with one warning. Without `step_key`, the step is the record's index in
    this sink (0, 1, 2, ...). Neptune needs the steps of each series to strictly increase
    (both clients document it; the 1.x client does not check it locally, so a bad step would
    only fail later, at upload): a value whose step is not above the last step sent for its
    series is dropped, warned once per key and counted, never raised; other series of the
    same record are unaffected. neptune-scale also needs 0 <= step < 1e12 (values outside
    are dropped the same way) and keeps steps to the microsecond: a step is compared as it
    will be stored, so `1.0000001` after `1.0` is not above it. Its paths must be under 1024
    bytes (UTF-8): a key with a longer one is refused like a taken path. (A run passed in
    that already holds a series is not read: its old steps are unknown to the sink.)

    Several step axes: `step_key` may map key patterns to step keys (`{"^eval/":
    "eval_round", "": "steps"}`); each key is then logged at its own axis' step (its series'
    steps increase per axis) (see `sinks.steps.Steps` and docs/sinks.md). `best={key: "max"
    | "min"}`: on `close()`, the best value of each key given is stored as the field
    `summary/best/<path>`.

    Configuration: `config=` or `log_config(mapping)` stores single values under `config/`
    (see `log_config`).

    Throughput (see RemoteSink): `write` only converts the values and holds the record; a
    background thread (started at the first write) pushes the held records to the client
    every `push_seconds`, and `flush()` / `close()` push at once (1.x: one `extend` per
    series; scale: one `log_metrics` per record). Neither client makes a network call there
    (1.x queues operations on disk and uploads from its own thread; neptune-scale commits to
    a local SQLite database and syncs from its own process). When more than `max_buffered`
    records are held, `write` has them pushed at once and waits for that. `flush()` also
    makes a 1.x client write its queue to disk. A sink still open at interpreter exit or on
    SIGTERM is closed before the client stops its run.

    Failures never reach the training loop: values the client refuses are counted in
    `.dropped` (by record key) and warned about once per key (NeptuneSinkWarning); a push
    that fails (an OSError from the client: its disk queue or database) is retried without
    what it already stored (see RemoteSink); any other error from a client call is its
    refusal of those values. `write` is meant to be called from one thread at
    a time (a Pipeline serialises its writes); pushing from the background thread is safe
    alongside it.
    """

    warning = NeptuneSinkWarning

    def __init__(
        self,
        run: Any = None,
        *,
        prefix: str = "",
        step_key: StepKey = None,
        mode: str | None = None,
        project: str | None = None,
        api_token: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        best: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, got {type(prefix).__name__}")
        self._use_steps(Steps(step_key, self._note))
        if config is not None and not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        if isinstance(tags, str):
            raise ValueError("tags must be a collection of strings, not one string")
        self.prefix = neptune_path(prefix)
        self.step_key = step_key
        self.data_dir: Path | None = None
        if run is None:
            self.data_dir = Path(
                data_dir or os.environ.get("NEPTUNE_DATA_DIRECTORY") or ".neptune"
            ).absolute()
            run = make_classic_run(self.data_dir, mode, project, api_token, name, tags)
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
        self._backend: Backend = backend_for(run)
        self.run: Any = run
        self.kind: str = self._backend.kind
        if tags is not None and not self.owns_run:
            self._backend.add_tags(list(tags))
        self._low = self._backend.min_step
        self._high = self._backend.max_step
        self._finite_only = not self._backend.accepts_non_finite
        """Types whose values `float()` converts exactly as `to_float` does."""
        if config is not None:
            self.log_config(config)
        self._users = _neptune_runs.join(run)
        self._keys = KeySeries(self.prefix, self, self._users, self._backend.path_refusal)
        self._best = Best(best, self._path_of) if best is not None else None
        self._max_text = self._backend.max_text
        self._on_grid = self._backend.kind == "neptune-scale"
        """Whether a step that is not an int is first put on the client's grid of steps."""
        self._rich = False
        """Whether a row held a histogram or a file (sent by the backend's `send_rich`)."""
        self._close_at_exit()

    @classmethod
    def scale(
        cls,
        *,
        prefix: str = "",
        step_key: StepKey = None,
        mode: str | None = None,
        project: str | None = None,
        api_token: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        best: Mapping[str, str] | None = None,
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
        run, directory = make_scale_run(mode, project, api_token, data_dir, name, run_id)
        try:
            sink = cls(run, prefix=prefix, step_key=step_key, config=config, tags=tags, best=best)
        except BaseException:
            run.close()
            raise
        sink.owns_run = True
        sink.data_dir = directory
        return sink

    # -- configuration --------------------------------------------------------------------

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Records the run's configuration once, as single values (not series) under
        `config/`: nested mappings become namespaces (`{"opt": {"lr": 0.1}}` ->
        `config/opt/lr`); bools, ints the client's integer field holds (32 bits in neptune
        1.x, 64 in neptune-scale), finite floats and strings are kept as they are
        (numpy/torch scalars first become Python ones); anything else (None, lists, arrays,
        NaN, an empty mapping) is stored as its `str()`. Logging again overwrites the fields
        given; a changed value is counted in `counts["overwritten"]` (`config/<name>`) and
        warned once. A field neptune 1.x refuses (its path holds a series of the records, or
        the field was a value and is now a mapping, or the reverse) is counted in
        `counts["dropped"]` under its path and warned once; the other fields are stored."""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        self._check_open()
        self._count_config_changes(config)
        fields = config_fields(config, 64 if self.kind == "neptune-scale" else 32)
        if fields:
            with self._client_lock:
                refused = self._backend.assign(fields)
            for path, why in refused.items():
                self._note(
                    "dropped",
                    f"config field {path!r} not stored: the client refused it ({why})",
                    key=path,
                    stacklevel=3,
                )

    # -- the hot path: a record to a row --------------------------------------------------

    def _row(self, data: Record) -> Row:
        step = self._steps.of(data)
        if self._on_grid and type(step) is not int and self._low <= step < self._high:
            step = self._backend.stored_step(step)  # two steps the client cannot tell apart
        metrics: dict[str, float] = {}
        strings: dict[str, str] = {}
        if self._low <= step < self._high:
            # The values Neptune will take: per series one kind (float or string) and
            # strictly increasing steps; finite floats where the client needs them.
            series = self._keys.by_key
            numeric = self._numeric_types
            finite_only = self._finite_only
            for key, value in data.items():
                kind = type(value)
                if kind is float:
                    target: dict[str, Any] = metrics
                elif kind is str:
                    if not value.isascii() or len(value) > self._max_text:
                        value = self._string(key, value)
                        if value is None:
                            continue
                    target = strings
                elif kind in numeric:
                    try:
                        value = float(value)
                    except OverflowError:  # an int beyond float range
                        value = self._overflow(key, value)
                    target = metrics
                elif value is None:
                    continue
                elif isinstance(value, str):  # numpy.str_, a str enum: its text, not str()
                    value = self._string(key, value)
                    if value is None:
                        continue
                    target = strings
                elif (held := rich(value)) is not None:  # an array, an image, a video
                    self._hold_rich(key, held, step, metrics)
                    continue
                else:
                    number = self._number(key, value)
                    if number is None:
                        continue
                    value = number
                    target = metrics
                if finite_only and target is metrics and not math.isfinite(value):
                    self._drop(key, f"{self.kind} runs cannot store NaN or infinity")
                    continue
                is_float = target is metrics
                state = series.get(key)
                if state is None:
                    state = self._keys.new(key, is_float)
                if state[1] is not is_float:
                    self._drop(
                        key,
                        state[2]
                        if state[0] is None
                        else f"the series is a {_KINDS[state[1]]} series; values of another "
                        "kind are not sent",
                    )
                    continue
                if step <= state[2]:
                    self._drop(
                        key,
                        f"step {step} is not above the series' last step {state[2]}; Neptune "
                        "needs strictly increasing steps per series",
                    )
                    continue
                state[2] = step
                target[state[0]] = value
        else:
            for key, value in data.items():
                if value is not None:
                    self._drop(
                        key,
                        f"step {step} is outside what {self.kind} runs take "
                        f"({self._low} <= step < {self._high})",
                    )
        return (step, time.time(), metrics, strings)

    def _hold_rich(self, key: Any, held: Any, step: Step, metrics: dict[str, Any]) -> None:
        """Holds an array (a histogram: neptune-scale only) or an image or video (a file
        series) in `metrics`, sent apart by the backend's `send_rich`; what the run cannot
        take is dropped and counted as in `_row`."""
        if type(held) is np.ndarray:
            if not self._backend.has_histograms:
                self._drop(key, NO_HISTOGRAMS.format(kind=self.kind), stacklevel=5)
                return
            if not finite(held):
                self._drop(key, NOT_FINITE, stacklevel=5)
                return
            kind: Any = HISTOGRAMS
        else:
            kind = FILES
        state = self._keys.by_key.get(key) if type(key) is str else None
        if state is None:
            state = self._keys.new(key, kind)
        if state[1] is not kind:
            why = state[2] if state[0] is None else (
                f"the series is a {_KINDS[state[1]]} series; values of another kind are not sent"
            )
            self._drop(key, why, stacklevel=5)
        elif step <= state[2]:
            why = (
                f"step {step} is not above the series' last step {state[2]}; Neptune needs "
                "strictly increasing steps per series"
            )
            self._drop(key, why, stacklevel=5)
        else:
            state[2] = step
            metrics[state[0]] = held
            self._rich = True

    def _string(self, key: Any, value: str) -> str | None:
        """A text as the client stores it (see `_text`); one longer than the client keeps is
        cut (1.x) or dropped (neptune-scale), counted and warned once per key."""
        value = self._text(key, value)
        if len(value) <= self._max_text:
            return value
        backend = self._backend
        why = backend.text_refusal(value)
        if why is None:
            return value
        if backend.cuts_text:
            self._note("changed", f"key {key!r}: {why}", key=key, stacklevel=4)
            return value[: backend.max_text]
        self._drop(key, why, stacklevel=5)
        return None

    # -- the client (RemoteSink's hooks) --------------------------------------------------

    def _send(self, rows: list[Row]) -> None:
        if self._rich:
            self._backend.send_rich(rows, self._refused)
        self._backend.send(rows, self._refused)

    def _refused(self, path: str, count: int, error: Exception) -> None:
        self._drop(
            self._keys.key_of(path),
            f"the Neptune client refused {path!r}: {error}",
            count,
        )

    def _flush_client(self) -> None:
        self._backend.flush()

    def _path_of(self, key: str) -> str:
        return neptune_path(self.prefix, key)

    def _best_names(self) -> tuple[Names | None, str]:
        return self._keys.names, f"{SUMMARY_NAMESPACE}/{BEST_PREFIX}"

    def _send_best(self, best: dict[str, tuple[float, Step]]) -> None:
        """Stores each best value as the single value `summary/best/<path>` (a series
        shows its last value itself)."""
        self._backend.assign(
            {f"{SUMMARY_NAMESPACE}/{BEST_PREFIX}{path}": value for path, (value, _) in best.items()}
        )

    def _close_client(self) -> None:
        if _neptune_runs.leave(self.run, self._users, made_it=self.owns_run):
            self._backend.stop()

    @property
    def records_written(self) -> int:
        """Records taken by `write` (each one a step when there is no `step_key`)."""
        return self._steps.taken

    def __repr__(self) -> str:
        return f"NeptuneSink({self.kind}, prefix={self.prefix!r}, step_key={self.step_key!r})"
