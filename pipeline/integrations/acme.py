"""Acme integration: rlpipe nodes and pipelines as Acme loggers, and Acme-style logger makers.

Every Node already has Acme's `Logger` methods (`write`, `close`) and is registered as a
virtual subclass of `acme.utils.loggers.Logger` (see `pipeline.core.acme_logger`), so a
Pipeline can be passed wherever Acme takes a logger (`acme.EnvironmentLoop(env, actor,
logger=pipeline)`, a learner's `logger=`). The standard loggers, `make_logger` and
`make_logger_factory` (Acme's factory signature), live in `pipeline.presets` and are
re-exported here.

Importing this module imports neither Acme nor any framework.
"""

from pipeline.core.acme_logger import (
    _HOOK,
    ACME_LOGGER_MODULE,
    AcmeImportHook,
    install_acme_hook,
    register_with_acme,
)
from pipeline.presets import (
    LoggerFactory,
    make_logger,
    make_logger_factory,
    neptune_missing_error,
)

INSTALL_HINT = "pip install 'rlpipe[acme]'"

__all__ = [
    "ACME_LOGGER_MODULE",
    "INSTALL_HINT",
    "_HOOK",
    "AcmeImportHook",
    "LoggerFactory",
    "install_acme_hook",
    "make_logger",
    "make_logger_factory",
    "neptune_missing_error",
    "register_with_acme",
]
