"""Stable-Baselines3 adapter: SB3's logger dumps go into an rlpipe pipeline.

    from stable_baselines3 import PPO
    from pipeline import Pipeline
    from pipeline.integrations.sb3 import attach
    from sinks import CsvSink

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=256, verbose=1)
    logger = Pipeline("sb3").smooth(r"rollout/ep_rew_mean").to(CsvSink("runs/ppo.csv"))
    attach(model, logger)            # SB3's own outputs (stdout, TensorBoard, ...) stay
    model.learn(total_timesteps=5_000)
    logger.close()                   # the pipeline's owner closes it (not the model's logger)

`PipelineWriter` is a real `stable_baselines3.common.logger.KVWriter`: SB3's `Logger.dump(step)`
hands it every key recorded since the last dump, and it writes them to the pipeline as one
record, with the step under `step_key`.

`EpisodeCallback` is a real `stable_baselines3.common.callbacks.BaseCallback`: it writes one
record per finished episode, as `Monitor` (or `VecMonitor`) reports it:

    episodes = Pipeline("episodes").to(CsvSink("runs/ppo/episodes.csv"))
    model.learn(total_timesteps=5_000, callback=EpisodeCallback(episodes))
    episodes.close()

Importing this module imports Stable-Baselines3 (`pip install 'rlpipe[sb3]'`); `pipeline`
itself never imports it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pipeline.core import media
from pipeline.core.counts import Counts
from pipeline.core.node import ClosedError, Node
from pipeline.core.values import plain, shown, to_float

try:
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import (
        Figure,
        FormatUnsupportedError,
        HParam,
        Image,
        KVWriter,
        Video,
    )
except ImportError as error:  # pragma: no cover - the CI installs every extra
    raise ImportError(
        "pipeline.integrations.sb3 needs Stable-Baselines3: pip install 'rlpipe[sb3]'"
    ) from error

__all__ = ["DEFAULT_FORMATS", "EPISODE_KEYS", "EpisodeCallback", "PipelineWriter", "attach"]

DEFAULT_FORMATS: tuple[str, ...] = ("pipeline", "csv")
"""The SB3 output-format names a `PipelineWriter` answers to by default: a key recorded with
`exclude="pipeline"` or `exclude="csv"` stays out of the pipeline, so the pipeline gets what
SB3's own CSV file gets; videos, figures, images and hparams, which SB3's CSV cannot take,
are kept out only by an exclusion naming "pipeline" (see `PipelineWriter`)."""

_SB3_VALUES = (Video, Figure, Image, HParam, th.Tensor)
"""SB3 value types the writer turns into rlpipe's (the others go as they are)."""

_RICH = (Video, Figure, Image, HParam)
_TEXT_FORMATS = frozenset({"stdout", "log", "json", "csv"})
"""SB3's formats that refuse videos, figures, images and hparams: excluding one of those
values from them (as SB3's docs do) is no reason to keep it from the pipeline."""


