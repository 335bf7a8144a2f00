"""Containment: no app, client or config change takes the server down.

* any exception an app raises — ``KeyboardInterrupt``,
  ``asyncio.CancelledError``, ``GeneratorExit`` too — in its call, its
  response iterator or its ``close()`` ends that request only, under every
  worker class and under a plain ``gunicorn ctxserve.wsgi:application``;
  the shared metrics and run directories survive it;
* a worker that booted and then exits with any status (``os._exit(3)``
  and ``os._exit(4)`` are gunicorn's boot-error codes) is replaced; the
  master keeps serving.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import requests

from support import wait_for
from reliability_helpers import Checker, faults_app, module_server, worker_pid

pytestmark = pytest.mark.server

BASE_EXCEPTIONS = ["KeyboardInterrupt", "CancelledError", "GeneratorExit"]
PLACES = ["call", "iter", "iter-late", "close"]


def is_b(r: requests.Response) -> bool:
    return r.status_code == 200 and r.json()["id"] == "b"


#: (worker class, plain gunicorn) pairs: ctxserve serve's three workers and
#: gunicorn's own gthread worker under the plain entry point.
KINDS = [("gthread", False), ("sync", False), ("gevent", False), ("gthread", True)]


@pytest.fixture(scope="module", params=KINDS, ids=lambda kind: f"{kind[0]}{'-plain' if kind[1] else ''}")
def served(request, tmp_path_factory):
    worker_class, plain = request.param
    apps = {"a": faults_app("a", "/a", stderr="a.err"), "b": faults_app("b", "/b")}
    server: dict = {"admin": "127.0.0.1:0"} if not plain else {}
    if plain:
        args = ("--worker-class", "gthread")
    else:
        server.update(worker_class=worker_class, threads=1 if worker_class == "sync" else 8)
        args = ()
    name = f"contain-{worker_class}{'-plain' if plain else ''}"
    tmp = tmp_path_factory.mktemp(name + "-tmp")  # where the master makes its shared directories
    with module_server(tmp_path_factory, name, apps, server, plain=plain, args=args,
                       env={"TMPDIR": str(tmp)}) as started:
        started.tmp = tmp
        yield started


@pytest.mark.parametrize("exc", BASE_EXCEPTIONS)
def test_a_base_exception_from_an_app_ends_that_request_only(served, exc):
    pid = worker_pid(served, "/b/x")
    with Checker(served, {"/b/x": is_b}) as others:
        wait_for(lambda: others.ok >= 2)
        for place in PLACES:
            where, _, late = place.partition("-")
            url = f"{served.url}/a/raise-base?exc={exc}&where={where}&tag={place}" + ("&late=1" if late else "")
            try:
                r = requests.get(url, timeout=30)
            except requests.RequestException:
                # A response that failed after it started can only be cut;
                # one that failed before may be (the server may not know).
                assert place in ("iter", "iter-late"), f"{exc} in {place}: connection dropped"
            else:
                if place == "call":
                    assert r.status_code == 500, (place, r.status_code, r.text[:200])
                elif place == "iter":
                    assert r.status_code == 500, (place, r.status_code, r.text[:200])
                elif place == "iter-late":
                    raise AssertionError(f"{exc} after the first chunk: a response that looks whole")
                else:  # the body was complete before close() raised
                    assert r.status_code == 200
        wait_for(lambda: others.ok >= 6)
    assert others.wrong == [], others.wrong[:5]
    assert worker_pid(served, "/b/x") == pid, f"{exc}: the worker was replaced"
    assert served.proc.poll() is None
    # The shared directories the admin listener needs are still there.
    if len(served.urls) > 1:
        assert requests.get(served.admin_url + "/metrics", timeout=10).status_code == 200
        assert len(list(served.tmp.glob("ctxserve-*"))) == 2


def test_the_exit_hook_removes_the_shared_directories_in_the_process_that_made_them_only(tmp_path, monkeypatch):
    """gunicorn runs ``on_exit`` wherever its Arbiter's halt path runs, which is
    a worker when an exception escapes the worker's loop: the metrics and run
    directories every worker shares are the master's to remove."""
    from ctxserve import config as ctxconfig
    from ctxserve.server import gunicorn_hooks

    for name in ("PROMETHEUS_MULTIPROC_DIR", "CTXSERVE_RUNTIME_DIR"):
        # Set, then removed: monkeypatch then removes what the hook sets
        # here at teardown, so later tests' servers do not inherit it.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    (tmp_path / "app.py").write_text("def application(e, s):\n    return []\n")
    (tmp_path / "c.toml").write_text(f'[server]\nadmin = "127.0.0.1:0"\n[apps.a]\napp = "app:application"\n'
                                     f'mount = "/"\npath = ["{tmp_path}"]\n')
    hooks = gunicorn_hooks(ctxconfig.load(tmp_path / "c.toml"))
    made = [os.environ["PROMETHEUS_MULTIPROC_DIR"], os.environ["CTXSERVE_RUNTIME_DIR"]]
    assert all(Path(d).is_dir() and Path(d).parent == tmp_path for d in made)
    child = os.fork()
    if child == 0:  # a worker: gunicorn's halt path runs on_exit here
        try:
            hooks["on_exit"](None)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    assert all(Path(d).is_dir() for d in made), "a forked process removed the master's directories"
    hooks["on_exit"](None)
    assert not any(Path(d).exists() for d in made)


