"""Timing, statistics and machine facts shared by every part of the benchmark.

Every comparison is *interleaved*: one sample of each variant per round, in
a different order each round, so that a burst of noise on this shared
machine hits every variant alike. Reported numbers are medians over the
rounds; overheads are medians of the per-round paired differences against
the baseline variant of the same round, and ratios are median / median.

This module imports nothing of ctxserve: the "plain Python" side of the
virtualized-globals comparison must run in a process where ctxserve was
never installed.
"""

from __future__ import annotations

import gc
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = BENCH / "apps"


# -- timing -----------------------------------------------------------------------

Timer = Callable[[int], int]
"""``timer(n)`` runs *n* iterations of one variant and returns the elapsed ns."""


def calibrate(timer: Timer, target_ns: float, minimum: int = 50) -> int:
    """Iterations of *timer* that take about *target_ns*."""
    n = minimum
    while True:
        elapsed = timer(n)
        if elapsed >= target_ns / 4 or n >= 10_000_000:
            return max(minimum, int(n * target_ns / max(elapsed, 1)))
        n *= 4


def interleaved(timers: Mapping[str, Timer], *, rounds: int, n: int | Mapping[str, int],
                seed: int = 1) -> dict[str, list[float]]:
    """ns per iteration of each variant, one sample per round, GC off.

    The order of the variants is shuffled every round (fixed seed, so that
    runs are comparable); every variant is run once untimed first.
    """
    rng = random.Random(seed)
    names = list(timers)
    counts = {k: (n[k] if isinstance(n, Mapping) else n) for k in names}
    samples: dict[str, list[float]] = {k: [] for k in names}
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for name in names:
            timers[name](max(1, counts[name] // 10))
        for _ in range(rounds):
            rng.shuffle(names)
            for name in names:
                samples[name].append(timers[name](counts[name]) / counts[name])
    finally:
        if was_enabled:
            gc.enable()
    return samples


def summary(values: list[float]) -> dict[str, float]:
    """median, quartiles and min of a list of samples."""
    ordered = sorted(values)
    if len(ordered) >= 4:
        q1, _, q3 = statistics.quantiles(ordered, n=4)
    else:
        q1, q3 = ordered[0], ordered[-1]
    return {"median": statistics.median(ordered), "q1": q1, "q3": q3, "min": ordered[0],
            "n": len(ordered)}


def paired_overhead(samples: list[float], baseline: list[float]) -> float:
    """Median of the per-round differences *samples[i] - baseline[i]*."""
    return statistics.median(s - b for s, b in zip(samples, baseline, strict=True))


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# -- the machine --------------------------------------------------------------------

def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else (platform.processor() or "unknown")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def tool_version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine() -> dict[str, Any]:
    """What the report states about where it was measured."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        meminfo = Path("/proc/meminfo").read_text()
        mem_total = int(re.search(r"MemTotal:\s*(\d+)", meminfo).group(1)) * 1024  # type: ignore[union-attr]
    except (OSError, AttributeError):
        mem_total = 0
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": mem_total,
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_full": sys.version.replace("\n", " "),
        "python_executable": sys.executable,
        "python_build": _python_build(),
        "versions": {
            "ctxserve": _version("ctxserve"),
            "gunicorn": _version("gunicorn"),
            "werkzeug": _version("werkzeug"),
            "flask": _version("flask"),
            "matplotlib": _version("matplotlib"),
            "wrk": tool_version(["wrk", "--version"]),
        },
        "git_commit": _git_commit(),
    }


def _python_build() -> str:
    """How this interpreter was compiled: PGO/LTO change absolute timings a lot."""
    import sysconfig

    args = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    flags = [f for f in ("--enable-optimizations", "--with-lto", "--enable-shared") if f in args]
    return " ".join(flags) if flags else "no --enable-optimizations/--with-lto"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def machine_slug(info: Mapping[str, Any]) -> str:
    """``<cpu>-<N>c``: the host name of a VM says nothing, its CPU does."""
    model = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$", "", str(info["cpu_model"]), flags=re.I)
    return f"{slug(model)}-{info['cores']}c"


def now() -> float:
    return time.time()
