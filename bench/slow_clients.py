"""Slow clients and hung handlers under both engines (``python -m bench.slow_clients``).

One ``ctxserve serve`` per engine with the shipped defaults (1 worker, 8
threads) and two probe apps (tests/apps/probe). For each: the latency of
one app asked alone; with 200 slow clients (connections that send a
request's headers one line a second and never finish them); and with 16
requests of the other app that hang for 6 s (no bulkhead). Prints JSON.
"""
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from .common import BENCH
from .servers import Server, running

sys.path.insert(0, str(BENCH.parent / "tests"))
from support import probe_app, toml_text  # noqa: E402
py = sys.executable
tmp = Path(tempfile.mkdtemp())
def start(engine):
    cfg = tmp / f"{engine}.toml"
    cfg.write_text(toml_text({"threads": 8, "engine": engine}, {"a": probe_app("a", "/a"), "slow": probe_app("slow", "/slow")}))
    return Server(engine, [py, "-m", "ctxserve", "serve", str(cfg), "--bind", "127.0.0.1:0"], tmp / engine)
def lat(url, n=60):
    out, fails = [], 0
    for _ in range(n):
        t = time.monotonic()
        try:
            r = requests.get(url, timeout=3); ok = r.status_code == 200
        except requests.RequestException:
            ok = False
        if ok: out.append((time.monotonic() - t) * 1000)
        else: fails += 1
    out.sort()
    return {"n": len(out), "failed": fails, "p50_ms": round(statistics.median(out), 1) if out else None, "p99_ms": round(out[int(len(out)*0.99)-1], 1) if out else None}
res = {}
with running([]) as servers:
    for e in ("gunicorn", "granian"):
        servers.append(start(e))
    for s in servers: s.wait_ready("/a/whoami")
    for s in servers:
        host, port = s.address.split(":")
        r = {"alone": lat(s.url + "/a/whoami")}
        socks = []
        for i in range(200):  # slowloris: headers never finished
            c = socket.create_connection((host, int(port))); c.sendall(b"GET /a/whoami HTTP/1.1\r\nHost: x\r\n"); socks.append(c)
        stop = threading.Event()
        def trickle():
            while not stop.wait(1):
                for c in socks:
                    try: c.sendall(b"X-a: b\r\n")
                    except OSError: pass
        t = threading.Thread(target=trickle, daemon=True); t.start()
        time.sleep(1)
        r["with_200_slow_clients"] = lat(s.url + "/a/whoami", n=20)
        stop.set(); [c.close() for c in socks]
        time.sleep(1)
        # hung handlers: 16 requests to another app that sleep 6 s (no bulkhead)
        hung = [threading.Thread(target=lambda: requests.get(s.url + "/slow/pid?sleep=6", timeout=30), daemon=True) for _ in range(16)]
        [h.start() for h in hung]; time.sleep(0.5)
        r["with_16_hung_requests_of_another_app"] = lat(s.url + "/a/whoami", n=10)
        [h.join() for h in hung]
        r["memory_pss_mib"] = round(s.memory()["pss"] / 2**20, 1)
        res[s.label] = r
print(json.dumps(res, indent=1))
