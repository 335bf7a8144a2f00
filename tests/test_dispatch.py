"""Routing: host, then the longest mount on a segment boundary; 404, 503, 500.

In-process tests build a :class:`~ctxserve.dispatch.Dispatcher` over apps
that answer with what they were routed as (their name, ``SCRIPT_NAME``,
``PATH_INFO``); the last tests run a real gunicorn with apps that fail.
"""

from __future__ import annotations

import json
import re
import wsgiref.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from support import hammer, probe_app, wait_for
from ctxserve.apps import App
from ctxserve.config import parse
from ctxserve.dispatch import Dispatcher


# -- helpers -----------------------------------------------------------------------

def recorder(name: str):
    """A WSGI app that answers with its name and the routing it received."""

    def application(environ, start_response):
        body = json.dumps({
            "app": name,
            "script_name": environ.get("SCRIPT_NAME", ""),
            "path_info": environ.get("PATH_INFO", ""),
            "ctxserve.app": environ.get("ctxserve.app"),
        }).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return application


def dispatcher(base: Path, apps: Mapping[str, Mapping[str, Any]]) -> Dispatcher:
    """A Dispatcher over recorder apps, one per ``[apps.NAME]`` table given."""
    tables = {name: {"app": "recorder:application", "stdout": "null", "stderr": "null", **table}
              for name, table in apps.items()}
    config = parse({"apps": tables}, base / "ctxserve.toml")
    loaded = [App(app_config, wsgi=recorder(app_config.name)) for app_config in config.apps]
    for app in loaded:
        assert app.load()
    return Dispatcher(loaded)


