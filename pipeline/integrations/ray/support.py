"""What the hub's modules share: Ray imported on demand (naming the extra), and the pieces of
their warnings (an error's first line, the stack level of the caller's code)."""

from __future__ import annotations

import os
import sys
from typing import Any

from pipeline.core import node

EXTRA = "pip install 'rlpipe[ray]'"

_INTERNAL_FOLDER = os.path.dirname(__file__)


def import_ray() -> Any:
    """The `ray` module; an ImportError naming the extra when Ray is not installed."""
    try:
        import ray
    except ImportError as error:  # pragma: no cover - the CI installs every extra
        raise ImportError(f"pipeline.integrations.ray needs Ray: {EXTRA}") from error
    return ray


def user_stacklevel() -> int:
    """The stacklevel, for a `warnings.warn` in the caller, of the first frame outside the
    hub's modules and the node machinery (the user's code)."""
    node_file = node.__file__
    frame, level = sys._getframe(1), 1
    while frame is not None and (
        frame.f_code.co_filename == node_file
        or os.path.dirname(frame.f_code.co_filename) == _INTERNAL_FOLDER
    ):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when the message is empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
