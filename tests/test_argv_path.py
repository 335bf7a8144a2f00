"""Each app's sys.argv and sys.path: against a real gunicorn under load, and in-process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import ctxserve.binding
from support import ENGINES, TEST_APPS, Server, hammer, probe_app, serve_command, start_server, toml_text
from ctxserve.apps import App
from ctxserve.config import parse

PROBE_DIR = str(TEST_APPS / "probe")


@pytest.fixture(scope="module")
def extra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tool-lib")


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, extra_dir: Path) -> Iterator[Server]:
    """App ``plain``: argv and path left to their defaults; app ``tool``: both configured."""
    tmp = tmp_path_factory.mktemp("argv-path")
    config = tmp / "ctxserve.toml"
    config.write_text(toml_text({"worker_class": "gthread", "threads": 8}, {
        "plain": probe_app("plain", "/plain"),
        "tool": probe_app("tool", "/tool", argv=["tool", "--verbose"],
                          path=[str(extra_dir), PROBE_DIR]),
    }))
    srv = start_server(serve_command(config, engine=request.param), tmp)
    yield srv
    srv.stop()


def whoami_load(server: Server, check) -> int:
    def request(session, t: int, i: int) -> None:
        app = ("plain", "tool")[(t + i) % 2]
        seen = session.get(f"{server.url}/{app}/whoami", timeout=30).json()
        assert seen["id"] == app
        check(app, seen)

    return hammer(request, threads=8, per_thread=100, timeout=120)


@pytest.mark.server
def test_each_app_sees_its_own_sys_argv_under_concurrent_load(server):
    expected = {"plain": ["plain"], "tool": ["tool", "--verbose"]}

    def check(app: str, seen: dict) -> None:
        assert seen["argv"] == expected[app]

    assert whoami_load(server, check) == 800


@pytest.mark.server
def test_each_app_sees_its_path_entries_first_then_the_shared_path_under_concurrent_load(server, extra_dir):
    shared = server.get("/plain/whoami").json()["path"][1]
    assert shared not in (PROBE_DIR, str(extra_dir))
    expected = {"plain": [PROBE_DIR, shared], "tool": [str(extra_dir), PROBE_DIR, shared]}

    def check(app: str, seen: dict) -> None:
        assert seen["path"][:len(expected[app])] == expected[app]

    assert whoami_load(server, check) == 800


# -- in-process ---------------------------------------------------------------------

def make_app(tmp_path: Path, name: str, wsgi=None) -> App:
    config = parse({"apps": {name: {"app": "unused:app", "mount": f"/{name}", "stdout": "null"}}},
                   tmp_path / "ctxserve.toml")
    app = App(config.apps[0], wsgi=wsgi or (lambda environ, start_response: []))
    assert app.load()
    return app


def call(app: App) -> list[bytes]:
    return list(app({"PATH_INFO": "/"}, lambda *args: None))


def test_sys_path_insert_inside_an_app_is_seen_by_neither_the_process_nor_another_app(tmp_path):
    first, second = make_app(tmp_path, "first"), make_app(tmp_path, "second")
    entry = str(tmp_path / "first-only")
    outside = list(sys.path)

    first.context.run(lambda: sys.path.insert(0, entry))

    assert first.context.run(lambda: sys.path[0]) == entry
    assert entry not in second.context.run(lambda: list(sys.path))
    assert entry not in sys.path and sys.path == outside


def test_sys_path_changed_in_a_request_persists_for_the_app_only(tmp_path):
    entry = str(tmp_path / "added-by-a-request")
    seen = []

    def wsgi(environ, start_response):
        if entry not in sys.path:
            sys.path.append(entry)
        seen.append(sys.path[-1])
        return []

    app, other = make_app(tmp_path, "app", wsgi), make_app(tmp_path, "other")
    call(app)
    call(app)
    assert seen == [entry, entry] and app.context.run(lambda: sys.path.count(entry)) == 1
    assert entry not in other.context.run(lambda: list(sys.path)) and entry not in sys.path


def test_assigning_sys_argv_in_a_request_does_not_leak(tmp_path):
    seen = []

    def wsgi(environ, start_response):
        seen.append(list(sys.argv))
        sys.argv = ["changed", "by", "request"]
        seen.append(list(sys.argv))
        return []

    app = make_app(tmp_path, "app", wsgi)
    outside = sys.argv
    call(app)
    call(app)
    assert seen == [["app"], ["changed", "by", "request"]] * 2
    assert sys.argv is outside
    assert app.context.run(lambda: sys.argv) == ["app"]


def test_outside_every_app_sys_argv_and_sys_path_are_the_process_objects(tmp_path, monkeypatch):
    make_app(tmp_path, "app")  # ctxserve is installed in this process
    assert sys.argv is sys.__dict__["argv"] is ctxserve.binding.server.argv
    assert sys.path is sys.__dict__["path"] is ctxserve.binding.server.path

    # Assigning outside every app is plain Python too, also for C code (sys.__dict__).
    new_argv = ["outside", "--flag"]
    monkeypatch.setattr(sys, "argv", new_argv)
    assert sys.argv is new_argv and sys.__dict__["argv"] is new_argv
