"""Fixtures of the modules that run the tracking tools' real clients: each asks for them with
`pytest.mark.usefixtures("tool_homes", "scratch_cwd")`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ENVIRONMENT = (
    "WANDB_MODE",
    "WANDB_DIR",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "NEPTUNE_MODE",
    "NEPTUNE_PROJECT",
    "NEPTUNE_DATA_DIRECTORY",
    "NEPTUNE_LOG_DIRECTORY",
)


@pytest.fixture(scope="module")
def tool_homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """wandb's own folders under a scratch folder for the module (its service reads them
    once), and no tool's settings from the machine."""
    scratch = tmp_path_factory.mktemp("homes")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            patch.setenv(name, str(scratch / name.lower()))
        for name in ENVIRONMENT:
            patch.delenv(name, raising=False)
        patch.setenv("WANDB_SILENT", "true")
        yield


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store with MLflow's tables made, shared by the module (they take seconds)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


@pytest.fixture
def scratch_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
