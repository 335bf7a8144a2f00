"""Each configured app: loaded inside its own context, called inside a copy of it.

An :class:`App` owns one :class:`~ctxserve.binding.Binding` and the base
:class:`contextvars.Context` in which that binding is current. The app's
module is imported inside that context, so the import already sees the
app's ``sys.path``, ``os.environ``, streams and decimal context. Each
request then runs in ``base.copy()`` — O(1) whatever the context holds.

An app that fails to load is not an error for the process: it answers 503
on its routes and reports why in its :attr:`App.status`.
"""

from __future__ import annotations

import decimal
import importlib
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from . import binding as _binding
from . import environ as _environ
from . import guard as _guard
from . import namespaces as _namespaces
from . import process as _process
from . import streams as _streams
from .config import AppConfig, parse_app_spec

__all__ = ["App", "GuardedGlobalChanged", "StartResponse", "WSGIApp", "describe", "load_callable"]

StartResponse: TypeAlias = Callable[..., Any]
WSGIApp: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_OWN_VARS = frozenset({_binding.current, _streams.partial_lines})
_INTERNAL_ERROR = [b"Internal Server Error: the application raised an exception\n"]
#: What an app's import may raise that fails that app's load only.
_APP_ERRORS = (Exception, SystemExit)
#: What an app's call may raise that ends as a 500 for that request only:
#: anything. ``sys.exit()``, ``KeyboardInterrupt``,
#: ``asyncio.CancelledError``, ``GeneratorExit`` escaping into gunicorn's
#: gthread worker would end the worker, every app's requests in flight with
#: it. A SystemExit that a signal raised in a sync or gevent worker
#: (SIGQUIT, SIGABRT) still ends the worker, which has set ``alive = False``
#: first.
_REQUEST_ERRORS = BaseException
_TEXT = [("Content-Type", "text/plain; charset=utf-8")]


