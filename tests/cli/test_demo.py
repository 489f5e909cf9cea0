"""`rlpipe demo` end to end: real Acme loops, a learning agent, CSV files whose smoothed return
rises, an offline Neptune run, and a closing report of where everything went."""

from __future__ import annotations

import csv
import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main as rlpipe
from pipeline.cli.demo import main, parse_args, plot_command, summary
from pipeline.cli.demo_agent import GymnasiumEnvironment, TabularQActor, cartpole_discretizer
from sinks import CsvSink
from tests.reference import warmup_ema


def column(path: Path, key: str) -> list[float]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [float(row[key]) for row in csv.DictReader(handle)]


def test_demo_learns_and_the_csv_shows_the_smoothed_return_rising(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "--episodes", "150",
            "--eval-every", "25",
            "--eval-episodes", "5",
            "--out", str(tmp_path),
            "--run-name", "run",
            "--no-neptune",
            "--seed", "0",
        ]
    )
    assert status == 0
    run_dir = tmp_path / "run"

    returns = column(run_dir / "train.csv", "episode_return")
    smoothed = column(run_dir / "train.csv", "episode_return_smoothed_0.99")
    assert len(returns) == len(smoothed) == 150  # every train episode reaches the CSV
    assert smoothed == pytest.approx(warmup_ema(returns, 0.99))
    assert np.mean(smoothed[-25:]) > np.mean(smoothed[:25]) + 100  # the agent learns
    assert smoothed[-1] > 3 * smoothed[0]

    eval_mean = column(run_dir / "eval.csv", "episode_return_mean")
    train_steps = column(run_dir / "eval.csv", "train_steps")
    assert len(eval_mean) == 6  # one aggregated record per evaluation round
    assert train_steps == sorted(train_steps)
    assert max(eval_mean[-3:]) > eval_mean[0]

    out = capsys.readouterr().out
    assert "[Train]" in out and "[Eval]" in out  # periodic lines when not on a terminal
    assert f"{run_dir / 'train.csv'}  (150 episodes)" in out
    assert f"{run_dir / 'eval.csv'}  (6 evaluation rounds)" in out
    assert f"tensorboard --logdir {run_dir / 'tensorboard'}" in out
    assert out.rstrip().endswith(f"rlpipe plot {run_dir}")

    # TensorBoard (written by default: the extra is installed) has the same curves
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
        return [(event.step, event.value) for event in events.Scalars(tag)]

    steps = column(run_dir / "train.csv", "steps")
    train = scalars(run_dir / "tensorboard" / "train", "episode_return_smoothed_0.99")
    assert [step for step, _ in train] == [int(step) for step in steps]
    assert [value for _, value in train] == pytest.approx(smoothed, rel=1e-6)  # float32
    evaluation = scalars(run_dir / "tensorboard" / "eval", "episode_return_mean")
    assert [step for step, _ in evaluation] == [int(step) for step in train_steps]
    assert [value for _, value in evaluation] == pytest.approx(eval_mean, rel=1e-6)


@pytest.mark.slow
def test_rlpipe_demo_command_writes_csv_and_an_offline_neptune_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "pipeline.cli", "demo",
            "--episodes", "40", "--eval-every", "20", "--eval-episodes", "3",
            "--run-name", "cli",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    run_dir = Path("runs") / "cli"
    assert f"{run_dir / 'train.csv'}  (40 episodes)" in result.stdout
    assert f"{run_dir / '.neptune'}  (offline Neptune run" in result.stdout
    assert f"neptune sync --path {run_dir} --project" in result.stdout
    assert f"{run_dir / 'curves.png'}): rlpipe plot {run_dir}\n" in result.stdout
    assert len(column(tmp_path / run_dir / "train.csv", "episode_return")) == 40
    assert len(column(tmp_path / run_dir / "eval.csv", "episode_return_mean")) == 2

    logs = list((tmp_path / run_dir / ".neptune").glob("offline/*/data-*.log"))
    operations = [
        json.loads(line)["obj"] for log in logs for line in log.read_text().splitlines()
    ]
    paths = {"/".join(op["path"]) for op in operations if op["type"] == "LogFloats"}
    assert {"train/episode_return_smoothed_0.99", "eval/episode_return_mean"} <= paths
    assert {"/".join(op["path"]) for op in operations if op["type"] == "AssignString"} >= {
        "config/env"
    }


