"""The admin listener: ``/healthz``, ``/readyz``, ``/metrics``, ``/status``.

``[server] admin = "127.0.0.1:9100"`` is one more address the server listens
on. Requests that arrive on it reach only :data:`ROUTES`; those routes are
reachable only on it (on the public addresses they are ordinary paths, routed
to the apps or answered 404).

Which listener a request came in on is read from ``SERVER_NAME`` and
``SERVER_PORT``: for TCP listeners gunicorn sets them from the listening
socket's own address (``getsockname()``), never from the ``Host`` header, so
a client cannot pass for the admin listener. (On a unix socket gunicorn
takes them from ``Host``; the config refuses a unix admin address.) With port
0 the real port is only known after the bind: :meth:`Front.learn` takes it
from the worker's listening socket (gunicorn's ``post_worker_init``).

With the admin listener off none of this exists: the WSGI app is the plain
:class:`~ctxserve.dispatch.Dispatcher`. With it on, it is a :class:`Front`
(a Dispatcher) that compares the listener first, then routes as the
Dispatcher does, to apps whose ``serve`` is metered (:mod:`ctxserve.metrics`).

More admin routes go in :data:`ROUTES` (the ``@route`` decorator on an
:class:`AdminApp` method); an app swapped in by a reload is metered by
:meth:`Front.set_apps`.
"""

from __future__ import annotations

import html
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .apps import App, StartResponse, describe
from .config import parse_address
from . import dispatch as _dispatch
from .dispatch import Dispatcher
from .metrics import CONTENT_TYPE as _METRICS_TYPE
from .metrics import Metrics

__all__ = ["AdminApp", "Front", "ROUTES", "admin_address"]

_TEXT = "text/plain; charset=utf-8"

Handler = Callable[["AdminApp", dict[str, Any], StartResponse], Iterable[bytes]]


def admin_address(address: str) -> tuple[str | None, str]:
    """``(SERVER_NAME or None, SERVER_PORT)`` a request to *address* arrives with.

    The name is only known here for an IP literal (``getsockname()`` gives an
    IP, not the configured host name); ``None`` compares the port alone.
    """
    parsed = parse_address(address)  # an IP in its canonical spelling, as getsockname() gives it
    try:
        return str(ipaddress.ip_address(parsed.host)), str(parsed.port)
    except ValueError:
        return None, str(parsed.port)


class Front(Dispatcher):
    """The WSGI app gunicorn calls when the admin listener is on: a Dispatcher
    whose apps are metered, with the admin routes on the admin address.

    Requests to the admin address go to :class:`AdminApp`; all others are
    routed exactly as by a plain :class:`Dispatcher`.
    """

    def __init__(self, apps: Sequence[App], admin_addr: str, metrics: Metrics) -> None:
        self.metrics = metrics
        self.address = admin_addr
        self._name, self._port = admin_address(admin_addr)
        self.admin = AdminApp(self, metrics)
        self._admin = self.admin.__call__
        super().__init__(apps)

    def set_apps(self, apps: Sequence[App]) -> None:
        """Meter the apps that are not yet (e.g. one replaced by a reload), then route to them."""
        self.metrics.attach(apps)
        super().set_apps(apps)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["SERVER_PORT"] == self._port and self._name in (None, environ["SERVER_NAME"]):
            return self._admin(environ, start_response)
        # The body of Dispatcher.__call__, repeated to spare one call per
        # request: keep the two alike.
        path = environ.get("PATH_INFO", "")
        end = path.find("/", 1)
        mount = path[:end] if end > 0 else path
        app = self.fast.get(mount)
        if app is not None:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount
            environ["PATH_INFO"] = path[end:] if end > 0 else ""
        elif (app := self.route(environ)) is None:
            start_response("404 Not Found", _dispatch._TEXT)
            return _dispatch._NOT_FOUND
        environ["ctxserve.app"] = app.name
        return app.serve(environ, start_response)

    def learn(self, worker: Any, *, last: bool = False) -> bool:
        """Take the admin listener's real address from the worker's sockets.

        gunicorn keeps the listeners in bind order. The admin one is the
        last whose configured address is the admin address (``ctxserve
        serve`` binds it last, so with *last* the last listener is taken
        when none matches, e.g. sockets inherited from a re-exec). Returns
        False, and leaves the configured address, when none is found.
        """
        admin = parse_address(self.address)
        wanted = (admin.host, admin.port)
        sockets = list(getattr(worker, "sockets", ()) or ())
        found = [s for s in sockets if _configured(s) == wanted]
        chosen = found[-1] if found else (sockets[-1] if last and sockets else None)
        if chosen is None:
            return False
        try:
            name = chosen.getsockname()
        except OSError:
            return False
        if not isinstance(name, tuple):  # a unix socket
            return False
        self._name, self._port = str(ipaddress.ip_address(name[0])), str(name[1])
        return True


