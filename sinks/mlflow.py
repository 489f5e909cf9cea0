"""MlflowSink: records to an MLflow run as metrics, by default in a local SQLite store.

Importing this module does not import MLflow: it is imported when a sink is made
(`pip install 'rlpipe[mlflow]'`). The sink uses an `MlflowClient` only, never the fluent API,
so several sinks and runs coexist and mlflow's active-run stack is left alone.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.flatten import flatten
from pipeline.core.media import Image, Video
from pipeline.core.node import Record
from pipeline.core.values import plain, text, to_float
from sinks._mlflow_client import (
    DEFAULT_TRACKING_URI,
    INSTALL_HINT,
    import_mlflow,
    name_check,
    resolve_tracking_uri,
)
from sinks._rich import rich
from sinks.remote import Names, RemoteSink
from sinks.steps import Step, StepKey, Steps
from sinks.summary import BEST_PREFIX, Best

__all__ = [
    "DEFAULT_TRACKING_URI",
    "INSTALL_HINT",
    "MlflowSink",
    "MlflowSinkWarning",
    "Row",
    "resolve_tracking_uri",
]

DEFAULT_EXPERIMENT = "rlpipe"
METRICS_PER_CALL, PARAMS_PER_CALL = 1000, 100
"""MLflow's limits per `log_batch` call."""
STEP_RANGE = (-(2**63), 2**63)
"""MLflow steps are 64-bit integers."""
_KEY = attrgetter("key")
_REFUSED = "INVALID_PARAMETER_VALUE"
"""The error code of a value MLflow refuses for good (sending it again would not help)."""

Row = tuple[int, int, dict[str, Any]]
"""One record as held: (step, unix time in milliseconds, {metric name: value}); a value is a
float, or an image or a video (`sinks._rich.Rich`) to log as an artifact."""
NO_HISTOGRAMS = (
    "MLflow has no histograms and its metrics are numbers: an array is not sent (aggregate "
    "it upstream, or log its statistics)"
)
"""Why an array is dropped."""
_MEDIA = (Image, Video)


class MlflowSinkWarning(UserWarning):
    """A value MlflowSink could not send (warned once per key, and counted)."""


