"""rlpipe: a metrics-logging pipeline for reinforcement learning.

`from pipeline import Pipeline` is the builder; `Node` and the other core names are the
contract every filter and sink keeps. Importing `filters` or `sinks` loads only the core.
"""

from typing import TYPE_CHECKING, Any

from pipeline.core import (
    ClosedError,
    Columns,
    Counts,
    KeyMatcher,
    Node,
    Record,
    is_finite_number,
    iter_rows,
    plain,
    to_float,
)
from pipeline.core.media import Image, Video

if TYPE_CHECKING:
    from pipeline.builder import Pipeline
    from pipeline.presets import make_logger, make_logger_factory

__version__ = "0.1.0"

__all__ = [
    "ClosedError",
    "Columns",
    "Counts",
    "Image",
    "KeyMatcher",
    "Node",
    "Pipeline",
    "Record",
    "Video",
    "__version__",
    "is_finite_number",
    "iter_rows",
    "make_logger",
    "make_logger_factory",
    "plain",
    "to_float",
]

_LAZY = {
    "Pipeline": "pipeline.builder",
    "make_logger": "pipeline.presets",
    "make_logger_factory": "pipeline.presets",
}


def __getattr__(name: str) -> Any:
    # The builder imports filters and sinks, which import the core through this package:
    # loading it on first use keeps `import filters` / `import sinks` free of it.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
