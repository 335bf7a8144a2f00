"""Serving the apps with gunicorn, embedded through ``BaseApplication``.

``ctxserve serve`` is a :class:`Server` (gunicorn's documented way to embed
it), not a subprocess: gunicorn's master, workers, signals and graceful
restarts are used as they are. The same settings are available to a plain
``gunicorn`` command through :func:`gunicorn_settings` (see
``deploy/gunicorn.conf.py``).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from gunicorn import config as gunicorn_config
from gunicorn.app.base import BaseApplication

from . import apps as _apps
from . import binding as _binding
from . import config as _config
from .config import Config, ConfigError
from .chain import compose
from .dispatch import Dispatcher
from .workers import WORKERS, Arbiter, RequestScope, socket_name

__all__ = ["Server", "application", "build", "cannot_listen", "control_socket_settings", "gunicorn_hooks",
           "gunicorn_settings",
           "log_app_records", "make_shared_dirs", "print_table", "remove_shared_dirs"]

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


def application(config: Config, *, strict: bool | None = None, gunicorn: bool = False) -> Any:
    """The WSGI app that serves *config*: its apps loaded (:func:`build`) and
    the request chain composed once (:func:`ctxserve.chain.compose`) — the
    :class:`Dispatcher` itself when ``[server] admin`` is off, else the
    listener split before it and a meter before each app.

    *gunicorn*: the app runs under gunicorn (``ctxserve serve``).
    """
    return compose(build(config, strict=strict).apps, admin=config.server.admin,
                   config_path=config.path, gunicorn=gunicorn)


def gunicorn_settings(config: Config) -> dict[str, Any]:
    """The gunicorn settings that ``[server]`` stands for, by gunicorn name.

    Derived from the declarations (:func:`ctxserve.config.gunicorn_settings`):
    a ``[server]`` key reaches gunicorn through its ``Setting``.
    """
    return _config.gunicorn_settings(config.server)


def print_table(apps: Sequence[_apps.App], file: TextIO | None = None) -> None:
    """The app table: name, route, app spec, status (never environ values)."""
    rows = [_apps.describe(app) for app in apps]
    headers = {"name": "NAME", "route": "ROUTE", "app": "APP", "status": "STATUS"}
    widths = {k: max(len(headers[k]), *(len(r[k]) for r in rows)) for k in headers}
    out = file or sys.stdout
    for row in (headers, *rows):
        print("  ".join(row[k].ljust(widths[k]) for k in headers).rstrip(), file=out)
    out.flush()


def _fronts() -> tuple[type, ...]:
    """``(admin.Front,)``: imported only when the admin listener is on (it imports prometheus-client)."""
    from .admin import Front

    return (Front,)


#: Hook names :func:`gunicorn_hooks` may return.
HOOKS = ("post_worker_init", "worker_exit", "child_exit", "on_exit")

#: PROMETHEUS_MULTIPROC_DIR and CTXSERVE_RUNTIME_DIR directories made by this
#: (master) process, removed at its exit: (pid of the process that made it, path).
#: A worker inherits the list; gunicorn may run on_exit in a worker (an
#: exception that escapes the worker's loop reaches the Arbiter's halt path
#: there), and the directories are the live master's, shared by every worker.
_made_dirs: list[tuple[int, str]] = []


def make_shared_dirs(config: Config) -> None:
    """With the admin listener on, the directories the workers share (in the master, before any fork).

    ``PROMETHEUS_MULTIPROC_DIR`` (metrics summed over workers) and
    ``CTXSERVE_RUNTIME_DIR`` (per-app reload, reload.py): each a fresh
    temporary directory unless already set; :func:`remove_shared_dirs`
    removes the ones made here.
    """
    if not config.server.admin:
        return
    for name, prefix in (("PROMETHEUS_MULTIPROC_DIR", "ctxserve-metrics-"), ("CTXSERVE_RUNTIME_DIR", "ctxserve-run-")):
        if os.environ.get(name):
            os.makedirs(os.environ[name], exist_ok=True)
        else:
            os.environ[name] = tempfile.mkdtemp(prefix=prefix)
            _made_dirs.append((os.getpid(), os.environ[name]))


def remove_shared_dirs() -> None:
    """Remove the directories :func:`make_shared_dirs` made, in the process that made them only."""
    for pid, path in list(_made_dirs):
        if pid == os.getpid():
            _made_dirs.remove((pid, path))
            shutil.rmtree(path, ignore_errors=True)


def gunicorn_hooks(config: Config, chain: Mapping[str, Any] | None = None, *,
                   bound_last: bool = False) -> dict[str, Callable[..., None]]:
    """gunicorn server hooks for *config*; each calls the same hook of *chain* after its own work.

    * ``post_worker_init``: print the app table (first worker); with the
      admin listener, tell the worker which of its listening sockets is the
      admin listener (:meth:`ctxserve.workers.RequestScope.serve_admin_on`),
      start the metrics fold and the per-app reload watcher;
    * ``worker_exit`` (in the worker): fold the last counts;
    * ``child_exit`` (in the master): forget the dead worker's live gauges;
    * ``on_exit``: remove the metrics directory if it was made here.

    With the admin listener on, ``PROMETHEUS_MULTIPROC_DIR`` is set here to a
    fresh temporary directory unless it is already set. *bound_last*: the
    admin address was appended to the binds (``ctxserve serve``).
    """
    chain = chain or {}
    hooks: dict[str, Callable[..., None]] = {}
    admin = bool(config.server.admin)
    make_shared_dirs(config)

    def then(name: str) -> Callable[..., None]:
        hook = chain.get(name)
        if isinstance(hook, str):  # "module.function", as gunicorn takes it
            hook = gunicorn_config.validate_callable(-1)(hook)
        return hook if callable(hook) else (lambda *args: None)

    user_post_worker_init = then("post_worker_init")
    # An inherited fd is named by its socket's name, known only while this
    # (master) process still holds the descriptor.
    admin_name = socket_name(config.server.admin) if admin else None

    def post_worker_init(worker: Any) -> None:
        front = worker.wsgi
        if worker.age == 1 and isinstance(front, (Dispatcher, *_fronts())):
            print_table(front.apps)
        if admin and isinstance(front, _fronts()):
            if not isinstance(worker, RequestScope):
                worker.log.warning("ctxserve: worker class %s cannot say which socket a request arrived "
                                   "on: the admin routes are off; use ctxserve's workers (%s)",
                                   type(worker).__name__, ", ".join(WORKERS.values()))
            elif not worker.serve_admin_on(front.address, name=admin_name, last=bound_last):
                worker.log.warning("ctxserve: the admin address %s is not among the listeners; "
                                   "bind it too (gunicorn -b %s)", front.address, front.address)
            front.metrics.start()
            if front.reloader is not None:
                front.reloader.start()
        user_post_worker_init(worker)

    hooks["post_worker_init"] = post_worker_init
    if admin:
        user_worker_exit, user_child_exit, user_on_exit = then("worker_exit"), then("child_exit"), then("on_exit")

        def worker_exit(arbiter: Any, worker: Any) -> None:
            front = getattr(worker, "wsgi", None)  # None when the worker failed before loading
            if isinstance(front, _fronts()):
                front.metrics.stop()
                if front.reloader is not None:
                    front.reloader.stop()
            user_worker_exit(arbiter, worker)

        def child_exit(arbiter: Any, worker: Any) -> None:
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(worker.pid)
            user_child_exit(arbiter, worker)

        def on_exit(arbiter: Any) -> None:
            remove_shared_dirs()
            user_on_exit(arbiter)

        hooks.update(worker_exit=worker_exit, child_exit=child_exit, on_exit=on_exit)
    return hooks


def control_socket_settings(config: Config) -> dict[str, Any]:
    """gunicorn's control socket: this server's own, in its run directory, or off.

    gunicorn >= 24 listens on ``$XDG_RUNTIME_DIR/gunicorn.ctl`` or
    ``~/.gunicorn/gunicorn.ctl``: one path for every server of a user, so
    stopping one server removed another's socket. Here it is in the run
    directory (``CTXSERVE_RUNTIME_DIR``, made with the admin listener: call
    after :func:`gunicorn_hooks`), or off without one; a ``control_socket``
    or ``control_socket_disable`` in ``[server.gunicorn]`` is the user's
    choice and is kept.
    """
    if {"control_socket", "control_socket_disable"} & set(config.server.gunicorn):
        return {}
    run_dir = os.environ.get("CTXSERVE_RUNTIME_DIR") if config.server.admin else None
    if run_dir:
        return {"control_socket": os.path.join(run_dir, "gunicorn.ctl")}
    return {"control_socket_disable": True}


def cannot_listen(config: Config, held: Config) -> None:
    """Raise :class:`ConfigError` if *config* has an address this server cannot listen on.

    On SIGHUP gunicorn closes every listener and binds the new list when it
    changed; an address in use then stops the master, and the old ports with
    it. The addresses *held* (the running config's) are ours already; each new
    TCP address is tried with a socket of its own, each new unix socket's
    directory must exist.
    """
    ours = {*held.server.bind, held.server.admin}
    for text in (*config.server.bind, config.server.admin):
        if not text or text in ours:
            continue
        address = _config.parse_address(text)
        where = f"{config.path}: server.{'admin' if text == config.server.admin else 'bind'}"
        if address.path and not os.path.isdir(os.path.dirname(os.path.abspath(address.path))):
            raise ConfigError(f"{where}: cannot listen on {text}: its directory does not exist")
        if address.is_tcp and address.port:
            family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind((address.host, address.port))
            except OSError as exc:
                raise ConfigError(f"{where}: cannot listen on {text}: {exc.strerror}") from None


class Server(BaseApplication):  # type: ignore[misc]
    """gunicorn serving the apps of one config."""

    def __init__(self, config: Config, overrides: Mapping[str, Any] | None = None) -> None:
        self.config = config
        #: Command-line options, applied again when SIGHUP re-reads the file.
        self.overrides = dict(overrides or {})
        self._started = False
        super().__init__()

    def _reread_config(self) -> None:
        """On SIGHUP (gunicorn's reload): read the config file again.

        A file that fails validation is refused and logged; the server goes
        on with the config it had (gunicorn would exit on an error here).
        """
        if not self._started:
            self._started = True
            return
        try:
            config = _config.override_server(_config.load(self.config.path), **self.overrides)
            _config.check_inherited(config)
            cannot_listen(config, held=self.config)
        except ConfigError as exc:
            logging.getLogger("gunicorn.error").error(
                "ctxserve: config not reloaded, still serving the previous one: %s", exc)
        else:
            self.config = config
            logging.getLogger("gunicorn.error").info("ctxserve: reloaded %s", self.config.path)

    def load_config(self) -> None:
        self._reread_config()
        for name, value in gunicorn_settings(self.config).items():
            self.cfg.set(name, value)
        chain = {name: getattr(self.cfg, name) for name in HOOKS}
        for name, hook in gunicorn_hooks(self.config, chain, bound_last=True).items():
            self.cfg.set(name, hook)
        for name, value in control_socket_settings(self.config).items():
            self.cfg.set(name, value)

    def run(self) -> None:
        """``BaseApplication.run`` with ctxserve's master (:class:`ctxserve.workers.Arbiter`)."""
        try:
            Arbiter(self).run()
        except RuntimeError as exc:
            print(f"\nError: {exc}\n", file=sys.stderr)
            sys.exit(1)

    def load(self) -> Any:
        log_app_records()
        # strict is enforced before the server starts (cli: ctxserve check in
        # a child); a worker that loads later — a respawn, a SIGHUP — serves
        # 503 for an app that fails rather than taking the server down.
        return application(self.config, strict=False, gunicorn=True)


def log_app_records() -> None:
    """Give ``stdout``/``stderr = "logging"`` a visible default under ``serve``.

    Records of logger ``ctxserve.app.NAME`` go to the server's stderr, in
    gunicorn's format, unless the user's logging config handles them.
    """
    logger = logging.getLogger("ctxserve.app")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(_binding.server.stderr)
    handler.setFormatter(logging.Formatter(
        "[%(asctime)s] [%(process)d] [%(levelname)s] [%(name)s] %(message)s",
        "%Y-%m-%d %H:%M:%S %z"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