def _configured(listener: Any) -> Any:
    """A listener's configured ``(host, port)`` (gunicorn's reading), spelled as ``parse_address`` does."""
    address = getattr(listener, "cfg_addr", None)
    if isinstance(address, tuple) and len(address) >= 2:
        try:
            return (str(ipaddress.ip_address(address[0])), address[1])
        except ValueError:
            return (address[0], address[1])
    return address


# -- the admin routes -----------------------------------------------------------------

#: ``(method, path pattern, handler)``; the pattern is a full-match regex and
#: its named groups are passed to the handler as keyword arguments. Add routes
#: here, e.g. ``("POST", r"/apps/(?P<name>[^/]+)/reload", AdminApp.reload_app)``.
ROUTES: list[tuple[str, str, Callable[..., Iterable[bytes]]]] = []


def route(method: str, pattern: str) -> Callable[[Callable[..., Iterable[bytes]]], Callable[..., Iterable[bytes]]]:
    def add(handler: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        ROUTES.append((method, pattern, handler))
        return handler
    return add


class AdminApp:
    """The WSGI app of the admin listener (this worker's view, metrics over all workers)."""

    def __init__(self, front: Front, metrics: Metrics) -> None:
        self.front = front
        self.metrics = metrics
        self._routes = [(method, re.compile(pattern), handler) for method, pattern, handler in ROUTES]

    @property
    def apps(self) -> list[App]:
        """The apps routed to now (``Front.set_apps`` may replace them)."""
        return self.front.apps

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        self.metrics.start()  # normally already running (post_worker_init); a no-op then
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        allowed = []
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method == method or (route_method == "GET" and method == "HEAD"):
                body = handler(self, environ, start_response, **match.groupdict())
                return [] if method == "HEAD" else body
            allowed.append(route_method)
        if allowed:
            return _answer(start_response, "405 Method Not Allowed", "Method Not Allowed\n",
                           [("Allow", ", ".join(sorted(set(allowed) | ({"HEAD"} if "GET" in allowed else set()))))])
        return _answer(start_response, "404 Not Found",
                       "Not Found: the admin listener answers " +
                       ", ".join(f"{m} {p}" for m, p, _ in ROUTES) + "\n")

    # -- handlers -----------------------------------------------------------------

    @route("GET", "/healthz")
    def healthz(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return _answer(start_response, "200 OK", "ok\n")

    @route("GET", "/readyz")
    def readyz(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        failed = [app for app in self.apps if not app.loaded]
        if not failed:
            return _answer(start_response, "200 OK", f"ready: {len(self.apps)} apps loaded\n")
        lines = "".join(f"{app.name}: {app.status}\n" for app in failed)
        return _answer(start_response, "503 Service Unavailable",
                       f"not ready: {len(failed)} of {len(self.apps)} apps failed to load\n{lines}")

    @route("GET", "/metrics")
    def prometheus(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return _answer(start_response, "200 OK", self.metrics.exposition(), content_type=_METRICS_TYPE)

    @route("GET", "/status")
    def status(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rows = self.rows()
        if _wants_json(environ.get("HTTP_ACCEPT", "")):
            body = json.dumps({"pid": os.getpid(), "apps": rows}, indent=2) + "\n"
            return _answer(start_response, "200 OK", body, content_type="application/json")
        return _answer(start_response, "200 OK", status_html(rows), content_type="text/html; charset=utf-8")

    @route("POST", r"/apps/(?P<name>[^/]+)/reload")
    def reload_app(self, environ: dict[str, Any], start_response: StartResponse,
                   name: str) -> Iterable[bytes]:
        """Re-import app *name* in every worker (``ctxserve reload``; see reload.py)."""
        reloader = getattr(self.front, "reloader", None)
        if reloader is None:
            status, answer = 503, {"ok": False, "error": "per-app reload is not set up in this server"}
        else:
            status, answer = reloader.reload([name])
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
                  503: "Service Unavailable"}[status]
        return _answer(start_response, f"{status} {reason}", json.dumps(answer) + "\n",
                       content_type="application/json")

    def rows(self) -> list[dict[str, Any]]:
        """One row per app: this worker's status, the counts of every worker."""
        summary = self.metrics.summary()
        rows = []
        for app in self.apps:
            row = describe(app)
            numbers = summary.get(app.name, {})
            rows.append({
                "name": app.name,
                "route": row["route"],
                "app": row["app"],
                "status": app.status,
                "loaded": app.loaded,
                "requests": numbers.get("requests", 0),
                "errors": numbers.get("errors", 0),
                "p50_seconds": numbers.get("p50_seconds"),
                "p99_seconds": numbers.get("p99_seconds"),
                "in_flight": numbers.get("in_flight", 0),
                "globals": app.guarded,
            })
        return rows


def _wants_json(accept: str) -> bool:
    """``Accept: application/json`` (not also asking for HTML first)."""
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "application/json" in types and not (
        "text/html" in types and types.index("text/html") < types.index("application/json"))


def _answer(start_response: StartResponse, status: str, body: str | bytes,
            headers: Sequence[tuple[str, str]] = (), content_type: str = _TEXT) -> list[bytes]:
    data = body.encode() if isinstance(body, str) else body
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))),
                            ("Cache-Control", "no-store"), *headers])
    return [data]