def _answers_from_another(server, pid: int) -> bool:
    try:
        return worker_pid(server, "/b/x") != pid
    except requests.RequestException:
        return False


# -- a booted worker's exit status never stops the master ------------------------------

@pytest.mark.parametrize("worker_class", ["gthread", "sync", "gevent"])
def test_os_exit_3_or_4_after_boot_costs_one_worker_and_the_master_replaces_it(tmp_path_factory, worker_class):
    apps = {"a": faults_app("a", "/a"), "b": faults_app("b", "/b")}
    server_table = {"worker_class": worker_class, "threads": 1 if worker_class == "sync" else 4}
    with module_server(tmp_path_factory, f"exit34-{worker_class}", apps, server_table) as server:
        for code in (3, 4):
            pid = worker_pid(server, "/b/x")
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{server.url}/a/os-exit?code={code}&tag=exit{code}", timeout=30)
            assert wait_for(lambda: _answers_from_another(server, pid), timeout=30), \
                f"os._exit({code}): no new worker\n{server.stderr()[-2000:]}"
            assert server.proc.poll() is None, f"os._exit({code}) stopped the master"
        assert re.search(r"exited with code 3 after it booted", server.stderr())


# -- bounded, one-line, and caught by check: what serve would refuse -----------------------

import socket
import subprocess
import sys

from support import toml_text

CLI = [sys.executable, "-m", "ctxserve"]


def _config(tmp_path: Path, server: dict | None = None, gunicorn: dict | None = None) -> Path:
    (tmp_path / "app.py").write_text("def application(environ, start_response):\n"
                                     "    start_response('200 OK', [])\n    return [b'ok']\n")
    text = toml_text(server, {"a": {"app": "app:application", "mount": "/", "path": [str(tmp_path)]}})
    if gunicorn:
        text += "\n[server.gunicorn]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in gunicorn.items())
    path = tmp_path / "ctxserve.toml"
    path.write_text(text)
    return path


def _one_line(result: subprocess.CompletedProcess, *says: str) -> None:
    err = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, err[-2000:])
    assert "\n" not in err and "Traceback" not in err, err[-2000:]
    for part in says:
        assert part in err, err


