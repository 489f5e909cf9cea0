"""Ray Tune / RLlib adapter: each trial's results go into a pipeline of its own.

    from ray import tune
    from pipeline import Pipeline
    from pipeline.integrations.rllib import PipelineCallback
    from sinks import CsvSink

    def make_pipeline(trial_name: str) -> Pipeline:
        return Pipeline(trial_name).to(CsvSink(f"runs/{trial_name}.csv"))

    tuner = tune.Tuner(
        PPO,  # ray.rllib.algorithms.ppo.PPO, or any trainable
        param_space=config,  # a PPOConfig
        run_config=tune.RunConfig(callbacks=[PipelineCallback(make_pipeline)]),
    )
    tuner.fit()

`PipelineCallback` is a real `ray.tune.logger.LoggerCallback`. The flattening rule is in
`flatten_result`, which needs no Ray. Importing this module imports Ray Tune
(`pip install 'rlpipe[rllib]'`); `pipeline` itself never imports it.

Pass RLlib algorithms to Tune as classes: Ray 2.60's name registry behind `tune.Tuner("PPO")`
imports every algorithm, DreamerV3's Pillow included, which `ray[rllib]` does not install.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import tree

from pipeline.core.node import Node
from pipeline.core.values import to_float

try:
    from ray.tune.logger import LoggerCallback
except ImportError as error:  # pragma: no cover - the CI installs every extra
    raise ImportError(
        "pipeline.integrations.rllib needs Ray Tune: pip install 'rlpipe[rllib]'"
    ) from error

__all__ = ["STEP_KEY", "TUNE_TEXT_FIELDS", "FlatResult", "PipelineCallback", "flatten_result"]

STEP_KEY = "training_iteration"
"""The key every record's step is written under: the trial's own iteration count."""

TUNE_TEXT_FIELDS = frozenset(
    {"date", "hostname", "node_ip", "trial_id", "experiment_tag", "checkpoint_dir_name"}
)
"""Fields Tune adds to every result that are not numbers: dropped without a warning."""


class _Opaque:
    """A sequence (list, tuple, namedtuple) kept whole so that dm-tree does not descend it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _opaque_sequences(node: Any) -> Any:
    """dm-tree traverse function: descend mappings only (with string keys); wrap any other
    nested structure as one opaque leaf."""
    if isinstance(node, Mapping):
        if all(isinstance(key, str) for key in node):
            return None  # descend as it is
        # dm-tree needs sortable keys: name every key by its text, then descend
        return tree.traverse(
            _opaque_sequences, {str(key): value for key, value in node.items()}, top_down=True
        )
    if tree.is_nested(node):
        return _Opaque(node)
    return None


class FlatResult:
    """A result flattened by `flatten_result`: its numbers, and the keys it dropped."""

    __slots__ = ("dropped", "numbers")

    def __init__(self, numbers: dict[str, float], dropped: dict[str, Any]) -> None:
        self.numbers = numbers
        self.dropped = dropped


def flatten_result(
    result: Mapping[str, Any],
    *,
    keep: Iterable[str] | None = None,
    exclude: Iterable[str] = ("config",),
    sep: str = "/",
) -> FlatResult:
    """Flattens a nested result into `{"a/b/c": float}` and reports what it dropped.

    The rule:

    - Mappings are descended (with dm-tree); a path's parts are joined with `sep`. Keys that
      are not strings are named by their text. The order is dm-tree's: sorted by key.
    - A leaf that is a real number becomes a Python float: bool, int, float, numpy scalars,
      and 0-d numpy arrays or tensors (`pipeline.core.values.to_float`). NaN and inf are kept.
    - Every other leaf is dropped and listed in `FlatResult.dropped` (key -> value): strings,
      None, lists and tuples (a histogram is not a scalar; its elements are not descended),
      arrays with elements, and other objects.
    - `keep`: when given, only keys equal to one of these prefixes or under one (`prefix` +
      `sep` + ...) are looked at; `exclude` (default: Tune's `config`, the trial's
      hyperparameters, constant over a trial) removes keys the same way, after `keep`.
      Keys removed by `keep`/`exclude` are not listed as dropped: they were not asked for.
    """
    keeps = None if keep is None else tuple(_as_prefixes(keep, "keep"))
    excludes = tuple(_as_prefixes(exclude, "exclude"))
    flat = tree.flatten_with_path(tree.traverse(_opaque_sequences, dict(result), top_down=True))
    numbers: dict[str, float] = {}
    dropped: dict[str, Any] = {}
    for path, leaf in flat:
        key = sep.join(str(part) for part in path)
        if keeps is not None and not _under(key, keeps, sep):
            continue
        if excludes and _under(key, excludes, sep):
            continue
        value = leaf.value if isinstance(leaf, _Opaque) else leaf
        number = None if isinstance(leaf, _Opaque) else to_float(leaf)
        if number is None:
            dropped[key] = value
        else:
            numbers[key] = number
    return FlatResult(numbers, dropped)


