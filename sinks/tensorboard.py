"""TensorBoardSink: records to TensorBoard event files, written by tensorboard's own writer.

Importing this module does not import tensorboard: it is imported when a sink is made
(`pip install 'rlpipe[tensorboard]'`). Neither TensorFlow, torch nor tensorboardX is needed:
events are written by `tensorboard.summary.writer.event_file_writer.EventFileWriter`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from pipeline.core.config import merge_config
from pipeline.core.node import Record
from pipeline.core.values import shown, text
from sinks._rich import NOT_FINITE, finite, rich, tensorboard_value
from sinks.remote import Names, RemoteSink
from sinks.steps import Step, StepKey, Steps
from sinks.summary import BEST_PREFIX, Best

__all__ = ["INSTALL_HINT", "Row", "TensorBoardSink", "TensorBoardSinkWarning"]

INSTALL_HINT = "pip install 'rlpipe[tensorboard]'"

Row = tuple[int, float, dict[str, float], dict[str, Any] | None]
"""One record as held: (step, wall time, scalars by tag, the other values by tag or None:
texts, and arrays, images and videos as `sinks._rich.rich` holds them)."""

FLOAT32_MAX = 3.4028234663852886e38
"""The largest finite float32: TensorBoard stores scalars as float32."""

_INT64 = 2**63
"""Event steps are int64: -2**63 <= step < 2**63."""


_HISTOGRAM, _IMAGE = "histogram", "image"
"""The kinds of tag for arrays, and for images and videos (see `_tag_kinds`)."""
_KIND_NAMES: dict[Any, str] = {
    False: "numbers",
    True: "strings",
    _HISTOGRAM: "arrays (histograms)",
    _IMAGE: "images and videos",
}


class TensorBoardSinkWarning(UserWarning):
    """A value TensorBoardSink could not write as given (warned once per key, and counted)."""


def _client() -> SimpleNamespace:
    """The parts of tensorboard the sink uses, or an ImportError naming the extra."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
        from tensorboard.compat.proto.types_pb2 import DT_STRING
        from tensorboard.plugins.text.metadata import create_summary_metadata
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as error:
        raise ImportError(
            f"TensorBoardSink needs TensorBoard (the `tensorboard` package): {INSTALL_HINT}"
        ) from error
    return SimpleNamespace(
        Event=Event,
        SessionLog=SessionLog,
        Summary=Summary,
        Value=Summary.Value,
        HistogramProto=HistogramProto,
        TensorProto=TensorProto,
        scalar_shape=TensorShapeProto(),
        DT_STRING=DT_STRING,
        text_metadata=create_summary_metadata(display_name=None, description=None),
        EventFileWriter=EventFileWriter,
    )


