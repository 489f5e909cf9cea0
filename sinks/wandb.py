"""WandbSink: records to a Weights & Biases run, offline by default (`wandb sync` uploads it).

Importing this module does not import wandb: it is imported when a sink makes its run
(`pip install 'rlpipe[wandb]'`), and a run the caller made is recognised by the module its
class comes from.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.node import Record
from pipeline.core.values import jsonable, shown, text
from sinks import _neptune_runs
from sinks._neptune_runs import RunUsers
from sinks._rich import NOT_FINITE, finite, rich, wandb_value
from sinks.remote import Names, RemoteSink
from sinks.steps import Step, StepKey, Steps
from sinks.summary import BEST_PREFIX, Best

__all__ = ["INSTALL_HINT", "RESERVED", "Row", "WandbSink", "WandbSinkWarning"]

INSTALL_HINT = "pip install 'rlpipe[wandb]'"

MODES = ("offline", "online", "disabled", "shared")
"""The modes `wandb.init` takes."""

_INT64 = 2**63
"""W&B steps are int64."""
_REFUSALS = (ValueError, TypeError, UnicodeError, OverflowError)
"""What `run.log` raises for values it cannot encode (nothing of the call is logged then)."""
RESERVED = frozenset({"_step", "_runtime", "_timestamp"})
"""Names W&B fills in itself in every history row: a record's value under one is not sent."""

Row = tuple[Step, float, dict[str, Any]]
"""One record as held: (step, unix time of the write, values by logged name). Once its values
are in the run (or dropped), the dict is emptied, so a push retried after a failure skips it."""


class RunStep:
    """Where a W&B run is, as the sinks writing into it know it: the step of its open row
    (that of its next `log`) and the names logged at it."""

    __slots__ = ("logged", "step")

    def __init__(self, step: int) -> None:
        self.step = step
        self.logged: set[str] = set()

    def move_to(self, step: int) -> None:
        self.step = step
        self.logged = set()


_run_steps: weakref.WeakKeyDictionary[RunUsers, RunStep] = weakref.WeakKeyDictionary()
"""Per run (by its users, alive while a sink on it is open): its RunStep, shared by the sinks
that write into it."""
_log_lock = threading.Lock()
"""Held while a sink compares its rows with its run's step and logs them: sinks that share a
run (each pushing from its own thread) see each other's steps."""


class WandbSinkWarning(UserWarning):
    """A value WandbSink could not send (warned once per key, and counted)."""


def import_wandb() -> Any:
    """The wandb module, or an ImportError naming the extra."""
    try:
        import wandb
    except ImportError as error:
        raise ImportError(f"WandbSink needs the `wandb` package: {INSTALL_HINT}") from error
    return wandb


