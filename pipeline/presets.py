"""Presets: the standard pipelines of an RL run, ready-made.

- `make_logger(label, ...)`: the standard train / eval / learner pipeline (Acme's default
  logger, plus smoothing or windowed aggregation, ending in terminal, CSV and Neptune sinks);
- `make_logger_factory(...)`: a callable with Acme's logger-factory signature
  `(label, steps_key=None, task_instance=0) -> Logger`, so all of an agent's loggers route into
  rlpipe and share one Neptune run.

Imports no framework: Acme is needed only to run the loop that writes into these loggers.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from filters import TimeFilter
from pipeline.builder import Pipeline
from pipeline.core.node import Logger, LoggerSink, Node
from sinks import CsvSink, TerminalSink


def make_logger(
    label: str,
    *,
    directory: str | os.PathLike[str] | None = "runs",
    time_delta: float = 1.0,
    smoothing_regex: str | None = None,
    smoothing_coeff: float = 0.99,
    aggregate_regex: str | None = None,
    aggregate_every: int | None = None,
    aggregate_seconds: float | None = None,
    steps_key: str | None = None,
    terminal: bool = True,
    csv: bool = True,
    neptune: bool | Mapping[str, Any] | Node = False,
    prefix: str | None = None,
    terminal_time_delta: float | None = None,
    terminal_stream: TextIO | None = None,
    csv_mode: str = "a",
    extra_sinks: Sequence[Node | Logger] = (),
    state: Mapping[str, Any] | None = None,
) -> Pipeline:
    """Builds the standard logger of an Acme component (an environment loop, a learner) as a
    Pipeline: the `make_logger(experiment, prefix, time_delta, aggregate_regex,
    smoothing_regex, smoothing_coeff)` of Neptune's Acme example, one to one, plus a CSV file.

    Records flow through, in order:

    1. `drop_none()`: keys whose value is None are dropped (as Acme's NoneFilter);
    2. `smooth(smoothing_regex, smoothing_coeff)` if `smoothing_regex` is given: each matching
       key gets `<key>_smoothed_<coeff>` next to it (warm-up EMA); every record counts in the
       average, however fast records arrive;
    3. with `aggregate_regex`, an AggregateFilter emits one record per window
       (`<key>_mean/_std/_median/_max/_min` for matching keys, the last value of the others)
       on `flush()` (the example's `dump()`), on `close()`, and after every `aggregate_every`
       records and/or `aggregate_seconds` seconds if given;
    4. the leaves, each optional: `TerminalSink(label)` (printed to `terminal_stream` or
       stdout), `CsvSink(<directory>/<label>.csv, mode=csv_mode)`, a NeptuneSink, and the
       `extra_sinks` (any nodes or loggers: a MemorySink, a progress display).

    Only the terminal is throttled: it prints at most one line per `terminal_time_delta`
    seconds (default: `time_delta`, or no throttle with `aggregate_regex`, whose windows are
    never throttled), and the last held-back record on flush/close, so the final values
    show. The CSV, Neptune and the extra sinks get every record.

    Every argument is checked before anything is made: a refused one raises before the CSV
    file (or a Neptune run) exists.

    `neptune`: False for none; True or a dict of `NeptuneSink` keyword arguments (offline mode
    by default; `prefix` and `step_key` default to this logger's `prefix` and `steps_key`); or
    a ready Node (a NeptuneSink sharing a run, for instance) used as it is.
    `prefix`: the namespace of this logger's keys in Neptune (`<prefix>/<key>`); defaults to
    `label`. CSV columns and terminal keys are not prefixed: the file and the `[Label]` tag
    already say which logger wrote them.
    `steps_key`: the record key Neptune uses as the step of every series (e.g.
    `"train_steps"`); None logs by arrival order.
    `csv_mode`: "a" (the default) appends to `<directory>/<label>.csv`; a logger made
    without `state` over a file that already holds rows warns that it appends to an earlier
    run's rows (Acme's own CSVLogger makes a new folder per run); "w" starts it afresh.
    `state`: a `state_dict()` of this logger taken before a restart (saved with the agent's
    checkpoint): the logger goes on from it, its CSV cut back to the checkpoint (keep
    `csv_mode="a"`).
    """
    if not isinstance(label, str) or not label:
        raise ValueError(f"label must be a non-empty string, got {label!r}")
    _check_seconds("time_delta", time_delta)
    if terminal_time_delta is not None:
        _check_seconds("terminal_time_delta", terminal_time_delta)
    if csv and directory is None:
        raise ValueError("csv=True needs a directory for the CSV file")
    prefix = label if prefix is None else prefix
    neptune_options = _neptune_options(neptune, prefix=prefix, steps_key=steps_key)
    extra = [sink if isinstance(sink, Node) else LoggerSink.of(sink) for sink in extra_sinks]
    if not (terminal or csv or neptune_options is not None or isinstance(neptune, Node) or extra):
        raise ValueError(f"make_logger({label!r}) has no sink: enable terminal, csv or neptune")
    # The filters check their own arguments: built before the sinks, which open files.
    logger = Pipeline(label).drop_none()
    if smoothing_regex is not None:
        logger.smooth(smoothing_regex, coeff=smoothing_coeff)
    if aggregate_regex is not None:
        logger.aggregate(aggregate_regex, every=aggregate_every, seconds=aggregate_seconds)
    if terminal_time_delta is None:
        terminal_time_delta = 0.0 if aggregate_regex is not None else time_delta
    screen: Node | None = None
    if terminal:
        screen = TerminalSink(label, stream=terminal_stream)
        if terminal_time_delta:
            screen = TimeFilter(terminal_time_delta, keep_last=True).connect(screen)
    tracker = neptune if isinstance(neptune, Node) else None
    if neptune_options is not None:
        tracker = _neptune_sink(neptune_options)
    table: Node | None = None
    if csv:  # last: its file is the only thing made that outlives a refused argument
        assert directory is not None
        path = os.path.join(directory, f"{label}.csv")
        if csv_mode == "a" and state is None and os.path.isfile(path) and os.path.getsize(path):
            warnings.warn(
                f"make_logger({label!r}): {path} holds an earlier run's rows; this run's rows "
                "are appended to them (csv_mode='a', the default). Pass csv_mode='w' to start "
                "the file afresh, or state= to resume the earlier run",
                RuntimeWarning,
                stacklevel=2,
            )
        table = CsvSink(path, mode=csv_mode)
    leaves = [leaf for leaf in (screen, table, tracker) if leaf is not None]
    logger.to(*leaves, *extra)
    if state is not None:
        logger.load_state_dict(dict(state))
    return logger


def _check_seconds(name: str, seconds: object) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"{name} must be a number >= 0 seconds, got {seconds!r}")


def _neptune_options(
    neptune: bool | Mapping[str, Any] | Node, *, prefix: str, steps_key: str | None
) -> dict[str, Any] | None:
    """The NeptuneSink options `neptune` asks for (None for no sink to make), checked
    before anything is made: the option names, and the client when a run is to be made."""
    if isinstance(neptune, Node) or neptune is False or neptune is None:
        return None
    if neptune is not True and not isinstance(neptune, Mapping):
        raise ValueError(
            f"neptune must be a bool, a dict of NeptuneSink options or a Node, got {neptune!r}"
        )
    options: dict[str, Any] = {"prefix": prefix, "step_key": steps_key}
    if isinstance(neptune, Mapping):
        options.update(neptune)
    from sinks.neptune import NeptuneSink  # the client itself is imported when a run is made

    try:
        inspect.signature(NeptuneSink).bind(**options)
    except TypeError as error:
        raise ValueError(f"neptune: not NeptuneSink options ({error})") from None
    _check_neptune(options)
    return options


def neptune_missing_error() -> ImportError | None:
    """The ImportError to raise when NeptuneSink would have to make a neptune 1.x run and the
    client (the `neptune` package) is not installed; None when it is.

    `import sinks.neptune` always succeeds (the client is imported only when a run is made),
    so this asks the import system instead, without importing the client."""
    if importlib.util.find_spec("neptune") is not None:
        return None
    return ImportError(
        "Neptune logging needs the Neptune client (the `neptune` package), which is not "
        "installed: pip install 'rlpipe[neptune]'"
    )


def _check_neptune(neptune: bool | Mapping[str, Any] | Node) -> None:
    """Raises before any sink is made (a CSV file opened) if the Neptune leaf cannot be."""
    makes_run = neptune is True or (isinstance(neptune, Mapping) and neptune.get("run") is None)
    error = neptune_missing_error() if makes_run else None
    if error is not None:
        raise error


def _neptune_sink(options: Mapping[str, Any]) -> Node:
    from sinks.neptune import NeptuneSink  # the client itself is imported when a run is made

    _check_neptune(options)
    sink: Node = NeptuneSink(**options)
    return sink


# -- Acme's logger-factory signature ---------------------------------------------------------


class LoggerFactory:
    """Makes loggers with Acme's factory signature, `(label, steps_key=None, task_instance=0)`,
    each one a `make_logger` pipeline; pass it where Acme takes a `logger_factory` (Acme >=
    0.4's experiments) or call it to build an agent's `logger=` arguments.

    `defaults` are `make_logger` keyword arguments for every label; `per_label` maps a label to
    the arguments that differ for it (e.g. `{"evaluator": {"aggregate_regex": "return"}}`); a
    per-label `neptune` dict is merged over the default one. A `task_instance` other than 0
    names the logger `<label>_<instance>` (its CSV file and Neptune namespace).

    One logger per name: asking again for a name with the same arguments returns the logger
    made the first time (two loggers of one name would write one CSV file and one Neptune
    namespace); asking for it with other arguments (another `steps_key`, or `("actor_1")`
    after `("actor", task_instance=1)`) is a ValueError.

    With Neptune on, every logger writes into one shared Neptune run, made by the first
    logger with Neptune; each logger's own NeptuneSink options (`prefix`, `step_key`,
    `config`, `tags`) hold for it. The options that make the run (`run`, `mode`, `project`,
    `api_token`, `data_dir`, `name`) are the first logger's; a later logger asking for other
    ones is a ValueError.

    `close()` closes every logger made so far (then the shared Neptune run); the factory is a
    context manager that does so on exit.

    Resuming: `state_dict()` holds every logger's state by name; a factory made with
    `state=` that state (and `csv_mode="a"`, the default) restores each logger as it makes
    it, so an agent rebuilt after a restart logs on from the checkpoint.
    """

    def __init__(
        self,
        *,
        per_label: Mapping[str, Mapping[str, Any]] | None = None,
        state: Mapping[str, Mapping[str, Any]] | None = None,
        **defaults: Any,
    ) -> None:
        unknown = set(defaults) - _MAKE_LOGGER_OPTIONS
        if unknown:
            raise ValueError(f"unknown make_logger options: {sorted(unknown)}")
        for label, options in (per_label or {}).items():
            bad = set(options) - _MAKE_LOGGER_OPTIONS
            if bad:
                raise ValueError(f"unknown make_logger options for {label!r}: {sorted(bad)}")
        self.defaults = dict(defaults)
        self.per_label = {label: dict(options) for label, options in (per_label or {}).items()}
        self.loggers: list[Pipeline] = []
        self._made: dict[str, tuple[tuple[str, str | None, int], Pipeline]] = {}
        """By logger name: the arguments it was asked with, and the logger."""
        self._shared_neptune: Any = None
        self._run_options: dict[str, Any] = {}
        """The options the shared Neptune run was made with."""
        self._states = dict(state or {})
        """By logger name: the state to restore it to when it is made."""

    def __call__(
        self, label: str, steps_key: str | None = None, task_instance: int = 0
    ) -> Pipeline:
        name = label if not task_instance else f"{label}_{task_instance}"
        asked = (label, steps_key, task_instance)
        made = self._made.get(name)
        if made is not None:
            if made[0] != asked:
                raise ValueError(
                    f"factory{_call(*asked)} names the logger {name!r}, already made by "
                    f"factory{_call(*made[0])}; a second logger of that name would write the "
                    "same CSV file and Neptune series"
                )
            return made[1]
        options = self._options(label)
        if steps_key is not None:
            options["steps_key"] = steps_key
        neptune = options.get("neptune", False)
        if neptune is True or isinstance(neptune, Mapping):
            options["neptune"] = self._neptune_for(
                name, options.get("prefix"), options.get("steps_key"), neptune
            )
        logger = make_logger(name, **options, state=self._states.pop(name, None))
        self._made[name] = (asked, logger)
        self.loggers.append(logger)
        return logger

    def _options(self, label: str) -> dict[str, Any]:
        """The `make_logger` options of `label`: its own over the defaults, a per-label
        `neptune` dict merged over the default one."""
        own = self.per_label.get(label, {})
        options = {**self.defaults, **own}
        default, neptune = self.defaults.get("neptune"), own.get("neptune")
        if isinstance(neptune, Mapping) and (default is True or isinstance(default, Mapping)):
            options["neptune"] = {**(default if isinstance(default, Mapping) else {}), **neptune}
        return options

    def _neptune_for(
        self,
        name: str,
        prefix: str | None,
        steps_key: str | None,
        neptune: bool | Mapping[str, Any],
    ) -> Node:
        """A NeptuneSink for one logger, with its own options; the first one makes the run
        the others write into."""
        options: dict[str, Any] = {"prefix": name if prefix is None else prefix}
        options["step_key"] = steps_key
        if isinstance(neptune, Mapping):
            options.update(neptune)
        run_options = {key: options.pop(key) for key in _RUN_OPTIONS if key in options}
        if self._shared_neptune is None:
            sink = _neptune_sink({**options, **run_options})
            self._shared_neptune = sink
            self._run_options = run_options
            return sink
        if _comparable(run_options) != _comparable(self._run_options):
            raise ValueError(
                f"the loggers of a factory share one Neptune run, made with "
                f"{_shown(self._run_options)}; {name!r} asks for {_shown(run_options)}: give "
                f"the run's options ({', '.join(_RUN_OPTIONS)}) once, in the default `neptune`"
            )
        options["run"] = self._shared_neptune.run
        return _neptune_sink(options)

    def state_dict(self) -> dict[str, dict[str, Any]]:
        """Every logger's `state_dict()`, by name (states given at construction for loggers
        not made yet are kept as they are)."""
        states = {name: dict(state) for name, state in self._states.items()}
        states.update((name, logger.state_dict()) for name, (_, logger) in self._made.items())
        return states

    def close(self) -> None:
        """Closes every logger this factory made, the one owning the Neptune run last."""
        owner = [logger for logger in self.loggers if self._owns_run(logger)]
        for logger in [logger for logger in self.loggers if logger not in owner] + owner:
            logger.close()

    def _owns_run(self, logger: Pipeline) -> bool:
        return self._shared_neptune is not None and any(
            node is self._shared_neptune for node in logger.nodes()
        )

    def __enter__(self) -> LoggerFactory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_MAKE_LOGGER_OPTIONS = frozenset(
    {
        "directory",
        "time_delta",
        "smoothing_regex",
        "smoothing_coeff",
        "aggregate_regex",
        "aggregate_every",
        "aggregate_seconds",
        "steps_key",
        "terminal",
        "csv",
        "neptune",
        "prefix",
        "terminal_time_delta",
        "terminal_stream",
        "csv_mode",
        "extra_sinks",
    }
)


_RUN_OPTIONS = ("run", "mode", "project", "api_token", "data_dir", "name")
"""NeptuneSink options that make (or name) its run, not the sink's own."""


def _comparable(options: Mapping[str, Any]) -> dict[str, Any]:
    """Run options as compared: paths as strings, a run by identity."""
    comparable = dict(options)
    if "run" in comparable:
        comparable["run"] = f"<run at {id(comparable['run']):#x}>"
    if isinstance(comparable.get("data_dir"), os.PathLike):
        comparable["data_dir"] = os.fspath(comparable["data_dir"])
    return comparable


def _shown(options: Mapping[str, Any]) -> str:
    """Run options as an error message shows them: no API token."""
    shown = _comparable(options)
    if "api_token" in shown:
        shown["api_token"] = "<hidden>"
    return ", ".join(f"{key}={value!r}" for key, value in shown.items()) or "no options"


def _call(label: str, steps_key: str | None, task_instance: int) -> str:
    """`(label, steps_key=..., task_instance=...)` as a call's arguments, defaults left out."""
    arguments = [repr(label)]
    if steps_key is not None:
        arguments.append(f"steps_key={steps_key!r}")
    if task_instance:
        arguments.append(f"task_instance={task_instance!r}")
    return f"({', '.join(arguments)})"


def make_logger_factory(
    *,
    per_label: Mapping[str, Mapping[str, Any]] | None = None,
    state: Mapping[str, Mapping[str, Any]] | None = None,
    **defaults: Any,
) -> LoggerFactory:
    """A `LoggerFactory`: `factory(label, steps_key=None, task_instance=0)` returns
    `make_logger(label, **defaults, **per_label.get(label, {}))`, the same logger for the
    same arguments; with `state` (a factory's `state_dict()`), each logger restored to it."""
    return LoggerFactory(per_label=per_label, state=state, **defaults)
