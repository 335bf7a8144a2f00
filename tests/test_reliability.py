"""Reliability and security, measured against a real gunicorn on 127.0.0.1.

* bulkheads: an app at its ``max_concurrency`` does not starve the others
  of the worker's threads; beyond the limit a request waits at most
  ``queue_timeout``, then gets a 503 with ``Retry-After``;
* faults: an app that raises (in its call, its response iterator, its
  ``close()``), calls ``sys.exit()``, leaks threads, floods its stdout, or
  whose client goes away mid-stream fails that request only — every other
  app keeps giving the right answers all along (a :class:`Checker` asks
  them throughout);
* graceful restart (SIGHUP) and shutdown (SIGTERM) under load lose no
  started request and no output line;
* what no process can contain (``os._exit``, a segfault, a C call holding
  the GIL): gunicorn's master replaces the worker; the gap is measured;
* secrets: an app's ``environ`` values are nowhere but in that app;
* bad input: a bad config through the CLI is one line and exit 2.

Measured figures are recorded with :func:`figure` (docs/reliability.md).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import ENGINES, Server, probe_app, serve_command, start_server, toml_value, wait_for
from reliability_helpers import (Checker, children, faults_app, figure, memory_kb, module_server, ms,
                                 percentile, worker_pid, write_config)

pytestmark = pytest.mark.server


def is_app(app_id: str, mount: str):
    """A check: the faults app *app_id* answered, routed at *mount*, in its own context."""
    def check(r: requests.Response) -> bool:
        if r.status_code != 200:
            return False
        data = r.json()
        return data["id"] == app_id and data["script_name"] == mount
    return check


def seventh(prec: int) -> str:
    import decimal
    return str(decimal.Context(prec=prec).divide(decimal.Decimal(1), decimal.Decimal(7)))


def probe_ok(app_id: str, prec: int):
    want = seventh(prec)

    def check(r: requests.Response) -> bool:
        if r.status_code != 200:
            return False
        data = r.json()
        return (data["id"] == data["getenv"] == app_id and data["prec"] == prec
                and data["seventh"] == want and data["argv"] == [app_id])
    return check


# ======================================================================================
# Bulkheads
# ======================================================================================

SLOW = 2.0  # seconds a request of the slow apps takes

BULKHEAD_APPS = {
    "fast": faults_app("fast", "/fast"),
    "slow": faults_app("slow", "/slow", max_concurrency=2),
    "waits": faults_app("waits", "/waits", max_concurrency=1, queue_timeout=1.0),
    "unlimited": faults_app("unlimited", "/unlimited"),
    "queued": faults_app("queued", "/queued", max_concurrency=2, queue_timeout=3.0),
}


@pytest.fixture(scope="module", params=ENGINES)
def bulkhead(request, tmp_path_factory) -> Server:
    with module_server(tmp_path_factory, f"bulkhead-{request.param}", BULKHEAD_APPS,
                       {"threads": 8, "engine": request.param}) as server:
        server.engine = request.param  # type: ignore[attr-defined]
        yield server


def engine_tag(server: Server) -> str:
    """Figures measured under granian are named "granian.<name>"."""
    engine = getattr(server, "engine", "gunicorn")
    return "" if engine == "gunicorn" else f"{engine}."


def fast_latencies(server: Server, seconds: float, *, clients: int = 2, most: int = 3000) -> list[float]:
    """Latencies of the fast app, asked back to back by *clients* for *seconds* (at most *most* each)."""
    found: list[float] = []

    def client() -> None:
        deadline = time.monotonic() + seconds
        with requests.Session() as s:
            for _ in range(most):
                if time.monotonic() > deadline:
                    break
                started = time.perf_counter()
                r = s.get(server.url + "/fast/x", timeout=30)
                found.append(time.perf_counter() - started)
                assert r.status_code == 200 and r.json()["id"] == "fast", r.text

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    return found


class Saturate:
    """*clients* clients asking *path* back to back; on a 503 each waits its
    ``Retry-After`` (as a well-behaved client does) or until stopped."""

    def __init__(self, server: Server, path: str, clients: int) -> None:
        self.server, self.path = server, path
        self.statuses: Counter[int] = Counter()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        with requests.Session() as s:
            while not self.stop.is_set() and time.monotonic() < deadline:
                r = s.get(self.server.url + self.path, timeout=60)
                self.statuses[r.status_code] += 1
                if r.status_code == 503:
                    self.stop.wait(float(r.headers["Retry-After"]))

    def __enter__(self) -> Saturate:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(SLOW * 3 + 60)


def test_a_slow_app_at_its_max_concurrency_does_not_starve_a_fast_app_of_threads(bulkhead):
    """12 clients (1.5x the worker's 8 threads) keep the slow app (2 s a
    request, max_concurrency 2) at its limit: the fast app's p99 stays
    within 2x of its p99 alone. Alone / loaded / loaded / alone (ABBA), so
    that drift in the machine's load falls on both sides."""
    alone = fast_latencies(bulkhead, 1.0)
    with Saturate(bulkhead, f"/slow/x?sleep={SLOW}", clients=12) as slow:
        time.sleep(0.5)
        loaded = fast_latencies(bulkhead, 2.0)
    alone += fast_latencies(bulkhead, 1.0)
    alone_p99, loaded_p99 = percentile(alone, 99), percentile(loaded, 99)
    figure(engine_tag(bulkhead) + "bulkhead.fast_alone", {"n": len(alone), "p50_ms": ms(percentile(alone, 50)), "p99_ms": ms(alone_p99)})
    figure(engine_tag(bulkhead) + "bulkhead.fast_with_slow_saturated", {"n": len(loaded), "p50_ms": ms(percentile(loaded, 50)),
                                                 "p99_ms": ms(loaded_p99), "ratio_p99": round(loaded_p99 / alone_p99, 2),
                                                 "slow_statuses": dict(slow.statuses)})
    assert slow.statuses[503] > 0, "the slow app never reached its limit"
    assert set(slow.statuses) <= {200, 503}
    assert loaded_p99 <= 2 * alone_p99

    # The same clients on an app without a limit take every thread: the
    # measure above would see it (the fast app waits for slow requests).
    with Saturate(bulkhead, f"/unlimited/x?sleep={SLOW}", clients=12):
        time.sleep(0.5)
        starved = fast_latencies(bulkhead, 30.0, most=1)
    figure(engine_tag(bulkhead) + "bulkhead.fast_with_unlimited_slow_app", {"n": len(starved), "p50_ms": ms(percentile(starved, 50)),
                                                     "max_ms": ms(max(starved))})
    assert percentile(starved, 50) > 2 * alone_p99


