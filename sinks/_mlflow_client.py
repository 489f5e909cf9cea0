"""MLflow's client for MlflowSink: imported on first use (quietly), the store's location, and
MLflow's own check of a metric name."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'rlpipe[mlflow]'"
DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"
"""The store without `tracking_uri` or `$MLFLOW_TRACKING_URI`: a SQLite file under `./runs`
(browse it with `mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`, from the full
`mlflow` package)."""
_import_lock = threading.Lock()


def import_mlflow() -> Any:
    """The `mlflow` module, or an ImportError naming the extra.

    rlpipe logs locally and touches no network by default: when mlflow is first imported
    here and neither `$MLFLOW_DISABLE_TELEMETRY` nor `$DO_NOT_TRACK` is set, MLflow's usage
    telemetry (which writes an id under `~/.config` and sends events) stays off for the
    process. The environment is left as it was."""
    with _import_lock:
        quiet = "mlflow" not in sys.modules and not (
            {"MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"} & os.environ.keys()
        )
        if quiet:
            os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        try:
            import mlflow.entities
            import mlflow.exceptions
            import mlflow.tracking
        except ImportError as error:
            raise ImportError(f"MlflowSink needs MLflow (mlflow-skinny): {INSTALL_HINT}") from error
        finally:
            if quiet:
                del os.environ["MLFLOW_DISABLE_TELEMETRY"]
    return mlflow


def resolve_tracking_uri(uri: str | None) -> str:
    """`uri`, else `$MLFLOW_TRACKING_URI`, else DEFAULT_TRACKING_URI; a relative SQLite path
    is made absolute (from the current folder) and its folder is made, so that a later
    `chdir` does not move the store."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    scheme = "sqlite:///"
    if uri.startswith(scheme):
        path, mark, query = uri[len(scheme) :].partition("?")
        if path and path != ":memory:":
            file = Path(path).absolute()
            file.parent.mkdir(parents=True, exist_ok=True)
            uri = f"{scheme}{file.as_posix()}{mark}{query}"
    return uri


def name_check(mlflow: Any) -> Callable[[str], None]:
    """MLflow's own check of a metric name (characters, path form, length), raising its
    MlflowException; none if this MLflow lacks it (a refusal is then found out on sending)."""
    try:
        from mlflow.utils.validation import _validate_metric
    except ImportError:
        return lambda name: None
    return lambda name: _validate_metric(name, 0.0, 0, 0)
