"""Every tracking-service sink loads its client only when it makes a run, and says which
extra to install when the client is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# sink module, class, the client's top-level modules, arguments that make a run
SINKS = {
    "neptune": ("NeptuneSink", ("neptune", "neptune_scale"), ""),
    "tensorboard": (
        "TensorBoardSink",
        ("tensorboard", "tensorflow", "torch", "tensorboardX"),
        "sys.argv[1]",  # its logdir
    ),
    "mlflow": ("MlflowSink", ("mlflow",), ""),
    "wandb": ("WandbSink", ("wandb",), ""),
}


def run(code: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.mark.parametrize("module", sorted(SINKS))
def test_importing_the_sink_imports_no_client(module: str) -> None:
    name, clients, _ = SINKS[module]
    out = run(
        f"import sys, sinks, sinks.{module}\n"
        f"from sinks.{module} import {name}\n"
        f"assert sinks.{name} is {name}\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {clients!r}))\n"
    )
    assert out == "[]"


@pytest.mark.parametrize("module", sorted(SINKS))
def test_a_missing_client_is_an_import_error_naming_the_extra(
    module: str, tmp_path: Path
) -> None:
    name, clients, arguments = SINKS[module]
    out = run(
        "import sys\n"
        f"sys.modules[{clients[0]!r}] = None\n"  # what Python does for a package that is absent
        f"from sinks.{module} import {name}\n"
        "try:\n"
        f"    {name}({arguments})\n"
        "except ImportError as error:\n"
        "    print(error)\n",
        str(tmp_path),
    )
    assert f"pip install 'rlpipe[{module}]'" in out
