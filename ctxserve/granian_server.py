"""Serving the apps with granian: ``[server] engine = "granian"``.

granian (a Rust HTTP server) runs a WSGI app on a pool of Python threads
per worker process and does the HTTP work — parsing, keep-alive, slow
clients — in Rust, off those threads. ctxserve's isolation needs nothing
from the server but a WSGI call, so the same apps, contexts and routes run
on it unchanged; this module gives it what ``ctxserve serve`` adds around
gunicorn:

* **listeners** — granian serves one address. :class:`GranianServer`
  binds it in the master (so that port 0 is one port for every worker) and
  hands it to granian as an inherited socket. The admin listener is a
  second socket, bound beside it; in every worker a small thread serves
  it and calls only the admin routes, while granian calls only the apps'
  router: which app a request may reach is decided by the socket it came
  in on, never by request data.
* **the request scope** — each request runs in one copy of its app's
  context from the call to ``close()``: granian iterates a response after
  the app's call has returned, so a streamed body is re-entered in that
  same context for each chunk (``binding.bind_response``); a list body
  runs no app code and is returned as it is.
* **metrics, per-app reload, /status** — the same objects as under
  gunicorn (``admin.Front``, ``metrics.Metrics``, ``reload.Reloader``),
  started in each worker when it has loaded the apps; a worker's last
  counts are folded when it exits.
* **SIGHUP** — granian restarts its workers one by one; the master reads
  the config again first (:meth:`GranianServer.reread`) and the new
  workers load it. A config that fails validation is refused and logged,
  and the workers load the previous one. Listening addresses, worker and
  thread counts are the master's: changing them needs a restart (logged).
* **SIGTERM / SIGINT** — granian stops its workers gracefully, each given
  ``timeout`` seconds (``[server.granian] workers_kill_timeout``) to
  finish its requests in flight.
* **SIGUSR1** — as under gunicorn: the master sends it on to every worker,
  which reopens the apps' log files by name (``streams.reopen_files``), so
  logrotate works without copytruncate. (granian itself leaves SIGUSR1 at
  its default, which would end the master and orphan the workers.)
* **access log** — ``access_log`` writes one line per request, in
  gunicorn's default format plus ``app=NAME`` (:class:`AccessLog`).

The master never imports an app: workers load them after the fork.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from . import config as _config
from . import streams as _streams
from .apps import StartResponse, WSGIApp
from .config import Config, ConfigError
from .server import application, log_app_records, make_shared_dirs, print_table, remove_shared_dirs

__all__ = ["AccessLog", "GranianServer", "Responses", "granian_settings", "listen", "serve_admin"]

log = logging.getLogger("ctxserve.granian")


#: granian's log (and this module's) on the server's stderr, in gunicorn's format.
LOGGING: dict[str, Any] = {
    "formatters": {"generic": {"()": "logging.Formatter",
                               "fmt": "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
                               "datefmt": "%Y-%m-%d %H:%M:%S %z"}},
    "handlers": {"console": {"formatter": "generic", "class": "logging.StreamHandler",
                             "stream": "ext://sys.__stderr__"}},
    "loggers": {"_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
                "ctxserve.granian": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}


def granian_settings(config: Config) -> dict[str, Any]:
    """The keyword arguments of ``granian.Granian`` that ``[server]`` stands for.

    What ctxserve always asks of granian, then what the declared keys give
    (:func:`ctxserve.config.granian_settings`).
    """
    return {
        "interface": "wsgi",
        # A worker that dies is replaced, as gunicorn's master does.
        "respawn_failed_workers": True,
        "log_access": False,  # ctxserve's own, which names the app (AccessLog)
        "log_dictconfig": LOGGING,
        # workers, threads, timeout and [server.granian], from their declarations.
        **_config.granian_settings(config.server),
    }


# -- listeners ---------------------------------------------------------------------

def listen(address: str, backlog: int = 1024) -> socket.socket:
    """A listening socket on *address* (``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:/PATH``)."""
    parsed = _config.parse_address(address)
    if parsed.path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(parsed.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(parsed.path)
    else:
        family = socket.AF_INET6 if ":" in parsed.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it (Linux): a streamed response is
        # written in several sends, which Nagle's algorithm would hold back
        # for the client's delayed ACK (measured: a third of the req/s).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((parsed.host, parsed.port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def url(sock: socket.socket) -> str:
    name = sock.getsockname()
    if isinstance(name, str):
        return f"unix:{name}"
    host = f"[{name[0]}]" if ":" in name[0] else name[0]
    return f"http://{host}:{name[1]}"


def _granian_class() -> type:
    """granian's process-mode server, taking listening sockets bound here."""
    from granian._granian import SocketHolder
    from granian.server import Server

    class Granian(Server):  # type: ignore[misc, valid-type]
        #: Set before serve(): the public socket, and the text of the "Listening at" line.
        ctxserve_socket: socket.socket
        ctxserve_listening: str = ""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.respawned_wrks = _NoCrashLoop()

        def _init_shared_socket(self) -> None:
            # granian binds its address itself, per worker on Linux (so a
            # port 0 would be one port per worker): give it ours instead.
            self._ssp = None
            sock = self.ctxserve_socket
            self._shd = SocketHolder(sock.fileno(), sock.family == socket.AF_UNIX, self.backlog)
            self._sfd = self.ctxserve_socket.fileno()
            self._sso = self.ctxserve_socket

        def _drop_shared_socket(self) -> None:
            pass  # ours: closed by GranianServer.run

        @property
        def _bind_addr_fmt(self) -> str:
            return self.ctxserve_listening

    return Granian


