"""Each app's stdout and stderr, and the stand-ins that put them in ``sys``.

``print``, ``logging.StreamHandler`` and ``traceback.print_exc`` all end in
``sys.stdout.write`` or ``sys.stderr.write``, and CPython's C code reads the
stream straight from ``sys.__dict__``. So ``sys.__dict__`` holds one
:class:`StreamProxy` per stream for the whole process, which forwards every
call to the current app's writer, or — outside every app — to whatever
plain Python would use.

An app's writer hands its output on in complete lines only, so lines of
different apps and requests never mix inside one line: a partial line is
kept per request (in a context variable, see :func:`_partial_lines`) until
its newline arrives or the request ends.
"""

from __future__ import annotations

import atexit
import contextvars
import io
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TextIO

from . import binding as _binding

__all__ = ["AppWriter", "StreamProxy", "open_destination", "empty_stdin", "flush_partial_lines", "reopen_files",
           "partial_lines", "resolve"]

#: The server's own streams (outside every app) are those of the server's
#: binding, ``binding.server``: ``sys.stdout = x`` outside every app sets it.
_server = _binding.server

#: Per-request buffer of partial lines: ``{writer: text}``, created on the
#: first partial write of a request and mutated in place after that (the
#: context is the request's own, so one ``set`` per request at most).
#: Unset (``None``) while a request has written no partial line.
partial_lines: contextvars.ContextVar[dict[AppWriter, str] | None] = contextvars.ContextVar(
    "ctxserve.partial_lines", default=None)


def _pending() -> dict[AppWriter, str]:
    pending = partial_lines.get()
    if pending is None:
        pending = {}
        partial_lines.set(pending)
    return pending


def flush_partial_lines() -> None:
    """Emit what the current request left without a final newline."""
    pending = partial_lines.get()
    if pending:
        for writer, text in list(pending.items()):
            del pending[writer]
            writer.emit(text + "\n")


def _forget_partial_lines() -> None:
    """A thread or greenlet an app starts begins with no partial line."""
    partial_lines.set(None)


_binding.detach_hooks.append(_forget_partial_lines)
_binding.flush_hooks.append(flush_partial_lines)


class AppWriter(io.TextIOBase):
    """One app's stdout or stderr: writes complete lines to a *sink*.

    It is a real text stream (``io.TextIOBase``), so ``writelines``,
    ``closed``, ``with`` and the rest of the protocol come from the base
    class; ``buffer`` accepts bytes for code that writes to it.
    """

    def __init__(self, sink: Callable[[str], None], *, fileno: Callable[[], int] | None = None,
                 name: str = "<ctxserve>", app: str = "", stream: str = "stdout") -> None:
        self._sink = sink
        self._fileno = fileno
        self.name = name
        self.buffer = _BinaryWriter(self)
        self._app = app
        self._stream = stream

    encoding = "utf-8"  # type: ignore[assignment]
    errors = "backslashreplace"  # type: ignore[assignment]
    line_buffering = True

    def write(self, s: str) -> int:
        if type(s) is not str and not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        b = _binding.current.get()
        if b is not None and b.name != self._app:
            # Another app writes through an object that holds this app's
            # stream — a handler on a shared logger, say, which an app's
            # logging.basicConfig() put there. Its output is its own.
            return getattr(b, self._stream).write(s)  # type: ignore[no-any-return]
        pending = partial_lines.get()
        if "\n" not in s:
            if s:
                if pending is None:
                    pending = {}
                    partial_lines.set(pending)
                pending[self] = pending.get(self, "") + s
            return len(s)
        head = pending.pop(self, "") if pending else ""
        cut = s.rfind("\n") + 1
        self._sink(head + s[:cut] if head else s[:cut])
        if cut < len(s):
            _pending()[self] = s[cut:]
        return len(s)

    def emit(self, lines: str) -> None:
        """Hand complete lines (ending in a newline) to the destination."""
        self._sink(lines)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self._fileno is None:
            raise io.UnsupportedOperation("this app's stream has no file descriptor")
        return self._fileno()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Closing an app's stream would close it for every request: ignored."""

    def __repr__(self) -> str:
        return f"<ctxserve stream {self.name!r}>"


