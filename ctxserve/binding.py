"""The one context variable that switches an app's whole context.

Every process global that ctxserve virtualizes (streams, ``os.environ``,
``decimal``, ``sys.argv``, ``sys.path``, the module namespace) reads the
current app's :class:`Binding` from :data:`current`. Switching apps is
therefore one ``ContextVar`` lookup, whatever the binding holds: each app
gets a base :class:`contextvars.Context` with :data:`current` set once, at
load, and every request runs in an O(1) copy of it.

Code an app starts keeps the app's context: threads (``threading.Thread``),
``concurrent.futures`` thread pools, greenlets under gevent. asyncio tasks
copy the context by themselves. The hand-off points are patched by the
process layer (``process.py``); :func:`run_detached`, :func:`begin_detached`
and :func:`end_detached` here are what the patches call.

**Threads started by shared code.** A thread is the app's when the app's
own code starts it: the code that calls ``Thread.start()``, or the code the
thread runs (its ``target``, or its class's ``run``), is one of the app's
private modules (found on its ``path``, or a package it isolates). A
thread that shared code starts to run shared code — the worker a shared
library starts lazily, on whichever app's request comes first, and then
uses for every app — starts with no app's context, as the server's own
threads do: it never runs one app's work with another app's binding
(:func:`own_thread` decides). Work handed to a ``ThreadPoolExecutor``
carries the context of the code that submitted it, whoever started the
pool's threads. ``ctxserve.wrap()`` cannot tell a wrapped callable's code
from shared code, so there every thread started in the app's context
carries it.
"""

from __future__ import annotations

import contextvars
import decimal
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["ADMIN", "PUBLIC", "AppRaised", "Binding", "current", "server", "request_scope", "listener",
           "context_for", "bind_response", "run_as", "run_detached", "run_each_detached", "begin_detached",
           "end_detached", "detach_hooks", "flush_hooks", "own_thread"]

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
                 "decimal", "modules", "state", "threads", "__weakref__")

    def __init__(self, name: str, *, environ: dict[str, str], stdout: Any, stderr: Any,
                 stdin: Any, argv: list[str], path: list[str],
                 decimal: decimal.Context | None = None, modules: Any = None,
                 threads: str = "own") -> None:
        self.name = name
        self.environ = environ
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self.argv = argv
        self.path = path
        self.decimal = decimal
        self.modules = modules
        #: The app's own values of the other per-app globals (``globals.py``),
        #: made on first use, and what it changed of the guarded ones
        #: (``guard.py``): one dict for the app, kept by :meth:`replace`.
        self.state: dict[str, Any] = {}
        #: Which threads started in this app's context carry it: ``"own"``
        #: (those its own code starts: see :func:`own_thread`) or ``"all"``
        #: (``ctxserve.wrap()``, whose code is shared code).
        self.threads = threads

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

#: The server's binding: what every virtualized global is outside every app,
#: i.e. what plain Python would have (the real streams, ``sys.argv``,
#: ``sys.path``, ``sys.modules`` and ``os.environ``). The stand-ins read it
#: when :data:`current` is ``None``; assigning ``sys.stdout = x`` outside
#: every app assigns it here. :func:`ctxserve.process.install` fills it from
#: ``sys`` when it puts the stand-ins in place.
server = Binding("", environ=os.environ, stdout=sys.stdout, stderr=sys.stderr,  # type: ignore[arg-type]
                 stdin=sys.stdin, argv=sys.argv, path=sys.path, modules=sys.modules)


#: True inside a request that ctxserve's own worker runs in a context of its
#: own from the request line to ``close()`` (see ``workers.py``).
request_scope: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ctxserve.request_scope", default=False)