def test_a_slow_app_with_a_queue_timeout_does_not_starve_a_fast_app_of_threads(bulkhead):
    """As above, with queue_timeout = 3 s: of the 10 clients beyond the limit,
    at most max_concurrency (2) wait for a slot, each in one of the worker's
    8 threads; the others get a 503 at once."""
    alone = fast_latencies(bulkhead, 1.0)
    with Saturate(bulkhead, f"/queued/x?sleep={SLOW}", clients=12) as queued:
        time.sleep(0.5)
        loaded = fast_latencies(bulkhead, 3.0, most=200)
    figure(engine_tag(bulkhead) + "bulkhead.fast_with_queued_slow_app", {"n": len(loaded), "p50_ms": ms(percentile(loaded, 50)),
                                                  "max_ms": ms(max(loaded)), "alone_p99_ms": ms(percentile(alone, 99)),
                                                  "slow_statuses": dict(queued.statuses)})
    assert percentile(loaded, 99) <= 2 * percentile(alone, 99)


def hold(server: Server, path: str, tag: str) -> concurrent.futures.Future:
    """Start a request of *path* (a faults route with ``print``) and wait until the app has it."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(requests.get, f"{server.url}{path}&print=1&tag={tag}", timeout=60)
    pool.shutdown(wait=False)
    assert wait_for(lambda: f" {tag} line" in server.stdout(), timeout=20), f"{tag} never started"
    return future


def test_beyond_the_limit_with_queue_timeout_0_a_request_gets_503_at_once(bulkhead):
    holders = [hold(bulkhead, f"/slow/x?sleep={SLOW}", f"q0-hold{i}") for i in range(2)]
    started = time.perf_counter()
    r = requests.get(bulkhead.url + "/slow/x", timeout=30)
    waited = time.perf_counter() - started
    figure(engine_tag(bulkhead) + "bulkhead.queue_timeout_0.wait_ms", ms(waited))
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.text == "Service Unavailable: app 'slow' is at its max_concurrency\n"
    assert waited < SLOW / 2, "it waited for a slot"
    assert all(h.result().status_code == 200 for h in holders)
    assert requests.get(bulkhead.url + "/slow/x", timeout=30).status_code == 200  # slots are back


def test_beyond_the_limit_a_request_waits_at_most_queue_timeout_then_gets_503(bulkhead):
    holder = hold(bulkhead, f"/waits/x?sleep={SLOW}", "q1-hold")
    started = time.perf_counter()
    r = requests.get(bulkhead.url + "/waits/x", timeout=30)
    waited = time.perf_counter() - started
    figure(engine_tag(bulkhead) + "bulkhead.queue_timeout_1s.wait_then_503_ms", ms(waited))
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert 1.0 <= waited < SLOW, "it did not wait queue_timeout (1 s), or waited for the slot"
    assert holder.result().status_code == 200

    # A slot that frees within queue_timeout is taken by the waiting request.
    holder = hold(bulkhead, "/waits/x?sleep=0.5", "q1-short")
    started = time.perf_counter()
    r = requests.get(bulkhead.url + "/waits/x", timeout=30)
    waited = time.perf_counter() - started
    figure(engine_tag(bulkhead) + "bulkhead.queue_timeout_1s.wait_then_200_ms", ms(waited))
    assert r.status_code == 200 and r.json()["id"] == "waits"
    assert waited < 1.0
    assert holder.result().status_code == 200


# ======================================================================================
# Faults
# ======================================================================================

def fault_apps() -> dict[str, dict[str, Any]]:
    return {
        "a": faults_app("a", "/a", stdout="a.out", stderr="a.err"),
        "b": faults_app("b", "/b"),
        "c": probe_app("c", "/c", decimal={"prec": 6}),
    }


OTHERS = {"/b/x": is_app("b", "/b"), "/c/whoami": probe_ok("c", 6)}


@pytest.fixture(scope="module", params=["serve", "gunicorn", "granian"])
def faulty(request, tmp_path_factory) -> Server:
    """Apps a (faults, file stdout/stderr), b (faults, inherit), c (probe), under
    ``ctxserve serve``, plain ``gunicorn ctxserve.wsgi:application`` or
    ``ctxserve serve`` with ``engine = "granian"``, 8 threads."""
    table = {"threads": 8, **({"engine": "granian"} if request.param == "granian" else {})}
    with module_server(tmp_path_factory, f"faults-{request.param}", fault_apps(), table,
                       plain=request.param == "gunicorn") as server:
        server.kind = request.param  # type: ignore[attr-defined]
        yield server


def serve_only(server: Server) -> None:
    if server.kind != "serve":  # type: ignore[attr-defined]
        pytest.skip("measured under ctxserve serve only")


def app_output(server: Server, stream: str = "out") -> str:
    path = server.directory / f"a.{stream}"  # type: ignore[attr-defined]
    return path.read_text(errors="replace") if path.exists() else ""


class Fault:
    """Around a fault: the other apps are asked all along and the worker must stay the same."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self) -> Fault:
        self.pid = worker_pid(self.server, "/b/x")
        self.others = Checker(self.server, OTHERS).__enter__()
        wait_for(lambda: self.others.ok >= 2, timeout=10)
        return self

    def __exit__(self, *exc: Any) -> None:
        wait_for(lambda: self.others.ok >= 4, timeout=10)
        self.others.__exit__()
        if exc[0] is None:
            assert self.others.wrong == [], self.others.wrong[:5]
            assert self.others.ok > 0
            assert worker_pid(self.server, "/b/x") == self.pid, "the worker was replaced"
            assert self.server.proc.poll() is None