class _NullWriter(AppWriter):
    """``null``: output goes nowhere, so there is no line to keep whole."""

    def write(self, s: str) -> int:
        if type(s) is not str and not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        b = _binding.current.get()
        if b is not None and b.name != self._app:  # see AppWriter.write
            return getattr(b, self._stream).write(s)  # type: ignore[no-any-return]
        return len(s)


class _BinaryWriter(io.RawIOBase):
    """``sys.stdout.buffer`` of an app: bytes decoded onto the text stream."""

    def __init__(self, text: AppWriter) -> None:
        self._text = text

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._text.write(data.decode(self._text.encoding, self._text.errors))
        return len(data)

    def fileno(self) -> int:
        return self._text.fileno()

    def close(self) -> None:
        pass


# -- destinations -----------------------------------------------------------

_write_lock = threading.Lock()


def _to_server_stream(stream: str, prefix: str) -> Callable[[str], None]:
    """``inherit``: the server's own stream, each line prefixed."""

    def sink(lines: str) -> None:
        text = prefix + lines[:-1].replace("\n", "\n" + prefix) + "\n"
        with _write_lock:  # one write per chunk: lines never interleave
            getattr(_server, stream).write(text)
        # No flush here: the server's stream buffers (or not) as it would
        # for plain Python — PYTHONUNBUFFERED=1 or a terminal for each line.

    return sink


class _AppendFile:
    """A file destination, shared by every stream that names the same file.

    Reopened by its name after :func:`reopen_files` (SIGUSR1), so that a
    log rotation that renames the file (logrotate without copytruncate)
    goes on in a new file at the same path.
    """

    _open: dict[str, _AppendFile] = {}
    _open_lock = threading.Lock()
    #: Bumped by reopen_files(): a file opened under an older generation is
    #: reopened before its next write.
    generation = 0

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.opened = _AppendFile.generation
        self.file = open(path, "a", encoding="utf-8", errors="backslashreplace")

    @classmethod
    def get(cls, path: str) -> _AppendFile:
        with cls._open_lock:
            if path not in cls._open:
                cls._open[path] = cls(path)
            return cls._open[path]

    def write(self, lines: str) -> None:
        with self.lock:
            if self.opened != _AppendFile.generation:
                self.reopen()
            self.file.write(lines)
            self.file.flush()

    def fileno(self) -> int:
        return self.file.fileno()

    def reopen(self) -> None:
        """Open the path again (the caller holds ``lock``); if that fails, keep the old file."""
        self.opened = _AppendFile.generation
        try:
            fresh = open(self.path, "a", encoding="utf-8", errors="backslashreplace")
        except OSError:
            return  # e.g. its directory is gone: lines still go somewhere rather than nowhere
        stale, self.file = self.file, fresh
        stale.close()


def reopen_files() -> None:
    """Reopen every app log file (``stdout``/``stderr`` = a path) by its name.

    What gunicorn's workers do for their own logs on SIGUSR1; ctxserve's
    workers call this from the same signal handler (``workers.py``). It may
    interrupt a thread that is writing to one of the files: that file is
    not waited for here, its next write reopens it.
    """
    _AppendFile.generation += 1
    for target in list(_AppendFile._open.values()):
        if target.lock.acquire(blocking=False):
            try:
                if target.opened != _AppendFile.generation:
                    target.reopen()
            finally:
                target.lock.release()


#: True while a ``logging`` destination hands lines to its logger.
_logging_lines: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ctxserve.logging_lines", default=False)


