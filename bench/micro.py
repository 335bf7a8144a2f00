"""Sections 1 and 2: per-request cost in process, and how it scales.

Run by ``python -m bench`` in a subprocess of its own (``python -m
bench.micro --out FILE.json [--quick]``), so that 1000+ loaded apps and
ctxserve's process-wide stand-ins never touch the orchestrator.

Every variant is driven the way a server drives an app: a fresh copy of a
prebuilt environ, a no-op ``start_response``, the body iterated, and its
``close()`` called if it has one. The loop is the same function for every
variant, so its own cost cancels out in the differences.
"""

from __future__ import annotations

import argparse
import contextvars
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

from .common import APPS, calibrate, interleaved, paired_overhead, ratio, summary

WSGIApp = Callable[..., Iterable[bytes]]


def _write(data: bytes) -> None:
    pass


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
    return _write


def make_environ(path: str) -> dict[str, Any]:
    """An environ like the one gunicorn builds for ``GET <path>`` (prebuilt, copied per request)."""
    from gunicorn.http.wsgi import FileWrapper

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench/1.0",
        "HTTP_ACCEPT": "*/*",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
    }
    setup_testing_defaults(environ)
    return environ


def request_timer(app: WSGIApp, environ: Mapping[str, Any],
                  clock: Callable[[], int] = time.perf_counter_ns) -> Callable[[int], int]:
    """``timer(n)``: n requests of *app*, as a server makes them (elapsed ns by *clock*)."""
    template = dict(environ)

    def timer(n: int) -> int:
        copy = template.copy
        sr = start_response
        t0 = clock()
        for _ in range(n):
            body = app(copy(), sr)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return clock() - t0

    return timer


def scoped_request_timer(app: WSGIApp, environ: Mapping[str, Any], sr: Callable[..., Any] | None = None,
                         clock: Callable[[], int] = time.perf_counter_ns) -> Callable[[int], int] | None:
    """Like :func:`request_timer`, but each request as ``ctxserve serve``'s own workers run it.

    ``ctxserve/workers.py`` runs every request — the app's call, the
    iteration of its body, ``close()`` — in a fresh copy of a context where
    ``binding.request_scope`` is set, and flushes partial output lines at
    the end. That copy and flush are part of what ``ctxserve serve`` pays
    per request, so they are inside the timed loop. None if this ctxserve
    has no such workers. *sr*: the ``start_response`` to pass (default: a
    no-op function).
    """
    from ctxserve import binding, streams

    request_scope = getattr(binding, "request_scope", None)
    if request_scope is None:
        return None
    scope = contextvars.Context()
    scope.run(request_scope.set, True)
    if hasattr(binding, "listener"):  # the worker names the listener, a public one here
        scope.run(binding.listener.set, binding.PUBLIC)
    flush = streams.flush_partial_lines
    template = dict(environ)

    def handle(environ: dict[str, Any], sr: Any) -> None:
        try:
            body = app(environ, sr)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        finally:
            flush()

    given = sr or start_response

    def timer(n: int) -> int:
        copy = template.copy
        sr = given
        new_scope = scope.copy
        t0 = clock()
        for _ in range(n):
            new_scope().run(handle, copy(), sr)
        return clock() - t0

    return timer


# -- building the variants -------------------------------------------------------

_tmp = tempfile.TemporaryDirectory(prefix="ctxserve-bench-")
_config_path = Path(_tmp.name) / "ctxserve.toml"


def ctxserve_dispatcher(apps: Mapping[str, Mapping[str, Any]]) -> Any:
    """ctxserve's Dispatcher for *apps* (config tables), built as the server builds it."""
    from ctxserve.config import parse
    from ctxserve.server import build

    return build(parse({"apps": dict(apps)}, _config_path), strict=True)


def app_table(spec: str, mount: str, **extra: Any) -> dict[str, Any]:
    return {"app": f"benchbare:{spec}", "mount": mount, "path": [str(APPS)], **extra}


def loaded(dispatcher: Any) -> WSGIApp:
    """The app function itself, as ctxserve loaded it for the dispatcher's first app.

    The direct-call and werkzeug baselines call this very object: since the
    bench apps live on the app's own ``path``, ctxserve loads them as the
    app's private module, which the server itself cannot import.
    """
    return dispatcher.apps[0].wsgi  # type: ignore[no-any-return]


def werkzeug_dispatcher(mounts: int, app: WSGIApp) -> WSGIApp:
    from werkzeug.exceptions import NotFound
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    return DispatcherMiddleware(NotFound(), {f"/a{i}": app for i in range(mounts)})


