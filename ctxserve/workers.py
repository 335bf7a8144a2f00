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

They also say which listener each request arrived on
(``binding.listener``: ``"admin"`` or ``"public"``), from the listening
socket that accepted the connection — never from ``Host``,
``SERVER_NAME``/``SERVER_PORT`` (which gunicorn fills from ``Host`` on a
unix socket) or any other request data. :meth:`RequestScope.serve_admin_on`
names the admin listener among the worker's sockets (the
``post_worker_init`` hook calls it); each request then starts in a copy of
one of two prepared contexts, so telling the listeners apart costs one set
lookup.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import os
import socket
import stat
import sys
from typing import Any

from gunicorn.arbiter import Arbiter as _Arbiter
from gunicorn import util
from gunicorn.errors import HaltServer
from gunicorn.workers.base import Worker as _Worker
from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker
from gunicorn.workers.sync import SyncWorker as _SyncWorker

from . import binding as _binding
from . import config as _config
from . import streams as _streams

__all__ = ["Arbiter", "ReopenAppFiles", "RequestScope", "SyncWorker", "ThreadWorker", "GeventWorker", "WORKERS",
           "booted", "mark_booted", "socket_name"]


def _scope(listener: str) -> contextvars.Context:
    """A context in which ``request_scope`` and ``listener`` are set; each request runs in a copy."""
    scope = contextvars.Context()
    scope.run(_binding.request_scope.set, True)
    scope.run(_binding.listener.set, listener)
    return scope


_PUBLIC, _ADMIN = _scope(_binding.PUBLIC), _scope(_binding.ADMIN)


def socket_name(address: str) -> Any:
    """The name (``getsockname()``) the listener configured as *address* will have, if known now.

    Known for an inherited ``fd://N`` while the descriptor is still open (in
    gunicorn's master, before it takes the sockets over); ``None`` for the
    other forms, which are matched by their configured address instead.
    """
    parsed = _config.parse_address(address)
    if parsed.fd is None:
        return None
    try:
        with socket.socket(fileno=os.dup(parsed.fd)) as sock:
            return sock.getsockname()
    except OSError:
        return None


