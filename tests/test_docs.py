"""The documentation's examples run: every ```python block of README.md and docs/**/*.md.

Each block runs on its own, in a fresh interpreter whose working folder is a temporary
directory, so the files an example writes under runs/ land there. A block that is not meant
to run (a fragment) is preceded in the markdown by a `<!-- not-run: reason -->` comment.
Blocks that import a framework (Acme, Stable-Baselines3, Ray, Neptune) are marked slow.
Where the text around an example states a result, a check below reads it back.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = re.compile(r"<!--\s*not-run:\s*\S.*-->")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^\s`]*)")
FRAMEWORKS = re.compile(
    r"^\s*(?:import|from)\s+(?:acme|stable_baselines3|ray|neptune|neptune_scale"
    r"|tensorboard|mlflow|wandb"
    r"|pipeline\.integrations\.(?:sb3|rllib|ray)|pipeline\.cli\.demo)\b"
    r"|NeptuneSink|TensorBoardSink|MlflowSink|WandbSink|neptune=",
    re.MULTILINE,
)
FAST_TIMEOUT = 180.0
SLOW_TIMEOUT = 900.0


@dataclass(frozen=True)
class Block:
    """One fenced code block of a markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    source: str
    run: bool

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> Iterator[Block]:
    """The fenced blocks of `path`, with their language and whether they are meant to run."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            text = lines[i]
            body.append(text[indent:] if text[:indent].strip() == "" else text.lstrip())
            i += 1
        i += 1
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marked = before >= 0 and NOT_RUN.search(lines[before]) is not None
        yield Block(path, start + 1, opening["info"], "\n".join(body) + "\n", not marked)


def python_blocks() -> list[Block]:
    return [b for path in markdown_files() for b in blocks(path) if b.language == "python"]


def params() -> list[object]:
    out: list[object] = []
    for block in python_blocks():
        if not block.run:
            continue
        marks = [pytest.mark.slow] if FRAMEWORKS.search(block.source) else []
        out.append(pytest.param(block, id=block.name, marks=marks))
    return out


def run_block(block: Block, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = cwd / "example.py"
    script.write_text(block.source, encoding="utf-8")
    env = dict(os.environ)
    for name in (
        "NEPTUNE_MODE",
        "NEPTUNE_PROJECT",
        "NEPTUNE_API_TOKEN",
        "WANDB_MODE",
        "WANDB_DIR",
        "WANDB_API_KEY",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "RLPIPE_STRICT",
    ):
        env.pop(name, None)
    env["MPLBACKEND"] = "Agg"
    # the conformance suite's entry point (tests.conformance) is imported from the checkout
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    timeout = SLOW_TIMEOUT if FRAMEWORKS.search(block.source) else FAST_TIMEOUT
    return subprocess.run(
        [sys.executable, script.name],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- results the text claims, read back ------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def check_quick_start(cwd: Path, stdout: str) -> None:
    rng = np.random.default_rng(0)
    returns = [episode / 10 + rng.normal() for episode in range(200)]
    train = read_csv(cwd / "runs/quick/train.csv")
    assert len(train) == 200, "every episode reaches train.csv (the throttle is terminal-only)"
    assert [int(row["episodes"]) for row in train] == list(range(200))
    assert "loss" not in train[0]
    assert float(train[0]["episode_return_smoothed_0.9"]) == pytest.approx(returns[0])
    assert float(train[-1]["episode_return"]) == pytest.approx(returns[-1])
    jsonl = (cwd / "runs/quick/train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(jsonl) == 200
    assert json.loads(jsonl[-1])["episodes"] == 199
    evaluation = read_csv(cwd / "runs/quick/eval.csv")
    assert len(evaluation) == 20, "one row per 10 episodes"
    for stat in ("mean", "std", "median", "max", "min"):
        assert f"episode_return_{stat}" in evaluation[0]
    assert [int(row["episodes"]) for row in evaluation] == list(range(9, 200, 10))
    assert float(evaluation[0]["episode_return_mean"]) == pytest.approx(np.mean(returns[:10]))
    assert float(evaluation[-1]["episode_return_max"]) == pytest.approx(max(returns[190:]))
    lines = [line for line in stdout.splitlines() if line.startswith("[Train]")]
    assert lines, "the terminal shows the train records"
    last = train[-1]
    assert f"Episodes = {last['episodes']}" in lines[-1], "the last episode shows (keep_last)"


def check_own_sink(cwd: Path, stdout: str) -> None:
    lines = (cwd / "runs/own-sink/returns.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("0\t")
    assert "10 lines" in stdout


def check_vectorized(cwd: Path, stdout: str) -> None:
    rows = read_csv(cwd / "runs/vec.csv")
    assert len(rows) == 10
    assert [int(row["update"]) for row in rows] == list(range(10))
    assert float(rows[5]["episode_return_mean"]) == pytest.approx(5.0, abs=0.1)


def check_neptune_offline(cwd: Path, stdout: str) -> None:
    assert "100 records; dropped: {}" in stdout
    logs = list((cwd / "runs/neptune-example/.neptune/offline").glob("run__*/data-1.log"))
    assert len(logs) == 1


def check_neptune_backwards(cwd: Path, stdout: str) -> None:
    assert "{'step': 1, 'loss': 2, 'q': 1}" in stdout


def check_acme_loop(cwd: Path, stdout: str) -> None:
    rows = read_csv(cwd / "runs/acme-example/train.csv")
    assert len(rows) == 200
    assert "episode_return_smoothed_0.99" in rows[0]


def check_seed_mapping(cwd: Path, stdout: str) -> None:
    assert len(read_csv(cwd / "runs/seed/eval.csv")) == 10


def check_factory(cwd: Path, stdout: str) -> None:
    assert len(read_csv(cwd / "runs/factory/train.csv")) == 200
    assert len(read_csv(cwd / "runs/factory/eval.csv")) == 10


def check_spinup(cwd: Path, stdout: str) -> None:
    progress = (cwd / "runs/spinup/progress.txt").read_text(encoding="utf-8").splitlines()
    assert len(progress) == 6
    assert progress[0].split("\t")[:2] == ["Epoch", "AverageEpRet"]
    rows = read_csv(cwd / "runs/spinup/rlpipe.csv")
    assert len(rows) == 5 and "AverageEpRet_smoothed_0.9" in rows[0]


def check_sb3(cwd: Path, stdout: str) -> None:
    rows = read_csv(cwd / "runs/ppo/train.csv")
    assert [int(row["timesteps"]) for row in rows] == [256, 512, 768, 1024]


def check_plot(cwd: Path, stdout: str) -> None:
    assert (cwd / "runs/plots/curves.png").read_bytes().startswith(b"\x89PNG")


def check_tune(cwd: Path, stdout: str) -> None:
    dropped = "['checkpoint_dir_name', 'date', 'hist', 'hostname', 'node_ip', 'note', 'trial_id']"
    assert dropped in stdout
    rows = read_csv(cwd / "runs/tune/lr=0.1.csv")
    assert [int(row["training_iteration"]) for row in rows] == [1, 2, 3, 4, 5]
    assert float(rows[1]["episode/return/mean_smoothed_0.9"]) == pytest.approx(19.1)


def check_rllib(cwd: Path, stdout: str) -> None:
    (table,) = (cwd / "runs/rllib").glob("PPO_CartPole-v1_*.csv")
    rows = read_csv(table)
    assert len(rows) == 3
    assert "env_runners/episode_return_mean" in rows[0]
    assert not any(key.startswith("config/") for key in rows[0])


def check_hub(cwd: Path, stdout: str) -> None:
    assert "4000 records, 0 duplicates" in stdout
    assert len(read_csv(cwd / "runs/all-actors.csv")) == 1


def _contract_kept(stdout: str) -> None:
    assert "NumbersSink keeps the contract" in stdout


CHECKS: dict[str, Callable[[Path, str], None]] = {
    # a string only that example contains -> what its text says it produces
    "runs/quick/train.csv": check_quick_start,
    "runs/own-sink/returns.txt": check_own_sink,
    'CsvSink("runs/vec.csv")': check_vectorized,
    "runs/neptune-example/.neptune": check_neptune_offline,
    "runs/backwards/.neptune": check_neptune_backwards,
    "runs/acme-example/train.csv": check_acme_loop,
    'directory="runs/seed"': check_seed_mapping,
    'directory="runs/factory"': check_factory,
    "runs/spinup/rlpipe.csv": check_spinup,
    "runs/ppo/train.csv": check_sb3,
    "runs/all-actors.csv": check_hub,
    "runs/plots/curves.png": check_plot,
    "runs/tune/": check_tune,
    "NumbersSink keeps the contract": lambda cwd, stdout: _contract_kept(stdout),
    "runs/rllib/": check_rllib,
}


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("block", params())
def test_example_runs(block: Block, tmp_path: Path) -> None:
    result = run_block(block, tmp_path)
    assert result.returncode == 0, (
        f"{block.name} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
        f"\n--- stderr\n{result.stderr[-8000:]}"
    )
    for marker, check in CHECKS.items():
        if marker in block.source:
            check(tmp_path, result.stdout)


def test_claimed_results_are_checked() -> None:
    """Each check above still finds its example (a renamed path would silently skip it)."""
    runnable = [b.source for b in python_blocks() if b.run]
    for marker in CHECKS:
        assert any(marker in source for source in runnable), f"no example contains {marker!r}"


def test_few_examples_are_fragments() -> None:
    skipped = [b.name for b in python_blocks() if not b.run]
    assert len(skipped) <= 3, f"examples marked not-run: {skipped}"


def test_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "source .venv/bin/activate" in readme


def test_files_the_docs_name_exist() -> None:
    """Repository paths named in the docs (tests, scripts, benchmarks) and the README's links
    point at files that exist, so a moved file does not leave the docs behind."""
    named = re.compile(r"\b(?:tests|scripts|benchmarks)/[\w./-]*\.(?:py|sh|md|png)\b")
    link = re.compile(r"\]\((?!https?://|#)([^)#\s]+)")
    missing: list[str] = []
    for path in markdown_files():
        text = path.read_text(encoding="utf-8")
        for match in named.finditer(text):
            if not (ROOT / match[0]).exists():
                missing.append(f"{path.name}: {match[0]}")
        if path.name == "README.md":
            for match in link.finditer(text):
                if not (ROOT / match[1]).exists():
                    missing.append(f"README.md: link {match[1]}")
    assert not missing, missing


def test_headings_are_unique_across_the_site() -> None:
    """A link to a heading lands on one place: no two pages share a heading's text."""
    seen: dict[str, str] = {}
    for path in sorted((ROOT / "docs").rglob("*.md")):
        fenced = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if FENCE.match(line):
                fenced = not fenced
                continue
            heading = re.match(r"#{1,6}\s+(.*)", line)
            if fenced or not heading:
                continue
            text = heading[1].strip().lower()
            where = path.relative_to(ROOT).as_posix()
            assert text not in seen, f"heading {text!r} in {where} and {seen[text]}"
            seen[text] = where
