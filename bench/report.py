"""Results: the machine they were measured on, the targets they are held
against, and BENCHMARKS.md rendered from ``bench/results/latest.json``.

Ratios are always Skiff / peer: for latencies below 1 means Skiff is faster,
for throughput above 1 means Skiff serves more.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT

# -- the machine ----------------------------------------------------------------------


def machine() -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       "?")
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
            mem_gib = round(kib / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "memory_gib": mem_gib, "loadavg_at_start": list(os.getloadavg())}


def git() -> dict:
    """Commit and whether the tree had local changes (read-only git calls)."""

    def run(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return {"commit": run("rev-parse", "--short", "HEAD"),
            "dirty": bool(run("status", "--porcelain", "--untracked-files=no"))}


# -- helpers --------------------------------------------------------------------------------

def _row(rows: list[dict], name: str) -> dict | None:
    return next((r for r in rows if r.get("name") == name), None)


def _stage(results: dict, name: str) -> dict | None:
    entry = results.get("stages", {}).get(name)
    return entry.get("result") if entry and "result" in entry else None


def _warm_row(warm: dict | None, target: str, c: int) -> dict | None:
    if not warm:
        return None
    t = next((t for t in warm["targets"] if t["name"] == target), None)
    return next((r for r in t["rows"] if r["c"] == c), None) if t else None


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _x(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}×"


# -- targets --------------------------------------------------------------------------------

def targets(results: dict) -> list[dict]:
    """Each target with its figure and met/missed (None when not measured)."""
    out: list[dict] = []

    stage_of = {"cold start": "coldstart", "preinit": "heavy", "warm": "warm", "200": "density",
                "1,000": "density", "async": "queues", "neighbour": "neighbours",
                "idle": "idle"}

    def add(target: str, figure: str, met: bool | None) -> None:
        stage = next(v for k, v in stage_of.items() if target.startswith(k))
        entry = results.get("stages", {}).get(stage, {})
        out.append({"target": target, "figure": figure, "met": met, "stage": stage,
                    "quick": entry.get("quick"),
                    "disturbed": any(v > 0.1 for v in
                                     (entry.get("load_before") or {}).get("busy", {}).values())})

    cold = _stage(results, "coldstart")
    sk = _row(cold["rows"], "skiff") if cold else None
    p50 = sk["client_ms"].get("p50") if sk else None
    p99 = sk["client_ms"].get("p99") if sk else None
    add("cold start p50 ≤ 2 ms", f"{_fmt(p50)} ms", None if p50 is None else p50 <= 2)
    add("cold start p99 ≤ 10 ms", f"{_fmt(p99)} ms", None if p99 is None else p99 <= 10)

    heavy = _stage(results, "heavy")
    pre = _row(heavy["rows"], "heavy-preinit") if heavy else None
    hp50 = pre["client_ms"].get("p50") if pre else None
    hp99 = pre["client_ms"].get("p99") if pre else None
    add("preinit 300 ms-init app cold start ≤ 10 ms (p50)",
        f"p50 {_fmt(hp50)} ms (p99 {_fmt(hp99)} ms)", None if hp50 is None else hp50 <= 10)

    warm = _stage(results, "warm")
    s16 = _warm_row(warm, "skiff-hello", 16)
    for peer, factor, label in (("uvicorn-raw", 0.5, "raw uvicorn"),
                                ("powertools", 1.3, "the Powertools adapter"),
                                ("ff-flask", 4.0, "functions-framework default")):
        r = _ratio(s16 and s16["rps"], (_warm_row(warm, peer, 16) or {}).get("rps"))
        add(f"warm hello c=16 ≥ {factor:g}× {label} throughput", _x(r),
            None if r is None else r >= factor)
    r = _ratio(s16 and s16["p99_ms"], (_warm_row(warm, "uvicorn-raw", 16) or {}).get("p99_ms"))
    add("warm hello c=16 p99 ≤ 2× raw uvicorn's", _x(r), None if r is None else r <= 2)

    dens = _stage(results, "density")
    w200 = next((w for w in (dens or {}).get("warm_idle", []) if w["n"] == 200), None)
    mib = w200["instances_pss_mib"] if w200 else None
    reached = bool(w200 and w200.get("reached", True))
    figure = f"{_fmt(mib, 1)} MiB"
    if w200:
        figure += f" (+ platform {w200['platform_pss_mib']:.1f} MiB)"
        if not reached:
            figure += (f" — only {w200['instances']} of 200 instances came up "
                       f"({w200.get('status')})")
    add("200 warm idle instances ≤ 1 GiB PSS", figure,
        None if mib is None or not reached else mib <= 1024)
    z = (dens or {}).get("scaled_to_zero")
    figure = "–"
    if z:
        figure = f"{z['instances']} instances for {z['apps']} apps"
        if z.get("failed_deploys"):
            figure += f" ({z['failed_deploys']} of {z.get('requested')} deploys failed)"
    add("1,000 scaled-to-zero apps cost no instance processes", figure,
        None if not z or z["apps"] < 1000 else z["instances"] == 0)

    queues = _stage(results, "queues")
    ratio = (queues or {}).get("ratios", {}).get("skiff / dramatiq-redis-nofsync")
    add("async throughput ≥ 1.5× Dramatiq + Redis (durable SQLite)", _x(ratio),
        None if ratio is None else ratio >= 1.5)
    lat = (_row(queues["rows"], "skiff") or {}).get("latency", {}).get(
        "enqueue_to_start_ms", {}) if queues else {}
    for q, bound in (("p50", 2.0), ("p99", 5.0)):
        v = lat.get(q)
        add(f"async enqueue→start {q} ≤ {bound:g} ms", f"{_fmt(v)} ms",
            None if v is None else v <= bound)

    nb = _stage(results, "neighbours")
    ratio = (nb or {}).get("p99_ratio")
    add("neighbour p99 during a CPU + memory hog ≤ 2× quiet", _x(ratio),
        None if ratio is None else ratio <= 2)
    idle = _stage(results, "idle")
    rows = idle["rows"] if idle else []
    pct = rows[-1]["idle"]["cpu_pct_of_core"] if rows else None
    add(f"idle platform with {idle['apps'] if idle else 1000} apps (async, queue trigger, "
        "schedule) ≤ 1 % of a core", f"{_fmt(pct)} %" + (
            f" (base {rows[0]['idle']['cpu_pct_of_core']} %)" if len(rows) > 1 else ""),
        None if pct is None else pct <= 1)

    return out


# -- markdown -------------------------------------------------------------------------------

def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _stage_note(results: dict, name: str) -> str:
    entry = results["stages"].get(name, {})
    bits = [f"measured {entry.get('at', '?')}"]
    if entry.get("quick"):
        bits.append("**quick run** (few iterations)")
    bits.append(f"`{entry.get('command', '?')}`")
    note = "_" + ", ".join(bits[:-1]) + "; " + bits[-1] + "_"
    load = entry.get("load_before") or {}
    busy = {k: v for k, v in load.get("busy", {}).items() if v > 0.1}
    if busy:
        hogs = "; ".join(f"pid {h['pid']} {h['cpu']:.0%} `{h['cmd'][:70]}`"
                         for h in load.get("busy_processes", [])[:5])
        note += ("\n\n> ⚠ The machine was busy when this stage started ("
                 + ", ".join(f"{k} {v:.0%}" for k, v in busy.items())
                 + (f"; {hogs}" if hogs else "") + "): these numbers are disturbed.")
    leaked = entry.get("leaked_processes") or []
    if leaked:
        note += (f"\n\n> ⚠ {len(leaked)} process(es) of Skiff servers in this stage outlived "
                 "their server (killed by the harness): "
                 + "; ".join(f"pid {x['pid']} `{x['cmd'][:60]}` in `{x['cwd']}`"
                             for x in leaked[:5]))
    return note


def _cold_section(results: dict, name: str, title: str, intro: str, ref: str) -> list[str]:
    res = _stage(results, name)
    entry = results["stages"].get(name)
    if entry is None:
        return []
    lines = [f"## {title}", "", _stage_note(results, name), ""]
    if res is None:
        return [*lines, f"Failed: `{entry.get('error', '?').strip().splitlines()[-1]}`", ""]
    lines += [intro, ""]
    sk = _row(res["rows"], ref) or res["rows"][0]
    rows = []
    for r in res["rows"]:
        c = r["client_ms"]
        mine = r is sk
        rows.append([r["label"], _fmt(c.get("n")), _fmt(c.get("p50")), _fmt(c.get("p95")),
                     _fmt(c.get("p99")),
                     "" if mine else _x(_ratio(sk["client_ms"].get("p50"), c.get("p50"))),
                     "" if mine else _x(_ratio(sk["client_ms"].get("p99"), c.get("p99")))])
    lines += _table(["runner", "n", "p50 ms", "p95 ms", "p99 ms", "Skiff/row p50",
                     "Skiff/row p99"], rows)
    lines += ["", f"Ratios: _{sk['label']}_ / that row (below 1: Skiff is faster)."]
    lines.append("")
    for r in res["rows"]:
        if "server_init_ms" in r:
            i, q, d = r["server_init_ms"], r["server_queued_ms"], r["server_duration_ms"]
            lines.append(f"- {r['label']} — server-side, from the invocation records "
                         f"({r['cold_recorded']} of {r['samples']} recorded cold): init_ms p50 "
                         f"{_fmt(i.get('p50'))} / p99 {_fmt(i.get('p99'))}; queued_ms (waiting "
                         f"for the instance, init included) p50 {_fmt(q.get('p50'))} / p99 "
                         f"{_fmt(q.get('p99'))}; handler duration_ms p50 {_fmt(d.get('p50'))}.")
    lines += ["", f"Scale to zero before each Skiff sample: `{res['scale_to_zero']}`; "
              f"spares per zygote: {res['spares']} (each sample waits until they are "
              "pre-forked again).", ""]
    return lines


def _warm_section(results: dict) -> list[str]:
    entry = results["stages"].get("warm")
    if entry is None:
        return []
    lines = ["## 3. Warm HTTP", "", _stage_note(results, "warm"), ""]
    res = _stage(results, "warm")
    if res is None:
        return [*lines, f"Failed: `{entry.get('error', '?').strip().splitlines()[-1]}`", ""]
    lines += [f"wrk, {res['seconds']} s per row after a {res['warmup_seconds']} s warm-up at "
              f"c=64; {res['pinning']}. Ratios: Skiff / that row at the same concurrency.", ""]
    for workload, skiff_name, title in (("hello", "skiff-hello", "hello Lambda handler"),
                                        ("fastapi", "skiff-fastapi", "small FastAPI app")):
        lines += [f"### {title}", ""]
        rows = []
        for t in (t for t in res["targets"] if t["workload"] == workload):
            for r in t["rows"]:
                s = _warm_row(res, skiff_name, r["c"])
                mine = t["name"] == skiff_name
                rows.append([t["label"], str(r["c"]), _fmt(r["rps"], 0), _fmt(r["p50_ms"]),
                             _fmt(r["p99_ms"]),
                             "" if mine else _x(_ratio(s and s["rps"], r["rps"])),
                             "" if mine else _x(_ratio(s and s["p99_ms"], r["p99_ms"])),
                             _fmt(r["errors"])])
        lines += _table(["server", "c", "req/s", "p50 ms", "p99 ms", "Skiff/peer req/s",
                         "Skiff/peer p99", "errors"], rows)
        lines.append("")
    mem = res.get("pss_kib_after") or {}
    if mem:
        lines.append("PSS of each server's process tree after its runs: " + ", ".join(
            f"{k} {v / 1024:.1f} MiB" for k, v in mem.items()) + f" (Skiff instances then: "
            f"{res.get('skiff_instances_after')}).")
        lines.append("")
    return lines


def _density_section(results: dict) -> list[str]:
    entry = results["stages"].get("density")
    if entry is None:
        return []
    lines = ["## 4. Density", "", _stage_note(results, "density"), ""]
    res = _stage(results, "density")
    if res is None:
        return [*lines, f"Failed: `{entry.get('error', '?').strip().splitlines()[-1]}`", ""]
    lines += ["PSS from /proc/PID/smaps_rollup, summed. An instance is a zygote child bound "
              "to an app, with the sandbox's helper process above it if there is one (its "
              "pid-namespace init); the platform is the gateway, the zygotes, the pre-forked "
              "spares and any other helper of the gateway. `instances (processes)` counts both.",
              ""]
    rows = []
    e = res["empty"]
    rows.append(["empty platform (no apps)", _fmt(e["processes"]), "0 (0)", "–", "–",
                 _fmt(e["platform_pss_mib"], 1), _fmt(e["total_pss_mib"], 1)])
    for w in res["warm_idle"]:
        per = w["instance_pss_kib"]
        short = "" if w.get("reached", True) else f" — **only {w['instances']} came up**"
        rows.append([f"{w['n']} warm idle instances (one app, minInstances {w['n']}){short}",
                     _fmt(w["processes"]), f"{w['instances']} ({w['instance_processes']})",
                     _fmt(w["instances_pss_mib"], 1),
                     f"{_fmt(per.get('p50'), 0)} KiB" if per.get("n") else "–",
                     _fmt(w["platform_pss_mib"], 1), _fmt(w["total_pss_mib"], 1)])
    z = res["scaled_to_zero"]
    rows.append([f"{z['apps']} registered apps, scaled to zero", _fmt(z["processes"]),
                 f"{z['instances']} ({z['instance_processes']})", _fmt(z["instances_pss_mib"], 1), "–",
                 _fmt(z["platform_pss_mib"], 1), _fmt(z["total_pss_mib"], 1)])
    lines += _table(["state", "processes", "instances (processes)", "instances PSS MiB",
                     "PSS per instance (p50)", "platform PSS MiB", "total PSS MiB"], rows)
    fr = z.get("first_request_ms", {})
    lines += ["", f"- {z['apps']} apps: `skiff up` ready after {z['deploy_ready_s']} s "
              f"(every deploy trial-loads its app), at most {z['peak_processes_during_deploy']} "
              f"processes during the deploys, every instance reaped {z['to_zero_s']} s after "
              f"ready; gateway PSS {z['gateway_pss_mib']} MiB vs {e['gateway_pss_mib']} MiB "
              "with no apps.",
              f"- First request to {fr.get('n', 0)} distinct scaled-to-zero apps among them: "
              f"p50 {_fmt(fr.get('p50'))} ms, p99 {_fmt(fr.get('p99'))} ms."]
    if z.get("failed_deploys"):
        lines.append(f"- {z['failed_deploys']} of {z.get('requested')} deploys failed, e.g. "
                     f"`{z['deploy_errors'][0][:200]}`.")
    for w in res["warm_idle"]:
        if w.get("reached", True):
            lines.append(f"- {w['n']} instances: all up {w['all_up_s']} s after ready.")
        else:
            lines.append(f"- {w['n']} instances: the pool {w.get('status')} at {w['instances']} "
                         f"instances with {w.get('api_starting')} reported as starting "
                         f"({w['all_up_s']} s after ready)"
                         + (f"; server log: `{w['server_errors'][-1][:160]}`"
                            if w.get("server_errors") else "") + ".")
    lines.append("")
    return lines


def _layers_section(results: dict) -> list[str]:
    stage = _stage(results, "layers")
    if not stage:
        return []
    out = ["## 5. Cost of each sandbox layer", "", _stage_note(results, "layers"), "",
           "Each layer applied in a child forked from a warm process (as an instance is "
           "forked from a zygote); the time from fork to the child's first byte, minus the "
           "same for a bare fork. Layers made with the pre-forked spares are off the "
           "cold-start path. Command: `sudo .venv/bin/python -m bench.layers`.", ""]
    out += _table(["layer", "applied", "fork→ready p50 ms", "p95 ms", "added p50 ms"],
                  [[r["layer"], r["when"], _fmt(r["median_ms"], 3), _fmt(r["p95_ms"], 3),
                    _fmt(r["added_median_ms"], 3)] for r in stage["layers"]])
    return [*out, ""]


def _queues_section(results: dict) -> list[str]:
    stage = _stage(results, "queues")
    if not stage:
        return []
    out = ["## 6. Async invocations and queues", "", _stage_note(results, "queues"), ""]
    out += [stage.get("markdown", "").rstrip(), ""]
    return out


def _workflows_section(results: dict) -> list[str]:
    stage = _stage(results, "workflows")
    if not stage:
        return []
    out = ["## 10. Workflows: overhead per durable Task state, against DBOS and Prefect", "",
           _stage_note(results, "workflows"), ""]
    out += [stage.get("markdown", "").rstrip(), ""]
    return out


def _neighbours_section(results: dict) -> list[str]:
    stage = _stage(results, "neighbours")
    if not stage:
        return []
    out = ["## 7. Neighbour impact (a CPU hog and a memory hog next to a hello app)", "",
           _stage_note(results, "neighbours"), "",
           f"`wrk -t1 -c{stage['connections']}` on the hello app through the gateway, "
           f"{stage['seconds']} s per phase, quiet, floor and attack phases in turns "
           f"({stage['rounds']} rounds); floor: two SCHED_IDLE busy loops outside Skiff (what "
           f"busy cores cost this machine, whatever the scheduler does); attack: "
           f"{stage['attack']}. The Skiff server is not pinned: the hogs, the neighbour and "
           "the gateway share both cores. Ratios are to the quiet phases, of the medians over "
           "the phases.", ""]
    out += _table(["round", "phase", "req/s", "p50 ms", "p99 ms", "errors", "hog requests"],
                  [[str(p["round"]), p["phase"], f"{p['rps']:.0f}", _fmt(p["p50_ms"]),
                    _fmt(p["p99_ms"]), str(p["errors"]),
                    ", ".join(f"{k}: {v}" for k, v in sorted(p["hogs"].items())) or "–"]
                   for p in stage["phases"]])
    out += ["", f"Attack / quiet: p50 {_x(stage['p50_ratio'])}, p99 {_x(stage['p99_ratio'])}, "
                f"throughput {_x(stage['rps_ratio'])}. Floor / quiet: p50 "
                f"{_x(stage.get('floor_p50_ratio'))}, p99 {_x(stage.get('floor_p99_ratio'))}.", ""]
    return out


def _idle_section(results: dict) -> list[str]:
    stage = _stage(results, "idle")
    if not stage:
        return []
    return ["## 8. Idle cost of the event plane", "", _stage_note(results, "idle"), "",
            stage.get("markdown", "").rstrip(), ""]


def _observe_section(results: dict) -> list[str]:
    stage = _stage(results, "observe")
    if not stage:
        return []
    ratio, median = stage.get("ratio_to_off", {}), stage.get("median_rps", {})
    return ["## 9. The cost of observing (metrics, traces, access log)", "",
            _stage_note(results, "observe"), "",
            f"Hello handler, wrk -c{stage.get('connections')}, {stage.get('rounds')} rounds of "
            f"{stage.get('seconds')} s per variant, interleaved; median req/s. Traces: "
            "always_on, exported over OTLP/HTTP to a local receiver "
            f"({stage.get('otlp_exports')} exports). Goal: ≥ 0.95× of off.", "",
            *_table(["variant", "req/s (median)", "× off"],
                    [[name, f"{median[name]:,.0f}", _x(ratio.get(name))] for name in median]),
            "", "Server CPU per request served (the gateway process, and with its instances):",
            "", *_table(["variant", "gateway µs", "gateway + instances µs"],
                        [[k, f"{v['gateway']:.1f}", f"{v['gateway+instances']:.1f}"]
                         for k, v in stage.get("server_cpu_us_per_request", {}).items()]),
            "", "CPU the request path spends on each, per request (thread time, in-process):", "",
            *_table(["call", "µs"], [[k, f"{v:.2f}"] for k, v in
                                     stage.get("cpu_us_per_request", {}).items()]),
            ""]


def render(results: dict) -> str:
    meta = results.get("meta", {})
    m = meta.get("machine", {})
    lines = [
        "# Benchmarks", "",
        "<!-- Generated by `python -m bench` from bench/results/latest.json; edits here are "
        "overwritten. -->", "",
        "Skiff against real peers on the same machine in the same run. Reproduce with "
        "`./dev bench` (or `.venv/bin/python -m bench`; `--quick` for a short run, "
        "`--only coldstart,heavy,warm,density` for some stages). Ratios are Skiff / peer: "
        "below 1 is better for latencies, above 1 for throughput. Targets are figures to "
        "report against, not assertions; the machine is shared, so read ratios rather than "
        "absolute numbers.", "",
        f"Last command: `{meta.get('command', '?')}` at {meta.get('finished', '?')}, "
        f"Skiff commit `{meta.get('git', {}).get('commit', '?')}`"
        + (" with local changes" if meta.get("git", {}).get("dirty") else "") + ".", "",
        "## Machine", "",
        *_table(["cpu", "cores", "memory", "kernel", "python", "load average at start"],
                [[str(m.get("cpu")), str(m.get("cores")), f"{m.get('memory_gib')} GiB",
                  str(m.get("kernel")), f"{m.get('implementation', '')} {m.get('python')}",
                  " / ".join(f"{x:.2f}" for x in m.get("loadavg_at_start", []))]]),
        "",
        "## Targets", "",
        *_table(["target", "figure", "met", "run"],
                [[t["target"], t["figure"],
                  "–" if t["met"] is None else ("✅ met" if t["met"] else "❌ missed"),
                  ("–" if t["quick"] is None else "quick" if t["quick"] else "full")
                  + (", machine busy ⚠" if t["disturbed"] else "")]
                 for t in targets(results)]),
        "",
    ]
    lines += _cold_section(
        results, "coldstart", "1. Cold start (hello handler)",
        "First request → full response, measured by the client. Skiff: a scaled-to-zero app, "
        "through the gateway on a kept-alive connection. Peers start from nothing, pinned to "
        "the server core like Skiff.", ref="skiff")
    lines += _cold_section(
        results, "heavy", "2. Cold start with heavy init (~300 ms of imports and CPU)",
        "An app whose import costs ~300 ms of real work (stdlib imports, a deterministic "
        "\"model\": LCG weights, matrix-vector passes, a hashed vocabulary), with and without "
        "`scaling.preinit: true`.", ref="heavy-preinit")
    lines += _warm_section(results)
    lines += _density_section(results)
    lines += _layers_section(results)
    lines += _queues_section(results)
    lines += _neighbours_section(results)
    lines += _idle_section(results)
    lines += _observe_section(results)
    lines += _workflows_section(results)
    notes = Path(__file__).with_name("NOTES.md")
    if notes.exists():  # profiles and explanations, written by people, kept across runs
        lines += [notes.read_text().rstrip(), ""]
    versions = meta.get("versions", {})
    if versions:
        lines += ["## Versions", ""]
        lines += _table(["environment", "packages"],
                        [[env, ", ".join(f"{k} {v}" for k, v in pkgs.items())]
                         for env, pkgs in versions.items()])
        lines.append("")
    lines += [
        "## Method", "",
        "- Two cores: every server (Skiff's gateway, zygotes and instances; each peer's "
        "server) runs on core 0 (`taskset -c 0`, inherited by children); wrk, the cold-start "
        "client and the harness run on core 1. One-shot peers (fresh interpreter, "
        "python-lambda-local, functions-framework) are spawned on core 0 too.",
        "- Cold start: Skiff scales the app to zero before every sample (admin API `DELETE "
        "/apps/{name}/instances`) and waits until the zygote's spares are pre-forked again, "
        "so each sample is the steady-state cost of a first request. Latencies are nearest-rank "
        "percentiles.",
        "- Peers are installed by the harness into their own virtual environments under "
        "`bench/.peers/` with uv, on the same interpreter as Skiff.",
        "- Warm: `wrk -t1 -cC -dD --timeout 10s -s bench/wrk_report.lua`; p50/p99 come from "
        "wrk's latency histogram (Lua `done()` hook).",
        "- Density: PSS (proportional set size) so pages shared with the zygote count once.",
        "",
    ]
    return "\n".join(lines)
