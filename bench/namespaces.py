"""The price of private module namespaces, measured.

    python bench/namespaces.py [--rounds N] [--memory-rounds N] [--counts 1,4,16] [--no-memory]

writes ``bench/results/namespaces-YYYY-MM-DD.md`` (and prints it).

**Speed.** The app's own code, in the app vs in plain Python: one set of
modules (``config``, ``helpers``, ``views``) is written to a temporary
directory, and two worker processes time the same functions of ``views``:

* *plain*: ``python`` with that directory on ``sys.path`` and the modules
  imported normally; ctxserve is never imported in this process.
* *app*: the directory is the ``path`` of an app loaded by
  ``ctxserve.from_config``: ``config``, ``helpers`` and ``views`` are the
  app's private modules, and every sample runs inside the app's context
  (``app.context.run``), as a request would.

The driver (this process, which times nothing) asks one sample of each
(variant, side) per round, in a shuffled order every round, so that noise
on the machine hits both sides alike. Each timed loop repeats its statement
10 times per iteration; an empty loop timed the same way is subtracted, so
the numbers are ns per statement. The garbage collector is off in the
workers. Reported: medians over rounds, ratio = app median / plain median.

**Memory.** N small Flask apps, each with its own private ``app.py``,
``views.py`` and ``config.py`` (the classic layout, same module names in
every app): one ``ctxserve serve`` with the N apps vs N plain gunicorns
with one app each (gthread, 1 worker, 8 threads, both). After every app has
answered one request, ``VmRSS`` is read from ``/proc/PID/status`` for every
master and worker. Repeated ``--memory-rounds`` times in a shuffled order;
medians.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
UNROLL = 10
SAMPLE_NS = 20_000_000  # about 20 ms per sample

# -- the app's own code --------------------------------------------------------------

CONFIG_PY = '''"""The app's settings."""
TITLE = "bench"
LIMIT = 100
'''

HELPERS_PY = '''"""A function of the app, using builtins."""


def clamp(x):
    return min(max(x, 0), 100)
