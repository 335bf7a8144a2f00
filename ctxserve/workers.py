"""gunicorn workers that run each request in one context, from request line to ``close()``.

Under a foreign server ctxserve must re-enter the app's context for every
``next()`` of a streaming response and for its ``close()`` (a wrapper;
see ``binding.bind_response``). Its own workers do better: each request —
the app's call, the iteration of its response, ``close()`` and the access
log line — runs in a fresh context of its own, so the dispatcher only sets
the app's binding in it (``ContextVar.set``, O(1)) and returns the
response as it is. ``ctxserve serve`` uses these in place of gunicorn's
``sync``, ``gthread`` and ``gevent`` workers; they are otherwise gunicorn's
own, except that SIGUSR1 reopens the apps' log files along with gunicorn's
(:class:`ReopenAppFiles`).
"""

from __future__ import annotations

import contextvars
from typing import Any

from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker
from gunicorn.workers.sync import SyncWorker as _SyncWorker

from . import binding as _binding
from . import config as _config
from . import streams as _streams

__all__ = ["ReopenAppFiles", "RequestScope", "SyncWorker", "ThreadWorker", "GeventWorker", "WORKERS"]

#: A context in which ``request_scope`` is set; each request runs in a copy.
_SCOPE = contextvars.Context()
_SCOPE.run(_binding.request_scope.set, True)


class RequestScope:
    """Mixin for a gunicorn worker: each ``handle_request`` in a fresh context."""

    def handle_request(self, *args: Any) -> Any:
        return _SCOPE.copy().run(self._handle_in_scope, *args)

    def _handle_in_scope(self, *args: Any) -> Any:
        try:
            return super().handle_request(*args)  # type: ignore[misc]
        finally:
            if _streams.partial_lines.get():
                _streams.flush_partial_lines()


class ReopenAppFiles:
    """Mixin for a gunicorn worker: SIGUSR1 reopens the apps' log files too.

    gunicorn's master reopens its own logs on SIGUSR1 and sends the signal
    on to every worker, which reopens its logs; the apps' ``stdout``/
    ``stderr`` files (``streams.reopen_files``) are reopened along with them.
    """

    def handle_usr1(self, sig: int, frame: Any) -> None:
        super().handle_usr1(sig, frame)  # type: ignore[misc]
        _streams.reopen_files()


class SyncWorker(RequestScope, ReopenAppFiles, _SyncWorker):
    pass


class ThreadWorker(RequestScope, ReopenAppFiles, _ThreadWorker):
    def _handle_in_scope(self, *args: Any) -> Any:
        try:
            return super()._handle_in_scope(*args)
        except SystemExit as exc:
            # In a pool thread a SystemExit is the app's own (sys.exit() in
            # its response iterator): gunicorn's signal handlers raise theirs
            # in the main thread. Escaping, it would end the worker — and
            # every app's requests in flight — so it ends this request only.
            raise RuntimeError(f"the app called sys.exit({exc.code!r}) while its response "
                               "was being sent") from exc


#: ``[server] worker_class`` -> the worker ``ctxserve serve`` runs (declared in config).
WORKERS = _config.GUNICORN_WORKERS


def __getattr__(name: str) -> Any:
    """``GeventWorker`` is made on first use: importing it imports gevent."""
    if name == "GeventWorker":
        from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

        worker = type("GeventWorker", (RequestScope, ReopenAppFiles, _GeventWorker), {"__module__": __name__})
        globals()["GeventWorker"] = worker
        return worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
