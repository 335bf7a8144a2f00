"""Each app's os.environ: against a real gunicorn under load, and in-process.

App ``a`` has a SECRET in its ``environ`` table; app ``b`` does not, and the
server process does not either. Whatever ``b`` does - os.environ, os.getenv,
a child process, /proc/self/environ - it must never see ``a``'s secret.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ctxserve.environ
from support import ENGINES, Server, hammer, probe_app, serve_command, start_server, toml_text
from ctxserve.apps import App
from ctxserve.config import parse

SECRET = "only-a-knows-7f3c9e"


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Apps a (with SECRET) and b (without), one gthread worker, shared by the load tests."""
    tmp = tmp_path_factory.mktemp("environ")
    config = tmp / "ctxserve.toml"
    config.write_text(toml_text({"worker_class": "gthread", "threads": 8}, {
        "a": probe_app("a", "/a", environ={"SECRET": SECRET}),
        "b": probe_app("b", "/b"),
    }))
    assert "SECRET" not in os.environ
    srv = start_server(serve_command(config, engine=request.param), tmp)
    yield srv
    srv.stop()


def load(server: Server, check_a: Callable[[dict], None], check_b: Callable[[dict], None],
         route_a: str, route_b: str, *, per_thread: int) -> int:
    """8 client threads, half on a's *route_a*, half on b's *route_b*; check every answer."""

    def request(session, t: int, i: int) -> None:
        app, route, check = ("a", route_a, check_a) if (t + i) % 2 else ("b", route_b, check_b)
        r = session.get(f"{server.url}/{app}{route}", params={"tag": f"{t}x{i}"}, timeout=30)
        assert r.status_code == 200, r.text
        check(r.json())

    return hammer(request, threads=8, per_thread=per_thread, timeout=120)


@pytest.mark.server
def test_b_never_sees_a_secret_through_os_environ_or_os_getenv_under_load(server):
    def check_a(seen: dict) -> None:
        assert (seen["id"], seen["getenv"], seen["secret"]) == ("a", "a", SECRET)

    def check_b(seen: dict) -> None:
        assert (seen["id"], seen["getenv"], seen["secret"]) == ("b", "b", None)

    assert load(server, check_a, check_b, "/whoami", "/whoami", per_thread=150) == 1200


@pytest.mark.server
def test_b_child_process_started_with_env_none_never_inherits_a_secret_under_load(server):
    def check_a(seen: dict) -> None:
        assert seen == {"APP_ID": "a", "SECRET": SECRET}  # a's child gets a's environ

    def check_b(seen: dict) -> None:
        assert seen == {"APP_ID": "b", "SECRET": "None"}

    assert load(server, check_a, check_b, "/child", "/child", per_thread=6) == 48


@pytest.mark.server
def test_proc_self_environ_never_contains_a_secret(server):
    def check(seen: dict) -> None:
        assert "SECRET" not in seen["raw"] and SECRET not in seen["raw"]

    assert load(server, check, check, "/proc-environ", "/proc-environ", per_thread=25) == 200


@pytest.mark.server
def test_a_writes_persist_for_a_and_are_never_visible_to_b(server):
    written = "written-by-a-42"
    assert server.get("/a/setenv", params={"A_WROTE": written}).json()["set"] == ["A_WROTE"]

    def check_a(seen: dict) -> None:
        assert seen == {"A_WROTE": written}

    def check_b(seen: dict) -> None:
        assert seen == {"A_WROTE": None}

    assert load(server, check_a, check_b, "/getenv?names=A_WROTE", "/getenv?names=A_WROTE",
                per_thread=50) == 400
    assert server.get("/b/child").json()["SECRET"] == "None"


@pytest.mark.server
def test_concurrent_writes_of_a_are_never_visible_to_b(server):
    """a writes a new variable on every request while b looks for all of them."""
    names = [f"W{t}x{i}" for t in range(8) for i in range(40)]

    def request(session, t: int, i: int) -> None:
        if t % 2:
            r = session.get(f"{server.url}/a/setenv", params={f"W{t}x{i}": "a-value"}, timeout=30)
            assert r.status_code == 200
        else:
            r = session.get(f"{server.url}/b/getenv", params={"names": ",".join(names)}, timeout=30)
            assert set(r.json().values()) == {None}

    hammer(request, threads=8, per_thread=40, timeout=120)
    seen = server.get("/a/getenv", params={"names": ",".join(names)}).json()
    assert {n for n, v in seen.items() if v == "a-value"} == {n for n in names if int(n[1]) % 2}


