"""Which listener a request arrived on, and which app answers it, never come from request data.

* The admin routes answer only requests that arrived on the admin
  listener's socket — whatever ``Host``, ``SERVER_NAME`` or ``SERVER_PORT``
  say (gunicorn fills the last two from ``Host`` on a unix socket).
* The admin listener may be a unix socket.
* A ``SCRIPT_NAME`` request header (which gunicorn applies for peers in
  ``forwarded_allow_ips``, 127.0.0.1 and every unix socket by default) never
  changes which app answers.

Real ``ctxserve serve`` processes, each worker class, raw HTTP/1.1 over
TCP and unix sockets.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import Server, probe_app, toml_text, wait_for
from ctxserve.config import parse
from ctxserve.server import application

pytestmark = pytest.mark.server

WORKER_CLASSES = ["gthread", "sync", "gevent"]
ADMIN_ROUTES = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/status"),
                ("POST", "/apps/a/reload")]


def raw(address: str | tuple[str, int], method: str, path: str, headers: dict[str, str] | None = None,
        timeout: float = 30) -> tuple[int, bytes]:
    """One HTTP/1.1 request over TCP (``(host, port)``) or a unix socket (a path): ``(status, body)``."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in (headers or {}).items()),
             "Content-Length: 0", "Connection: close", "", ""]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def listeners(server: Any) -> list[str]:
    """Every listener of *server*, in bind order, as gunicorn's ``Listening at:`` line names them."""
    line = wait_for(lambda: re.search(r"Listening at: (.*) \(\d+\)", server.stderr()))
    return line.group(1).split(",")


def serve_config(tmp_path: Path, server_table: dict[str, Any], apps: dict[str, Any]) -> Path:
    config = tmp_path / "ctxserve.toml"
    config.write_text(toml_text(server_table, apps))
    return config


def start(tmp_path: Path, config: Path, env: dict[str, str] | None = None,
          command: list[str] | None = None, pass_fds: tuple[int, ...] = ()) -> Any:
    """``ctxserve serve CONFIG`` with the binds of the config (no ``--bind``), any listener first."""
    command = command or [sys.executable, "-m", "ctxserve", "serve", str(config)]
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    out, err = tmp_path / "server.out", tmp_path / "server.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(command, stdout=o, stderr=e, stdin=subprocess.DEVNULL, cwd=tmp_path, pass_fds=pass_fds,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", "XDG_RUNTIME_DIR": str(runtime),
                                     **(env or {})})
    server = Server(proc, "", out, err)
    if not wait_for(lambda: "Listening at:" in server.stderr() or proc.poll() is not None, timeout=30) \
            or proc.poll() is not None:
        server.stop()
        raise RuntimeError(f"server did not start: {command}\n{server.stderr()}")
    return server


def tcp(listener: str) -> tuple[str, int]:
    host, _, port = listener.removeprefix("http://").rpartition(":")
    return host, int(port)


@pytest.fixture
def stopped() -> Any:
    servers: list[Any] = []
    yield servers.append
    for server in servers:
        server.stop()


# -- 1. the admin listener is the socket's, never the request's ---------------------------

