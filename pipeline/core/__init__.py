"""rlpipe's core, the floor every filter, sink and integration stands on.

The Node contract, column batches, key matching, value rules, counts, failure isolation,
the exit lifecycle, metric-name contracts, the EMA step and flattening. Nothing here imports
a filter, a sink, the builder or a framework.
"""

from pipeline.core import (
    acme_logger,  # noqa: F401  (every Node is an Acme Logger)
    lifecycle,  # noqa: F401  (SIGTERM closes what is open)
)
from pipeline.core.columns import Columns, batch_length, iter_rows
from pipeline.core.counts import Counts
from pipeline.core.fusion import Transform
from pipeline.core.keys import KeyMatcher
from pipeline.core.node import ClosedError, Logger, LoggerSink, Node, Record
from pipeline.core.values import is_finite_number, plain, to_float

__all__ = [
    "ClosedError",
    "Columns",
    "Counts",
    "KeyMatcher",
    "Logger",
    "LoggerSink",
    "Node",
    "Record",
    "Transform",
    "batch_length",
    "is_finite_number",
    "iter_rows",
    "plain",
    "to_float",
]