'''

#: (variant, statement timed, what it stands for); "empty" is the loop alone.
VARIANTS: list[tuple[str, str, str]] = [
    ("empty", "pass", "the loop alone (subtracted from the others)"),
    ("call", "helpers.clamp(5)", "calling a function of a private module"),
    ("from_import", "from config import TITLE", "`from config import X` inside a handler function"),
    ("attribute", "config.TITLE", "attribute access on a private module"),
    ("import_stmt", "import config", "`import config` inside a handler function"),
    ("import_module", 'import_module("config")', "`importlib.import_module(\"config\")`"),
    ("sys_modules", 'sys.modules["config"]', '`sys.modules["config"]` (as the app\'s code sees it)'),
    ("seen_by_shared_code", 'real_modules["config"].TITLE',
     "`config.TITLE` as shared or C code reads it: through the real `sys.modules` entry"),
]
#: The variants with a target or asked for by the issue; the rest are for information.
HEADLINE = ("call", "from_import", "attribute")
ATTRIBUTE_TARGET = 1.1


def views_source() -> str:
    lines = [
        '"""The handler functions timed by bench/namespaces.py (one per variant)."""',
        "import sys",
        "from importlib import import_module",
        "from time import perf_counter_ns",
        "",
        "import config",
        "import helpers",
        "",
        "real_modules = sys.__dict__['modules']  # the interpreter's dict, in both processes",
        "",
    ]
    for name, statement, _ in VARIANTS:
        lines += [f"def bench_{name}(n):", "    r = range(n)", "    t0 = perf_counter_ns()",
                  "    for _ in r:"]
        lines += [f"        {statement}"] * UNROLL
        lines += ["    return perf_counter_ns() - t0", ""]
    lines += ["", "def application(environ, start_response):",
              "    start_response('200 OK', [('Content-Type', 'text/plain')])",
              "    return [b'ok']", ""]
    return "\n".join(lines)


def write_speed_modules(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.py").write_text(CONFIG_PY)
    (directory / "helpers.py").write_text(HELPERS_PY)
    (directory / "views.py").write_text(views_source())


# -- a worker: times one side --------------------------------------------------------------

def worker(side: str, directory: str) -> None:
    """Answer ``VARIANT N`` lines on stdin with the ns that N iterations took."""
    if side == "plain":
        sys.path.insert(0, directory)
        import views  # noqa: PLC0415

        def run(name: str, n: int) -> int:
            return getattr(views, f"bench_{name}")(n)  # type: ignore[no-any-return]
    else:
        config = Path(directory) / "ctxserve.toml"
        config.write_text(f'[apps.bench]\napp = "views:application"\nmount = "/"\n'
                          f"path = [{json.dumps(directory)}]\n")
        import ctxserve  # noqa: PLC0415

        app = ctxserve.from_config(config).apps[0]  # type: ignore[attr-defined]
        assert app.loaded, app.status
        views = app.binding.modules.modules["views"]
        assert views.__file__ == str(Path(directory) / "views.py")
        assert app.binding.modules.modules["config"] is views.config  # the real private module

        def run(name: str, n: int) -> int:
            return app.context.run(getattr(views, f"bench_{name}"), n)  # type: ignore[no-any-return]

    gc.collect()
    gc.disable()
    out = sys.stdout
    for line in sys.stdin:
        name, n = line.split()
        out.write(f"{run(name, int(n))}\n")
        out.flush()


class Worker:
    def __init__(self, side: str, directory: Path) -> None:
        self.side = side
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", side, str(directory)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=directory,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})

    def time(self, name: str, n: int) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{name} {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.side} worker died (exit {self.proc.wait()})")
        return int(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(10)


def measure_speed(rounds: int, tmp: Path) -> dict[str, Any]:
    directory = tmp / "speed"
    write_speed_modules(directory)
    workers = {side: Worker(side, directory) for side in ("plain", "app")}
    try:
        counts = {}
        for name, _, _ in VARIANTS:  # calibrate on the plain side, the same n for both
            n = 1000
            while (elapsed := workers["plain"].time(name, n)) < SAMPLE_NS / 4:
                n *= 4
            counts[name] = max(1000, int(n * SAMPLE_NS / max(elapsed, 1)))
            workers["app"].time(name, max(1, counts[name] // 10))  # warm up
        samples: dict[str, dict[str, list[float]]] = {
            side: {name: [] for name, _, _ in VARIANTS} for side in workers}
        pairs = [(side, name) for side in workers for name, _, _ in VARIANTS]
        rng = random.Random(1)
        for _ in range(rounds):
            rng.shuffle(pairs)
            for side, name in pairs:
                samples[side][name].append(workers[side].time(name, counts[name]) / counts[name])
    finally:
        for w in workers.values():
            w.close()
    rows = []
    for name, statement, meaning in VARIANTS:
        row: dict[str, Any] = {"variant": name, "statement": statement, "meaning": meaning,
                               "n": counts[name]}
        for side in workers:
            raw = samples[side][name]
            empty = samples[side]["empty"]
            # per statement, minus the loop, paired within each round
            net = [(s - e) / UNROLL for s, e in zip(raw, empty, strict=True)]
            row[side] = {"raw_per_iteration": statistics.median(raw),
                         "net": statistics.median(net) if name != "empty" else statistics.median(raw) / UNROLL,
                         "net_q1_q3": _quartiles(net)}
        row["ratio"] = row["app"]["net"] / row["plain"]["net"] if row["plain"]["net"] > 0 else float("nan")
        row["ratio_raw"] = row["app"]["raw_per_iteration"] / row["plain"]["raw_per_iteration"]
        rows.append(row)
    return {"rounds": rounds, "unroll": UNROLL, "rows": rows}


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


# -- memory --------------------------------------------------------------------------------

FLASK_APP_PY = '''"""App {k}: the classic Flask layout; `views` imports `app` back."""
from flask import Flask

import config

app = Flask(__name__)
app.config.from_object(config)

import views  # noqa: E402,F401
'''

FLASK_VIEWS_PY = '''from flask import jsonify

import config
from app import app


@app.get("/")
def index():
    return jsonify(app=config.NAME, views=__file__)
