"""HTTP side by side: ctxserve on both engines, uWSGI sub-interpreters, granian + DispatcherMiddleware.

Run from the repository root (needs wrk, taskset, granian and uWSGI —
``pip install uwsgi`` builds it with gcc)::

    python -m bench.engines [--rounds 3] [--seconds 4] [--out bench/results]

For tiny apps (``benchbare``) and small Flask apps (``benchflask``), and
N = 1, 4, 16 apps mounted at ``/a0`` ... ``/a{N-1}``, every arrangement
below serves the same paths; one interleaved run: every server is started
first, then each round runs one bounded ``wrk`` per server in a rotated
order. The server is pinned to core 0 (``taskset -c 0``), wrk (2 threads,
16 connections) to core 1. Medians over rounds; ratios are median/median
of the same run. Then the memory (VmRSS and Pss, master + workers) of
every server with 16 Flask apps, after the load.

| arrangement | isolation |
| --- | --- |
| `gunicorn` gthread/8 + `ctxserve.wsgi:application` | every app |
| `ctxserve serve` (gunicorn engine, gthread/8) | every app |
| `ctxserve serve --engine granian` (8 threads) | every app |
| uWSGI, one sub-interpreter per `--mount`, 8 threads, `--http11-socket` (keep-alive, as wrk asks) | every app |
| granian (WSGI, 8 blocking threads) + werkzeug `DispatcherMiddleware` | none |
| granian serving one bare app (tiny, N = 1 only) | — |

Writes ``engines-YYYY-MM-DD.md`` and ``.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import APPS, BENCH, summary
from .e2e import run_wrk, wrk_script
from .servers import Server, ctxserve_config, running

KINDS = {"tiny": ("benchbare:application", "benchbare.py", "/hello"),
         "flask": ("benchflask:create_app()", "benchflaskwsgi.py", "/items.json")}
THREADS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


def _pinned(command: list[str]) -> list[str]:
    return ["taskset", "-c", "0", *command]


def _ctx_apps(kind: str, n: int) -> dict[str, dict[str, Any]]:
    spec = KINDS[kind][0]
    return {f"a{k}": {"app": spec, "mount": f"/a{k}", "path": [str(APPS)]} for k in range(n)}


def arrangements(kind: str, n: int, tmp: Path) -> list[Server]:
    """Every server for *kind* x *n*, started (not yet ready)."""
    servers = []
    label = f"{kind}, {n} app{'s' if n > 1 else ''}: "
    config = ctxserve_config(tmp / f"{kind}{n}.toml", _ctx_apps(kind, n), threads=THREADS)
    granian_config = tmp / f"{kind}{n}-granian.toml"
    granian_config.write_text(config.read_text().replace('worker_class = "gthread"\n', 'engine = "granian"\n'))
    py = sys.executable
    servers.append(Server(label + "gunicorn + ctxserve.wsgi", _pinned(
        [py, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1", "--threads", str(THREADS),
         "--bind", "127.0.0.1:0", "ctxserve.wsgi:application"]), tmp / f"{kind}{n}-gwsgi",
        env={"CTXSERVE_CONFIG": str(config)}))
    servers.append(Server(label + "ctxserve serve (gunicorn)", _pinned(
        [py, "-m", "ctxserve", "serve", str(config), "--bind", "127.0.0.1:0"]), tmp / f"{kind}{n}-serve"))
    servers.append(Server(label + "ctxserve serve (granian)", _pinned(
        [py, "-m", "ctxserve", "serve", str(granian_config), "--bind", "127.0.0.1:0"]),
        tmp / f"{kind}{n}-granian"))
    uwsgi = shutil.which("uwsgi") or str(Path(py).with_name("uwsgi"))
    if Path(uwsgi).exists():
        port = _free_port()
        mounts = [arg for k in range(n) for arg in ("--mount", f"/a{k}={APPS / KINDS[kind][1]}")]
        server = Server(label + "uWSGI sub-interpreters", _pinned(
            [uwsgi, "--http11-socket", f"127.0.0.1:{port}", "--processes", "1", "--threads", str(THREADS),
             "--pythonpath", str(APPS), "--manage-script-name", "--disable-logging", "--die-on-term",
             "--need-app", *mounts]), tmp / f"{kind}{n}-uwsgi")
        server.address = f"127.0.0.1:{port}"
        servers.append(server)
    granian = [py, "-m", "granian", "--interface", "wsgi", "--blocking-threads", str(THREADS),
               "--no-ws", "--log-level", "warning"]
    port = _free_port()
    server = Server(label + "granian + DispatcherMiddleware", _pinned(
        [*granian, "--port", str(port), "benchmounts:application"]), tmp / f"{kind}{n}-gdisp",
        env={"PYTHONPATH": str(APPS), "BENCH_KIND": kind, "BENCH_APPS": str(n)})
    server.address = f"127.0.0.1:{port}"
    servers.append(server)
    if kind == "tiny" and n == 1:
        port = _free_port()
        server = Server(label + "granian, one bare app", _pinned(
            [*granian, "--port", str(port), "benchbare:application"]), tmp / "granian-bare",
            env={"PYTHONPATH": str(APPS)})
        server.address = f"127.0.0.1:{port}"
        servers.append(server)
    return servers


def measure(kind: str, n: int, *, rounds: int, seconds: float, tmp: Path) -> dict[str, Any]:
    suffix = KINDS[kind][2]
    with running([]) as servers:
        servers.extend(arrangements(kind, n, tmp))
        for server in servers:
            server.wait_ready(f"/a0{suffix}")
        script = wrk_script(tmp / f"{kind}{n}.lua", [f"/a{k % n}{suffix}" for k in range(16)])
        for server in servers:  # warm-up
            _wrk(server, script, 1)
        runs: dict[str, list[dict[str, Any]]] = {s.label: [] for s in servers}
        for r in range(rounds):
            order = servers[r % len(servers):] + servers[:r % len(servers)]
            for server in reversed(order) if r % 2 else order:
                runs[server.label].append(_wrk(server, script, seconds))
        memory = {s.label: s.memory() for s in servers} if kind == "flask" and n == 16 else {}
    stats = {label: {key: summary([v[key] for v in values]) for key in ("rps", "p50_us", "p99_us")}
             | {"errors": sum(v["errors"] for v in values)} for label, values in runs.items()}
    return {"kind": kind, "apps": n, "stats": stats, "runs": runs,
            "memory": {k: {"rss": v["rss"], "pss": v["pss"]} for k, v in memory.items()}}


def _wrk(server: Server, script: Path, seconds: float) -> dict[str, Any]:
    return run_wrk(server.url, script, seconds=seconds, connections=16, threads=2, cpus="1")


def report(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# HTTP side by side: ctxserve's two engines, uWSGI, granian + DispatcherMiddleware ({meta['date']})",
             "", f"Machine: {meta['cpu']}, {meta['cores']} cores, Python {meta['python']}, "
             f"granian {meta['granian']}, uWSGI {meta['uwsgi']}; git {meta['commit']}. "
             f"Shared machine (load average {meta['load_start']} at start, {meta['load_end']} at end): "
             "read ratios within one table, not absolutes.", "",
             f"Server pinned to core 0, wrk -t2 -c16 pinned to core 1, {meta['rounds']} rounds × "
             f"{meta['seconds']} s in rotated order after 1 s warm-up; medians.", ""]
    for result in results:
        stats = result["stats"]
        lines += [f"## {result['kind']}, {result['apps']} app{'s' if result['apps'] > 1 else ''}", "",
                  "| arrangement | req/s | p50 ms | p99 ms | errors | ctxserve on granian ÷ this (req/s) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        ours = next(v for k, v in stats.items() if k.endswith("ctxserve serve (granian)"))["rps"]["median"]
        for label, s in stats.items():
            lines.append(f"| {label.split(': ', 1)[1]} | {s['rps']['median']:,.0f} | {s['p50_us']['median'] / 1000:.2f} | "
                         f"{s['p99_us']['median'] / 1000:.2f} | {s['errors']} | "
                         f"{ours / s['rps']['median']:.2f}× |")
        lines.append("")
        if result["memory"]:
            lines += ["Memory with 16 Flask apps, after the load (master + workers):", "",
                      "| arrangement | VmRSS MiB | Pss MiB |", "| --- | ---: | ---: |"]
            for label, m in result["memory"].items():
                lines.append(f"| {label.split(': ', 1)[1]} | {m['rss'] / 2**20:.0f} | {m['pss'] / 2**20:.0f} |")
            lines.append("")
    return "\n".join(lines)


def _meta(rounds: int, seconds: float) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    uwsgi = shutil.which("uwsgi") or str(Path(sys.executable).with_name("uwsgi"))
    version = subprocess.run([uwsgi, "--version"], capture_output=True, text=True).stdout.strip() \
        if Path(uwsgi).exists() else "not installed"
    import granian

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=BENCH).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d"), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "granian": granian.__version__, "uwsgi": version,
            "commit": commit, "rounds": rounds, "seconds": seconds,
            "load_start": " ".join(Path("/proc/loadavg").read_text().split()[:3])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--apps", default="1,4,16")
    parser.add_argument("--kinds", default="tiny,flask")
    parser.add_argument("--out", default=str(BENCH / "results"))
    args = parser.parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"bench.engines: {tool} is not installed", file=sys.stderr)
            return 2
    meta = _meta(args.rounds, args.seconds)
    results = []
    with tempfile.TemporaryDirectory(prefix="ctxserve-bench-engines-") as tmp_name:
        for kind in args.kinds.split(","):
            for n in map(int, args.apps.split(",")):
                tmp = Path(tmp_name) / f"{kind}{n}"
                tmp.mkdir()
                results.append(measure(kind, n, rounds=args.rounds, seconds=args.seconds, tmp=tmp))
                print(f"{kind} x {n}: " + ", ".join(f"{k.split(': ', 1)[1]} {v['rps']['median']:,.0f}"
                                                     for k, v in results[-1]["stats"].items()), flush=True)
    meta["load_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"engines-{meta['date']}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    stem.with_suffix(".md").write_text(report(results, meta) + "\n")
    print(f"wrote {stem}.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
