"""The price of the per-app process globals (random, logging, warnings, ...), measured.

    python -m bench.process_globals [--rounds N] [--quick]

writes ``bench/results/process-globals-YYYY-MM-DD.md`` (and prints it).

The same operations are timed in three places:

* *plain*: a fresh Python in which ctxserve is never imported;
* *server*: a Python in which ctxserve is installed (an app was made), the
  operation run outside every app, as the server's own code runs;
* *app*: the same process, the operation run inside the app's context
  (``app.context.run``), as a request of the app runs it.

Worker processes of the two kinds are started alternately, ``rounds``
times each (a fresh process every time); inside a worker the variants are
interleaved per sample, with the garbage collector off. Each timed loop
repeats its statement 10 times per iteration and an empty loop timed the
same way is subtracted, so numbers are ns per operation. Reported: the
median over rounds of each worker's median, and the ratio to plain.

What a request of an app that never calls these functions pays is not an
operation here: nothing on ctxserve's request path reads them (their state
is made on first use). ``python -m bench --only micro`` measures the
per-request path itself; the report says how to compare it across commits.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

#: name -> (setup, statement); setup runs once per worker, in the variant's context.
OPS: dict[str, tuple[str, str]] = {
    "random.random()": ("import random", "random.random()"),
    "logger.debug() below the level": (
        "import logging; log = logging.getLogger('bench.shared')", "log.debug('x')"),
    "logger.isEnabledFor(WARNING)": (
        "import logging; log = logging.getLogger('bench.shared')", "log.isEnabledFor(30)"),
    "warnings.warn(), filtered out": (
        "import warnings; warnings.simplefilter('ignore')", "warnings.warn('x', UserWarning)"),
    "socket.getdefaulttimeout()": ("import socket", "socket.getdefaulttimeout()"),
    "socket.socket().close()": ("import socket", "socket.socket().close()"),
    "tempfile.gettempdir()": ("import tempfile", "tempfile.gettempdir()"),
    "mimetypes.guess_type()": ("import mimetypes", "mimetypes.guess_type('a.html')"),
    "sys.setrecursionlimit() (guarded, unchanged)": (
        "import sys; limit = sys.getrecursionlimit()", "sys.setrecursionlimit(limit)"),
    "os.umask() (guarded, unchanged)": ("import os; mask = os.umask(0o022); os.umask(mask)",
                                        "os.umask(mask)"),
}

REPEAT = 10

WORKER = textwrap.dedent('''
    import gc, json, statistics, sys, time
    kind, samples, counts, tmp = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
    ops = json.loads(sys.stdin.read())
    contexts = {}
    if kind == "plain":
        assert "ctxserve" not in sys.modules
        contexts["plain"] = None
    else:
        import ctxserve
        config = tmp + "/ctxserve.toml"
        open(tmp + "/benchapp.py", "w").write("def application(environ, start_response):\\n    return []\\n")
        open(config, "w").write('[apps.bench]\\napp = "benchapp:application"\\nmount = "/"\\npath = ["."]\\n')
        app = ctxserve.from_config(config).apps[0]
        contexts["server"] = None
        contexts["app"] = app.context
    def run(ctx, fn, *args):
        return fn(*args) if ctx is None else ctx.run(fn, *args)
    out = {}
    gc.disable()
    for name, (setup, stmt) in ops.items():
        n = counts[name]
        body = "\\n".join("    " + stmt for _ in range(%d))
        src = f"def timed(n):\\n  t = time.perf_counter_ns()\\n  for _ in range(n):\\n{body}\\n  return time.perf_counter_ns() - t\\n"
        empty = "def empty(n):\\n  t = time.perf_counter_ns()\\n  for _ in range(n):\\n    pass\\n  return time.perf_counter_ns() - t\\n"
        per = {}
        for variant, ctx in contexts.items():
            ns = {"time": time}
            run(ctx, exec, setup, ns)
            exec(src, ns)
            exec(empty, ns)
            per[variant] = ns
        out[name] = {v: [] for v in contexts}
        for i in range(samples + 1):
            order = list(contexts) if i %% 2 else list(contexts)[::-1]
            for variant in order:
                ns, ctx = per[variant], contexts[variant]
                elapsed = run(ctx, ns["timed"], n) - run(ctx, ns["empty"], n)
                if i:
                    out[name][variant].append(elapsed / (n * %d))
        out[name] = {v: statistics.median(s) for v, s in out[name].items()}
    print(json.dumps(out))
''') % (REPEAT, REPEAT)


def worker(kind: str, samples: int, counts: dict[str, int], tmp: str) -> dict[str, dict[str, float]]:
    result = subprocess.run([sys.executable, "-c", WORKER, kind, str(samples), json.dumps(counts), tmp],
                            input=json.dumps(OPS), capture_output=True, text=True, check=True, cwd=tmp,
                            timeout=600)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def measure(rounds: int, samples: int, counts: dict[str, int]) -> dict[str, dict[str, list[float]]]:
    runs: dict[str, dict[str, list[float]]] = {name: {"plain": [], "server": [], "app": []} for name in OPS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for kind in (("plain", "ctxserve") if r % 2 else ("ctxserve", "plain")):
                for name, variants in worker(kind, samples, counts, tmp).items():
                    for variant, value in variants.items():
                        runs[name][variant].append(value)
    return runs


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def report(runs: dict[str, dict[str, list[float]]], rounds: int, samples: int, started: float) -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        f"# The price of the per-app process globals — {datetime.date.today().isoformat()}", "",
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; commit "
        f"{_git('rev-parse', '--short', 'HEAD')} (ctxserve/ working tree: "
        f"{'changed' if _git('status', '--porcelain', 'ctxserve') else 'clean'}); load average at start {started:.2f}, at end "
        f"{os.getloadavg()[0]:.2f}. The machine was shared with other work while this ran: read the "
        f"ratios, not the absolute numbers.", "",
        f"{rounds} rounds (a fresh worker process of each kind per round), {samples} interleaved samples "
        "per worker, GC off; ns per operation, median over rounds.", "",
        "| operation | plain Python | ctxserve, outside apps | inside an app | app / plain |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, variants in runs.items():
        med = {v: statistics.median(s) for v, s in variants.items()}
        ratio = med["app"] / med["plain"] if med["plain"] > 0 else float("nan")
        lines.append(f"| {name} | {med['plain']:.0f} | {med['server']:.0f} | {med['app']:.0f} | {ratio:.2f}× |")
    lines += ["", "Requests of an app that never calls these pay nothing for them: nothing on the request "
              "path reads them, and an app's own copy of each is made on first use. The per-request path "
              "is `python -m bench --only micro`; run it at two commits, alternately, to compare them."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.process_globals", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: shows that it runs")
    parser.add_argument("--out", default=str(BENCH / "results"))
    args = parser.parse_args(argv)
    started = os.getloadavg()[0]
    base = 1_000 if args.quick else 5_000
    counts = {name: base // 20 if ("socket()" in name or "umask" in name) else base for name in OPS}
    rounds, samples = (2, 2) if args.quick else (args.rounds, args.samples)
    text = report(measure(rounds, samples, counts), rounds, samples, started)
    out = Path(args.out) / f"process-globals-{datetime.date.today().isoformat()}{'-quick' if args.quick else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text, end="")
    print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
