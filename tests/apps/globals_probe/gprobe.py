"""An app that sets the per-app process globals at import, as its APP_ID says,
and reports what it sees of them in every request.

App "a" seeds random, configures the root logger, turns warnings into
errors, sets a default socket timeout, its own excepthooks, an extra MIME
type and an HTTPS context; app "b" disables logging and sets its own
tempfile directory. Each answer names the app, so a test under load sees
any value that crossed over.
"""

import json
import logging
import mimetypes
import os
import random
import socket
import ssl
import sys
import tempfile
import threading
import time
import warnings
from urllib.parse import parse_qs

ME = os.environ["APP_ID"]
HOOKED = []  # what this app's own excepthooks saw (this module is private to the app)


def sys_hook_a(*args):
    HOOKED.append("sys")


def thread_hook_a(args):
    HOOKED.append(f"thread:{args.exc_value}")


if ME == "a":
    random.seed(42)
    logging.basicConfig(format="A-FORMAT|%(name)s|%(message)s", level=logging.INFO)
    warnings.filterwarnings("error")
    socket.setdefaulttimeout(7)
    sys.excepthook = sys_hook_a
    threading.excepthook = thread_hook_a
    mimetypes.add_type("application/x-only-a", ".onlya")
    ssl._create_default_https_context = ssl._create_unverified_context
elif ME == "b":
    logging.disable(logging.CRITICAL)
    tempfile.tempdir = os.environ["B_TEMPDIR"]

if os.environ.get("GUARD_AT_LOAD"):
    sys.setrecursionlimit(sys.getrecursionlimit() + 7)


def _json(start_response, data):
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def seen(query):
    """What this request sees of every per-app global."""
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always") if ME != "a" else None
        try:
            warnings.warn(f"w-{query.get('tag', '')}", UserWarning)
            warned = "recorded" if log else "none"
        except UserWarning:
            warned = "raised"
    new_socket = socket.socket()
    try:
        socket_timeout = new_socket.gettimeout()
    finally:
        new_socket.close()
    logging.getLogger("shared.library").warning("%s logged %s", ME, query.get("tag", ""))
    return {
        "id": ME,
        "root_handlers": len(logging.getLogger().handlers),
        "root_level": logging.root.level,
        "warning_enabled": logging.getLogger("shared.library").isEnabledFor(logging.WARNING),
        "server_logger_enabled": logging.getLogger("gunicorn.error").isEnabledFor(logging.ERROR),
        "warned": warned,
        "default_timeout": socket.getdefaulttimeout(),
        "socket_timeout": socket_timeout,
        "sys_excepthook": getattr(sys.excepthook, "__name__", repr(sys.excepthook)),
        "threading_excepthook": getattr(threading.excepthook, "__name__", repr(threading.excepthook)),
        "tempdir": tempfile.gettempdir(),
        "mkstemp_dir": os.path.dirname(_mkstemp()),
        "mimetype": mimetypes.guess_type("x.onlya")[0],
        "https_context": ssl._create_default_https_context.__name__,
    }


def _mkstemp():
    fd, name = tempfile.mkstemp(prefix="gprobe-")
    os.close(fd)
    os.unlink(name)
    return name


def draws(query):
    """random.seed(N), a pause in which other apps draw numbers, then three draws."""
    random.seed(int(query["seed"]))
    time.sleep(float(query.get("sleep", "0.01")))
    return {"id": ME, "draws": [random.random() for _ in range(3)]}


def crash_thread(query):
    """A thread of this app's own that raises: the app's threading.excepthook gets it."""
    before = len(HOOKED)
    thread = threading.Thread(target=_raise, args=(f"{ME}-{query.get('tag', '')}",))
    thread.start()
    thread.join()
    return {"id": ME, "hooked": HOOKED[before:]}


def _raise(text):
    raise RuntimeError(text)


def shared_worker(query):
    """Work handed to a shared library's lazily started thread."""
    import lazyworker

    return {"id": ME, "secret": lazyworker.call(lazyworker.environ_secret),
            "own_thread_secret": _own_thread_secret()}


def _own_thread_secret():
    result = []
    thread = threading.Thread(target=lambda: result.append(os.environ.get("SECRET")))
    thread.start()
    thread.join()
    return result[0]


def change_cwd(query):
    """Change a guarded global in a request (and put it back)."""
    here = os.getcwd()
    os.chdir(query["to"])
    os.chdir(here)
    return {"id": ME, "cwd": os.getcwd()}


ROUTES = {"/seen": seen, "/draws": draws, "/crash-thread": crash_thread,
          "/shared-worker": shared_worker, "/chdir": change_cwd}


def application(environ, start_response):
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    return _json(start_response, ROUTES[environ["PATH_INFO"]](query))


def thread_pool(query):
    """multiprocessing's ThreadPool, made by this app: its tasks run in the app's context."""
    from multiprocessing.pool import ThreadPool

    with ThreadPool(2) as pool:
        seen = pool.map(lambda _: os.environ.get("SECRET"), range(4))
        seen.append(pool.apply_async(os.environ.get, ("SECRET",)).get(timeout=10))
    return {"id": ME, "secrets": sorted(set(seen))}


ROUTES["/thread-pool"] = thread_pool


def change_several(query):
    """Change guarded globals in a request, each put back at once."""
    mask = os.umask(0o077)
    os.umask(mask)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 3)
    sys.setrecursionlimit(limit)
    os.putenv("CTXSERVE_TEST_PUTENV", "1")
    os.unsetenv("CTXSERVE_TEST_PUTENV")
    return {"id": ME}


ROUTES["/change-several"] = change_several
