"""Per-app reload in process: ``ctxserve reload CONFIG NAME`` against a real server.

Two workers; the reloaded app's module says which version it is, a second
app is served throughout. Every server is stopped, every loop bounded.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from support import hammer

pytestmark = pytest.mark.server

APP = '''\
import os, sys, time
import version

def application(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(1.5)
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    body = f"{version.VERSION} {os.getpid()} {len(sys.modules)} {rss}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
'''


@pytest.fixture
def site(tmp_path: Path, make_config):
    """A config with app ``v`` (version.py says which version) and app ``other``."""
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vapp.py").write_text(APP)
    (tmp_path / "v" / "version.py").write_text('VERSION = "v1"\n')
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "other_app.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'other']\n")
    config = make_config(
        server={"workers": 2, "threads": 4, "admin": "127.0.0.1:0"},
        apps={"v": {"app": "vapp:application", "mount": "/v", "path": [str(tmp_path / "v")]},
              "other": {"app": "other_app:application", "mount": "/other",
                        "path": [str(tmp_path / "other")]}})
    return config, tmp_path / "v" / "version.py"


def reload(config: Path, server, *names: str) -> subprocess.CompletedProcess[str]:
    admin = server.admin_url.removeprefix("http://")
    return subprocess.run([sys.executable, "-m", "ctxserve", "reload", str(config), *names,
                           "--admin", admin], capture_output=True, text=True, timeout=120)


def answers(server, n: int = 24) -> list[list[str]]:
    """*n* answers of app v, each on a new connection (so both workers answer)."""
    return [requests.get(server.url + "/v/", headers={"Connection": "close"}, timeout=30).text.split()
            for _ in range(n)]


def both_workers(server) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        seen |= {answer[1] for answer in answers(server, 8)}
    assert len(seen) == 2, "expected two workers to answer"
    return seen


def test_reload_switches_every_worker_to_the_new_version_without_restarting_them(site, serve, engine):
    config, version = site
    server = serve(config)
    pids = both_workers(server)
    version.write_text('VERSION = "v2"\n')
    done = reload(config, server, "v")
    assert done.returncode == 0, done.stderr
    assert "v: reloaded in 2 worker(s)" in done.stdout
    after = answers(server)
    assert {answer[0] for answer in after} == {"v2"}
    assert {answer[1] for answer in after} <= pids
    assert both_workers(server) == pids


def test_a_version_that_fails_to_import_leaves_the_old_one_serving_everywhere(site, serve, engine):
    config, version = site
    server = serve(config)
    both_workers(server)
    version.write_text("VERSION = \n")
    done = reload(config, server, "v")
    assert done.returncode == 1
    assert "SyntaxError" in done.stderr and "old version keeps serving" in done.stderr
    assert {answer[0] for answer in answers(server)} == {"v1"}


def test_reload_of_an_unknown_app_or_without_an_admin_listener_exits_2(site, serve, make_config, engine):
    config, _ = site
    server = serve(config)
    done = reload(config, server, "nope")
    assert done.returncode == 2 and "no app named nope" in done.stderr
    no_admin = make_config(apps={"x": {"app": "m:app", "mount": "/"}}, name="plain.toml")
    done = subprocess.run([sys.executable, "-m", "ctxserve", "reload", str(no_admin), "x"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "server.admin" in done.stderr


def test_a_request_in_flight_finishes_on_the_old_version(site, serve, engine):
    config, version = site
    server = serve(config)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(lambda: requests.get(server.url + "/v/slow", timeout=30).text.split()[0])
        time.sleep(0.3)
        version.write_text('VERSION = "v2"\n')
        assert reload(config, server, "v").returncode == 0
        assert slow.result(timeout=30) == "v1"
    assert {answer[0] for answer in answers(server, 8)} == {"v2"}


def test_other_app_is_served_without_a_failure_through_several_reloads(site, serve, engine):
    config, version = site
    server = serve(config)
    stop = threading.Event()
    failures: list[str] = []

    def other(session, t, i):
        if stop.is_set():
            return
        response = session.get(server.url + "/other/", timeout=30)
        if response.status_code != 200 or response.text != "other":
            failures.append(f"{response.status_code} {response.text[:80]}")

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        load = pool.submit(hammer, other, threads=4, per_thread=400, timeout=120)
        for n in range(2, 7):
            version.write_text(f'VERSION = "v{n}"\n')
            done = reload(config, server, "v")
            assert done.returncode == 0, done.stderr
            assert {answer[0] for answer in answers(server, 6)} == {f"v{n}"}
        stop.set()
        made = load.result(timeout=150)
    assert failures == []
    assert made > 0


def test_fifty_reloads_do_not_grow_sys_modules_and_rss_stays_bounded(site, serve, record_property):
    config, version = site
    server = serve(config)
    before = answers(server, 8)
    for n in range(50):
        version.write_text(f'VERSION = "r{n}"\n')
        assert reload(config, server, "v").returncode == 0
    after = answers(server, 8)
    modules_before = {int(a[2]) for a in before}
    modules_after = {int(a[2]) for a in after}
    rss_growth_kib = max(int(a[3]) for a in after) - max(int(a[3]) for a in before)
    record_property("rss_growth_kib_over_50_reloads", rss_growth_kib)
    print(f"sys.modules {sorted(modules_before)} -> {sorted(modules_after)}; "
          f"RSS growth over 50 reloads: {rss_growth_kib} KiB")
    assert {a[0] for a in after} == {"r49"}
    assert max(modules_after) <= max(modules_before)
    assert rss_growth_kib < 16 * 1024  # 16 MiB: a leak of the old versions would exceed it


def test_a_replaced_version_and_its_private_modules_are_released(site, tmp_path):
    import gc
    import weakref

    from ctxserve import config as ctxconfig
    from ctxserve.reload import Reloader
    from ctxserve.server import build

    config, version = site
    reloads = 3
    dispatcher = build(ctxconfig.load(config))
    reloader = Reloader(dispatcher, config, directory=tmp_path)
    old = weakref.ref(dispatcher.apps[0].binding.modules.modules["version"])
    for n in range(reloads):
        version.write_text(f'VERSION = "x{n}"\n')
        assert reloader._prepare(f"r{n}", ["v"]) == (True, "")
        reloader._commit(f"r{n}")
    gc.collect()
    assert old() is None
    assert dispatcher.apps[0].binding.modules.modules["version"].VERSION == f"x{reloads - 1}"
