"""ctxserve: several WSGI apps in one process, each in its own context.

Around every request ctxserve binds the app's own ``os.environ`` view,
stdout/stderr destination, ``decimal`` context, ``sys.argv`` and
``sys.path``, with one :mod:`contextvars` variable (see ``binding.py``).

Two ways in from Python::

    application = ctxserve.from_config("ctxserve.toml")       # every app of a config

    application = ctxserve.wrap(legacy_app, name="legacy",     # one WSGI callable
                                environ={"MODE": "legacy"}, stdout="legacy.log",
                                decimal={"prec": 6})
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "from_config", "wrap"]

if TYPE_CHECKING:
    from .apps import App, WSGIApp
    from .dispatch import Dispatcher


def from_config(path: str | os.PathLike[str] = "ctxserve.toml") -> Dispatcher:
    """Load every app of a ``ctxserve.toml`` and return the routing WSGI app.

    This is also a gunicorn entry point:
    ``gunicorn 'ctxserve:from_config("path/ctxserve.toml")'``. A bad config
    raises :class:`ctxserve.config.ConfigError` before anything is loaded.
    """
    from .config import load
    from .server import build

    return build(load(path))
