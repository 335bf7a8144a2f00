"""The admin listener: ``/healthz``, ``/readyz``, ``/metrics``, ``/status``, per-app reload.

``[server] admin = "127.0.0.1:9100"`` (or ``"unix:/run/ctxserve-admin.sock"``,
or any address gunicorn binds) is one more address the server listens on.
Requests that arrive on it reach only :data:`ROUTES`; those routes are
reachable only on it (on the public addresses they are ordinary paths,
routed to the apps or answered 404).

Which listener a request came in on is said by the server that accepted it,
from the listening socket — ctxserve's workers set ``binding.listener``
(``workers.py``) — and never read from request data: not ``Host``, not
``SERVER_NAME``/``SERVER_PORT`` (gunicorn fills them from ``Host`` on a unix
socket), not any header. A server that does not say (gunicorn's own
workers, another WSGI server) gets no admin routes at all: every listener
serves the apps, and :class:`Front` says so once on the server's stderr.

With the admin listener off none of this exists: the WSGI app is the
:class:`~ctxserve.dispatch.Dispatcher` itself. With it on, ``chain.compose``
puts a :class:`Front` before it: the listener split, whose two sides are the
:class:`AdminApp` and the Dispatcher of metered apps.

More admin routes go in :data:`ROUTES` (the ``@route`` decorator on an
:class:`AdminApp` method).
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import binding as _binding
from .apps import App, StartResponse, WSGIApp, describe
from .dispatch import Dispatcher
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics

if TYPE_CHECKING:
    from .reload import Reloader

__all__ = ["AdminApp", "Front", "ROUTES", "route", "status_html"]

_TEXT = "text/plain; charset=utf-8"

Handler = Callable[["AdminApp", dict[str, Any], StartResponse], Iterable[bytes]]

_UNKNOWN_LISTENER = (
    "ctxserve: [server] admin is set, but this server does not say which socket a request "
    "arrived on (gunicorn's own workers, or another WSGI server), so the admin routes are off "
    "and every listener serves the apps; serve with `ctxserve serve` or "
    "`gunicorn -c deploy/gunicorn.conf.py` (ctxserve's workers) to have them\n")


class Front:
    """The listener split: the admin listener's requests to *admin*, all others to *public*.

    ``address`` is the configured admin address; ``metrics`` and
    ``reloader`` are the parts that run in each worker (started by the
    ``post_worker_init`` hook, ``server.gunicorn_hooks``).
    """

    def __init__(self, *, public: Dispatcher, admin: WSGIApp, address: str, metrics: Metrics,
                 reloader: Reloader | None) -> None:
        self.public = public
        self.admin = admin
        self.address = address
        self.metrics = metrics
        self.reloader = reloader
        self.warned = False

    @property
    def apps(self) -> tuple[App, ...]:
        """The apps routed to now."""
        return self.public.apps

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        on = _binding.listener.get()
        if on == _binding.ADMIN:
            return self.admin(environ, start_response)
        if not on and not self.warned:
            self.warned = True
            _binding.server.stderr.write(_UNKNOWN_LISTENER)
            _binding.server.stderr.flush()
        return self.public(environ, start_response)


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

    def __init__(self, router: Dispatcher, metrics: Metrics, reloader: Reloader | None = None) -> None:
        self.router = router
        self.metrics = metrics
        self.reloader = reloader
        self._routes = [(method, re.compile(pattern), handler) for method, pattern, handler in ROUTES]

    @property
    def apps(self) -> tuple[App, ...]:
        """The apps routed to now (a per-app reload may replace one)."""
        return self.router.apps

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
        return _answer(start_response, "200 OK", self.metrics.exposition(), content_type=METRICS_CONTENT_TYPE)

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
        if self.reloader is None:
            status, answer = 503, {"ok": False, "error": "per-app reload is not set up in this server"}
        else:
            status, answer = self.reloader.reload([name])
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
