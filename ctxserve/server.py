"""Serving the apps with gunicorn, embedded through ``BaseApplication``.

``ctxserve serve`` is a :class:`Server` (gunicorn's documented way to embed
it), not a subprocess: gunicorn's master, workers, signals and graceful
restarts are used as they are. The same settings are available to a plain
``gunicorn`` command through :func:`gunicorn_settings` (see
``deploy/gunicorn.conf.py``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from gunicorn.app.base import BaseApplication

from . import apps as _apps
from . import streams as _streams
from .config import Config, ConfigError
from .dispatch import Dispatcher

__all__ = ["Server", "build", "gunicorn_settings", "print_table"]

#: gunicorn's default access-log format, plus the routed app's name.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" app=%({ctxserve.app}e)s'


def build(config: Config, *, strict: bool | None = None) -> Dispatcher:
    """Load every app of *config*, each in its own context, and route to them.

    When *strict* (default: ``[server] strict``) an app that fails to load
    is an error (:class:`ConfigError`); otherwise it answers 503 and the
    rest serve.
    """
    loaded = [_apps.App(app_config) for app_config in config.apps]
    for app in loaded:
        app.load()
    failed = [app for app in loaded if not app.loaded]
    if failed and (config.server.strict if strict is None else strict):
        reasons = "; ".join(f"{app.name}: {app.error}" for app in failed)
        raise ConfigError(f"{config.path}: server.strict: every app must load, but {reasons}")
    return Dispatcher(loaded)


def gunicorn_settings(config: Config) -> dict[str, Any]:
    """The gunicorn settings that ``[server]`` stands for, by gunicorn name."""
    server = config.server
    settings: dict[str, Any] = {
        "bind": list(server.bind),
        "workers": server.workers,
        # gunicorn turns "sync" with threads > 1 into gthread; a user who
        # asks for sync means one request at a time per worker.
        "threads": 1 if server.worker_class == "sync" else server.threads,
        "worker_class": server.worker_class,
        "timeout": server.timeout,
    }
    if server.access_log:
        settings["accesslog"] = server.access_log
        settings["access_log_format"] = ACCESS_LOG_FORMAT
    settings.update(server.gunicorn)
    return settings


def print_table(apps: Sequence[_apps.App], file: TextIO | None = None) -> None:
    """The app table: name, route, app spec, status (never environ values)."""
    rows = [_apps.describe(app) for app in apps]
    headers = {"name": "NAME", "route": "ROUTE", "app": "APP", "status": "STATUS"}
    widths = {k: max(len(headers[k]), *(len(r[k]) for r in rows)) for k in headers}
    out = file or sys.stdout
    for row in (headers, *rows):
        print("  ".join(row[k].ljust(widths[k]) for k in headers).rstrip(), file=out)
    out.flush()


class Server(BaseApplication):  # type: ignore[misc]
    """gunicorn serving the apps of one config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        super().__init__()

    def load_config(self) -> None:
        for name, value in gunicorn_settings(self.config).items():
            self.cfg.set(name, value)
        self.cfg.set("post_worker_init", _announce(self.cfg.post_worker_init))

    def load(self) -> Dispatcher:
        _log_app_records()
        return build(self.config)


def _log_app_records() -> None:
    """Give ``stdout``/``stderr = "logging"`` a visible default under ``serve``.

    Records of logger ``ctxserve.app.NAME`` go to the server's stderr, in
    gunicorn's format, unless the user's logging config handles them.
    """
    logger = logging.getLogger("ctxserve.app")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(_streams.plain.get("stderr", sys.stderr))
    handler.setFormatter(logging.Formatter(
        "[%(asctime)s] [%(process)d] [%(levelname)s] [%(name)s] %(message)s",
        "%Y-%m-%d %H:%M:%S %z"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _announce(user_hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """Print the app table once, when the first worker has loaded the apps."""

    def post_worker_init(worker: Any) -> None:
        if worker.age == 1 and isinstance(worker.wsgi, Dispatcher):
            print_table(worker.wsgi.apps)
        user_hook(worker)

    return post_worker_init
