"""`rlpipe demo`: an Acme EnvironmentLoop whose metrics flow through rlpipe.

A tabular Q-learning agent (numpy, an `acme.core.Actor`) learns gymnasium's CartPole-v1, seen
through a small dm_env adapter. Two Acme EnvironmentLoops share the agent's Q-table:

- the train loop (epsilon-greedy, learning) logs every episode through smoothing (EMA of the
  return) to `<out>/<run-name>/train.csv` and Neptune, and to the terminal at most twice a
  second;
- the eval loop (greedy, not learning) runs `--eval-episodes` episodes every `--eval-every`
  train episodes and logs one aggregated record per round (mean/std/median/max/min of the
  return) to `eval.csv`, Neptune and the terminal.

Neptune runs offline (no account, no network): its data goes under `<out>/<run-name>/.neptune`,
the folder name neptune 1.x's `neptune sync --path <out>/<run-name>` looks for.
The loggers come from `pipeline.integrations.acme.make_logger_factory`.

Why CartPole behind an adapter rather than bsuite's Catch: gymnasium (pure Python plus numpy,
cloudpickle) is a far lighter install than bsuite, which pulls pandas, plotnine, statsmodels and
scikit-image; CartPole is the environment RL users know; and a tabular agent over the pole's
angle and angular velocity learns it in a few hundred episodes (returns from ~20 to 500).
Acme 0.2.4's own `acme.wrappers` cannot be used: it needs chex, and its GymWrapper predates
gymnasium 1.x's five-value `step`.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import numpy as np

try:
    import acme
    import dm_env
    import gymnasium
    from acme.utils import counting
    from dm_env import specs
except ImportError as error:  # pragma: no cover - the acme extra is installed in CI
    raise ImportError(
        f"`rlpipe demo` needs dm-acme, dm-env and gymnasium: pip install 'rlpipe[acme]' ({error})"
    ) from error

from pipeline.core.node import Record
from pipeline.presets import LoggerFactory, make_logger_factory, neptune_missing_error
from sinks.base import Sink

# -- the environment: gymnasium behind dm_env ------------------------------------------------


class GymnasiumEnvironment(dm_env.Environment):
    """A gymnasium environment with a Box observation space and a Discrete action space, as a
    dm_env.Environment: `reset()` gives a FIRST timestep, `step()` MID timesteps and a LAST one
    when the episode terminates (discount 0) or is truncated (discount 1); stepping after a
    LAST timestep starts a new episode, as dm_env requires. Rewards are float64 scalars."""

    def __init__(self, env: Any, seed: int | None = None) -> None:
        if not isinstance(env.action_space, gymnasium.spaces.Discrete):
            raise ValueError(f"needs a Discrete action space, got {env.action_space}")
        if not isinstance(env.observation_space, gymnasium.spaces.Box):
            raise ValueError(f"needs a Box observation space, got {env.observation_space}")
        self._env = env
        self._seed = seed
        self._needs_reset = True
        space = env.observation_space
        self._observation_spec = specs.BoundedArray(
            space.shape, space.dtype, space.low, space.high, name="observation"
        )
        self._action_spec = specs.DiscreteArray(int(env.action_space.n), name="action")

    def reset(self) -> dm_env.TimeStep:
        observation, _ = self._env.reset(seed=self._seed)
        self._seed = None  # seed the first episode only; later ones continue the stream
        self._needs_reset = False
        return dm_env.restart(observation)

    def step(self, action: Any) -> dm_env.TimeStep:
        if self._needs_reset:
            return self.reset()
        observation, reward, terminated, truncated, _ = self._env.step(int(action))
        reward = float(reward)
        if terminated:
            self._needs_reset = True
            return dm_env.termination(reward, observation)
        if truncated:
            self._needs_reset = True
            return dm_env.truncation(reward, observation)
        return dm_env.transition(reward, observation)

    def observation_spec(self) -> specs.BoundedArray:
        return self._observation_spec

    def action_spec(self) -> specs.DiscreteArray:
        return self._action_spec

    def close(self) -> None:
        self._env.close()


# -- the agent: tabular Q-learning -----------------------------------------------------------


class Discretizer:
    """Maps an observation vector to a cell of a grid: per dimension, the index of the bin
    (given by its inner edges) the value falls in. A dimension with no edges is ignored."""

    def __init__(self, edges: Sequence[Sequence[float] | np.ndarray]) -> None:
        self.edges = [np.asarray(e, dtype=np.float64) for e in edges]
        self.shape = tuple(len(e) + 1 for e in self.edges)

    def __call__(self, observation: np.ndarray) -> tuple[int, ...]:
        return tuple(
            int(np.searchsorted(edges, observation[i])) if len(edges) else 0
            for i, edges in enumerate(self.edges)
        )


def cartpole_discretizer() -> Discretizer:
    """CartPole's grid: the cart's position and speed ignored, the pole's angle in 6 bins within
    +-0.21 rad (the failure angle), its angular velocity in 12 bins within +-2 rad/s."""
    return Discretizer(
        [[], [], np.linspace(-0.21, 0.21, 7)[1:-1], np.linspace(-2.0, 2.0, 13)[1:-1]]
    )


class TabularQActor(acme.core.Actor):
    """Q-learning over a discretized observation, as an Acme Actor.

    `select_action` is epsilon-greedy (ties broken towards action 0); `observe` records the
    transition; `update` applies one Q-learning step to it (the EnvironmentLoop calls `update`
    only when `should_update=True`, so an evaluation loop does not learn). Epsilon and the
    learning rate decay per episode: eps_k = max(min_epsilon, epsilon_decay^k), alpha_k =
    max(min_learning_rate, learning_rate_decay^k).
    """

    def __init__(
        self,
        num_actions: int,
        discretize: Callable[[np.ndarray], tuple[int, ...]],
        grid_shape: tuple[int, ...],
        *,
        discount: float = 0.99,
        epsilon_decay: float = 0.97,
        min_epsilon: float = 0.0,
        learning_rate_decay: float = 0.98,
        min_learning_rate: float = 0.02,
        seed: int | None = None,
        q_table: np.ndarray | None = None,
        greedy: bool = False,
    ) -> None:
        self.q = np.zeros((*grid_shape, num_actions)) if q_table is None else q_table
        self.num_actions = num_actions
        self.discretize = discretize
        self.discount = discount
        self.epsilon_decay = epsilon_decay
        self.min_epsilon = min_epsilon
        self.learning_rate_decay = learning_rate_decay
        self.min_learning_rate = min_learning_rate
        self.greedy = greedy
        self.episodes = 0
        self._rng = np.random.default_rng(seed)
        self._state: tuple[int, ...] = ()
        self._transition: tuple[tuple[int, ...], int, float, float, tuple[int, ...]] | None = None

    @property
    def epsilon(self) -> float:
        """The exploration rate of the current episode (0 when greedy)."""
        if self.greedy:
            return 0.0
        return max(self.min_epsilon, self.epsilon_decay ** max(self.episodes - 1, 0))

    @property
    def learning_rate(self) -> float:
        """The step size of the current episode's updates."""
        return max(self.min_learning_rate, self.learning_rate_decay ** max(self.episodes - 1, 0))

    def evaluation_actor(self) -> TabularQActor:
        """A greedy actor reading this actor's Q-table (it sees the learning as it happens)."""
        return TabularQActor(
            self.num_actions, self.discretize, self.q.shape[:-1], q_table=self.q, greedy=True
        )

    def select_action(self, observation: np.ndarray) -> np.int32:
        if not self.greedy and self._rng.random() < self.epsilon:
            return np.int32(self._rng.integers(self.num_actions))
        return np.int32(np.argmax(self.q[self._state]))

    def observe_first(self, timestep: dm_env.TimeStep) -> None:
        self.episodes += 1
        self._state = self.discretize(timestep.observation)
        self._transition = None

    def observe(self, action: Any, next_timestep: dm_env.TimeStep) -> None:
        next_state = self.discretize(next_timestep.observation)
        self._transition = (
            self._state,
            int(action),
            float(next_timestep.reward),
            float(next_timestep.discount),
            next_state,
        )
        self._state = next_state

    def update(self, wait: bool = False) -> None:
        if self._transition is None:
            return
        state, action, reward, discount, next_state = self._transition
        self._transition = None
        target = reward + self.discount * discount * float(self.q[next_state].max())
        cell = (*state, action)
        self.q[cell] += self.learning_rate * (target - self.q[cell])


