"""Routing: host first, then the longest mount prefix on a segment boundary.

Usage::

    from ctxserve import Dispatcher
    application = Dispatcher([blog, shop])        # ctxserve.apps.App objects

or, from a config file, ``ctxserve.from_config("ctxserve.toml")``.

Like werkzeug's ``DispatcherMiddleware``, a match moves the mount from
``PATH_INFO`` to ``SCRIPT_NAME``: ``/blog/x`` reaches the app mounted at
``/blog`` with ``SCRIPT_NAME="/blog"`` and ``PATH_INFO="/x"``. Unlike it,
the routing table is built once: each table is keyed by the path's first
segment, so most requests are routed with one dict lookup and one prefix
test, however many apps are mounted.

Host matching uses ``Host`` (without its port, lower-cased), else
``SERVER_NAME``: exact names, then ``*.suffix`` wildcards (longest suffix
first), then the apps without a ``host``. ``X-Forwarded-Host`` is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .apps import App, StartResponse

__all__ = ["Dispatcher"]

_NOT_FOUND = [b"Not Found: no app is mounted at this path\n"]
_TEXT = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(_NOT_FOUND[0])))]


class _Mounts:
    """The mounts of one host table, keyed by the mount's first path segment
    (with its slash: ``"/blog"``, so that a ``PATH_INFO`` without a leading
    slash matches nothing).

    A mount of one segment (``/blog``) needs no prefix test: a request
    whose first segment is ``blog`` is on the boundary by construction.
    Deeper mounts (``/blog/admin``) are tried first, longest first.
    """

    __slots__ = ("first", "root")

    def __init__(self) -> None:
        #: "/segment" -> (its one-segment mount or None, its app or None,
        #: deeper mounts under it as (mount, mount + "/", app), longest first)
        self.first: dict[str, tuple[str | None, App | None, tuple[tuple[str, str, App], ...]]] = {}
        self.root: App | None = None

    def add(self, mount: str, app: App) -> None:
        if mount == "/":
            self.root = app
            return
        segment, _, rest = mount[1:].partition("/")
        segment = "/" + segment
        one, one_app, deeper = self.first.get(segment, (None, None, ()))
        if rest:
            deeper = tuple(sorted([*deeper, (mount, mount + "/", app)],
                                  key=lambda entry: len(entry[0]), reverse=True))
        else:
            one, one_app = mount, app
        self.first[segment] = (one, one_app, deeper)

    def route(self, environ: dict[str, Any]) -> App | None:
        """The app for the request, with ``SCRIPT_NAME``/``PATH_INFO`` shifted."""
        path = environ.get("PATH_INFO", "")
        end = path.find("/", 1)
        entry = self.first.get(path[:end] if end > 0 else path)
        if entry is not None:
            mount, app, deeper = entry
            for mount_, prefix, app_ in deeper:
                if path == mount_ or path.startswith(prefix):
                    environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount_
                    environ["PATH_INFO"] = path[len(mount_):]
                    return app_
            if app is not None:
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount  # type: ignore[operator]
                environ["PATH_INFO"] = path[end:] if end > 0 else ""
                return app
        return self.root


class _Routes:
    """Every app's routes: the host tables, built once from a list of apps."""

    def __init__(self, apps: Sequence[App]) -> None:
        #: Mount -> app, for the one-segment mounts of a server
        #: without virtual hosts that have no deeper mount under them: the
        #: common case, routed by :meth:`Dispatcher.__call__` itself.
        self.fast: dict[str, App] = {}
        self.anyhost = _Mounts()
        self.exact: dict[str, _Mounts] = {}
        self.wildcard: list[tuple[str, _Mounts]] = []
        for app in apps:
            if not app.config.host:
                self.anyhost.add(app.config.mount, app)
            for host in app.config.host:
                if host.startswith("*."):
                    table = dict(self.wildcard).get(host[1:])
                    if table is None:
                        table = _Mounts()
                        self.wildcard.append((host[1:], table))
                else:
                    table = self.exact.setdefault(host, _Mounts())
                table.add(app.config.mount, app)
        self.wildcard.sort(key=lambda entry: len(entry[0]), reverse=True)
        if not self.exact and not self.wildcard:
            self.fast = {segment: app for segment, (mount, app, deeper) in self.anyhost.first.items()
                         if app is not None and not deeper}

    def by_host(self, environ: dict[str, Any]) -> App | None:
        host = _host(environ)
        table = self.exact.get(host)
        if table is not None and (app := table.route(environ)):
            return app
        for suffix, table in self.wildcard:
            if host.endswith(suffix) and (app := table.route(environ)):
                return app
        return self.anyhost.route(environ)


class Dispatcher:
    """The WSGI app that routes each request to one :class:`App`.

    Requests that match no app get a plain-text 404. The routed app's name
    is put in the environ as ``ctxserve.app`` (for access logs).
    """

    def __init__(self, apps: Sequence[App]) -> None:
        self.set_apps(apps)

    def set_apps(self, apps: Sequence[App]) -> None:
        """Route to *apps* from now on (a per-app reload swaps one App).

        The new routes are built aside and take effect with one attribute
        assignment: a request routes with either the old table or the new
        one, and requests in flight finish on the app they were routed to.
        """
        routes = _Routes(apps)
        self.apps = list(apps)
        #: The app for a request (``SCRIPT_NAME``/``PATH_INFO`` shifted) or
        #: ``None``; without virtual hosts the host-less table answers directly.
        self.route = routes.by_host if routes.exact or routes.wildcard else routes.anyhost.route
        self.fast = routes.fast

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        end = path.find("/", 1)
        mount = path[:end] if end > 0 else path
        app = self.fast.get(mount)
        if app is not None:  # a one-segment mount: on the segment boundary by construction
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount
            environ["PATH_INFO"] = path[end:] if end > 0 else ""
        elif (app := self.route(environ)) is None:
            start_response("404 Not Found", _TEXT)
            return _NOT_FOUND
        environ["ctxserve.app"] = app.name
        return app.serve(environ, start_response)


def _host(environ: dict[str, Any]) -> str:
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    if host.endswith("]"):  # [::1] without a port
        return host.lower()
    return host.rpartition(":")[0].lower() if ":" in host else host.lower()