class WandbSink(RemoteSink[Row]):
    """Sends each record to a W&B run as one history row: numbers as floats, strings as
    strings, at the record's step.

    The run: pass one made by `wandb.init(...)` as `run`; the sink then never finishes it.
    Without `run`, the sink makes one with `wandb.init(project=..., mode=..., dir=...,
    name=..., tags=..., reinit="create_new")` (several runs, and several sinks, can live in one
    process; the run does not become `wandb.run`), without console capture, system metrics,
    system metadata, code, git or requirements capture, and finishes it on `close()` (or,
    while other WandbSinks given the same run are still open, when the last of them closes).
    `mode`: `$WANDB_MODE`, else `"offline"` (no account, no network). `dir`: `$WANDB_DIR`,
    else `./runs`; W&B keeps the run in `<dir>/wandb/offline-run-<time>-<id>/`, exposed as
    `.run_dir`, and `wandb sync <run_dir>` uploads it later. (W&B's own service also writes
    its debug logs under `$WANDB_CACHE_DIR`, by default `~/.cache/wandb`.) The run is `.run`.

    Keys: a record's key `k` is logged as `prefix/k` (or `k` without a prefix); W&B groups
    charts by the part before the first `/`. A name has one key (see `sinks.remote.Names`):
    a later key with a taken name (`1` after `"1"`), an empty name and a name with no UTF-8
    form are not sent, warned once per key and counted in `.dropped`. Values:

    - float, int, bool, numpy scalars and 0-d arrays, jax/torch scalars -> floats (NaN and
      +-inf included: W&B stores them; an int beyond float range becomes +-inf, warned once
      per key and counted in `counts["overflow"]`).
    - str and its subclasses (numpy.str_, a str enum: their text) -> strings (W&B keeps them
      in the run's history and summary; charts skip them); a lone surrogate in one is sent
      escaped (`\\ud800`), counted in `counts["changed"]`.
      None -> skipped (not a loss: there is no value).
    - arrays with elements (numpy, torch, jax; lists and tuples of numbers) ->
      `wandb.Histogram` (one holding NaN or infinity is dropped, counted); `Image` ->
      `wandb.Image`; `Video` -> `wandb.Video` of its animated GIF. They are made on the push
      thread (see `sinks._rich`), and W&B copies their files into the run's `files/media/`.
    - anything else (empty arrays, dicts, objects), and a value under a name W&B fills in
      itself (`_step`, `_runtime`, `_timestamp`) -> not sent; warned once per key and counted
      in `.dropped` (use `Pipeline.flatten()` upstream).

    Steps: with `step_key`, a record's step is its value of `step_key` (0 is a step; it is
    logged as a value too); a record without a usable one is logged at the last step seen
    (0 before any), with one warning. Without `step_key`, the step is the record's index in
    this sink (0, 1, 2, ...). W&B keeps one step per run that only grows, one value per name
    per step, and ignores (with no error) a value logged below the run's current step, so
    the sink never sends one: a value whose step is below the run's step (a step that went
    back, or one another sink on the same run already passed), or whose name already has a
    value at that step, or whose step is not a whole number, is dropped, warned once per key
    and counted, never raised. Records at the same step are merged into one row (the first
    value of each name kept; the step key's own value, the same in each, is not counted).
    A run passed in is taken at its step then (`run.step`); what the caller logs into it
    directly afterwards is not seen by the sink, so do that only at steps the sink has not
    passed, or through the sink. W&B writes a step's row once a later step is logged or the
    run finishes.

    Several step axes: `step_key` may map key patterns to step keys (`{"^eval/":
    "eval_round", "": "steps"}`); each key is then plotted against its axis
    (`run.define_metric(name, step_metric=axis)`, the axis' value in the same row; one
    history row per record, so no value is behind the run's step) (see `sinks.steps.Steps`
    and docs/sinks.md). `best={key: "max" | "min"}`: on `close()`, the run's summary gets
    `best/<name>` for each key given (W&B's summary holds each name's last value).

    Configuration: `config=` or `log_config(mapping)` updates `run.config` (nested mappings
    stay nested, as W&B shows them; see `log_config`).

    Throughput (see RemoteSink): `write` only converts the values and holds the record; a
    background thread (started at the first write) pushes the held records every
    `push_seconds` with one `run.log(values, step=step)` per step, and `flush()` / `close()`
    push at once. `run.log` hands the row to W&B's own service process, which writes the
    run's `.wandb` file (W&B waits for it at interpreter exit). A sink still open at
    interpreter exit or on SIGTERM is closed before W&B shuts its service down.

    Resuming: the state (`Pipeline.state_dict`) holds the run's id and step; a sink that made
    its run and loads a state resumes that run by its id (see `load_node_state`).

    Failures never reach the training loop: values W&B cannot take are counted in `.dropped`
    (by record key) and warned about once per key (WandbSinkWarning); a push that fails is
    retried (see RemoteSink). `write` is meant to be called from one thread at a time (a
    Pipeline serialises its writes); pushing from the background thread is safe alongside it.
    """

    warning = WandbSinkWarning

    def __init__(
        self,
        *,
        project: str | None = None,
        run: Any = None,
        mode: str | None = None,
        dir: str | os.PathLike[str] | None = None,
        step_key: StepKey = None,
        prefix: str = "",
        name: str | None = None,
        tags: Iterable[str] | None = None,
        config: Mapping[str, Any] | None = None,
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
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        self.prefix = prefix.strip("/")
        self.step_key = step_key
        if run is None:
            run = _make_run(project, mode, dir, name, tags)
            self.owns_run = True
            self._made_with = (project, mode, dir, name, tags)
        else:
            given = {"project": project, "mode": mode, "dir": dir, "name": name, "tags": tags}
            extra = [key for key, value in given.items() if value is not None]
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} only apply when WandbSink makes its run; "
                    "set them in the wandb.init(...) of the run you pass instead"
                )
            if not type(run).__module__.startswith("wandb.") or not callable(
                getattr(run, "log", None)
            ):
                raise TypeError(
                    "run must be a W&B run (wandb.init(...)), got "
                    f"{type(run).__module__}.{type(run).__qualname__}"
                )
            if getattr(run, "_is_finished", False):  # wandb's own check (see `_step_of`)
                raise ValueError("run is finished; pass a run that is still open")
            self.owns_run = False
        self.run: Any = run
        self.mode: str = str(getattr(run.settings, "mode", "offline"))
        self.run_dir: Path | None = run_folder(run)
        """The run's folder (`wandb sync <run_dir>` uploads an offline run); None when
        disabled."""
        self._rich = False
        """Whether a row held an array, an image or a video (converted by `_log`)."""
        self._names = Names(self._name_of, _refusal)
        """Each record key's logged name, decided once: one key per name."""
        self._best = Best(best, self._name_of) if best is not None else None
        self._step_name = self._name_of(step_key) if isinstance(step_key, str) else None
        self._defined: set[str] = set()
        """Several axes: the names given their `define_metric` (on the push thread)."""
        if config is not None:
            self.log_config(config)
        self._users = _neptune_runs.join(run)
        self._at = _step_of(run, self._users, self.owns_run)
        self._close_at_exit()

    @property
    def records_written(self) -> int:
        """Records taken by `write` (each one a step when there is no `step_key`)."""
        return self._steps.taken

    # -- configuration --------------------------------------------------------------------

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Updates the run's configuration (`run.config.update(..., allow_val_change=True)`):
        nested dicts stay nested (W&B shows `net.layers`); numpy/torch scalars become Python
        numbers and arrays lists; an object JSON cannot hold becomes its text. Logging again
        overwrites the keys given; a changed value is counted in `counts["overwritten"]`
        (`config/<name>`) and warned once."""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        self._check_open()
        self._count_config_changes(config)
        values = jsonable(dict(config))
        if values:
            with self._client_lock:
                self.run.config.update(values, allow_val_change=True)

    # -- the hot path: a record to a row --------------------------------------------------

    def _row(self, data: Record) -> Row:
        step = self._steps.of(data)
        values: dict[str, Any] = {}
        if self._several_axes:
            pass  # the axis' step is a value in the row (`_axis_row`), not W&B's step
        elif type(step) is not int or not 0 <= step < _INT64:
            why = (
                f"W&B steps are whole numbers; step {step} is not"
                if type(step) is not int
                else f"step {step} is beyond W&B's steps (0 <= step < 2**63)"
            )
            for key, value in data.items():
                if value is not None:
                    self._drop(key, why)
            return (0, 0.0, values)
        names = self._names.by_key
        numeric = self._numeric_types
        for key, value in data.items():
            kind = type(value)
            if kind is float:
                pass
            elif kind is str:
                if not value.isascii():
                    value = self._text(key, value)
            elif kind in numeric:
                try:
                    value = float(value)
                except OverflowError:  # an int beyond float range
                    value = self._overflow(key, value)
            elif value is None:
                continue
            elif isinstance(value, str):  # numpy.str_, a str enum: its text
                value = self._text(key, value)
            elif (held := rich(value)) is not None:  # an array, an image, a video
                if type(held) is np.ndarray and not finite(held):
                    self._drop(key, NOT_FINITE)
                    continue
                value = held
                self._rich = True
            else:
                value = self._number(key, value)
                if value is None:
                    continue
            name = names.get(key)
            if name is None:
                name = self._names.new(key)
                if name is None:
                    self._drop(key, self._names.why(key))
                    continue
            values[name] = value
        if self._several_axes:
            return self._axis_row(data, step, values)
        return (step, time.time(), values)

    def _axis_row(self, part: Record, step: Step, values: dict[str, Any]) -> Row:
        """Several axes: the row of one axis' part of a record. Its values hold the axis'
        step under the axis key's name (the record's own value, or the axis' last step when
        the record has none: W&B plots a key against that value), and its W&B step is the
        record's index, so that the parts of a record make one history row. An axis value
        that is no step (NaN, text) is replaced there by the axis' last step: dropped and
        counted."""
        axis = self._steps.axis_of(next(iter(part))) if part else None
        if axis is not None and values:
            name = self._names.by_key.get(axis) or self._names.new(axis)
            if name is not None:
                if name in values and values[name] != step:
                    why = (
                        f"its value {shown(values[name], 40)} is not a step; the row holds the "
                        f"axis' last step ({step}) in its place"
                    )
                    self._drop(axis, why, stacklevel=5)
                values[name] = step
        return (self._steps.taken - 1, time.time(), values)

    def _name_of(self, key: Any) -> str:
        name = key if type(key) is str else text(key)
        return f"{self.prefix}/{name}" if self.prefix else name

    # -- the client (RemoteSink's hooks) --------------------------------------------------

    def _send(self, rows: list[Row]) -> None:
        """Logs the rows, one `run.log` per step, leaving out (and counting) what W&B would
        ignore or overwrite. A row is emptied once logged; if `run.log` raises, the rows not
        yet logged keep their values and are sent by the retry."""
        if self._several_axes:
            self._send_axes(rows)
            return
        at = self._at
        with _log_lock:
            group: dict[str, Any] = {}
            members: list[dict[str, Any]] = []
            for step, stamp, values in rows:
                if not values:
                    continue
                if step > at.step:
                    if group:
                        self._log(group, members)
                        group, members = {}, []
                    at.move_to(int(step))
                elif step < at.step:
                    for name in values:
                        self._drop(
                            self._names.key_of(name),
                            f"step {step} is below the run's step {at.step}; W&B would "
                            "ignore it (steps must not go back)",
                        )
                    values.clear()
                    continue
                for name in [name for name in values if name in at.logged or name in group]:
                    value = values.pop(name)
                    if name != self._step_name or value != step:
                        self._drop(
                            self._names.key_of(name),
                            f"it already has a value at step {step}; W&B keeps one per step",
                        )
                group.update(values)
                group["_timestamp"] = stamp
                members.append(values)
            if group:
                self._log(group, members)

    def _send_axes(self, rows: list[Row]) -> None:
        """Several axes: logs each record's rows as one history row at a W&B step of its
        own (the run's next), each name first given its axis with `define_metric(name,
        step_metric=axis)`, so that W&B plots it against its axis and drops nothing for
        being behind another axis."""
        at = self._at
        with _log_lock:
            group: dict[str, Any] = {}
            members: list[dict[str, Any]] = []
            record = None
            for index, stamp, values in rows:
                if not values:
                    continue
                if index != record:
                    if group:
                        self._log(group, members)
                        group, members = {}, []
                    if at.logged:
                        at.move_to(at.step + 1)
                    record = index
                self._define(values)
                group.update(values)
                group["_timestamp"] = stamp
                members.append(values)
            if group:
                self._log(group, members)

    def _define(self, values: dict[str, Any]) -> None:
        """Gives each name of `values` not seen before its axis (`define_metric`)."""
        defined = self._defined
        for name in values:
            if name in defined:
                continue
            axis = self._steps.axis_of(self._names.key_of(name))
            if axis is None or self._names.by_key.get(axis) == name:
                self.run.define_metric(name)
            else:
                axis_name = self._names.by_key.get(axis) or self._name_of(axis)
                self.run.define_metric(axis_name)
                self.run.define_metric(name, step_metric=axis_name)
            defined.add(name)

    def _log(self, group: dict[str, Any], members: list[dict[str, Any]]) -> None:
        """Logs one step's values; on success, empties the rows they came from. If W&B
        refuses the values (an error while encoding them, before any is logged), logs them
        one name at a time: those it refuses again are dropped and counted, the others
        logged (W&B merges the calls at one step into one row)."""
        at = self._at
        if self._rich:  # arrays, images and videos become W&B's types here, off `write`
            group = self._converted(group)
        try:
            self.run.log(group, step=at.step)
        except _REFUSALS:
            stamp = group.pop("_timestamp", None)
            for name, value in group.items():
                one = {name: value} if stamp is None else {name: value, "_timestamp": stamp}
                try:
                    self.run.log(one, step=at.step)
                except _REFUSALS as error:
                    why = f"W&B refused it ({type(error).__name__}: {error})"
                    self._drop(self._names.key_of(name), why, stacklevel=3)
        at.logged.update(group)
        for values in members:
            values.clear()

    def _send_best(self, best: dict[str, tuple[float, Step]]) -> None:
        """Sets each best value in the run's summary as `best/<name>` (W&B's summary holds
        the last value of every name itself)."""
        self.run.summary.update({BEST_PREFIX + name: value for name, (value, _) in best.items()})

    def _converted(self, group: dict[str, Any]) -> dict[str, Any]:
        """`group` with its arrays, images and videos as W&B's types; one W&B cannot make
        (the media extra missing) is dropped and counted."""
        wandb = import_wandb()
        converted = {}
        for name, value in group.items():
            try:
                converted[name] = wandb_value(wandb, value)
            except Exception as error:
                why = f"W&B could not take it ({type(error).__name__}: {error})"
                self._drop(self._names.key_of(name), why, stacklevel=4)
        return converted

    def _close_client(self) -> None:
        if _neptune_runs.leave(self.run, self._users, made_it=self.owns_run):
            self.run.finish()

    # -- checkpoints ----------------------------------------------------------------------

    def _add_state(self, state: dict[str, Any]) -> None:
        with _log_lock:
            at = self._at
            state["run"] = {"id": self.run.id, "step": at.step, "logged": sorted(at.logged)}

    def load_node_state(self, state: dict[str, Any]) -> None:
        """As any tracking sink's (the rows held, the steps), into the checkpoint's run: a
        sink that made its own run and took nothing yet resumes the checkpoint's run by its
        id instead (`wandb.init(id=..., resume="allow")`; the empty run it made is finished
        and, offline, its folder removed). The run goes on from the checkpoint's step, with
        the names the checkpoint had logged at it: online, W&B resumes at the run's own step,
        past the steps logged before the crash, whose values are then kept and the resumed
        sink's dropped and counted; offline, W&B does not resume (it starts a second folder
        of the same run id)."""
        saved = state.get("run")
        with self._client_lock:
            if saved and saved["id"] != self.run.id and self.owns_run and self.fresh():
                self._resume_run(saved["id"])
            if saved and saved["id"] == self.run.id:
                with _log_lock:
                    at = self._at
                    if saved["step"] > at.step:
                        at.move_to(saved["step"])
                    if saved["step"] == at.step:
                        at.logged.update(saved["logged"])
        super().load_node_state(state)

    def _resume_run(self, run_id: str) -> None:
        """Finishes the (empty) run this sink made and resumes the run `run_id` instead."""
        project, mode, dir, name, tags = self._made_with
        empty, empty_dir = self.run, self.run_dir
        resumed = _make_run(project, mode, dir, name, tags, run_id=run_id)
        if _neptune_runs.leave(empty, self._users, made_it=True):
            empty.finish()
            if (
                empty_dir is not None
                and self.mode == "offline"
                and empty_dir != run_folder(resumed)
            ):
                shutil.rmtree(empty_dir, ignore_errors=True)
        self.run = resumed
        self.run_dir = run_folder(resumed)
        self._users = _neptune_runs.join(resumed)
        self._at = _step_of(resumed, self._users, made=False)

    def __repr__(self) -> str:
        return f"WandbSink({self.mode}, prefix={self.prefix!r}, step_key={self.step_key!r})"


def _refusal(name: str) -> str | None:
    """Why W&B cannot take a value under the logged name `name`, or None."""
    if not name:
        return "W&B leaves out a value under an empty name"
    if name in RESERVED:
        return f"W&B fills in {name!r} itself; the value is not sent"
    return None


def run_folder(run: Any) -> Path | None:
    """The folder of a W&B run (None when disabled)."""
    mode = str(getattr(run.settings, "mode", "offline"))
    return Path(run.settings.sync_dir).absolute() if mode != "disabled" else None


def _make_run(
    project: str | None,
    mode: str | None,
    dir: str | os.PathLike[str] | None,
    name: str | None,
    tags: Iterable[str] | None,
    run_id: str | None = None,
) -> Any:
    """A new W&B run (see WandbSink for the defaults), in a folder that now exists."""
    wandb = import_wandb()
    directory = Path(dir if dir is not None else os.environ.get("WANDB_DIR") or "runs")
    directory = directory.absolute()
    directory.mkdir(parents=True, exist_ok=True)
    settings = wandb.Settings(
        console="off",
        x_disable_stats=True,
        x_disable_meta=True,
        save_code=False,
        disable_git=True,
        x_save_requirements=False,
    )
    return wandb.init(
        project=project,
        mode=mode or os.environ.get("WANDB_MODE") or "offline",
        dir=str(directory),
        name=name,
        tags=list(tags) if tags is not None else None,
        reinit="create_new",
        settings=settings,
        **({"id": run_id, "resume": "allow"} if run_id is not None else {}),
    )


def _step_of(run: Any, users: RunUsers, made: bool) -> RunStep:
    """The RunStep of `run`, shared by the sinks on it; a new one starts where the run is
    (0 for a run a sink just made). Asking a finished run would wait 30 s for nothing."""
    with _log_lock:
        at = _run_steps.get(users)
        if at is None:
            at = _run_steps[users] = RunStep(0 if made else _current_step(run))
        return at


def _current_step(run: Any) -> int:
    """The step of the run's next `log` (0 for a "shared" mode run, which cannot tell)."""
    try:
        return int(run.step)
    except Exception:
        return 0