# -- progress --------------------------------------------------------------------------------


class _TqdmStream:
    """A text stream that prints through `tqdm.write`, so log lines do not tear the bar."""

    def __init__(self, tqdm_class: Any) -> None:
        self._tqdm = tqdm_class

    def write(self, text: str) -> int:
        self._tqdm.write(text.rstrip("\n"), file=sys.stdout)
        return len(text)

    def flush(self) -> None:
        sys.stdout.flush()


class ProgressSink(Sink):
    """Shows the latest value of some keys as the progress bar's postfix."""

    def __init__(self, bar: Any, keys: dict[str, str]) -> None:
        super().__init__()
        self.bar = bar
        self.keys = keys

    def write(self, data: Record) -> None:
        self._check_open()
        shown = {name: data[key] for key, name in self.keys.items() if key in data}
        if shown:
            self.bar.set_postfix(
                {name: f"{float(value):.1f}" for name, value in shown.items()}, refresh=False
            )


# -- the run ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The demo's options."""
    parser = argparse.ArgumentParser(
        prog="rlpipe demo",
        description="Q-learning on CartPole in an Acme EnvironmentLoop, logged through rlpipe "
        "to the terminal, CSV files and an offline Neptune run.",
    )
    parser.add_argument("--episodes", type=int, default=300, help="train episodes (300)")
    parser.add_argument(
        "--eval-every", type=int, default=25, help="train episodes between evaluations (25)"
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=10, help="episodes per evaluation round (10)"
    )
    parser.add_argument("--out", default="runs", help="directory of runs (./runs)")
    parser.add_argument(
        "--run-name",
        default=None,
        help="this run's folder under --out (demo-<date>-<time>); its CSV files are replaced",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument(
        "--smoothing", type=float, default=0.99, help="EMA coefficient of the train return"
    )
    parser.add_argument("--no-neptune", action="store_true", help="do not log to Neptune")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    args = parser.parse_args(list(argv))
    for name in ("episodes", "eval_every", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.smoothing < 1:
        parser.error("--smoothing must be in [0, 1)")
    if args.run_name is None:
        args.run_name = time.strftime("demo-%Y%m%d-%H%M%S")
    if not args.run_name or os.sep in args.run_name or args.run_name in (".", ".."):
        parser.error("--run-name must be a plain folder name")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the demo; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    run_dir = os.path.join(args.out, args.run_name)
    os.makedirs(run_dir, exist_ok=True)
    bar = _progress_bar(args)
    stream: TextIO | None = _TqdmStream(type(bar)) if bar is not None else None  # type: ignore[assignment]
    neptune = _neptune_options(args, run_dir)
    smoothed = f"episode_return_smoothed_{args.smoothing}"
    factory = make_logger_factory(
        directory=run_dir,
        csv_mode="w",
        neptune=neptune,
        terminal_stream=stream,
        per_label={
            "train": {
                "smoothing_regex": "return",
                "smoothing_coeff": args.smoothing,
                "time_delta": 0.0,
                "terminal_time_delta": 0.5,
                "extra_sinks": [ProgressSink(bar, {smoothed: "return"})] if bar else [],
            },
            "eval": {
                "aggregate_regex": "return",
                "aggregate_every": args.eval_episodes,
                "extra_sinks": [ProgressSink(bar, {"episode_return_mean": "eval"})] if bar else [],
            },
        },
    )
    print(
        f"rlpipe demo: tabular Q-learning on CartPole-v1, {args.episodes} train episodes, "
        f"{args.eval_episodes} eval episodes every {args.eval_every}; writing to {run_dir}",
        flush=True,
    )
    started = time.monotonic()
    try:
        train_episodes = run(args, factory, bar)
    finally:
        factory.close()
        if bar is not None:
            bar.close()
    elapsed = time.monotonic() - started
    print(f"done: {train_episodes} train episodes in {elapsed:.1f} s", flush=True)
    print(summary(run_dir, smoothed, neptune), flush=True)
    return 0


def run(args: argparse.Namespace, factory: LoggerFactory, bar: Any) -> int:
    """Trains and evaluates; returns the number of train episodes run."""
    train_env = GymnasiumEnvironment(gymnasium.make("CartPole-v1"), seed=args.seed)
    eval_env = GymnasiumEnvironment(gymnasium.make("CartPole-v1"), seed=args.seed + 1)
    grid = cartpole_discretizer()
    actor = TabularQActor(
        int(train_env.action_spec().num_values), grid, grid.shape, seed=args.seed
    )
    counter = counting.Counter()
    train_loop = acme.EnvironmentLoop(
        train_env,
        actor,
        counter=counting.Counter(counter, "train", time_delta=0.0, return_only_prefixed=True),
        logger=factory("train", steps_key="steps"),
    )
    eval_loop = acme.EnvironmentLoop(
        eval_env,
        actor.evaluation_actor(),
        counter=counting.Counter(counter, "eval", time_delta=0.0),
        logger=factory("eval", steps_key="train_steps"),
        should_update=False,
    )
    try:
        done = 0
        while done < args.episodes:
            chunk = min(args.eval_every, args.episodes - done)
            for _ in range(chunk):
                train_loop.run(num_episodes=1)
                if bar is not None:
                    bar.update(1)
            done += chunk
            eval_loop.run(num_episodes=args.eval_episodes)
        return done
    finally:
        train_env.close()
        eval_env.close()


def _progress_bar(args: argparse.Namespace) -> Any:
    """A tqdm bar over the train episodes when stdout is a terminal, else None (the throttled
    terminal lines are then the progress report)."""
    if args.no_progress or not sys.stdout.isatty():
        return None
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        return None
    return tqdm(total=args.episodes, unit="ep", desc="train", dynamic_ncols=True)


def _neptune_options(args: argparse.Namespace, run_dir: str) -> dict[str, Any] | bool:
    """NeptuneSink options for an offline run under `run_dir`, or False when disabled or when
    the Neptune client (the `neptune` package) is not installed (said on stderr; the demo
    then runs without it)."""
    if args.no_neptune:
        return False
    missing = neptune_missing_error()
    if missing is not None:
        print(f"rlpipe demo: Neptune logging skipped: {missing}", file=sys.stderr)
        return False
    return {
        "mode": "offline",
        # `neptune sync --path <run_dir>` only looks into a folder named `.neptune`
        "data_dir": os.path.join(run_dir, ".neptune"),
        "name": args.run_name,
        "tags": ["rlpipe-demo"],
        "config": {
            "env": "CartPole-v1",
            "agent": "tabular Q-learning",
            "episodes": args.episodes,
            "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes,
            "seed": args.seed,
        },
    }


def summary(run_dir: str, smoothed: str, neptune: dict[str, Any] | bool) -> str:
    """Where everything was written, with the learning curve's start and end read back from
    the CSV files."""
    lines = ["written:"]
    train_csv = os.path.join(run_dir, "train.csv")
    eval_csv = os.path.join(run_dir, "eval.csv")
    train = _column(train_csv, smoothed)
    evals = _column(eval_csv, "episode_return_mean")
    lines.append(f"  {train_csv}  ({len(train)} episodes)")
    if train:
        lines[-1] += f"  smoothed return {train[0]:.1f} -> {train[-1]:.1f}"
    lines.append(f"  {eval_csv}  ({len(evals)} evaluation rounds)")
    if evals:
        lines[-1] += f"  mean eval return {evals[0]:.1f} -> {evals[-1]:.1f}"
    if isinstance(neptune, dict):
        lines.append(
            f"  {neptune['data_dir']}  (offline Neptune run; to upload it: "
            f"neptune sync --path {run_dir} --project <workspace/project>)"
        )
    return "\n".join(lines)


def _column(path: str, key: str) -> list[float]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        return [
            float(row[key]) for row in csv.DictReader(handle) if row.get(key) not in (None, "")
        ]


__all__ = [
    "Discretizer",
    "GymnasiumEnvironment",
    "ProgressSink",
    "TabularQActor",
    "cartpole_discretizer",
    "main",
]
