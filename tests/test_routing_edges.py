"""Routing edge cases never serve a route from the wrong app's context.

The invariant, for any path and any ``Host``: the app that answers is the
one the routing table says (host first — exact, then the longest wildcard
suffix, then apps without a host — then the longest mount on a segment
boundary), it answers in its own context (``APP_ID`` read through
``os.environ``), and ``SCRIPT_NAME + PATH_INFO`` is the original path.
``X-Forwarded-Host`` changes nothing.

Checked in-process over generated paths and hosts (hypothesis), then on a
real gunicorn: the edge cases by name, a generated sample sent as raw bytes,
and requests no HTTP client sends (non-UTF-8 bytes, an empty path).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import Server
from ctxserve import binding
from ctxserve.apps import App
from ctxserve.config import parse
from ctxserve.dispatch import Dispatcher
from reliability_helpers import FAULTS, get_raw, module_server

#: name -> (host or None, mount)
TABLE: dict[str, tuple[str | None, str]] = {
    "root": (None, "/"),
    "blog": (None, "/blog"),
    "blog_admin": (None, "/blog/admin"),
    "shop": (None, "/shop"),
    "shop_host": ("shop.example.com", "/"),
    "shop_host_blog": ("shop.example.com", "/blog"),
    "wild_api": ("*.example.com", "/api"),
    "deep_wild": ("*.a.example.com", "/"),
}


def tables(app: str) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (host, mount) in TABLE.items():
        table: dict[str, Any] = {"app": app, "mount": mount, "environ": {"APP_ID": name},
                                 "stdout": "null", "stderr": "null"}
        if host:
            table["host"] = host
        out[name] = table
    return out


def expected(host_header: str | None, server_name: str, path: str) -> tuple[str, str] | None:
    """The routing table, written out plainly: ``(app, mount)`` or ``None`` (404)."""
    host = host_header or server_name
    if host.endswith("]"):
        host = host.lower()
    else:
        host = (host.rpartition(":")[0] if ":" in host else host).lower()
    candidates: list[str | None] = []
    if any(h == host for h, _ in TABLE.values()):
        candidates.append(host)
    wildcards = sorted({h for h, _ in TABLE.values() if h and h.startswith("*.")}, key=len, reverse=True)
    candidates += [w for w in wildcards if host.endswith(w[1:])]
    candidates.append(None)
    for table_host in candidates:
        mounts = [(mount, name) for name, (h, mount) in TABLE.items() if h == table_host]
        matching = [(len(m), m, name) for m, name in mounts
                    if m == "/" or path == m or path.startswith(m + "/")]
        if matching:
            _, mount, name = max(matching)
            return name, ("" if mount == "/" else mount)
    return None


# -- in-process ------------------------------------------------------------------------

def reporter(environ, start_response):
    """Who answers, as its context says, and the routing it got."""
    import os

    body = json.dumps({"id": os.environ.get("APP_ID"), "binding": binding.current.get().name,
                       "script_name": environ["SCRIPT_NAME"], "path_info": environ["PATH_INFO"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@pytest.fixture(scope="module")
def dispatcher(tmp_path_factory) -> Dispatcher:
    config = parse({"apps": tables("reporter:application")},
                   tmp_path_factory.mktemp("routing") / "ctxserve.toml")
    apps = [App(app_config, wsgi=reporter) for app_config in config.apps]
    for app in apps:
        assert app.load()
    return Dispatcher(apps)


def call(wsgi: Dispatcher, path: str, host: str | None, forwarded: str | None = None) -> tuple[str, bytes]:
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path,
                               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "QUERY_STRING": "",
                               "wsgi.url_scheme": "http"}
    if host is not None:
        environ["HTTP_HOST"] = host
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_HOST"] = forwarded
    started: list[str] = []
    body = b"".join(wsgi(environ, lambda status, headers, exc_info=None: started.append(status)))
    return started[0], body


SEGMENTS = st.sampled_from(["", "blog", "shop", "admin", "api", "..", ".", "BLOG", "blogger",
                            "x", "/", "%2F", "%2e%2e", "blog;x", "shop.", "\x00", "é", "\xff"]) \
    | st.text(max_size=4)
PATHS = st.one_of(
    st.lists(SEGMENTS, max_size=5).map(lambda segments: "/" + "/".join(segments)),
    st.lists(SEGMENTS, max_size=4).map(lambda segments: "//" + "/".join(segments)),
    st.text(max_size=8),
)
HOSTS = st.one_of(
    st.none(),
    st.sampled_from(["shop.example.com", "SHOP.Example.COM", "shop.example.com:8080", "a.example.com",
                     "deep.a.example.com", "A.EXAMPLE.COM:1", "example.com", "xexample.com",
                     "127.0.0.1:8000", "[::1]:80", "[::1]", "", "shop.example.com.", "shop.example.com:"]),
    st.text(max_size=10),
)
FORWARDED = st.sampled_from(["shop.example.com", "a.example.com", "evil.example.org"])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=PATHS, host=HOSTS, forwarded=FORWARDED)
def test_the_answering_app_is_the_one_the_table_says_in_its_own_context(dispatcher, path, host, forwarded):
    want = expected(host, "127.0.0.1", path)
    status, body = call(dispatcher, path, host)
    if want is None:
        assert status == "404 Not Found"
        return
    assert status == "200 OK"
    got = json.loads(body)
    name, mount = want
    assert got["id"] == got["binding"] == name
    assert got["script_name"] == mount
    assert got["script_name"] + got["path_info"] == path
    # X-Forwarded-Host is not a routing input.
    assert call(dispatcher, path, host, forwarded) == (status, body)


# -- a real gunicorn -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    apps = tables("echo:application")
    for table in apps.values():
        table["path"] = [str(FAULTS)]
        del table["stdout"]
    with module_server(tmp_path_factory, "routing-edges", apps, {"threads": 4}) as started:
        yield started


def original_path(target: bytes) -> str:
    """What gunicorn gives the WSGI app as ``PATH_INFO`` for a request target."""
    path = target.split(b"?", 1)[0]
    if path.startswith(b"http://"):
        path = b"/" + path[len(b"http://"):].partition(b"/")[2] if b"/" in path[len(b"http://"):] else b""
    return urllib.parse.unquote_to_bytes(path).decode("latin-1")


def assert_routed(server: Server, target: bytes, host: bytes | None, *, forwarded: bytes | None = None) -> dict:
    headers = {} if host is None else {b"Host": host}
    if forwarded is not None:
        headers[b"X-Forwarded-Host"] = forwarded
    status, _, body = get_raw(server.url, target, headers, version=b"HTTP/1.1" if host is not None else b"HTTP/1.0")
    path = original_path(target)
    want = expected(None if host is None else host.decode("latin-1"), "127.0.0.1", path)
    if want is None:
        assert status == 404, (target, host, body)
        return {}
    assert status == 200, (target, host, body)
    got = json.loads(body)
    assert (got["id"], got["script_name"]) == want, (target, host, got)
    assert got["script_name"] + got["path_info"] == path, (target, got)
    return got


EDGES = [
    (b"/blog/../shop", b"x"),            # not normalised: blog's, with PATH_INFO /../shop
    (b"/shop/../blog/admin", b"x"),
    (b"//shop", b"x"),                   # an empty first segment: the root app
    (b"//blog/x", b"x"),
    (b"/blog%2Fadmin", b"x"),            # %2F is decoded before routing (gunicorn): blog_admin
    (b"/blog%2fadmin%2Fx", b"x"),
    (b"/shop%2F..%2Fblog", b"x"),
    (b"/%2e%2e/blog", b"x"),             # %2e%2e is "..": not a mount
    (b"/blog/%2e%2e/shop", b"x"),
    (b"/b%6cog/x", b"x"),                # an encoded letter: blog
    (b"/BLOG/x", b"x"),                  # paths are case-sensitive: the root app
    (b"/blog", b"SHOP.Example.COM"),     # host names are not
    (b"/blog/x", b"shop.example.com:8080"),
    (b"/", b"shop.example.com:8080"),
    (b"/api/v1", b"A.Example.com:443"),
    (b"/", b"deep.A.example.com"),
    (b"/api", b"example.com"),           # the bare domain is not *.example.com
    (b"/blog", None),                    # no Host (HTTP/1.0): SERVER_NAME, the host-less apps
    (b"/", None),
    (b"/x?y=/blog", b"x"),
    (b"http://127.0.0.1", b"x"),          # absolute form without a path: PATH_INFO is empty
    (b"/blog/%ff%fe", b"x"),             # non-UTF-8, percent-encoded: latin-1 in PATH_INFO
]


@pytest.mark.server
@pytest.mark.parametrize(("target", "host"), EDGES, ids=[repr(t + b" " + (h or b"-")) for t, h in EDGES])
def test_edge_cases_on_a_real_server(server, target, host):
    assert_routed(server, target, host)


@pytest.mark.server
@pytest.mark.parametrize("forwarded", [b"shop.example.com", b"a.example.com"])
def test_x_forwarded_host_is_ignored(server, forwarded):
    assert assert_routed(server, b"/blog/x", b"x", forwarded=forwarded)["id"] == "blog"
    assert assert_routed(server, b"/", b"shop.example.com", forwarded=b"x")["id"] == "shop_host"


def raw_target(segments: list[str]) -> bytes:
    """A request target for *segments*: percent-encoded, except the encodings they already hold."""
    return b"/" + b"/".join(urllib.parse.quote(s, safe="%;.,", encoding="utf-8").encode()
                            if not re.fullmatch(r"(%[0-9A-Fa-f]{2}|[\w.;])*", s, re.ASCII) else s.encode()
                            for s in segments)


HEADER_HOSTS = st.one_of(
    st.none(),
    st.sampled_from(["shop.example.com", "SHOP.example.com:80", "a.example.com", "x.a.example.com",
                     "example.com", "127.0.0.1", "[::1]:8000", "shop.example.com."]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=10),
)


@pytest.mark.server
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=st.lists(SEGMENTS, max_size=4), host=HEADER_HOSTS)
def test_a_generated_sample_on_a_real_server(server, segments, host):
    target = raw_target(segments)
    header = None if host is None else host.encode()
    headers = {} if header is None else {b"Host": header}
    status, _, body = get_raw(server.url, target, headers, version=b"HTTP/1.1" if header else b"HTTP/1.0")
    if status == 400:  # a request gunicorn refuses (a Host it finds invalid): no app answered
        assert b'"id"' not in body
        return
    assert_routed(server, target, header)


@pytest.mark.server
def test_requests_no_client_sends_add_no_crash_on_top_of_gunicorn(server):
    """Raw non-UTF-8 bytes in the request line are gunicorn's to refuse (400);
    whatever gunicorn lets through, ctxserve routes without an error."""
    pid = assert_routed(server, b"/blog/x", b"x")["pid"]
    for target in [b"/blog/\xff\xfe", b"/\xc3\xa9", b"/blog/\x80"]:
        status, _, body = get_raw(server.url, target, {b"Host": b"x"})
        assert status == 400 and b'"id"' not in body, (target, status, body)
    assert assert_routed(server, b"http://127.0.0.1", b"x")["path_info"] == ""
    assert assert_routed(server, b"/blog/%00%ff", b"x")["path_info"] == "/\x00\xff"
    assert assert_routed(server, b"/blog/x", b"x")["pid"] == pid
    assert "Traceback" not in server.stderr() and "Error handling request" not in server.stderr()
