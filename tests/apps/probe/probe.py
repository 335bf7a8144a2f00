"""A WSGI app that reports what it sees of the process globals.

Several apps load this same module with different configs (``APP_ID`` in
their ``environ``); every answer and every printed line names the app that
produced it, so tests can check that nothing crossed over.
"""

import concurrent.futures
import contextlib
import decimal
import io
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from urllib.parse import parse_qs

_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)


def _me():
    return os.environ.get("APP_ID", "?")


#: The app this copy of the module was imported for: each app has its own.
_IMPORTED_FOR = _me()


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    route = environ.get("PATH_INFO", "/")
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    tag = query.get("tag", "")
    handler = ROUTES.get(route)
    if handler is None:
        return _json(start_response, {"error": f"no route {route}"}, "404 Not Found")
    return handler(environ, start_response, query, tag)


def whoami(environ, start_response, query, tag):
    if "sleep" in query:
        time.sleep(float(query["sleep"]))
    if "print" in query:
        print(f"{_me()} {tag} whoami")
    ctx = decimal.getcontext()
    return _json(start_response, {
        "id": _me(),
        "getenv": os.getenv("APP_ID"),
        "secret": os.environ.get("SECRET"),
        "argv": sys.argv,
        "path": sys.path[:3],
        "prec": ctx.prec,
        "rounding": ctx.rounding,
        "seventh": str(decimal.Decimal(1) / decimal.Decimal(7)),
        "script_name": environ.get("SCRIPT_NAME"),
        "path_info": environ.get("PATH_INFO"),
        "tag": tag,
        # Module identity: "probe" as the app's namespace resolves it now.
        "module": sys.modules[__name__]._IMPORTED_FOR,
    })


def echo(environ, start_response, query, tag):
    """Print one line, in two partial writes, naming the app and the tag."""
    sys.stdout.write(f"{_me()} {tag} ")
    if "sleep" in query:  # let other requests run between the two halves
        time.sleep(float(query["sleep"]))
    print(f"{_me()}-end", flush=query.get("flush") == "1")
    print(f"{_me()} {tag} err", file=sys.stderr)
    return _json(start_response, {"id": _me(), "tag": tag})


def wsgi_errors(environ, start_response, query, tag):
    """Write one line to the WSGI error stream, as Flask's default logger does."""
    environ["wsgi.errors"].write(f"{_me()} {tag} wsgi-errors\n")
    environ["wsgi.errors"].flush()
    return _json(start_response, {"id": _me(), "tag": tag})


def stream(environ, start_response, query, tag):
    """Print while the server iterates the response, and on close."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        try:
            for i in range(3):
                print(f"{_me()} {tag} chunk{i}")
                yield f"{_me()} {i}\n".encode()
        finally:
            print(f"{_me()} {tag} close")
    return body()


def thread(environ, start_response, query, tag):
    seen = {}

    def work():
        print(f"{_me()} {tag} thread")
        seen["id"] = _me()
        seen["prec"] = decimal.getcontext().prec
    t = threading.Thread(target=work)
    t.start()
    t.join()
    return _json(start_response, seen)


def executor(environ, start_response, query, tag):
    def work():
        print(f"{_me()} {tag} executor")
        return _me()
    return _json(start_response, {"id": _pool.submit(work).result()})


def child(environ, start_response, query, tag):
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('APP_ID'), os.environ.get('SECRET'))"],
        capture_output=True, text=True, check=True).stdout.split()
    return _json(start_response, {"APP_ID": out[0], "SECRET": out[1]})


def proc_environ(environ, start_response, query, tag):
    with open("/proc/self/environ", "rb") as f:
        return _json(start_response, {"raw": f.read().decode(errors="replace")})


def setenv(environ, start_response, query, tag):
    for k, v in query.items():
        if k != "tag":
            os.environ[k] = v
    return _json(start_response, {"id": _me(), "set": sorted(query)})


def getenv(environ, start_response, query, tag):
    return _json(start_response, {k: os.environ.get(k) for k in query.get("names", "").split(",")})


def setprec(environ, start_response, query, tag):
    decimal.getcontext().prec = int(query.get("prec", "2"))
    return _json(start_response, {"seventh": str(decimal.Decimal(1) / 7)})


def redirect(environ, start_response, query, tag):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print(f"{_me()} {tag} redirected")
        time.sleep(float(query.get("sleep", "0")))
    print(f"{_me()} {tag} after")
    return _json(start_response, {"captured": buf.getvalue()})


def stdin(environ, start_response, query, tag):
    return _json(start_response, {"read": sys.stdin.read()})


def boom(environ, start_response, query, tag):
    raise RuntimeError(f"{_me()} boom {tag}")


def pid(environ, start_response, query, tag):
    """Which worker process and thread answered (after an optional sleep), and how it runs apps."""
    time.sleep(float(query.get("sleep", "0")))
    return _json(start_response, {"id": _me(), "pid": os.getpid(), "thread": threading.get_ident(),
                                  "multithread": environ["wsgi.multithread"],
                                  "multiprocess": environ["wsgi.multiprocess"]})


class _NoisyFile(io.FileIO):
    """A real file (sendfile works) whose close() prints a line naming the app."""

    def close(self):
        if not self.closed:
            print(f"{_me()} {self.tag} file closed")
        super().close()


def file(environ, start_response, query, tag):
    """The file named by the app's PROBE_FILE (default: this module), via wsgi.file_wrapper."""
    f = _NoisyFile(os.environ.get("PROBE_FILE", __file__), "rb")
    f.tag = tag
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(os.fstat(f.fileno()).st_size))])
    return environ["wsgi.file_wrapper"](f)


def env_keys(environ, start_response, query, tag):
    return _json(start_response, {"keys": sorted(os.environ)})


def greenlet(environ, start_response, query, tag):
    """What a greenlet spawned by the app sees; it prints a line and a partial one."""
    import gevent

    seen = {}

    def work():
        print(f"{_me()} {tag} greenlet")
        sys.stdout.write(f"{_me()} {tag} greenlet-partial")
        seen.update(id=_me(), secret=os.environ.get("SECRET"), argv=sys.argv,
                    prec=decimal.getcontext().prec)
    gevent.spawn(work).join()
    return _json(start_response, seen)


ROUTES = {
    "/whoami": whoami, "/echo": echo, "/wsgi-errors": wsgi_errors, "/stream": stream, "/thread": thread,
    "/executor": executor, "/child": child, "/proc-environ": proc_environ,
    "/setenv": setenv, "/getenv": getenv, "/setprec": setprec,
    "/redirect": redirect, "/stdin": stdin, "/boom": boom,
    "/pid": pid, "/file": file, "/env-keys": env_keys, "/greenlet": greenlet,
}