class App:
    """One app, its context, and the WSGI callable that runs it in that context.

    ``app(environ, start_response)`` is the whole per-request path: copy the
    base context, call the app in it, and keep it bound for the response.
    """

    def __init__(self, config: AppConfig, wsgi: WSGIApp | None = None) -> None:
        self.config = config
        self.name = config.name
        self.error: str | None = None
        #: What the last load revealed that the user should change (see
        #: :meth:`ctxserve.namespaces.Namespace.load_report`), each with its fix.
        self.warnings: list[str] = []
        #: When the app last loaded (``time.time()``), for catching up on reloads.
        self.loaded_at = 0.0
        self.wsgi: WSGIApp | None = wsgi
        _process.install()
        self.binding = _binding.Binding(
            config.name,
            environ=_environ.app_environ(config.environ, config.inherit_environ),
            stdout=_streams.open_destination(config.name, "stdout", config.stdout),
            stderr=_streams.open_destination(config.name, "stderr", config.stderr),
            stdin=_streams.empty_stdin(),
            argv=list(config.argv),
            path=[*config.path, *_binding.server.path],
            decimal=config.decimal_context(),
            modules=_namespaces.new(config.name, config.isolate, tuple(config.path),
                                    tuple(_binding.server.path)),
            # A wrapped callable's code is shared code: its threads carry the app's context.
            threads="all" if wsgi is not None else "own",
        )
        self.binding.modules.binding = self.binding
        self.context = _binding.context_for(self.binding)
        #: What runs inside the request's context: the app, or the 503
        #: answer while it is not loaded (see :meth:`load`).
        self.target: WSGIApp = self._unavailable
        self.errors = self.binding.stderr
        #: What the dispatcher calls: the app in its context, within its
        #: ``max_concurrency`` when it has one (chosen once, not per request).
        self.serve: WSGIApp = self._serve
        self._scopable = False
        if config.max_concurrency:
            self._slots = threading.BoundedSemaphore(config.max_concurrency)
            # A waiting request holds a worker thread: at most as many may
            # wait as may run, so a saturated app cannot take every thread.
            self._waiting = threading.BoundedSemaphore(config.max_concurrency)
            self.serve = self._serve_limited

    @property
    def loaded(self) -> bool:
        return self.error is None and self.target is not self._unavailable

    @property
    def guarded(self) -> dict[str, str]:
        """The guarded process globals this app changed: name -> what changed."""
        return dict(_guard.changes(self.binding))

    @property
    def status(self) -> str:
        """``"loaded"`` (with its warnings, if any), ``"failed: <why>"``, or ``"not loaded"``."""
        if self.error is not None:
            return f"failed: {self.error}"
        if not self.loaded:
            return "not loaded"
        return "; warning: ".join(["loaded", *self.warnings])

    def load(self) -> bool:
        """Import the app inside its own context; on failure, answer 503.

        The traceback goes to the app's own stderr; the server goes on.
        A guarded process global the import changed is recorded (guard.py);
        with ``globals = "fail"`` it fails the load.
        """
        before = _guard.snapshot()
        try:
            with self.binding.modules.load_report() as self.warnings:
                if self.wsgi is None:
                    self.wsgi = self.context.run(load_callable, self.config.app)
            for warning in self.warnings:  # what isolate could not do, and the fix
                self.context.run(print, f"ctxserve: warning: {warning}", file=sys.stderr)
            self.context.run(_streams.flush_partial_lines)
            changed = _guard.changed_since(self.binding, before)
            if changed and self.config.globals == "fail":
                raise GuardedGlobalChanged(self.name, changed)
        except _APP_ERRORS as exc:
            if not isinstance(exc, GuardedGlobalChanged):
                self.context.run(traceback.print_exc)
            self.context.run(_streams.flush_partial_lines)
            self.error = f"{type(exc).__name__}: {exc}"
            self.target = self._unavailable
            return False
        self.error = None
        self.loaded_at = time.time()
        # The load may have left request-scoped state in the base context:
        # a partial output line, or a decimal context made by a
        # getcontext() at import time. Requests must not share either.
        self.context.run(_streams.partial_lines.set, None)
        template = self.context[_binding.current].decimal
        if template is None and any(var.name == "decimal_context" for var in self.context):
            template = decimal.Context()
        self.target = self.wsgi if template is None else _with_decimal(self.wsgi, template)
        # In a request scope (workers.py) the binding is set in the
        # request's own context instead of copying the base context: that is
        # the same thing as long as the base context holds nothing else.
        self._binding = self.context[_binding.current]
        #: ``environ['wsgi.errors']``: the app's stderr destination (prefix,
        #: file, null or logging), as its own process would have it — not
        #: the server's error stream, which knows nothing of the app.
        self.errors = self._binding.stderr
        self._scopable = all(var in _OWN_VARS or var.name == "decimal_context"
                             for var in self.context)
        return True

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return self.serve(environ, start_response)

    def _serve(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The per-request path: the app's call in a copy of its base context.

        Under ctxserve's own workers the request already has a context of its
        own until ``close()``: the binding is set in it and the response goes
        back as it is. Elsewhere the call runs in ``ctx.run`` with no frame
        of ctxserve's inside: errors become a 500 from here, and the partial
        output lines of a list-body request are looked up from outside.
        """
        environ["wsgi.errors"] = self.errors
        if _binding.request_scope.get() and self._scopable:
            _binding.current.set(self._binding)
            try:
                return self.target(environ, start_response)
            except _REQUEST_ERRORS:
                return _internal_error(start_response)
        ctx = self.context.copy()
        try:
            result = ctx.run(self.target, environ, start_response)
        except _REQUEST_ERRORS:
            return ctx.run(_internal_error, start_response)
        if type(result) is list or type(result) is tuple:
            if ctx.get(_streams.partial_lines):
                ctx.run(_streams.flush_partial_lines)
            return result
        return _binding.bind_response(result, ctx, environ, _streams.flush_partial_lines)

    def _serve_limited(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """``_serve`` within ``max_concurrency``: wait ``queue_timeout`` for a slot, else 503.

        The slot is held until the response is closed, not only during the
        call: a streaming response is still in flight. A request waits for a
        slot only if fewer than ``max_concurrency`` others are waiting.
        """
        if not self._slots.acquire(False) and not self._wait_for_slot():
            timeout = self.config.queue_timeout
            start_response("503 Service Unavailable",
                           [*_TEXT, ("Retry-After", str(max(1, round(timeout))))])
            return [f"Service Unavailable: app {self.name!r} is at its max_concurrency\n".encode()]
        environ["wsgi.errors"] = self.errors
        ctx = self.context.copy()
        try:
            result = ctx.run(self.target, environ, start_response)
        except _REQUEST_ERRORS:
            result = ctx.run(_internal_error, start_response)
        return _binding.bind_response(result, ctx, environ, self._end_limited)

    def _wait_for_slot(self) -> bool:
        timeout = self.config.queue_timeout
        if timeout <= 0 or not self._waiting.acquire(False):
            return False
        try:
            return self._slots.acquire(True, timeout)
        finally:
            self._waiting.release()

    def _end_limited(self) -> None:
        try:
            _streams.flush_partial_lines()
        finally:
            self._slots.release()

    def _unavailable(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The answer of an app that is not loaded: 503, the other apps unaffected."""
        start_response("503 Service Unavailable", [*_TEXT, ("Retry-After", "30")])
        return [f"Service Unavailable: app {self.name!r} failed to load\n".encode()]

    def __repr__(self) -> str:
        return f"<App {self.name!r} {self.status}>"


class GuardedGlobalChanged(Exception):
    """An app with ``globals = "fail"`` changed a process-wide global while it loaded."""

    def __init__(self, app: str, changed: Mapping[str, str]) -> None:
        what = "; ".join(f"{name} ({change})" for name, change in changed.items())
        super().__init__(
            f"it changed the process-wide {what}, which every app shares, and apps.{app}.globals "
            f'is "fail"; leave it unchanged in the app, run the app in a process of its own, '
            f'or set globals = "warn"')


def _internal_error(start_response: StartResponse) -> Iterable[bytes]:
    """Runs in the failed request's context: the traceback goes to the app's stderr."""
    traceback.print_exc()
    _streams.flush_partial_lines()
    start_response("500 Internal Server Error", _TEXT, sys.exc_info())
    return _INTERNAL_ERROR


def _with_decimal(app: WSGIApp, template: decimal.Context) -> WSGIApp:
    """*app*, starting every request with a fresh copy of *template*."""

    def call(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        decimal.setcontext(template.copy())
        return app(environ, start_response)

    return call


def load_callable(spec: str) -> WSGIApp:
    """Import ``"module:attribute"`` or call ``"module:factory(args)"``.

    The spec is read by :func:`ctxserve.config.parse_app_spec`, the parser
    the config validates it with. Runs inside the app's context, so the
    module is found on the app's ``sys.path`` and its import-time code sees
    the app's globals.
    """
    parsed = parse_app_spec(spec)
    obj: Any = importlib.import_module(parsed.module)
    for attribute in parsed.attribute:
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            raise AttributeError(
                f"module {parsed.module!r} has no attribute {'.'.join(parsed.attribute)!r}; "
                f"check the app spec {spec!r}") from None
    if parsed.args is not None:
        obj = obj(*parsed.args, **parsed.kwargs)
    if not callable(obj):
        raise TypeError(f"{spec!r} is not a WSGI callable (got {type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


def describe(app: App) -> Mapping[str, str]:
    """One row of the app table (never the app's environ values); the status
    names the guarded process globals the app changed."""
    where = app.config.mount
    if app.config.host:
        where = ",".join(app.config.host) + (where if where != "/" else "")
    status = app.status
    if app.guarded:  # the last thing on the line, as its status may hold spaces
        status += "; changed process-wide: " + ", ".join(app.guarded)
    return {"name": app.name, "route": where, "app": app.config.app, "status": status}