def tag_of(request: pytest.FixtureRequest) -> str:
    return re.sub(r"\W", "", request.node.name)[-40:] + str(time.monotonic_ns() % 10**6)


def test_an_exception_in_the_call_is_a_500_for_that_request_only(faulty, request):
    tag = tag_of(request)
    with Fault(faulty):
        r = requests.get(f"{faulty.url}/a/raise-call?tag={tag}", timeout=30)
        assert r.status_code == 500
        assert r.text == "Internal Server Error: the application raised an exception\n"
    assert wait_for(lambda: f"RuntimeError: a {tag} raised in its call" in app_output(faulty, "err"))


def test_an_exception_in_the_response_iterator_fails_that_response_only(faulty, request):
    tag = tag_of(request)
    with Fault(faulty):
        # Before the first chunk: nothing was sent, so it is a 500.
        r = requests.get(f"{faulty.url}/a/raise-iter?tag={tag}", timeout=30)
        assert r.status_code == 500 and "Internal Server Error" in r.text
        # After the first chunk: the response is cut short, never passed off as whole
        # (granian, which sends nothing of a response before its second chunk, drops the connection).
        cut = requests.exceptions.ChunkedEncodingError
        with pytest.raises((cut, requests.ConnectionError) if faulty.kind == "granian" else cut):
            requests.get(f"{faulty.url}/a/raise-iter?late=1&tag={tag}", timeout=30)
    assert wait_for(lambda: faulty.stderr().count(f"RuntimeError: a {tag} raised in its response iterator") == 2)


