"""rlpipe sinks: the leaves of a metrics graph, where records are stored or shown."""

from typing import TYPE_CHECKING, Any

from pipeline.core.node import LoggerSink
from sinks.base import Sink
from sinks.csv import CsvSink
from sinks.file import BufferedFileSink
from sinks.jsonl import JsonlSink
from sinks.memory import MemorySink
from sinks.null import NullSink
from sinks.terminal import TerminalSink

if TYPE_CHECKING:
    from sinks.mlflow import MlflowSink
    from sinks.neptune import NeptuneSink
    from sinks.remote import RemoteSink
    from sinks.tensorboard import TensorBoardSink
    from sinks.wandb import WandbSink

__all__ = [
    "BufferedFileSink",
    "CsvSink",
    "JsonlSink",
    "LoggerSink",
    "MemorySink",
    "MlflowSink",
    "NeptuneSink",
    "NullSink",
    "RemoteSink",
    "Sink",
    "TensorBoardSink",
    "TerminalSink",
    "WandbSink",
]

# Sinks for tracking services load on first use: `import sinks` imports no client library
# (each client itself is imported only when a sink makes its run or writer).
_LAZY = {
    "MlflowSink": "sinks.mlflow",
    "NeptuneSink": "sinks.neptune",
    "RemoteSink": "sinks.remote",
    "TensorBoardSink": "sinks.tensorboard",
    "WandbSink": "sinks.wandb",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sinks' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
