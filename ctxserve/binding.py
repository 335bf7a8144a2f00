"""The one context variable that switches an app's whole context.

Every process global that ctxserve virtualizes (streams, ``os.environ``,
``decimal``, ``sys.argv``, ``sys.path``, the module namespace) reads the
current app's :class:`Binding` from :data:`current`. Switching apps is
therefore one ``ContextVar`` lookup, whatever the binding holds: each app
gets a base :class:`contextvars.Context` with :data:`current` set once, at
load, and every request runs in an O(1) copy of it.

Code an app starts keeps the app's context: threads (``threading.Thread``),
``concurrent.futures`` thread pools, greenlets under gevent. asyncio tasks
copy the context by themselves.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import decimal
import functools
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["Binding", "current", "context_for", "bind_response", "run_detached", "install_propagation"]

T = TypeVar("T")


class Binding:
    """What one app sees in place of the process globals.

    A binding is shared by all requests of its app: its ``environ`` dict,
    ``argv`` and ``path`` lists are the app's own, so in-place changes
    (``os.environ[k] = v``, ``sys.path.insert``) persist for the app, as
    they would in a process of its own. *Assigning* a ``sys`` attribute
    (``sys.stdout = x``) instead derives a new binding and sets it in the
    current context only (see :meth:`replace`): made while the app loads it
    lasts for the app, made in a request it lasts for that request, which
    is what ``contextlib.redirect_stdout`` expects.
    """

    __slots__ = ("name", "environ", "stdout", "stderr", "stdin", "argv", "path",
                 "decimal", "modules", "__weakref__")

    def __init__(self, name: str, *, environ: dict[str, str], stdout: Any, stderr: Any,
                 stdin: Any, argv: list[str], path: list[str],
                 decimal: decimal.Context | None = None, modules: Any = None) -> None:
        self.name = name
        self.environ = environ
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self.argv = argv
        self.path = path
        self.decimal = decimal
        self.modules = modules

    def replace(self, **changes: Any) -> Binding:
        """A copy with some attributes changed; the rest stays shared."""
        new = object.__new__(Binding)
        for slot in Binding.__slots__[:-1]:
            object.__setattr__(new, slot, changes.get(slot, getattr(self, slot)))
        return new

    def new_decimal_context(self) -> decimal.Context:
        """A fresh decimal context, as a new thread of this app would get."""
        return self.decimal.copy() if self.decimal is not None else decimal.Context()

    def __repr__(self) -> str:
        return f"<Binding {self.name!r}>"


#: The current app's binding; ``None`` outside every app (the server itself).
current: contextvars.ContextVar[Binding | None] = contextvars.ContextVar(
    "ctxserve.binding", default=None)


#: True inside a request that ctxserve's own worker runs in a context of its
#: own from the request line to ``close()`` (see ``workers.py``).
request_scope: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ctxserve.request_scope", default=False)


def context_for(binding: Binding) -> contextvars.Context:
    """A new context in which *binding* is current (an app's base context)."""
    ctx = contextvars.Context()
    ctx.run(current.set, binding)
    return ctx


# -- the response iterable ---------------------------------------------------

class _BoundIterable:
    """A response iterable whose ``next()`` and ``close()`` run in *ctx*.

    The server iterates the response after the app's call has returned, so
    without this the app's generator would run in the server's context.
    ``iter()`` of it is a C iterator — ``iter(callable, sentinel)`` over
    ``ctx.run(next, iterator, sentinel)`` — so no Python frame of ctxserve's
    runs per chunk.
    """

    __slots__ = ("_ctx", "_iterator", "_iterable", "_on_close")

    def __init__(self, iterable: Iterable[bytes], ctx: contextvars.Context,
                 on_close: Callable[[], None]) -> None:
        self._ctx = ctx
        self._iterable = iterable
        self._iterator: Iterator[bytes] | None = None
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        if self._iterator is None:
            self._iterator = self._ctx.run(iter, self._iterable)
        return iter(functools.partial(self._ctx.run, next, self._iterator, _END), _END)

    def __next__(self) -> bytes:
        """For a server that calls ``next()`` without ``iter()`` first."""
        if self._iterator is None:
            self._iterator = self._ctx.run(iter, self._iterable)
        return self._ctx.run(next, self._iterator)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._ctx.run(self._close)

    def _close(self) -> None:
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


_END: Any = object()  # the end of a response, for iter(callable, sentinel)


def bind_response(result: Iterable[bytes], ctx: contextvars.Context, environ: dict[str, Any],
                  on_close: Callable[[], None]) -> Iterable[bytes]:
    """Keep *ctx* bound for the rest of the response, at the least cost.

    A list or tuple body runs no app code while it is iterated, so it is
    returned as it is. A ``wsgi.file_wrapper`` over a real file is returned
    as it is too, so that the server can still ``sendfile`` it; only its
    ``close`` is bound. Anything else is wrapped.
    """
    file_wrapper = environ.get("wsgi.file_wrapper")
    if (file_wrapper is not None and isinstance(result, file_wrapper)
            and hasattr(getattr(result, "filelike", None), "fileno")):
        close = getattr(result, "close", None)
        result.close = functools.partial(ctx.run, _close_then, close, on_close)  # type: ignore[attr-defined]
        return result
    return _BoundIterable(result, ctx, on_close)


def _close_then(close: Callable[[], None] | None, after: Callable[[], None]) -> None:
    try:
        if close is not None:
            close()
    finally:
        after()


# -- propagation to code the app starts -------------------------------------

#: Called in the new context of every thread, pool job and greenlet an app
#: starts, so that per-request state (a half-written output line) is not
#: shared with the code that started it.
detach_hooks: list[Callable[[], None]] = []


def _detached(binding: Binding, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    for hook in detach_hooks:
        hook()
    # A new thread of a real process starts with a fresh decimal context;
    # a new thread of an app starts with a fresh copy of the app's.
    decimal.setcontext(binding.new_decimal_context())
    try:
        return fn(*args, **kwargs)
    finally:
        for hook in flush_hooks:
            hook()


#: Called when a request, thread or pool job of an app ends (flush output).
flush_hooks: list[Callable[[], None]] = []


def run_detached(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap *fn* to run in a copy of the current app's context.

    Outside every app *fn* is returned unchanged: the server's own threads
    behave as plain Python.
    """
    binding = current.get()
    if binding is None:
        return fn
    return functools.partial(contextvars.copy_context().run, _detached, binding, fn)


_installed = False
_install_lock = threading.Lock()


def install_propagation() -> None:
    """Make threads, thread pools and greenlets started by an app carry its context.

    Python 3.11–3.13 start every new thread with an empty context, and a
    thread pool's workers run jobs in whatever context they were created in,
    so the context is captured where the app hands work off: at
    ``Thread.start()``, ``ThreadPoolExecutor.submit()`` and greenlet creation.
    """
    global _installed
    with _install_lock:
        if not _installed:
            _patch_thread_start()
            _patch_executor_submit()
            _installed = True
        _patch_gevent()


def _patch_thread_start() -> None:
    original = threading.Thread.start

    @functools.wraps(original)
    def start(self: threading.Thread) -> None:
        if current.get() is not None:
            # An instance attribute shadows ``run`` (also a subclass's run).
            self.run = run_detached(self.run)  # type: ignore[method-assign]
        original(self)

    threading.Thread.start = start  # type: ignore[method-assign]


def _patch_executor_submit() -> None:
    original = concurrent.futures.ThreadPoolExecutor.submit

    @functools.wraps(original)
    def submit(self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /,
               *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        return original(self, run_detached(fn), *args, **kwargs)

    concurrent.futures.ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]


def _patch_gevent() -> None:
    """Greenlets start with an empty context unless ``gr_context`` is set.

    gevent's compiled ``Greenlet`` is an immutable type (its ``__init__``
    cannot be replaced), so a subclass that sets ``gr_context`` takes its
    place wherever gevent and app code look the class up.
    """
    gevent = sys.modules.get("gevent")
    if gevent is None or getattr(gevent.Greenlet, "_ctxserve_patched", False):
        return
    import gevent.greenlet
    import gevent.pool

    base = gevent.Greenlet

    class Greenlet(base):  # type: ignore[misc, valid-type]
        __doc__ = base.__doc__
        _ctxserve_patched = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            base.__init__(self, *args, **kwargs)
            binding = current.get()
            if binding is not None:
                ctx = contextvars.copy_context()
                ctx.run(_reset_for_greenlet, binding)
                self.gr_context = ctx

        def run(self) -> None:
            try:
                base.run(self)
            finally:  # as for a thread: emit what it left without a newline
                if current.get() is not None:
                    for hook in flush_hooks:
                        hook()

    Greenlet.__module__, Greenlet.__qualname__ = base.__module__, base.__qualname__
    gevent.Greenlet = gevent.greenlet.Greenlet = gevent.pool.Greenlet = Greenlet
    gevent.spawn, gevent.spawn_later = Greenlet.spawn, Greenlet.spawn_later
    gevent.pool.Group.greenlet_class = Greenlet  # Group.spawn and Pool.spawn


def _reset_for_greenlet(binding: Binding) -> None:
    for hook in detach_hooks:
        hook()
    decimal.setcontext(binding.new_decimal_context())