def test_an_exception_in_close_leaves_the_complete_response_and_the_close_line(faulty, request):
    tag = tag_of(request)
    with Fault(faulty):
        r = requests.get(f"{faulty.url}/a/raise-close?tag={tag}", timeout=30)
        assert r.status_code == 200 and r.text == f"a {tag} body\n"
    assert wait_for(lambda: f"a {tag} close\n" in app_output(faulty))
    assert wait_for(lambda: f"RuntimeError: a {tag} raised in close()" in faulty.stderr())


@pytest.mark.parametrize("code", [0, 1, 3])
def test_sys_exit_in_the_call_is_a_500_and_the_worker_survives(faulty, request, code):
    """Exit code 3 is gunicorn's WORKER_BOOT_ERROR: a worker that exits with it
    makes the master halt the whole server."""
    tag = tag_of(request)
    with Fault(faulty):
        r = requests.get(f"{faulty.url}/a/exit-call?code={code}&tag={tag}", timeout=30)
        assert r.status_code == 500
        assert r.text == "Internal Server Error: the application raised an exception\n"
    assert wait_for(lambda: f"SystemExit: {code}" in app_output(faulty, "err"))


def test_sys_exit_after_the_first_chunk_or_in_close_fails_that_response_only(faulty, request):
    tag = tag_of(request)
    cut = requests.exceptions.ChunkedEncodingError
    with Fault(faulty):
        with pytest.raises((cut, requests.ConnectionError) if faulty.kind == "granian" else cut):
            requests.get(f"{faulty.url}/a/exit-iter?late=1&code=3&tag={tag}", timeout=30)
        r = requests.get(f"{faulty.url}/a/exit-close?code=3&tag={tag}", timeout=30)
        assert r.status_code == 200 and r.text == f"a {tag} body\n"
    assert wait_for(lambda: f"a {tag} close\n" in app_output(faulty))


@pytest.mark.parametrize("plain", [False, True], ids=["serve", "gunicorn"])
def test_sys_exit_in_the_response_iterator_before_the_first_chunk_is_a_500(tmp_path_factory, plain):
    with module_server(tmp_path_factory, "exit-iter", fault_apps(), {"threads": 8}, plain=plain) as server:
        pid = worker_pid(server, "/b/x")
        try:
            r = requests.get(f"{server.url}/a/exit-iter?code=1", timeout=30)
            status = r.status_code
        except requests.ConnectionError:
            status = None
        time.sleep(0.5)
        assert status == 500
        assert worker_pid(server, "/b/x") == pid


def test_an_app_that_leaks_threads_does_not_disturb_the_others(faulty, request):
    serve_only(faulty)
    tag = tag_of(request)
    try:
        with Fault(faulty):
            before = requests.get(f"{faulty.url}/a/leak?n=0", timeout=30).json()["threads"]
            for _ in range(4):
                r = requests.get(f"{faulty.url}/a/leak?n=25&tag={tag}", timeout=30)
                assert r.status_code == 200
            after = r.json()["threads"]
            assert after >= before + 100
        figure("faults.leaked_threads", {"threads_before": before, "threads_after": after})
        # Each leaked thread printed into its own app's destination, once.
        assert wait_for(lambda: app_output(faulty).count(f"a {tag} leaked ") == 100)
        assert f"{tag} leaked" not in faulty.stdout()
    finally:
        requests.get(f"{faulty.url}/a/release", timeout=30)


def test_100_mb_to_a_file_destination_in_one_request_keeps_memory_bounded(faulty, request):
    """The flood is written 1 MB at a time; the worker's peak RSS (VmHWM) grows
    by less than a tenth of what went through it."""
    serve_only(faulty)
    tag = tag_of(request)
    pid = worker_pid(faulty, "/b/x")
    requests.get(f"{faulty.url}/a/flood?mb=1&tag=warm{tag}", timeout=60)  # first-use allocations
    before = memory_kb(pid)
    with Fault(faulty):
        started = time.perf_counter()
        r = requests.get(f"{faulty.url}/a/flood?mb=100&tag={tag}", timeout=120)
        took = time.perf_counter() - started
        assert r.status_code == 200 and r.json()["bytes"] == 100_000_000
    after = memory_kb(pid)
    growth_kb = after["VmHWM"] - before["VmHWM"]
    figure("faults.flood_file", {"mb": 100, "seconds": round(took, 2), "rss_before_kb": before["VmRSS"],
                                 "rss_after_kb": after["VmRSS"], "peak_before_kb": before["VmHWM"],
                                 "peak_after_kb": after["VmHWM"], "peak_growth_kb": growth_kb})
    assert growth_kb < 100_000 / 10
    out = faulty.directory / "a.out"  # type: ignore[attr-defined]
    data = out.read_bytes()
    assert data.count(f"a {tag} ".encode()) == 1_000_000 + 1  # every line, once, and the last one
    assert data.endswith(f"a {tag} flood done\n".encode())
    os.truncate(out, 0)