class MlflowSink(RemoteSink[Row]):
    """Sends each record to an MLflow run as metrics at the record's step, with `log_batch`.

    The run: with `run_id`, the sink logs into that run and never ends it. Without it, the
    sink makes a run (named `run_name`, with `tags`) in `experiment` (default
    `$MLFLOW_EXPERIMENT_NAME`, else "rlpipe"; made if missing) and ends it FINISHED on
    `close()`; a sink still open at interpreter exit or on SIGTERM is closed then, so its run
    ends FINISHED too (a SIGKILL leaves it RUNNING). MLflow takes values into a finished run,
    so other sinks given its `run_id` may outlive the maker. `.run_id`, `.client` (an
    `MlflowClient`, for artifacts, say) and `.experiment_id` are the sink's.

    The store: `tracking_uri`, else `$MLFLOW_TRACKING_URI`, else `sqlite:///runs/mlflow.db`
    (no server). A relative SQLite path is resolved against the current folder when the sink
    is made (its folder made too): a later `chdir` does not move it. Experiments the sink
    makes in the default store keep artifacts in `runs/artifacts`.

    Keys: a record's key `k` is the metric `prefix/k` (or `k`). MLflow takes names of
    letters, digits, `_ - . / :` and spaces, up to 250 characters, that are normalised paths
    (no leading, trailing or doubled `/`, no `.` or `..` part). A key it refuses is not
    renamed (two keys could become one metric): its values are dropped, warned once per key
    and counted in `.dropped`; the other keys are sent. So is a later key whose name another
    key took (`1` after `"1"`: see `sinks.remote.Names`). (A name a server refuses all the
    same is found out by sending that batch again name by name, and dropped the same way.)

    Values: float, int, bool, numpy scalars and 0-d arrays, jax/torch scalars are sent as
    floats. NaN reads back as NaN; MLflow's SQL stores keep +-inf (and ints beyond float
    range) as +-1.7976931348623157e308. None is skipped (there is no value). An `Image` is
    logged with `client.log_image(run_id, pixels, key=name, step=step)` (MLflow's images per
    step, under the run's `images/` artifacts), a `Video` as the artifact
    `media/<name>/<step>.gif`, on the push thread. Text, arrays (MLflow has no histograms),
    dicts and objects are not sent (log text with `log_config`, aggregate arrays upstream):
    warned once per key and counted in `.dropped`.

    Steps: with `step_key`, a record's step is its value of `step_key` (itself sent too); a
    record without a usable one is logged at the last step seen (0 before any), with one
    warning. Without it, the step is the record's index in this sink (0, 1, ...). MLflow
    steps are int64: a fractional step is floored (warned once, counted in
    `.counts["rounded"]`); the values of a record whose step is beyond int64 are dropped.
    A value's timestamp is the time `write` took it; a point at its metric's last step gets
    one a millisecond after the last one's if need be, since MLflow's SQL stores keep one of
    two points equal in step, timestamp and value (three eval returns 10, 10, 12 at one step
    are three points).

    Several step axes: `step_key` may map key patterns to step keys (`{"^eval/":
    "eval_round", "": "steps"}`); each key is then logged at its own axis' step (see
    `sinks.steps.Steps` and docs/sinks.md). `best={key: "max" | "min"}`: on `close()`, the
    best value of each key given is logged as the metric `best/<name>`, one point at the
    step it was reached (the run's latest value of each metric is its last).

    Resuming: the state (`Pipeline.state_dict`) holds the run and the points sent per metric;
    a restored sink continues that run and does not send again the points it got after the
    checkpoint (see `load_node_state`).

    Throughput (see RemoteSink): `write` only converts the values and holds the record; a
    background thread (started at the first write) sends the held records every
    `push_seconds`, 1000 metrics per `log_batch` call, and `flush()` / `close()` at once. A
    failed push (a server down, a locked database) is retried from the call it stopped at,
    so no call's metrics are sent twice; failures never reach the training loop.
    """

    warning = MlflowSinkWarning

    not_a_number = "{kind} is not a number, and MLflow metrics are numbers: not sent"

    def __init__(
        self,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_id: str | None = None,
        step_key: StepKey = None,
        prefix: str = "",
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        best: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        strings = {"tracking_uri": tracking_uri, "experiment": experiment, "run_id": run_id}
        for argument, value in {**strings, "run_name": run_name, "prefix": prefix}.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{argument} must be a string, got {type(value).__name__}")
        for argument, mapping in (("tags", tags), ("config", config)):
            if mapping is not None and not isinstance(mapping, Mapping):
                raise ValueError(f"{argument} must be a mapping, got {type(mapping).__name__}")
        if run_id is not None and (experiment is not None or run_name is not None):
            raise ValueError("experiment and run_name only apply when MlflowSink makes its run")
        self._use_steps(Steps(step_key, self._note))
        self.step_key = step_key
        self.prefix = prefix.strip("/")
        mlflow = import_mlflow()
        self._entities = mlflow.entities
        self._error: type[Exception] = mlflow.exceptions.MlflowException
        self._check_name = name_check(mlflow)
        if self.prefix and (refusal := self._refusal(self.prefix)):
            raise ValueError(f"prefix {prefix!r} is not a name MLflow takes: {refusal}")
        given_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        self.tracking_uri = resolve_tracking_uri(given_uri)
        self.client: Any = mlflow.tracking.MlflowClient(tracking_uri=self.tracking_uri)
        run_tags = {str(key): text(plain(value)) for key, value in (tags or {}).items()}
        self.owns_run = run_id is None
        if run_id is None:
            name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
            self.experiment_id = self._experiment_id(name, default_store=not given_uri)
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=run_tags)
        else:
            run = self._existing_run(run_id)
            self.experiment_id = run.info.experiment_id
            if run_tags:
                tag_list = [self._entities.RunTag(k, v) for k, v in run_tags.items()]
                self.client.log_batch(run_id, tags=tag_list, synchronous=True)
        self.run_id: str = run.info.run_id
        self._media = False
        """Whether a row held an image or a video (logged as artifacts by `_send_media`)."""
        self._videos: Counter[tuple[str, int]] = Counter()
        """Videos logged per (name, step): the next one's file name."""
        self._names = Names(self._name_of, self._name_refusal)
        """Each record key's metric name, decided once: one key per name."""
        self._best = Best(best, self._name_of) if best is not None else None
        self._stamps: dict[str, tuple[int, set[Step]]] = {}
        """Per metric: the last timestamp it was given, and the steps it has at it."""
        """Per metric name: the (step, timestamp) of its last point sent (see `_send`)."""
        self._sent: Counter[str] = Counter()
        """Per metric name: the points sent (for a checkpoint)."""
        self._stored: dict[str, deque[tuple[int, float]]] = {}
        """After a resume: per metric name, the points the run holds past the checkpoint
        (sent before the crash), in the order sent; the resumed sink does not send them again."""
        self._resume: tuple[Row | None, int] = (None, 0)
        """(first row of a push cut short, metrics of that push sent): where a retry starts."""
        try:
            self.log_config(config or {})
        except BaseException:
            self._close_client()
            raise
        self._close_at_exit()

    def _experiment_id(self, name: str, *, default_store: bool) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            location = Path("runs", "artifacts").absolute().as_uri() if default_store else None
            try:
                return str(self.client.create_experiment(name, artifact_location=location))
            except self._error:  # made meanwhile by another process?
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise ValueError(f"experiment {name!r} is deleted; restore it or name another one")
        return str(found.experiment_id)

    def _existing_run(self, run_id: str) -> Any:
        try:
            run = self.client.get_run(run_id)
        except self._error as error:
            if getattr(error, "error_code", None) not in (_REFUSED, "RESOURCE_DOES_NOT_EXIST"):
                raise
            raise ValueError(f"run_id {run_id!r}: {getattr(error, 'message', error)}") from error
        if run.info.lifecycle_stage != "active":
            raise ValueError(f"run_id {run_id!r} is a deleted run; restore it or make another")
        return run

    @property
    def records_written(self) -> int:
        """Records taken by `write` (each one a step when there is no `step_key`)."""
        return self._steps.taken

    # -- configuration --------------------------------------------------------------------

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Logs the run's configuration as MLflow params, at once (not by the push thread):
        nested mappings become `/`-joined names (`{"opt": {"lr": 0.1}}` -> `opt/lr`; the
        prefix does not apply) and values their text (`0.1`, `[64, 64]`, `None`; numpy and
        torch scalars as Python ones); MLflow cuts values past 6000 characters.

        MLflow params cannot change: a param the run holds with the same value is left as it
        is (logging the same configuration again, as a resumed run does, is harmless); one
        with another value is not logged, nor is a name MLflow refuses: each is warned once
        and counted in `.dropped` as `config/<name>`."""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        self._check_open()
        twice: list[str] = []
        flat = flatten(config, collisions=twice)
        fields = {name: text(plain(value)) for name, value in flat.items()}
        for name in twice:
            why = f"config name {name!r} is given twice (nested and '/'-joined); the first is kept"
            self._note("overwritten", why, key=f"config/{name}")
        if not fields:
            return
        with self._client_lock:
            held = self.client.get_run(self.run_id).data.params
            new = []
            for name, value in fields.items():
                old = held.get(name)
                if old is None:
                    new.append(self._entities.Param(name, value))
                elif old != value and old != value[: len(old)]:  # (MLflow cut a long value)
                    why = f"the run holds {old!r}; MLflow params cannot change"
                    self._refuse_param(name, why, stacklevel=3)
            for start in range(0, len(new), PARAMS_PER_CALL):
                self._log("params", new[start : start + PARAMS_PER_CALL], self._refuse_param)

    def _refuse_param(self, name: str, why: str, count: int = 1, stacklevel: int = 4) -> None:
        """Counts a param not logged; warns once per name. `stacklevel` 4 names the caller of
        `log_config` when called from `_log`."""
        message = f"param {name!r} not logged: {why}"
        self._note("dropped", message, key=f"config/{name}", n=count, stacklevel=stacklevel)

    # -- the hot path: a record to a row --------------------------------------------------

    def _row(self, data: Record) -> Row:
        raw = self._steps.of(data)
        if type(raw) is int and STEP_RANGE[0] <= raw < STEP_RANGE[1]:
            step: int | None = raw
        else:
            step = self._whole_step(raw, data)
        metrics: dict[str, float] = {}
        if step is not None:
            names = self._names.by_key
            numeric = self._numeric_types
            for key, value in data.items():
                kind = type(value)
                if kind is not float:
                    if kind in numeric:
                        try:
                            value = float(value)
                        except OverflowError:  # an int beyond float range
                            value = to_float(value)
                    elif value is None:
                        continue
                    elif (held := rich(value)) is not None:  # an array, an image, a video
                        if type(held) is np.ndarray:
                            self._drop(key, NO_HISTOGRAMS)
                            continue
                        value = held  # logged as an artifact by `_send_media`
                        self._media = True
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
                metrics[name] = value
        return (step or 0, time.time_ns() // 1_000_000, metrics)

    def _whole_step(self, step: Step, data: Record) -> int | None:
        """The int64 step MLflow takes for `step`: floored (warned once) if fractional; None
        (the record's values dropped) if beyond int64."""
        if isinstance(step, float) and not step.is_integer():
            why = f"MLflow steps are integers: fractional steps such as {step} are floored"
            step_key = self._steps.axis_of(next(iter(data), None))  # (the part's, on axes)
            self._note("rounded", why, key=step_key, stacklevel=4)
        step = math.floor(step)
        if STEP_RANGE[0] <= step < STEP_RANGE[1]:
            return step
        for key, value in data.items():
            if value is not None:
                self._drop(key, f"step {step} is beyond MLflow's int64 steps", stacklevel=5)
        return None

    def _name_of(self, key: Any) -> str:
        """The metric name of a record key."""
        key_text = key if type(key) is str else text(key)
        return f"{self.prefix}/{key_text}" if self.prefix else key_text

    def _name_refusal(self, name: str) -> str | None:
        refusal = self._refusal(name)
        return None if refusal is None else f"MLflow refuses the name {name!r}: {refusal}"

    def _refusal(self, name: str) -> str | None:
        """Why MLflow refuses the metric name `name`, or None."""
        try:
            self._check_name(name)
        except self._error as error:
            return str(getattr(error, "message", error))
        return None

    def _refuse_metric(self, name: str, why: str, count: int) -> None:
        why = f"MLflow refused {name!r}: {why}"
        self._names.refuse(name, why)
        self._drop(self._names.key_of(name), why, count, stacklevel=3)

    # -- the client (RemoteSink's hooks) --------------------------------------------------

    def _send(self, rows: list[Row]) -> None:
        if self._media:
            self._send_media(rows)
        if self._stored:
            self._leave_out_stored(rows)
        Metric = self._entities.Metric
        metrics = []
        stamps = self._stamps
        for step, timestamp, values in rows:
            for name, value in values.items():
                # MLflow's SQL stores keep one of two points equal in (step, timestamp, value):
                # a metric's timestamps never go back, and a step it already has at the last
                # one (a step logged again within a millisecond) gets the next millisecond.
                last = stamps.get(name)
                if last is None or timestamp > last[0]:
                    stamps[name] = (timestamp, {step})
                elif step in last[1]:
                    timestamp = last[0] + 1
                    stamps[name] = (timestamp, {step})
                else:
                    timestamp = last[0]
                    last[1].add(step)
                metrics.append(Metric(name, value, timestamp, step))
        first, sent = self._resume
        for start in range(sent if first is rows[0] else 0, len(metrics), METRICS_PER_CALL):
            self._resume = (rows[0], start)
            self._log("metrics", metrics[start : start + METRICS_PER_CALL], self._refuse_metric)
        self._resume = (None, 0)
        self._sent.update(map(_KEY, metrics))

    def _send_media(self, rows: list[Row]) -> None:
        """Logs the images of `rows` with `log_image(key=name, step=step)` (MLflow's
        time-stepped images, `images/` in the run's artifacts) and its videos as animated GIF
        artifacts `media/<name>/<step>.gif`, and takes them out of the rows, so a retried push
        does not log them again. What MLflow refuses (a name `log_image` does not take) is
        dropped and counted."""
        for step, timestamp, values in rows:
            for name in [name for name, value in values.items() if type(value) in _MEDIA]:
                media: Any = values[name]
                try:
                    if type(media) is Image:
                        pixels = media.array
                        if pixels.ndim == 3 and pixels.shape[2] == 1:
                            pixels = pixels[:, :, 0]
                        self.client.log_image(
                            self.run_id, pixels, key=name, step=step, timestamp=timestamp,
                            synchronous=True,
                        )
                    else:
                        self._log_video(name, step, media)
                except (ValueError, TypeError) as error:  # refused: sending again won't help
                    why = f"MLflow refused it ({type(error).__name__}: {error})"
                    self._drop(self._names.key_of(name), why, stacklevel=3)
                del values[name]

    def _log_video(self, name: str, step: int, video: Video) -> None:
        """Logs `video` as the artifact `media/<name>/<step>.gif` (`<step>_<n>.gif` for the
        n-th other video of `name` at that step)."""
        count = self._videos[name, step]
        self._videos[name, step] = count + 1
        file_name = f"{step}.gif" if not count else f"{step}_{count}.gif"
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, file_name)
            video.save(path)
            self.client.log_artifact(self.run_id, path, artifact_path=f"media/{name}")

    # -- checkpoints ----------------------------------------------------------------------

    def _add_state(self, state: dict[str, Any]) -> None:
        state["run_id"] = self.run_id
        state["sent"] = dict(self._sent)

    def load_node_state(self, state: dict[str, Any]) -> None:
        """As any tracking sink's (the rows held, the steps), into the checkpoint's run: a
        sink that made its own run and took nothing yet continues the checkpoint's run
        instead (the empty run it made is deleted; the checkpoint's run is set RUNNING and
        ended by this sink's `close()`). In the checkpoint's run, the points sent after the
        checkpoint (before the crash) are not sent a second time: the resumed sink leaves
        out each point the run already holds at that place (same name, step and value); a
        point the run holds that the resumed run writes otherwise cannot be removed (MLflow
        deletes no point): it is counted in `counts["stale"]` and warned about once."""
        run_id = state.get("run_id")
        with self._client_lock:
            if run_id and run_id != self.run_id and self.owns_run and self.fresh():
                self._continue(run_id)
            if run_id == self.run_id:
                self._stored = self._stored_after(state.get("sent", {}))
            self._sent = Counter(state.get("sent", {}))
        super().load_node_state(state)

    def _continue(self, run_id: str) -> None:
        """Logs into `run_id` instead of the run this sink made (which is deleted)."""
        try:
            run = self._existing_run(run_id)
        except ValueError as error:
            why = f"the checkpoint's run cannot be continued ({error}); logging into {self.run_id}"
            self._note("errors", why, key="run_id", stacklevel=4)
            return
        self.client.delete_run(self.run_id)
        self.run_id = run.info.run_id
        self.experiment_id = run.info.experiment_id
        self.client.update_run(self.run_id, status="RUNNING")

    def _stored_after(self, sent: Mapping[str, int]) -> dict[str, deque[tuple[int, float]]]:
        """Per metric name of this sink, the points of the run past the first `sent[name]`."""
        names = self.client.get_run(self.run_id).data.metrics
        mine = f"{self.prefix}/" if self.prefix else ""
        stored = {}
        for name in names:
            if not name.startswith(mine):
                continue
            history = self.client.get_metric_history(self.run_id, name)
            history.sort(key=lambda metric: (metric.timestamp, metric.step))
            after = history[sent.get(name, 0) :]
            if after:
                stored[name] = deque((metric.step, metric.value) for metric in after)
        return stored

    def _leave_out_stored(self, rows: list[Row]) -> None:
        """Takes out of `rows` the points the run holds from before a crash (see
        `load_node_state`)."""
        stored = self._stored
        for step, _, values in rows:
            for name in [name for name in values if name in stored]:
                points = stored[name]
                held_step, held_value = points[0]
                value = values[name]
                if held_step == step and _same(held_value, value):
                    del values[name]
                    points.popleft()
                    if not points:
                        del stored[name]
                    continue
                del stored[name]
                self._note(
                    "stale",
                    f"the run holds {len(points)} points of {name!r} sent before the crash "
                    "that the resumed run writes otherwise; MLflow cannot delete them",
                    key=self._names.key_of(name),
                    n=len(points),
                    stacklevel=4,
                )

    def _log(self, field: str, items: list[Any], refused: Callable[[str, str, int], None]) -> None:
        """`log_batch(field=items)`; if MLflow refuses that batch, sends it again one name at
        a time and tells `refused(name, why, count)` the names it refuses. Other errors
        raise."""
        try:
            self.client.log_batch(self.run_id, **{field: items}, synchronous=True)
            return
        except self._error as error:
            if not _refuses_names(error):
                raise
        by_name: dict[str, list[Any]] = {}
        for item in items:
            by_name.setdefault(item.key, []).append(item)
        for name, group in by_name.items():
            try:
                self.client.log_batch(self.run_id, **{field: group}, synchronous=True)
            except self._error as error:
                if not _refuses_names(error):
                    raise
                refused(name, str(getattr(error, "message", error)), len(group))

    def _send_best(self, best: dict[str, tuple[float, Step]]) -> None:
        """Logs each best value as the metric `best/<name>`, one point at the step it was
        reached (MLflow's runs table shows it as a column beside the last values); a best
        the run already holds at that step (logged before a restart) is not logged again."""
        now = time.time_ns() // 1_000_000
        Metric = self._entities.Metric
        points = [
            Metric(BEST_PREFIX + name, value, now, int(step))
            for name, (value, step) in best.items()
            if not self._holds(BEST_PREFIX + name, value, int(step))
        ]
        if points:
            self._log("metrics", points, self._refuse_metric)

    def _holds(self, name: str, value: float, step: int) -> bool:
        """Whether the run holds `value` at `step` in its metric `name` (False if MLflow
        cannot say)."""
        try:
            history = self.client.get_metric_history(self.run_id, name)
        except Exception:  # the point is then logged, as it would be without this check
            return False
        return any(point.step == step and point.value == value for point in history)

    def _close_client(self) -> None:
        if self.owns_run:
            self.client.set_terminated(self.run_id, "FINISHED")

    def state_key(self) -> str:
        return f"MlflowSink(prefix={self.prefix!r}, step_key={self.step_key!r})"  # not the run

    def __repr__(self) -> str:
        run_id = getattr(self, "run_id", None)
        return f"MlflowSink(run_id={run_id!r}, prefix={self.prefix!r}, step_key={self.step_key!r})"


def _refuses_names(error: Exception) -> bool:
    """Whether MLflow's error refuses names of what was sent (its error code says so; or a
    file store cannot keep a metric whose name is another's folder, `a` and `a/b`: a file
    and a folder at one path), rather than failing to store it (to be retried)."""
    return getattr(error, "error_code", None) == _REFUSED or isinstance(
        error.__context__, (NotADirectoryError, IsADirectoryError)
    )


def _same(stored: float, sent: float) -> bool:
    """Whether MLflow stores `sent` as `stored`: NaN as NaN, +-inf as the largest floats in
    its SQL stores."""
    if stored == sent or (stored != stored and sent != sent):
        return True
    return math.isinf(sent) and stored == math.copysign(sys.float_info.max, sent)
