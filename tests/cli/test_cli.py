"""The `rlpipe` command."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pipeline
from pipeline.cli import main


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"rlpipe {pipeline.__version__}"


def test_no_subcommand_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "subcommands" in capsys.readouterr().out


def test_the_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("rlpipe ")
