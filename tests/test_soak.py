"""Soak: many requests across 4 apps under gthread, every response probed for cross-app leaks.

Each answer of the probe's ``/whoami`` is checked against its app's own
config: environ (``APP_ID`` through ``os.environ`` and ``os.getenv``, its
``SECRET``), ``sys.argv``, decimal context (precision and the digits of
1/7), module identity (``probe`` as the app's namespace resolves it while
the request runs) and the routing; every request prints one line, which
must come out once, under its own app's prefix. The worker's RSS is
recorded at the start and at the end.

The short run (4,000 requests) is part of the normal suite; the long one
(100,000) runs with ``CTXSERVE_SOAK=1`` (``pytest -m soak``), takes minutes,
and is where docs/reliability.md's soak figures come from.
"""

from __future__ import annotations

import decimal
import os
import re
import threading
import time
from collections import Counter

import pytest
import requests

from support import Server, probe_app
from reliability_helpers import figure, memory_kb, module_server

APPS = {name: prec for name, prec in zip("abcd", (5, 6, 7, 8))}
CLIENTS = 8


def expected(app: str) -> dict:
    return {"id": app, "getenv": app, "secret": f"secret-of-{app}", "argv": [app],
            "prec": APPS[app], "seventh": str(decimal.Context(prec=APPS[app]).divide(1, decimal.Decimal(7))),
            "module": app, "script_name": f"/{app}", "path_info": "/whoami"}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    apps = {name: probe_app(name, f"/{name}", environ={"SECRET": f"secret-of-{name}"},
                            decimal={"prec": prec}) for name, prec in APPS.items()}
    with module_server(tmp_path_factory, "soak", apps, {"threads": 8, "worker_class": "gthread"}) as started:
        yield started


def soak(server: Server, total: int, limit: float) -> dict:
    per_client = total // CLIENTS
    leaks: list[str] = []
    done = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + limit

    def client(c: int) -> None:
        with requests.Session() as s:
            for i in range(per_client):
                if time.monotonic() > deadline:
                    return
                app = "abcd"[(c + i) % 4]
                tag = f"k{c}n{i}"
                r = s.get(f"{server.url}/{app}/whoami?print=1&tag={tag}", timeout=30)
                data = r.json() if r.status_code == 200 else {}
                want = {**expected(app), "tag": tag}
                wrong = {k: data.get(k) for k in want if data.get(k) != want[k]}
                with lock:
                    done[app] += 1
                    if r.status_code != 200 or wrong:
                        leaks.append(f"{app} {tag}: {r.status_code} {wrong}")

    pid = int(requests.get(f"{server.url}/a/pid", timeout=30).json()["pid"])
    for app in APPS:  # warm-up: first-use allocations are not growth
        requests.get(f"{server.url}/{app}/whoami?print=1&tag=warm", timeout=30)
    start_rss = memory_kb(pid)
    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(limit + 60)
    took = time.monotonic() - started
    end_rss = memory_kb(pid)
    assert int(requests.get(f"{server.url}/a/pid", timeout=30).json()["pid"]) == pid, "the worker was replaced"
    made = sum(done.values())
    assert made == per_client * CLIENTS, f"only {made} requests in {limit} s"

    # Every line once, under its own app's prefix, and nothing else from the apps.
    lines = re.findall(r"^\[(\w)\] (\w) (k\d+n\d+) whoami$", server.stdout(), re.M)
    crossed = [line for line in lines if line[0] != line[1]]
    counts = Counter((app, tag) for app, _, tag in lines)
    wanted = {("abcd"[(c + i) % 4], f"k{c}n{i}") for c in range(CLIENTS) for i in range(per_client)}
    missing = wanted - set(counts)
    twice = [key for key, n in counts.items() if n != 1]
    return {"requests": made, "seconds": round(took, 1), "per_second": round(made / took),
            "response_leaks": len(leaks), "line_leaks": len(crossed), "lines_missing": len(missing),
            "lines_not_once": len(twice), "rss_start_kb": start_rss["VmRSS"], "rss_end_kb": end_rss["VmRSS"],
            "peak_rss_end_kb": end_rss["VmHWM"], "examples": leaks[:3] + crossed[:3]}


def test_soak_short_4000_requests_across_4_apps_leak_nothing(server):
    found = soak(server, 4_000, limit=120)
    figure("soak.short", found)
    assert found["response_leaks"] == found["line_leaks"] == 0, found["examples"]
    assert found["lines_missing"] == found["lines_not_once"] == 0


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("CTXSERVE_SOAK") != "1", reason="100,000 requests (minutes): CTXSERVE_SOAK=1")
def test_soak_100000_requests_across_4_apps_leak_nothing(server):
    found = soak(server, 100_000, limit=1800)
    figure("soak.long", found)
    assert found["response_leaks"] == found["line_leaks"] == 0, found["examples"]
    assert found["lines_missing"] == found["lines_not_once"] == 0
