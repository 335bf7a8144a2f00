"""Section 5: memory of N small Flask apps, one ctxserve process vs N gunicorns.

For each N: N plain gunicorns (gthread, 1 worker, 8 threads), each serving
one ``benchflask:create_app("aK")``, are started together, warmed up with
the same requests, measured, and stopped; then one ``ctxserve serve`` with
the same N apps mounted at ``/aK`` is started, warmed up, measured, stopped.

Memory is read from ``/proc`` for every master and worker process:

* **Pss** (``/proc/PID/smaps_rollup``): each page shared by k processes
  counts 1/k to each, so the sum over processes is the memory they really
  take together. This is the headline number.
* **VmRSS** (``/proc/PID/status``): every resident page counted in full for
  every process that maps it, so a sum double-counts what a master shares
  with its worker (and libraries shared by all). Reported beside it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .common import APPS
from .servers import Server, ctxserve_command, ctxserve_config, gunicorn_command, running

WARM_PATHS = ("/", "/items.json", "/echo?x=1")
WARM_REPEATS = 5


def _warm(server: Server, prefix: str = "") -> None:
    for _ in range(WARM_REPEATS):
        for path in WARM_PATHS:
            server.get(prefix + path)


def _spec(k: int) -> str:
    return f'benchflask:create_app("a{k}")'


def measure_plain(n: int, tmp: Path) -> dict[str, Any]:
    with running([]) as servers:
        for k in range(n):
            servers.append(Server(f"gunicorn a{k}", gunicorn_command(_spec(k)), tmp / f"plain-{n}-{k}"))
        for server in servers:
            server.wait_ready("/")
        for server in servers:
            _warm(server)
        time.sleep(0.5)
        per_server = [server.memory() for server in servers]
    return {"rss": sum(m["rss"] for m in per_server), "pss": sum(m["pss"] for m in per_server),
            "uss": sum(m["uss"] for m in per_server), "processes": sum(len(m["processes"]) for m in per_server),
            "per_server": per_server}


def measure_ctxserve(n: int, tmp: Path) -> dict[str, Any]:
    apps = {f"a{k}": {"app": _spec(k), "mount": f"/a{k}", "path": [str(APPS)]} for k in range(n)}
    config = ctxserve_config(tmp / f"ctxserve-{n}.toml", apps)
    with running([]) as servers:
        server = Server(f"ctxserve {n} apps", ctxserve_command(config), tmp / f"ctx-{n}")
        servers.append(server)
        server.wait_ready("/a0/", timeout=120)
        for k in range(n):
            _warm(server, f"/a{k}")
        time.sleep(0.5)
        mem = server.memory()
    return {"rss": mem["rss"], "pss": mem["pss"], "uss": mem["uss"], "processes": len(mem["processes"]),
            "per_server": [mem]}


def run_section(*, counts: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {"counts": counts, "plain": {}, "ctxserve": {}, "ratios": {}}
    with tempfile.TemporaryDirectory(prefix="ctxserve-bench-mem-") as tmp_name:
        tmp = Path(tmp_name)
        for i, n in enumerate(counts):
            # alternate which side goes first, so that neither always meets a warmer page cache
            sides = [("plain", measure_plain), ("ctxserve", measure_ctxserve)]
            for side, measure in (sides if i % 2 == 0 else sides[::-1]):
                results[side][str(n)] = measure(n, tmp)
            plain, ctx = results["plain"][str(n)], results["ctxserve"][str(n)]
            results["ratios"][str(n)] = {"pss": ctx["pss"] / plain["pss"], "rss": ctx["rss"] / plain["rss"]}
    if len(counts) > 1:
        lo, hi = counts[0], counts[-1]
        results["per_app_bytes"] = {
            side: {key: (results[side][str(hi)][key] - results[side][str(lo)][key]) / (hi - lo)
                   for key in ("pss", "rss", "uss")}
            for side in ("plain", "ctxserve")
        }
    return results
