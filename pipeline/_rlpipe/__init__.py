"""`rlpipe`: rlpipe's public API under one name.

    from rlpipe import Pipeline, CsvSink, SmoothingFilter, make_logger

Everything `pipeline`, `filters` and `sinks` export (their `__all__`; `__version__` too).
Importing it loads no integration, CLI or framework module, as importing those packages does
not. The source lives in `pipeline/_rlpipe/` (the repository's top level is fixed); the
installed package is `rlpipe` (setuptools' `package-dir` in pyproject.toml).

Before importing them, it checks that `pipeline`, `filters` and `sinks` are rlpipe's own
packages: a file of the user's such as `filters.py` next to the script, which Python finds
first, is named in an ImportError that says to rename it, instead of "cannot import name
'AggregateFilter' from 'filters'".
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGES = ("pipeline", "filters", "sinks")
"""rlpipe's import packages, whose public names `rlpipe` exports."""


def _home() -> Path | None:
    """The folder holding rlpipe's packages: the first parent of this file that holds all
    three (the checkout for an editable install, site-packages for a wheel)."""
    for folder in Path(__file__).resolve().parents:
        if all((folder / name / "__init__.py").is_file() for name in PACKAGES):
            return folder
    return None


def check_not_shadowed() -> None:
    """Raises ImportError naming the file when `pipeline`, `filters` or `sinks` would be
    imported from somewhere other than rlpipe's own packages (a user's `filters.py`)."""
    home = _home()
    if home is None:  # an unusual layout: nothing to compare with
        return
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = None if spec is None or spec.origin is None else Path(spec.origin).resolve()
        if origin != (home / name / "__init__.py").resolve():
            found = "nothing" if origin is None else str(origin)
            raise ImportError(
                f"rlpipe: `import {name}` finds {found}, not rlpipe's package {name} in "
                f"{home}: a module of yours named {name} (such as {name}.py next to your "
                f"script) comes first on sys.path and shadows it; rename yours",
                name=name,
                path=None if origin is None else str(origin),
            )


check_not_shadowed()

# `import *` takes exactly each package's __all__, the public API.
from filters import *  # noqa: E402, F403
from filters import __all__ as _filters_all  # noqa: E402
from pipeline import *  # noqa: E402, F403
from pipeline import __all__ as _pipeline_all  # noqa: E402
from sinks import *  # noqa: E402, F403
from sinks import __all__ as _sinks_all  # noqa: E402

__all__ = [*_pipeline_all, *_filters_all, *_sinks_all]  # pipeline's has __version__
