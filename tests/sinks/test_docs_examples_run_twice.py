"""The docs' examples run twice in one folder (a user re-running a script) give what one run
gives: the README's quick start leaves 200 rows in train.csv, not two runs mixed, and the
resume example prints that the resumed CSV is the uninterrupted one."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.test_docs import ROOT, Block, blocks, run_block


def example(page: str, marker: str) -> Block:
    (block,) = [
        block
        for block in blocks(ROOT / page)
        if block.language == "python" and block.run and marker in block.source
    ]
    return block


def test_the_quick_start_run_twice_holds_one_runs_rows(tmp_path: Path) -> None:
    quick_start = example("README.md", "runs/quick/train.csv")
    for _ in range(2):
        ran = run_block(quick_start, tmp_path)
        assert ran.returncode == 0, ran.stderr
    assert "replaced" in ran.stderr  # the second run says it replaced the first run's files
    for name, rows in (("train.csv", 200), ("eval.csv", 20)):
        with (tmp_path / "runs/quick" / name).open(newline="") as handle:
            table = list(csv.DictReader(handle))
        assert len(table) == rows
    assert len((tmp_path / "runs/quick/train.jsonl").read_text().splitlines()) == 200


def test_the_resume_example_run_twice_resumes_to_the_uninterrupted_csv(tmp_path: Path) -> None:
    resume = example("docs/resume.md", "preempt_at=66")
    for _ in range(2):
        ran = run_block(resume, tmp_path)
        assert ran.returncode == 0, ran.stderr
        assert "preempted: killed by signal 9" in ran.stdout
        assert "the resumed CSV is the uninterrupted one: True" in ran.stdout