# -- inherit_environ ----------------------------------------------------------------

@pytest.fixture(scope="module", params=ENGINES)
def inherit_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server process has KEEP_ME and DROP_ME; its apps inherit all, none, or a list."""
    tmp = tmp_path_factory.mktemp("inherit")
    config = tmp / "ctxserve.toml"
    config.write_text(toml_text(None, {
        "everything": probe_app("everything", "/everything"),
        "nothing": probe_app("nothing", "/nothing", inherit_environ=False, environ={"OWN": "1"}),
        "listed": probe_app("listed", "/listed", inherit_environ=["KEEP_ME", "NOT_SET_ANYWHERE"]),
    }))
    srv = start_server(serve_command(config, engine=request.param), tmp, env={"KEEP_ME": "kept", "DROP_ME": "dropped"})
    yield srv
    srv.stop()


@pytest.mark.server
def test_inherit_environ_true_inherits_the_server_environment(inherit_server):
    seen = inherit_server.get("/everything/getenv", params={"names": "KEEP_ME,DROP_ME,APP_ID"}).json()
    assert seen == {"KEEP_ME": "kept", "DROP_ME": "dropped", "APP_ID": "everything"}


@pytest.mark.server
def test_inherit_environ_false_gives_only_the_apps_own_table(inherit_server):
    assert inherit_server.get("/nothing/env-keys").json()["keys"] == ["APP_ID", "OWN"]


@pytest.mark.server
def test_inherit_environ_list_inherits_only_the_listed_names(inherit_server):
    assert inherit_server.get("/listed/env-keys").json()["keys"] == ["APP_ID", "KEEP_ME"]
    seen = inherit_server.get("/listed/getenv", params={"names": "KEEP_ME,DROP_ME"}).json()
    assert seen == {"KEEP_ME": "kept", "DROP_ME": None}


# -- in-process: the os.environ view inside an App's context ------------------------

@pytest.fixture
def app(tmp_path: Path) -> App:
    """An App whose environ is exactly {"APP_ID": "unit", "TOKEN": "t0k"}."""
    config = parse({"apps": {"unit": {
        "app": "unused:app", "mount": "/", "stdout": "null", "stderr": "null",
        "inherit_environ": False, "environ": {"APP_ID": "unit", "TOKEN": "t0k"},
    }}}, tmp_path / "ctxserve.toml")
    return App(config.apps[0], wsgi=lambda environ, start_response: [])


def inside(app: App, fn: Callable[[], object]) -> object:
    return app.context.run(fn)


def test_environ_view_reads_the_apps_table(app):
    def reads() -> None:
        assert os.environ["TOKEN"] == "t0k"
        assert os.environ.get("TOKEN") == "t0k"
        assert os.environ.get("MISSING", "default") == "default"
        assert os.getenv("APP_ID") == "unit"
        assert os.getenv("MISSING") is None
        assert "TOKEN" in os.environ and "MISSING" not in os.environ
        assert "PATH" not in os.environ  # inherit_environ = false
        with pytest.raises(KeyError):
            os.environ["MISSING"]

    inside(app, reads)


def test_environ_view_iterates_counts_and_lists_the_apps_table(app):
    def lists() -> None:
        assert sorted(os.environ) == ["APP_ID", "TOKEN"]
        assert len(os.environ) == 2
        assert sorted(os.environ.keys()) == ["APP_ID", "TOKEN"]
        assert sorted(os.environ.values()) == ["t0k", "unit"]
        assert sorted(os.environ.items()) == [("APP_ID", "unit"), ("TOKEN", "t0k")]
        assert os.environ == {"APP_ID": "unit", "TOKEN": "t0k"}

    inside(app, lists)


def test_environ_copy_is_an_independent_dict(app):
    def copies() -> None:
        copy = os.environ.copy()
        assert type(copy) is dict and copy == {"APP_ID": "unit", "TOKEN": "t0k"}
        copy["TOKEN"] = "changed"
        assert os.environ["TOKEN"] == "t0k"

    inside(app, copies)


def test_environ_pop_setdefault_update_change_the_apps_table(app):
    def changes() -> None:
        assert os.environ.pop("TOKEN") == "t0k"
        assert os.environ.pop("TOKEN", "gone") == "gone"
        assert os.environ.setdefault("MODE", "fast") == "fast"
        assert os.environ.setdefault("MODE", "slow") == "fast"
        os.environ.update({"A": "1"}, B="2")
        del os.environ["A"]
        return dict(os.environ)

    assert inside(app, changes) == {"APP_ID": "unit", "MODE": "fast", "B": "2"}
    assert inside(app, lambda: os.environ["MODE"]) == "fast"  # persists for the app
    assert "MODE" not in ctxserve.environ.real_environ and os.getenv("MODE") is None


def test_environ_or_operators_merge_with_the_apps_table(app):
    def merges() -> None:
        assert os.environ | {"TOKEN": "x"} == {"APP_ID": "unit", "TOKEN": "x"}
        assert {"TOKEN": "x", "Z": "z"} | os.environ == {"TOKEN": "t0k", "Z": "z", "APP_ID": "unit"}
        env = os.environ
        env |= {"Y": "y"}
        assert env is os.environ and os.environ["Y"] == "y"

    inside(app, merges)


def test_environb_round_trips_with_environ(app):
    def round_trip() -> None:
        assert os.environb[b"TOKEN"] == b"t0k"
        os.environb[b"FROM_BYTES"] = b"b\xc3\xa9"
        assert os.environ["FROM_BYTES"] == "b\u00e9"
        os.environ["FROM_STR"] = "s"
        assert os.environb[b"FROM_STR"] == b"s"
        assert os.getenvb(b"FROM_STR") == b"s"
        assert sorted(os.environb) == [b"APP_ID", b"FROM_BYTES", b"FROM_STR", b"TOKEN"]
        assert len(os.environb) == 4
        del os.environb[b"FROM_STR"]
        assert "FROM_STR" not in os.environ

    inside(app, round_trip)


@pytest.mark.parametrize("assign", [
    lambda: os.environ.__setitem__("K", 1),
    lambda: os.environ.__setitem__(1, "v"),
    lambda: os.environ.__setitem__("K", None),
    lambda: os.environ.update(K=b"bytes"),
    lambda: os.environ.setdefault("K"),
    lambda: os.environb.__setitem__(b"K", "str"),
    lambda: os.environb.__setitem__("K", b"v"),
], ids=["int-value", "int-name", "None-value", "bytes-value", "setdefault-None", "environb-str-value",
        "environb-str-name"])
def test_environ_refuses_non_str_names_and_values_like_os_environ(app, assign):
    with pytest.raises(TypeError):
        inside(app, assign)
    assert inside(app, lambda: sorted(os.environ)) == ["APP_ID", "TOKEN"]


def test_environ_refuses_null_bytes(app):
    with pytest.raises(ValueError):
        inside(app, lambda: os.environ.__setitem__("K", "a\0b"))


def test_subprocess_started_by_an_app_with_env_none_gets_the_apps_environ(app):
    code = "import os; print(*(os.environ.get(k) for k in ('APP_ID', 'TOKEN', 'ADDED', 'HOME')))"

    def child() -> str:
        os.environ["ADDED"] = "yes"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout

    assert inside(app, child) == "unit t0k yes None\n"


def test_outside_every_app_os_environ_is_the_real_environment(app):
    name = "CTXSERVE_TEST_OUTSIDE"
    assert name not in os.environ
    os.environ[name] = "real"
    try:
        assert os.getenv(name) == "real"
        assert ctxserve.environ.real_environ[name] == "real"
        out = subprocess.run([sys.executable, "-c", f"import os; print(os.environ['{name}'])"],
                             capture_output=True, text=True, check=True).stdout
        assert out == "real\n"
        assert dict(os.environ) == dict(ctxserve.environ.real_environ)
        assert inside(app, lambda: os.getenv(name)) is None  # inherit_environ = false
    finally:
        del os.environ[name]
    assert name not in ctxserve.environ.real_environ


def test_os_system_in_an_app_runs_with_the_apps_environ(app, monkeypatch):
    monkeypatch.setenv("CTXSERVE_SERVER_ONLY", "server")
    script = 'test -z "$CTXSERVE_SERVER_ONLY" && test "$TOKEN" = t0k'
    assert inside(app, lambda: os.system(script)) == 0


def test_os_system_in_an_app_returns_a_wait_status_as_plain_python_does(app):
    assert inside(app, lambda: os.system("exit 3")) == os.system("exit 3") == 3 << 8