@pytest.mark.slow
def test_without_the_neptune_client_the_demo_runs_and_says_how_to_install_it(
    tmp_path: Path,
) -> None:
    code = (
        "import sys\n"
        "sys.modules['neptune'] = None\n"  # what Python does for a package that is absent
        "from pipeline.cli.demo import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [
            sys.executable, "-c", code,
            "--episodes", "4", "--eval-every", "4", "--eval-episodes", "2", "--run-name", "bare",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "Neptune logging skipped" in result.stderr
    assert "the `neptune` package" in result.stderr
    assert "pip install 'rlpipe[neptune]'" in result.stderr
    assert "neptune-client" not in result.stderr
    run_dir = tmp_path / "runs" / "bare"
    # no Neptune folder: the CSV files and their configs, the checkpoint and TensorBoard's
    assert sorted(path.name for path in run_dir.iterdir()) == [
        "checkpoint.pkl", "eval.csv", "eval.csv.config.json", "tensorboard", "train.csv",
        "train.csv.config.json",
    ]
    for name in ("train", "eval"):  # the demo's settings, through log_config
        config = json.loads((run_dir / f"{name}.csv.config.json").read_text())
        assert config["episodes"] == 4 and config["env"] == "CartPole-v1"
    assert len(column(run_dir / "train.csv", "episode_return")) == 4
    assert "offline Neptune run" not in result.stdout


def test_the_summary_ends_with_the_plot_command_that_draws_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "a run"  # a space: the command quotes the folder
    with CsvSink(run_dir / "train.csv") as train, CsvSink(run_dir / "eval.csv") as evaluate:
        for episode in range(1, 5):
            smoothed = {"episode_return_smoothed_0.9": 9.0 + episode}
            train.write({"episode_return": 10.0 * episode, **smoothed, "steps": 20 * episode})
        evaluate.write({"episode_return_mean": 30.0, "train_steps": 80})
    text = summary(str(run_dir), "episode_return_smoothed_0.9", neptune=False)
    last = text.splitlines()[-1]
    command = plot_command(str(run_dir))
    assert last == f"to draw the learning curves ({run_dir / 'curves.png'}): {command}"
    assert f"{run_dir / 'train.csv'}  (4 episodes)" in text

    program, subcommand, *arguments = shlex.split(command)  # what a shell runs
    assert (program, subcommand, arguments) == ("rlpipe", "plot", [str(run_dir)])
    assert rlpipe([subcommand, *arguments]) == 0
    assert (run_dir / "curves.png").is_file()
    assert "(2 panels, 1 run)" in capsys.readouterr().out


def test_environment_adapter_follows_dm_env() -> None:
    import gymnasium

    env = GymnasiumEnvironment(gymnasium.make("CartPole-v1"), seed=3)
    first = env.reset()
    assert first.first() and first.reward is None
    assert env.observation_spec().shape == (4,)
    assert env.action_spec().num_values == 2
    steps = 0
    timestep = first
    while not timestep.last():
        timestep = env.step(np.int32(0))  # always left: the pole falls within ~10 steps
        steps += 1
    assert timestep.discount == 0.0 and timestep.reward == 1.0
    assert steps < 50
    assert env.step(np.int32(0)).first()  # stepping after LAST starts a new episode
    env.close()


def test_evaluation_actor_is_greedy_on_the_shared_table_and_does_not_learn() -> None:
    grid = cartpole_discretizer()
    actor = TabularQActor(2, grid, grid.shape, seed=0)
    greedy = actor.evaluation_actor()
    assert greedy.q is actor.q and greedy.epsilon == 0.0
    actor.q[(0, 0, 2, 5, 1)] = 1.0
    observation = np.array([0.0, 0.0, -0.01, -0.1])
    assert grid(observation) == (0, 0, 2, 5)
    greedy._state = grid(observation)
    assert greedy.select_action(observation) == 1


def test_demo_options_are_checked() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--episodes", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--run-name", "a/b"])
    assert parse_args([]).run_name.startswith("demo-")


