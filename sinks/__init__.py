"""rlpipe sinks: the leaves of a metrics graph, where records are stored or shown."""

from typing import TYPE_CHECKING, Any

from pipeline.core.logger_sink import LoggerSink
from sinks.base import Sink
from sinks.csv import CsvSink
from sinks.file import BufferedFileSink
from sinks.jsonl import JsonlSink
from sinks.memory import MemorySink
from sinks.null import NullSink
from sinks.terminal import TerminalSink

if TYPE_CHECKING:
    from sinks.neptune import NeptuneSink
    from sinks.remote import RemoteSink

__all__ = [
    "BufferedFileSink",
    "CsvSink",
    "JsonlSink",
    "LoggerSink",
    "MemorySink",
    "NeptuneSink",
    "NullSink",
    "RemoteSink",
    "Sink",
    "TerminalSink",
]


def __getattr__(name: str) -> Any:
    # NeptuneSink's module is light, but keep `import sinks` free of it until asked for.
    if name == "NeptuneSink":
        from sinks.neptune import NeptuneSink

        return NeptuneSink
    if name == "RemoteSink":
        from sinks.remote import RemoteSink

        return RemoteSink
    raise AttributeError(f"module 'sinks' has no attribute {name!r}")