def _as_prefixes(prefixes: Iterable[str], name: str) -> list[str]:
    items = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    if not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{name} must be non-empty strings (key prefixes), got {items!r}")
    return items


def _under(key: str, prefixes: tuple[str, ...], sep: str) -> bool:
    return any(key == prefix or key.startswith(prefix + sep) for prefix in prefixes)


class PipelineCallback(LoggerCallback):
    """A Tune `LoggerCallback` that writes each trial's results to a pipeline of its own.

    - `factory(trial_name)` makes the trial's pipeline when the trial starts (or at its first
      result, after a restore); `trial_name` is `str(trial)`, Tune's trial name (honouring a
      `trial_name_creator`), handy for `.prefix(...)`, file names or tracking-run labels.
    - Each result becomes one record: `{"training_iteration": <int>, **numbers}`, numbers as
      `flatten_result` makes them (with this callback's `keep`, `exclude` and `sep`). The step
      is the result's own `training_iteration`, not the `iteration` Tune passes to callbacks
      (Tune's global loop counter, shared by all trials). A result without it (Tune always
      sets it) gets the count of results the trial reported.
    - Dropped leaves are counted per key in `dropped`; each key not among Tune's own text
      fields (`TUNE_TEXT_FIELDS`) is warned about once.
    - The trial's pipeline is closed when the trial ends, completed or failed, and any still
      open at the end of the experiment are closed then.
    """

    def __init__(
        self,
        factory: Callable[[str], Node],
        *,
        keep: Iterable[str] | None = None,
        exclude: Iterable[str] = ("config",),
        sep: str = "/",
    ) -> None:
        if not callable(factory):
            raise ValueError(f"factory must be callable (trial name -> Pipeline), got {factory!r}")
        if not isinstance(sep, str) or not sep:
            raise ValueError(f"sep must be a non-empty string, got {sep!r}")
        self.factory = factory
        self.keep = None if keep is None else tuple(_as_prefixes(keep, "keep"))
        self.exclude = tuple(_as_prefixes(exclude, "exclude"))
        self.sep = sep
        self.dropped: dict[str, int] = {}
        self._pipelines: dict[Any, Node] = {}
        self._results: dict[Any, int] = {}

    def pipeline_for(self, trial: Any) -> Node:
        """The open pipeline of `trial`, made by the factory if it has none yet."""
        pipeline = self._pipelines.get(trial)
        if pipeline is None:
            name = str(trial)
            pipeline = self.factory(name)
            if not isinstance(pipeline, Node):
                raise TypeError(
                    f"the factory must return an rlpipe Pipeline for trial {name!r}, "
                    f"got {type(pipeline).__name__}"
                )
            self._pipelines[trial] = pipeline
        return pipeline

    def log_trial_start(self, trial: Any) -> None:
        self.pipeline_for(trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        count = self._results.get(trial, 0) + 1
        self._results[trial] = count
        flat = flatten_result(result, keep=self.keep, exclude=self.exclude, sep=self.sep)
        step = result.get(STEP_KEY, count)
        record: dict[str, Any] = {STEP_KEY: int(step)}
        numbers = flat.numbers
        numbers.pop(STEP_KEY, None)
        record.update(numbers)
        for key in flat.dropped:
            self._note_dropped(key)
        self.pipeline_for(trial).write(record)

    def _note_dropped(self, key: str) -> None:
        seen = self.dropped.get(key, 0)
        self.dropped[key] = seen + 1
        if seen == 0 and key not in TUNE_TEXT_FIELDS:
            warnings.warn(
                f"rlpipe: Tune result key {key!r} is not a number; it is not logged "
                "(see pipeline.integrations.rllib.flatten_result for the rule)",
                RuntimeWarning,
                stacklevel=2,
            )

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        pipeline = self._pipelines.pop(trial, None)
        self._results.pop(trial, None)
        if pipeline is not None:
            pipeline.close()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial in list(self._pipelines):
            self.log_trial_end(trial)

    def __repr__(self) -> str:
        return f"PipelineCallback({self.factory!r}, {len(self._pipelines)} open)"
