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
`flatten_result` (on `pipeline.core.flatten`), which needs no Ray.

`EpisodeCallback.to(pipeline)` makes a real `ray.rllib.callbacks.callbacks.RLlibCallback`
class that writes one record per episode an EnvRunner finishes; `EpisodeCallback.to(hub)`
sends the episodes of every EnvRunner to one Ray hub (`pipeline.integrations.ray.Hub`):

    config = PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=0)
    config.callbacks(EpisodeCallback.to(Pipeline("episodes").to(CsvSink("runs/episodes.csv"))))

Importing this module imports Ray Tune's logger base (`pip install 'rlpipe[rllib]'`); RLlib's
callback base, slower to import, is imported at the first use of `EpisodeCallback` or
`EPISODE_KEYS` (they live in `pipeline.integrations.rllib_episodes`). `pipeline` itself never
imports either.

Pass RLlib algorithms to Tune as classes: Ray 2.60's name registry behind `tune.Tuner("PPO")`
imports every algorithm, DreamerV3's Pillow included, which `ray[rllib]` does not install.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pipeline.core.counts import Counts
from pipeline.core.flatten import flatten
from pipeline.core.node import Node
from pipeline.core.values import to_float

try:
    from ray.tune.logger import LoggerCallback
except ImportError as error:  # pragma: no cover - the CI installs every extra
    raise ImportError(
        "pipeline.integrations.rllib needs Ray Tune and RLlib: pip install 'rlpipe[rllib]'"
    ) from error

if TYPE_CHECKING:
    from pipeline.integrations.rllib_episodes import EPISODE_KEYS, EpisodeCallback

__all__ = [
    "EPISODE_KEYS",
    "STEP_KEY",
    "TUNE_TEXT_FIELDS",
    "EpisodeCallback",
    "FlatResult",
    "PipelineCallback",
    "flatten_result",
]

STEP_KEY = "training_iteration"
"""The key every record's step is written under: the trial's own iteration count."""

TUNE_TEXT_FIELDS = frozenset(
    {"date", "hostname", "node_ip", "trial_id", "experiment_tag", "checkpoint_dir_name"}
)
"""Fields Tune adds to every result that are not numbers: dropped without a warning."""


class FlatResult:
    """A result flattened by `flatten_result`: its numbers, the keys it dropped, and the
    names two paths of the result both gave."""

    __slots__ = ("beyond", "collisions", "dropped", "numbers")

    def __init__(
        self,
        numbers: dict[str, float],
        dropped: dict[str, Any],
        collisions: list[str] | None = None,
        beyond: list[str] | None = None,
    ) -> None:
        self.numbers = numbers
        self.dropped = dropped
        self.collisions: list[str] = [] if collisions is None else collisions
        self.beyond: list[str] = [] if beyond is None else beyond
        """Keys of ints beyond float range, which `numbers` holds as +-inf."""


def flatten_result(
    result: Mapping[str, Any],
    *,
    keep: Iterable[str] | None = None,
    exclude: Iterable[str] = ("config",),
    sep: str = "/",
) -> FlatResult:
    """Flattens a nested result into `{"a/b/c": float}` and reports what it dropped.

    The rule:

    - Mappings are descended (`pipeline.core.flatten.flatten`); a path's parts are joined
      with `sep`. Keys that are not strings are named by their text. The order is the
      result's own: keys come out in the order they were put in, depth first.
    - A leaf that is a real number becomes a Python float: bool, int, float, numpy scalars,
      and 0-d numpy arrays or tensors (`pipeline.core.values.to_float`). NaN and inf are kept.
      An int beyond float range becomes +-inf, its key listed in `FlatResult.beyond`.
    - Every other leaf is dropped and listed in `FlatResult.dropped` (key -> value): strings,
      None, lists and tuples (a histogram is not a scalar; its elements are not descended),
      arrays with elements, and other objects. An empty mapping holds nothing: it is
      neither kept nor dropped.
    - Two paths that give one name (a literal `"a/b"` key and `{"a": {"b": ...}}`): the earlier
      in the result's order is kept, and the name is listed in `FlatResult.collisions`.
    - `keep`: when given, only keys equal to one of these prefixes or under one (`prefix` +
      `sep` + ...) are looked at; `exclude` (default: Tune's `config`, the trial's
      hyperparameters, constant over a trial) removes keys the same way, after `keep`.
      Keys removed by `keep`/`exclude` are neither dropped nor collisions: they were not
      asked for.
    """
    keeps = None if keep is None else tuple(_as_prefixes(keep, "keep"))
    excludes = tuple(_as_prefixes(exclude, "exclude"))
    met_twice: list[str] = []
    numbers: dict[str, float] = {}
    dropped: dict[str, Any] = {}
    beyond: list[str] = []
    for key, leaf in flatten(result, sep, collisions=met_twice).items():
        if not _wanted(key, keeps, excludes, sep):
            continue
        number = to_float(leaf)
        if number is not None:
            numbers[key] = number
            if isinstance(leaf, int) and math.isinf(number):
                beyond.append(key)
        elif not (isinstance(leaf, Mapping) and not leaf):
            dropped[key] = leaf
    collisions = [key for key in met_twice if _wanted(key, keeps, excludes, sep)]
    return FlatResult(numbers, dropped, collisions, beyond)