class _RoutingOnly:
    """Looks like an App to the Dispatcher, but calls the bare function: routing cost only.

    The Dispatcher calls ``app.serve`` (or, in older trees, ``app(...)``);
    both are the bare function itself here, with no context binding.
    """

    def __init__(self, fn: WSGIApp, mount: str) -> None:
        self.name = "shim"
        self.config = types.SimpleNamespace(mount=mount, host=())
        self.serve = fn
        self.wsgi = fn

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return self.serve(environ, start_response)


# -- section 1 ---------------------------------------------------------------------

def section_overhead(rounds: int, target_ns: float, profile_requests: int = 20_000) -> dict[str, Any]:
    """Bare app direct vs werkzeug DispatcherMiddleware vs ctxserve, one mount each."""
    from ctxserve.dispatch import Dispatcher

    env = make_environ("/a0/hello")
    decimal_table = {"prec": 6, "rounding": "ROUND_HALF_UP"}
    cx = {
        "list": ctxserve_dispatcher({"a0": app_table("application", "/a0")}),
        "gen": ctxserve_dispatcher({"a0": app_table("generator", "/a0")}),
        "list+decimal": ctxserve_dispatcher({"a0": app_table("application", "/a0", decimal=decimal_table)}),
        "gen+decimal": ctxserve_dispatcher({"a0": app_table("generator", "/a0", decimal=decimal_table)}),
    }
    fn = {"list": loaded(cx["list"]), "gen": loaded(cx["gen"])}

    # The App alone, called as the Dispatcher calls it (environ already routed).
    routed = dict(env, SCRIPT_NAME="/a0", PATH_INFO="/hello")
    base = contextvars.Context()
    var: contextvars.ContextVar[object] = contextvars.ContextVar("bench")
    base.run(var.set, object())
    list_fn = fn["list"]

    def floor(environ: dict[str, Any], sr: Any) -> Any:
        return base.copy().run(list_fn, environ, sr)

    timers: dict[str, Callable[[int], int] | None] = {
        "direct/list": request_timer(fn["list"], env),
        "direct/gen": request_timer(fn["gen"], env),
        "werkzeug/list": request_timer(werkzeug_dispatcher(1, fn["list"]), env),
        "werkzeug/gen": request_timer(werkzeug_dispatcher(1, fn["gen"]), env),
        "ctxserve/list": request_timer(cx["list"], env),
        "ctxserve/gen": request_timer(cx["gen"], env),
        "ctxserve+decimal/list": request_timer(cx["list+decimal"], env),
        "ctxserve+decimal/gen": request_timer(cx["gen+decimal"], env),
        "ctxserve serve worker scope/list": scoped_request_timer(cx["list"], env),
        "ctxserve serve worker scope/gen": scoped_request_timer(cx["gen"], env),
        # breakdown of ctxserve's cost (list body unless named)
        "part:Context.copy().run floor": request_timer(floor, env),
        "part:Dispatcher routing only": request_timer(
            Dispatcher([_RoutingOnly(fn["list"], "/a0")]), env),  # type: ignore[list-item]
        "part:App.serve only/list": request_timer(_serve(cx["list"].apps[0]), routed),
        "part:App.serve only/gen": request_timer(_serve(cx["gen"].apps[0]), routed),
    }
    timers = {k: t for k, t in timers.items() if t is not None}
    n = calibrate(timers["ctxserve+decimal/gen"], target_ns)
    samples = interleaved(timers, rounds=rounds, n=n)
    return {"n_per_sample": n, "rounds": rounds, "samples": samples,
            "stats": {k: summary(v) for k, v in samples.items()},
            "overhead_ns": _overheads(samples),
            "profile": {"list": profile(cx["list"], env, profile_requests),
                        "gen": profile(cx["gen"], env, profile_requests),
                        "print": profile_print(profile_requests)}}


def _serve(app: Any) -> WSGIApp:
    """What the Dispatcher calls for a routed request (``App.serve``; older trees: the App)."""
    return getattr(app, "serve", app)  # type: ignore[no-any-return]


def _overheads(samples: Mapping[str, list[float]]) -> dict[str, dict[str, float]]:
    """Each variant against the direct call with the same body (paired per round)."""
    out = {}
    for name, values in samples.items():
        body = "gen" if name.endswith("/gen") else "list"
        base = samples[f"direct/{body}"]
        out[name] = {"baseline": f"direct/{body}",
                     "overhead_ns": paired_overhead(values, base),
                     "ratio": ratio(summary(values)["median"], summary(base)["median"])}
    return out