class TensorBoardSink(RemoteSink[Row]):
    """Writes each record to a TensorBoard event file in `logdir` as one event: its numbers
    as scalars, its strings as text, its arrays as histograms and its images and videos as
    images, at the record's step.

    The file: a new `events.out.tfevents.*` file in `logdir` (made if needed), written by
    tensorboard's `EventFileWriter`; several sinks (or runs) may share a folder. A relative
    `logdir` is taken from the current folder when the sink is made; a URL (`s3://...`) is
    given to tensorboard's file layer as it is.

    Keys: a record's key `k` becomes the tag `prefix/k` (or `k` without a prefix). Values:

    - float, int, bool, numpy scalars and 0-d arrays, jax/torch scalars -> scalars
      (`simple_value`, as `SummaryWriter.add_scalar` writes them), which TensorBoard stores
      as float32: read back at float32 precision. NaN and +-inf are stored and read back as
      they are. A finite value beyond float32's range (an int beyond float range included)
      is stored as +-inf, warned once per key and counted in `counts["overflow"]`.
    - str -> a text summary (TensorBoard's Text tab), at the same step, in the same event.
    - None -> skipped (not a loss: there is no value).
    - arrays with elements (numpy, torch, jax; lists and tuples of numbers) -> histograms
      (`HistogramProto`, as `SummaryWriter.add_histogram` writes them; see `sinks._rich`);
      one holding NaN or infinity is dropped, warned once per key and counted.
    - `Image` -> an image summary (PNG); `Video` -> an image summary holding an animated GIF
      (as `SummaryWriter.add_video` writes it); encoded on the push thread (`media` extra).
    - anything else (empty arrays, dicts, bytes, objects) -> not written; warned once per key
      and counted in `.dropped` (use `Pipeline.flatten()` upstream).
    - A tag keeps the kind of its first value (TensorBoard shows a tag in one tab: numbers,
      texts, histograms or images): a value of another kind under it is dropped, warned once
      per key and counted in `.dropped`.

    Steps: with `step_key`, a record's step is its value of `step_key` (0 is a step), which
    is also written as a scalar; a record without a usable one is written at the last step
    seen (0 before any), warned once and counted in `counts["skipped"]`. Without `step_key`,
    the step is the record's index in this sink (0, 1, 2, ...). TensorBoard's steps are
    int64: a step that is not an integer is written at its floor (warned once, counted in
    `counts["rounded"]`); the values of a record whose step lies beyond int64 are dropped,
    counted in `.dropped`. Each event's wall time is the time `write` took its record.

    Several step axes: `step_key` may map key patterns to step keys (`{"^eval/":
    "eval_round", "": "steps"}`); each key is then written at its own axis' step (one event
    per axis per record) (see `sinks.steps.Steps` and docs/sinks.md). `best={key: "max" |
    "min"}`: on `close()`, the best value of each key given is written as the scalar
    `best/<tag>` at the step it was reached.

    Configuration: `log_config(mapping)` (or a pipeline's) is written, on `close()`, as
    TensorBoard's hparams plugin data, with every scalar tag as a metric: the HPARAMS tab
    lists the run with its metrics' last values (see `log_config`).

    One event per record: a record's scalars and texts go into one `Summary` at its step,
    never one event per scalar.

    Throughput (see RemoteSink): `write` only converts the values and holds the record; a
    background thread (started at the first write) turns the held records into events and
    hands them to the writer every `flush_seconds` (default 2 s, as the file sinks), then
    flushes it, so a record reaches the file about `flush_seconds` after `write`; `flush()`
    and `close()` do it at once. A sink still open at interpreter exit or on SIGTERM is
    closed (its records written) then.

    Failures never reach the training loop: a push that fails (the folder removed, the disk
    full) is counted in `counts["errors"]`, warned once per error type and retried (see
    RemoteSink) into a new event file, since tensorboard's writer stops for good at its first
    error. The old file (a local one) is first cut back to its size after the last push that
    succeeded, so the retried events are stored once (a folder that was removed took them
    with it; a file that cannot be cut keeps them, and they are then stored twice).

    Refused values: a key whose tag has no UTF-8 form, or that another key's tag already
    took (`1` after `"1"`), is not written, warned once per key and counted in `.dropped`;
    a text holding a lone surrogate is written with it escaped, counted in
    `counts["changed"]`. An event protobuf cannot encode is written without the values it
    cannot, each dropped and counted: one value never holds up the others.

    Resuming: `load_node_state` (a Pipeline's `load_state_dict`) purges, from the last step
    the checkpoint had written, what the folder holds past the checkpoint, and writes that
    step's rows again (see docs/resume.md). `purge_step`, without a state: when resuming
    from a checkpoint, pass the step it was taken at. As with
    `SummaryWriter(purge_step=...)`, the new file starts with a `SessionLog.START` event at
    that step, and TensorBoard's loader (`EventAccumulator`; `tensorboard --load_fast=false`)
    then drops the events of earlier files in `logdir` at that step or later, so the steps
    written again after the resume are not shown twice.

    `write` is meant to be called from one thread at a time (a Pipeline serialises its
    writes); pushing from the background thread is safe alongside it.
    """

    warning = TensorBoardSinkWarning

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        *,
        step_key: StepKey = None,
        prefix: str = "",
        flush_seconds: float = 2.0,
        purge_step: int | None = None,
        best: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        path = os.fspath(logdir) if isinstance(logdir, (str, os.PathLike)) else None
        if not isinstance(path, str) or not path:
            raise ValueError(f"logdir must be a folder path, got {shown(logdir)}")
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, got {type(prefix).__name__}")
        if (
            isinstance(flush_seconds, bool)
            or not isinstance(flush_seconds, (int, float))
            or not 0 < flush_seconds < math.inf
        ):
            raise ValueError(f"flush_seconds must be a number > 0, got {shown(flush_seconds)}")
        if purge_step is not None and (
            type(purge_step) is not int or not -_INT64 <= purge_step < _INT64
        ):
            raise ValueError(
                f"purge_step must be an int (an int64) or None, got {shown(purge_step)}"
            )
        self._use_steps(Steps(step_key, self._note))
        self.step_key = step_key
        self.prefix = prefix.strip("/")
        self.flush_seconds = float(flush_seconds)
        self.push_seconds = self.flush_seconds
        self.purge_step = purge_step
        self.logdir: str = path if "://" in path else os.path.abspath(path)
        """The folder the event files are in (absolute), or the URL given."""
        self._tb = _client()
        self._names = Names(self._tag_of)
        """Each key's tag, decided once: one key per tag."""
        self._scalar_tags: dict[Any, str] = {}
        self._text_tags: dict[Any, str] = {}
        """The tags of the keys whose values are scalars, and texts (a tag has one kind)."""
        self._tail: list[Row] = []
        """The rows written at the last step written (for a checkpoint; see `_keep_tail`)."""
        self._tag_kinds: dict[str, Any] = {}
        """Per tag: whether it holds texts (True), numbers (False), or `_HISTOGRAM`s or
        `_IMAGE`s."""
        self._file: str | None = None
        """The local file of the writer, while its size is known (`_size`)."""
        self._size = 0
        self._config: dict[str, Any] = {}
        """The run's configuration (`log_config`), as its hparams session holds it."""
        self._earlier_files = _event_files(self.logdir)
        """The event files `logdir` held before this sink (an earlier process's)."""
        self._best = Best(best, self._tag_of) if best is not None else None
        self._writer: Any = self._open_writer(purge_step)
        self._close_at_exit()

    def _open_writer(self, purge_step: int | None = None) -> Any:
        """A new event file in `logdir`, started with a purge at `purge_step` if given."""
        tb = self._tb
        if purge_step is not None:
            self._wait_past_newest_file()
        writer = tb.EventFileWriter(self.logdir, flush_secs=self.flush_seconds)
        if purge_step is not None:  # what SummaryWriter(purge_step=...) writes
            now = time.time()
            writer.add_event(tb.Event(step=purge_step, wall_time=now, file_version="brain.Event:2"))
            start = tb.SessionLog(status=tb.SessionLog.START)
            writer.add_event(tb.Event(step=purge_step, wall_time=now, session_log=start))
        writer.flush()
        self._mark_written(writer)
        return writer

    def _mark_written(self, writer: Any) -> None:
        """Notes the size of `writer`'s file (local), all of whose events are on disk."""
        path = getattr(writer, "_file_name", None)  # EventFileWriter's file, as it names it
        self._file = None
        if isinstance(path, str) and "://" not in path:
            with contextlib.suppress(OSError):
                self._size = os.path.getsize(path)
                self._file = path

    def _take_back(self) -> None:
        """Cuts the file of a writer that failed back to its size at the last push that
        succeeded: the events of the failed push, which its retry writes into a new file,
        are then stored once (as far as the file can still be cut: a folder removed took
        them with it)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.truncate(self._file, self._size)
            self._file = None

    def _wait_past_newest_file(self) -> None:
        """Waits, if need be (up to a second), until the second after that of the newest
        event file in a local `logdir`: TensorBoard reads a folder's files in name order,
        and a name starts with the second its file was made. A purge applies only to the
        files read before it, such as a crashed run's, made in the same second."""
        if "://" in self.logdir:
            return
        newest = -1
        with contextlib.suppress(OSError):
            for name in os.listdir(self.logdir):
                part = name.split(".")
                if name.startswith("events.out.tfevents.") and len(part) > 3 and part[3].isdigit():
                    newest = max(newest, int(part[3]))
        wait = newest + 1 - time.time()
        if 0 < wait <= 1.5:
            time.sleep(wait)

    @property
    def records_written(self) -> int:
        """Records taken by `write` (each one a step when there is no `step_key`)."""
        return self._steps.taken

    # -- the hot path: a record to a row --------------------------------------------------

    def _row(self, data: Record) -> Row:
        taken = self._steps.of(data)
        if type(taken) is int and -_INT64 <= taken < _INT64:
            step: int = taken
        else:
            converted = self._event_step(taken, data)
            if converted is None:
                return (0, 0.0, {}, None)
            step = converted
        wall_time = time.time()
        scalars: dict[str, float] = {}
        texts: dict[str, Any] | None = None
        scalar_tags = self._scalar_tags
        numeric = self._numeric_types
        for key, value in data.items():
            kind = type(value)
            if kind is float:
                number = value
            elif kind in numeric:
                try:
                    number = float(value)
                except OverflowError:  # an int beyond float range
                    number = self._overflow(key, value)
            elif kind is str:
                tag = self._text_tags.get(key)
                if tag is None and (tag := self._claim(key, as_text=True)) is None:
                    continue
                if texts is None:
                    texts = {}
                texts[tag] = value  # a lone surrogate is escaped by the push (`_text_value`)
                continue
            elif value is None:
                continue
            elif isinstance(value, str):  # numpy.str_, a str enum: its text
                tag = self._text_tags.get(key)
                if tag is None and (tag := self._claim(key, as_text=True)) is None:
                    continue
                if texts is None:
                    texts = {}
                texts[tag] = self._text(key, value)
                continue
            else:
                if (held := rich(value)) is not None:  # an array, an image, a video
                    tag = self._claim_rich(key, held)
                    if tag is not None:
                        if texts is None:
                            texts = {}
                        texts[tag] = held
                    continue
                as_float = self._number(key, value)
                if as_float is None:
                    continue
                number = as_float
            if not -FLOAT32_MAX <= number <= FLOAT32_MAX and math.isfinite(number):
                self._overflow(key, number)
            tag = scalar_tags.get(key)
            if tag is None and (tag := self._claim(key, as_text=False)) is None:
                continue
            scalars[tag] = number
        return (step, wall_time, scalars, texts)

    def _event_step(self, step: Step, data: Record) -> int | None:
        """`step` as an int64 event step (a float's floor, warned and counted), or None when
        it is beyond int64: the record's values are then dropped and counted."""
        whole = step if type(step) is int else math.floor(step)
        if whole != step:
            step_key = self._steps.axis_of(next(iter(data), None))  # (the part's, on axes)
            self._note(
                "rounded",
                f"TensorBoard steps are integers; a step of {step_key!r} that is not one "
                f"({step!r}) is written at its floor ({whole})",
                key=step_key,
                stacklevel=4,
            )
        if -_INT64 <= whole < _INT64:
            return whole
        for key, value in data.items():
            if value is not None:
                why = f"step {shown(step, 40)} is beyond TensorBoard's int64 steps"
                self._drop(key, why, stacklevel=5)
        return None

    overflow_limit = "float32's range (TensorBoard's scalars)"

    def _claim_rich(self, key: Any, held: Any) -> str | None:
        """The tag of `key` for an array (a histogram) or an image or video, as `_claim`;
        None (dropped, counted) for an array holding NaN or infinity."""
        if type(held) is np.ndarray:
            if not finite(held):
                self._drop(key, NOT_FINITE, stacklevel=5)
                return None
            return self._claim(key, as_text=_HISTOGRAM, stacklevel=6)
        return self._claim(key, as_text=_IMAGE, stacklevel=6)

    def _claim(self, key: Any, *, as_text: Any, stacklevel: int = 5) -> str | None:
        """The tag of `key` for values of this kind (text or scalar), decided on first use;
        None (dropped, counted, warned) if the key is refused its tag (see `Names`) or its
        tag holds values of the other kind."""
        tag = self._names.new(key)
        if tag is None:
            self._drop(key, self._names.why(key), stacklevel=stacklevel)
            return None
        if (held_kind := self._tag_kinds.setdefault(tag, as_text)) is not as_text:
            held, given = _KIND_NAMES[held_kind], _KIND_NAMES[as_text]
            self._drop(
                key,
                f"the tag holds {held}; {given} under it are not written (a TensorBoard tag "
                "has one kind)",
                stacklevel=stacklevel,
            )
            return None
        if type(key) is str and type(as_text) is bool:  # (1, True, 1.0 are one dict key)
            (self._text_tags if as_text else self._scalar_tags)[key] = tag
        return tag

    def _tag_of(self, key: Any) -> str:
        name = key if type(key) is str else text(key)
        return f"{self.prefix}/{name}" if self.prefix else name

    # -- the client (RemoteSink's hooks) --------------------------------------------------

    def _send(self, rows: list[Row]) -> None:
        writer = self._writer
        if writer is None:  # the last one failed: tensorboard's writer does not recover
            writer = self._writer = self._open_writer()
        tb = self._tb
        event, summary, value = tb.Event, tb.Summary, tb.Value
        try:
            for step, wall_time, scalars, texts in rows:
                if not scalars and not texts:
                    continue
                try:
                    values = [value(tag=t, simple_value=x) for t, x in scalars.items()]
                    if texts:
                        values.extend(self._other_value(t, other) for t, other in texts.items())
                    made = event(wall_time=wall_time, step=step, summary=summary(value=values))
                    writer.add_event(made)  # encodes the event, then hands it to the file
                except OSError:  # the file's: the writer is done for
                    raise
                except Exception:  # refused while encoding, before any of it was written
                    writer.add_event(self._encodable(step, wall_time, scalars, texts))
            writer.flush()
            self._keep_tail(rows)
        except Exception:
            self._writer = None
            with contextlib.suppress(Exception):
                writer.close()
            self._take_back()
            raise
        self._mark_written(writer)

    def _encodable(
        self, step: int, wall_time: float, scalars: dict[str, float], texts: dict[str, str] | None
    ) -> Any:
        """The event of a row without the values protobuf cannot encode, each dropped and
        counted (the checks in `write` leave none that we know of: this keeps one unforeseen
        value from stalling the sink)."""
        tb = self._tb
        kept = []
        items = [*scalars.items(), *(texts or {}).items()]
        for tag, given in items:
            try:
                if isinstance(given, float):
                    made = tb.Value(tag=tag, simple_value=given)
                else:
                    made = self._other_value(tag, given)
                tb.Summary(value=[made]).SerializeToString()
            except Exception as error:
                why = f"TensorBoard could not encode it ({type(error).__name__}: {error})"
                self._drop(self._names.key_of(tag), why, stacklevel=3)
            else:
                kept.append(made)
        return tb.Event(wall_time=wall_time, step=step, summary=tb.Summary(value=kept))

    def _other_value(self, tag: str, other: Any) -> Any:
        """The `Summary.Value` of a text, or of an array, an image or a video."""
        if type(other) is str:
            return self._text_value(tag, other)
        return tensorboard_value(self._tb, tag, other)

    def _text_value(self, tag: str, string: str) -> Any:
        tb = self._tb
        tensor = tb.TensorProto(
            dtype=tb.DT_STRING,
            tensor_shape=tb.scalar_shape,
            string_val=[self._utf8(tag, string)],
        )
        return tb.Value(tag=tag, metadata=tb.text_metadata, tensor=tensor)

    def _keep_tail(self, rows: list[Row]) -> None:
        """Keeps the rows written at the last step written (see `load_node_state`)."""
        tail = self._tail
        for row in rows:
            if not row[2] and not row[3]:
                continue
            if not tail or row[0] > tail[0][0]:
                tail = self._tail = [row]
            elif row[0] == tail[0][0]:
                tail.append(row)

    def _add_state(self, state: dict[str, Any]) -> None:
        state["tail"] = list(self._tail)
        state["config"] = dict(self._config)

    def _utf8(self, tag: str, string: str) -> bytes:
        """`string` in UTF-8; a lone surrogate (no UTF-8 form) escaped, as `_text` does, and
        counted (checked here, on the push thread, to keep it off `write`)."""
        try:
            return string.encode("utf-8")
        except UnicodeEncodeError:
            return self._text(self._names.key_of(tag), string).encode("utf-8")

    def load_node_state(self, state: dict[str, Any]) -> None:
        """As any tracking sink's (the rows held, the steps), and what the same `logdir`
        holds past the checkpoint (written before the crash) is purged, as `purge_step` does,
        from the last step the checkpoint had written; the rows written at that step before
        the checkpoint (kept in it) are written again, ahead of the rows it held. The purge
        is exact when steps do not go back."""
        tail: list[Row] = state.get("tail", [])
        held: list[Row] = state["held"]
        if tail:
            purge = tail[0][0]
        elif held:
            purge = min(row[0] for row in held)
        elif state["steps"]["taken"]:
            purge = math.floor(state["steps"]["last"]) + 1
        else:
            purge = 0
        with self._client_lock:
            if self._writer is not None:
                self._writer.close()
            self._writer = self._open_writer(purge)
            with self._room:
                self._held.extend(tail)  # ahead of the held rows, which the base adds
            self._config.update(state.get("config", {}))
        super().load_node_state(state)

    # -- configuration and summary: TensorBoard's hparams plugin ---------------------------

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Merges the configuration into the run's hparams session (TensorBoard's hparams
        plugin), which the sink writes on `close()`: nested mappings become `/`-joined
        names, bools, numbers and strings stay as they are, anything else (lists, None,
        objects; and numbers the plugin would change or hide: ints beyond 2**53, NaN and
        infinities) is its JSON text. Calling it again merges (`merge_config`: a changed value
        counted in `counts["overwritten"]`, warned once). On `close()` the sink writes the
        experiment (the hparams and, as metrics, every scalar tag and `best/<tag>`), the
        session's start (the configuration) and its end: TensorBoard's HPARAMS tab then
        lists the run, with its metrics' last values. (TensorBoard keeps the first session
        start a run holds, so it is written once, whole, when the run ends; a run killed
        before it closes is not listed there.)"""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        self._check_open()
        with self._counts_lock:
            merge_config(self._config, config, self.counts)

    def _write_summaries(self, summaries: list[Any], step: int = 0) -> None:
        """Writes `summaries` (tensorboard `Summary` protos) as events at `step`, now."""
        writer = self._writer
        if writer is None:
            writer = self._writer = self._open_writer()
        now = time.time()
        for summary in summaries:
            writer.add_event(self._tb.Event(wall_time=now, step=step, summary=summary))
        writer.flush()
        self._mark_written(writer)

    def _send_best(self, best: dict[str, tuple[float, Step]]) -> None:
        """Writes each best value as the scalar `best/<tag>` at the step it was reached."""
        tb = self._tb
        writer = self._writer
        if writer is None:
            writer = self._writer = self._open_writer()
        now = time.time()
        for tag, (value, step) in best.items():
            made = tb.Summary(value=[tb.Value(tag=BEST_PREFIX + tag, simple_value=value)])
            writer.add_event(tb.Event(wall_time=now, step=int(step), summary=made))
        writer.flush()

    def _close_client(self) -> None:
        try:
            if self._config or self._best is not None:
                self._end_session()
        finally:
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.close()

    def _end_session(self) -> None:
        """The hparams experiment (the config's names; every scalar tag, and the best ones,
        as metrics) and the session's end, written on close."""
        hparams = _hparams()
        self._count_hidden_config(hparams)
        metrics = [tag for tag, is_text in self._tag_kinds.items() if not is_text]
        if self._best is not None:
            metrics += [BEST_PREFIX + tag for tag in self._best.values]
        summaries = [
            hparams.experiment(self._config, metrics),
            hparams.session_start(self._config),
            hparams.session_end(),
        ]
        self._write_summaries(summaries)

    def _count_hidden_config(self, hparams: SimpleNamespace) -> None:
        """TensorBoard shows the first session start a run's folder holds: when an earlier
        process (a run resumed after it closed) wrote one, each configuration value this
        session start holds and that one does not (a new name, a changed value) is not shown;
        counted in `counts["dropped"]` (per `config/<name>`) and warned once."""
        earlier = _earlier_session_start(self._earlier_files)
        if earlier is None:
            return
        mine = hparams.session_start(self._config).value[0].metadata.plugin_data.content
        for name, value in (_session_hparams(mine) or {}).items():
            if earlier.get(name) != value:
                self._note(
                    "dropped",
                    f"config {name!r}: TensorBoard's HPARAMS tab shows the session an earlier "
                    "process started in this logdir; a value logged after it is not shown "
                    "there (a resumed run: log the whole config before the first close)",
                    key=f"config/{name}",
                    stacklevel=4,
                )

    def __repr__(self) -> str:
        return (
            f"TensorBoardSink({self.logdir!r}, prefix={self.prefix!r}, step_key={self.step_key!r})"
        )