def _as_prefixes(prefixes: Iterable[str], name: str) -> list[str]:
    items = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    if not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{name} must be non-empty strings (key prefixes), got {items!r}")
    return items


def _wanted(key: str, keeps: tuple[str, ...] | None, excludes: tuple[str, ...], sep: str) -> bool:
    if keeps is not None and not _under(key, keeps, sep):
        return False
    return not (excludes and _under(key, excludes, sep))


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
      sets it) gets the count of results the trial reported; so does a result whose own
      `training_iteration` (a trainable may report one) is not a whole number (a text,
      2.5, None, NaN): that value is counted as dropped and warned about once.
    - An int beyond float range is logged as +-inf, counted under "changed" and warned about
      once per key.
    - Dropped leaves are counted in `counts` (reason "dropped", per key in
      `counts.by_key["dropped"]`; `dropped` is that per-key view as a dict); each key not
      among Tune's own text fields (`TUNE_TEXT_FIELDS`) is warned about once. A name two
      paths of a result both gave (see `flatten_result`) is counted under "overwritten" and
      warned about once.
    - The trial's configuration (`trial.config`, which Tune also puts in each result under
      `config/`, left out of the records by `exclude`) goes to the pipeline's `log_config`
      when the pipeline is made: each sink keeps it as the run's configuration.
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
        self.counts = Counts("rlpipe PipelineCallback")
        self._pipelines: dict[Any, Node] = {}
        self._results: dict[Any, int] = {}

    @property
    def dropped(self) -> dict[str, int]:
        """Results' leaves that were not numbers, counted per key."""
        return dict(self.counts.by_key.get("dropped", {}))

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
            self._log_trial_config(trial, pipeline)
        return pipeline

    @staticmethod
    def _log_trial_config(trial: Any, pipeline: Node) -> None:
        """Gives the trial's configuration (Tune's `config`, the hyperparameters its results
        carry under `config/`) to the pipeline's `log_config`: the sinks keep it as the
        run's configuration, not as metrics."""
        config = getattr(trial, "config", None)
        if isinstance(config, Mapping) and config:
            pipeline.log_config(config)

    def log_trial_start(self, trial: Any) -> None:
        self.pipeline_for(trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        count = self._results.get(trial, 0) + 1
        self._results[trial] = count
        flat = flatten_result(result, keep=self.keep, exclude=self.exclude, sep=self.sep)
        numbers = flat.numbers
        step = numbers.pop(STEP_KEY, None)
        if step is None or not math.isfinite(step) or step != int(step):
            if STEP_KEY in result:  # a user's own training_iteration that is no count
                flat.dropped.setdefault(STEP_KEY, result[STEP_KEY])
            step = count
        record: dict[str, Any] = {STEP_KEY: int(step)}
        record.update(numbers)
        for key in flat.dropped:
            self._note_dropped(key)
        for key in flat.beyond:
            self.counts.note(
                "changed",
                f"Tune result key {key!r} holds an int beyond float range; it is logged as "
                "+-inf",
                key=key,
            )
        for key in flat.collisions:
            self.counts.note(
                "overwritten",
                f"two entries of a Tune result flatten to the key {key!r} (a key holding "
                f"{self.sep!r} and a nested mapping, or keys of the same text); the earlier "
                "value is logged, the later is not",
                key=key,
            )
        self.pipeline_for(trial).write(record)

    def _note_dropped(self, key: str) -> None:
        self.counts.note(
            "dropped",
            f"Tune result key {key!r} is not a number; it is not logged "
            "(see pipeline.integrations.rllib.flatten_result for the rule)",
            key=key,
            stacklevel=3,
            warn=key not in TUNE_TEXT_FIELDS,  # Tune's own text fields: text by design
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


_LAZY = frozenset({"EPISODE_KEYS", "EpisodeCallback"})


def __getattr__(name: str) -> Any:
    """`EpisodeCallback` and `EPISODE_KEYS`, imported with RLlib's callback base at their first
    use (importing RLlib takes seconds; a Tune-only user never pays for it)."""
    if name in _LAZY:
        from pipeline.integrations import rllib_episodes

        return getattr(rllib_episodes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
