"""rlpipe's core: the Node contract, the Pipeline builder, key matching and value helpers."""

from pipeline.builder import Pipeline
from pipeline.keys import KeyMatcher
from pipeline.node import ClosedError, Columns, Node, Record, iter_rows
from pipeline.values import is_finite_number, plain, to_float

__version__ = "0.1.0"

__all__ = [
    "ClosedError",
    "Columns",
    "KeyMatcher",
    "Node",
    "Pipeline",
    "Record",
    "__version__",
    "is_finite_number",
    "iter_rows",
    "plain",
    "to_float",
]

# Registers Node with acme.utils.loggers.Logger (now, or through an import hook when Acme is
# imported later); imports neither Acme nor any sink.
import pipeline.integrations.acme  # noqa: F401
