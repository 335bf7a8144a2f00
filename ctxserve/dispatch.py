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
    """The mounts of one host table: ``first segment -> [(mount, app), ...]``."""

    __slots__ = ("by_segment", "root")

    def __init__(self) -> None:
        self.by_segment: dict[str, list[tuple[str, str, App]]] = {}
        self.root: App | None = None

    def add(self, mount: str, app: App) -> None:
        if mount == "/":
            self.root = app
            return
        entries = self.by_segment.setdefault(mount[1:].partition("/")[0], [])
        entries.append((mount, mount + "/", app))
        entries.sort(key=lambda entry: len(entry[0]), reverse=True)  # longest first

    def match(self, path: str) -> tuple[App, str, str] | None:
        for mount, prefix, app in self.by_segment.get(path[1:].partition("/")[0], ()):
            if path == mount or path.startswith(prefix):
                return app, mount, path[len(mount):]
        if self.root is not None:
            return self.root, "", path
        return None


class Dispatcher:
    """The WSGI app that routes each request to one :class:`App`.

    Requests that match no app get a plain-text 404. The routed app's name
    is put in the environ as ``ctxserve.app`` (for access logs).
    """

    def __init__(self, apps: Sequence[App]) -> None:
        self.apps = list(apps)
        self._anyhost = _Mounts()
        self._exact: dict[str, _Mounts] = {}
        self._wildcard: list[tuple[str, _Mounts]] = []
        for app in self.apps:
            if not app.config.host:
                self._anyhost.add(app.config.mount, app)
            for host in app.config.host:
                if host.startswith("*."):
                    table = dict(self._wildcard).get(host[1:])
                    if table is None:
                        table = _Mounts()
                        self._wildcard.append((host[1:], table))
                else:
                    table = self._exact.setdefault(host, _Mounts())
                table.add(app.config.mount, app)
        self._wildcard.sort(key=lambda entry: len(entry[0]), reverse=True)
        self._by_host = bool(self._exact or self._wildcard)

    def route(self, environ: dict[str, Any]) -> tuple[App, str, str] | None:
        """``(app, script_name_part, path_info)`` for a request, or ``None``."""
        path = environ.get("PATH_INFO", "")
        if self._by_host:
            host = _host(environ)
            table = self._exact.get(host)
            if table is not None and (match := table.match(path)):
                return match
            for suffix, table in self._wildcard:
                if host.endswith(suffix) and (match := table.match(path)):
                    return match
        return self._anyhost.match(path)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        match = self.route(environ)
        if match is None:
            start_response("404 Not Found", _TEXT)
            return _NOT_FOUND
        app, script, environ["PATH_INFO"] = match
        if script:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + script
        environ["ctxserve.app"] = app.name
        return app.serve(environ, start_response)


def _host(environ: dict[str, Any]) -> str:
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    if host.endswith("]"):  # [::1] without a port
        return host.lower()
    return host.rpartition(":")[0].lower() if ":" in host else host.lower()