@pytest.mark.parametrize(("server", "gunicorn", "says"), [
    ({"workers": 99999999999999999999}, None, ["server.workers", "from 1 to 256"]),
    ({"workers": 257}, None, ["server.workers", "from 1 to 256"]),
    ({"threads": 1025}, None, ["server.threads", "from 1 to 1024"]),
    ({"bind": "fd://99"}, None, ["server.bind", "fd 99 is not an open socket"]),
    (None, {"certfile": "missing.pem", "keyfile": "missing.key"}, ["server.gunicorn.certfile", "missing.pem"]),
    (None, {"pidfile": "/nonexistent-dir/ctxserve.pid"}, ["server.gunicorn.pidfile", "/nonexistent-dir"]),
    (None, {"worker_tmp_dir": "/nonexistent-dir"}, ["server.gunicorn.worker_tmp_dir", "/nonexistent-dir"]),
], ids=["workers-huge", "workers", "threads", "fd", "certfile", "pidfile", "worker_tmp_dir"])
def test_check_and_serve_refuse_in_one_line_what_serve_could_not_run(tmp_path, server, gunicorn, says):
    config = _config(tmp_path, server, gunicorn)
    _one_line(subprocess.run([*CLI, "check", str(config)], capture_output=True, text=True, timeout=60), *says)
    if server and "workers" in server:
        return  # serve reads the same file the same way; never risk its forks here
    _one_line(subprocess.run([*CLI, "serve", str(config)], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path), *says)


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--workers", "257", "--workers: expected an integer from 1 to 256"),
    ("--workers", "99999999999999999999", "--workers: expected an integer from 1 to 256"),
    ("--threads", "100000", "--threads: expected an integer"),
])
def test_workers_and_threads_are_bounded_on_the_command_line(tmp_path, flag, value, says):
    config = _config(tmp_path, {"bind": "127.0.0.1:0"})
    _one_line(subprocess.run([*CLI, "serve", str(config), flag, value], capture_output=True, text=True,
                             timeout=60), says)


def test_reload_with_a_bad_admin_address_is_one_line(tmp_path):
    config = _config(tmp_path)
    _one_line(subprocess.run([*CLI, "reload", str(config), "a", "--admin", "garbage"], capture_output=True,
                             text=True, timeout=60), "--admin", "garbage")


def test_an_inherited_socket_given_as_fd_is_served(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    config = _config(tmp_path, {"bind": f"fd://{listener.fileno()}"})
    proc = subprocess.Popen([*CLI, "serve", str(config)], pass_fds=[listener.fileno()], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: _get(f"http://127.0.0.1:{port}/") == "ok", timeout=30)
    finally:
        proc.terminate()
        proc.wait(30)
        listener.close()


def _get(url: str) -> str | None:
    try:
        return requests.get(url, timeout=5).text
    except requests.RequestException:
        return None


# -- SIGHUP never stops a serving server ----------------------------------------------------

import signal

from support import start_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("change", ["bind-in-use", "worker_tmp_dir"])
def test_a_sighup_whose_config_cannot_be_applied_is_refused_in_one_line_and_the_old_one_keeps_serving(
        tmp_path, change):
    port = _free_port()
    config = _config(tmp_path, {"bind": f"127.0.0.1:{port}"})
    # No --bind on the command line: the file's bind is what SIGHUP re-reads.
    server = start_server([*CLI, "serve", str(config)], tmp_path)
    taken = socket.socket()
    try:
        assert server.url.endswith(f":{port}")
        assert server.get("/").text == "ok"
        if change == "bind-in-use":
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            text = config.read_text().replace(f"127.0.0.1:{port}", f"127.0.0.1:{taken.getsockname()[1]}")
            says = "Address already in use"
        else:
            text = config.read_text() + '\n[server.gunicorn]\nworker_tmp_dir = "/nonexistent-dir"\n'
            says = "server.gunicorn.worker_tmp_dir"
        config.write_text(text)
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "config not reloaded" in server.stderr(), timeout=20), server.stderr()[-3000:]
        line = next(line for line in server.stderr().splitlines() if "config not reloaded" in line)
        assert says in line, line
        time.sleep(1.5)  # the graceful restart with the previous config
        assert server.proc.poll() is None, server.stderr()[-3000:]
        assert server.get("/").text == "ok"
        assert "Traceback" not in server.stderr()
    finally:
        taken.close()
        server.stop()


# -- gunicorn's control socket: each server its own, or none --------------------------------

