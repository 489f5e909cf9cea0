"""RLlib episodes: `EpisodeCallback` writes one record per episode an EnvRunner finishes, to a
pipeline, to one pipeline per EnvRunner, or through a Ray hub to one pipeline for them all.

Its public path is `pipeline.integrations.rllib.EpisodeCallback`: that module imports this
one (and RLlib's callback base with it, which takes seconds) at the first use.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pipeline.core.counts import Counts
from pipeline.core.node import Node
from pipeline.core.values import shown
from pipeline.integrations.ray.hub import Hub
from pipeline.integrations.ray.sender import HubSender, SenderSettings
from pipeline.integrations.ray.support import first_line, import_ray

try:
    from ray.rllib.callbacks.callbacks import RLlibCallback
except ImportError as error:  # pragma: no cover - the CI installs every extra
    raise ImportError(
        "pipeline.integrations.rllib needs Ray Tune and RLlib: pip install 'rlpipe[rllib]'"
    ) from error

__all__ = ["EPISODE_KEYS", "EpisodeCallback"]

EPISODE_KEYS: tuple[str, ...] = (
    "episode_return",
    "episode_length",
    "episode_duration_s",
    "env_index",
    "worker_index",
)
"""The keys of every `EpisodeCallback` record, in this order, before the user's metrics."""

_PIPELINES: dict[str, Node] = {}
"""Pipelines given to `EpisodeCallback.to` and pipelines its factories made in this process,
by the bound class's token (and worker index): kept out of the classes, which RLlib pickles
with the config (`ray.put`, even with `num_env_runners=0`), so no open pipeline is pickled."""

_COUNTS: dict[str, Counts] = {}
"""Each bound class's counts, by its token, in this process."""

_CallbackMeta: Any = type(RLlibCallback)


class _BoundMeta(_CallbackMeta):
    """Gives each class made by `EpisodeCallback.to` its `counts`, kept in this process."""

    @property
    def counts(cls) -> Counts:
        """What the class's instances in this process set aside, by reason (and key)."""
        token = cls._token
        if token is None:
            raise TypeError("EpisodeCallback.counts: use a class made by EpisodeCallback.to")
        counts = _COUNTS.get(token)
        if counts is None:
            counts = _COUNTS[token] = Counts("rlpipe EpisodeCallback")
        return counts


