"""The request chain, composed once: listener split → router → meter → app context → the app.

:func:`compose` is the one place that decides which callable answers a
request at each hop. Every hop is a plain WSGI callable made when the apps
are built; optional hops are present or absent by composition, never
probed or swapped per request:

1. **listener split** (:class:`ctxserve.admin.Front`) — only with the admin
   listener: the admin listener's requests go to the admin routes, all
   others on. Which listener is the server's word (``binding.listener``).
2. **router** (:class:`ctxserve.dispatch.Dispatcher`) — host, then mount;
   a per-app reload swaps its one immutable routing table.
3. **meter** (:meth:`ctxserve.metrics.Metrics.meter`) — only with the admin
   listener: counts, status and latency for ``/metrics`` and ``/status``.
4. **app context** (``App.serve``) — the app's bulkhead, its binding set
   for the whole response, its errors ending that request only.
5. **the app** — the configured WSGI callable (with a fresh decimal context
   per request when the app has a ``decimal`` table).

What differs between servers is passed in, not looked up: *gunicorn* says
that ``start_response`` is a method of gunicorn's ``Response`` (the meter
then reads the status from it instead of wrapping ``start_response``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .apps import App, WSGIApp
from .dispatch import Dispatcher

__all__ = ["compose"]


def compose(apps: Sequence[App], *, admin: str = "", config_path: str | os.PathLike[str] | None = None,
            gunicorn: bool = False) -> Any:
    """The WSGI app that serves *apps* (loaded), with the admin listener at *admin* if set.

    *config_path*: the config a per-app reload re-reads (admin listener only).
    """
    if not admin:
        return Dispatcher(apps)  # router → app context → the app
    # Imported only with the admin listener on, and before any app runs:
    # prometheus-client reads PROMETHEUS_MULTIPROC_DIR when it is imported.
    from .admin import AdminApp, Front
    from .metrics import Metrics
    from .reload import Reloader

    metrics = Metrics()

    def metered(app: App) -> WSGIApp:  # meter → app context → the app
        return metrics.meter(app, app.serve, gunicorn=gunicorn)

    router = Dispatcher(apps, metered)
    reloader = Reloader(router, config_path) if config_path is not None else None
    return Front(public=router, admin=AdminApp(router, metrics, reloader), address=admin,
                 metrics=metrics, reloader=reloader)
