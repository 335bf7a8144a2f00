"""WSGI compliance: ``wsgiref.validate`` around the Dispatcher and around an App.

Every response kind ctxserve produces or passes on (list body, generator
body, ``wsgi.file_wrapper``, its own 404, 503 and 500) goes through
:func:`wsgiref.validate.validator`, which raises ``AssertionError`` for a
violation and warns (``WSGIWarning``, an error here) for a doubtful one.
Then: the response's ``next()`` and ``close()`` run in the app's context,
and a file_wrapper response is served by a real gunicorn.
"""

from __future__ import annotations

import os
import re
import sys
import wsgiref.util
import wsgiref.validate
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from support import probe_app, wait_for
from ctxserve import binding
from ctxserve.apps import App
from ctxserve.config import parse
from ctxserve.dispatch import Dispatcher

pytestmark = [
    pytest.mark.filterwarnings("error::wsgiref.validate.WSGIWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


# -- a server stand-in that checks what it is given ------------------------------------

def environ_for(path: str, **extra: Any) -> dict[str, Any]:
    """A complete request environ, as a server would build it, for *path*."""
    environ: dict[str, Any] = {"SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "", **extra}
    wsgiref.util.setup_testing_defaults(environ)
    return environ


class Response:
    """Drives one request like a server would, checking the app's side of PEP 3333."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.sending = False

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None):
        assert type(status) is str and re.fullmatch(r"[1-5]\d\d .+", status), status
        assert type(headers) is list, headers
        for header in headers:
            assert type(header) is tuple and len(header) == 2, header
            assert all(type(part) is str for part in header), header
        if exc_info is not None:
            if self.sending:  # too late to change the status: PEP 3333 says re-raise
                raise exc_info[1].with_traceback(exc_info[2])
        else:
            assert self.status is None, "start_response called twice without exc_info"
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        assert type(data) is bytes
        self.sending = True
        self.body += data

    def run(self, wsgi: Callable[..., Iterable[bytes]], path: str,
            **environ: Any) -> Response:
        result = wsgi(environ_for(path, **environ), self.start_response)
        try:
            for chunk in result:
                assert self.status is not None, "body before start_response"
                self.write(chunk)
        finally:
            result.close()  # type: ignore[attr-defined]
        # validator's iterator wrapper records that the server closed it
        assert getattr(result, "closed", True) is True
        return self

    @property
    def header(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers}


def make_app(tmp_path: Path, inner: Callable[..., Any] | None, spec: str = "inline:application",
             mount: str = "/app", **table: Any) -> App:
    """An App around *inner* (or loading *spec* when *inner* is None); output to files."""
    config = parse({"apps": {"app": {"app": spec, "mount": mount,
                                     "stdout": str(tmp_path / "app.out"),
                                     "stderr": str(tmp_path / "app.err"), **table}}},
                   tmp_path / "ctxserve.toml")
    app = App(config.apps[0], wsgi=inner)
    app.load()
    return app


@pytest.fixture(params=["dispatcher", "app"])
def validated(request, tmp_path: Path) -> Callable[..., tuple[Callable[..., Any], str]]:
    """``validated(inner) -> (wsgi, prefix)``: validator around a Dispatcher or an App.

    Requests go to ``prefix + "/..."``; *inner* is itself wrapped in a validator
    too, so the environ the app receives and the app's own answer are checked.
    """

    def build(inner: Callable[..., Any] | None, *, lint_inner: bool = True, **kwargs: Any):
        if inner is not None and lint_inner:
            inner = wsgiref.validate.validator(inner)
        app = make_app(tmp_path, inner, **kwargs)
        if request.param == "dispatcher":
            return wsgiref.validate.validator(Dispatcher([app])), "/app"
        return wsgiref.validate.validator(app), ""

    return build


# -- the inner apps ----------------------------------------------------------------------

def list_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"one", b"two"]


def current_app() -> str | None:
    """The name of the app whose context is bound, or None outside every app."""
    bound = binding.current.get()
    return bound.name if bound is not None else None


def generator_app(events: list[str]):
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            try:
                for i in range(3):
                    events.append(f"next {current_app()}")
                    yield b"chunk%d\n" % i
            finally:
                events.append(f"close {current_app()}")

        return body()

    return application


def raises_before_start_response(environ, start_response):
    raise RuntimeError("before start_response")


def raises_after_start_response(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    raise RuntimeError("after start_response")


def file_app(path: Path):
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(path.stat().st_size))])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    return application


# -- each response kind, validated --------------------------------------------------------

def test_list_body_is_valid_wsgi(validated):
    wsgi, prefix = validated(list_body)
    response = Response().run(wsgi, prefix + "/x")
    assert (response.status, response.body) == ("200 OK", b"onetwo")


def test_generator_body_is_valid_wsgi_iterated_and_closed(validated):
    events: list[str] = []
    wsgi, prefix = validated(generator_app(events))
    response = Response().run(wsgi, prefix + "/x")
    assert response.body == b"chunk0\nchunk1\nchunk2\n"
    assert events == ["next app", "next app", "next app", "close app"]


def test_generator_body_closed_early_is_closed_in_the_app_context(validated):
    events: list[str] = []
    wsgi, prefix = validated(generator_app(events))
    result = wsgi(environ_for(prefix + "/x"), Response().start_response)
    next(iter(result))
    result.close()
    assert events == ["next app", "close app"]


def test_404_is_valid_wsgi(tmp_path):
    wsgi = wsgiref.validate.validator(Dispatcher([make_app(tmp_path, list_body)]))
    response = Response().run(wsgi, "/elsewhere")
    assert response.status == "404 Not Found"
    assert response.header["content-type"].startswith("text/plain")
    assert int(response.header["content-length"]) == len(response.body)


def test_503_is_valid_wsgi(validated):
    wsgi, prefix = validated(None, spec="no_such_module_for_ctxserve:application")
    response = Response().run(wsgi, prefix + "/x")
    assert response.status.startswith("503 ")
    assert response.header["content-type"].startswith("text/plain")
    assert b"app" in response.body


@pytest.mark.parametrize("inner", [raises_before_start_response, raises_after_start_response])
def test_500_is_valid_wsgi(validated, inner, tmp_path):
    wsgi, prefix = validated(inner)
    response = Response().run(wsgi, prefix + "/x")
    assert response.status.startswith("500 ")
    assert response.header["content-type"].startswith("text/plain")
    assert b"RuntimeError" not in response.body
    assert "RuntimeError: " in (tmp_path / "app.err").read_text()


def test_file_wrapper_response_is_valid_wsgi(validated, tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(100_000))
    wsgi, prefix = validated(file_app(data), lint_inner=False)
    response = Response().run(wsgi, prefix + "/x", **{"wsgi.file_wrapper": wsgiref.util.FileWrapper})
    assert response.status == "200 OK"
    assert response.body == data.read_bytes()


def test_app_receives_a_valid_environ_after_the_mount_is_shifted(tmp_path):
    seen: list[tuple[str, str]] = []

    def inner(environ, start_response):
        seen.append((environ["SCRIPT_NAME"], environ["PATH_INFO"]))
        return list_body(environ, start_response)

    blog = make_app(tmp_path, wsgiref.validate.validator(inner), mount="/blog")
    wsgi = wsgiref.validate.validator(Dispatcher([blog]))
    for path in ("/blog", "/blog/", "/blog/a/b"):
        assert Response().run(wsgi, path).status == "200 OK"
    assert Response().run(wsgi, "/x", SCRIPT_NAME="/outer").status == "404 Not Found"
    assert Response().run(wsgi, "/blog/x", SCRIPT_NAME="/outer").status == "200 OK"
    assert seen == [("/blog", ""), ("/blog", "/"), ("/blog", "/a/b"), ("/outer/blog", "/x")]


def test_root_mounted_app_receives_a_valid_environ(tmp_path):
    root = make_app(tmp_path, wsgiref.validate.validator(list_body), mount="/")
    wsgi = wsgiref.validate.validator(Dispatcher([root]))
    for path in ("/", "/a", "/a/b/"):
        assert Response().run(wsgi, path).status == "200 OK"


# -- the response runs in the app's context ------------------------------------------------

@pytest.fixture
def probe(tmp_path: Path) -> tuple[Dispatcher, Path]:
    """The probe app "p" at /p in-process, its stdout going to a file."""
    stdout = tmp_path / "p.out"
    table = probe_app("p", "/p", stdout=str(stdout), stderr=str(tmp_path / "p.err"),
                      environ={"PROBE_FILE": str(tmp_path / "served.txt")})
    config = parse({"apps": {"p": table}}, tmp_path / "ctxserve.toml")
    app = App(config.apps[0])
    assert app.load(), app.error
    (tmp_path / "served.txt").write_text("served by p\n" * 100)
    return Dispatcher([app]), stdout


def test_generator_next_and_close_print_to_the_app_destination(probe, capsys):
    wsgi, stdout = probe
    environ = environ_for("/p/stream", QUERY_STRING="tag=t1")
    result = wsgiref.validate.validator(wsgi)(environ, Response().start_response)
    assert stdout.read_text() == ""  # nothing runs before the server iterates
    chunks = [next(result)]
    assert stdout.read_text() == "p t1 chunk0\n"
    chunks += list(result)
    result.close()
    assert chunks == [b"p 0\n", b"p 1\n", b"p 2\n"]
    assert stdout.read_text() == "p t1 chunk0\np t1 chunk1\np t1 chunk2\np t1 close\n"
    assert "chunk" not in capsys.readouterr().out


def test_file_wrapper_over_a_real_file_reaches_the_server_unwrapped(probe):
    wsgi, _ = probe
    environ = environ_for("/p/file", **{"wsgi.file_wrapper": wsgiref.util.FileWrapper})
    result = wsgi(environ, Response().start_response)
    try:
        # the server's own file_wrapper, so that it can still use sendfile
        assert isinstance(result, wsgiref.util.FileWrapper)
    finally:
        result.close()


def test_file_wrapper_close_runs_in_the_app_context(probe, tmp_path):
    wsgi, stdout = probe
    response = Response().run(wsgiref.validate.validator(wsgi), "/p/file", QUERY_STRING="tag=f1",
                              **{"wsgi.file_wrapper": wsgiref.util.FileWrapper})
    assert response.body == (tmp_path / "served.txt").read_bytes()
    assert stdout.read_text() == "p f1 file closed\n"


def plain_gunicorn(config: Path) -> list[str]:
    return [sys.executable, "-m", "gunicorn", f'ctxserve:from_config("{config}")', "-b", "127.0.0.1:0"]


# ``ctxserve serve`` runs its own workers; a plain gunicorn runs gunicorn's.
ENTRY_POINTS = pytest.mark.parametrize("entry", ["ctxserve-serve", "plain-gunicorn"])


@pytest.mark.server
@ENTRY_POINTS
def test_file_wrapper_response_is_served_by_gunicorn_and_closed(make_config, serve, tmp_path, entry):
    served = tmp_path / "served.bin"
    served.write_bytes(os.urandom(300_000))
    config = make_config({"files": probe_app("files", "/files", environ={"PROBE_FILE": str(served)}),
                          "other": probe_app("other", "/other")})
    server = serve(config, command=plain_gunicorn(config) if entry == "plain-gunicorn" else None)
    for i in range(3):
        response = server.get(f"/files/file?tag=t{i}")
        assert response.status_code == 200
        assert response.content == served.read_bytes()
        assert server.get("/other/whoami").json()["id"] == "other"
    assert wait_for(lambda: server.stdout().count(" file closed") >= 3)
    lines = [line for line in server.stdout().splitlines() if "file closed" in line]
    assert lines == [f"[files] files t{i} file closed" for i in range(3)]


@pytest.mark.server
@ENTRY_POINTS
def test_generator_response_prints_to_the_app_output_under_gunicorn(make_config, serve, entry):
    config = make_config({"gen": probe_app("gen", "/gen")})
    server = serve(config, command=plain_gunicorn(config) if entry == "plain-gunicorn" else None)
    assert server.get("/gen/stream?tag=g1").text == "gen 0\ngen 1\ngen 2\n"
    assert wait_for(lambda: "[gen] gen g1 close" in server.stdout())
    lines = [line for line in server.stdout().splitlines() if " g1 " in line]
    assert lines == ["[gen] gen g1 chunk0", "[gen] gen g1 chunk1", "[gen] gen g1 chunk2",
                     "[gen] gen g1 close"]