@pytest.mark.parametrize("where", ["file", "inherit"])
def test_a_client_that_disconnects_mid_stream_still_gets_close_run_in_the_apps_context(faulty, request, where):
    tag = tag_of(request)
    app = "a" if where == "file" else "b"
    with Fault(faulty):
        with requests.get(f"{faulty.url}/{app}/stream?n=500&every=0.01&tag={tag}", stream=True, timeout=30) as r:
            first = next(r.iter_lines())
            assert first == f"{app} {tag} 0".encode()
        # The server finds out on a later write; close() runs then, in the app's context.
        line = re.compile(rf"^{'' if where == 'file' else re.escape('[b] ')}{app} {tag} close after (\d+)$", re.M)
        output = app_output if where == "file" else (lambda server: server.stdout())
        found = wait_for(lambda: line.search(output(faulty)), timeout=15)
        assert found, f"no close line in {where}"
        assert int(found.group(1)) < 500, "the stream ran to its end: the disconnect was not noticed"
    other = faulty.stdout() if where == "file" else app_output(faulty)
    assert f"{tag} close" not in other


@pytest.fixture
def flood_inherit(tmp_path_factory) -> Server:
    apps = {"f": faults_app("f", "/f"), "c": probe_app("c", "/c", decimal={"prec": 6})}
    with module_server(tmp_path_factory, "flood-inherit", apps, {"threads": 8}) as server:
        yield server


def test_100_mb_to_inherit_does_not_block_the_other_apps(flood_inherit, request):
    """While f writes 100 MB through the server's stdout, c answers (and prints,
    through the same stream) without waiting for the flood to end."""
    server, tag = flood_inherit, tag_of(request)
    checks = {"/c/whoami": probe_ok("c", 6), "/c/echo?tag=during": lambda r: r.status_code == 200}
    with Checker(server, checks) as baseline:
        time.sleep(1.0)
    with Checker(server, checks) as during:
        started = time.perf_counter()
        r = requests.get(f"{server.url}/f/flood?mb=100&tag={tag}", timeout=120)
        took = time.perf_counter() - started
    assert r.status_code == 200
    assert baseline.wrong == [] and during.wrong == []
    figure("faults.flood_inherit", {
        "mb": 100, "seconds": round(took, 2),
        "others_alone": {"n": len(baseline.latencies), "p50_ms": ms(percentile(baseline.latencies, 50)),
                         "p99_ms": ms(percentile(baseline.latencies, 99))},
        "others_during": {"n": len(during.latencies), "p50_ms": ms(percentile(during.latencies, 50)),
                          "p99_ms": ms(percentile(during.latencies, 99)), "max_ms": ms(max(during.latencies))},
    })
    assert during.ok >= 10
    assert max(during.latencies) < took / 2, "another app waited for the flood"
    with server.out_path.open("rb") as f:
        data = f.read()
    assert data.count(f"[f] f {tag} ".encode()) == 1_000_000 + 1


# ======================================================================================
# Graceful restart and shutdown under load
# ======================================================================================

class Load:
    """*clients* clients, each asking a and b in turn with a fresh tag, until stopped.

    Every request prints ``<app> <tag> line`` before it sleeps, so a request
    that failed can be told apart: its line is there (it had started: lost)
    or not (it was refused before it started)."""

    def __init__(self, server: Server, clients: int = 6, sleep: float = 0.05) -> None:
        self.server, self.sleep = server, sleep
        self.results: list[tuple[str, str, float, float, str]] = []  # app, tag, start, end, outcome
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        deadline = time.monotonic() + 60
        with requests.Session() as s:
            for j in range(100_000):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                app = "ab"[j % 2]
                tag = f"c{i}r{j}"
                started = time.monotonic()
                try:
                    r = s.get(f"{self.server.url}/{app}/x?print=1&sleep={self.sleep}&tag={tag}", timeout=30)
                    ok = r.status_code == 200 and r.json()["id"] == app and r.json()["tag"] == tag
                    outcome = "ok" if ok else f"wrong {r.status_code} {r.text[:100]!r}"
                except requests.ConnectionError as exc:
                    if "Connection refused" in str(exc):  # the listener is closed: this client is done
                        self.results.append((app, tag, started, time.monotonic(), "refused"))
                        return
                    # Closed or reset before any byte of a response: requests raises
                    # ConnectionError only then (a response cut short is a
                    # ChunkedEncodingError); on a new connection the reset may come
                    # while it is being set up. verify() checks the app never ran it.
                    outcome = "aborted before any response"
                except requests.RequestException as exc:  # a response cut short, a timeout
                    outcome = f"error {type(exc).__name__}: {exc}"
                self.results.append((app, tag, started, time.monotonic(), outcome))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(90)

    def verify(self, output: str, at: float) -> dict[str, Any]:
        """Every request OK, or failed before it started; every OK request's line once."""
        lines = Counter(re.findall(r"^\[([ab])\] \1 (c\d+r\d+) line$", output, re.M))
        lost, refused_before_start, completed = [], 0, 0
        for app, tag, start, end, outcome in self.results:
            seen = lines[(app, tag)]
            if outcome == "ok":
                completed += 1
                assert seen == 1, f"{app} {tag}: its line appears {seen} times"
            elif seen == 0:
                refused_before_start += 1
            else:
                lost.append((app, tag, outcome))
        assert lost == [], lost[:5]
        assert sum(lines.values()) == completed, "a line of a request no client saw completed"
        return {"requests": len(self.results), "completed": completed,
                "failed_before_start": refused_before_start,
                "failures": dict(Counter(o.split(":")[0] for *_, o in self.results if o != "ok")),
                "in_flight_at_signal": sum(1 for *_, s, e, _ in self.results if s <= at <= e),
                "lines_checked": sum(lines.values())}