class PipelineWriter(KVWriter):
    """An SB3 `KVWriter` that writes each logger dump to a pipeline as one record.

    Guarantees:

    - Every key SB3 dumps reaches the pipeline once per dump, in SB3's order, with its value
      as recorded (numbers stay numbers: ints, floats, numpy scalars), except keys whose
      `exclude=` names one of `formats`. The test is SB3's own (`filter_excluded_keys`):
      a key is excluded when `name in excluded` for one of this writer's format names, with
      `excluded` a tuple of names (`record(..., exclude=("pipeline", "json"))`) or one name
      (`exclude="pipeline"`); see `DEFAULT_FORMATS`.
    - The dump's step (`num_timesteps` for SB3's algorithms) is written under `step_key`,
      first in the record. A recorded key of the same name is dropped when it holds the step
      itself (a number equal to it); any other value (another number, a string, an array
      such as `np.array([1, 2])`) clashes with the step: the step wins, and the clash is
      counted in `counts["overwritten"]` and warned about once.
    - A dump that leaves this writer no key (all excluded, or none recorded) writes nothing,
      as SB3's stdout and TensorBoard formats do (its CSV format writes a row of empty
      cells, its JSON format `{}`).
    - SB3's rich values become rlpipe's, which each sink keeps its own way (docs/sinks.md):
      an `Image` becomes a `pipeline.Image` (its `dataformats` read: `HWC`, `CHW`, `HW`,
      `NCHW`, ...; several images side by side, left to right), a `Figure` a
      `pipeline.Image` of the figure (drawn at once, then closed if `close=True`), a `Video`
      (frames `(N, T, C, H, W)`, as SB3's TensorBoard format takes them) a `pipeline.Video`
      at its fps (several videos side by side); a torch tensor becomes a numpy array (an
      array, such as a histogram's values, goes as it is); an `HParam`'s hyperparameters go
      to the pipeline's `log_config` (its `metric_dict`, placeholders for TensorBoard's
      HPARAMS tab, is not written: the metrics are the recorded keys). An `Image` given as
      a text (a Caffe2 blob name) raises SB3's own `FormatUnsupportedError`. These values
      are kept out only by an `exclude=` naming one of `formats` other than SB3's text
      formats ("stdout", "log", "json", "csv", which cannot take them: SB3's docs record
      them with `exclude=("stdout", "log", "json", "csv")`), such as "pipeline".
    - The writer does not flush the pipeline on each dump: the pipeline's nodes and sinks
      keep their own policies (so `.aggregate(every=10)` aggregates 10 dumps). `flush()`
      flushes it.
    - Ownership: the pipeline belongs to whoever made it, and may be shared by several
      writers (two models logging into one file). `close()` (called by SB3's
      `Logger.close()`) ends this writer: it flushes the pipeline and leaves it open for the
      others; the owner closes the pipeline (`pipeline.close()`, or at interpreter exit).
      With `close_pipeline=True` the writer owns the pipeline and `close()` closes it. A
      closed writer refuses further dumps with `ClosedError`; `close()` is idempotent.
    """

    def __init__(
        self,
        pipeline: Node,
        step_key: str = "timesteps",
        *,
        formats: Iterable[str] = DEFAULT_FORMATS,
        close_pipeline: bool = False,
    ) -> None:
        if not isinstance(pipeline, Node):
            raise ValueError(
                f"pipeline must be an rlpipe Node or Pipeline, got {type(pipeline).__name__}"
            )
        if not isinstance(step_key, str) or not step_key:
            raise ValueError(f"step_key must be a non-empty string, got {step_key!r}")
        names = (formats,) if isinstance(formats, str) else tuple(formats)
        if not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"formats must be non-empty strings, got {names!r}")
        if not isinstance(close_pipeline, bool):
            raise ValueError(f"close_pipeline must be a bool, got {close_pipeline!r}")
        self.pipeline = pipeline
        self.step_key = step_key
        self.formats = frozenset(names)
        self._rich_formats = self.formats - _TEXT_FORMATS
        self.close_pipeline = close_pipeline
        self.closed = False
        self.counts = Counts("rlpipe PipelineWriter")

    def write(
        self,
        key_values: dict[str, Any],
        key_excluded: dict[str, tuple[str, ...]],
        step: int = 0,
    ) -> None:
        """Writes one SB3 dump to the pipeline as `{step_key: step, **kept key_values}`."""
        if self.closed:
            raise ClosedError(f"{self!r} is closed; it writes no more dumps")
        record: dict[str, Any] = {self.step_key: step}
        formats = self.formats
        kept = 0
        for key, value in key_values.items():
            excluded = key_excluded.get(key)
            # SB3's rule: `excluded` is a tuple of format names or a bare name, tested by `in`
            if excluded is not None and any(
                name in excluded
                for name in (self._rich_formats if isinstance(value, _RICH) else formats)
            ):
                continue
            kept += 1
            if isinstance(value, _SB3_VALUES):
                value = self._converted(value)
                if value is None:  # an HParam: given to log_config
                    kept -= 1
                    continue
            if key == self.step_key:
                if not _is_step(value, step):
                    self.counts.note(
                        "overwritten",
                        f"SB3 recorded {key!r}={shown(value)}, the name of the step key; "
                        f"the step ({step}) is written under it instead",
                        key=key,
                    )
                continue
            record[key] = value
        if kept:
            self.pipeline.write(record)

    def _converted(self, value: Any) -> Any:
        """An SB3 rich value as rlpipe's (see the class's docstring); None for an HParam."""
        if isinstance(value, th.Tensor):
            return _numpy(value).copy()
        if isinstance(value, HParam):
            self.pipeline.log_config(dict(value.hparam_dict))
            return None
        if isinstance(value, Figure):
            image = media.Image(value.figure)
            # drawn now, as SB3's formats draw it at the dump: the caller may change or close
            # its figure afterwards
            image.array  # noqa: B018
            if value.close:
                import matplotlib.pyplot as plt

                plt.close(value.figure)
            return image
        if isinstance(value, Image):
            if isinstance(value.image, str):
                raise FormatUnsupportedError(sorted(self.formats), "image given as a text")
            return media.Image(_as_hwc(_numpy(value.image), value.dataformats))
        frames = _numpy(value.frames)
        if frames.ndim == 5:  # (N, T, C, H, W): the videos side by side
            frames = np.concatenate(list(frames), axis=-1)
        if frames.ndim != 4:
            raise ValueError(
                f"SB3 Video frames must be (N, T, C, H, W) or (T, C, H, W), got {frames.shape}"
            )
        return media.Video(frames.transpose(0, 2, 3, 1), fps=value.fps)

    def flush(self) -> None:
        """Flushes the pipeline (its aggregates emit, its sinks write out)."""
        self.pipeline.flush()

    def close(self) -> None:
        """Ends this writer: flushes the pipeline, or closes it if the writer owns it
        (`close_pipeline=True`); safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self.close_pipeline:
            self.pipeline.close()
        elif not self.pipeline.closed:
            self.pipeline.flush()

    def __repr__(self) -> str:
        return f"PipelineWriter({self.pipeline!r}, step_key={self.step_key!r})"


def _numpy(value: Any) -> np.ndarray:
    """A tensor's or array's values as a numpy array: a sparse tensor made dense; a dtype
    numpy has no form for (bfloat16, the float8s; complex32) as float32 (complex64), which
    holds each of its values exactly."""
    if not isinstance(value, th.Tensor):
        return np.asarray(value)
    tensor = value.detach().cpu()
    if tensor.layout != th.strided:
        tensor = tensor.to_dense()
    try:
        return tensor.numpy()
    except TypeError:  # numpy has no such dtype
        return tensor.to(th.complex64 if tensor.is_complex() else th.float32).numpy()


def _as_hwc(image: np.ndarray, dataformats: str) -> np.ndarray:
    """An image laid out as `dataformats` says (letters N, C, H, W, as TensorBoard's
    `add_image` takes them) as (H, W) or (H, W, C); several (N > 1) side by side."""
    layout = str(dataformats).upper()
    if sorted(layout) not in (sorted(kind) for kind in ("HW", "CHW", "NCHW", "NHW")) or (
        len(layout) != image.ndim
    ):
        raise ValueError(
            f"SB3 Image dataformats {dataformats!r} does not fit an image of shape "
            f"{image.shape}: use letters N, C, H, W, one each, as many as the image's axes"
        )
    wanted = [axis for axis in "NHWC" if axis in layout]
    image = image.transpose([layout.index(axis) for axis in wanted])
    if "N" in layout:
        image = np.concatenate(list(image), axis=1)
    return image


def _is_step(value: Any, step: int) -> bool:
    """True when `value` is a number exactly equal to `step` (ints beyond 2**53 compared as
    ints, not as the floats nearest them); False for anything else (a string, an array of
    several values), without ever asking an array for its truth value."""
    if to_float(value) is None:
        return False
    number = plain(value)
    return isinstance(number, (int, float)) and number == step


def attach(
    model: Any,
    pipeline: Node,
    step_key: str = "timesteps",
    *,
    close_pipeline: bool = False,
    state: Mapping[str, Any] | None = None,
) -> PipelineWriter:
    """Adds a `PipelineWriter` to `model`'s SB3 logger, next to SB3's own outputs; returns it.

    - If the model already has a custom logger (`model.set_logger(...)`), the writer is
      appended to its output formats.
    - Otherwise SB3 would build its logger inside `learn()`. `attach` builds that same logger
      now, with SB3's own `configure_logger(model.verbose, model.tensorboard_log, <the
      algorithm's default tb_log_name>)` (stdout when `verbose >= 1`, TensorBoard when
      `tensorboard_log` is set), adds the writer, and installs it with `model.set_logger`.
      As with any `set_logger`, later `learn()` calls keep that logger (and its TensorBoard
      run folder) instead of making a new one.

    The writer is not saved with the model (`model.save` leaves loggers out): call `attach`
    again after `PPO.load(...)`. One pipeline may be attached to several models: closing a
    model's logger flushes the pipeline and leaves it open; close it yourself when every
    model is done (`close_pipeline=True` hands that to the model's logger instead).

    Resuming: save `pipeline.state_dict()` next to `model.save(...)`; after `PPO.load(...)`,
    pass it as `state=` with a pipeline built as before: the pipeline goes on from the
    checkpoint (its files cut back to it, its moving averages and windows restored).
    """
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.utils import configure_logger

    if not isinstance(model, BaseAlgorithm):
        raise ValueError(f"model must be a Stable-Baselines3 algorithm, got {type(model).__name__}")
    if state is not None:
        pipeline.load_state_dict(dict(state))
    writer = PipelineWriter(pipeline, step_key=step_key, close_pipeline=close_pipeline)
    if not getattr(model, "_custom_logger", False):
        parameter = inspect.signature(model.learn).parameters.get("tb_log_name")
        tb_log_name = type(model).__name__ if parameter is None else parameter.default
        model.set_logger(
            configure_logger(model.verbose, model.tensorboard_log, str(tb_log_name), True)
        )
    model.logger.output_formats.append(writer)
    return writer


EPISODE_KEYS: tuple[str, ...] = ("episode_return", "episode_length", "episode_time", "env_index")
"""The keys `EpisodeCallback` writes after its step key, in this order."""


class EpisodeCallback(BaseCallback):
    """An SB3 callback that writes one record per finished episode to a pipeline.

    After every vectorized step it looks at each env whose `dones[i]` is set and reads the
    episode `Monitor` (or `VecMonitor`) put in `infos[i]["episode"]`; its record is, in order:

    - `step_key` (default `"timesteps"`): the model's `num_timesteps` after that step (every
      env's step counted, so with `n_envs` envs it grows by `n_envs` per step);
    - `episode_return`: Monitor's `r`, the sum of the episode's rewards rounded to 6 decimals;
    - `episode_length`: Monitor's `l`, its number of steps (an int);
    - `episode_time`: Monitor's `t`, the wall time in seconds from the Monitor's start (its
      creation, the `t_start` in the first line of monitor.csv) to the episode's end, rounded
      to 6 decimals. It is not the episode's duration: that is the difference between
      consecutive `episode_time`s of one env;
    - `env_index`: the index of the env in the vectorized env (`infos[i]`'s `i`);
    - then every other field Monitor put there (its `info_keywords` and `reset_keywords`),
      under its own name.

    The values are Monitor's own, unconverted: the records equal the rows Monitor writes to
    its monitor.csv. Episodes ending in the same step give one record each, in env order.

    Guarantees:

    - A Monitor field named like one of the keys above clashes with it: the callback's value
      wins, and the clash is counted in `counts["overwritten"]` and warned about once.
    - An env that finishes an episode with no `"episode"` in its info (not wrapped in a
      `Monitor`) has nothing to record: the episode is counted in `counts["lost"]` and
      warned about once. Training goes on.
    - The callback neither flushes nor closes the pipeline: the pipeline's own policies apply,
      and whoever made it closes it (`pipeline.close()` after `learn`).
    """

    def __init__(self, pipeline: Node, step_key: str = "timesteps", verbose: int = 0) -> None:
        if not isinstance(pipeline, Node):
            raise ValueError(
                f"pipeline must be an rlpipe Node or Pipeline, got {type(pipeline).__name__}"
            )
        if not isinstance(step_key, str) or not step_key:
            raise ValueError(f"step_key must be a non-empty string, got {step_key!r}")
        super().__init__(verbose)
        self.pipeline = pipeline
        self.step_key = step_key
        self.counts = Counts("rlpipe EpisodeCallback")
        self._names = frozenset((step_key, *EPISODE_KEYS))

    def _on_step(self) -> bool:
        dones = self.locals.get("dones")
        if dones is None or not np.any(dones):
            return True
        infos = self.locals["infos"]
        for index in np.flatnonzero(dones).tolist():
            episode = infos[index].get("episode")
            if episode is None:
                self.counts.note(
                    "lost",
                    f"env {index} finished an episode without Monitor's info['episode']: "
                    "wrap the envs in stable_baselines3.common.monitor.Monitor (make_vec_env "
                    "does) or in a VecMonitor to have its episodes recorded",
                )
                continue
            self.pipeline.write(self._record(episode, index))
        return True

    def _record(self, episode: Mapping[str, Any], index: int) -> dict[str, Any]:
        record: dict[str, Any] = {
            self.step_key: self.num_timesteps,
            "episode_return": episode["r"],
            "episode_length": episode["l"],
            "episode_time": episode["t"],
            "env_index": index,
        }
        if len(episode) > 3:
            for key, value in episode.items():
                if key in ("r", "l", "t"):
                    continue
                if key in self._names:
                    self.counts.note(
                        "overwritten",
                        f"Monitor's episode field {key!r}={shown(value)} has the name of one "
                        "of the callback's own keys; the callback's value is written under it",
                        key=key,
                        stacklevel=4,
                    )
                    continue
                record[key] = value
        return record

    def __repr__(self) -> str:
        return f"EpisodeCallback({self.pipeline!r}, step_key={self.step_key!r})"