def test_two_servers_never_share_a_control_socket_and_stopping_one_leaves_the_other(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # gunicorn's default is one path per user: ~/.gunicorn/gunicorn.ctl without XDG_RUNTIME_DIR.
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}
    servers = []
    try:
        for name, admin in (("one", True), ("two", True), ("three", False)):
            directory = tmp_path / name
            directory.mkdir()
            config = _config(directory, {"admin": "127.0.0.1:0"} if admin else None)
            servers.append(start_server([*CLI, "serve", str(config), "--bind", "127.0.0.1:0"], directory,
                                        env={**env, "TMPDIR": str(directory)}))
        # gunicorn starts its control server after the first workers.
        wait_for(lambda: all("Control socket listening" in s.stderr() for s in servers[:2]), timeout=20)
        sockets = [re.search(r"Control socket listening at (\S+)", s.stderr()) for s in servers]
        assert sockets[0] and sockets[1] and sockets[0].group(1) != sockets[1].group(1)
        assert all(Path(m.group(1)).parent.name.startswith("ctxserve-run-") for m in sockets[:2])
        assert sockets[2] is None, "a server without a run directory has the control socket off"
        assert not (home / ".gunicorn").exists()
        servers[0].stop()
        assert Path(sockets[1].group(1)).exists(), "stopping one server removed the other's socket"
    finally:
        for server in servers:
            server.stop()


# -- slow clients and hung handlers under the shipped defaults ------------------------------

import threading
import tomllib

from reliability_helpers import figure, ms, percentile

DEPLOY = Path(__file__).parent.parent / "deploy" / "ctxserve.toml"


def shipped_server_table() -> dict:
    """``[server]`` of deploy/ctxserve.toml, as the image and deploy/k8s run it (addresses aside)."""
    table = tomllib.loads(DEPLOY.read_text())["server"]
    return {k: v for k, v in table.items() if k not in ("bind", "admin")}


