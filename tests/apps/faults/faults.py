"""A WSGI app that fails on request, in each way an app can (tests/test_reliability.py).

Several apps load this module with different configs (``APP_ID`` in their
``environ``). Every route that does not fail answers with the app's
identity as its context gives it — ``APP_ID`` read through ``os.environ`` —
and with the routing it received, so tests can tell which app's context
served a request. Every printed line names the app and the request's tag.
"""

import ctypes
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs

#: Released by /release: the threads /leak starts wait on it.
_leaked = threading.Event()


def _me():
    return os.environ.get("APP_ID", "?")


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    handler = ROUTES.get(environ.get("PATH_INFO", ""), whoami)
    return handler(environ, start_response, query, query.get("tag", ""))


def whoami(environ, start_response, query, tag):
    """Any path no other route takes: who answered, and how it was routed.

    With ``print``, a line naming the app and the tag is printed first, so
    that a request that has started can be told from one that has not; then
    ``sleep`` seconds pass.
    """
    if "print" in query:
        print(f"{_me()} {tag} line")
    if "sleep" in query:
        time.sleep(float(query["sleep"]))
    return _json(start_response, {
        "id": _me(), "pid": os.getpid(), "tag": tag,
        "script_name": environ.get("SCRIPT_NAME"), "path_info": environ.get("PATH_INFO"),
        "host": environ.get("HTTP_HOST"), "secret": os.environ.get("SECRET"),
    })


# -- exceptions: in the call, in the response iterator, in close() ------------------

def raise_call(environ, start_response, query, tag):
    raise RuntimeError(f"{_me()} {tag} raised in its call")


def raise_iter(environ, start_response, query, tag):
    """Raises before the first chunk, or after it with ``late=1``."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        if "late" in query:
            yield b"first chunk\n"
        raise RuntimeError(f"{_me()} {tag} raised in its response iterator")
        yield b"never"  # pragma: no cover

    return body()


class _RaisingClose:
    """A complete response whose close() prints a line and raises."""

    def __init__(self, tag, exc):
        self.tag, self.exc = tag, exc

    def __iter__(self):
        yield f"{_me()} {self.tag} body\n".encode()

    def close(self):
        print(f"{_me()} {self.tag} close")
        raise self.exc


def raise_close(environ, start_response, query, tag):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _RaisingClose(tag, RuntimeError(f"{_me()} {tag} raised in close()"))


# -- sys.exit() --------------------------------------------------------------------

def exit_call(environ, start_response, query, tag):
    sys.exit(int(query.get("code", "1")))


def exit_iter(environ, start_response, query, tag):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        if "late" in query:
            yield b"first chunk\n"
        sys.exit(int(query.get("code", "1")))
        yield b"never"  # pragma: no cover

    return body()


def exit_close(environ, start_response, query, tag):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _RaisingClose(tag, SystemExit(int(query.get("code", "1"))))


# -- any BaseException: KeyboardInterrupt, asyncio.CancelledError, GeneratorExit, ... --

def _base_exception(name):
    import asyncio
    import builtins
    return getattr(asyncio, name, None) or getattr(builtins, name)


def raise_base(environ, start_response, query, tag):
    """Raise ``exc`` (a BaseException's name) ``where`` = call, iter (``late=1``:
    after the first chunk) or close."""
    exc = _base_exception(query.get("exc", "KeyboardInterrupt"))
    where = query.get("where", "call")
    if where == "call":
        raise exc(f"{_me()} {tag} call")
    start_response("200 OK", [("Content-Type", "text/plain")])
    if where == "close":
        return _RaisingClose(tag, exc(f"{_me()} {tag} close"))

    def body():
        if "late" in query:
            yield b"first chunk\n"
        raise exc(f"{_me()} {tag} iter")
        yield b"never"  # pragma: no cover

    return body()


# -- threads -----------------------------------------------------------------------

def leak(environ, start_response, query, tag):
    """Start threads that outlive the request (until /release); each prints a line."""
    n = int(query.get("n", "1"))
    daemon = query.get("daemon") == "1"

    def linger(i):
        print(f"{_me()} {tag} leaked {i}")
        _leaked.wait(float(query.get("for", "600")))

    for i in range(n):
        threading.Thread(target=linger, args=(i,), daemon=daemon, name=f"leak-{tag}-{i}").start()
    return _json(start_response, {"id": _me(), "threads": threading.active_count()})


def release(environ, start_response, query, tag):
    _leaked.set()
    return _json(start_response, {"id": _me()})


# -- output ------------------------------------------------------------------------

def flood(environ, start_response, query, tag):
    """Write ``mb`` megabytes to stdout, 1 MB (10,000 lines of 100 bytes) per write."""
    line = f"{_me()} {tag} ".ljust(99, "x") + "\n"
    chunk = line * 10_000
    for _ in range(int(query.get("mb", "100"))):
        sys.stdout.write(chunk)
    print(f"{_me()} {tag} flood done")
    return _json(start_response, {"id": _me(), "pid": os.getpid(), "bytes": len(chunk) * int(query.get("mb", "100"))})


def stream(environ, start_response, query, tag):
    """``n`` chunks, ``every`` seconds apart; the close line is printed whatever happens."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    n, every = int(query.get("n", "100")), float(query.get("every", "0.02"))

    def body():
        sent = 0
        try:
            for i in range(n):
                yield f"{_me()} {tag} {i}\n".encode()
                sent += 1
                time.sleep(every)
        finally:
            print(f"{_me()} {tag} close after {sent}")

    return body()


def big(environ, start_response, query, tag):
    """``mb`` megabytes in 64 KiB chunks: a client that stops reading holds the write."""
    chunk = b"x" * 65536
    n = int(float(query.get("mb", "8")) * 16)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(chunk) * n))])
    return (chunk for _ in range(n))


# -- what no process can contain ---------------------------------------------------

def os_exit(environ, start_response, query, tag):
    print(f"{_me()} {tag} os._exit")
    os._exit(int(query.get("code", "1")))


def segfault(environ, start_response, query, tag):
    ctypes.string_at(0)


def spin(environ, start_response, query, tag):
    """A busy loop in Python for ``seconds``: it shares the GIL, checks for signals."""
    deadline = time.monotonic() + float(query.get("seconds", "3"))
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return _json(start_response, {"id": _me(), "pid": os.getpid(), "loops": n})


def hold_gil(environ, start_response, query, tag):
    """One C call that never releases the GIL nor checks for signals."""
    return _json(start_response, {"sum": sum(range(int(query.get("n", str(10 ** 11)))))})


ROUTES = {
    "/raise-call": raise_call, "/raise-iter": raise_iter, "/raise-close": raise_close,
    "/exit-call": exit_call, "/exit-iter": exit_iter, "/exit-close": exit_close,
    "/raise-base": raise_base,
    "/leak": leak, "/release": release, "/flood": flood, "/big": big, "/stream": stream,
    "/os-exit": os_exit, "/segfault": segfault, "/hold-gil": hold_gil, "/spin": spin,
}