class EpisodeCallback(RLlibCallback, metaclass=_BoundMeta):
    """An RLlib callback that writes one record per episode an EnvRunner finishes.

    RLlib makes its callbacks from their class, without arguments (in the Algorithm and in
    every EnvRunner), so the pipeline is bound to a class: `EpisodeCallback.to(pipeline)`
    returns a subclass to pass to `config.callbacks(...)`, alone or in a list with your own
    callbacks. Each finished episode (RLlib's new API stack, `on_episode_end`) becomes:

    - `episode_return`: the sum of its rewards (a float), over all its chunks: an episode
      that ran over several `sample()` calls is cut into chunks, and RLlib passes the earlier
      ones as `prev_episode_chunks`; summed in RLlib's own order, so the value is the one
      behind RLlib's `env_runners/episode_return_mean`, `_min` and `_max`;
    - `episode_length`: its number of env steps (an int), over all its chunks: the last
      chunk's env timestep (`episode.t`; `env_t` for a multi-agent episode), which counts from
      the episode's start. RLlib's own `episode_len_*` sums the chunks' lengths instead; in
      one process PPO's learner connector appends a bootstrap step to the earlier chunks
      RLlib keeps, so an episode cut between iterations counts one step more there;
    - `episode_duration_s`: its wall time in seconds, over all its chunks (RLlib's
      `get_duration_s()`, behind `env_runners/episode_duration_sec_mean`);
    - `env_index`: the index of its sub-environment in the EnvRunner's vector env;
    - `worker_index`: the EnvRunner's index (0 for the local EnvRunner, the one sampling when
      `num_env_runners=0`);
    - then what `metrics(episode)` returns, if given: the user's own per-episode values.
      `episode` is RLlib's episode object at the end: the last chunk (its steps only), whose
      `custom_data` holds what callbacks stored in it over the whole episode (RLlib copies
      it into each new chunk), as in RLlib's documented idiom of filling
      `episode.custom_data` in `on_episode_step`. A name equal to one of the keys above
      clashes: the built-in value is kept, and the clash is counted in the class's
      `counts["overwritten"]` and warned about once. A result that is not a mapping raises
      `TypeError`.

    Only training episodes are recorded by default; with `evaluation=True` only the episodes
    of evaluation EnvRunners (`config.in_evaluation`): bind two classes to keep both apart.

    How the pipeline reaches the EnvRunner: the class holds a token, and this module keeps
    the pipeline under it; RLlib copies and pickles the config (and the class with it), and
    every instance it makes in this process finds the one pipeline by the token. That holds
    in one process: `num_env_runners=0`, no Tune; an instance in another process raises
    `RuntimeError`. For EnvRunners in other processes pass a factory instead,
    `EpisodeCallback.to(make)` with `make(worker_index) -> Pipeline`: it is pickled with the
    class and called in the EnvRunner's process at its first finished episode (one pipeline
    per EnvRunner and process; the Algorithm's own instance, which sees no episode, makes
    none). A pipeline you give belongs to you: close it after `algorithm.stop()`. Pipelines a
    factory made are closed by `cls.close()`, or at interpreter exit.

    All EnvRunners into one pipeline: pass a Ray hub, `EpisodeCallback.to(hub)`
    (`pipeline.integrations.ray.Hub`). Each EnvRunner process gets its own sender, tagged
    `worker_index=<its index>`, and every episode reaches the hub's one central pipeline, so
    an aggregate there is over the episodes of all EnvRunners (an exact mean, not RLlib's
    mean of per-EnvRunner means). The class guarantees:

    - at the end of each `sample()` (`on_sample_end`) the EnvRunner's sender ships what it
      holds and waits for the hub's acknowledgement: when `algorithm.train()` returns, every
      episode its EnvRunners finished is in the central pipeline;
    - with `per_iteration=True` (the default with a hub) the class's instance in the
      Algorithm's process flushes the hub at the end of each training iteration
      (`on_train_result`; `on_evaluate_end` for `evaluation=True`): an aggregate at the hub
      emits one row per iteration, over exactly that iteration's episodes. `False` leaves the
      windows to the hub's pipeline (`every=`, `seconds=`, `every_steps=`, `hub.flush()`):
      use it with `every_steps=`, whose blocks a per-iteration flush would cut. A hub that
      cannot be flushed (dead or closed) does not stop training: each failed flush is
      counted in `counts["unflushed"]`, warned about once (the senders count their own
      losses);
    - `cls.close(algorithm)`, before `algorithm.stop()`, closes every EnvRunner's sender, so
      that the hub sees each stream end: `hub.close()` then reports no sender as unclosed,
      and its status reconciles (`written == records + lost + missing`).
    """

    _token: ClassVar[str | None] = None
    factory: ClassVar[Callable[[int], Node] | None] = None
    metrics: ClassVar[Callable[[Any], Mapping[str, Any]] | None] = None
    evaluation: ClassVar[bool] = False
    hub: ClassVar[_HubSenders | None] = None
    per_iteration: ClassVar[bool] = False

    @classmethod
    def to(
        cls,
        pipeline: Node | Callable[[int], Node] | Hub,
        *,
        metrics: Callable[[Any], Mapping[str, Any]] | None = None,
        evaluation: bool = False,
        per_iteration: bool | None = None,
    ) -> type[EpisodeCallback]:
        """A subclass writing to `pipeline` (a Pipeline, a factory `worker_index ->
        Pipeline`, or a Ray `Hub`), adding `metrics(episode)` to each record, recording
        evaluation episodes instead of training ones when `evaluation` is True. Its `counts`
        are its own. `per_iteration` (a hub only; default True): flush the hub at the end of
        each training iteration (of each evaluation with `evaluation=True`)."""
        hub = _HubSenders(pipeline) if isinstance(pipeline, Hub) else None
        if hub is None and not isinstance(pipeline, Node) and not callable(pipeline):
            raise ValueError(
                "pipeline must be an rlpipe Pipeline, a factory (worker_index -> Pipeline) "
                f"or a Ray Hub, got {type(pipeline).__name__}"
            )
        if per_iteration is not None and (hub is None or not isinstance(per_iteration, bool)):
            raise ValueError(
                "per_iteration (a bool) applies to a Ray Hub only, got "
                f"{per_iteration!r} with a {type(pipeline).__name__}"
            )
        if metrics is not None and not callable(metrics):
            raise ValueError(f"metrics must be a function (episode -> mapping), got {metrics!r}")
        if not isinstance(evaluation, bool):
            raise ValueError(f"evaluation must be a bool, got {evaluation!r}")
        token = uuid.uuid4().hex
        if isinstance(pipeline, Node):
            _PIPELINES[token] = pipeline
        factory: Callable[[int], Node] | None = hub
        if hub is None and not isinstance(pipeline, (Node, Hub)):
            factory = pipeline
        namespace = {
            "_token": token,
            "factory": None if factory is None else staticmethod(factory),
            "metrics": None if metrics is None else staticmethod(metrics),
            "evaluation": evaluation,
            "hub": hub,
            "per_iteration": hub is not None and per_iteration is not False,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
        }
        bound: type[EpisodeCallback] = _BoundMeta(cls.__name__, (cls,), namespace)
        return bound

    def __init__(self) -> None:
        if type(self)._token is None:
            raise TypeError(
                "EpisodeCallback needs its pipeline: pass EpisodeCallback.to(pipeline) "
                "(a class) to config.callbacks(...)"
            )
        super().__init__()

    @classmethod
    def pipeline(cls, worker_index: int = 0) -> Node:
        """The pipeline this class writes the episodes of EnvRunner `worker_index` to: the
        one given to `to`, or the one its factory made in this process (made now if none)."""
        token = cls._token
        if token is None:
            raise TypeError("EpisodeCallback.pipeline: use a class made by EpisodeCallback.to")
        factory = cls.factory
        if factory is None:
            given = _PIPELINES.get(token)
            if given is None:
                raise RuntimeError(
                    f"EpisodeCallback: the pipeline given to EpisodeCallback.to() lives in "
                    f"another process than this EnvRunner's (pid {os.getpid()}); pass a "
                    "factory (worker_index -> Pipeline) to make one in each process"
                )
            return given
        key = f"{token}/{worker_index}"
        made = _PIPELINES.get(key)
        if made is None:
            made = factory(worker_index)
            if not isinstance(made, Node):
                raise TypeError(
                    "the EpisodeCallback factory must return an rlpipe Pipeline, got "
                    f"{type(made).__name__}"
                )
            _PIPELINES[key] = made
        return made

    @classmethod
    def close(cls, algorithm: Any = None) -> None:
        """Closes the pipelines this class's factory made (a hub's senders included) in this
        process and, given an RLlib `algorithm`, in each of its EnvRunners, training and
        evaluation: call it before `algorithm.stop()`. A pipeline given to `to` is left to
        its owner."""
        if cls._token is None or cls.factory is None:
            return
        if algorithm is not None:
            for name in ("env_runner_group", "eval_env_runner_group"):
                group = getattr(algorithm, name, None)
                if group is not None:
                    group.foreach_env_runner(_CloseIn(cls), local_env_runner=True)
        prefix = f"{cls._token}/"
        for key in [key for key in _PIPELINES if key.startswith(prefix)]:
            _PIPELINES.pop(key).close()

    def on_episode_end(
        self,
        *,
        episode: Any,
        prev_episode_chunks: list[Any] | None = None,
        env_runner: Any = None,
        env_index: int = 0,
        **kwargs: Any,
    ) -> None:
        """Writes `episode` (and its earlier chunks) to the pipeline as one record."""
        cls = type(self)
        config = getattr(env_runner, "config", None)
        if bool(getattr(config, "in_evaluation", False)) is not cls.evaluation:
            return
        # summed as SingleAgentEnvRunner.get_metrics does: the last chunk, then the others
        episode_return = episode.get_return()
        duration = episode.get_duration_s()
        for chunk in prev_episode_chunks or ():
            episode_return += chunk.get_return()
            duration += chunk.get_duration_s()
        # the length is the last chunk's env timestep, not a sum of chunk lengths: in one
        # process PPO's learner connector (AddOneTsToEpisodesAndTruncate) appends a bootstrap
        # step (reward 0.0) to the earlier chunks RLlib keeps, so their len() is one too many
        length = episode.env_t if hasattr(episode, "env_t") else episode.t
        worker_index = _worker_index(env_runner)
        record: dict[str, Any] = {
            "episode_return": float(episode_return),
            "episode_length": int(length),
            "episode_duration_s": float(duration),
            "env_index": int(env_index),
            "worker_index": worker_index,
        }
        metrics = cls.metrics
        if metrics is not None:
            self._add_metrics(record, metrics(episode), metrics)
        cls.pipeline(worker_index).write(record)

    def on_sample_end(self, *, env_runner: Any = None, **kwargs: Any) -> None:
        """With a hub: ships what this EnvRunner's sender holds and waits for the hub's
        acknowledgement, so the episodes of a `sample()` are at the hub when it returns."""
        cls = type(self)
        if cls.hub is not None:
            sender = _PIPELINES.get(f"{cls._token}/{_worker_index(env_runner)}")
            if sender is not None:
                sender.flush()

    def on_train_result(self, *, result: Any = None, **kwargs: Any) -> None:
        """With a hub and `per_iteration`: flushes the hub (one window per iteration)."""
        cls = type(self)
        if cls.hub is not None and cls.per_iteration and not cls.evaluation:
            cls._flush_hub(cls.hub)

    def on_evaluate_end(self, *, evaluation_metrics: Any = None, **kwargs: Any) -> None:
        """With a hub, `per_iteration` and `evaluation`: flushes the hub after each
        evaluation."""
        cls = type(self)
        if cls.hub is not None and cls.per_iteration and cls.evaluation:
            cls._flush_hub(cls.hub)

    @classmethod
    def _flush_hub(cls, hub: _HubSenders) -> None:
        """Flushes the hub; a hub that cannot be flushed (dead, closed, too slow) does not
        stop training: counted in `counts["unflushed"]`, warned about once per kind."""
        try:
            hub.flush()
        except Exception as error:
            cls.counts.note(
                "unflushed",
                f"EpisodeCallback could not flush the hub ({type(error).__name__}: "
                f"{first_line(error)}); training goes on, the hub's windows are not cut here",
                key=type(error).__name__,
                stacklevel=4,
            )

    def _add_metrics(
        self, record: dict[str, Any], values: Any, metrics: Callable[..., Any]
    ) -> None:
        if not isinstance(values, Mapping):
            raise TypeError(
                f"EpisodeCallback metrics function {getattr(metrics, '__name__', metrics)!r} "
                f"must return a mapping of names to values, got {type(values).__name__}"
            )
        for key, value in values.items():
            if key in record:
                type(self).counts.note(
                    "overwritten",
                    f"the metrics function returned {key!r}={shown(value)}, the name of one of "
                    "the episode's own keys; the episode's value is written under it",
                    key=key,
                    stacklevel=4,
                )
                continue
            record[key] = value


def _worker_index(env_runner: Any) -> int:
    """The EnvRunner's index (0: the local one, or none known)."""
    return int(getattr(env_runner, "worker_index", None) or 0)


class _HubSenders:
    """What a class bound to a Hub carries (picklable: the hub's actor handle and its senders'
    settings): called in an EnvRunner's process, it makes that EnvRunner's sender."""

    __slots__ = ("actor", "settings")

    def __init__(self, hub: Hub) -> None:
        self.actor: Any = hub.actor
        self.settings: SenderSettings = hub.settings

    def __call__(self, worker_index: int) -> Node:
        return HubSender(self.actor, {"worker_index": worker_index}, self.settings)

    def flush(self) -> None:
        """Flushes the hub's central pipeline (its aggregates emit their windows)."""
        ray = import_ray()
        ray.get(self.actor.flush.remote(), timeout=self.settings.flush_timeout)

    def __repr__(self) -> str:
        return f"hub {self.actor!r}"


class _CloseIn:
    """`cls.close()` in an EnvRunner's process (given to `foreach_env_runner`)."""

    __slots__ = ("cls",)

    def __init__(self, cls: type[EpisodeCallback]) -> None:
        self.cls = cls

    def __call__(self, env_runner: Any) -> None:
        self.cls.close()
