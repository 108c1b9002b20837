"""``python -m bench [--quick] [--only STAGE[,STAGE...]]``: install the peers,
run the stages, write bench/results/latest.json and render BENCHMARKS.md.

A stage that fails is recorded with its error and the others still run; the
exit status is then 1. Results of stages not run this time are kept from the
previous results file, each stamped with when and how it was measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import common, peers, report
from bench.common import RESULTS, ROOT, log


def _stages() -> dict[str, tuple[set[str], Callable[[bool], dict]]]:
    from bench import (
        coldstart,
        density,
        idle,
        layers,
        multinode,
        neighbours,
        observe,
        queues,
        warm,
        workflows,
    )

    return {
        "coldstart": ({"lambda-local", "functions-framework"}, coldstart.run_coldstart),
        "heavy": (set(), coldstart.run_heavy),
        "warm": ({"wrk", "uvicorn", "powertools", "functions-framework"}, warm.run),
        "density": (set(), density.run),
        "layers": (set(), layers.run),
        "queues": (set(), queues.stage),
        "neighbours": ({"wrk"}, neighbours.run),
        "idle": (set(), idle.stage),
        "observe": ({"wrk"}, observe.run),
        "multinode": ({"wrk"}, multinode.stage),
        "workflows": ({"workflows"}, workflows.stage),
    }


def _command() -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(ROOT)
    return shlex.join([str(exe), "-m", "bench", *sys.argv[1:]])


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if data.get("schema") == 1 else {}
    except (OSError, ValueError):
        return {}


def _save(results: dict, path: Path, markdown: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    markdown.write_text(report.render(results))


def main(argv: list[str] | None = None) -> int:
    stages = _stages()
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few iterations (development)")
    ap.add_argument("--only", default="", help="comma-separated stages: " + ",".join(stages))
    ap.add_argument("--results", type=Path, default=RESULTS / "latest.json",
                    help="results JSON (default bench/results/latest.json)")
    ap.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md",
                    help="report to render (default BENCHMARKS.md)")
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(stages)
    unknown = [s for s in chosen if s not in stages]
    if unknown:
        ap.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(stages)}")

    common.install_signal_handlers()
    common.pin_harness()
    results = _load(args.results)
    results["schema"] = 1
    results.setdefault("stages", {})
    failed = False
    try:
        peers.ensure(set().union(*(stages[s][0] for s in chosen)))
        results["meta"] = {"command": _command(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "machine": report.machine(), "versions": peers.versions(),
                           "git": report.git()}
        for name in chosen:
            log(f"stage {name}{' (quick)' if args.quick else ''}")
            entry: dict = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
                           "command": _command()}
            entry["load_before"] = load = common.machine_load()
            if any(v > 0.1 for v in load["busy"].values()):
                log(f"the machine is busy before {name}: {load['busy']}; "
                    f"{[(h['pid'], h['cpu'], h['cmd'][:60]) for h in load['busy_processes']]}")
            t0 = time.monotonic()
            try:
                entry["result"] = stages[name][1](args.quick)
            except Exception:  # noqa: BLE001 - one stage's failure is recorded, the rest run
                failed = True
                entry["error"] = traceback.format_exc()
                log(f"stage {name} failed:\n{entry['error']}")
            finally:
                common.children.stop_all()
            entry["seconds"] = round(time.monotonic() - t0, 1)
            entry["leaked_processes"] = list(common.LEAKED)
            common.LEAKED.clear()
            results["stages"][name] = entry
            results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
            _save(results, args.results, args.markdown)
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    finally:
        common.children.stop_all()
    log(f"wrote {os.path.relpath(args.results)} and {os.path.relpath(args.markdown)}")
    for t in report.targets(results):
        mark = "  -  " if t["met"] is None else ("met " if t["met"] else "MISS")
        log(f"  [{mark}] {t['target']}: {t['figure']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