#: Which listener the current request arrived on, as the server that accepted
#: it says (ctxserve's workers: the socket's, never the request's): "public"
#: or "admin"; "" when the server does not say (another server, gunicorn's
#: own workers).
listener: contextvars.ContextVar[str] = contextvars.ContextVar("ctxserve.listener", default="")
PUBLIC = "public"
ADMIN = "admin"


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
    ``ctx.run(next_chunk, iterator)`` — so one small Python frame of
    ctxserve's runs per chunk: the one that keeps whatever the app raises
    (``KeyboardInterrupt``, ``GeneratorExit``, ``sys.exit()``, ...) an
    error of this response only (:class:`AppRaised`).
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
        return iter(functools.partial(self._ctx.run, _next_chunk, self._iterator), _END)

    def __next__(self) -> bytes:
        """For a server that calls ``next()`` without ``iter()`` first."""
        if self._iterator is None:
            self._iterator = self._ctx.run(iter, self._iterable)
        chunk = self._ctx.run(_next_chunk, self._iterator)
        if chunk is _END:
            raise StopIteration
        return chunk  # type: ignore[no-any-return]

    def close(self) -> None:
        self._ctx.run(self._close)

    def _close(self) -> None:
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        except Exception:
            raise
        except BaseException as exc:
            raise AppRaised(exc) from exc
        finally:
            self._on_close()


_END: Any = object()  # the end of a response, for iter(callable, sentinel)


class AppRaised(RuntimeError):
    """An app's response raised what is not an ``Exception`` (``KeyboardInterrupt``,
    ``asyncio.CancelledError``, ``GeneratorExit``, ``SystemExit``): an error
    of that response, which the server handles like any other — never the
    end of the worker, and every app's requests in flight with it."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"the app raised {type(exc).__name__}({exc}) while its response was "
                         "being sent; it ends this request only")


def _next_chunk(iterator: Iterator[bytes]) -> bytes:
    try:
        return next(iterator, _END)
    except Exception:
        raise
    except BaseException as exc:
        raise AppRaised(exc) from exc


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


def begin_detached(binding: Binding) -> None:
    """The start of a thread, pool job or greenlet of *binding*'s app, in its new context."""
    for hook in detach_hooks:
        hook()
    # A new thread of a real process starts with a fresh decimal context;
    # a new thread of an app starts with a fresh copy of the app's.
    decimal.setcontext(binding.new_decimal_context())


def end_detached() -> None:
    """The end of a thread, pool job or greenlet of an app: emit what it left unfinished."""
    for hook in flush_hooks:
        hook()


def run_as(binding: Binding, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """*fn* as a thread or pool job of *binding*'s app (in a copy of its context)."""
    begin_detached(binding)
    try:
        return fn(*args, **kwargs)
    finally:
        end_detached()


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
    return functools.partial(contextvars.copy_context().run, run_as, binding, fn)


def run_each_detached(fn: Callable[..., T]) -> Callable[..., T]:
    """Like :func:`run_detached`, for a function that may run many times at
    once (a pool's ``map``): each call in its own copy of the context."""
    binding = current.get()
    if binding is None:
        return fn
    ctx = contextvars.copy_context()

    def call(*args: Any, **kwargs: Any) -> T:
        return ctx.copy().run(run_as, binding, fn, *args, **kwargs)

    return call


def own_thread(binding: Binding, thread: threading.Thread, caller: dict[str, Any]) -> bool:
    """Is *thread* the app's own: started by, or running, the app's own code?

    *caller* is the globals of the code that calls ``thread.start()``. The
    app's own code is a module private to it: one whose builtins are the
    app's copy (``namespaces.py``).
    """
    own = getattr(binding.modules, "builtins", None)
    if binding.threads == "all" or own is None or caller.get("__builtins__") is own:
        return True
    code: Any = getattr(thread, "_target", None) or type(thread).run
    while isinstance(code, functools.partial):
        code = code.func
    code = getattr(code, "__func__", code)
    code_globals = getattr(code, "__globals__", None)
    if code_globals is None:  # a callable object: its class's __call__
        code_globals = getattr(getattr(type(code), "__call__", None), "__globals__", {})
    return code_globals.get("__builtins__") is own
