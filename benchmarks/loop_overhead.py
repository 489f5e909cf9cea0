"""What logging costs inside a real Acme EnvironmentLoop: the demo's loop with no logging,
with the demo's train pipeline, and with Acme's own loggers, as a share of the loop's time.

    python benchmarks/loop_overhead.py [--episodes 300] [--repeat 5] [--quick] [--json PATH]

The loop is `rlpipe demo`'s train loop (pipeline.cli.demo_agent): CartPole-v1 from gymnasium
behind the demo's dm_env adapter, the tabular Q-learning actor learning as it goes, in
`acme.EnvironmentLoop` with the demo's counter; it runs `--episodes` episodes, then its
logger is closed. Every variant starts from the same seeds, so every variant runs the very
same episodes (checked: the same steps, the same returns in the CSV files). Variants:

- none: Acme's `NoOpLogger` (no logging at all);
- rlpipe: the demo's train logger, `make_logger("train", smoothing_regex="return",
  time_delta=0, terminal_time_delta=0.5, steps_key="steps", csv_mode="w")`: drop_none >
  smooth > the CSV file (every episode) and the terminal (at most one line per 0.5 s, to
  /dev/null), in a temporary folder;
- acme: the same from Acme's own loggers, built as `make_default_logger` builds its chain
  (NoneFilter > Dispatcher(serialize_fn=to_numpy) > TerminalLogger and CSVLogger), with the
  same throttle on the terminal (TimeFilter(0.5)) and none on the CSV file, and the smoothed
  return added Acme-style (benchmarks/acme_baseline.py's SmoothingLogger) so that both write
  the same rows.

Each variant runs `--repeat` times, interleaved (each in turn first). Two figures per
variant, medians of the repeats: the time spent inside the logger's calls (`write` per
episode and the final `close`, timed around each call) as a percentage of the loop's time,
which holds however busy the machine is; and the loop's time against the no-logging loop's,
which also counts what logging does to the rest of the loop (caches, garbage collection)
but moves with the machine's load by more than the logging costs (the table shows each
variant's spread).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import load

VARIANTS = ("none", "rlpipe", "acme")
SEED = 0


class TimedLogger:
    """Wraps a logger and adds up the time spent in its `write` and `close`."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self.seconds = 0.0
        self.writes = 0

    def write(self, data: Any) -> None:
        start = time.perf_counter()
        self.logger.write(data)
        self.seconds += time.perf_counter() - start
        self.writes += 1

    def close(self) -> None:
        start = time.perf_counter()
        self.logger.close()
        self.seconds += time.perf_counter() - start


def rlpipe_logger(folder: Path, devnull: Any) -> Any:
    from pipeline.presets import make_logger

    return make_logger(
        "train",
        directory=folder,
        csv_mode="w",
        smoothing_regex="return",
        smoothing_coeff=0.99,
        time_delta=0.0,
        terminal_time_delta=0.5,
        terminal_stream=devnull,
        steps_key="steps",
    )


def acme_logger(folder: Path, devnull: Any) -> Any:
    from acme.utils.loggers import CSVLogger, Dispatcher, NoneFilter, TerminalLogger, TimeFilter
    from acme.utils.loggers.base import to_numpy

    from benchmarks.acme_baseline import SmoothingLogger

    terminal = TimeFilter(
        TerminalLogger("train", print_fn=functools.partial(print, file=devnull)), 0.5
    )
    csv_logger = CSVLogger((folder / "train.csv").open("a"), add_uid=False)
    logger = NoneFilter(
        SmoothingLogger(Dispatcher([terminal, csv_logger], serialize_fn=to_numpy), "return")
    )

    class Closing:  # Acme's loggers do not close a file they were given
        def write(self, data: Any) -> None:
            logger.write(data)

        def close(self) -> None:
            logger.close()
            csv_logger._file.close()

    return Closing()


def no_logger(folder: Path, devnull: Any) -> Any:
    from acme.utils.loggers.base import NoOpLogger

    return NoOpLogger()


MAKERS: dict[str, Callable[[Path, Any], Any]] = {
    "none": no_logger,
    "rlpipe": rlpipe_logger,
    "acme": acme_logger,
}


@dataclass
class Run:
    loop_s: float
    logger_s: float
    steps: int


