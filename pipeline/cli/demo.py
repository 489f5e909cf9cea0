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

The agent and its environment are in `pipeline.cli.demo_agent`. At the end the demo says what
it wrote and the `rlpipe plot` command that draws the run's learning curves.

A checkpoint (`checkpoint.pkl`: the agent, the counters and the loggers' state) is written to
the run folder after every evaluation round. Stopped by Ctrl-C or SIGTERM, the demo says how to
go on (`--resume --run-name NAME`), and a resumed run says where it resumes. A run folder is
one run: a fresh run under a name that already holds one is refused unless `--overwrite` is
given, which first removes what the earlier run wrote (CSV files, TensorBoard event files, the
offline Neptune run, the checkpoint), so no curve mixes two runs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import pickle
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

# first: it names the acme extra when Acme, dm_env or gymnasium is missing
from pipeline.cli.demo_agent import GymnasiumEnvironment, TabularQActor, cartpole_discretizer
from pipeline.cli.errors import BAD_INPUT, DEBUG_HELP, INTERRUPTED, fail, install_hint
from pipeline.cli.plot import default_output
from pipeline.cli.runfiles import read_table
from pipeline.core.names import smoothed_name, stat_name
from pipeline.core.node import Record
from pipeline.presets import LoggerFactory, make_logger_factory, neptune_missing_error
from sinks.base import Sink

PROG = "rlpipe demo"

CHECKPOINT = "checkpoint.pkl"
"""The file in the run folder that `--resume` goes on from."""

RUN_OUTPUTS = ("train.csv", "eval.csv", CHECKPOINT, "tensorboard", ".neptune")
"""What a run writes in its folder (what `--overwrite` removes)."""


RETURN = "episode_return"
"""The key Acme's EnvironmentLoop writes an episode's return under."""

EVAL_RETURN = stat_name(RETURN, "mean")
"""The eval loop's aggregated return: the mean over one evaluation round."""


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
        prog=PROG,
        description="Q-learning on CartPole in an Acme EnvironmentLoop, logged through rlpipe "
        "to the terminal, CSV files, TensorBoard event files and an offline Neptune run. A "
        f"checkpoint ({CHECKPOINT}) is written after every evaluation round: --resume goes on "
        "from it.",
        epilog=DEBUG_HELP,
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
        help="this run's folder under --out (demo-<date>-<time>); one that already holds a run "
        "needs --resume or --overwrite",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument(
        "--smoothing",
        type=float,
        default=0.99,
        help="EMA coefficient of the train return (0.99: about the last 100 episodes)",
    )
    parser.add_argument("--no-neptune", action="store_true", help="do not log to Neptune")
    parser.add_argument(
        "--tensorboard",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write TensorBoard event files under <run>/tensorboard (default: when the "
        "tensorboard extra is installed)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    run_state = parser.add_mutually_exclusive_group()
    run_state.add_argument(
        "--resume",
        action="store_true",
        help=f"go on from the run's last checkpoint (<run>/{CHECKPOINT}, written after every "
        "evaluation round), after Ctrl-C, SIGTERM or a crash: needs --run-name",
    )
    run_state.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh under a --run-name that already holds a run: first removes its CSV "
        "files, TensorBoard event files, offline Neptune run and checkpoint",
    )
    args = parser.parse_args(list(argv))
    for name in ("episodes", "eval_every", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.smoothing < 1:
        parser.error("--smoothing must be in [0, 1)")
    if args.resume and args.run_name is None:
        parser.error("--resume needs the --run-name of the run to go on with")
    if args.run_name is None:
        args.run_name = time.strftime("demo-%Y%m%d-%H%M%S")
    if not args.run_name or os.sep in args.run_name or args.run_name in (".", ".."):
        parser.error("--run-name must be a plain folder name")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the demo; returns the exit status: 0 done; 2 (one line on stderr, nothing
    created) for a `--resume` without a checkpoint or a fresh run under a name that holds one
    without `--overwrite`; 130 after Ctrl-C and 143 after SIGTERM, with how to go on."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    run_dir = os.path.join(args.out, args.run_name)
    checkpoint = None
    if args.resume:
        if not os.path.isfile(os.path.join(run_dir, CHECKPOINT)):
            where = "none was written yet" if os.path.isdir(run_dir) else "no such run folder"
            return fail(
                PROG,
                f"--resume: no checkpoint to go on from in {run_dir} ({where}; one is written "
                "after every evaluation round)",
                BAD_INPUT,
            )
        checkpoint = _load_checkpoint(run_dir)
    else:
        earlier = [name for name in RUN_OUTPUTS if os.path.lexists(os.path.join(run_dir, name))]
        if earlier and not args.overwrite:
            return fail(
                PROG,
                f"{run_dir} already holds a run ({', '.join(earlier)}): go on with it with "
                "--resume, start it afresh with --overwrite, or choose another --run-name",
                BAD_INPUT,
            )
        for name in earlier:
            _remove(os.path.join(run_dir, name))
    os.makedirs(run_dir, exist_ok=True)
    bar = _progress_bar(args)
    stream: TextIO | None = _TqdmStream(type(bar)) if bar is not None else None  # type: ignore[assignment]
    neptune = _neptune_options(args, run_dir)
    tensorboard = _tensorboard_dir(args, run_dir)
    smoothed = smoothed_name(RETURN, args.smoothing)
    factory = make_logger_factory(
        state=None if checkpoint is None else checkpoint["logging"],
        directory=run_dir,
        csv_mode="w" if checkpoint is None else "a",
        neptune=neptune,
        terminal_stream=stream,
        per_label={
            "train": {
                "smoothing_regex": "return",
                "smoothing_coeff": args.smoothing,
                "time_delta": 0.0,
                "terminal_time_delta": 0.5,
                "extra_sinks": [
                    *([ProgressSink(bar, {smoothed: "return"})] if bar else []),
                    *_tensorboard_sinks(tensorboard, "train", "steps"),
                ],
            },
            "eval": {
                "aggregate_regex": "return",
                "aggregate_every": args.eval_episodes,
                "extra_sinks": [
                    *([ProgressSink(bar, {EVAL_RETURN: "eval"})] if bar else []),
                    *_tensorboard_sinks(tensorboard, "eval", "train_steps"),
                ],
            },
        },
    )
    print(banner(args, run_dir, checkpoint), flush=True)
    started = time.monotonic()
    try:
        train_episodes = run(args, factory, bar, checkpoint, run_dir)
    except KeyboardInterrupt:
        stopped = "interrupted"
    except SystemExit as stop:
        if stop.code != 128 + signal.SIGTERM:  # rlpipe's SIGTERM handler exits with 143
            raise
        stopped = "stopped by SIGTERM"
    else:
        stopped = ""
    finally:
        factory.close()
        if bar is not None:
            bar.close()
    if stopped:
        status = INTERRUPTED if stopped == "interrupted" else 128 + signal.SIGTERM
        return fail(PROG, f"{stopped}; {resume_hint(args, run_dir)}", status)
    elapsed = time.monotonic() - started
    print(f"done: {train_episodes} train episodes in {elapsed:.1f} s", flush=True)
    print(summary(run_dir, smoothed, neptune, tensorboard), flush=True)
    return 0


def banner(args: argparse.Namespace, run_dir: str, checkpoint: dict[str, Any] | None) -> str:
    """The first line: what runs, where it writes, and for a resumed run where it resumes."""
    what = (
        f"{PROG}: tabular Q-learning on CartPole-v1, {args.episodes} train episodes, "
        f"{args.eval_episodes} eval episodes every {args.eval_every}"
    )
    if checkpoint is None:
        return f"{what}; writing to {run_dir}"
    done = checkpoint["episodes"]
    if done >= args.episodes:
        return (
            f"{what}; {run_dir} already has {done} train episodes (its checkpoint): nothing to "
            "do (raise --episodes to go on)"
        )
    return (
        f"{what}; resuming {run_dir} from its checkpoint after {done} train episodes: "
        f"episodes {done + 1}-{args.episodes} to go"
    )


def resume_hint(args: argparse.Namespace, run_dir: str) -> str:
    """What to run to go on after a stop: `--resume` from the last checkpoint, or, when none
    was written yet, the same command with `--overwrite`."""
    options = ["--run-name", args.run_name]
    if args.out != "runs":
        options += ["--out", args.out]
    for name, default in (("episodes", 300), ("eval_every", 25), ("eval_episodes", 10)):
        if getattr(args, name) != default:
            options += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        command = shlex.join(["rlpipe", "demo", "--overwrite", *options])
        return f"no checkpoint was written yet (one follows every evaluation round): {command}"
    done = _load_checkpoint(run_dir)["episodes"]
    command = shlex.join(["rlpipe", "demo", "--resume", *options])
    return f"to go on from the checkpoint after {done} train episodes: {command}"


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def _load_checkpoint(run_dir: str) -> dict[str, Any]:
    with open(os.path.join(run_dir, CHECKPOINT), "rb") as handle:
        state: dict[str, Any] = pickle.load(handle)  # the demo's own file
    return state


def _save_checkpoint(run_dir: str, state: dict[str, Any]) -> None:
    """Writes the checkpoint atomically: a crash leaves the previous one whole."""
    path = os.path.join(run_dir, CHECKPOINT)
    with open(path + ".tmp", "wb") as handle:
        pickle.dump(state, handle)
    os.replace(path + ".tmp", path)


def run(
    args: argparse.Namespace,
    factory: LoggerFactory,
    bar: Any,
    checkpoint: dict[str, Any] | None = None,
    run_dir: str | None = None,
) -> int:
    """Trains and evaluates from `checkpoint` (or the start), writing a checkpoint to
    `run_dir` after every evaluation round; returns the number of train episodes done."""
    import acme
    import gymnasium
    from acme.utils import counting

    train_env = GymnasiumEnvironment(gymnasium.make("CartPole-v1"), seed=args.seed)
    eval_env = GymnasiumEnvironment(gymnasium.make("CartPole-v1"), seed=args.seed + 1)
    grid = cartpole_discretizer()
    actor = TabularQActor(int(train_env.action_spec().num_values), grid, grid.shape, seed=args.seed)
    counter = counting.Counter()
    train_logger = factory("train", steps_key="steps")
    eval_logger = factory("eval", steps_key="train_steps")
    for logger in (train_logger, eval_logger):  # every sink keeps the run's settings
        logger.log_config(demo_config(args))
    train_loop = acme.EnvironmentLoop(
        train_env,
        actor,
        counter=counting.Counter(counter, "train", time_delta=0.0, return_only_prefixed=True),
        logger=train_logger,
    )
    eval_loop = acme.EnvironmentLoop(
        eval_env,
        actor.evaluation_actor(),
        counter=counting.Counter(counter, "eval", time_delta=0.0),
        logger=eval_logger,
        should_update=False,
    )
    done = 0
    if checkpoint is not None:
        done = checkpoint["episodes"]
        actor.restore(checkpoint["actor"])
        counter.restore(checkpoint["counter"])
        if bar is not None:
            bar.update(done)
    try:
        while done < args.episodes:
            chunk = min(args.eval_every, args.episodes - done)
            for _ in range(chunk):
                train_loop.run(num_episodes=1)
                if bar is not None:
                    bar.update(1)
            done += chunk
            eval_loop.run(num_episodes=args.eval_episodes)
            if run_dir is not None:
                _save_checkpoint(
                    run_dir,
                    {
                        "episodes": done,
                        "actor": actor.save(),
                        "counter": counter.save(),
                        "logging": factory.state_dict(),
                    },
                )
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
    }


def demo_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings, given to every logger's `log_config` (the CSV files' config
    JSON beside them, the terminal, Neptune's `config/` fields)."""
    return {
        "env": "CartPole-v1",
        "agent": "tabular Q-learning",
        "episodes": args.episodes,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "seed": args.seed,
        "smoothing": args.smoothing,
    }


def _tensorboard_dir(args: argparse.Namespace, run_dir: str) -> str | None:
    """Where the TensorBoard event files go, or None: with --tensorboard, or by default when
    the tensorboard extra is installed (said on stderr when asked for and missing)."""
    installed = importlib.util.find_spec("tensorboard") is not None
    if args.tensorboard is False or (args.tensorboard is None and not installed):
        return None
    if not installed:
        print(
            "rlpipe demo: TensorBoard logging skipped: the tensorboard package is not "
            f"installed: {install_hint('tensorboard')}",
            file=sys.stderr,
        )
        return None
    return os.path.join(run_dir, "tensorboard")


def _tensorboard_sinks(folder: str | None, label: str, step_key: str) -> list[Sink]:
    """A TensorBoardSink for one logger, or none."""
    if folder is None:
        return []
    from sinks.tensorboard import TensorBoardSink

    return [TensorBoardSink(os.path.join(folder, label), step_key=step_key)]


def summary(
    run_dir: str, smoothed: str, neptune: dict[str, Any] | bool, tensorboard: str | None = None
) -> str:
    """Where everything was written, with the learning curve's start and end read back from
    the CSV files, and the `rlpipe plot` command that draws the run."""
    lines = ["written:"]
    train_csv = os.path.join(run_dir, "train.csv")
    eval_csv = os.path.join(run_dir, "eval.csv")
    train = _column(train_csv, smoothed)
    evals = _column(eval_csv, EVAL_RETURN)
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
    if tensorboard is not None:
        lines.append(
            f"  {tensorboard}  (TensorBoard event files; to look at them: "
            f"tensorboard --logdir {shlex.quote(tensorboard)})"
        )
    lines.append(
        f"to draw the learning curves ({default_output([run_dir])}): {plot_command(run_dir)}"
    )
    return "\n".join(lines)


def plot_command(run_dir: str) -> str:
    """The `rlpipe plot` command line that draws the run in `run_dir`."""
    return f"rlpipe plot {shlex.quote(run_dir)}"


def _column(path: str, key: str) -> list[float]:
    """The finite values of column `key` of a run file (none when the file or key is absent)."""
    if not os.path.exists(path):
        return []
    values = read_table(path).columns.get(key)
    return [] if values is None else values[np.isfinite(values)].tolist()


__all__ = [
    "CHECKPOINT",
    "RUN_OUTPUTS",
    "ProgressSink",
    "banner",
    "main",
    "parse_args",
    "plot_command",
    "resume_hint",
    "run",
    "summary",
]