def _hparams() -> SimpleNamespace:
    """The summaries of TensorBoard's hparams plugin the sink writes (made with the plugin's
    own `summary_v2` and protos; no TensorFlow needed)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2

    def values(config: Mapping[str, Any]) -> dict[str, bool | float | int | str]:
        out: dict[str, bool | float | int | str] = {}
        for name, value in config.items():
            # the plugin holds numbers as doubles and shows no NaN or infinity: an int
            # beyond 2**53 or a float that is not finite goes as its JSON text
            exact = isinstance(value, int) and -(2**53) <= value <= 2**53
            if isinstance(value, (bool, str)) or exact or _finite_float(value):
                out[name] = value
            else:
                out[name] = json.dumps(value, ensure_ascii=False)
        return out

    def session_start(config: Mapping[str, Any]) -> Any:
        return summary_v2.hparams_pb(values(config))

    def experiment(config: Mapping[str, Any], metrics: list[str]) -> Any:
        return summary_v2.hparams_config_pb(
            [summary_v2.HParam(name) for name in sorted(config)],
            [summary_v2.Metric(tag) for tag in metrics],
        )

    def session_end() -> Any:
        data = plugin_data_pb2.HParamsPluginData(
            session_end_info=plugin_data_pb2.SessionEndInfo(
                status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time()
            )
        )
        summary = Summary()
        summary.value.add(
            tag=metadata.SESSION_END_INFO_TAG,
            metadata=metadata.create_summary_metadata(data),
            tensor=metadata.NULL_TENSOR,
        )
        return summary

    return SimpleNamespace(
        session_start=session_start, experiment=experiment, session_end=session_end
    )


def _session_hparams(content: bytes) -> dict[str, Any] | None:
    """The hparams of a session start (the plugin's content of its summary), or None."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    if data.WhichOneof("data") != "session_start_info":
        return None
    return dict(data.session_start_info.hparams)


def _event_files(logdir: str) -> list[str]:
    """The event files of a local `logdir`, in the order TensorBoard reads them (by name)."""
    if "://" in logdir or not os.path.isdir(logdir):
        return []
    names = sorted(name for name in os.listdir(logdir) if name.startswith("events.out.tfevents."))
    return [os.path.join(logdir, name) for name in names]


def _earlier_session_start(paths: list[str]) -> dict[str, Any] | None:
    """The hparams of the first session start the event files `paths` hold, read as
    TensorBoard reads them; None if none does."""
    if not paths:
        return None
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    for path in paths:
        with contextlib.suppress(Exception):  # a torn or removed file: read what can be
            for event in EventFileLoader(path).Load():
                for value in event.summary.value:
                    plugin = value.metadata.plugin_data
                    if plugin.plugin_name == "hparams":
                        found = _session_hparams(plugin.content)
                        if found is not None:
                            return found
    return None


def _finite_float(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)
