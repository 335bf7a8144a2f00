"""``python -m bench [--quick] [--out DIR] [--only SECTIONS]``: the whole benchmark.

Writes ``<out>/YYYY-MM-DD-<cpu>-<N>c.md`` (the report), ``.json`` beside it
(every raw sample) and PNG plots with the same stem. ``--quick`` is a tiny
configuration (seconds, not minutes) whose numbers only show that every
part runs; its files get a ``-quick`` suffix.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import e2e, memory, report, virt
from .common import BENCH, ROOT, loadavg, machine, machine_slug

SECTIONS = ("micro", "virt", "http", "memory")

#: Sizes of a full run (about 4-5 minutes on 2 cores) and of --quick (seconds).
FULL = {
    "virt": {"rounds": 5, "samples": 9, "scale": 1.0},
    "http": {"rounds": 5, "seconds": 5, "app_counts": [1, 4, 16], "warmup_seconds": 1},
    "memory": {"counts": [1, 4, 16]},
}
QUICK = {
    "virt": {"rounds": 1, "samples": 2, "scale": 0.05},
    "http": {"rounds": 1, "seconds": 1, "app_counts": [1], "warmup_seconds": 0},
    "memory": {"counts": [1]},
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_micro(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ctxserve-bench-micro-") as tmp:
        out = Path(tmp) / "micro.json"
        command = [sys.executable, "-m", "bench.micro", "--out", str(out)] + (["--quick"] if quick else [])
        subprocess.run(command, cwd=ROOT, check=True, timeout=900)
        return json.loads(out.read_text())  # type: ignore[no-any-return]


def _ctxserve_tree_state() -> str:
    """Which ctxserve was measured, beyond the commit: its uncommitted changes, if any."""
    try:
        status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "ctxserve"],
                                capture_output=True, text=True, timeout=10).stdout
        diff = subprocess.run(["git", "-C", str(ROOT), "diff", "HEAD", "--", "ctxserve"],
                              capture_output=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if not status.strip():
        return "clean"
    modified = [line[3:] for line in status.splitlines() if not line.startswith("??")]
    untracked = [line[3:] for line in status.splitlines() if line.startswith("??")]
    parts = []
    if modified:
        parts.append(f"modified {', '.join(modified)} (diff sha1 {hashlib.sha1(diff).hexdigest()[:10]})")
    if untracked:
        parts.append(f"untracked {', '.join(untracked)}")
    return "; ".join(parts)


def render(json_path: Path, plots_too: bool) -> Path:
    """Re-write the markdown (and plots) of an earlier run from its JSON: no measuring."""
    data = json.loads(json_path.read_text())
    data["targets"] = report.evaluate(data)
    if plots_too:
        data["plots"] = report.plots(data, json_path.parent, json_path.stem)
    md_path = json_path.with_suffix(".md")
    md_path.write_text(report.markdown(data, json_path.name))
    json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny configuration: checks that it runs")
    parser.add_argument("--out", default=str(BENCH / "results"), help="directory for the report (default: bench/results)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--render", metavar="JSON", help="only re-write the report (and plots) of an earlier "
                        "run from its JSON, e.g. after changing how the report is laid out")
    args = parser.parse_args(argv)
    if args.render:
        print(render(Path(args.render), not args.no_plots))
        return 0
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    sizes = QUICK if args.quick else FULL
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    info = machine()
    today = datetime.date.today().isoformat()
    stem = f"{today}-{machine_slug(info)}" + ("-quick" if args.quick else "")
    data: dict[str, Any] = {
        "date": today,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "machine": info,
        "ctxserve_tree": _ctxserve_tree_state(),
        "loadavg_start": loadavg(),
        "sizes": {k: v for k, v in sizes.items() if k in only},
        "sections_run": only,
    }
    t0 = time.monotonic()
    durations = {}
    for section in SECTIONS:
        if section not in only:
            continue
        log(f"section {section} ...")
        t = time.monotonic()
        if section == "micro":
            data["micro"] = run_micro(args.quick)
        elif section == "virt":
            data["virt"] = virt.run_section(**sizes["virt"])
        elif section == "http":
            data["http"] = e2e.run_section(**sizes["http"])
        elif section == "memory":
            data["memory"] = memory.run_section(**sizes["memory"])
        durations[section] = time.monotonic() - t
        log(f"section {section} done in {durations[section]:.1f} s")
    data["durations_s"] = durations
    data["total_s"] = time.monotonic() - t0
    data["loadavg_end"] = loadavg()
    data["targets"] = report.evaluate(data)

    plots = {} if args.no_plots else report.plots(data, out_dir, stem)
    data["plots"] = plots
    json_path = out_dir / f"{stem}.json"
    md_path = out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    md_path.write_text(report.markdown(data, json_path.name))
    log(f"wrote {md_path} (+ .json, {len(plots)} plots) in {data['total_s']:.0f} s")
    print(md_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
