"""The benchmark (bench/, not part of the test suite) still runs end to end.

``python -m bench --quick`` into a temp dir: every section in a tiny
configuration, a report and its JSON written. Its numbers are not checked —
a quick run measures nothing worth checking; see bench/README.md.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_writes_a_report(tmp_path: Path) -> None:
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - t0
    assert run.returncode == 0, run.stderr[-4000:]

    reports = list(tmp_path.glob("*-quick.md"))
    assert len(reports) == 1, sorted(p.name for p in tmp_path.iterdir())
    report = reports[0]
    assert report.name == run.stdout.strip().splitlines()[-1].rpartition("/")[2]
    text = report.read_text()
    for heading in ("## Against the targets", "## 1. Per-request overhead", "## 2. Flat in scale",
                    "## 3. Virtualized globals", "## 4. HTTP end to end", "## 5. Memory"):
        assert heading in text

    data = json.loads(report.with_suffix(".json").read_text())
    assert data["quick"] is True
    assert data["machine"]["cpu_model"] and data["machine"]["cores"]
    assert data["machine"]["versions"]["ctxserve"] != "not installed"
    for section in ("micro", "virt", "http", "memory"):
        assert section in data
    assert data["micro"]["overhead"]["stats"]["ctxserve/list"]["median"] > 0
    assert data["targets"], "every target gets a row"
    if importlib.util.find_spec("matplotlib") is not None:
        for plot in ("scale", "memory"):
            assert (tmp_path / data["plots"][plot]).is_file()

    assert elapsed < 20, f"the quick benchmark took {elapsed:.1f} s; keep it under 20 s"