def test_a_resumed_demo_goes_on_from_its_checkpoint_without_a_seam(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--eval-every", "25", "--eval-episodes", "3", "--out", str(tmp_path)]
    common += ["--run-name", "run", "--no-neptune", "--no-tensorboard"]
    run_dir = tmp_path / "run"
    assert main(["--episodes", "50", *common]) == 0  # checkpoint after episode 50
    kept = (run_dir / "checkpoint.pkl").read_bytes()
    capsys.readouterr()
    assert main(["--episodes", "60", "--resume", *common]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "rlpipe demo: tabular Q-learning on CartPole-v1, 60 train episodes, 3 eval episodes "
        f"every 25; resuming {run_dir} from its checkpoint after 50 train episodes: "
        "episodes 51-60 to go"
    )
    assert len(column(run_dir / "train.csv", "episodes")) == 60
    # the machine went away after episode 60 was logged, before its checkpoint was written
    (run_dir / "checkpoint.pkl").write_bytes(kept)
    assert main(["--episodes", "100", "--resume", *common]) == 0
    capsys.readouterr()

    episodes = column(run_dir / "train.csv", "episodes")
    assert episodes == list(range(1, 101))  # episodes 51-60 of the first run were cut
    steps = column(run_dir / "train.csv", "steps")
    assert steps == sorted(steps) and len(set(steps)) == 100
    returns = column(run_dir / "train.csv", "episode_return")
    smoothed = column(run_dir / "train.csv", "episode_return_smoothed_0.99")
    assert smoothed == pytest.approx(warmup_ema(returns, 0.99))  # one curve, no restart
    assert column(run_dir / "eval.csv", "train_episodes") == [25, 50, 75, 100]


def test_resume_needs_a_run_name_and_a_checkpoint_and_creates_nothing_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--resume"])
    with pytest.raises(SystemExit):
        parse_args(["--resume", "--overwrite", "--run-name", "x"])
    capsys.readouterr()
    assert main(["--resume", "--run-name", "none", "--out", str(tmp_path), "--no-neptune"]) == 2
    assert capsys.readouterr().err == (
        f"rlpipe demo: --resume: no checkpoint to go on from in {tmp_path / 'none'} (no such "
        "run folder; one is written after every evaluation round)\n"
    )
    assert list(tmp_path.iterdir()) == []


def tensorboard_points(folder: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every scalar point under `tag` in the event files of `folder`, as
    TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


@pytest.mark.slow
def test_a_reused_run_name_is_refused_and_overwrite_starts_the_run_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run folder is one run: TensorBoard must not show 30 + 10 points in one run, nor the
    folder hold two Neptune runs."""
    common = ["--eval-every", "10", "--eval-episodes", "2", "--out", str(tmp_path)]
    common += ["--run-name", "again", "--tensorboard"]
    run_dir = tmp_path / "again"
    assert main(["--episodes", "30", *common]) == 0
    assert len(tensorboard_points(run_dir / "tensorboard" / "train", "episode_return")) == 30
    capsys.readouterr()

    before = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")}
    assert main(["--episodes", "10", *common]) == 2
    assert capsys.readouterr().err == (
        f"rlpipe demo: {run_dir} already holds a run (train.csv, eval.csv, checkpoint.pkl, "
        "tensorboard, .neptune): go on with it with --resume, start it afresh with "
        "--overwrite, or choose another --run-name\n"
    )
    assert {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")} == before

    assert main(["--episodes", "10", "--overwrite", *common]) == 0
    points = tensorboard_points(run_dir / "tensorboard" / "train", "episode_return")
    assert points == [
        (int(step), pytest.approx(value))
        for step, value in zip(
            column(run_dir / "train.csv", "steps"),
            column(run_dir / "train.csv", "episode_return"),
            strict=True,
        )
    ]
    assert len(points) == 10
    assert len(tensorboard_points(run_dir / "tensorboard" / "eval", "episode_return_mean")) == 1
    assert len(list((run_dir / ".neptune").glob("offline/*"))) == 1  # the old run is gone


SIGNALLED = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
from pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sent", "status", "says"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped by SIGTERM")],
)
def test_a_stopped_demo_says_how_to_resume_and_the_resumed_run_says_where(
    tmp_path: Path, sent: signal.Signals, status: int, says: str
) -> None:
    args = ["demo", "--episodes", "100000", "--eval-every", "5", "--eval-episodes", "1"]
    args += ["--run-name", "long", "--no-neptune", "--no-tensorboard", "--out", str(tmp_path)]
    child = subprocess.Popen(
        [sys.executable, "-c", SIGNALLED, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = tmp_path / "long" / "checkpoint.pkl"
    try:
        deadline = time.monotonic() + 300.0  # until the first checkpoint exists (bounded)
        while time.monotonic() < deadline:
            if checkpoint.exists() or child.poll() is not None:
                break
            time.sleep(0.01)
        assert checkpoint.exists()
        child.send_signal(sent)
        _, errors = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == status, errors
    last = errors.splitlines()[-1]
    match = re.fullmatch(
        rf"rlpipe demo: {says}; to go on from the checkpoint after (\d+) train episodes: "
        rf"rlpipe demo --resume --run-name long --out {re.escape(str(tmp_path))} "
        r"--episodes 100000 --eval-every 5 --eval-episodes 1",
        last,
    )
    assert match is not None, errors
    done = int(match[1])
    assert done >= 5 and done % 5 == 0

    resumed = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args[:2], str(done + 5), *args[3:], "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert resumed.stdout.splitlines()[0].endswith(
        f"; resuming {tmp_path / 'long'} from its checkpoint after {done} train episodes: "
        f"episodes {done + 1}-{done + 5} to go"
    )
    assert column(tmp_path / "long" / "train.csv", "episodes") == list(range(1, done + 6))
