"""Starting and stopping real gunicorn servers on 127.0.0.1, and reading their memory.

Every server binds an ephemeral port (``127.0.0.1:0``, read back from
gunicorn's "Listening at" line), gets an ``XDG_RUNTIME_DIR`` of its own
(gunicorn >= 27 keeps a control socket there, and two servers must not
share one), and is stopped — SIGTERM, then SIGKILL — by whoever started it,
also when the benchmark fails half way.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import APPS

_LISTENING = re.compile(r"Listening at: http://([\d.]+:\d+)")


class Server:
    """One gunicorn (master + workers) that this process started."""

    def __init__(self, label: str, command: Sequence[str], workdir: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.label = label
        self.command = list(command)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        runtime = workdir / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        self.out_path, self.err_path = workdir / "stdout", workdir / "stderr"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_RUNTIME_DIR": str(runtime),
                    **(env or {})}
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         cwd=workdir, env=full_env)
        self.address: str | None = None

    @property
    def url(self) -> str:
        assert self.address is not None
        return f"http://{self.address}"

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        """Until gunicorn listens and a worker answers *path* with 200."""
        deadline = time.monotonic() + timeout
        while self.address is None:
            match = _LISTENING.search(self.err_path.read_text(errors="replace"))
            if match:
                self.address = match.group(1)
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: server did not start\n{self.tail()}")
            time.sleep(0.05)
        while True:
            try:
                with urllib.request.urlopen(self.url + path, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: no 200 from {path}\n{self.tail()}")
            time.sleep(0.05)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return response.read()  # type: ignore[no-any-return]

    def pids(self) -> list[int]:
        """The master and its worker processes."""
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid, *map(int, children)]

    def memory(self) -> dict[str, Any]:
        """VmRSS and Pss (smaps_rollup) of master and workers, in bytes."""
        procs = [process_memory(pid) for pid in self.pids()]
        return {"rss": sum(p["rss"] for p in procs), "pss": sum(p["pss"] for p in procs),
                "uss": sum(p["uss"] for p in procs), "processes": procs}

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the master and its workers."""
        return sum(process_cpu_seconds(pid) for pid in self.pids())

    def tail(self, chars: int = 3000) -> str:
        err = self.err_path.read_text(errors="replace")[-chars:]
        out = self.out_path.read_text(errors="replace")[-chars:]
        return f"--- stderr ---\n{err}\n--- stdout ---\n{out}"

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15 of stat)


def process_memory(pid: int) -> dict[str, Any]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]
    name = re.search(r"^Name:\s+(.+)$", status, re.M).group(1)  # type: ignore[union-attr]
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()

    def field(key: str) -> int:
        match = re.search(rf"^{key}:\s+(\d+) kB", rollup, re.M)
        return int(match.group(1)) * 1024 if match else 0

    return {"pid": pid, "name": name, "rss": rss, "pss": field("Pss"),
            "uss": field("Private_Clean") + field("Private_Dirty")}


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[list[Server]]:
    """Stop every server in *servers* (which the body may extend) on the way out."""
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def gunicorn_command(app_spec: str, *, threads: int = 8, extra: Sequence[str] = ()) -> list[str]:
    """Plain gunicorn: gthread, 1 worker, *threads* threads, the bench apps importable."""
    return [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1",
            "--threads", str(threads), "--bind", "127.0.0.1:0", "--pythonpath", str(APPS),
            *extra, app_spec]


def ctxserve_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "ctxserve", "serve", str(config), "--bind", "127.0.0.1:0"]


def ctxserve_config(path: Path, apps: Mapping[str, Mapping[str, Any]], *, threads: int = 8) -> Path:
    """A ctxserve.toml with ``[server]`` = gthread, 1 worker, *threads* threads."""
    import json

    def value(v: Any) -> str:
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines = ["[server]", 'worker_class = "gthread"', "workers = 1", f"threads = {threads}"]
    for name, table in apps.items():
        lines.append(f"\n[apps.{name}]")
        lines += [f"{k} = {value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
