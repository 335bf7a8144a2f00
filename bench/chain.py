"""The per-request path of two ctxserve trees, side by side, in one interleaved run.

    python -m bench.chain BEFORE_DIR [AFTER_DIR] [--rounds 15] [--out FILE.md]

Each directory holds a ``ctxserve`` package (e.g. ``git archive REV ctxserve |
tar -x -C DIR``; AFTER_DIR defaults to this repository). Every round starts
one fresh process per tree, in a shuffled order, and each process measures
the same in-process variants with the same driver as section 1 of ``python
-m bench`` (``bench/micro.py``): the bare app called directly, and the app
behind ctxserve

* with the admin listener off, under any WSGI server (``ctxserve.from_config``);
* with the admin listener off, as ``ctxserve serve``'s own workers run a
  request (a fresh request-scope context around call, iteration, ``close()``);
* with the admin listener on (listener split and meter), the same way, with
  gunicorn's ``start_response``.

Time is this process's CPU time (``time.process_time_ns``), so that time
spent preempted on a busy machine does not count. Each process reports, per
variant, the median of 7 interleaved samples minus the direct call's; the report gives, per tree, the median of those over the
rounds, and the ratio after / before. The machine is shared: read ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import APPS, ROOT, interleaved, machine

BODIES = ("list", "gen")
#: CPU time of this process: on a shared machine, time spent preempted does not count.
CLOCK = time.process_time_ns
SPECS = {"list": "application", "gen": "generator"}


def _worker(tree: str, n: int) -> dict[str, float]:
    """In a fresh process whose ``ctxserve`` is *tree*'s: ns per request of each variant."""
    sys.path.insert(0, tree)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="ctxserve-bench-"))
    import inspect

    from gunicorn.http.wsgi import Response

    import ctxserve
    from ctxserve.config import parse
    from ctxserve.server import application

    assert Path(ctxserve.__file__).resolve().is_relative_to(Path(tree).resolve()), ctxserve.__file__
    from .micro import make_environ, request_timer, scoped_request_timer

    class GunicornResponse(Response):  # gunicorn's start_response, without a socket
        def __init__(self) -> None:
            self.status = None

        def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            self.status = status
            return None

    under_gunicorn = "gunicorn" in inspect.signature(application).parameters

    env = make_environ("/a0/hello")
    config_path = Path(tempfile.mkdtemp(prefix="ctxserve-bench-")) / "ctxserve.toml"
    timers = {}
    for body in BODIES:
        apps = {"a0": {"app": f"benchbare:{SPECS[body]}", "mount": "/a0", "path": [str(APPS)]},
                "a1": {"app": f"benchbare:{SPECS[body]}", "mount": "/a1", "path": [str(APPS)]}}
        off = application(parse({"apps": apps}, config_path))
        on = application(parse({"server": {"admin": "127.0.0.1:9100"}, "apps": apps}, config_path),
                         **({"gunicorn": True} if under_gunicorn else {}))
        fn = off.apps[0].wsgi
        sr = GunicornResponse().start_response
        timers[f"direct/{body}"] = request_timer(fn, env, CLOCK)
        timers[f"admin off, any server/{body}"] = request_timer(off, env, CLOCK)
        timers[f"admin off, ctxserve worker/{body}"] = scoped_request_timer(off, env, sr, CLOCK)
        timers[f"admin on, ctxserve worker/{body}"] = scoped_request_timer(on, env, sr, CLOCK)
    samples = interleaved(timers, rounds=7, n=n, seed=random.randrange(1 << 30))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {name: value - medians[f"direct/{name.rsplit('/', 1)[1]}"]
            for name, value in medians.items() if not name.startswith("direct/")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default=str(ROOT))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=20_000, help="requests per sample")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", metavar="TREE", help=argparse.SUPPRESS)
    parser.add_argument("--render", metavar="JSON", type=Path,
                        help="only write the report of an earlier run again, from its JSON")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.n)))
        return 0
    if args.render:
        saved = json.loads(args.render.read_text())
        report = _report(saved["results"], saved["started"], saved["load"], saved["rounds"], saved["n"])
    else:
        trees = {"before": args.before, "after": args.after}
        results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        rng = random.Random(7)
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            order = list(trees)
            rng.shuffle(order)
            for side in order:
                done = subprocess.run([sys.executable, "-m", "bench.chain", "x", "--worker", trees[side],
                                       "--n", str(args.n)], cwd=ROOT, capture_output=True, text=True,
                                      check=True)
                results[side].append(json.loads(done.stdout))
        load.append(os.getloadavg()[0])
        report = _report(results, started, load, args.rounds, args.n)
        if args.out:
            args.out.with_suffix(".json").write_text(json.dumps(
                {"trees": trees, "started": started, "load": load, "rounds": args.rounds, "n": args.n,
                 "results": results}, indent=1))
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


def _report(results: dict[str, list[dict[str, float]]], started: str, load: list[float], rounds: int,
            n: int) -> str:
    variants = list(results["before"][0])
    info = machine()
    lines = [f"# The request chain before and after, one interleaved run ({started})", "",
             f"`python -m bench.chain BEFORE AFTER --rounds {rounds} --n {n}`: {rounds} rounds, "
             "one fresh process per tree per round (shuffled order), 7 interleaved samples of "
             f"{n:,} requests per variant in each, timed in process CPU time. Overhead = ns per request "
             "over the bare app called directly in the same process; the table gives the median over "
             "rounds, its quartiles, and the median of the per-round differences (after − before).", "",
             f"Machine: {info.get('cpu_model', '?')}, {info.get('cores', '?')} cores, Python "
             f"{info.get('python', sys.version.split()[0])}; load average {load[0]:.2f} at start, "
             f"{load[1]:.2f} at the end (the machine is shared with other work: read the ratios).", "",
             "| variant | before: median (quartiles), ns | after: median (quartiles), ns | after / before "
             "| paired difference, ns |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in variants:
        b = [r[name] for r in results["before"]]
        a = [r[name] for r in results["after"]]
        qb, qa = statistics.quantiles(b, n=4), statistics.quantiles(a, n=4)
        paired = statistics.median(y - x for x, y in zip(b, a))
        lines.append(f"| {name} | {qb[1]:.0f} ({qb[0]:.0f}–{qb[2]:.0f}) | {qa[1]:.0f} ({qa[0]:.0f}–{qa[2]:.0f}) "
                     f"| {qa[1] / qb[1]:.2f} | {paired:+.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