def profile(app: WSGIApp, environ: Mapping[str, Any], requests: int = 20_000) -> dict[str, Any]:
    """cProfile of *requests* requests: per function, calls per request and share of own time."""
    timer = request_timer(app, environ)
    prof = cProfile.Profile()
    prof.enable()
    timer(requests)
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    total = 0.0
    for (filename, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == "timer" and filename.endswith("micro.py"):
            continue  # the driver loop itself
        if "cProfile" in filename or func == "<method 'disable' of '_lsprof.Profiler' objects>":
            continue
        total += tt
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else filename
        rows.append({"function": func, "where": where, "calls_per_request": nc / requests,
                     "tottime_s": tt, "cumtime_s": ct})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    for row in rows:
        row["share"] = row["tottime_s"] / total if total else 0.0
    return {"requests": requests, "rows": rows[:14],
            "note": "cProfile adds its own cost to every call; read call counts and shares, not absolute times"}


def profile_print(prints: int = 20_000) -> dict[str, Any]:
    """cProfile of ``print()`` inside a request of an app whose stdout is ``"null"``."""
    cx = ctxserve_dispatcher({"v": {"app": "benchvirt:application", "mount": "/v", "path": [str(APPS)],
                                    "stdout": "null", "stderr": "null"}})
    environ = dict(make_environ("/v/"), **{"bench.op": "print()", "bench.n": prints})
    prof = cProfile.Profile()
    prof.enable()
    body = cx(environ, start_response)
    prof.disable()
    list(body)
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows, total = [], 0.0
    for (filename, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "cProfile" in filename or "disable" in func:
            continue
        total += tt
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else filename
        rows.append({"function": func, "where": where, "calls_per_request": nc / prints,
                     "tottime_s": tt, "cumtime_s": ct})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    for row in rows:
        row["share"] = row["tottime_s"] / total if total else 0.0
    return {"requests": prints, "unit": "print() call", "rows": rows[:12],
            "note": "calls_per_request is per print() call here"}


# -- section 2 ---------------------------------------------------------------------

def section_scale(rounds: int, target_ns: float, counts: list[int]) -> dict[str, Any]:
    """Per-request cost with 1..1000 mounted apps, and with 1..1000 environ entries."""
    fn = loaded(ctxserve_dispatcher({"a0": app_table("application", "/a0")}))
    timers: dict[str, Callable[[int], int]] = {}
    build_s: dict[str, float] = {}
    env_direct = make_environ("/a0/hello")
    timers["direct"] = request_timer(fn, env_direct)
    for n_apps in counts:
        target = n_apps // 2
        env = make_environ(f"/a{target}/hello")
        t0 = time.perf_counter()
        cx = ctxserve_dispatcher({f"a{i}": app_table("application", f"/a{i}") for i in range(n_apps)})
        build_s[f"apps={n_apps}"] = time.perf_counter() - t0
        timers[f"ctxserve/apps={n_apps}"] = request_timer(cx, env)
        timers[f"werkzeug/apps={n_apps}"] = request_timer(werkzeug_dispatcher(n_apps, fn), env)
    reader = loaded(ctxserve_dispatcher({"a0": app_table("environ_reader", "/a0")}))
    timers["direct/environ_reader"] = request_timer(reader, env_direct)
    for k in counts:
        environ = {"BENCH_KEY": "value", **{f"BENCH_E{i:04d}": f"v{i}" for i in range(k - 1)}}
        cx_bare = ctxserve_dispatcher({"a0": app_table("application", "/a0", environ=environ)})
        cx_reader = ctxserve_dispatcher({"a0": app_table("environ_reader", "/a0", environ=environ)})
        timers[f"ctxserve/environ={k}"] = request_timer(cx_bare, env_direct)
        timers[f"ctxserve/environ={k}/environ_reader"] = request_timer(cx_reader, env_direct)
    n = calibrate(timers[f"ctxserve/apps={counts[-1]}"], target_ns)
    samples = interleaved(timers, rounds=rounds, n=n, seed=2)
    stats = {k: summary(v) for k, v in samples.items()}
    overhead = {}
    for name, values in samples.items():
        base = samples["direct/environ_reader" if name.endswith("environ_reader") else "direct"]
        overhead[name] = paired_overhead(values, base)
    return {"n_per_sample": n, "rounds": rounds, "counts": counts, "build_seconds": build_s,
            "samples": samples, "stats": stats, "overhead_ns": overhead}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        rounds, target, counts, profiled = 5, 300_000.0, [1, 10, 100], 2_000
    else:
        rounds, target, counts, profiled = 41, 4_000_000.0, [1, 10, 100, 1000], 20_000
    result = {"overhead": section_overhead(rounds, target, profiled),
              "scale": section_scale(rounds, target, counts)}
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
