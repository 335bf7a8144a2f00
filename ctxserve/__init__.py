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
__all__ = ["__version__", "from_config", "wrap", "ConfigError"]

from .config import ConfigError

if TYPE_CHECKING:
    from .apps import App, WSGIApp
    from .dispatch import Dispatcher


def from_config(path: str | os.PathLike[str] = "ctxserve.toml") -> Dispatcher:
    """Load every app of a ``ctxserve.toml`` and return the routing WSGI app.

    This is also a gunicorn entry point:
    ``gunicorn 'ctxserve:from_config("path/ctxserve.toml")'``. A bad config
    raises :class:`ctxserve.config.ConfigError` before anything is loaded.
    With ``[server] admin`` set the result is a :class:`ctxserve.admin.Front`
    (the listener split, then the dispatcher): the admin routes answer only
    under servers that say which socket a request arrived on (ctxserve's
    gunicorn workers); bind the admin address too.
    """
    from .config import load
    from .server import application

    return application(load(path))


def wrap(app: WSGIApp, name: str = "app", **settings: Any) -> App:
    """Run one already-imported WSGI callable in a context of its own.

    *settings* are the keys of an ``[apps.NAME]`` table that make sense for
    a callable already in hand — ``environ``, ``inherit_environ``,
    ``stdout``, ``stderr``, ``argv``, ``decimal`` — with the same values and
    the same validation as in ``ctxserve.toml`` (relative file paths are
    relative to the current directory). The result is a WSGI app; mount
    several with werkzeug's ``DispatcherMiddleware`` or any other router::

        legacy = ctxserve.wrap(legacy_app, "legacy", stdout="legacy.log",
                               decimal={"prec": 6, "rounding": "ROUND_HALF_UP"})
    """
    from .apps import App
    from .config import parse, wrap_keys

    allowed = set(wrap_keys())
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise TypeError(f"wrap() got unexpected settings {unknown}; it takes {sorted(allowed)}")
    table = {**settings, "app": "ctxserve:wrap", "mount": "/"}
    config = parse({"apps": {name: table}}, "ctxserve.wrap()")
    wrapped = App(config.apps[0], wsgi=app)
    wrapped.load()
    return wrapped