'''

FLASK_CONFIG_PY = 'NAME = "{name}"\n'


def write_flask_apps(root: Path, count: int) -> list[Path]:
    directories = []
    for k in range(count):
        directory = root / f"a{k}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "app.py").write_text(FLASK_APP_PY.format(k=k))
        (directory / "views.py").write_text(FLASK_VIEWS_PY)
        (directory / "config.py").write_text(FLASK_CONFIG_PY.format(name=f"a{k}"))
        directories.append(directory)
    return directories


_LISTENING = re.compile(r"Listening at: http://([\d.]+:\d+)")


class Server:
    """A gunicorn (plain or ``ctxserve serve``) on an ephemeral port."""

    def __init__(self, command: list[str], workdir: Path, cwd: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        runtime = workdir / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        self.err_path = workdir / "err"
        with (workdir / "out").open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd,
                env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PYTHONDONTWRITEBYTECODE": "1"})
        self.url = ""

    def wait_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.err_path.read_text(errors="replace"))
            if match:
                self.url = f"http://{match.group(1)}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.err_path.read_text(errors='replace')}")

    def get_json(self, path: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + path, timeout=30) as response:
                    return json.loads(response.read())
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def processes(self) -> dict[str, list[int]]:
        master = self.proc.pid
        children = []
        with contextlib.suppress(OSError):
            children = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
        return {"master": [master], "workers": children}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def vmrss_kib(pid: int) -> int:
    match = re.search(r"^VmRSS:\s*(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, pid
    return int(match.group(1))


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[list[Server]]:
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def measure_one_ctxserve(directories: list[Path], workdir: Path) -> dict[str, Any]:
    config = workdir / "ctxserve.toml"
    workdir.mkdir(parents=True, exist_ok=True)
    config.write_text("".join(
        f'[apps.{d.name}]\napp = "app:app"\nmount = "/{d.name}"\npath = [{json.dumps(str(d))}]\n\n'
        for d in directories))
    command = [sys.executable, "-m", "ctxserve", "serve", str(config), "--bind", "127.0.0.1:0",
               "--workers", "1", "--worker-class", "gthread", "--threads", "8"]
    with running([Server(command, workdir, workdir)]) as (server,):
        server.wait_listening()
        for d in directories:
            body = server.get_json(f"/{d.name}/")
            assert body == {"app": d.name, "views": str(d / "views.py")}, body
        time.sleep(0.3)
        procs = server.processes()
        assert len(procs["workers"]) == 1, procs
        return {"workers_kib": sum(vmrss_kib(p) for p in procs["workers"]),
                "masters_kib": sum(vmrss_kib(p) for p in procs["master"])}


def measure_separate(directories: list[Path], workdir: Path) -> dict[str, Any]:
    servers = []
    with running(servers):
        for d in directories:
            command = [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", "1",
                       "--worker-class", "gthread", "--threads", "8", "app:app"]
            servers.append(Server(command, workdir / d.name, d))
        for server, d in zip(servers, directories, strict=True):
            server.wait_listening()
            body = server.get_json("/")
            assert body == {"app": d.name, "views": str(d / "views.py")}, body
        time.sleep(0.3)
        workers = masters = 0
        for server in servers:
            procs = server.processes()
            assert len(procs["workers"]) == 1, procs
            workers += sum(vmrss_kib(p) for p in procs["workers"])
            masters += sum(vmrss_kib(p) for p in procs["master"])
        return {"workers_kib": workers, "masters_kib": masters}


def measure_memory(counts: list[int], rounds: int, tmp: Path) -> dict[str, Any]:
    directories = write_flask_apps(tmp / "flask", max(counts))
    runs = [(kind, n) for n in counts for kind in ("ctxserve", "separate")]
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {run: [] for run in runs}
    rng = random.Random(2)
    for r in range(rounds):
        rng.shuffle(runs)
        for kind, n in runs:
            workdir = tmp / f"mem-{kind}-{n}-{r}"
            measure = measure_one_ctxserve if kind == "ctxserve" else measure_separate
            samples[(kind, n)].append(measure(directories[:n], workdir))
    rows = []
    for n in counts:
        row: dict[str, Any] = {"n": n}
        for kind in ("ctxserve", "separate"):
            s = samples[(kind, n)]
            row[kind] = {key: statistics.median(x[key] for x in s) for key in ("workers_kib", "masters_kib")}
            row[kind]["all_workers_kib"] = [x["workers_kib"] for x in s]
        rows.append(row)
    return {"rounds": rounds, "rows": rows}


# -- the report ------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1).strip() if match else platform.processor() or "unknown"
    import sysconfig  # noqa: PLC0415
    args = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    build = " ".join(f for f in ("--enable-optimizations", "--with-lto") if f in args) or \
        "no --enable-optimizations/--with-lto"
    from importlib import metadata  # noqa: PLC0415

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return out.stdout.strip()

    dirty = git("status", "--porcelain", "--", "ctxserve")
    return {
        "CPU": f"{cpu} ({os.cpu_count()} cores, {len(os.sched_getaffinity(0))} usable)",
        "kernel": platform.release(),
        "Python": f"{sys.version.split()[0]} ({build})",
        "ctxserve": f"{version('ctxserve')} (git {git('rev-parse', '--short', 'HEAD') or '?'}; "
                    f"ctxserve/ working tree: {'modified' if dirty else 'clean'})",
        "gunicorn / flask / werkzeug": f"{version('gunicorn')} / {version('flask')} / {version('werkzeug')}",
    }


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return ", ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def mib(kib: float) -> str:
    return f"{kib / 1024:,.1f} MiB"


def report(info: dict[str, str], speed: dict[str, Any] | None, memory: dict[str, Any] | None,
           command: str, started: str, load: tuple[str, str], seconds: float) -> str:
    out = [f"# The price of private module namespaces — {started[:10]}", "",
           f"Command: `{command}`; {seconds:.0f} s. Source: `bench/namespaces.py` (its docstring says "
           "how each number is taken).", "", "| machine | |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in info.items()]
    out += [f"| load average at start / end | {load[0]} / {load[1]} |", f"| date | {started} |", "",
            "The machine is shared and noisy: both sides of every comparison ran interleaved, "
            "round by round in a shuffled order, in the same run; numbers are medians over rounds.", ""]
    if speed:
        rows = {row["variant"]: row for row in speed["rows"]}
        att = rows["attribute"]["ratio"]
        extra_import = rows["import_stmt"]["app"]["net"] - rows["import_stmt"]["plain"]["net"]
        extra_from = rows["from_import"]["app"]["net"] - rows["from_import"]["plain"]["net"]
        out += ["## Speed: the app's own code, in an app vs in plain Python", "",
                f"ns per statement (loop subtracted; {speed['rounds']} rounds, each statement "
                f"repeated {speed['unroll']}× per loop iteration), the same `views.py` in both: "
                "*plain* imports `config`/`helpers`/`views` normally in a process without ctxserve; "
                "*app* has them as an app's private modules and runs inside the app's context.", "",
                "| what | statement | plain | in an app | ratio | ratio with the loop |",
                "| --- | --- | ---: | ---: | ---: | ---: |"]
        for name in (*HEADLINE, *[v for v, _, _ in VARIANTS if v not in HEADLINE and v != "empty"]):
            row = rows[name]
            out.append(f"| {row['meaning']} | `{row['statement']}` | {row['plain']['net']:.1f} | "
                       f"{row['app']['net']:.1f} | **{row['ratio']:.2f}×** | {row['ratio_raw']:.2f}× |")
        empty = rows["empty"]
        out += [f"| (the empty loop, per iteration) | `pass` ×{speed['unroll']} | "
                f"{empty['plain']['raw_per_iteration']:.1f} | {empty['app']['raw_per_iteration']:.1f} | "
                f"{empty['ratio_raw']:.2f}× | |", "",
                f"Target — attribute access on a private module within {ATTRIBUTE_TARGET}× of plain "
                f"Python: **{att:.2f}×, {'met' if att <= ATTRIBUTE_TARGET else 'not met'}**.", "",
                "Where the time goes:", "",
                "- *Attribute access* and *calling a function*: the app's code holds its real private "
                "modules (an `import` in a private module binds the module itself, not the alias), so "
                "`config.TITLE` is the same `LOAD_GLOBAL` + `LOAD_ATTR` on a plain module as in plain "
                "Python, and `clamp()` reads `min`/`max` from the app's copy of the builtins dict, "
                "which is specialised like the real one. Nothing of ctxserve runs; a ratio away from "
                "1.00 here is noise (compare the quartiles in the raw data below).",
                "- *`from config import X` / `import config` in a function*: every execution of the "
                "statement calls `__import__`. In plain Python the frame's builtins hold the original "
                "one, so CPython takes its C fast path (a dict lookup in `sys.modules`). A private "
                "module's builtins hold the app's `Namespace.import_`, a Python function: the call, "
                "`Namespace.lookup` (two dict lookups) and the `_initializing` check of the module's "
                f"spec, in Python: {extra_import:.0f} ns more per `import config` and {extra_from:.0f} ns "
                "more per `from config import X` in this run. `from config import X` costs "
                "much more than `import config` on *both* sides: with a fromlist, CPython (and "
                "`Namespace.import_`, which does the same) asks the module for `__path__`, and on a "
                "module that is not a package that lookup fails, which builds and discards an "
                "`AttributeError`. That is the price of binding the app's own module instead of the "
                "alias; module-level imports pay it once.",
                "- *`importlib.import_module`*: the same protocol on both sides, but inside the app "
                "`sys.modules` is the app's `Namespace` (a Python mapping), read through the `sys` "
                "descriptor: each lookup is Python code instead of a dict lookup.",
                "- *`sys.modules[name]`*: the `sys` descriptor (a context-variable read) and "
                "`Namespace.__getitem__` instead of a dict subscript.",
                "- *As shared or C code sees it*: the real `sys.modules` holds an `Alias`; each "
                "attribute read first fails on the alias itself (an `AttributeError` built and "
                "discarded, most of the time), then runs `Alias.__getattr__` (Python): the current "
                "binding, the app's table, and the read on the real module. Only code that is not the "
                "app's own pays it (pickle, `typing`, libraries that look modules up by name).", ""]
    if memory:
        out += ["## Memory: N Flask apps in one ctxserve process vs N single-app processes", "",
                "`VmRSS` from `/proc/PID/status` after every app answered one request (each app its own "
                "private `app.py`, `views.py`, `config.py`; gthread, 1 worker, 8 threads; medians of "
                f"{memory['rounds']} rounds). VmRSS counts every resident page in full, so a sum over "
                "processes counts Python, Flask and gunicorn once per process: that is the point here.",
                "", "| N | one ctxserve: worker | + its master | N gunicorns: workers | + their masters "
                "| workers: N gunicorns / one ctxserve |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        rows = memory["rows"]
        for row in rows:
            c, s = row["ctxserve"], row["separate"]
            out.append(f"| {row['n']} | {mib(c['workers_kib'])} | {mib(c['workers_kib'] + c['masters_kib'])} | "
                       f"{mib(s['workers_kib'])} | {mib(s['workers_kib'] + s['masters_kib'])} | "
                       f"{s['workers_kib'] / c['workers_kib']:.1f}× |")
        first, last = rows[0], rows[-1]
        if last["n"] > first["n"]:
            per_app = (last["ctxserve"]["workers_kib"] - first["ctxserve"]["workers_kib"]) / (last["n"] - first["n"])
            per_process = first["separate"]["workers_kib"] / first["n"]
            out += ["", f"Each app after the first adds **{per_app:,.0f} KiB** to the one ctxserve worker "
                    f"(({mib(last['ctxserve']['workers_kib'])} − {mib(first['ctxserve']['workers_kib'])}) / "
                    f"{last['n'] - first['n']}): its private modules, its Flask object and routes. A "
                    f"separate single-app gunicorn worker takes **{mib(per_process)}**, because it loads "
                    "Python, Flask, Werkzeug, Jinja and gunicorn again: in one ctxserve process the "
                    "shared library is loaded once."]
        out += [""]
    raw = {"speed": speed, "memory": memory}
    out += ["<details><summary>Raw numbers (JSON)</summary>", "", "```json",
            json.dumps(raw, indent=1, default=str), "```", "", "</details>", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="speed: interleaved rounds (40)")
    parser.add_argument("--memory-rounds", type=int, default=3, help="memory: rounds per setup (3)")
    parser.add_argument("--counts", default="1,4,16", help="memory: numbers of apps (1,4,16)")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--output", type=Path, help="the report's path (default bench/results/namespaces-DATE.md)")
    parser.add_argument("--worker", nargs=2, metavar=("SIDE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    t0 = time.monotonic()
    load_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="ctxserve-bench-ns-") as tmp:
        speed = None if args.no_speed else measure_speed(args.rounds, Path(tmp))
        counts = [int(c) for c in args.counts.split(",")]
        memory = None if args.no_memory else measure_memory(counts, args.memory_rounds, Path(tmp))
    command = "python bench/namespaces.py" + ("" if argv is None and len(sys.argv) == 1 else
                                               " " + " ".join(argv if argv is not None else sys.argv[1:]))
    text = report(machine(), speed, memory, command, started.isoformat(), (load_start, loadavg()),
                  time.monotonic() - t0)
    output = args.output or RESULTS / f"namespaces-{started.date().isoformat()}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text.split("<details>")[0])
    print(f"written: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
