"""Per-request cost of the admin listener's metrics: bare app vs ctxserve admin off vs on.

    python bench/admin_overhead.py [ROUNDS]

In-process, no sockets: the same one-line WSGI app called directly, through
the Dispatcher (``[server] admin`` off) and through the admin Front with
every app metered (admin on). ``start_response`` is a gunicorn ``Response``
subclass with a trivial ``start_response`` (the metered path reads the
status from it as it does under gunicorn); "on, foreign server" passes a
plain function instead, so the status is captured by a wrapper. Rounds are
interleaved, timed in process CPU time, and the best of each is kept (the
machine may be busy). The
fold into prometheus-client's multiprocess values runs between rounds and
is reported separately, per request folded.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import timeit

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="ctxserve-bench-"))

from gunicorn.http.wsgi import Response  # noqa: E402

from ctxserve import binding  # noqa: E402
from ctxserve.config import parse  # noqa: E402
from ctxserve.server import application  # noqa: E402


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello\n"]


class StubResponse(Response):
    def __init__(self) -> None:
        self.status = None

    def start_response(self, status, headers, exc_info=None):
        self.status = status


def main(rounds: int = 60, number: int = 10000) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    apps = {"hello": {"app": "admin_overhead:hello", "mount": "/hello", "path": [here]},
            "other": {"app": "admin_overhead:hello", "mount": "/other", "path": [here]}}
    off = application(parse({"apps": apps}, "off.toml"))
    # The meter reads the status from gunicorn's response (ctxserve serve) or wraps
    # start_response (any other server): which one is said when the chain is composed.
    on = application(parse({"server": {"admin": "127.0.0.1:9100"}, "apps": apps}, "on.toml"), gunicorn=True)
    on_foreign = application(parse({"server": {"admin": "127.0.0.1:9100"}, "apps": apps}, "on.toml"))
    # As ctxserve's workers say of each request: it arrived on a public listener.
    binding.listener.set(binding.PUBLIC)
    base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/hello/x", "SCRIPT_NAME": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000", "wsgi.file_wrapper": None}
    resp = StubResponse()
    gunicorn_start_response = resp.start_response

    def plain_start_response(status, headers, exc_info=None):
        return None

    variants = {
        "bare app": lambda: hello(base.copy(), gunicorn_start_response),
        "ctxserve, admin off": lambda: off(base.copy(), gunicorn_start_response),
        "ctxserve, admin on": lambda: on(base.copy(), gunicorn_start_response),
        "ctxserve, admin on, foreign server": lambda: on_foreign(base.copy(), plain_start_response),
    }
    best = dict.fromkeys(variants, float("inf"))
    fold_time = folded = 0.0
    for _ in range(rounds):
        for name, call in variants.items():
            # CPU time of this process: a busy machine preempting us does not count.
            t = timeit.Timer(call, timer=time.process_time).timeit(number) / number
            best[name] = min(best[name], t)
            pending = sum(len(m.records) for f in (on, on_foreign) for m in f.metrics.meters)
            t0 = time.process_time()
            on.metrics.fold()
            on_foreign.metrics.fold()
            fold_time += time.process_time() - t0
            folded += pending
    for name, t in best.items():
        print(f"{name:38s} {t * 1e9:7.0f} ns/request")
    print(f"{'admin on - admin off':38s} {(best['ctxserve, admin on'] - best['ctxserve, admin off']) * 1e9:7.0f} ns")
    print(f"{'fold (off the hot path)':38s} {fold_time / max(folded, 1) * 1e9:7.0f} ns/request folded")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
