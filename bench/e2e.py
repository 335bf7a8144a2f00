"""Section 4: HTTP end to end, a real gunicorn and ``wrk``, 127.0.0.1 only.

The bare app (``benchbare:application``) under plain gunicorn is compared
with the same app behind ``ctxserve serve`` with 1, 4 and 16 apps mounted.
Every server is gthread, 1 worker, 8 threads. All of them are started
first; then ``rounds`` rounds of one bounded ``wrk`` run per server, in a
rotated order each round, so that machine noise is spread over all of
them. Medians over the rounds; ratios against plain gunicorn.

Beside wrk's req/s and latency, the server's own CPU time (user + system,
master + worker, from ``/proc/PID/stat``) is read around every run: CPU
per request is what a server costs, and is far less disturbed than req/s
by whatever else the shared machine is doing.

The wrk script cycles through the same 16 request paths for every server
(``/a0/hello`` ... ``/a15/hello``, mapped onto the mounted apps for
ctxserve), so the client does the same work whatever it talks to.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .common import APPS, summary
from .servers import Server, ctxserve_command, ctxserve_config, gunicorn_command, running

PATHS = 16

_LUA = """\
local paths = {%(paths)s}
local i = 0
request = function()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "err_connect": %%d, ' ..
    '"err_read": %%d, "err_write": %%d, "err_status": %%d, "err_timeout": %%d, ' ..
    '"mean_us": %%.2f, "stdev_us": %%.2f, "max_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "p999_us": %%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.stdev, latency.max, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
"""


def wrk_script(path: Path, paths: list[str]) -> Path:
    path.write_text(_LUA % {"paths": ", ".join(json.dumps(p) for p in paths)})
    return path


def run_wrk(url: str, script: Path, *, seconds: float, connections: int, threads: int,
            cpus: str = "") -> dict[str, Any]:
    """One bounded wrk run; with *cpus* (e.g. ``"1"``) wrk is pinned there with taskset."""
    command = [*(["taskset", "-c", cpus] if cpus else []), "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
               "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            result = json.loads(line[len("BENCHJSON "):])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            result["errors"] = sum(result[k] for k in result if k.startswith("err_"))
            return result
    raise RuntimeError(f"wrk gave no result: {out.stdout}\n{out.stderr}")


def run_section(*, rounds: int, seconds: float, app_counts: list[int], connections: int = 8,
                wrk_threads: int = 1, warmup_seconds: float = 1.0) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install -y wrk)"}
    with tempfile.TemporaryDirectory(prefix="ctxserve-bench-http-") as tmp_name:
        tmp = Path(tmp_name)
        script = wrk_script(tmp / "paths.lua", [f"/a{k}/hello" for k in range(PATHS)])
        labels = ["gunicorn, bare app"] + [f"ctxserve, {n} app{'s' if n > 1 else ''}" for n in app_counts]
        with running([]) as servers:
            servers.append(Server(labels[0], gunicorn_command("benchbare:application"), tmp / "bare"))
            for label, n in zip(labels[1:], app_counts):
                apps = {f"a{k}": {"app": "benchbare:application", "mount": f"/a{k}",
                                  "path": [str(APPS)]} for k in range(n)}
                config = ctxserve_config(tmp / f"ctx{n}.toml", apps)
                servers.append(Server(label, ctxserve_command(config), tmp / f"ctx{n}"))
            for server in servers:
                server.wait_ready("/a0/hello")
            scripts = {servers[0].label: script}
            for server, n in zip(servers[1:], app_counts):
                scripts[server.label] = wrk_script(tmp / f"paths-{n}.lua",
                                                   [f"/a{k % n}/hello" for k in range(PATHS)])
            for server in servers if warmup_seconds > 0 else ():  # warm up: thread pools, caches
                run_wrk(server.url, scripts[server.label], seconds=warmup_seconds,
                        connections=connections, threads=wrk_threads)
            runs: dict[str, list[dict[str, Any]]] = {s.label: [] for s in servers}
            order = list(servers)
            for r in range(rounds):
                shift = r % len(order)
                this_round = order[shift:] + order[:shift]
                if r % 2:
                    this_round.reverse()
                for server in this_round:
                    cpu = server.cpu_seconds()
                    result = run_wrk(server.url, scripts[server.label], seconds=seconds,
                                     connections=connections, threads=wrk_threads)
                    result["server_cpu_s"] = server.cpu_seconds() - cpu
                    result["cpu_us_per_request"] = result["server_cpu_s"] / max(result["requests"], 1) * 1e6
                    runs[server.label].append(result)
            memory = {s.label: s.memory() for s in servers}
    base = labels[0]
    stats = {}
    for label, values in runs.items():
        stats[label] = {key: summary([v[key] for v in values])
                        for key in ("rps", "p50_us", "p90_us", "p99_us", "cpu_us_per_request")}
        stats[label]["errors"] = sum(v["errors"] for v in values)
    ratios = {}
    for label in labels[1:]:
        ratios[label] = {
            "rps": stats[label]["rps"]["median"] / stats[base]["rps"]["median"],
            "p99": stats[label]["p99_us"]["median"] / stats[base]["p99_us"]["median"],
            "p50": stats[label]["p50_us"]["median"] / stats[base]["p50_us"]["median"],
            "cpu_per_request": (stats[label]["cpu_us_per_request"]["median"]
                                / stats[base]["cpu_us_per_request"]["median"]),
            "cpu_us_per_request_added": (stats[label]["cpu_us_per_request"]["median"]
                                         - stats[base]["cpu_us_per_request"]["median"]),
            "rps_paired_median": statistics.median(
                c["rps"] / b["rps"] for c, b in zip(runs[label], runs[base])),
            "p99_paired_median": statistics.median(
                c["p99_us"] / b["p99_us"] for c, b in zip(runs[label], runs[base])),
        }
    return {"rounds": rounds, "seconds": seconds, "connections": connections, "wrk_threads": wrk_threads,
            "warmup_seconds": warmup_seconds,
            "server": "gthread, 1 worker, 8 threads", "labels": labels, "runs": runs, "stats": stats,
            "ratios": ratios, "memory_after": {k: {"rss": v["rss"], "pss": v["pss"]} for k, v in memory.items()}}
