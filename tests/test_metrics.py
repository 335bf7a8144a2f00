"""Metrics of the admin listener: exact counts summed over workers, durations, in flight, restarts.

Servers are real ``ctxserve serve`` processes (ephemeral ports for the
public and the admin address); ``/metrics`` is parsed with
prometheus-client's own parser.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from support import Server, hammer, probe_app, wait_for
from ctxserve.config import parse
from ctxserve.metrics import quantile
from ctxserve.server import application

ADMIN = {"admin": "127.0.0.1:0"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: Server) -> Samples:
    answer = server.session.get(server.admin_url + "/metrics", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def requests_by_app_code(samples: Samples) -> dict[tuple[str, str], int]:
    return {(dict(labels)["app"], dict(labels)["code"]): int(value)
            for (name, labels), value in samples.items() if name == "ctxserve_requests_total" and value}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def find_workers(server: Server, want: int, timeout: float = 20) -> tuple[set[int], int]:
    """Ask /a/pid on new connections until *want* different workers answered (bounded).

    Returns the pids and the number of requests that took.
    """
    seen: set[int] = set()
    made = 0

    def more() -> bool:
        nonlocal made
        answer = requests.get(server.url + "/a/pid", headers={"Connection": "close"}, timeout=10)
        made += 1
        assert answer.status_code == 200
        seen.add(answer.json()["pid"])
        return len(seen) >= want

    wait_for(more, timeout=timeout, interval=0.01)
    return seen, made


# -- in process --------------------------------------------------------------------------

def test_quantile_from_cumulative_buckets() -> None:
    inf = float("inf")
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(0.1, 0), (inf, 0)]) is None
    assert quantile(0.5, [(0.1, 10), (0.2, 20), (inf, 20)]) == pytest.approx(0.1)
    assert quantile(0.75, [(0.1, 10), (0.2, 20), (inf, 20)]) == pytest.approx(0.15)
    assert quantile(0.99, [(0.1, 0), (0.2, 1), (inf, 100)]) == 0.2  # in +Inf: the last finite bound


def test_other_servers_start_response_is_wrapped_and_counted(tmp_path: Path) -> None:
    """Under a server other than gunicorn the status comes from a wrapped start_response."""
    apps = {"inproc_a": probe_app("inproc_a", "/a"), "inproc_b": probe_app("inproc_b", "/b"),
            "inproc_gone": {"app": "no_such_module_anywhere:application", "mount": "/gone"}}
    front = application(parse({"server": ADMIN, "apps": apps}, tmp_path / "ctxserve.toml"))
    client = Client(front)
    assert client.get("/a/whoami").status_code == 200
    assert client.get("/a/no-such-route").status_code == 404  # the app's own 404: the app's request
    assert client.get("/gone/").status_code == 503
    assert client.get("/nope").status_code == 404  # no app's
    response = client.get("/b/stream")  # counted when the response is closed
    assert response.get_data() == b"inproc_b 0\ninproc_b 1\ninproc_b 2\n"
    response.close()
    summary = front.metrics.summary()
    assert (summary["inproc_a"]["requests"], summary["inproc_a"]["errors"]) == (2, 0)
    assert (summary["inproc_b"]["requests"], summary["inproc_b"]["errors"]) == (1, 0)
    assert (summary["inproc_gone"]["requests"], summary["inproc_gone"]["errors"]) == (1, 1)
    assert summary["inproc_gone"]["up"] == 0 and summary["inproc_a"]["up"] == 1
    assert summary["inproc_a"]["in_flight"] == summary["inproc_b"]["in_flight"] == 0


# -- real servers ------------------------------------------------------------------------

@pytest.mark.server
def test_counts_are_exact_over_two_workers_under_concurrent_load(serve, make_config, engine) -> None:
    apps = {"a": probe_app("a", "/a"), "b": probe_app("b", "/b"),
            "c": probe_app("c", "/c", max_concurrency=1, queue_timeout=0)}
    server = serve(make_config(apps, {**ADMIN, "workers": 2, "threads": 4}))
    observed: collections.Counter[tuple[str, str]] = collections.Counter()
    lock = threading.Lock()

    # Both workers answer (and count) before the load: the sums must cover both.
    pids, warm_up = find_workers(server, 2)
    assert len(pids) == 2
    observed["a", "200"] += warm_up

    def request(session: requests.Session, t: int, i: int) -> None:
        kind = (t + i) % 10
        path = {0: "/a/boom", 1: "/nope", 2: "/b/whoami", 3: "/b/whoami?sleep=0.01",
                4: "/c/whoami?sleep=0.05"}.get(kind, "/a/whoami")
        answer = session.get(server.url + path, timeout=30)
        if kind == 1:
            assert answer.status_code == 404
            return
        with lock:
            observed[path[1], str(answer.status_code)] += 1

    assert hammer(request, threads=8, per_thread=40, timeout=60) == 320
    assert observed["a", "500"] == 32 and observed["c", "503"] > 0, observed  # some bulkhead 503s
    expected = dict(observed)

    # Each worker folds its counts every 0.5 s: wait (bounded) until they are all in.
    assert wait_for(lambda: requests_by_app_code(scrape(server)) == expected, timeout=10), \
        (requests_by_app_code(scrape(server)), expected)
    samples = scrape(server)
    assert {dict(labels)["app"] for (_, labels) in samples} == {"a", "b", "c"}  # 404s and /metrics: nobody's
    for app in ("a", "b", "c"):
        total = sum(n for (name, _), n in expected.items() if name == app)
        assert value(samples, "ctxserve_request_duration_seconds_count", app=app) == total
        assert value(samples, "ctxserve_request_duration_seconds_bucket", app=app, le="+Inf") == total
        assert value(samples, "ctxserve_requests_in_flight", app=app) == 0
        assert value(samples, "ctxserve_app_up", app=app) == 1
    # /c sleeps 50 ms when it has the slot; the 503s answer at once.
    assert value(samples, "ctxserve_request_duration_seconds_sum", app="c") >= 0.05 * expected["c", "200"]


@pytest.mark.server
def test_a_restarted_worker_loses_nothing_and_its_live_gauges_go(serve, make_config, tmp_path: Path, engine) -> None:
    metrics_dir = tmp_path / "prom"
    server = serve(make_config({"a": probe_app("a", "/a")}, {**ADMIN, "workers": 2}),
                   env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    pids, made = find_workers(server, 2)
    victim = min(pids)
    for _ in range(20):  # some of them still unfolded in the victim when it stops
        assert server.get("/a/whoami").status_code == 200
    made += 20
    os.kill(victim, signal.SIGTERM)  # graceful: gunicorn starts another worker
    # A worker told to stop may still take a connection or two before it
    # notices; ask for the two workers once it is gone.
    assert wait_for(lambda: not Path(f"/proc/{victim}").exists(), timeout=30)
    new_pids, more = find_workers(server, 2)
    made += more
    assert victim not in new_pids
    assert wait_for(lambda: requests_by_app_code(scrape(server)) == {("a", "200"): made}, timeout=10), \
        (requests_by_app_code(scrape(server)), made)
    samples = scrape(server)
    assert value(samples, "ctxserve_app_up", app="a") == 1
    assert value(samples, "ctxserve_requests_in_flight", app="a") == 0
    # The user's directory is used, and the dead worker's live gauges are gone from it.
    names = {path.name for path in metrics_dir.iterdir()}
    assert f"counter_{victim}.db" in names
    assert not [name for name in names if name.startswith("gauge_live") and name.endswith(f"_{victim}.db")]
    server.stop()
    assert metrics_dir.is_dir()  # the user's own directory is not removed


@pytest.mark.server
def test_durations_in_flight_and_the_temporary_directory(serve, make_config, tmp_path: Path, engine) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    env_without = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    server = serve(make_config({"a": probe_app("a", "/a")}, ADMIN), env={**env_without, **env})
    made = sorted(path.name for path in tmp.iterdir())  # metrics, and per-app reload's run directory
    assert len(made) == 2 and made[0].startswith("ctxserve-metrics-") and made[1].startswith("ctxserve-run-")

    slow = threading.Thread(target=lambda: server.session.get(server.url + "/a/pid?sleep=1.2", timeout=30))
    slow.start()
    try:
        assert wait_for(lambda: value(scrape(server), "ctxserve_requests_in_flight", app="a") == 1, timeout=5)
    finally:
        slow.join(30)
    answer = requests.get(server.url + "/a/stream", timeout=10)
    assert answer.text == "a 0\na 1\na 2\n"

    def done() -> Samples | None:
        samples = scrape(server)
        return samples if requests_by_app_code(samples) == {("a", "200"): 2} else None

    samples = wait_for(done, timeout=10)
    assert samples
    assert value(samples, "ctxserve_requests_in_flight", app="a") == 0
    assert value(samples, "ctxserve_request_duration_seconds_bucket", app="a", le="1.0") == 1  # the stream
    assert value(samples, "ctxserve_request_duration_seconds_bucket", app="a", le="2.5") == 2
    assert value(samples, "ctxserve_request_duration_seconds_sum", app="a") >= 1.2
    server.stop()
    assert not list(tmp.iterdir()), "the temporary directories are removed at exit"


def test_a_replaced_app_counts_on_in_the_same_meter(tmp_path: Path) -> None:
    """The seam for per-app reload: the router's new table meters the new App under the same name."""
    from ctxserve.apps import App

    apps = {"swap_a": probe_app("swap_a", "/a"), "swap_b": probe_app("swap_b", "/b")}
    config = parse({"server": ADMIN, "apps": apps}, tmp_path / "ctxserve.toml")
    front = application(config)
    client = Client(front)
    assert client.get("/a/whoami").status_code == 200
    old_a, b = front.apps
    new_a = App(config.apps[0])
    new_a.load()
    front.public.set_apps([new_a, b])
    assert front.apps == (new_a, b) and len(front.metrics.meters) == 2
    assert client.get("/a/whoami").status_code == 200
    assert client.get("/b/whoami").status_code == 200
    summary = front.metrics.summary()
    assert summary["swap_a"]["requests"] == 2 and summary["swap_b"]["requests"] == 1
