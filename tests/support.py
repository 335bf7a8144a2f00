"""Test helpers: configs, real servers on 127.0.0.1, bounded load.

The fixtures that use them are in conftest.py.

Servers are real gunicorn processes (``ctxserve serve`` or plain
``gunicorn``) on 127.0.0.1 with an ephemeral port, read back from
gunicorn's "Listening at" line; every one is stopped when its test ends.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).parent
TEST_APPS = HERE / "apps"
ROOT = HERE.parent


# -- configs ---------------------------------------------------------------------

def toml_value(value: Any) -> str:
    """TOML for any value a test makes (strings with every character written as TOML allows)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml_text(server: Mapping[str, Any] | None, apps: Mapping[str, Mapping[str, Any]]) -> str:
    lines = []
    if server:
        lines.append("[server]")
        lines += [f"{k} = {toml_value(v)}" for k, v in server.items()]
    for name, table in apps.items():
        lines.append(f"\n[apps.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def probe_app(app_id: str, mount: str, **extra: Any) -> dict[str, Any]:
    """The table of one probe app (tests/apps/probe) that knows itself as *app_id*."""
    table: dict[str, Any] = {
        "app": "probe:application",
        "mount": mount,
        "path": [str(TEST_APPS / "probe")],
    }
    environ = {"APP_ID": app_id, **extra.pop("environ", {})}
    table["environ"] = environ
    table.update(extra)
    return table


# -- servers ---------------------------------------------------------------------

class Server:
    """A running gunicorn: its URL, a session, and its captured output."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, out: Path, err: Path) -> None:
        self.proc, self.url, self.out_path, self.err_path = proc, url, out, err
        self.urls = [url]  # all listening addresses, set by start_server
        self.session = requests.Session()

    @property
    def admin_url(self) -> str:
        """The admin listener's URL: the last listener, when there are several."""
        assert len(self.urls) > 1, f"no admin listener among {self.urls}"
        return self.urls[-1]

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.url + path, **kwargs)

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        # An idle keep-alive connection holds a gthread worker's graceful exit
        # for seconds: close the session's connections first.
        self.session.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.session.close()
        return self.proc.returncode


_LISTENING = re.compile(r"Listening at: http://([\d.]+:\d+)")
_ADDRESS = re.compile(r"http://([\d.]+:\d+)")


def start_server(command: list[str], tmp_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, ready_path: str | None = "/__ctxserve_ready__",
                 timeout: float = 30) -> Server:
    """Start *command* (a gunicorn), wait until it listens and a worker answers."""
    n = len(list(tmp_path.glob("server-*.out")))
    out, err = tmp_path / f"server-{n}.out", tmp_path / f"server-{n}.err"
    # gunicorn >= 27 puts a control socket in $XDG_RUNTIME_DIR (else ~/.gunicorn):
    # a directory per server, so that concurrent servers never share one.
    runtime = tmp_path / f"server-{n}.run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_RUNTIME_DIR": str(runtime), **(env or {})}
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(command, stdout=o, stderr=e, env=full_env, cwd=cwd or tmp_path,
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _LISTENING.search(err.read_text(errors="replace"))
        if match or proc.poll() is not None:
            break
        time.sleep(0.05)
    if not match:
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"server did not start: {command}\n--- stderr ---\n{err.read_text()}"
                           f"\n--- stdout ---\n{out.read_text()}")
    server = Server(proc, f"http://{match.group(1)}", out, err)
    # Every listener, in bind order (``ctxserve serve`` binds the admin address last).
    line = err.read_text(errors="replace")[match.start():].partition("\n")[0]
    server.urls = [f"http://{address}" for address in _ADDRESS.findall(line)]
    if ready_path is not None:  # the first answer means a worker has loaded the apps
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                server.get(ready_path, timeout=5)
                break
            time.sleep(0.05)
    return server


#: The servers ``ctxserve serve`` runs the apps on; the isolation tests run under each.
ENGINES = ("gunicorn", "granian")


def serve_command(config: Path, *args: str, engine: str | None = None) -> list[str]:
    """``ctxserve serve CONFIG`` on an ephemeral port (with ``--engine`` when *engine* is given)."""
    engine_flag = ["--engine", engine] if engine else []
    return [sys.executable, "-m", "ctxserve", "serve", str(config), "--bind", "127.0.0.1:0", *engine_flag, *args]


# -- bounded load ------------------------------------------------------------------

def hammer(request: Callable[[requests.Session, int, int], None], *, threads: int = 8,
           per_thread: int = 200, timeout: float = 120) -> int:
    """Run *request(session, thread_no, i)* from *threads* client threads.

    Bounded in count (*per_thread* each) and in time (*timeout* overall);
    returns the number of requests made. The first failure is re-raised.
    """
    deadline = time.monotonic() + timeout
    done = [0] * threads

    def client(t: int) -> None:
        with requests.Session() as session:
            for i in range(per_thread):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"load did not finish in {timeout}s")
                request(session, t, i)
                done[t] += 1

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(client, t) for t in range(threads)]:
            future.result()
    return sum(done)


def wait_for(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05) -> Any:
    """Poll *predicate* until it is truthy (bounded); return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