def _to_logger(app: str, stream: str) -> Callable[[str], None]:
    """``logging``: one record a line on logger ``ctxserve.app.NAME``.

    Records are emitted outside the app's context: a handler that writes to
    ``sys.stderr`` must reach the server's stderr, not loop back here. A
    handler that holds an app's stream itself (``logging.basicConfig()``
    run by the app puts its ``sys.stderr`` on the root logger, which gets
    these records too) writes back while a record is emitted: that echo is
    dropped, else every record would be logged again, without end.
    """
    logger = logging.getLogger(f"ctxserve.app.{app}")
    level = logging.INFO if stream == "stdout" else logging.ERROR

    def emit(lines: str) -> None:
        _logging_lines.set(True)
        for line in lines.splitlines():
            logger.log(level, "%s", line)

    def sink(lines: str) -> None:
        if not _logging_lines.get():
            contextvars.Context().run(emit, lines)

    return sink


def _discard(lines: str) -> None:
    pass


def open_destination(app: str, stream: str, destination: str) -> AppWriter:
    """The writer for *app*'s *stream* (``"stdout"``/``"stderr"``).

    *destination* is ``"inherit"``, ``"null"``, ``"logging"`` or an absolute
    file path, as validated by the config.
    """
    name = f"<{app} {stream}>"
    if destination == "inherit":
        return AppWriter(_to_server_stream(stream, f"[{app}] "),
                         fileno=lambda: getattr(_server, stream).fileno(), name=name, app=app, stream=stream)
    # C code that writes to a descriptor (faulthandler.enable() at import,
    # a C library's own stderr) needs one for every destination. "null":
    # /dev/null. "logging": the server's own stream, as "inherit" has — not
    # a pipe read by a thread: what such code writes is mostly a crash
    # report (faulthandler), written as the process dies, when no thread
    # is left to read a pipe and log it.
    if destination == "null":
        return _NullWriter(_discard, fileno=_devnull_fd, name=name, app=app, stream=stream)
    if destination == "logging":
        return AppWriter(_to_logger(app, stream), fileno=lambda: getattr(_server, stream).fileno(),
                         name=name, app=app, stream=stream)
    target = _AppendFile.get(destination)
    return AppWriter(target.write, fileno=target.fileno, name=destination, app=app, stream=stream)


_DEVNULL_FD: int | None = None


def _devnull_fd() -> int:
    """One ``/dev/null`` descriptor, opened for writing, for every ``null`` destination."""
    global _DEVNULL_FD
    if _DEVNULL_FD is None:
        _DEVNULL_FD = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    return _DEVNULL_FD


_EMPTY_STDIN: TextIO | None = None


def empty_stdin() -> TextIO:
    """``sys.stdin`` inside apps: a real, empty stream (reads give EOF).

    One for every app: reading ``/dev/null`` changes nothing, and 1000 apps
    need not hold 1000 file descriptors.
    """
    global _EMPTY_STDIN
    if _EMPTY_STDIN is None or _EMPTY_STDIN.closed:
        _EMPTY_STDIN = open(os.devnull, encoding="utf-8")
        atexit.register(_EMPTY_STDIN.close)
    return _EMPTY_STDIN


# -- the stand-ins in sys.__dict__ --------------------------------------------

class StreamProxy:
    """The object in ``sys.__dict__[name]`` for the whole process.

    Every attribute and method is the current target's: the app's stream
    inside an app (or what the request assigned to ``sys.<name>``), the
    plain stream outside every app. ``write`` and ``flush`` are spelled out
    because they are the hot path; everything else forwards through
    ``__getattr__`` and the special methods below.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _target(self) -> Any:
        return getattr(_binding.current.get() or _server, self._name)

    def write(self, s: Any) -> Any:
        return getattr(_binding.current.get() or _server, self._name).write(s)

    def flush(self) -> Any:
        return getattr(_binding.current.get() or _server, self._name).flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target(), name, value)

    def __iter__(self) -> Any:
        return iter(self._target())

    def __next__(self) -> Any:
        return next(self._target())

    def __enter__(self) -> Any:
        return self._target().__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._target().__exit__(*exc)

    def __repr__(self) -> str:
        return repr(self._target())


def resolve(stream: Any) -> Any:
    """The stream *stream* stands for now: its target if it is a :class:`StreamProxy`."""
    return stream._target() if isinstance(stream, StreamProxy) else stream
