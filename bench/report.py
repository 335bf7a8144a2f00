"""The markdown report, the verdicts against the issue's targets, and the plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .memory import WARM_PATHS, WARM_REPEATS

#: "Flat" in section 2 means: the per-request overhead with the most apps
#: (or environ entries) is within this factor of the one with the fewest.
FLAT_TOLERANCE = 1.10


def _ns(value: float) -> str:
    return f"{value:,.0f} ns"


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB"


def _x(value: float) -> str:
    return f"{value:.2f}×"


def _verdict(ok: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "—"}[ok]


# -- verdicts -----------------------------------------------------------------------

def evaluate(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(target: str, measured: str, ok: bool | None) -> None:
        rows.append({"target": target, "measured": measured, "verdict": _verdict(ok), "met": ok})

    micro = data.get("micro")
    if micro:
        o = micro["overhead"]["overhead_ns"]
        for body in ("list", "gen"):
            cx, wz = o[f"ctxserve/{body}"]["overhead_ns"], o[f"werkzeug/{body}"]["overhead_ns"]
            add(f"1. ctxserve adds ≤ 1 µs per request ({body} body)", _ns(cx), cx <= 1000)
            add(f"1. ctxserve adds no more than DispatcherMiddleware ({body} body)",
                f"{_ns(cx)} vs {_ns(wz)} ({_x(cx / wz)})", cx <= wz)
        for body in ("list", "gen"):
            name = f"ctxserve serve worker scope/{body}"
            if name in o:
                cx, wz = o[name]["overhead_ns"], o[f"werkzeug/{body}"]["overhead_ns"]
                add(f"1. (as `ctxserve serve`'s own workers run it) ≤ 1 µs and ≤ DispatcherMiddleware ({body} body)",
                    f"{_ns(cx)} vs {_ns(wz)} ({_x(cx / wz)})", cx <= 1000 and cx <= wz)
        s = micro["scale"]
        counts = s["counts"]
        for kind, key in (("mounted apps", "apps"), ("environ entries", "environ")):
            values = [s["overhead_ns"][f"ctxserve/{key}={n}"] for n in counts]
            spread = max(values) / min(values) if min(values) > 0 else math.inf
            add(f"2. per-request cost flat in {kind} ({counts[0]}…{counts[-1]}; flat = max/min ≤ {FLAT_TOLERANCE})",
                f"{_ns(min(values))} … {_ns(max(values))} (max/min {_x(spread)})", spread <= FLAT_TOLERANCE)
    virt = data.get("virt")
    if virt:
        for op, ratios in virt["ratios"].items():
            r = ratios["app, file destination / plain"]
            add(f"3. `{op}` inside an app ≤ 1.5× plain Python", _x(r), r <= 1.5)
    http = data.get("http")
    if http and "skipped" not in http:
        for label, r in http["ratios"].items():
            add(f"4. {label}: req/s ≥ 0.97× plain gunicorn", _x(r["rps"]), r["rps"] >= 0.97)
            add(f"4. {label}: p99 within 1.1× plain gunicorn", _x(r["p99"]), r["p99"] <= 1.1)
            add(f"4. {label}: server CPU per request (no target; for information)",
                f"{_x(r['cpu_per_request'])} ({r['cpu_us_per_request_added']:+.1f} µs)", None)
    elif http:
        add("4. HTTP end to end", http["skipped"], None)
        rows[-1]["verdict"] = "not measured"
    mem = data.get("memory")
    if mem:
        n = str(mem["counts"][-1])
        r = mem["ratios"][n]["pss"]
        add(f"5. memory of N = {n} apps ≤ 0.3× N gunicorns (sum of Pss)", _x(r), r <= 0.3)
    return rows


# -- plots --------------------------------------------------------------------------

def plots(data: dict[str, Any], out_dir: Path, stem: str) -> dict[str, str]:
    """PNG files (name -> file name); none if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        data["plots_note"] = "matplotlib is not installed: no plots (pip install -r bench/requirements.txt)"
        return {}
    made: dict[str, str] = {}

    def save(fig: Any, name: str) -> None:
        path = out_dir / f"{stem}-{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made[name] = path.name

    micro = data.get("micro")
    if micro:
        s = micro["scale"]
        counts = s["counts"]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        ax = axes[0]
        for name, label, marker in (("ctxserve", "ctxserve Dispatcher (dispatch + context binding)", "o"),
                                    ("werkzeug", "werkzeug DispatcherMiddleware", "s")):
            med = [s["overhead_ns"][f"{name}/apps={n}"] for n in counts]
            ax.plot(counts, med, marker=marker, label=label)
        ax.axhline(1000, color="grey", linestyle=":", label="target: 1 µs")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("mounted apps (log)")
        ax.set_ylabel("overhead per request over a direct call (ns)")
        ax.set_title("Per-request overhead vs number of apps")
        ax.legend(fontsize=8)
        ax = axes[1]
        ax.plot(counts, [s["overhead_ns"][f"ctxserve/environ={k}"] for k in counts], marker="o",
                label="bare app: overhead over direct call")
        ax.plot(counts, [s["stats"][f"ctxserve/environ={k}/environ_reader"]["median"] for k in counts],
                marker="^", label="app reading os.environ: total ns/request")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("entries in the app's environ (log)")
        ax.set_ylabel("ns per request")
        ax.set_title("Per-request cost vs size of the app's environ")
        ax.legend(fontsize=8)
        save(fig, "scale")

        o = micro["overhead"]
        names = ["direct", "werkzeug", "ctxserve", "ctxserve+decimal"]
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.38
        for i, body in enumerate(("list", "gen")):
            med = [o["stats"][f"{n}/{body}"]["median"] for n in names]
            ax.bar([x + (i - 0.5) * width for x in range(len(names))], med, width, label=f"{body} body")
        ax.set_xticks(range(len(names)), ["bare app,\ndirect call", "werkzeug\nDispatcherMiddleware",
                                          "ctxserve\nDispatcher", "ctxserve,\napp with decimal"])
        ax.set_ylabel("ns per request (median)")
        ax.set_title("In-process cost of one request (1 mount)")
        ax.legend()
        save(fig, "overhead")

    mem = data.get("memory")
    if mem:
        counts = mem["counts"]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for side, label, color in (("plain", "N gunicorns (1 app each)", "tab:red"),
                                   ("ctxserve", "1 ctxserve process, N apps", "tab:blue")):
            ax.plot(counts, [mem[side][str(n)]["pss"] / 2**20 for n in counts], marker="o", color=color,
                    label=f"{label}: sum of Pss")
            ax.plot(counts, [mem[side][str(n)]["rss"] / 2**20 for n in counts], marker="x", color=color,
                    linestyle="--", alpha=0.6, label=f"{label}: sum of VmRSS")
        ax.set_xlabel("N small Flask apps")
        ax.set_ylabel("MiB (master + workers)")
        ax.set_xticks(counts)
        ax.set_ylim(bottom=0)
        ax.set_title("Memory: N Flask apps")
        ax.legend(fontsize=8)
        save(fig, "memory")

    http = data.get("http")
    if http and "skipped" not in http:
        labels = http["labels"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, key, title in ((axes[0], "rps", "requests/s (median, q1–q3)"),
                               (axes[1], "p99_us", "p99 latency, ms (median, q1–q3)")):
            scale = 1 / 1000 if key == "p99_us" else 1
            med = [http["stats"][lb][key]["median"] * scale for lb in labels]
            lo = [m - http["stats"][lb][key]["q1"] * scale for m, lb in zip(med, labels)]
            hi = [http["stats"][lb][key]["q3"] * scale - m for m, lb in zip(med, labels)]
            ax.bar(range(len(labels)), med, yerr=[lo, hi], capsize=4,
                   color=["tab:red"] + ["tab:blue"] * (len(labels) - 1))
            ax.set_xticks(range(len(labels)), [lb.replace(", ", "\n") for lb in labels], fontsize=8)
            ax.set_title(title)
        save(fig, "http")
    return made


# -- markdown -----------------------------------------------------------------------

def markdown(data: dict[str, Any], json_name: str) -> str:
    m = data["machine"]
    v = m["versions"]
    out: list[str] = []
    w = out.append
    w(f"# ctxserve benchmark — {data['date']} — {m['cpu_model']}, {m['cores']} cores"
      + (" (QUICK: numbers only show that it runs)" if data["quick"] else ""))
    w("")
    w(f"Command: `{data['command']}`; total {data['total_s']:.0f} s. Raw samples: `{json_name}`.")
    w("")
    w("| machine | |")
    w("| --- | --- |")
    w(f"| CPU | {m['cpu_model']} ({m['cores']} cores, {m['usable_cores']} usable) |")
    w(f"| memory | {_mib(m['memory_bytes'])} |")
    w(f"| kernel | {m['kernel']} |")
    w(f"| Python | {m['python']} ({m['python_build']}) |")
    w(f"| ctxserve | {v['ctxserve']} (git {m['git_commit']}; ctxserve/ working tree: {data['ctxserve_tree']}) |")
    w(f"| gunicorn / werkzeug / flask | {v['gunicorn']} / {v['werkzeug']} / {v['flask']} |")
    w(f"| wrk | {v['wrk']} |")
    w(f"| load average at start / end | {data['loadavg_start']} / {data['loadavg_end']} |")
    w(f"| date | {data['started']} |")
    w("")
    w("The machine is shared and noisy: every comparison below ran interleaved in the same run, "
      "and every number is a median over rounds (ratios are median / median unless noted). "
      "Micro-benchmarks run with the garbage collector off.")
    w("")
    w("## Against the targets")
    w("")
    w("| target | measured | verdict |")
    w("| --- | --- | --- |")
    for row in data["targets"]:
        w(f"| {row['target']} | {row['measured']} | {row['verdict']} |")
    w("")
    if data.get("micro"):
        _micro(w, data["micro"], data.get("plots", {}))
    if data.get("virt"):
        _virt(w, data["virt"])
    if data.get("http"):
        _http(w, data["http"], data.get("plots", {}))
    if data.get("memory"):
        _memory(w, data["memory"], data.get("plots", {}))
    if data.get("plots_note"):
        w(f"_{data['plots_note']}_")
        w("")
    return "\n".join(out) + "\n"


def _micro(w: Any, micro: dict[str, Any], plots: dict[str, str]) -> None:
    o = micro["overhead"]
    w("## 1. Per-request overhead in process")
    w("")
    w(f"One mount, `GET /a0/hello`; a prebuilt environ copied per request, a no-op `start_response`, "
      f"the body iterated and closed as a server does. {o['rounds']} interleaved rounds of "
      f"{o['n_per_sample']} requests per variant. *Overhead* = median over rounds of "
      "(variant − direct call of the same app in the same round).")
    w("")
    w("| variant | ns/request (median) | q1–q3 | overhead vs direct | ratio |")
    w("| --- | ---: | ---: | ---: | ---: |")
    for name, st in o["stats"].items():
        if name.startswith("part:"):
            continue
        ov = o["overhead_ns"][name]
        w(f"| {name} | {st['median']:,.0f} | {st['q1']:,.0f}–{st['q3']:,.0f} | "
          f"{ov['overhead_ns']:,.0f} | {_x(ov['ratio'])} |")
    w("")
    w("Where ctxserve's time goes (list body unless named), each measured as its own variant in the same rounds:")
    w("")
    w("| part | ns/request | overhead vs direct |")
    w("| --- | ---: | ---: |")
    for name, st in o["stats"].items():
        if name.startswith("part:"):
            w(f"| {name[5:]} | {st['median']:,.0f} | {o['overhead_ns'][name]['overhead_ns']:,.0f} |")
    w("")
    w("* *Context.copy().run floor*: the least any context-per-request design can cost "
      "(copy a one-variable context, run the app in it).")
    w("* *Dispatcher routing only*: ctxserve's Dispatcher in front of the bare function, no context.")
    w("* *App.serve only*: what the Dispatcher calls once routed: context copy + run + response handling.")
    w("")
    if plots.get("overhead"):
        w(f"![in-process cost per request]({plots['overhead']})")
        w("")
    w("### cProfile of the ctxserve path")
    w("")
    for key, title in (("list", "list body, per request"), ("gen", "generator body, per request"),
                       ("print", "`print()` inside an app (stdout = \"null\"), per print() call")):
        prof = o["profile"][key]
        w(f"**{title}** ({prof['requests']:,} calls; own-time share, cProfile's own cost included):")
        w("")
        w("| function | where | calls | share of own time |")
        w("| --- | --- | ---: | ---: |")
        for row in prof["rows"][:10]:
            w(f"| `{row['function']}` | {row['where']} | {row['calls_per_request']:.2f} | {row['share']:.0%} |")
        w("")
    s = micro["scale"]
    w("## 2. Flat in scale")
    w("")
    w(f"{s['rounds']} interleaved rounds of {s['n_per_sample']} requests. With N apps mounted at "
      "`/a0`…`/a{N-1}` the request goes to the middle one; werkzeug's DispatcherMiddleware gets the same "
      "N mounts. Overhead over a direct call of the same function.")
    w("")
    w("| mounted apps | ctxserve ns/request | ctxserve overhead | werkzeug ns/request | werkzeug overhead | build time (ctxserve) |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in s["counts"]:
        w(f"| {n} | {s['stats'][f'ctxserve/apps={n}']['median']:,.0f} | {s['overhead_ns'][f'ctxserve/apps={n}']:,.0f} "
          f"| {s['stats'][f'werkzeug/apps={n}']['median']:,.0f} | {s['overhead_ns'][f'werkzeug/apps={n}']:,.0f} "
          f"| {s['build_seconds'][f'apps={n}']:.2f} s |")
    w("")
    w("One app with K entries in its `environ` table: the bare app (overhead over a direct call), and an app "
      "that reads `os.environ.get(\"BENCH_KEY\")` per request (total ns; its direct call outside any app reads "
      f"the real environment: {s['stats']['direct/environ_reader']['median']:,.0f} ns).")
    w("")
    w("| environ entries | bare app overhead | os.environ-reading app, ns/request |")
    w("| ---: | ---: | ---: |")
    for k in s["counts"]:
        w(f"| {k} | {s['overhead_ns'][f'ctxserve/environ={k}']:,.0f} | "
          f"{s['stats'][f'ctxserve/environ={k}/environ_reader']['median']:,.0f} |")
    w("")
    if plots.get("scale"):
        w(f"![per-request overhead vs number of apps]({plots['scale']})")
        w("")


def _virt(w: Any, virt: dict[str, Any]) -> None:
    w("## 3. Virtualized globals inside an app vs plain Python")
    w("")
    w(f"ns per operation; median over {virt['rounds']} rounds, each a pair of fresh processes (plain Python, "
      f"where ctxserve is never imported, and a ctxserve process), {virt['samples_per_worker']} interleaved "
      "samples per variant in each. `print()` and `sys.stdout.write` write a ~60-character line. "
      "*plain*: `sys.stdout` is a block-buffered file (a process whose stdout is a file); "
      "*line-buffered*: flushed at each newline, as ctxserve's file destination is; "
      "*app, file*: inside a request of an app whose `stdout` is a file; *app, null*: `stdout = \"null\"` "
      "(the virtualization without the I/O); *ctxserve, outside apps*: the server's own code once ctxserve "
      "is installed.")
    w("")
    variants = list(next(iter(virt["stats"].values())))
    w("| operation | " + " | ".join(variants) + " | app, file / plain | app, file / line-buffered | app, null / plain | outside apps / plain |")
    w("| --- | " + " | ".join("---:" for _ in variants) + " | ---: | ---: | ---: | ---: |")
    for op, stats in virt["stats"].items():
        r = virt["ratios"][op]
        w(f"| `{op}` | " + " | ".join(f"{stats[v]['median']:,.0f}" for v in variants)
          + f" | {_x(r['app, file destination / plain'])} | {_x(r['app, file destination / plain, line-buffered file'])}"
          f" | {_x(r['app, null destination / plain'])} | {_x(r['ctxserve, outside apps / plain'])} |")
    w("")


def _http(w: Any, http: dict[str, Any], plots: dict[str, str]) -> None:
    w("## 4. HTTP end to end (gunicorn + wrk, 127.0.0.1)")
    w("")
    if "skipped" in http:
        w(f"Skipped: {http['skipped']}.")
        w("")
        return
    w(f"Every server: {http['server']}. `wrk -t{http['wrk_threads']} -c{http['connections']} "
      f"-d{http['seconds']}s`, {http['rounds']} rounds, servers in a rotated order each round"
      + (f", after a {http['warmup_seconds']} s warm-up run each. " if http.get("warmup_seconds") else ". ") +
      "The bare app under plain gunicorn vs the same app behind `ctxserve serve` with N apps mounted "
      "(requests spread over all N). Client and server share the 2 cores. *Server CPU/request*: user + "
      "system CPU time of master + worker (`/proc/PID/stat`) during the run, divided by the requests served.")
    w("")
    w("| server | req/s (median) | req/s q1–q3 | p50 | p90 | p99 | p99 q1–q3 | server CPU/request (q1–q3) | errors | req/s ratio | p99 ratio | CPU/request ratio |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label in http["labels"]:
        st = http["stats"][label]
        r = http["ratios"].get(label)
        ratios = f"{_x(r['rps'])} | {_x(r['p99'])} | {_x(r['cpu_per_request'])}" if r else "— | — | —"
        w(f"| {label} | {st['rps']['median']:,.0f} | {st['rps']['q1']:,.0f}–{st['rps']['q3']:,.0f} | "
          f"{st['p50_us']['median'] / 1000:.2f} ms | {st['p90_us']['median'] / 1000:.2f} ms | "
          f"{st['p99_us']['median'] / 1000:.2f} ms | {st['p99_us']['q1'] / 1000:.2f}–{st['p99_us']['q3'] / 1000:.2f} ms | "
          f"{st['cpu_us_per_request']['median']:.0f} µs ({st['cpu_us_per_request']['q1']:.0f}–"
          f"{st['cpu_us_per_request']['q3']:.0f}) | {st['errors']} | {ratios} |")
    w("")
    w("Per-round ratios (each ctxserve run against the plain run of the same round), median: " + "; ".join(
        f"{label}: req/s {_x(r['rps_paired_median'])}, p99 {_x(r['p99_paired_median'])}"
        for label, r in http["ratios"].items()) + ".")
    w("")
    if plots.get("http"):
        w(f"![HTTP throughput and p99]({plots['http']})")
        w("")


def _memory(w: Any, mem: dict[str, Any], plots: dict[str, str]) -> None:
    w("## 5. Memory: N small Flask apps")
    w("")
    w("N × `gunicorn 'benchflask:create_app(\"aK\")'` (gthread, 1 worker, 8 threads; master + worker each) vs one "
      "`ctxserve serve` with the same N apps (master + 1 worker), each app warmed with the same "
      f"{len(WARM_PATHS)} routes × {WARM_REPEATS} requests before measuring. **Pss** = sum over master and "
      "worker processes of `Pss` from `/proc/PID/smaps_rollup` (shared pages split between the processes "
      "that share them: the real total; headline). **VmRSS** = sum of `VmRSS` from `/proc/PID/status` "
      "(counts pages shared by master and worker once per process). **USS** = private pages only "
      "(`Private_Clean + Private_Dirty`): what would be freed if the processes exited. Pss of shared "
      "libraries (libpython) also depends on how many *other* processes on the machine map them.")
    w("")
    w("| N | gunicorns Pss | ctxserve Pss | Pss ratio | gunicorns VmRSS | ctxserve VmRSS | VmRSS ratio | gunicorns USS | ctxserve USS | processes |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in mem["counts"]:
        p, c, r = mem["plain"][str(n)], mem["ctxserve"][str(n)], mem["ratios"][str(n)]
        w(f"| {n} | {_mib(p['pss'])} | {_mib(c['pss'])} | {_x(r['pss'])} | {_mib(p['rss'])} | {_mib(c['rss'])} "
          f"| {_x(r['rss'])} | {_mib(p['uss'])} | {_mib(c['uss'])} | {p['processes']} vs {c['processes']} |")
    w("")
    if mem.get("per_app_bytes"):
        pa = mem["per_app_bytes"]
        w(f"Each additional app costs {_mib(pa['plain']['pss'])} Pss ({_mib(pa['plain']['uss'])} USS) as its own "
          f"gunicorn and {_mib(pa['ctxserve']['pss'])} Pss ({_mib(pa['ctxserve']['uss'])} USS) inside ctxserve "
          f"(slope between N = {mem['counts'][0]} and N = {mem['counts'][-1]}).")
        w("")
    if plots.get("memory"):
        w(f"![memory vs N]({plots['memory']})")
        w("")
