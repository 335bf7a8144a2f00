"""Routing: host first, then the longest mount prefix on a segment boundary.

Usage::

    from ctxserve.dispatch import Dispatcher
    application = Dispatcher([blog, shop])        # loaded ctxserve.apps.App objects

or, from a config file, ``ctxserve.from_config("ctxserve.toml")`` (which
composes the whole request chain, see ``chain.py``).

Like werkzeug's ``DispatcherMiddleware``, a match moves the mount from
``PATH_INFO`` to ``SCRIPT_NAME``: ``/blog/x`` reaches the app mounted at
``/blog`` with ``SCRIPT_NAME="/blog"`` and ``PATH_INFO="/x"``. Unlike it,
the routing table is built once: each table is keyed by the path's first
segment, so most requests are routed with one dict lookup and one prefix
test, however many apps are mounted. The table (:class:`Routes`) is never
changed once built; a per-app reload builds a new one and swaps it in with
one assignment (:meth:`Dispatcher.set_apps`).

What a route leads to is the app's *hop*: ``hop(app)`` is called once per
app when a table is built — by default ``app.serve``, the app in its own
context; with the admin listener on, the app metered (``chain.py``).

Host matching uses ``Host`` (without its port, lower-cased), else
``SERVER_NAME``: exact names, then ``*.suffix`` wildcards (longest suffix
first), then the apps without a ``host``. ``X-Forwarded-Host`` is ignored.

No other request header steers routing. gunicorn copies a ``SCRIPT_NAME``
request header into ``environ['SCRIPT_NAME']`` (and cuts it off
``PATH_INFO``) when the peer is in its ``forwarded_allow_ips`` — 127.0.0.1
and every unix-socket peer by default — and ``SCRIPT_NAME`` is in
``forwarder_headers`` (the default). The router undoes that before it
routes (it sees ``HTTP_SCRIPT_NAME``, which gunicorn sets alongside): the
request is routed on the path the client asked for, under the server's own
``SCRIPT_NAME`` environment variable if it has one.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .apps import App, StartResponse, WSGIApp

__all__ = ["Dispatcher", "Routes", "not_found"]

#: What a route leads to: the routed app's name and the WSGI callable that answers.
Entry = tuple[str, WSGIApp]

_NOT_FOUND = b"Not Found: no app is mounted at this path\n"
_NOT_FOUND_HEADERS = [("Content-Type", "text/plain; charset=utf-8"),
                      ("Content-Length", str(len(_NOT_FOUND)))]


def not_found(start_response: StartResponse) -> Iterable[bytes]:
    """The answer to a request that matches no app: a short plain-text 404."""
    start_response("404 Not Found", _NOT_FOUND_HEADERS)
    return [_NOT_FOUND]


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
        #: "/segment" -> (its one-segment mount or None, its entry or None,
        #: deeper mounts under it as (mount, mount + "/", entry), longest first)
        self.first: dict[str, tuple[str | None, Entry | None, tuple[tuple[str, str, Entry], ...]]] = {}
        self.root: Entry | None = None

    def add(self, mount: str, entry: Entry) -> None:
        if mount == "/":
            self.root = entry
            return
        segment, _, rest = mount[1:].partition("/")
        segment = "/" + segment
        one, one_entry, deeper = self.first.get(segment, (None, None, ()))
        if rest:
            deeper = tuple(sorted([*deeper, (mount, mount + "/", entry)],
                                  key=lambda item: len(item[0]), reverse=True))
        else:
            one, one_entry = mount, entry
        self.first[segment] = (one, one_entry, deeper)

    def route(self, environ: dict[str, Any]) -> Entry | None:
        """The entry for the request, with ``SCRIPT_NAME``/``PATH_INFO`` shifted."""
        path = environ.get("PATH_INFO", "")
        end = path.find("/", 1)
        found = self.first.get(path[:end] if end > 0 else path)
        if found is not None:
            mount, entry, deeper = found
            for mount_, prefix, entry_ in deeper:
                if path == mount_ or path.startswith(prefix):
                    environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount_
                    environ["PATH_INFO"] = path[len(mount_):]
                    return entry_
            if entry is not None:
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount  # type: ignore[operator]
                environ["PATH_INFO"] = path[end:] if end > 0 else ""
                return entry
        return self.root


class Routes:
    """Every app's routes, built once from a list of apps and never changed after.

    ``hop(app)`` is what a route to *app* leads to (see the module docstring).
    """

    def __init__(self, apps: Sequence[App], hop: Callable[[App], WSGIApp]) -> None:
        self.apps: tuple[App, ...] = tuple(apps)
        self.anyhost = _Mounts()
        self.exact: dict[str, _Mounts] = {}
        self.wildcard: list[tuple[str, _Mounts]] = []
        for app in self.apps:
            entry = (app.name, hop(app))
            if not app.config.host:
                self.anyhost.add(app.config.mount, entry)
            for host in app.config.host:
                if host.startswith("*."):
                    table = dict(self.wildcard).get(host[1:])
                    if table is None:
                        table = _Mounts()
                        self.wildcard.append((host[1:], table))
                else:
                    table = self.exact.setdefault(host, _Mounts())
                table.add(app.config.mount, entry)
        self.wildcard.sort(key=lambda item: len(item[0]), reverse=True)
        #: Virtual hosts are configured: the host is read before the path.
        self.hosts = bool(self.exact or self.wildcard)
        #: "/segment" -> entry, for the one-segment mounts of a server without
        #: virtual hosts that have no deeper mount under them: the common
        #: case, routed by :meth:`Dispatcher.__call__` with one dict lookup.
        self.fast: dict[str, Entry] = {} if self.hosts else {
            segment: entry for segment, (mount, entry, deeper) in self.anyhost.first.items()
            if entry is not None and not deeper}

    def route(self, environ: dict[str, Any]) -> Entry | None:
        """The entry for a request the fast table did not answer (``SCRIPT_NAME``/``PATH_INFO`` shifted)."""
        if not self.hosts:
            return self.anyhost.route(environ)
        host = _host(environ)
        table = self.exact.get(host)
        if table is not None and (entry := table.route(environ)):
            return entry
        for suffix, table in self.wildcard:
            if host.endswith(suffix) and (entry := table.route(environ)):
                return entry
        return self.anyhost.route(environ)


class Dispatcher:
    """The WSGI app that routes each request to one app's hop.

    Requests that match no app get a plain-text 404. The routed app's name
    is put in the environ as ``ctxserve.app`` (for access logs).
    """

    def __init__(self, apps: Sequence[App], hop: Callable[[App], WSGIApp] = operator.attrgetter("serve")) -> None:
        self.hop = hop
        #: The server's own prefix (gunicorn reads the same variable), kept
        #: when a SCRIPT_NAME request header is undone.
        self.script_name = os.environ.get("SCRIPT_NAME", "")
        self.routes = Routes(apps, hop)

    @property
    def apps(self) -> tuple[App, ...]:
        """The apps routed to now."""
        return self.routes.apps

    def set_apps(self, apps: Sequence[App]) -> None:
        """Route to *apps* from now on (a per-app reload swaps one App).

        The new table is built aside and takes effect with one attribute
        assignment: a request routes with either the old table or the new
        one, and requests in flight finish on the app they were routed to.
        """
        self.routes = Routes(apps, self.hop)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if "HTTP_SCRIPT_NAME" in environ:  # a request header never steers routing
            self.undo_script_name_header(environ)
        routes = self.routes
        path = environ.get("PATH_INFO", "")
        end = path.find("/", 1)
        mount = path[:end] if end > 0 else path
        entry = routes.fast.get(mount)
        if entry is not None:  # a one-segment mount: on the segment boundary by construction
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount
            environ["PATH_INFO"] = path[end:] if end > 0 else ""
        elif (entry := routes.route(environ)) is None:
            return not_found(start_response)
        environ["ctxserve.app"] = entry[0]
        return entry[1](environ, start_response)

    def undo_script_name_header(self, environ: dict[str, Any]) -> None:
        """Put back the path the client asked for, which a ``SCRIPT_NAME`` header cut in two.

        Only the server's own prefix (its ``SCRIPT_NAME`` environment
        variable) stays in ``SCRIPT_NAME``, when the path starts with it.
        """
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        base = self.script_name
        if base and (path == base or path.startswith(base.rstrip("/") + "/")):
            environ["SCRIPT_NAME"], environ["PATH_INFO"] = base, path[len(base):]
        else:
            environ["SCRIPT_NAME"], environ["PATH_INFO"] = "", path


def _host(environ: dict[str, Any]) -> str:
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    if host.endswith("]"):  # [::1] without a port
        return host.lower()
    return host.rpartition(":")[0].lower() if ":" in host else host.lower()
