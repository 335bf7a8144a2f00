"""The process layer: every interpreter global ctxserve changes, declared once, installed once.

ctxserve runs several apps in one interpreter, so it must put stand-ins in
place of some process globals (``sys.stdout``, ``os.environ``, ...) and
patch the few places where CPython hands work to a new context (a thread
start, a pool job). All of that happens here, in :func:`install`, and
nowhere else; the stand-ins themselves live in the modules named in each
row (``streams``, ``environ``, ``virtual``, ``namespaces``, ``binding``).

:data:`GLOBALS` is the table: one :class:`Global` per process global, in the
order they are installed. Each row says

* ``name`` — the global as a user spells it (``"sys.stdout"``);
* ``kind`` — ``"per app"`` (each app sees its own), ``"guarded"`` (Python
  cannot virtualize it: a change an app makes is detected and reported) or
  ``"shared"`` (one for the process, and why that is fine or unavoidable);
* ``by`` — what ctxserve does to it;
* ``why`` — the CPython constraint that forces exactly that;
* ``install`` — the function that puts it in place (``None``: nothing to
  install — the app's context alone does it, or the row only documents).

Several rows may name one installer (``sys``'s class serves six
attributes); :func:`install` calls each installer once per process. An
installer that returns ``False`` could not act yet (``gevent`` not
imported) and is tried again by the next :func:`install`. To add a global,
add a row (and, if it needs one, its installer below): the README section
"What ctxserve changes in your interpreter" is :func:`reference_markdown`
of this table, and tests/test_docs.py keeps the two equal
(``python -m ctxserve.process`` prints it).

Outside every app each stand-in answers with the server's binding
(``binding.server``): the values plain Python would have.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import importlib
import inspect
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from . import binding as _binding
from . import environ as _environ
from . import globals as _globals
from . import guard as _guard
from . import namespaces as _namespaces
from . import streams as _streams
from . import virtual as _virtual

__all__ = ["GLOBALS", "Global", "KINDS", "install", "installed", "reference_markdown"]

#: The three kinds of process global, in the order the README lists them.
KINDS = ("per app", "guarded", "shared")

Installer = Callable[[], "bool | None"]


@dataclass(frozen=True)
class Global:
    """One process global and what ctxserve does about it (a row of :data:`GLOBALS`)."""

    name: str
    kind: Literal["per app", "guarded", "shared"]
    by: str
    why: str
    install: Installer | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Global {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")


# -- the installers ---------------------------------------------------------------------
# Each runs once per process (see install()), under install()'s lock.

def _sys_attributes() -> None:
    """``sys`` gets :class:`~ctxserve.virtual.SysModule`; its streams become proxies."""
    server = _binding.server
    for name in _virtual.STREAMS + _virtual.LISTS:
        setattr(server, name, sys.__dict__[name])
    for name in _virtual.STREAMS:
        sys.__dict__[name] = _streams.StreamProxy(name)
    sys.__class__ = _virtual.SysModule


def _os_environ() -> None:
    _binding.server.environ = _environ.real_environ  # type: ignore[assignment]
    os.environ = _environ.EnvironView()  # type: ignore[assignment]
    if hasattr(os, "environb"):
        os.environb = _environ.EnvironbView()  # type: ignore[assignment]


def _subprocess_env() -> None:
    original = subprocess.Popen.__init__
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        if _binding.current.get() is not None:
            bound = signature.bind(self, *args, **kwargs)
            bound.arguments["env"] = _environ.subprocess_env(bound.arguments.get("env"))
            args, kwargs = bound.args[1:], bound.kwargs
        original(self, *args, **kwargs)

    subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]


def _os_system() -> None:
    """Inside an app the command runs through ``subprocess`` (which gets the
    app's environment) and the result is encoded as ``os.system`` encodes it."""
    original = os.system

    @functools.wraps(original)
    def system(command: Any) -> int:
        if _binding.current.get() is None:
            return original(command)
        code = subprocess.call(os.fsdecode(command), shell=True)
        return code << 8 if code >= 0 else -code

    os.system = system


def _thread_start() -> None:
    original = threading.Thread.start

    @functools.wraps(original)
    def start(self: threading.Thread) -> None:
        b = _binding.current.get()
        if b is not None and _binding.own_thread(b, self, sys._getframe(1).f_globals):
            # Instance attributes shadow ``run`` (also a subclass's run) and
            # the hook threading calls when run raises, which then runs in
            # the thread's context too: threading.excepthook is the app's.
            ctx = contextvars.copy_context()
            self.run = functools.partial(ctx.run, _binding.run_as, b, self.run)  # type: ignore[method-assign]
            invoke = getattr(self, "_invoke_excepthook", None)
            if invoke is not None:
                self._invoke_excepthook = functools.partial(ctx.run, invoke)  # type: ignore[attr-defined]
        original(self)

    threading.Thread.start = start  # type: ignore[method-assign]


def _executor_submit() -> None:
    original = concurrent.futures.ThreadPoolExecutor.submit

    @functools.wraps(original)
    def submit(self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /,
               *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        return original(self, _binding.run_detached(fn), *args, **kwargs)

    concurrent.futures.ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]


def _thread_pool_tasks() -> None:
    """``multiprocessing.pool.ThreadPool``: each task runs in a copy of the
    context of the code that handed it over, as a ``ThreadPoolExecutor``
    job does. The pool's own threads are started by shared code
    (``multiprocessing.pool``), so they carry no app's context themselves."""
    import multiprocessing.pool

    for name in ("apply_async", "_map_async", "imap", "imap_unordered"):
        setattr(multiprocessing.pool.ThreadPool, name, _handing_over(getattr(multiprocessing.pool.Pool, name)))


def _handing_over(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: Any, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return original(self, _binding.run_each_detached(func), *args, **kwargs)

    return method


def _gevent_greenlet() -> bool:
    """A ``Greenlet`` subclass that sets ``gr_context`` takes gevent's place.

    Not yet when gevent is not imported (then this runs again at the next
    :func:`install`: every App's construction calls it).
    """
    gevent = sys.modules.get("gevent")
    if gevent is None:
        return False
    import gevent.greenlet
    import gevent.pool

    base = gevent.Greenlet

    class Greenlet(base):  # type: ignore[misc, valid-type]
        __doc__ = base.__doc__

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            base.__init__(self, *args, **kwargs)
            b = _binding.current.get()
            if b is not None:
                ctx = contextvars.copy_context()
                ctx.run(_binding.begin_detached, b)
                self.gr_context = ctx

        def run(self) -> None:
            try:
                base.run(self)
            finally:  # as for a thread: emit what it left without a newline
                if _binding.current.get() is not None:
                    _binding.end_detached()

    Greenlet.__module__, Greenlet.__qualname__ = base.__module__, base.__qualname__
    gevent.Greenlet = gevent.greenlet.Greenlet = gevent.pool.Greenlet = Greenlet
    gevent.spawn, gevent.spawn_later = Greenlet.spawn, Greenlet.spawn_later
    gevent.pool.Group.greenlet_class = Greenlet  # Group.spawn and Pool.spawn
    return True


def _isolate_guard() -> None:
    sys.meta_path.insert(0, _namespaces.IsolateGuard)  # type: ignore[arg-type]


def _get_logger() -> None:
    original = logging.getLogger

    @functools.wraps(original)
    def getLogger(name: str | None = None) -> logging.Logger:
        b = _binding.current.get()
        if name and b is not None and b.modules is not None and b.modules.is_private(name):
            return b.modules.logger(name)  # type: ignore[no-any-return]
        return original(name)

    logging.getLogger = getLogger


def _module_locks() -> None:
    bootstrap: Any = importlib._bootstrap  # type: ignore[attr-defined]
    original = bootstrap._get_module_lock

    def _get_module_lock(name: str) -> Any:
        b = _binding.current.get()
        if b is not None and b.modules is not None and b.modules.is_private(name):
            return b.modules.module_lock(name)
        return original(name)

    bootstrap._get_module_lock = _get_module_lock


# -- the table ----------------------------------------------------------------------------

_C_READS_SYS_DICT = ("CPython's C code (`print`, `PySys_GetObject`) reads `sys.__dict__` directly, and "
                     "one dict serves every thread; a data descriptor on `sys`'s class answers Python "
                     "code first")

GLOBALS: tuple[Global, ...] = (
    Global("sys.stdout, sys.stderr", "per app",
           "`sys.__dict__` holds a proxy that forwards to the app's writer (`stdout`/`stderr`: "
           "the server's stream with a `[name] ` prefix, a file, `null`, `logging`); "
           "`sys`'s class answers `sys.stdout` with the app's writer",
           _C_READS_SYS_DICT, _sys_attributes),
    Global("sys.stdin", "per app", "the same proxy; inside an app an empty stream (EOF)",
           _C_READS_SYS_DICT + "; a server's stdin is no app's to read", _sys_attributes),
    Global("sys.argv, sys.path", "per app",
           "`sys`'s class answers with the app's lists (`argv`; `path` entries, then the shared path); "
           "`sys.__dict__` keeps the server's",
           "the import system and C code read `sys.__dict__`; only one `sys` module exists",
           _sys_attributes),
    Global("sys.modules", "per app",
           "`sys`'s class answers with the app's namespace, a dict in every respect (`None` entries "
           "block imports; snapshots never fail mid-import); the real dict holds an alias module for "
           "each name private to some app",
           "the interpreter keeps one `sys.modules` dict that its C code reads (`import`, `pickle`); "
           "it cannot be swapped per thread", _sys_attributes),
    Global("os.environ, os.environb, os.getenv", "per app",
           "mapping views of the app's environment dict (`environ`, `inherit_environ`)",
           "`os.getenv` reads the module global `environ`; `putenv` would change the one C "
           "environment of every app", _os_environ),
    Global("subprocess.Popen(env=None)", "per app",
           "`Popen.__init__` passes the app's environment to a child started without `env`",
           "a child inherits the C environment (`environ(7)`), which never holds an app's values",
           _subprocess_env),
    Global("os.system", "per app", "inside an app the command runs through `subprocess` with the "
           "app's environment; the wait status is encoded as `os.system` does",
           "C's `system(3)` passes the real process environment", _os_system),
    Global("decimal.getcontext()", "per app",
           "nothing is patched: each app's base context holds its own decimal context, copied fresh "
           "for each request when the app has a `decimal` table",
           "`decimal` keeps its context in a context variable already", None),
    Global("threading.Thread.start", "per app",
           "a thread the app's own code starts (the caller of `start()` or the thread's `target`/`run` is "
           "one of the app's private modules) runs in a copy of the app's context; a thread that shared "
           "code starts to run shared code gets no app's context",
           "Python 3.11–3.13 start every thread with an empty context; a shared library's lazily started "
           "worker thread serves every app, so the first app's context must not stay in it", _thread_start),
    Global("concurrent.futures.ThreadPoolExecutor.submit", "per app",
           "a job an app submits runs in a copy of the app's context",
           "a pool's workers run every job in the context they were started in", _executor_submit),
    Global("multiprocessing.pool.ThreadPool", "per app",
           "each task (`apply_async`, `map`, `imap`, ...) runs in a copy of the context of the code that "
           "handed it over",
           "the pool's threads are started by shared code and serve whoever hands them work", _thread_pool_tasks),
    Global("gevent.Greenlet", "per app",
           "a subclass that sets `gr_context` replaces it in `gevent`, `gevent.greenlet` and `gevent.pool`",
           "greenlets start with an empty context; gevent's compiled `Greenlet` type is immutable",
           _gevent_greenlet),
    Global("sys.meta_path", "shared",
           "a finder first on it refuses C extensions inside an app's `isolate` packages",
           "a C extension module cannot be loaded twice (single-phase init shares one state)",
           _isolate_guard),
    Global("logging.getLogger", "per app",
           "a logger named after an app's private module comes from the app's own `logging.Manager`",
           "loggers are kept by name in one process-wide registry", _get_logger),
    Global("importlib._bootstrap._get_module_lock", "per app",
           "wrapped: a private module's import lock is its app's own",
           "the lock table is keyed by module name for the process: two apps importing their own "
           "`x` and `y` in opposite orders would look like an import cycle", _module_locks),
    Global("builtins.__import__", "per app",
           "nothing is patched: each private module gets its app's copy of the builtins, whose `__import__` resolves in "
           "the app's namespace first; shared modules keep the real builtins",
           "the `import` statement calls the frame's builtins' `__import__`", None),
    Global("random.seed, random.random, random.choice, random.getstate", "per app",
           "every module-level function calls the app's own `random.Random`, reseeded in every worker after a fork",
           "the module-level functions are bound methods of one hidden `Random` instance",
           _globals.install_random),
    Global("logging.root, logging.basicConfig, logging.disable", "per app",
           "`logging.root`'s class answers `level`, `handlers`, `filters`, `disabled` with the app's own "
           "(first a copy of the server's root); `Logger.isEnabledFor` keeps its cache and the `disable` "
           "level per app, and the loggers an app's `dictConfig`/`fileConfig` disables "
           "(`disable_existing_loggers`) are disabled for that app only; the server's loggers (`gunicorn.*`, "
           "`ctxserve.*`) are judged by the server's",
           "every logger's records end at the one root logger; `isEnabledFor` caches per logger object",
           _globals.install_logging),
    Global("warnings.filters, warnings.simplefilter, warnings.filterwarnings, warnings.resetwarnings, "
           "warnings.catch_warnings, warnings.showwarning", "per app",
           "`warnings`' class answers `filters`, `defaultaction`, `onceregistry`, `showwarning` with the "
           "app's own (first a copy of the process's); `_add_filter`, `resetwarnings` and `_showwarnmsg` "
           "read those attributes",
           "the C `_warnings` module reads them as attributes of `warnings`; its Python functions read "
           "module globals", _globals.install_warnings),
    Global("socket.setdefaulttimeout, socket.getdefaulttimeout", "per app",
           "the app's default timeout, applied in `socket.socket.__init__` to every socket created in the app",
           "the default timeout is one C global of `_socket`", _globals.install_socket),
    Global("sys.excepthook", "per app", "`sys`'s class answers with the app's own",
           "C calls `sys.__dict__['excepthook']` only for the main thread's uncaught exceptions, "
           "which are the server's", _sys_attributes),
    Global("threading.excepthook", "per app",
           "`threading`'s class answers with the app's own; the module global that `Thread` calls is a "
           "function that calls it, in the failed thread's (the app's) context",
           "`Thread` calls the module global `excepthook` read from `threading.__dict__`",
           _globals.install_threading),
    Global("tempfile.tempdir, tempfile.gettempdir, tempfile.mkstemp, tempfile.TemporaryDirectory", "per app",
           "`tempfile`'s class answers `tempdir` with the app's own; unset, it is found from the app's "
           "own `TMPDIR`/`TEMP`/`TMP` (its environ)",
           "every `tempfile` function asks `_gettempdir()`, which caches one directory per process",
           _globals.install_tempfile),
    Global("mimetypes.add_type, mimetypes.init, mimetypes.guess_type", "per app",
           "the functions use the app's own database, first a copy of the process's",
           "the module-level functions share one `MimeTypes` database", _globals.install_mimetypes),
    Global("urllib.request.install_opener, urllib.request.urlopen", "per app",
           "the opener an app installs is its own", "`urlopen` reads one module global `_opener`",
           _globals.install_urllib),
    Global("ssl._create_default_https_context", "per app",
           "`ssl`'s class answers with the app's own",
           "`http.client` and `urllib` read it as an attribute of `ssl` for every HTTPS connection",
           _globals.install_ssl),
    *(Global(g.name, "guarded", _guard.watched(g), g.why, _guard.install) for g in _guard.GUARDED),
    Global("logging.getLogger(name) of a shared module", "shared",
           "nothing: its level and handlers are the process's; a logger named after an app's private module is the app's own (above)",
           "one tree per process, found by name, like the shared modules that log to them"),
    Global("builtins", "shared", "nothing",
           "shared modules run with the process's builtins"),
    Global("atexit, codecs.register, copyreg, sys.addaudithook", "shared", "nothing",
           "process-wide registries that only add: what an app registers stays for the process"),
    Global("sys.settrace, sys.setprofile, threading.settrace", "shared", "nothing",
           "per thread in CPython, and a worker thread serves every app"),
    Global("asyncio.set_event_loop_policy", "shared", "nothing", "one per process; WSGI apps rarely set it"),
    Global("file descriptors, resource limits, user and group ids, process priority", "shared", "nothing",
           "the kernel keeps them per process"),
    Global("state inside C extensions and C libraries", "shared", "nothing", "outside Python's reach"),
)

_lock = threading.Lock()
_done: set[Installer] = set()


def install() -> None:
    """Install every row of :data:`GLOBALS`, each installer once per process (thread-safe)."""
    with _lock:
        for row in GLOBALS:
            if row.install is not None and row.install not in _done:
                if row.install() is not False:
                    _done.add(row.install)


def installed() -> bool:
    """Whether :func:`install` has run in this process."""
    return _sys_attributes in _done


def reference_markdown() -> str:
    """The README section "What ctxserve changes in your interpreter", from :data:`GLOBALS`."""
    lines = ["## What ctxserve changes in your interpreter", "",
             "Generated from `ctxserve/process.py` (`python -m ctxserve.process`): every process "
             "global ctxserve replaces or patches, installed once per process, when the first app is "
             "made. *per app*: each app sees its own; *guarded*: shared, and a change an app makes is "
             "reported; *shared*: one for the process.", ""]
    for kind in KINDS:
        rows = [row for row in GLOBALS if row.kind == kind]
        if not rows:
            continue
        lines += [f"### {kind.capitalize()}", "", "| global | what ctxserve does | why |", "| --- | --- | --- |"]
        for row in rows:
            names = ", ".join(name if " " in name else f"`{name}`" for name in map(str.strip, row.name.split(", ")))
            lines.append(f"| {names} | {_cell(row.by)} | {_cell(row.why)} |")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":
    print(reference_markdown(), end="")