class _NoCrashLoop(dict):  # type: ignore[type-arg]
    """granian's record of when each worker was respawned, read as "long ago".

    granian stops the whole server when a worker dies again within 5.5 s
    of its respawn ("crash loop"). With several apps in one worker, one
    app's ``os._exit()`` or segfault, twice, would stop every app: ctxserve
    has the dead worker replaced whatever, as gunicorn's master does (an app
    that fails to import does not kill a worker: it answers 503).
    """

    def get(self, key: Any, default: Any = None) -> float:
        return 0.0


# -- the admin listener, in each worker ----------------------------------------------

class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _AdminServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve_admin(sock: socket.socket, app: WSGIApp) -> _AdminServer:
    """Serve *app* on the (inherited, listening) admin socket *sock*, in a daemon thread.

    Every worker accepts on the same socket; the socket is non-blocking so
    that a worker whose ``accept`` lost the race goes back to waiting.
    """
    sock.setblocking(False)
    server = _AdminServer(sock.getsockname()[:2], _Quiet, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_name, server.server_port = socket.getfqdn(sock.getsockname()[0]), sock.getsockname()[1]
    server.setup_environ()
    server.set_app(app)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                     name="ctxserve-admin", daemon=True).start()
    return server


# -- responses: what gunicorn's worker does around one, and granian does not ----------------

_ERROR_BODY = b"Internal Server Error: the application raised an exception\n"
_ERROR_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(_ERROR_BODY)))]