#: The server's stdout as in production (a file or a pipe: block-buffered), or unbuffered.
BUFFERING = pytest.mark.parametrize("buffering", ["block-buffered", "unbuffered"])


def load_server(tmp_path_factory, name: str, buffering: str, engine: str) -> Any:
    apps = {"a": faults_app("a", "/a"), "b": faults_app("b", "/b")}
    return module_server(tmp_path_factory, name, apps, {"threads": 8, "workers": 2, "engine": engine},
                         env={"PYTHONUNBUFFERED": "1" if buffering == "unbuffered" else ""})


@BUFFERING
def test_sighup_under_load_loses_no_request_and_no_line(tmp_path_factory, buffering, engine):
    with load_server(tmp_path_factory, "sighup", buffering, engine) as server:
        master = server.proc.pid
        old = set(children(master))
        with Load(server) as load:
            time.sleep(1.0)
            at = time.monotonic()
            server.proc.send_signal(signal.SIGHUP)
            # Running until the old workers are gone and the new ones have served a while.
            assert wait_for(lambda: not (set(children(master)) & old), timeout=40)
            replaced = time.monotonic() - at
            time.sleep(1.0)
        assert server.proc.poll() is None
        assert len(children(master)) == 2
        # The new workers' buffered lines are written when they exit.
        assert server.stop() == 0
        found = load.verify(server.stdout(), at)
        figure(f"restart.sighup.{buffering}" + ("" if engine == "gunicorn" else f".{engine}"), {**found, "old_workers_gone_after_s": round(replaced, 2)})
        if engine == "granian":
            # granian's respawn may reset a connection its stopping worker had
            # accepted, before any byte of a response (README, "Limits"); the
            # app never ran it (verify), and nothing else may fail.
            assert set(found["failures"]) <= {"aborted before any response"}
        else:
            assert found["failed_before_start"] == 0 and found["completed"] == found["requests"]


@BUFFERING
def test_sigterm_under_load_loses_no_started_request_and_no_line(tmp_path_factory, buffering, engine):
    with load_server(tmp_path_factory, "sigterm", buffering, engine) as server:
        with Load(server) as load:
            time.sleep(1.0)
            at = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(40)
            took = time.monotonic() - at
            assert wait_for(lambda: all(not t.is_alive() for t in load.threads), timeout=40)
        assert server.proc.returncode == 0
        found = load.verify(server.stdout(), at)
        figure(f"restart.sigterm.{buffering}" + ("" if engine == "gunicorn" else f".{engine}"), {**found, "master_exit_after_s": round(took, 2)})
        # Refused once the listener is closed; a connection the kernel had
        # queued on it meanwhile is reset when the workers close it, before
        # any byte of a request was read (verify: its line is not there).
        assert set(found["failures"]) <= {"refused", "aborted before any response"}


def test_threads_an_app_leaks_hold_the_workers_exit_until_graceful_timeout(tmp_path_factory):
    """Python waits for non-daemon threads at exit: the master's ``graceful_timeout``
    is what ends such a worker (SIGKILL). Lines printed before are all there."""
    apps = {"a": faults_app("a", "/a"), "b": faults_app("b", "/b")}
    with module_server(tmp_path_factory, "leak-exit", apps,
                       {"threads": 8, "gunicorn": {"graceful_timeout": 3}}) as server:
        assert requests.get(f"{server.url}/a/leak?n=5&tag=lk", timeout=30).status_code == 200
        assert requests.get(f"{server.url}/b/x?print=1&tag=done", timeout=30).status_code == 200
        workers = children(server.proc.pid)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(40)
        took = time.monotonic() - started
        figure("faults.leaked_threads.sigterm_exit_s", {"graceful_timeout_s": 3, "exit_after_s": round(took, 2)})
        assert 3 <= took < 3 + 10
        out = server.stdout()
        assert out.count("[a] a lk leaked ") == 5 and out.count("[b] b done line") == 1
        assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers)), "a worker outlived its master"