# -- the status page --------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ctxserve status</title>
<style>
  body {{ font: 15px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1f2328; }}
  h1 {{ font-size: 1.4em; margin: 0 0 .2em; }}
  p.meta {{ color: #59636e; margin: 0 0 1.2em; }}
  table {{ border-collapse: collapse; min-width: 60%; }}
  th, td {{ padding: .45em .9em; border-bottom: 1px solid #d1d9e0; text-align: left; white-space: nowrap; }}
  th {{ background: #f6f8fa; font-weight: 600; }}
  td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
  tr:hover td {{ background: #f6f8fa; }}
  .ok {{ color: #1a7f37; font-weight: 600; }}
  .bad {{ color: #cf222e; font-weight: 600; }}
  .why {{ color: #59636e; font-size: .9em; white-space: normal; }}
</style>
</head>
<body>
<h1>ctxserve</h1>
<p class="meta">{summary} &middot; worker {pid} &middot; counts over all workers &middot;
also as JSON with <code>Accept: application/json</code></p>
<table>
<thead><tr><th>app</th><th>mount / host</th><th>status</th><th class="num">requests</th>
<th class="num">errors (5xx)</th><th class="num">p50 latency</th><th class="num">p99 latency</th>
<th class="num">in flight</th><th>changed process globals</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "&ndash;"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}&nbsp;&micro;s"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}&nbsp;ms"
    return f"{seconds:.2f}&nbsp;s"


def status_html(rows: Sequence[dict[str, Any]]) -> str:
    """The status page: one row per app; every value from outside is escaped."""
    esc = html.escape
    lines = []
    for row in rows:
        if row["loaded"]:
            status = '<span class="ok">loaded</span>'
        else:
            why = str(row["status"]).removeprefix("failed: ")
            status = f'<span class="bad">failed</span> <span class="why">{esc(why)}</span>'
        lines.append(
            f'<tr><td><b>{esc(row["name"])}</b></td><td><code>{esc(row["route"])}</code></td>'
            f'<td>{status}</td><td class="num">{int(row["requests"])}</td>'
            f'<td class="num">{int(row["errors"])}</td><td class="num">{_ms(row["p50_seconds"])}</td>'
            f'<td class="num">{_ms(row["p99_seconds"])}</td><td class="num">{int(row["in_flight"])}</td>'
            f'<td>{esc("; ".join(f"{k}: {v}" for k, v in row["globals"].items()))}</td></tr>')
    failed = sum(1 for row in rows if not row["loaded"])
    summary = f"{len(rows)} apps, all loaded" if not failed else f"{len(rows)} apps, {failed} failed"
    return _PAGE.format(summary=esc(summary), pid=os.getpid(), rows="\n".join(lines))