class Responses:
    """WSGI middleware: a streamed response as gunicorn's worker sends it.

    granian sends the status and headers as soon as the app's call returns
    and then iterates; so this takes the first chunk before handing the
    response over. An app that calls ``start_response`` at its first
    iteration (as WSGI allows) then has its status sent, and one that
    raises before its first chunk gets a 500 rather than a cut 200. An
    exception later in the iteration ends that response (granian logs it);
    one in ``close()`` is logged here, with its traceback (granian drops it).
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        result = self.app(environ, start_response)
        if type(result) is list or type(result) is tuple:
            return result
        iterator = iter(result)
        try:
            first = next(iterator)
        except StopIteration:
            _close(result, environ)
            return []
        except BaseException:
            log.exception("Error handling request %s", environ.get("RAW_URI") or environ.get("PATH_INFO"))
            _close(result, environ)
            start_response("500 Internal Server Error", _ERROR_HEADERS, sys.exc_info())
            return [_ERROR_BODY]
        return _Rest(first, iterator, result, environ)


def _close(result: Any, environ: dict[str, Any]) -> None:
    close = getattr(result, "close", None)
    if close is None:
        return
    try:
        close()
    except BaseException:
        log.exception("Error closing the response of %s", environ.get("PATH_INFO"))


class _Rest:
    """The first chunk, then the rest of the response; ``close()`` closes it.

    ``iter()`` of it is a C iterator (``itertools.chain``): granian calls
    its ``__next__`` for every chunk, and a Python ``__next__`` there
    measured twice as slow per streamed request.
    """

    __slots__ = ("_chunks", "_result", "_environ")

    def __init__(self, first: bytes, iterator: Iterator[bytes], result: Any, environ: dict[str, Any]) -> None:
        self._chunks = itertools.chain((first,), iterator)
        self._result, self._environ = result, environ

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks  # an error while iterating is logged by granian, which ends the response

    def close(self) -> None:
        _close(self._result, self._environ)


# -- the access log ---------------------------------------------------------------------

class AccessLog:
    """WSGI middleware: one line per request, written when the response is closed.

    gunicorn's default format, then ``app=NAME`` (``-`` for a request no
    app answered)::

        127.0.0.1 - - [02/Dec/2026:05:01:02 +0000] "GET /blog/x HTTP/1.1" 200 12 "-" "curl/8" app=blog
    """

    def __init__(self, app: WSGIApp, out: TextIO) -> None:
        self.app = app
        self.out = out
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = _Request(environ, start_response, self)
        result = self.app(environ, request.start_response)
        if type(result) is list or type(result) is tuple:
            request.sent = sum(map(len, result))
            request.write()
            return result
        return _Logged(result, request)


class _Request:
    __slots__ = ("environ", "inner", "log", "status", "length", "sent", "done")

    def __init__(self, environ: dict[str, Any], inner: StartResponse, log: AccessLog) -> None:
        self.environ, self.inner, self.log = environ, inner, log
        self.status, self.length, self.sent, self.done = "-", "-", None, False

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = status.split(" ", 1)[0]
        for name, value in headers:
            if name.lower() == "content-length":
                self.length = value
        return self.inner(status, headers, exc_info) if exc_info else self.inner(status, headers)

    def write(self) -> None:
        if self.done:
            return
        self.done = True
        env = self.environ
        target = (env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")) or "/"
        if env.get("QUERY_STRING"):
            target += "?" + env["QUERY_STRING"]
        size = self.length if self.sent is None else str(self.sent)
        line = (f'{env.get("REMOTE_ADDR", "-")} - - [{time.strftime("%d/%b/%Y:%H:%M:%S %z")}] '
                f'"{env.get("REQUEST_METHOD", "-")} {target} {env.get("SERVER_PROTOCOL", "-")}" '
                f'{self.status} {size} "{env.get("HTTP_REFERER", "-")}" "{env.get("HTTP_USER_AGENT", "-")}" '
                f'app={env.get("ctxserve.app", "-")}\n')
        with self.log.lock:
            self.log.out.write(line)
            self.log.out.flush()


class _Logged:
    """Iterates as the response does; writes the line when the server closes it."""

    __slots__ = ("_result", "_request")

    def __init__(self, result: Iterable[bytes], request: _Request) -> None:
        self._result, self._request = result, request

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._request.write()


def _access_log_stream(target: str) -> TextIO:
    if target == "-":
        return sys.__stdout__  # the real stdout, never an app's
    return open(target, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - the worker's lifetime


# -- the server ---------------------------------------------------------------------------

class GranianServer:
    """granian serving the apps of one config (``ctxserve serve`` with ``engine = "granian"``)."""

    def __init__(self, config: Config, overrides: Mapping[str, Any] | None = None) -> None:
        self.config = config
        #: Command-line options, applied again when SIGHUP re-reads the file.
        self.overrides = dict(overrides or {})
        self.admin_socket: socket.socket | None = None
        # One flag shared with every worker (inherited at fork): the first prints the table.
        self._table_printed = multiprocessing.Value("b", 0)
        self._master_pid = os.getpid()
        self._workers: list[Any] = []  # granian's, once serving (for SIGUSR1)

    def on_usr1(self, signum: int, frame: Any) -> None:
        """SIGUSR1: the master sends it on to every worker; a worker reopens the apps' log files.

        One handler for both: a forked worker inherits the master's until
        :meth:`load` installs its own, and must never signal its siblings.
        """
        if os.getpid() != self._master_pid:
            _streams.reopen_files()
            return
        for worker in list(self._workers):
            pid = getattr(getattr(worker, "inner", None), "pid", None)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)

    def reread(self) -> None:
        """On SIGHUP, in the master, before granian restarts the workers: read the config again.

        A file that fails validation is refused and logged; the new workers
        load the config the server had.
        """
        try:
            config = _config.override_server(_config.load(self.config.path), **self.overrides)
        except ConfigError as exc:
            log.error("ctxserve: config not reloaded, still serving the previous one: %s", exc)
            return
        fixed = ("bind", "admin", "workers", "threads", "engine", "granian")
        changed = [key for key in fixed if getattr(config.server, key) != getattr(self.config.server, key)]
        if changed:
            log.warning("ctxserve: [server] %s changed: applied at the next restart, not by SIGHUP",
                        ", ".join(changed))
            config = _config.Config(config.path, self.config.server, config.apps)
        self.config = config
        log.info("ctxserve: reloaded %s", self.config.path)

    def load(self) -> WSGIApp:
        """In each new worker: load the apps, start what the admin listener needs, return the WSGI app."""
        log_app_records()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self.on_usr1)  # a spawned (not forked) worker has none yet
        front = application(self.config, strict=False)
        with self._table_printed.get_lock():
            if not self._table_printed.value:
                self._table_printed.value = 1
                print_table(front.apps)
        public: WSGIApp = front
        if self.admin_socket is not None:
            # The public listener routes to the apps only: the admin routes
            # are on the admin socket, served beside it.
            public = front.public
            front.metrics.start()
            front.reloader.start()
            serve_admin(self.admin_socket, front.admin)
            multiprocessing.util.Finalize(None, _worker_exit, args=(front,), exitpriority=10)
        public = Responses(public)
        if self.config.server.access_log:
            public = AccessLog(public, _access_log_stream(self.config.server.access_log))
        return public

    def run(self) -> None:
        server_config = self.config.server
        settings = granian_settings(self.config)
        public = listen(server_config.bind[0], settings.get("backlog", 1024))
        listening = url(public).removeprefix("http://")
        if server_config.admin:
            make_shared_dirs(self.config)
            self.admin_socket = listen(server_config.admin)
            listening += ", " + url(self.admin_socket)
        if settings.get("http"):
            from granian.constants import HTTPModes

            settings["http"] = HTTPModes(settings["http"])
        server = _granian_class()(target="ctxserve", **settings)
        server.ctxserve_socket = public
        server.ctxserve_listening = listening
        server.on_reload(self.reread)
        self._workers = server.wrks
        signal.signal(signal.SIGUSR1, self.on_usr1)
        try:
            server.serve(target_loader=self.load, wrap_loader=False)
        finally:
            public.close()
            if self.admin_socket is not None:
                self.admin_socket.close()
            remove_shared_dirs()


def _worker_exit(front: Any) -> None:
    """At a worker's graceful exit: fold its last counts, leave the reloads, drop its live gauges."""
    front.metrics.stop()
    front.reloader.stop()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