# ======================================================================================
# What no process can contain: the master replaces the worker
# ======================================================================================

def test_os_exit_segfault_and_a_gil_holding_c_call_cost_one_worker_which_the_master_replaces(tmp_path_factory):
    """Each takes the whole worker down (its in-flight requests of every app
    with it); the master starts another. Measured: from the fault to the
    first right answer of another app from the new worker. A busy loop in
    Python, by contrast, is contained (and never stopped)."""
    apps = {"a": faults_app("a", "/a"), "b": faults_app("b", "/b")}
    timeout = 2
    with module_server(tmp_path_factory, "uncontained", apps, {"threads": 8, "timeout": timeout}) as server:
        # First, what is contained: a busy loop in Python outlasting the
        # timeout keeps one thread and a share of the GIL; the worker's main
        # thread still reports to the master, so nothing stops the loop, and
        # the other apps are served meanwhile.
        pid = worker_pid(server, "/b/x")
        with Checker(server, {"/b/x": is_app("b", "/b")}) as alone:
            time.sleep(1.0)
        with Checker(server, {"/b/x": is_app("b", "/b")}) as during:
            r = requests.get(f"{server.url}/a/spin?seconds={timeout + 1}", timeout=timeout * 10)
        assert r.status_code == 200 and r.json()["pid"] == pid == worker_pid(server, "/b/x")
        assert alone.wrong == during.wrong == [] and during.ok > 0
        figure("uncontained.python_busy_loop", {
            "seconds": timeout + 1, "timeout_s": timeout, "worker_replaced": False,
            "others_alone": {"n": alone.ok, "p50_ms": ms(percentile(alone.latencies, 50)),
                             "p99_ms": ms(percentile(alone.latencies, 99))},
            "others_during": {"n": during.ok, "p50_ms": ms(percentile(during.latencies, 50)),
                              "p99_ms": ms(percentile(during.latencies, 99))}})
        gaps = {}
        for fault in ["os-exit", "segfault", "hold-gil"]:
            for i in range(10):  # completed requests of another app: their lines must survive
                assert requests.get(f"{server.url}/b/x?print=1&tag={fault}-before-{i}", timeout=30).ok
            pid = worker_pid(server, "/b/x")
            started = time.monotonic()
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{server.url}/a/{fault}?tag={fault}", timeout=timeout * 10)

            def back() -> bool:
                try:
                    r = requests.get(f"{server.url}/b/x", timeout=timeout * 10)
                except requests.ConnectionError:
                    return False
                return r.status_code == 200 and r.json()["id"] == "b" and r.json()["pid"] != pid

            assert wait_for(back, timeout=timeout * 10, interval=0.01), f"no new worker after {fault}"
            gaps[fault] = round(time.monotonic() - started, 2)
            assert server.proc.poll() is None
        figure("uncontained.gap_s", {**gaps, "timeout_s": timeout})
        err = server.stderr()
        assert "WORKER TIMEOUT" in err and "SIGKILL" in err
        assert gaps["hold-gil"] >= timeout
        # With PYTHONUNBUFFERED=1, as here and in the image: a block-buffered
        # stdout would lose the crashed worker's unwritten buffer.
        server.stop()
        out = server.stdout()
        for fault in ["os-exit", "segfault", "hold-gil"]:
            assert all(out.count(f"[b] b {fault}-before-{i} line\n") == 1 for i in range(10)), fault


# ======================================================================================
# Secrets
# ======================================================================================

