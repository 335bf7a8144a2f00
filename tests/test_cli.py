"""The command line (``ctxserve --version | check | serve``) and the gunicorn entry points.

Every command runs as a real subprocess, the way users run it; servers
listen on 127.0.0.1 with an ephemeral port and are stopped by the fixtures.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

import ctxserve
from support import probe_app, wait_for

SECRET = "hunter2-do-not-print-me"


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m ctxserve ARGS`` to completion (bounded), output captured."""
    runtime = cwd / "run"  # gunicorn's control socket, if one is started: never shared
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "ctxserve", *args], cwd=cwd, timeout=timeout,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The app table as ``{name: [route, app, status]}``; asserts the header is there."""
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:4] == ["NAME", "ROUTE", "APP", "STATUS"])
    rows = {}
    for line in lines[header + 1:]:
        name, route, app, status = re.split(r"\s{2,}", line.strip(), maxsplit=3)
        rows[name] = [route, app, status]
    return rows


@pytest.fixture
def marker_app(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """An app table whose import leaves a file behind: ``(table, marker path)``."""
    directory = tmp_path / "marker"
    directory.mkdir()
    (directory / "marker_app.py").write_text(
        "import pathlib\n"
        "pathlib.Path(__file__).with_name('imported').write_text('yes')\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'marker']\n")
    table = {"app": "marker_app:application", "mount": "/marker", "path": [str(directory)]}
    return table, directory / "imported"


@pytest.fixture
def good_config(make_config, marker_app) -> Path:
    return make_config({
        "blog": probe_app("blog", "/blog", environ={"SECRET": SECRET}),
        "shop": probe_app("shop", "/", host="shop.example.com"),
        "marker": marker_app[0],
    })


@pytest.fixture
def bad_config(make_config, marker_app) -> Path:
    """A config with an app that would load, and one bad value."""
    return make_config({
        "marker": marker_app[0],
        "blog": probe_app("blog", "/blog", decimal={"prec": "six"}),
    })


BAD_VALUE_MESSAGE = 'apps.blog.decimal.prec: expected an integer >= 1, got "six"'


# -- --version -------------------------------------------------------------------------------

def test_version_prints_the_package_version(tmp_path):
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"ctxserve {ctxserve.__version__}"


def test_console_script_prints_the_version(tmp_path):
    script = shutil.which("ctxserve", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("no ctxserve console script next to this Python")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, f"ctxserve {ctxserve.__version__}")


def test_no_command_is_a_usage_error(tmp_path):
    result = run(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: ctxserve" in result.stderr


# -- check -------------------------------------------------------------------------------------

def test_check_exits_0_and_prints_the_table_when_every_app_loads(good_config, tmp_path, marker_app):
    result = run("check", str(good_config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert table_rows(result.stdout) == {
        "blog": ["/blog", "probe:application", "loaded"],
        "shop": ["shop.example.com", "probe:application", "loaded"],
        "marker": ["/marker", "marker_app:application", "loaded"],
    }
    assert marker_app[1].exists()  # check really imports the apps


def test_check_never_prints_environ_values(good_config, tmp_path):
    result = run("check", str(good_config), cwd=tmp_path)
    assert result.returncode == 0
    assert SECRET not in result.stdout + result.stderr


def test_check_reads_ctxserve_toml_in_the_working_directory_by_default(good_config, tmp_path):
    assert good_config == tmp_path / "ctxserve.toml"
    result = run("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(table_rows(result.stdout)) == {"blog", "shop", "marker"}


def test_check_exits_1_and_shows_the_app_that_failed(make_config, tmp_path):
    config = make_config({
        "blog": probe_app("blog", "/blog"),
        "gone": {"app": "no_such_module_for_ctxserve:application", "mount": "/gone"},
    })
    result = run("check", str(config), cwd=tmp_path)
    assert result.returncode == 1
    rows = table_rows(result.stdout)
    assert rows["blog"][2] == "loaded"
    assert rows["gone"][2].startswith("failed: ModuleNotFoundError")
    assert "no_such_module_for_ctxserve" in rows["gone"][2]
    assert "[gone] Traceback (most recent call last):" in result.stderr


def test_check_exits_2_for_a_bad_config_naming_file_and_key(bad_config, tmp_path, marker_app):
    result = run("check", str(bad_config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"ctxserve: {bad_config}: {BAD_VALUE_MESSAGE}"
    assert result.stdout == ""
    assert not marker_app[1].exists()  # no app was loaded


@pytest.mark.parametrize(("text", "expected"), [
    ('[apps.blog]\napp = "probe:application"\nmont = "/blog"\n', 'apps.blog.mont: unknown key; did you mean "mount"?'),
    ('[apps.blog]\napp = "probe:application"\nmount = "/blog"\n[server]\nworkers = 0\n', "server.workers"),
    ("[apps.blog\n", "invalid TOML"),
])
def test_check_exits_2_for_bad_configs(tmp_path, text, expected):
    config = tmp_path / "ctxserve.toml"
    config.write_text(text)
    result = run("check", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"ctxserve: {config}: ")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_check_exits_2_when_the_config_file_is_missing(tmp_path):
    result = run("check", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("ctxserve: ctxserve.toml: no such file")


# -- serve: refusing to start ---------------------------------------------------------------

def test_serve_with_a_bad_config_exits_2_and_starts_nothing(bad_config, tmp_path, marker_app):
    result = run("serve", str(bad_config), "--bind", "127.0.0.1:0", cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == f"ctxserve: {bad_config}: {BAD_VALUE_MESSAGE}"
    assert "gunicorn" not in result.stderr + result.stdout
    assert not marker_app[1].exists()


def test_serve_with_a_bad_command_line_value_exits_2(good_config, tmp_path, marker_app):
    result = run("serve", str(good_config), "--bind", "127.0.0.1:0", "--worker-class", "eventlet",
                 cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("ctxserve: --worker-class: expected one of")
    assert not marker_app[1].exists()


def test_serve_strict_refuses_to_start_when_an_app_fails(make_config, tmp_path):
    config = make_config({
        "blog": probe_app("blog", "/blog"),
        "gone": {"app": "no_such_module_for_ctxserve:application", "mount": "/gone"},
    }, server={"strict": True})
    result = run("serve", str(config), "--bind", "127.0.0.1:0", cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert "server.strict: every app must load; not starting" in result.stderr
    assert table_rows(result.stdout)["gone"][-1].startswith("failed: ModuleNotFoundError")
    assert "Listening at" not in result.stderr  # refused before anything was bound


# -- serve: running and stopping ------------------------------------------------------------

@pytest.mark.server
def test_serve_prints_the_app_table_and_serves(good_config, serve):
    server = serve(good_config)
    assert wait_for(lambda: "marker" in server.stdout())
    assert table_rows(server.stdout())["blog"] == ["/blog", "probe:application", "loaded"]
    assert SECRET not in server.stdout() + server.stderr()
    assert server.get("/blog/whoami").json()["id"] == "blog"
    assert server.get("/whoami", headers={"Host": "shop.example.com"}).json()["id"] == "shop"
    assert server.get("/marker/").text == "marker"


@pytest.mark.server
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_cleanly_on_signal(good_config, serve, sig):
    server = serve(good_config)
    worker = server.get("/blog/pid").json()["pid"]
    started = time.monotonic()
    assert server.stop(sig) == 0
    assert time.monotonic() - started < 10
    assert wait_for(lambda: not pid_exists(worker), timeout=5)
    assert "Traceback" not in server.stderr()


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.server
def test_serve_applies_workers_threads_and_worker_class_flags(good_config, serve):
    server = serve(good_config, "--workers", "2", "--threads", "4", "--worker-class", "gthread")
    first = server.get("/blog/pid").json()
    assert (first["multithread"], first["multiprocess"]) == (True, True)
    booted = wait_for(lambda: set(re.findall(r"Booting worker with pid: (\d+)", server.stderr()))
                      if server.stderr().count("Booting worker") >= 2 else None)
    assert booted and len(booted) == 2
    threads: dict[int, set[int]] = {}

    def ask(i: int) -> dict[str, Any]:
        # a new connection each time: a kept-alive one would stay with one worker
        return requests.get(f"{server.url}/blog/pid?sleep=0.1", timeout=30,
                            headers={"Connection": "close"}).json()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(20):  # rounds of 8 concurrent requests, until both workers answered
            for answer in pool.map(ask, range(8)):
                threads.setdefault(answer["pid"], set()).add(answer["thread"])
            if len(threads) == 2 and any(len(seen) > 1 for seen in threads.values()):
                break
    assert {str(pid) for pid in threads} == booted
    assert any(len(seen) > 1 for seen in threads.values())  # more than one thread per worker
    assert all(len(seen) <= 4 for seen in threads.values())


@pytest.mark.server
def test_serve_with_the_sync_worker_serves(good_config, serve):
    server = serve(good_config, "--worker-class", "sync")
    assert server.get("/blog/pid").json()["multithread"] is False
    assert server.get("/blog/whoami").json()["id"] == "blog"
    assert server.get("/blog/stream?tag=s").text == "blog 0\nblog 1\nblog 2\n"
    assert wait_for(lambda: "[blog] blog s close" in server.stdout())


# -- plain gunicorn entry points ----------------------------------------------------------------

def gunicorn(*args: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", *args, "-b", "127.0.0.1:0"]


def assert_serves_both_apps(server) -> None:
    assert server.get("/blog/whoami").json()["id"] == "blog"
    assert server.get("/whoami", headers={"Host": "shop.example.com"}).json()["id"] == "shop"


@pytest.mark.server
def test_gunicorn_wsgi_entry_point_reads_ctxserve_config(good_config, serve, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = serve(good_config, command=gunicorn("ctxserve.wsgi:application"),
                   env={"CTXSERVE_CONFIG": str(good_config)}, cwd=elsewhere)
    assert_serves_both_apps(server)


@pytest.mark.server
def test_gunicorn_wsgi_entry_point_defaults_to_ctxserve_toml_in_the_working_directory(
        good_config, serve, tmp_path, monkeypatch):
    monkeypatch.delenv("CTXSERVE_CONFIG", raising=False)
    assert good_config == tmp_path / "ctxserve.toml"
    server = serve(good_config, command=gunicorn("ctxserve.wsgi:application"), cwd=tmp_path)
    assert_serves_both_apps(server)


@pytest.mark.server
def test_gunicorn_from_config_factory_entry_point(good_config, serve, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = serve(good_config, command=gunicorn(f'ctxserve:from_config("{good_config}")'),
                   cwd=elsewhere)
    assert_serves_both_apps(server)


@pytest.mark.server
def test_gunicorn_entry_point_with_the_sync_worker(good_config, serve):
    server = serve(good_config, command=gunicorn("-k", "sync", f'ctxserve:from_config("{good_config}")'))
    assert server.get("/blog/pid").json()["multithread"] is False
    assert_serves_both_apps(server)


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ("nowhere", "ctxserve: --admin: expected an address"),
        ("fd://3", "an inherited descriptor has no address to connect to"),
        ("unix:/nonexistent/admin.sock", "cannot reach the admin listener at unix:/nonexistent/admin.sock"),
        ("127.0.0.1:0", "the admin port is chosen when the server starts"),
        # A wildcard address is asked on the loopback interface of its family.
        ("0.0.0.0:1", "cannot reach the admin listener at 127.0.0.1:1"),
        ("[::]:1", "cannot reach the admin listener at [::1]:1"),
    ],
)
def test_reload_reads_the_admin_address_with_the_config_parser(good_config, tmp_path, admin, message):
    done = run("reload", str(good_config), "x", "--admin", admin, "--timeout", "5", cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