def run_loop(variant: str, episodes: int, folder: Path, devnull: Any) -> Run:
    """The demo's train loop for `episodes` episodes with `variant`'s logger, then its close."""
    import acme
    import gymnasium
    from acme.utils import counting

    from pipeline.cli.demo_agent import GymnasiumEnvironment, TabularQActor, cartpole_discretizer

    env = GymnasiumEnvironment(gymnasium.make("CartPole-v1"), seed=SEED)
    grid = cartpole_discretizer()
    actor = TabularQActor(int(env.action_spec().num_values), grid, grid.shape, seed=SEED)
    parent = counting.Counter()
    counter = counting.Counter(parent, "train", time_delta=0.0, return_only_prefixed=True)
    logger = TimedLogger(MAKERS[variant](folder, devnull))
    loop = acme.EnvironmentLoop(env, actor, counter=counter, logger=logger)
    try:
        start = time.perf_counter()
        loop.run(num_episodes=episodes)
        logger.close()
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    return Run(elapsed, logger.seconds, int(counter.get_counts()["steps"]))


@dataclass
class Row:
    variant: str
    loop_s: list[float] = field(default_factory=list)
    logger_s: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)

    @property
    def median_loop_s(self) -> float:
        return statistics.median(self.loop_s)

    @property
    def logger_share(self) -> float:
        """Median over the repeats of the logger's time over the loop's time."""
        return statistics.median(w / t for w, t in zip(self.logger_s, self.loop_s, strict=True))


def returns(path: Path) -> list[tuple[float, float]]:
    """(episode_return, its smoothed value) per row of a train CSV file."""
    with path.open(newline="") as handle:
        return [
            (float(row["episode_return"]), float(row["episode_return_smoothed_0.99"]))
            for row in csv.DictReader(handle)
        ]




def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300, help="episodes per loop run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant")
    parser.add_argument(
        "--quick", action="store_true", help="a few episodes, one run: proves it works"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(given)
    if args.quick:
        args.episodes, args.repeat = 20, 1
    if args.episodes < 1 or args.repeat < 1:
        parser.error("--episodes and --repeat must be >= 1")

    rows = {variant: Row(variant) for variant in VARIANTS}
    load_before = load()
    with (
        tempfile.TemporaryDirectory(prefix="rlpipe-loop-") as name,
        open(os.devnull, "w") as devnull,
    ):
        folder = Path(name)
        for variant in VARIANTS:  # imports and first-call costs, once per process
            (folder / f"warm-up-{variant}").mkdir()
            run_loop(variant, 3, folder / f"warm-up-{variant}", devnull)
        for repeat in range(args.repeat):
            shift = repeat % len(VARIANTS)  # each variant runs first, second, third in turn
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                place = folder / f"{variant}-{repeat}"
                place.mkdir()
                done = run_loop(variant, args.episodes, place, devnull)
                row = rows[variant]
                row.loop_s.append(done.loop_s)
                row.logger_s.append(done.logger_s)
                row.steps.append(done.steps)
        ours, theirs = returns(folder / "rlpipe-0" / "train.csv"), returns(
            folder / "acme-0" / "train.csv"
        )
    load_after = load()
    steps = {step for row in rows.values() for step in row.steps}
    checks = {
        "same_episodes": len(steps) == 1,
        "csv_rows": len(ours),
        "same_returns_in_csv": ours == theirs and len(ours) == args.episodes,
    }
    base = rows["none"].median_loop_s
    print(
        f"rlpipe logging overhead in the demo's Acme EnvironmentLoop: {args.episodes} "
        f"episodes ({steps.pop() if len(steps) == 1 else steps} steps) per run, median of "
        f"{args.repeat} interleaved runs; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load_before} before, {load_after} after"
    )
    head = (
        f"{'logger':8} {'loop s':>8} {'(min-max)':>13} {'us/episode in logger':>21} "
        f"{'logger % of loop':>17} {'loop vs none':>13}"
    )
    print(head)
    print("-" * len(head))
    results = []
    for row in rows.values():
        per_episode = statistics.median(row.logger_s) / args.episodes * 1e6
        versus = (row.median_loop_s / base - 1.0) * 100
        spread = f"{min(row.loop_s):.3f}-{max(row.loop_s):.3f}"
        print(
            f"{row.variant:8} {row.median_loop_s:>8.3f} {spread:>13} {per_episode:>21.1f} "
            f"{row.logger_share * 100:>16.3f}% {versus:>+12.2f}%"
        )
        results.append(
            {
                "variant": row.variant,
                "loop_s": row.loop_s,
                "logger_s": row.logger_s,
                "steps": row.steps,
                "median_loop_s": row.median_loop_s,
                "logger_us_per_episode": per_episode,
                "logger_share_of_loop": row.logger_share,
                "loop_over_none": row.median_loop_s / base,
            }
        )
    print(
        f"same episodes in every run: {checks['same_episodes']}; rlpipe's and Acme's CSV "
        f"files hold the same returns and smoothed returns: {checks['same_returns_in_csv']}"
    )
    report = {
        "command": " ".join(["python benchmarks/loop_overhead.py", *given]),
        "episodes": args.episodes,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "results": results,
        "checks": checks,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