def test_an_apps_environ_values_appear_nowhere_but_in_that_app(tmp_path_factory):
    secret = f"s3cret-{os.getpid()}-{time.monotonic_ns()}"
    other = f"0ther-{time.monotonic_ns()}"
    apps = {
        "a": probe_app("a", "/a", environ={"SECRET": secret, "A_TOKEN": other}),
        "b": probe_app("b", "/b"),
        "fa": faults_app("fa", "/fa", environ={"SECRET": secret}),
        "limited": probe_app("limited", "/limited", max_concurrency=1, environ={"SECRET": secret}),
        "broken": {"app": "no_such_module:application", "mount": "/broken",
                   "environ": {"SECRET": secret}},
    }
    directory = tmp_path_factory.mktemp("secrets")
    access_log = directory / "access.log"
    config = write_config(directory, apps, {"threads": 8, "access_log": str(access_log)})
    server = start_server(serve_command(config), directory)
    seen: dict[str, str] = {}
    try:
        def get(path: str, **kwargs: Any) -> requests.Response:
            r = requests.get(server.url + path, timeout=30, **kwargs)
            seen[path] = f"{r.status_code} {r.headers} {r.text}"
            return r

        # The app itself has it (the test would prove nothing otherwise) ...
        assert get("/a/whoami").json()["secret"] == secret
        assert get("/a/getenv?names=A_TOKEN").json() == {"A_TOKEN": other}
        # ... another app's view does not, nor the children it starts ...
        assert get("/b/whoami").json()["secret"] is None
        assert "SECRET" not in get("/b/env-keys").json()["keys"]
        assert get("/b/getenv?names=SECRET,A_TOKEN").json() == {"SECRET": None, "A_TOKEN": None}
        assert get("/b/child").json() == {"APP_ID": "b", "SECRET": "None"}
        # ... nor the real process environment (as the app reads it, and as /proc has it) ...
        get("/a/proc-environ")
        get("/b/proc-environ")
        master = server.proc.pid
        real = {pid: Path(f"/proc/{pid}/environ").read_bytes() for pid in [master, *children(master)]}
        # ... nor error pages: 500 (ctxserve's and gunicorn's), 503 (failed app, full app), 404.
        assert get("/a/boom").status_code == 500
        assert get("/fa/raise-iter").status_code == 500
        assert get("/broken/").status_code == 503
        # The one slot of "limited" held by a request sent on a raw socket (no
        # client thread in this process to schedule), then a request refused.
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as busy:
            busy.sendall(b"GET /limited/pid?sleep=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert wait_for(lambda: get("/limited/whoami").status_code == 503, timeout=20)
            assert busy.recv(12) == b"HTTP/1.1 200"
        assert get("/nowhere").status_code == 404
    finally:
        server.stop()
    check = subprocess.run([sys.executable, "-m", "ctxserve", "check", str(config)],
                           capture_output=True, text=True, timeout=120, cwd=directory)
    assert check.returncode == 1  # broken does not load
    public = {
        **{f"response {path}": text for path, text in seen.items()
           if not path.startswith(("/a/whoami", "/a/getenv"))},
        **{f"/proc/{pid}/environ": raw.decode(errors="replace") for pid, raw in real.items()},
        "startup table and server stdout": server.stdout(),
        "server stderr": server.stderr(),
        "access log": access_log.read_text(),
        "ctxserve check": check.stdout + check.stderr,
    }
    assert "NAME" in public["startup table and server stdout"] and "/a/boom" in public["access log"]
    for where, text in public.items():
        assert secret not in text and other not in text, where
    figure("secrets.places_checked", sorted(public))


# ======================================================================================
# Bad input: the config through the CLI
# ======================================================================================

def toml_document(server: dict[str, Any], apps: dict[str, dict[str, Any]]) -> str:
    lines = ["[server]", *(f"{k} = {toml_value(v)}" for k, v in server.items())]
    for name, table in apps.items():
        lines += [f"[apps.{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


KEY_VALUES = st.one_of(
    st.integers(-3, 3), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), st.lists(st.integers(-1, 2), max_size=2),
    st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=4),
                    st.integers(), max_size=2),
)
KEYS = st.sampled_from([
    ("server", "threads"), ("server", "workers"), ("server", "bind"), ("server", "worker_class"),
    ("server", "timeout"), ("server", "access_log"), ("app", "mount"), ("app", "stdout"),
    ("app", "environ"), ("app", "max_concurrency"), ("app", "queue_timeout"), ("app", "decimal"),
    ("app", "argv"), ("app", "host"), ("app", "inherit_environ"),
])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=KEYS, value=KEY_VALUES)
def test_a_bad_value_through_the_cli_is_one_line_naming_the_key_and_exit_2(tmp_path, key, value):
    section, name = key
    server = {name: value} if section == "server" else {}
    app = {**faults_app("blog", "/"), **({name: value} if section == "app" else {})}
    config = tmp_path / "ctxserve.toml"
    config.write_text(toml_document(server, {"blog": app}))
    result = subprocess.run([sys.executable, "-m", "ctxserve", "check", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    if result.returncode == 2:
        key_path = f"server.{name}" if section == "server" else f"apps.blog.{name}"
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"ctxserve: {config}: {key_path}"), result.stderr
    else:  # the value happened to be a valid one
        assert result.returncode == 0, result.stderr