def call(wsgi, path: str, *, host: str | None = None, script_name: str = "",
         server_name: str = "127.0.0.1") -> tuple[str, dict[str, str], bytes]:
    """One request with a hand-made environ: ``(status, headers, body)``."""
    environ: dict[str, Any] = {"PATH_INFO": path, "SCRIPT_NAME": script_name,
                               "SERVER_NAME": server_name}
    if host is not None:
        environ["HTTP_HOST"] = host
    wsgiref.util.setup_testing_defaults(environ)
    if host is None:
        del environ["HTTP_HOST"]
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status, headers, exc_info=None):
        started.append((status, headers))

    result = wsgi(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    status, headers = started[-1]
    return status, dict(headers), body


def routed(wsgi, path: str, **kwargs: Any) -> dict[str, Any]:
    """Which app answered *path* and with what SCRIPT_NAME/PATH_INFO."""
    status, _, body = call(wsgi, path, **kwargs)
    assert status == "200 OK", (path, status, body)
    return json.loads(body)


def route_of(wsgi, path: str, **kwargs: Any) -> tuple[str, str, str]:
    answer = routed(wsgi, path, **kwargs)
    return answer["app"], answer["script_name"], answer["path_info"]


# -- prefixes ----------------------------------------------------------------------

@pytest.fixture
def blog(tmp_path: Path) -> Dispatcher:
    return dispatcher(tmp_path, {"blog": {"mount": "/blog"}})


def test_mount_matches_its_own_path(blog):
    assert route_of(blog, "/blog") == ("blog", "/blog", "")


def test_mount_matches_its_path_with_a_trailing_slash(blog):
    assert route_of(blog, "/blog/") == ("blog", "/blog", "/")


def test_mount_matches_paths_below_it(blog):
    assert route_of(blog, "/blog/2024/post") == ("blog", "/blog", "/2024/post")


@pytest.mark.parametrize("path", ["/blogger", "/blogger/x", "/blo", "/", "/x/blog"])
def test_mount_does_not_match_past_a_segment_boundary(blog, path):
    status, _, _ = call(blog, path)
    assert status == "404 Not Found"


def test_mount_written_with_a_trailing_slash_matches_the_same_paths(tmp_path):
    wsgi = dispatcher(tmp_path, {"blog": {"mount": "/blog/"}})
    assert route_of(wsgi, "/blog") == ("blog", "/blog", "")
    assert route_of(wsgi, "/blog/x") == ("blog", "/blog", "/x")
    assert call(wsgi, "/blogger")[0] == "404 Not Found"


@pytest.fixture
def nested(tmp_path: Path) -> Dispatcher:
    # Declared shortest first: the order in the file must not matter.
    return dispatcher(tmp_path, {"a": {"mount": "/a"}, "ab": {"mount": "/a/b"},
                                 "root": {"mount": "/"}})


@pytest.mark.parametrize(("path", "expected"), [
    ("/a/b", ("ab", "/a/b", "")),
    ("/a/b/", ("ab", "/a/b", "/")),
    ("/a/b/c", ("ab", "/a/b", "/c")),
    ("/a/bc", ("a", "/a", "/bc")),
    ("/a/c/b", ("a", "/a", "/c/b")),
    ("/a", ("a", "/a", "")),
])
def test_longest_matching_mount_wins(nested, path, expected):
    assert route_of(nested, path) == expected


@pytest.mark.parametrize("path", ["/", "/b", "/ab", "/other/a/b", ""])
def test_root_mount_takes_every_path_no_other_mount_matches(nested, path):
    assert route_of(nested, path) == ("root", "", path)


def test_existing_script_name_prefix_is_kept(nested):
    assert route_of(nested, "/a/b/c", script_name="/prefix") == ("ab", "/prefix/a/b", "/c")
    assert route_of(nested, "/x", script_name="/prefix") == ("root", "/prefix", "/x")


def test_routed_app_name_is_in_the_environ_as_ctxserve_app(nested):
    assert routed(nested, "/a/b/c")["ctxserve.app"] == "ab"
    assert routed(nested, "/elsewhere")["ctxserve.app"] == "root"


# -- the same SCRIPT_NAME/PATH_INFO as werkzeug's DispatcherMiddleware ---------------

MOUNTS = ["/a", "/a/b", "/blog", "/a/b/c/d", "/caf\xc3\xa9"]
PATHS = ["", "/", "/a", "/a/", "/a/b", "/a/b/", "/a/b/c", "/a/b/c/d/e", "/a/bc", "/a//b",
         "//a", "/blog", "/blogger", "/blog//x", "/x/blog", "/caf\xc3\xa9/menu", "/b/a"]


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict[bool, tuple[Dispatcher, DispatcherMiddleware]]:
    """``{with_root: (ctxserve Dispatcher, werkzeug DispatcherMiddleware)}`` over MOUNTS."""
    pairs = {}
    for with_root in (False, True):
        tables = {f"m{i}": {"mount": mount} for i, mount in enumerate(MOUNTS)}
        if with_root:
            tables["root"] = {"mount": "/"}
        ours = dispatcher(tmp_path_factory.mktemp("twins"), tables)
        theirs = DispatcherMiddleware(
            recorder("root") if with_root else _not_found,
            {mount: recorder(f"m{i}") for i, mount in enumerate(MOUNTS)})
        pairs[with_root] = (ours, theirs)
    return pairs


def _not_found(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def _answer(wsgi, path: str, script_name: str) -> tuple[str, str, str] | str:
    status, _, body = call(wsgi, path, script_name=script_name)
    if status != "200 OK":
        return status[:3]
    answer = json.loads(body)
    return answer["app"], answer["script_name"], answer["path_info"]


@pytest.mark.parametrize("with_root", [False, True], ids=["no-root", "root"])
@pytest.mark.parametrize("script_name", ["", "/outer"])
@pytest.mark.parametrize("path", PATHS)
def test_routing_matches_werkzeug_dispatcher_middleware(twins, with_root, script_name, path):
    ours, theirs = twins[with_root]
    assert _answer(ours, path, script_name) == _answer(theirs, path, script_name)


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(st.sampled_from(["a", "b", "c", "d", "blog", "blogger", "", "x"]),
                         max_size=6),
       with_root=st.booleans())
def test_routing_matches_werkzeug_for_any_path(twins, segments, with_root):
    path = "".join("/" + segment for segment in segments)
    ours, theirs = twins[with_root]
    assert _answer(ours, path, "") == _answer(theirs, path, "")


# -- hosts ---------------------------------------------------------------------------

@pytest.fixture
def hosts(tmp_path: Path) -> Dispatcher:
    return dispatcher(tmp_path, {
        "anyhost": {"mount": "/"},
        "wild": {"host": "*.example.com"},
        "eu": {"host": "*.eu.example.com"},
        "exact": {"host": ["blog.example.com", "www.blog.example.com"]},
        "ipv6": {"host": "[::1]"},
    })


def app_for_host(wsgi, host: str, path: str = "/x") -> str:
    return routed(wsgi, path, host=host)["app"]


def test_exact_host_beats_wildcard(hosts):
    assert app_for_host(hosts, "blog.example.com") == "exact"
    assert app_for_host(hosts, "www.blog.example.com") == "exact"


def test_wildcard_host_beats_host_less_apps(hosts):
    assert app_for_host(hosts, "shop.example.com") == "wild"
    assert app_for_host(hosts, "a.b.example.com") == "wild"


def test_longest_wildcard_suffix_wins(hosts):
    assert app_for_host(hosts, "shop.eu.example.com") == "eu"


def test_wildcard_does_not_match_the_bare_domain(hosts):
    assert app_for_host(hosts, "example.com") == "anyhost"
    assert app_for_host(hosts, "eu.example.com") == "wild"


def test_wildcard_does_not_match_a_longer_label(hosts):
    assert app_for_host(hosts, "notexample.com") == "anyhost"


def test_unknown_host_goes_to_host_less_apps(hosts):
    assert app_for_host(hosts, "other.org") == "anyhost"


def test_host_port_is_ignored(hosts):
    assert app_for_host(hosts, "blog.example.com:8443") == "exact"
    assert app_for_host(hosts, "shop.example.com:80") == "wild"
    assert app_for_host(hosts, "[::1]:8000") == "ipv6"
    assert app_for_host(hosts, "[::1]") == "ipv6"


def test_host_match_ignores_case(hosts):
    assert app_for_host(hosts, "BLOG.Example.COM") == "exact"
    assert app_for_host(hosts, "Shop.EXAMPLE.com:8080") == "wild"


def test_server_name_is_used_without_a_host_header(hosts):
    assert routed(hosts, "/x", host=None, server_name="blog.example.com")["app"] == "exact"


def test_host_app_gets_the_whole_path_when_mounted_at_root(hosts):
    assert route_of(hosts, "/a/b", host="blog.example.com") == ("exact", "", "/a/b")


def test_host_and_mount_together_route_on_both(tmp_path):
    wsgi = dispatcher(tmp_path, {
        "api": {"host": "api.example.com", "mount": "/v1"},
        "site": {"mount": "/"},
    })
    assert route_of(wsgi, "/v1/users", host="api.example.com") == ("api", "/v1", "/users")
    assert route_of(wsgi, "/v1/users", host="www.example.com") == ("site", "", "/v1/users")


def test_path_no_app_of_the_host_has_falls_back_to_host_less_apps(tmp_path):
    wsgi = dispatcher(tmp_path, {
        "api": {"host": "api.example.com", "mount": "/v1"},
        "site": {"mount": "/"},
    })
    assert route_of(wsgi, "/about", host="api.example.com") == ("site", "", "/about")


# -- no match --------------------------------------------------------------------------

def test_no_match_is_a_404(blog):
    assert call(blog, "/shop")[0] == "404 Not Found"


def test_404_is_short_plain_text_with_its_length(blog):
    _, headers, body = call(blog, "/shop")
    assert headers["Content-Type"].startswith("text/plain")
    assert int(headers["Content-Length"]) == len(body)
    assert 0 < len(body) < 200
    body.decode("utf-8")


def test_404_when_only_other_hosts_have_apps(tmp_path):
    wsgi = dispatcher(tmp_path, {"blog": {"host": "blog.example.com"}})
    assert call(wsgi, "/", host="shop.example.com")[0] == "404 Not Found"
    assert route_of(wsgi, "/", host="blog.example.com")[0] == "blog"


def test_404_does_not_name_an_app(blog):
    environ: dict[str, Any] = {"PATH_INFO": "/shop"}
    wsgiref.util.setup_testing_defaults(environ)
    blog(environ, lambda status, headers, exc_info=None: None)
    assert "ctxserve.app" not in environ


# -- with a real gunicorn: 503 for apps that failed to load, 500 for one request -------------

@pytest.fixture
def wait_for_output():
    """``wait_for_output(server, text)``: poll the server's stderr (bounded) for *text*."""
    return lambda server, text, timeout=10: wait_for(lambda: text in server.stderr(), timeout)


@pytest.fixture
def broken_apps(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """App tables for an app whose module is missing and one whose module has a SyntaxError."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "broken_app.py").write_text("def application(environ, start_response:\n    return []\n")
    return {
        "missing": {"app": "no_such_module_for_ctxserve:application", "mount": "/missing"},
        "broken": {"app": "broken_app:application", "mount": "/broken", "path": [str(broken)]},
    }


@pytest.mark.server
def test_apps_that_failed_to_load_answer_503_while_others_serve_under_load(
        make_config, serve, broken_apps):
    config = make_config({"ok": probe_app("ok", "/ok"), **broken_apps,
                          "other": probe_app("other", "/other")})
    server = serve(config, "--threads", "8")

    def request(session, t, i):
        ok = session.get(f"{server.url}/{('ok', 'other')[i % 2]}/whoami?tag={t}-{i}", timeout=30)
        assert ok.status_code == 200
        assert ok.json()["id"] == ("ok", "other")[i % 2]
        assert ok.json()["tag"] == f"{t}-{i}"
        failed = session.get(f"{server.url}/{('missing', 'broken')[i % 2]}/x", timeout=30)
        assert failed.status_code == 503
        assert failed.headers["Content-Type"].startswith("text/plain")
        assert ("missing", "broken")[i % 2] in failed.text

    assert hammer(request, threads=8, per_thread=25, timeout=60) == 200


@pytest.mark.server
def test_import_tracebacks_are_on_the_server_output_prefixed_with_the_app_name(
        make_config, serve, broken_apps, wait_for_output):
    config = make_config({"ok": probe_app("ok", "/ok"), **broken_apps})
    server = serve(config)
    assert wait_for_output(server, "[broken] SyntaxError")
    err = server.stderr()
    assert "[missing] Traceback (most recent call last):" in err
    assert re.search(r"^\[missing\] ModuleNotFoundError: .*no_such_module_for_ctxserve", err, re.M)
    assert "[broken] Traceback (most recent call last):" in err
    assert re.search(r"^\[broken\] .*broken_app\.py", err, re.M)
    assert server.get("/ok/whoami").status_code == 200


@pytest.mark.server
def test_a_500_leaves_other_apps_and_later_requests_of_the_same_app_fine(
        make_config, serve, wait_for_output):
    config = make_config({"a": probe_app("a", "/a"), "b": probe_app("b", "/b")})
    server = serve(config)
    for i in range(3):
        boom = server.get(f"/a/boom?tag=t{i}")
        assert boom.status_code == 500
        assert "a boom" not in boom.text  # the traceback is not sent to the client
        assert server.get(f"/a/whoami?tag=after{i}").json()["tag"] == f"after{i}"
        assert server.get("/b/whoami").json()["id"] == "b"
    assert wait_for_output(server, "[a] RuntimeError: a boom t2")
    assert "[b] " not in server.stderr()