@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_public_unix_socket_never_reaches_the_admin_routes(tmp_path: Path, stopped: Any,
                                                             worker_class: str) -> None:
    public = str(tmp_path / "public.sock")
    config = serve_config(tmp_path, {"bind": [f"unix:{public}"], "admin": "127.0.0.1:0",
                                     "worker_class": worker_class, "threads": 2},
                          {"a": probe_app("a", "/a")})
    server = start(tmp_path, config)
    stopped(server)
    admin = tcp(listeners(server)[-1])
    wait_for(lambda: raw(admin, "GET", "/healthz")[0] == 200)
    assert raw(public, "GET", "/a/whoami")[0] == 200
    for host in (f"{admin[0]}:{admin[1]}", f"localhost:{admin[1]}", admin[0]):
        for method, path in ADMIN_ROUTES:
            status, body = raw(public, method, path, {"Host": host})
            assert status == 404 and body.startswith(b"Not Found: no app is mounted"), (method, path, host, body)
    # ... and on the admin socket, whatever the Host says, the admin routes answer.
    assert raw(admin, "GET", "/healthz", {"Host": "public.example.com"}) == (200, b"ok\n")
    assert raw(admin, "GET", "/a/whoami")[0] == 404


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_the_admin_listener_on_a_unix_socket(tmp_path: Path, stopped: Any, worker_class: str) -> None:
    admin = str(tmp_path / "admin.sock")
    config = serve_config(tmp_path, {"bind": "127.0.0.1:0", "admin": f"unix:{admin}",
                                     "worker_class": worker_class, "threads": 2},
                          {"a": probe_app("a", "/a")})
    server = start(tmp_path, config)
    stopped(server)
    public = tcp(listeners(server)[0])
    wait_for(lambda: raw(admin, "GET", "/healthz")[0] == 200)
    assert raw(admin, "GET", "/healthz") == (200, b"ok\n")
    status, body = raw(admin, "GET", "/status", {"Accept": "application/json"})
    assert status == 200 and [row["name"] for row in json.loads(body)["apps"]] == ["a"]
    assert raw(admin, "GET", "/a/whoami")[0] == 404  # no app on the admin listener
    assert raw(public, "GET", "/a/whoami")[0] == 200
    for method, path in ADMIN_ROUTES:  # and no admin route on the public one
        assert raw(public, method, path, {"Host": "localhost"})[0] == 404, (method, path)
    # ctxserve reload talks to it over the unix socket.
    done = subprocess.run([sys.executable, "-m", "ctxserve", "reload", str(config), "a"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "a: reloaded" in done.stdout, done.stderr


def test_the_admin_listener_on_an_inherited_descriptor(tmp_path: Path, stopped: Any) -> None:
    """gunicorn serves inherited descriptors only or addresses only: both listeners are fds here."""
    with socket.socket() as inherited_public, socket.socket() as inherited_admin:
        for inherited in (inherited_public, inherited_admin):
            inherited.bind(("127.0.0.1", 0))
            inherited.listen()
        public, admin = inherited_public.getsockname(), inherited_admin.getsockname()
        config = serve_config(tmp_path, {"bind": f"fd://{inherited_public.fileno()}",
                                         "admin": f"fd://{inherited_admin.fileno()}"},
                              {"a": probe_app("a", "/a")})
        server = start(tmp_path, config, pass_fds=(inherited_public.fileno(), inherited_admin.fileno()))
    stopped(server)
    wait_for(lambda: raw(admin, "GET", "/healthz")[0] == 200)
    assert raw(admin, "GET", "/a/whoami")[0] == 404
    assert raw(public, "GET", "/a/whoami")[0] == 200
    assert raw(public, "GET", "/healthz", {"Host": f"{admin[0]}:{admin[1]}"})[0] == 404


def test_plain_gunicorn_workers_never_answer_admin_routes_and_say_why(tmp_path: Path, stopped: Any) -> None:
    """gunicorn's own workers cannot say which socket a request came in on: no admin routes, one line."""
    config = serve_config(tmp_path, {"admin": "127.0.0.1:0"}, {"a": probe_app("a", "/a")})
    command = [sys.executable, "-m", "gunicorn", "ctxserve.wsgi:application", "-b", "127.0.0.1:0",
               "-b", "127.0.0.1:0", "--worker-class", "gthread", "--threads", "2"]
    server = start(tmp_path, config, env={"CTXSERVE_CONFIG": str(config)}, command=command)
    stopped(server)
    for listener in listeners(server):
        address = tcp(listener)
        wait_for(lambda: raw(address, "GET", "/a/whoami")[0] == 200)
        for method, path in ADMIN_ROUTES:
            assert raw(address, method, path)[0] == 404, (listener, method, path)
    line = wait_for(lambda: re.search(r"ctxserve: .*admin.*\n", server.stderr()))
    assert "ctxserve serve" in line.group(0) and line.group(0).count("\n") == 1


# -- 2. no request header steers routing -------------------------------------------------

@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_script_name_header_never_changes_which_app_answers(tmp_path: Path, stopped: Any,
                                                              worker_class: str) -> None:
    config = serve_config(tmp_path, {"bind": "127.0.0.1:0", "worker_class": worker_class, "threads": 2},
                          {"a": probe_app("a", "/a"), "b": probe_app("b", "/b")})
    server = start(tmp_path, config)
    stopped(server)
    address = tcp(listeners(server)[0])
    wait_for(lambda: raw(address, "GET", "/b/whoami")[0] == 200)
    status, body = raw(address, "GET", "/b/whoami")
    assert status == 200 and json.loads(body)["id"] == "b"
    # 127.0.0.1 is in gunicorn's default forwarded_allow_ips: the header is applied.
    status, body = raw(address, "GET", "/a/b/whoami", {"SCRIPT_NAME": "/a"})
    assert status != 200 or json.loads(body)["id"] != "b", body
    status, body = raw(address, "GET", "/a/whoami", {"SCRIPT_NAME": "/a"})
    assert status == 200 and json.loads(body)["id"] == "a"


def test_in_process_a_script_name_header_is_undone_before_routing(tmp_path: Path) -> None:
    """What gunicorn builds for ``GET /a/b/whoami`` with ``SCRIPT_NAME: /a`` from a trusted peer."""
    config = parse({"apps": {"a": probe_app("a", "/a"), "b": probe_app("b", "/b")}}, tmp_path / "x.toml")
    wsgi = application(config)
    seen: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/a", "PATH_INFO": "/b/whoami",
               "HTTP_SCRIPT_NAME": "/a", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
               "wsgi.input": None, "wsgi.errors": sys.stderr}
    body = b"".join(wsgi(environ, lambda status, headers, exc_info=None: seen.append(status)))
    assert environ["ctxserve.app"] == "a" and (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/a", "/b/whoami")
    assert seen == ["404 Not Found"] and json.loads(body) == {"error": "no route /b/whoami"}


def test_a_script_name_header_never_changes_which_app_answers_under_each_engine(serve, make_config,
                                                                                engine) -> None:
    server = serve(make_config({"a": probe_app("a", "/a"), "b": probe_app("b", "/b")}))
    assert server.get("/b/whoami").json()["id"] == "b"
    answer = server.get("/a/b/whoami", headers={"SCRIPT_NAME": "/a"})
    assert answer.status_code != 200 or answer.json()["id"] != "b", answer.text
    answer = server.get("/a/whoami", headers={"SCRIPT_NAME": "/a"})
    assert answer.status_code == 200 and answer.json()["id"] == "a"
