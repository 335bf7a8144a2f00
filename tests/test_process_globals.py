"""The process globals beyond environ and streams: per app, guarded, and shared threads.

Two apps load the same module (tests/apps/globals_probe): app "a" sets,
at import, random's seed, the root logger, an "error" warnings filter, a
default socket timeout, its excepthooks, a MIME type and an HTTPS context;
app "b" disables logging and sets its own tempfile directory. Under
concurrent load (gunicorn's gthread worker, and greenlets under gevent)
every answer must show the app's own values only. A shared library on the
process's path (tests/apps/shared_lib) starts one worker thread lazily and
is used by both apps with different secrets: no answer may hold the other
app's secret.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import TEST_APPS, Server, hammer, serve_command, start_server, toml_text, wait_for

pytestmark = pytest.mark.server

SECRETS = {"a": "a-secret-4c1e", "b": "b-secret-77d0"}
CLIENTS, PER_CLIENT = 8, 40


def app_table(app_id: str, tmp: Path, **extra: Any) -> dict[str, Any]:
    (tmp / f"tmp-{app_id}").mkdir(exist_ok=True)
    environ = {"APP_ID": app_id, "SECRET": SECRETS.get(app_id, "none"),
               "TMPDIR": str(tmp / f"tmp-{app_id}"), "B_TEMPDIR": str(tmp / "tmp-b-own")}
    (tmp / "tmp-b-own").mkdir(exist_ok=True)
    environ.update(extra.pop("environ", {}))
    return {"app": "gprobe:application", "mount": f"/{app_id}",
            "path": [str(TEST_APPS / "globals_probe")], "environ": environ, **extra}


def expected(app_id: str, tmp: Path) -> dict[str, Any]:
    if app_id == "a":
        return {"id": "a", "root_handlers": 1, "root_level": 20, "warning_enabled": True,
                "server_logger_enabled": True, "warned": "raised", "default_timeout": 7.0,
                "socket_timeout": 7.0, "sys_excepthook": "sys_hook_a",
                "threading_excepthook": "thread_hook_a", "tempdir": str(tmp / "tmp-a"),
                "mkstemp_dir": str(tmp / "tmp-a"), "mimetype": "application/x-only-a",
                "https_context": "_create_unverified_context"}
    return {"id": "b", "root_handlers": 0, "root_level": 30, "warning_enabled": False,
            "server_logger_enabled": True, "warned": "recorded", "default_timeout": None,
            "socket_timeout": None, "sys_excepthook": "excepthook", "threading_excepthook": "_excepthook",
            "tempdir": str(tmp / "tmp-b-own"), "mkstemp_dir": str(tmp / "tmp-b-own"), "mimetype": None,
            "https_context": "create_default_context"}


@pytest.fixture(scope="module", params=["gthread", "gevent"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    if request.param == "gevent":
        pytest.importorskip("gevent")
    tmp = tmp_path_factory.mktemp(f"globals-{request.param}")
    config = tmp / "ctxserve.toml"
    config.write_text(toml_text({"worker_class": request.param, "admin": "127.0.0.1:0"},
                                {"a": app_table("a", tmp), "b": app_table("b", tmp)}))
    # The shared library is on the process's path, not on either app's.
    env = {"PYTHONPATH": os.pathsep.join([str(TEST_APPS / "shared_lib"), os.environ.get("PYTHONPATH", "")])}
    started = start_server(serve_command(config), tmp, env=env)
    try:
        yield started, tmp
    finally:
        started.stop()


def test_each_app_sees_only_its_own_per_app_globals_under_concurrent_load(server) -> None:
    srv, tmp = server
    wanted = {app: expected(app, tmp) for app in "ab"}

    def request(session, t: int, i: int) -> None:
        app = "ab"[(t + i) % 2]
        answer = session.get(f"{srv.url}/{app}/seen", params={"tag": f"{t}x{i}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == wanted[app]

    assert hammer(request, threads=CLIENTS, per_thread=PER_CLIENT, timeout=120) == CLIENTS * PER_CLIENT
    # a's basicConfig format reaches a's records only; b's logging.disable silenced b only.
    a_lines = wait_for(lambda: [line for line in srv.stderr().splitlines() if "a logged" in line
                                ][CLIENTS * PER_CLIENT // 2 - 1:])
    assert a_lines
    err = srv.stderr()
    a_lines = [line for line in err.splitlines() if "a logged" in line]
    assert all(line.startswith("[a] A-FORMAT|shared.library|a logged") for line in a_lines), a_lines[:3]
    assert "b logged" not in err
    assert "A-FORMAT" not in err.replace("[a] A-FORMAT", "")


def test_random_seed_in_one_app_leaves_the_others_random(server) -> None:
    srv, _ = server
    reference = random.Random(42)
    seeded = [reference.random() for _ in range(3)]

    def request(session, t: int, i: int) -> None:
        if t == 0:  # one client draws from a after seeding it, while the others draw from b
            answer = session.get(f"{srv.url}/a/draws", params={"seed": "42", "sleep": "0.02"}, timeout=30).json()
            assert answer == {"id": "a", "draws": seeded}
        else:
            answer = session.get(f"{srv.url}/b/draws", params={"seed": str(1000 + 100 * t + i),
                                                               "sleep": "0"}, timeout=30).json()
            assert answer["id"] == "b" and answer["draws"] != seeded

    hammer(request, threads=4, per_thread=25, timeout=120)


def test_threading_excepthook_is_the_apps_own(server) -> None:
    srv, _ = server
    assert srv.get("/a/crash-thread", params={"tag": "t1"}).json() == {"id": "a", "hooked": ["thread:a-t1"]}
    assert srv.get("/b/crash-thread", params={"tag": "t2"}).json() == {"id": "b", "hooked": []}
    # b's default hook printed to b's own stderr; a's hook printed nothing
    assert wait_for(lambda: "[b] RuntimeError: b-t2" in srv.stderr())
    assert "a-t1" not in srv.stderr()


def test_a_shared_librarys_lazy_thread_never_carries_one_apps_secret_to_another(server) -> None:
    srv, _ = server
    seen: dict[str, set[Any]] = {"a": set(), "b": set()}

    def request(session, t: int, i: int) -> None:
        app = "ab"[(t + i) % 2]
        answer = session.get(f"{srv.url}/{app}/shared-worker", timeout=30).json()
        assert answer["id"] == app
        # The app's own thread carries its context; the library's thread carries none.
        assert answer["own_thread_secret"] == SECRETS[app]
        seen[app].add(answer["secret"])

    hammer(request, threads=CLIENTS, per_thread=20, timeout=120)
    assert seen == {"a": {None}, "b": {None}}


def test_an_apps_multiprocessing_thread_pool_runs_its_tasks_in_the_apps_context(server) -> None:
    srv, _ = server
    for app in "abab":
        assert srv.get(f"/{app}/thread-pool").json() == {"id": app, "secrets": [SECRETS[app]]}


def test_a_guarded_global_changed_in_a_request_is_reported_naming_the_app(server) -> None:
    srv, tmp = server
    assert srv.get("/b/chdir", params={"to": str(tmp / "tmp-a")}).status_code == 200
    status = srv.session.get(srv.admin_url + "/status", headers={"Accept": "application/json"}, timeout=30).json()
    by_name = {row["name"]: row for row in status["apps"]}
    assert "current directory" in by_name["b"]["globals"]
    assert by_name["a"]["globals"] == {}
    page = srv.session.get(srv.admin_url + "/status", timeout=30).text
    assert "current directory: os.chdir" in page
    assert wait_for(lambda: 'app "b" changed the process-wide current directory (os.chdir' in srv.stderr())


def test_guarded_globals_changed_in_requests_are_reported_naming_the_app(server) -> None:
    srv, _ = server
    assert srv.get("/a/change-several").json() == {"id": "a"}
    status = srv.session.get(srv.admin_url + "/status", headers={"Accept": "application/json"}, timeout=30).json()
    changed = {row["name"]: row["globals"] for row in status["apps"]}["a"]
    assert {"umask", "recursion limit", "C-level environment (os.putenv and os.unsetenv)"} <= set(changed)
    assert changed["umask"].startswith("os.umask: ")
    for name in ("umask", "recursion limit", "C-level environment"):
        assert wait_for(lambda: f'app "a" changed the process-wide {name}' in srv.stderr())


# -- guarded globals changed while an app loads: check, the start table, fail --

def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ctxserve", "check", str(config)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=config.parent)


def test_check_reports_a_guarded_global_changed_at_load_naming_the_app(tmp_path: Path) -> None:
    config = tmp_path / "ctxserve.toml"
    config.write_text(toml_text(None, {"a": app_table("a", tmp_path),
                                       "b": app_table("b", tmp_path, environ={"GUARD_AT_LOAD": "1"})}))
    result = run_check(config)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert rows["b"].endswith("loaded; changed process-wide: recursion limit")
    assert rows["a"].endswith("loaded")
    assert 'app "b" changed the process-wide recursion limit (sys.setrecursionlimit: ' in result.stderr


def test_check_names_every_guarded_global_an_app_changes_while_it_loads(tmp_path: Path) -> None:
    from ctxserve.guard import GUARDED

    config = tmp_path / "ctxserve.toml"
    config.write_text(toml_text(None, {"everything": {
        "app": "guardall:application", "mount": "/", "path": [str(TEST_APPS / "globals_probe")]}}))
    result = run_check(config)
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[1]
    assert "loaded; changed process-wide: " in row
    for guarded in GUARDED:
        assert guarded.name in row
        assert f'app "everything" changed the process-wide {guarded.name} (' in result.stderr


def test_globals_fail_fails_the_load_of_the_app_that_changes_one(tmp_path: Path) -> None:
    config = tmp_path / "ctxserve.toml"
    config.write_text(toml_text({"globals": "fail"}, {
        "a": app_table("a", tmp_path),
        "b": app_table("b", tmp_path, environ={"GUARD_AT_LOAD": "1"})}))
    result = run_check(config)
    assert result.returncode == 1
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert rows["a"].endswith("loaded")
    assert "failed: GuardedGlobalChanged: it changed the process-wide recursion limit" in rows["b"]
    assert 'apps.b.globals is "fail"' in rows["b"]
    # Per app, the key overrides the server's default.
    config.write_text(toml_text({"globals": "fail"}, {
        "a": app_table("a", tmp_path),
        "b": app_table("b", tmp_path, environ={"GUARD_AT_LOAD": "1"}, globals="warn")}))
    assert run_check(config).returncode == 0


def test_the_start_table_names_the_guarded_global_and_the_app(tmp_path: Path) -> None:
    config = tmp_path / "ctxserve.toml"
    config.write_text(toml_text(None, {"b": app_table("b", tmp_path, environ={"GUARD_AT_LOAD": "1"})}))
    srv = start_server(serve_command(config), tmp_path)
    try:
        assert srv.get("/b/seen").json()["id"] == "b"
    finally:
        srv.stop()
    assert "loaded; changed process-wide: recursion limit" in srv.stdout()
    assert json.dumps("b")[1:-1] in srv.stderr()


def test_the_globals_key_is_checked_and_defaults_to_the_servers() -> None:
    from ctxserve.config import ConfigError, parse

    app = {"app": "x:application", "mount": "/"}
    assert parse({"apps": {"a": app}}, "c.toml").apps[0].globals == "warn"
    assert parse({"server": {"globals": "fail"}, "apps": {"a": app}}, "c.toml").apps[0].globals == "fail"
    assert parse({"server": {"globals": "fail"}, "apps": {"a": {**app, "globals": "warn"}}},
                 "c.toml").apps[0].globals == "warn"
    with pytest.raises(ConfigError, match=r'c.toml: apps.a.globals: expected one of "warn", "fail", '
                                          r'got "fial"; did you mean "fail"\?'):
        parse({"apps": {"a": {**app, "globals": "fial"}}}, "c.toml")


def test_an_app_that_calls_mimetypes_init_first_in_the_process_loads(tmp_path: Path) -> None:
    """falcon.App() calls mimetypes.init(); in a fresh process nothing has before it."""
    (tmp_path / "mimeapp.py").write_text(
        "import mimetypes\nmimetypes.init()\nTYPE = mimetypes.guess_type('x.json')[0]\n\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n    return [TYPE.encode()]\n")
    config = tmp_path / "ctxserve.toml"
    config.write_text(toml_text(None, {"mime": {"app": "mimeapp:application", "mount": "/",
                                                "path": [str(tmp_path)]}}))
    check = subprocess.run([sys.executable, "-m", "ctxserve", "check", str(config)],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "RecursionError" not in check.stdout + check.stderr


# -- in one process: the logging caches and the server's loggers ----------------

def test_logging_levels_disable_and_caches_are_per_app_and_never_the_servers() -> None:
    import logging

    import ctxserve

    def noop(environ, start_response):  # pragma: no cover - never called
        return []

    one, two = ctxserve.wrap(noop, "log-one"), ctxserve.wrap(noop, "log-two")
    shared = logging.getLogger("tests.shared.cache")
    server = logging.getLogger("gunicorn.error")
    server_level = server.level
    try:
        server.setLevel(logging.INFO)
        assert not one.context.run(shared.isEnabledFor, logging.INFO)  # the app's root: WARNING
        one.context.run(logging.getLogger().setLevel, logging.DEBUG)
        assert one.context.run(shared.isEnabledFor, logging.INFO)
        assert not two.context.run(shared.isEnabledFor, logging.INFO)
        # A level set on the shared logger reaches every app's cache.
        shared.setLevel(logging.INFO)
        assert two.context.run(shared.isEnabledFor, logging.INFO)
        # logging.disable in one app: that app only; the server's loggers still speak in it.
        one.context.run(logging.disable, logging.CRITICAL)
        assert not one.context.run(shared.isEnabledFor, logging.ERROR)
        assert one.context.run(server.isEnabledFor, logging.INFO)
        assert two.context.run(shared.isEnabledFor, logging.ERROR)
        assert shared.isEnabledFor(logging.ERROR) and logging.root.manager.disable == 0
        # A handler one app adds to its root (basicConfig does that) is that app's only;
        # each app's root started as a copy of the server's.
        handler = logging.NullHandler()
        two.context.run(logging.getLogger().addHandler, handler)
        assert handler in two.context.run(lambda: logging.root.handlers)
        assert handler not in one.context.run(lambda: logging.root.handlers)
        assert handler not in logging.root.handlers
        assert one.context.run(lambda: logging.root.handlers) == logging.root.handlers
    finally:
        shared.setLevel(logging.NOTSET)
        server.setLevel(server_level)


def test_urllib_openers_and_warnings_resets_are_per_app() -> None:
    import io
    import urllib.error
    import urllib.request
    import urllib.response
    import warnings

    import ctxserve

    class Handler(urllib.request.BaseHandler):
        def ctxtest_open(self, request):
            return urllib.response.addinfourl(io.BytesIO(b"one's opener"), {}, request.full_url, 200)

    def noop(environ, start_response):  # pragma: no cover - never called
        return []

    one, two = ctxserve.wrap(noop, "urllib-one"), ctxserve.wrap(noop, "urllib-two")
    one.context.run(urllib.request.install_opener, urllib.request.build_opener(Handler))
    assert one.context.run(lambda: urllib.request.urlopen("ctxtest://x").read()) == b"one's opener"
    for urlopen in (lambda: two.context.run(urllib.request.urlopen, "ctxtest://x"),
                    lambda: urllib.request.urlopen("ctxtest://x")):
        with pytest.raises(urllib.error.URLError, match="unknown url type"):
            urlopen()
    plain = list(warnings.filters)
    one.context.run(warnings.resetwarnings)
    assert one.context.run(lambda: warnings.filters) == []
    assert two.context.run(lambda: warnings.filters) == plain == warnings.filters


def test_disable_existing_loggers_in_an_apps_dictconfig_quiets_them_for_that_app_only() -> None:
    import logging
    import logging.config

    import ctxserve

    def noop(environ, start_response):  # pragma: no cover - never called
        return []

    one, two = ctxserve.wrap(noop, "dictconfig-one"), ctxserve.wrap(noop, "dictconfig-two")
    shared, server = logging.getLogger("tests.shared.dictconfig"), logging.getLogger("gunicorn.error")
    one.context.run(logging.config.dictConfig, {"version": 1, "disable_existing_loggers": True,
                                                "root": {"level": "INFO"}})
    assert not one.context.run(shared.isEnabledFor, logging.ERROR)
    assert two.context.run(shared.isEnabledFor, logging.ERROR) and shared.isEnabledFor(logging.ERROR)
    assert not shared.disabled and not server.disabled
    assert one.context.run(server.isEnabledFor, logging.ERROR) and server.isEnabledFor(logging.ERROR)
    one.context.run(logging.config.dictConfig, {"version": 1, "disable_existing_loggers": False})
    assert one.context.run(shared.isEnabledFor, logging.ERROR)