class Attack:
    """Hold *idle* connections that send nothing, *half* that send half a request
    line and stop, *readers* that ask for 8 MB and never read, and *hung*
    requests to the hung app (each sleeps 120 s), all on 127.0.0.1; release
    all on exit."""

    def __init__(self, server, *, idle: int, half: int, readers: int, hung: int) -> None:
        self.server, self.counts = server, {"idle": idle, "half": half, "readers": readers, "hung": hung}
        self.sockets: list[socket.socket] = []

    def _open(self) -> socket.socket:
        host, port = self.server.url.removeprefix("http://").rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sockets.append(s)
        return s

    def __enter__(self) -> "Attack":
        for _ in range(self.counts["idle"]):
            self._open()
        for _ in range(self.counts["half"]):
            self._open().sendall(b"GET /b/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        for _ in range(self.counts["readers"]):
            self._open().sendall(b"GET /a/big?mb=8 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for i in range(self.counts["hung"]):
            self._open().sendall(f"GET /hung/x?sleep=120&tag=h{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        return self

    def __exit__(self, *exc) -> None:
        for s in self.sockets:
            s.close()


def healthy_while(server, seconds: float, *, clients: int = 4) -> dict:
    """Ask the healthy app from *clients* threads for *seconds*, each request with
    a 5 s timeout: how many answered right, how many did not, and how fast."""
    ok, failed, latencies, lock = [0], [0], [], threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                good = requests.get(server.url + "/b/x", timeout=5).json()["id"] == "b"
            except (requests.RequestException, ValueError):
                good = False
            with lock:
                if good:
                    ok[0] += 1
                    latencies.append(time.perf_counter() - started)
                else:
                    failed[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return {"ok": ok[0], "failed": failed[0],
            "p50_ms": ms(percentile(latencies, 50)) if latencies else None,
            "p99_ms": ms(percentile(latencies, 99)) if latencies else None}


ATTACK = {"idle": 200, "half": 200, "readers": 20, "hung": 40}


@pytest.mark.parametrize("defaults", ["shipped", "gthread-8", "granian-8"])
def test_a_healthy_app_keeps_answering_while_hundreds_of_slow_connections_are_open_and_another_app_hangs(
        tmp_path_factory, defaults):
    if defaults == "granian-8":
        # Stopping: the hung handlers are killed after 2 s (granian's own setting).
        server_table = {"engine": "granian", "threads": 8, "granian": {"workers_kill_timeout": 2}}
    else:
        server_table = shipped_server_table() if defaults == "shipped" else {"worker_class": "gthread", "threads": 8}
        # Stopping: the hung handlers are killed after 2 s, not gunicorn's 30.
        server_table = {**server_table, "gunicorn": {"graceful_timeout": 2}}
    apps = {"a": faults_app("a", "/a"), "b": faults_app("b", "/b"), "hung": faults_app("hung", "/hung")}
    with module_server(tmp_path_factory, f"slow-{defaults}", apps, server_table) as server:
        alone = healthy_while(server, 1.5)
        with Attack(server, **ATTACK):
            time.sleep(1)  # every connection is in
            during = healthy_while(server, 4)
        after = healthy_while(server, 1.5)
        figure(f"containment.slow_clients.{defaults}", {"server": server_table, "attack": ATTACK,
                                                        "alone": alone, "during": during, "after": after})
        assert server.proc.poll() is None
        if defaults == "shipped":
            assert during["failed"] == 0 and during["ok"] > 0, during
            assert after["failed"] == 0 and after["ok"] > 0, after


# -- ctxserve reload says what is true ------------------------------------------------------

def test_reload_says_what_serves_an_app_it_could_not_reload(tmp_path_factory):
    apps = {"a": faults_app("a", "/a"), "broken": {**faults_app("broken", "/broken"), "app": "nowhere:application"}}
    with module_server(tmp_path_factory, "reload-truth", apps, {"admin": "127.0.0.1:0"}) as server:
        admin = server.admin_url.removeprefix("http://")

        def reload(*names: str) -> subprocess.CompletedProcess:
            return subprocess.run([*CLI, "reload", str(server.config), *names, "--admin", admin],
                                  capture_output=True, text=True, timeout=120)

        never = reload("broken")
        assert never.returncode == 1
        assert "keeps serving" not in never.stderr and "still answers 503" in never.stderr, never.stderr
        assert "nowhere" in never.stderr
        missing = reload("nosuchapp")
        assert missing.returncode == 2
        assert "keeps serving" not in missing.stderr and "no app named nosuchapp" in missing.stderr, missing.stderr
        # An app the running server does not have, added to the file, failing to load.
        server.config.write_text(server.config.read_text() + '\n[apps.late]\napp = "nowhere2:application"\n'
                                 'mount = "/late"\n')
        late = reload("late")
        assert late.returncode == 1
        assert "keeps serving" not in late.stderr and "nothing serves it" in late.stderr, late.stderr
        assert requests.get(server.url + "/a/x", timeout=10).json()["id"] == "a"


# -- C code that needs a file descriptor gets one for every destination ---------------------

FH = Path(__file__).parent / "apps" / "faulty_import"


def test_faulthandler_enabled_at_import_loads_and_dumps_under_every_stderr_destination(tmp_path_factory):
    destinations = ["null", "logging", "inherit", "file"]
    apps = {d: {"app": "fh:application", "mount": f"/{d}", "path": [str(FH)], "environ": {"APP_ID": d},
                "stderr": f"{d}.err" if d == "file" else d} for d in destinations}
    with module_server(tmp_path_factory, "faulthandler", apps) as server:
        for d in destinations:
            r = requests.get(f"{server.url}/{d}/", timeout=10)
            assert r.status_code == 200 and r.text.startswith(f"{d} fd="), (d, r.status_code, r.text[:300])
        # The dumps: "logging" and "inherit" on the server's stderr, "file" in its file, "null" nowhere.
        assert wait_for(lambda: server.stderr().count("in application") >= 2), server.stderr()[-2000:]
        assert "in application" in (server.directory / "file.err").read_text()
