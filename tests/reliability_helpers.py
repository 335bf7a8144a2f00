"""Helpers shared by test_reliability.py, test_soak.py and test_routing_edges.py.

* :func:`figure` records a measured number: printed (``pytest -s``) and, when
  ``CTXSERVE_FIGURES`` names a file, appended to it as one JSON line — that
  is where docs/reliability.md's figures come from.
* :func:`module_server` starts one ``ctxserve serve`` (or a plain gunicorn)
  for a whole test module.
* :class:`Checker` keeps asking the other apps while a fault happens and
  keeps every answer that was not the right one.
* :func:`raw_request` speaks HTTP over a socket, for requests no HTTP
  client would send.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from support import TEST_APPS, Server, serve_command, start_server, toml_text

FAULTS = TEST_APPS / "faults"


def figure(name: str, value: Any) -> None:
    """Record one measured figure (see the module docstring)."""
    print(f"[figure] {name} = {value}")
    path = os.environ.get("CTXSERVE_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "value": value, "at": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (*q* in 0..100) of *samples*."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def faults_app(app_id: str, mount: str, **extra: Any) -> dict[str, Any]:
    """The table of one faults app (tests/apps/faults) that knows itself as *app_id*."""
    environ = {"APP_ID": app_id, **extra.pop("environ", {})}
    return {"app": "faults:application", "mount": mount, "path": [str(FAULTS)],
            "environ": environ, **extra}


def write_config(directory: Path, apps: Mapping[str, Mapping[str, Any]],
                 server: Mapping[str, Any] | None = None) -> Path:
    path = directory / "ctxserve.toml"
    path.write_text(toml_text(server, apps))
    return path


def gunicorn_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", *args]


@contextlib.contextmanager
def module_server(tmp_path_factory: pytest.TempPathFactory, name: str,
                  apps: Mapping[str, Mapping[str, Any]], server: Mapping[str, Any] | None = None,
                  *, plain: bool = False, args: tuple[str, ...] = (),
                  env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """A ``ctxserve serve`` (or with *plain*, ``gunicorn ctxserve.wsgi:application``
    with ``--threads 8``) of *apps*, stopped on exit. *env* is added to the
    server's environment (which has ``PYTHONUNBUFFERED=1`` unless *env* says
    otherwise)."""
    directory = tmp_path_factory.mktemp(name)
    config = write_config(directory, apps, server)
    if plain:
        command = gunicorn_command("--threads", "8", *args, "ctxserve.wsgi:application")
        env = {**(env or {}), "CTXSERVE_CONFIG": str(config)}
    else:
        command, env = serve_command(config, *args), dict(env or {})
    started = start_server(command, directory, env=env)
    started.config = config  # type: ignore[attr-defined]
    started.directory = directory  # type: ignore[attr-defined]
    try:
        yield started
    finally:
        started.stop()


# -- processes -----------------------------------------------------------------------

def children(pid: int) -> list[int]:
    """The live child processes of *pid* (gunicorn's workers, for its master)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != b"Z":
            found.append(int(entry))
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of *pid*, in kB."""
    with open(f"/proc/{pid}/status") as f:
        status = f.read()
    return {key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]
            for key in ("VmRSS", "VmHWM")}


def worker_pid(server: Server, path: str) -> int:
    """The pid of the worker that answers *path* (an app route that reports ``pid``)."""
    return int(requests.get(server.url + path, timeout=10).json()["pid"])


# -- other apps, asked all along -------------------------------------------------------

class Checker:
    """Ask *checks* (``path -> predicate(response)``) over and over from *threads*
    threads until stopped (or *limit* seconds), keeping every wrong answer.

    Use as a context manager around a fault; ``ok`` counts the right answers
    and ``latencies`` their durations, ``wrong`` lists the others.
    """

    def __init__(self, server: Server, checks: Mapping[str, Callable[[requests.Response], bool]],
                 *, threads: int = 2, limit: float = 120, pause: float = 0.0) -> None:
        self.server, self.checks, self.limit, self.pause = server, dict(checks), limit, pause
        self.ok = 0
        self.latencies: list[float] = []
        self.wrong: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for path, check in self.checks.items():
                    started = time.perf_counter()
                    try:
                        r = session.get(self.server.url + path, timeout=30)
                        good = check(r)
                        what = f"{path}: {r.status_code} {r.text[:200]!r}"
                    except requests.RequestException as exc:
                        good, what = False, f"{path}: {exc!r}"
                    elapsed = time.perf_counter() - started
                    with self._lock:
                        if good:
                            self.ok += 1
                            self.latencies.append(elapsed)
                        else:
                            self.wrong.append(what)
                    if self.pause:
                        self._stop.wait(self.pause)

    def __enter__(self) -> Checker:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.limit + 35)


# -- raw HTTP ---------------------------------------------------------------------------

def raw_request(url: str, data: bytes, timeout: float = 10) -> bytes:
    """Send *data* as it is to the server at *url*; everything it answers until it closes."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of one HTTP/1.x response without chunked coding."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def get_raw(url: str, target: bytes, headers: Mapping[bytes, bytes] | None = None,
            version: bytes = b"HTTP/1.1") -> tuple[int, dict[str, str], bytes]:
    """One ``GET`` of *target* (bytes, sent as they are), closing the connection."""
    lines = [b"GET " + target + b" " + version]
    lines += [k + b": " + v for k, v in (headers or {}).items()]
    lines.append(b"Connection: close")
    return parse_response(raw_request(url, b"\r\n".join(lines) + b"\r\n\r\n"))
