"""`rlpipe`: the public API under one name, its packaging, and the error a user's own
`filters.py` (or `sinks.py`, `pipeline.py`) shadowing rlpipe's packages gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import filters
import pipeline
import rlpipe
import sinks

ROOT = Path(__file__).resolve().parent.parent


def test_rlpipe_exports_every_public_name_of_pipeline_filters_and_sinks() -> None:
    packages = (pipeline, filters, sinks)
    expected = [name for package in packages for name in package.__all__]
    assert rlpipe.__all__ == expected and "__version__" in expected
    assert len(set(expected)) == len(expected)  # no name exported twice
    for package in packages:
        for name in package.__all__:
            assert getattr(rlpipe, name) is getattr(package, name), name
    assert rlpipe.__version__ == pipeline.__version__
    from rlpipe import CsvSink, Pipeline, SmoothingFilter, make_logger  # the README's names

    assert (Pipeline, CsvSink, SmoothingFilter, make_logger) == (
        pipeline.Pipeline, sinks.CsvSink, filters.SmoothingFilter, pipeline.make_logger,
    )


def test_importing_rlpipe_loads_no_integration_cli_or_framework_module() -> None:
    code = (
        "import sys, rlpipe\n"
        "heavy = ('acme', 'dm_env', 'gymnasium', 'neptune', 'neptune_scale', 'ray', 'torch',\n"
        "         'stable_baselines3', 'matplotlib', 'tensorboard', 'mlflow', 'wandb', 'pandas')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "      or m.startswith(('pipeline.cli', 'pipeline.integrations'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout == "[]\n"


@pytest.mark.parametrize("package", ["filters", "sinks", "pipeline"])
def test_a_users_module_shadowing_a_package_is_named_in_the_error(
    tmp_path: Path, package: str
) -> None:
    mine = tmp_path / f"{package}.py"
    mine.write_text("print('my own module')\n")
    result = subprocess.run(
        [sys.executable, "-c", "from rlpipe import Pipeline"],  # the script's folder comes first
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"ImportError: rlpipe: `import {package}` finds {mine.resolve()}, ")
    assert f"not rlpipe's package {package} in " in last
    assert last.endswith(
        f"a module of yours named {package} (such as {package}.py next to your script) comes "
        "first on sys.path and shadows it; rename yours"
    )
    assert "my own module" not in result.stdout  # refused before it was imported


def test_pyproject_lists_every_package_and_maps_rlpipe_to_its_folder() -> None:
    """The packages are listed by hand (`rlpipe`'s source is pipeline/_rlpipe): a package
    folder missing from the list would be missing from the wheel."""
    tomllib = pytest.importorskip("tomllib")
    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = set(find_packages(str(ROOT), include=["pipeline*", "filters*", "sinks*"]))
    assert set(config["packages"]) == on_disk - {"pipeline._rlpipe"} | {"rlpipe"}
    assert config["package-dir"] == {"rlpipe": "pipeline/_rlpipe"}
    assert Path(rlpipe.__file__).resolve().parent.name in ("_rlpipe", "rlpipe")
