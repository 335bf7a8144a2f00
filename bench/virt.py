"""Section 3: virtualized process globals inside an app vs plain Python.

The loops live in ``bench/apps/benchvirt.py``. Two kinds of worker process
run them, alternately, ``rounds`` times each:

* ``plain``: a fresh Python in which ctxserve is never imported, with
  ``sys.stdout`` a block-buffered file (what a process whose stdout is a
  file has) and, as a like-for-like second variant, a line-buffered file
  (flushed at each newline, as ctxserve's file destination is).
* ``ctxserve``: the same loops in a process where ctxserve is installed,
  (a) outside every app, with ``sys.stdout`` a block-buffered file (the
  server's own code), (b) inside a request of an app whose ``stdout`` is a
  file destination, (c) inside a request of an app whose ``stdout`` is
  ``"null"`` (the virtualization machinery without the I/O).

Inside one worker, variants are interleaved per sample with GC off; the
worker reports each variant's median, and the section takes the median of
those over the rounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import APPS, ROOT, summary

#: Operations per sample, by op (full run); --quick divides them.
N_PER_SAMPLE = {
    "print()": 4000,
    "sys.stdout.write": 4000,
    "os.environ[k]": 20000,
    "os.getenv": 20000,
    "decimal (a*b+c)/d": 20000,
}

PLAIN = ("plain", "plain, line-buffered file")
CTXSERVE = ("ctxserve, outside apps", "app, file destination", "app, null destination")


def _ops() -> Any:
    sys.path.insert(0, str(APPS))
    import benchvirt

    sys.path.remove(str(APPS))
    return benchvirt


def worker_plain(tmp: Path, counts: dict[str, int], samples: int) -> dict[str, dict[str, list[float]]]:
    assert "ctxserve" not in sys.modules, "plain Python must never have imported ctxserve"
    ops = _ops()
    os.environ["BENCH_VAR"] = "value"
    files = {
        "plain": open(tmp / "plain-block.log", "a", encoding="utf-8"),
        "plain, line-buffered file": open(tmp / "plain-line.log", "a", encoding="utf-8", buffering=1),
    }
    saved = sys.stdout
    out: dict[str, dict[str, list[float]]] = {}
    gc.collect()
    gc.disable()
    try:
        for op, fn in ops.OPS.items():
            n = counts[op]
            out[op] = {v: [] for v in PLAIN}
            for i in range(samples + 1):  # sample 0 warms up
                for variant in (PLAIN if i % 2 else PLAIN[::-1]):
                    sys.stdout = files[variant]
                    try:
                        elapsed = fn(n)
                    finally:
                        sys.stdout = saved
                    if i:
                        out[op][variant].append(elapsed / n)
    finally:
        gc.enable()
        for f in files.values():
            f.close()
    return out


def worker_ctxserve(tmp: Path, counts: dict[str, int], samples: int) -> dict[str, dict[str, list[float]]]:
    from ctxserve.config import parse
    from ctxserve.server import build

    from .micro import make_environ, start_response

    ops = _ops()
    os.environ["BENCH_VAR"] = "value"  # outside every app: the real environment
    table = {"app": "benchvirt:application", "path": [str(APPS)], "stderr": "null",
             "environ": {"BENCH_VAR": "value"}, "decimal": {"prec": 28}}
    config = parse({"apps": {
        "file": {**table, "mount": "/file", "stdout": str(tmp / "app-file.log")},
        "null": {**table, "mount": "/null", "stdout": "null"},
    }}, tmp / "ctxserve.toml")
    dispatcher = build(config, strict=True)
    server_file = open(tmp / "server-block.log", "a", encoding="utf-8")
    environs = {"app, file destination": make_environ("/file/"),
                "app, null destination": make_environ("/null/")}

    def run(variant: str, op: str, n: int) -> int:
        if variant == "ctxserve, outside apps":
            saved = sys.stdout
            sys.stdout = server_file  # outside every app: sets the plain stdout
            try:
                return ops.OPS[op](n)  # type: ignore[no-any-return]
            finally:
                sys.stdout = saved
        environ = dict(environs[variant], **{"bench.op": op, "bench.n": n})
        body = dispatcher(environ, start_response)
        for _ in body:
            pass
        getattr(body, "close", lambda: None)()
        return environ["bench.result"]  # type: ignore[no-any-return]

    out: dict[str, dict[str, list[float]]] = {}
    gc.collect()
    gc.disable()
    try:
        for op in ops.OPS:
            n = counts[op]
            out[op] = {v: [] for v in CTXSERVE}
            for i in range(samples + 1):
                order = CTXSERVE if i % 2 else CTXSERVE[::-1]
                for variant in order:
                    elapsed = run(variant, op, n)
                    if i:
                        out[op][variant].append(elapsed / n)
    finally:
        gc.enable()
        server_file.close()
    return out


def run_section(*, rounds: int, samples: int, scale: float, python: str = sys.executable,
                timeout: float = 300) -> dict[str, Any]:
    """Alternate plain and ctxserve workers *rounds* times; medians and ratios."""
    counts = {op: max(10, int(n * scale)) for op, n in N_PER_SAMPLE.items()}
    per_round: list[dict[str, dict[str, float]]] = []
    raw: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ctxserve-bench-virt-") as tmp:
        for r in range(rounds):
            merged: dict[str, dict[str, float]] = {}
            kinds = ("plain", "ctxserve") if r % 2 == 0 else ("ctxserve", "plain")
            for kind in kinds:
                out_file = Path(tmp) / f"{kind}-{r}.json"
                command = [python, "-m", "bench.virt", "--kind", kind, "--tmp", tmp,
                           "--samples", str(samples), "--counts", json.dumps(counts), "--out", str(out_file)]
                subprocess.run(command, cwd=ROOT, check=True, timeout=timeout,
                               stdout=subprocess.DEVNULL)
                result = json.loads(out_file.read_text())
                raw.append({"round": r, "kind": kind, "samples": result})
                for op, variants in result.items():
                    for variant, values in variants.items():
                        merged.setdefault(op, {})[variant] = statistics.median(values)
            per_round.append(merged)
            for log in Path(tmp).glob("*.log"):  # keep the temp dir small
                log.unlink()
    ops = list(per_round[0])
    variants = list(per_round[0][ops[0]])
    stats = {op: {v: summary([rnd[op][v] for rnd in per_round]) for v in variants} for op in ops}
    ratios = {}
    for op in ops:
        med = {v: stats[op][v]["median"] for v in variants}
        ratios[op] = {
            "app, file destination / plain": med["app, file destination"] / med["plain"],
            "app, file destination / plain, line-buffered file":
                med["app, file destination"] / med["plain, line-buffered file"],
            "app, null destination / plain": med["app, null destination"] / med["plain"],
            "ctxserve, outside apps / plain": med["ctxserve, outside apps"] / med["plain"],
        }
    return {"rounds": rounds, "samples_per_worker": samples, "n_per_sample": counts,
            "stats": stats, "ratios": ratios, "per_round_medians": per_round, "raw": raw}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one worker of section 3")
    parser.add_argument("--kind", choices=("plain", "ctxserve"), required=True)
    parser.add_argument("--tmp", required=True)
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--counts", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    worker = worker_plain if args.kind == "plain" else worker_ctxserve
    result = worker(Path(args.tmp), json.loads(args.counts), args.samples)
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
