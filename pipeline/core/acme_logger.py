"""Acme's `Logger`: every Node is one, in whatever order Acme and rlpipe are imported.

`isinstance(node, acme.utils.loggers.Logger)` is true for every filter, sink and pipeline,
without importing Acme: nodes already have the Logger's methods (`write`, `close`).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pipeline.core.node import Node

if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec

ACME_LOGGER_MODULE = "acme.utils.loggers.base"
"""The module that defines Acme's `Logger` abstract base class."""

INSTALL_HINT = "pip install 'rlpipe[acme]'"


def register_with_acme() -> bool:
    """Registers `Node` (hence every filter, sink and Pipeline) as a virtual subclass of Acme's
    `Logger` if Acme's logger module is already imported; returns whether it is registered.

    Never imports Acme itself. Safe to call any number of times."""
    module = sys.modules.get(ACME_LOGGER_MODULE)
    logger_class = getattr(module, "Logger", None)
    if logger_class is None:
        return False
    if not issubclass(Node, logger_class):
        logger_class.register(Node)
    return True


class _RegisteringLoader:
    """Runs the real loader of Acme's logger module, then registers Node with its Logger."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        register_with_acme()
        _remove_hook()

    def __getattr__(self, name: str) -> Any:  # get_filename, get_source, ... of the real one
        if name == "_loader":
            raise AttributeError(name)
        return getattr(self._loader, name)


class AcmeImportHook:
    """A meta-path finder that finds nothing itself: when `acme.utils.loggers.base` is about to
    be imported, it takes the spec the other finders give and wraps its loader, so `Node` is
    registered with Acme's `Logger` as soon as that module has run. It then removes itself.

    Cost while installed: one Python call comparing a string per module imported for the
    first time (about 0.2 us)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != ACME_LOGGER_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader)  # type: ignore[assignment]
                return spec
        return None


_HOOK = AcmeImportHook()


def _remove_hook() -> None:
    while _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def install_acme_hook() -> None:
    """Makes `isinstance(node, acme.utils.loggers.Logger)` true in whatever order Acme and rlpipe
    are imported, without importing Acme: registers now if Acme's logger module is loaded,
    else, if Acme is installed at all, installs `AcmeImportHook` to register when it loads.

    Cost: one `importlib.util.find_spec("acme")` (about 60 us on CPython 3.11); importing
    Acme instead would cost about 200 ms. Another package named `acme` (certbot's ACME
    client) only leaves the hook waiting, harmlessly."""
    if register_with_acme():
        _remove_hook()
        return
    if "acme" not in sys.modules and importlib.util.find_spec("acme") is None:
        return
    if _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


install_acme_hook()