class RequestScope:
    """Mixin for a gunicorn worker: each ``handle_request`` in a fresh context,
    and nothing an app raises ends the worker.

    gunicorn's workers catch ``Exception`` (and ``SystemExit``) around a
    request; what else an app raises from its response iterator or its
    ``close()`` — ``KeyboardInterrupt``, ``asyncio.CancelledError``,
    ``GeneratorExit`` — escaped gthread's pool into the worker's main loop,
    ending the worker with every app's requests in flight. Here it is an
    error of that request (:class:`~ctxserve.binding.AppRaised`) while the
    worker is alive; a stopping worker's own ``SystemExit`` or
    ``GreenletExit`` passes.

    The request's context names the listener it arrived on
    (``binding.listener``), from the socket, see :meth:`serve_admin_on`.
    """

    #: The admin listener: gunicorn's listener objects and their socket names
    #: (what each worker class's ``handle_request`` is given), or empty.
    admin_listeners: frozenset[Any] = frozenset()

    def handle_request(self, *args: Any) -> Any:
        admin = self.admin_listeners and self.listener_of(*args) in self.admin_listeners
        return (_ADMIN if admin else _PUBLIC).copy().run(self._handle_in_scope, *args)

    def serve_admin_on(self, address: str, *, name: Any = None, last: bool = False) -> bool:
        """Treat the listener configured as *address* as the admin listener; False if none is.

        gunicorn keeps the listeners in bind order. The admin one is the last
        whose configured address is *address* (or whose socket name is
        *name*, see :func:`socket_name`); with *last* (``ctxserve serve``
        binds it last) the last listener when none matches, e.g. sockets
        inherited from a re-exec.
        """
        wanted = _config.parse_address(address)
        sockets = list(self.sockets)  # type: ignore[attr-defined]
        found = [s for s in sockets if _is(s, wanted, name)]
        chosen = found[-1:] or (sockets[-1:] if last else [])
        keys: set[Any] = set(chosen)
        for listener in chosen:
            try:
                keys.add(listener.getsockname())
            except OSError:
                pass
        self.admin_listeners = frozenset(keys)
        return bool(chosen)

    def _handle_in_scope(self, *args: Any) -> Any:
        try:
            return super().handle_request(*args)  # type: ignore[misc]
        except Exception:
            raise
        except SystemExit as exc:
            # gunicorn let it through: no byte of the response was sent yet
            # (it ends a started one itself), so the client gets a 500.
            if not self.alive:  # type: ignore[attr-defined]
                raise
            raise _binding.AppRaised(exc) from exc
        except BaseException as exc:
            if not self.alive:  # type: ignore[attr-defined]
                raise
            # Whether the response had started is not known here: the
            # connection is closed rather than risk a 500 inside a body —
            # here, as gunicorn does for a started response, not in the
            # gthread worker's main loop, which its linger would hold up.
            self.log.exception("ctxserve: %s", _binding.AppRaised(exc))  # type: ignore[attr-defined]
            util.close_graceful(self.request_socket(*args))
            raise StopIteration from exc
        finally:
            if _streams.partial_lines.get():
                _streams.flush_partial_lines()

    def run(self) -> None:
        """After boot: mark the worker booted for the master (:class:`Arbiter`), and
        let no exception but the worker's own ``SystemExit`` leave it: escaping
        into gunicorn's code in this process it would run the master's halt
        path here (``on_exit``, stopping the sibling workers)."""
        mark_booted(self.tmp)  # type: ignore[attr-defined]
        try:
            super().run()  # type: ignore[misc]
        except (Exception, SystemExit):
            raise
        except BaseException as exc:
            self.log.error("ctxserve: worker %s stops after %r; the master starts another",  # type: ignore[attr-defined]
                           os.getpid(), exc)
            sys.exit(1)

    @staticmethod
    def request_socket(listener: Any, req: Any, sock: Any, addr: Any) -> Any:
        """The client socket among ``handle_request``'s arguments (sync and gevent)."""
        return sock

    @staticmethod
    def listener_of(listener: Any, req: Any, sock: Any, addr: Any) -> Any:
        """The listener among ``handle_request``'s arguments: sync's listener object,
        gevent's listener socket name."""
        return listener


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
    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGINT/SIGQUIT: gunicorn's worker handler, without gthread's ``tpool.shutdown()`` in it.

        gthread shuts its pool down from inside the signal handler. When the
        signal lands while the main thread is in ``tpool.submit()`` (handing
        a connection to the pool, under the pool's lock), the handler waits
        for that lock forever: the worker never exits and outlives its
        master. Without it nothing else changes: the worker ends by
        ``SystemExit`` and the interpreter's exit joins the pool's threads,
        as it did after ``shutdown(wait=False)``.
        """
        _Worker.handle_quit(self, sig, frame)

    @staticmethod
    def request_socket(req: Any, conn: Any) -> Any:  # type: ignore[override]
        return conn.sock

    @staticmethod
    def listener_of(req: Any, conn: Any) -> Any:  # type: ignore[override]
        """The connection's ``server``: its listener's socket name."""
        return conn.server


# -- a booted worker's exit status never stops the master -------------------------------

#: The mode bit of gunicorn's per-worker heartbeat file that says "booted".
#: The file is made by the master before the fork and shared with the
#: worker, which only ever touches its times: the bit is the one thing a
#: worker can tell its master that outlives ``os._exit``.
_BOOTED = stat.S_IXUSR


def mark_booted(tmp: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.fchmod(tmp.fileno(), stat.S_IMODE(os.fstat(tmp.fileno()).st_mode) | _BOOTED)


def booted(tmp: Any) -> bool:
    try:
        return bool(os.fstat(tmp.fileno()).st_mode & _BOOTED)
    except (OSError, ValueError):
        return False


class Arbiter(_Arbiter):
    """gunicorn's master, where a worker that dies after it booted is replaced whatever its exit status.

    gunicorn reads exit status 3 (WORKER_BOOT_ERROR) and 4 (APP_LOAD_ERROR)
    as "this worker could not start", and halts rather than loop: right
    before boot, wrong after it, when ``os._exit(3)`` in one app's handler
    would stop every app. gunicorn's own check still halts a worker that
    never booted.
    """

    def reap_workers(self) -> None:
        while True:
            workers = dict(self.WORKERS)
            try:
                return super().reap_workers()  # type: ignore[no-any-return]
            except HaltServer as halt:
                # The worker gunicorn popped, then halted at, is the one whose
                # heartbeat file it has not closed yet; booted() is False for
                # a closed one.
                dead = [w for pid, w in workers.items() if pid not in self.WORKERS and booted(w.tmp)]
                if len(dead) != 1:
                    raise
                worker = dead[0]
                self.log.error("ctxserve: worker %s exited with code %s after it booted; "
                               "starting another", worker.pid, halt.exit_status)
                worker.tmp.close()
                self.cfg.child_exit(self, worker)


def _is(listener: Any, wanted: _config.Address, name: Any) -> bool:
    """Whether gunicorn's *listener* is the one configured as *wanted*."""
    configured = getattr(listener, "cfg_addr", None)
    if wanted.path:
        return bool(configured == wanted.path)
    if wanted.fd is not None:
        return name is not None and configured == name
    if isinstance(configured, tuple) and len(configured) >= 2:
        try:
            host = str(ipaddress.ip_address(configured[0]))
        except ValueError:
            host = configured[0]
        return (host, configured[1]) == (wanted.host, wanted.port)
    return False


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
