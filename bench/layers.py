"""The cost of each sandbox layer, measured in forked children of this warm
process (as instances are forked from a zygote).

    sudo .venv/bin/python -m bench.layers [--n 300] [--json OUT]

For each layer: fork a child, apply the layer, have the child write one byte
to a pipe; the time from fork to byte minus the same for a bare fork is what
the layer adds. Layers the platform applies ahead of demand (cgroup, pid and
network namespaces, made with the pre-forked spares) are marked so: they are
off the cold-start path. The shared part of the minimal root is staged with
the spare too; the last rows time what is left at bind from the spare's
wake-up (against their own baseline: a wake-up with nothing to do).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from skiff.instance import sandbox, seccomp
from skiff.instance.cgroups import CgroupManager
from skiff.instance.isolation import Support, plan_for


def _timed_fork(setup: Callable[[], None]) -> float:
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            setup()
            os.write(w, b"x")
        finally:
            os._exit(0)
    os.close(w)
    os.read(r, 1)
    elapsed = time.perf_counter() - t0
    os.close(r)
    os.waitpid(pid, 0)
    return elapsed * 1000


def _timed_wake(prepare: Callable[[], None], setup: Callable[[], None]) -> float:
    """As a spare is used: forked and ``prepare``d ahead (not timed), then woken
    and ``setup`` run; the time from the wake-up to its byte."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            prepare()
            os.write(ready_w, b"p")
            os.read(go_r, 1)
            setup()
            os.write(ready_w, b"x")
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    t0 = time.perf_counter()
    os.write(go_w, b"g")
    os.read(ready_r, 1)
    elapsed = time.perf_counter() - t0
    for fd in (ready_r, ready_w, go_r, go_w):
        os.close(fd)
    os.waitpid(pid, 0)
    return elapsed * 1000


def _pid_ns() -> None:
    sandbox.unshare(sandbox.CLONE_NEWPID)
    pid = os.fork()  # the instance is pid 1 of the new namespace
    if pid:
        os.waitpid(pid, 0)
        os._exit(0)


def run(quick: bool = False) -> dict:
    """The ``layers`` stage of ``python -m bench``."""
    if os.geteuid() != 0:
        raise RuntimeError("bench.layers needs root (namespaces, cgroups, uid changes)")
    return measure(50 if quick else 300)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.layers needs root (namespaces, cgroups, uid changes)")
    out = measure(args.n)
    print("| layer | applied at | fork→ready median ms | p95 ms | added (median) ms |")
    print("|---|---|---|---|---|")
    for r in out["layers"]:
        print(f"| {r['layer']} | {r['when']} | {r['median_ms']} | {r['p95_ms']} | "
              f"{r['added_median_ms']} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


def measure(n: int) -> dict:

    home = Path(tempfile.mkdtemp(prefix="skiff-layers-"))
    code = home / "revisions" / "app" / "r1"
    code.mkdir(parents=True)
    manager = CgroupManager(f"skiff-bench-{uuid.uuid4().hex[:6]}")
    support = Support.probe(manager)
    plan = plan_for(support, "strict", uid=150_000, home=home, code_dir=code,
                    python=sys.executable, tmp_mb=64)
    assert plan is not None
    counter = iter(range(10**9))

    def cgroup() -> None:
        cg = manager.create(f"b{next(counter)}")
        if cg is not None:
            cg.limit(256, 1.0, 64)
            cg.attach(os.getpid())

    def uid_drop() -> None:
        os.setgroups([])
        os.setresgid(150_000, 150_000, 150_000)
        os.setresuid(150_000, 150_000, 150_000)

    def rlimits() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    def mount_ns_alone() -> None:
        sandbox.unshare(sandbox.CLONE_NEWNS)
        sandbox._mount(None, "/", None, sandbox.MS_REC | sandbox.MS_PRIVATE)

    def previous_mount_layer() -> None:
        """The mount layer before the minimal root, for comparison: the host's
        tree with $SKIFF_HOME and /root covered, a private /tmp and /proc."""
        m = sandbox._mount
        sandbox.unshare(sandbox.CLONE_NEWNS)
        m(None, "/", None, sandbox.MS_REC | sandbox.MS_PRIVATE)
        keep = [(p, os.open(p, os.O_PATH)) for p in (sys.base_prefix, str(code))]
        flags = sandbox.MS_NOSUID | sandbox.MS_NODEV
        m("tmpfs", "/tmp", "tmpfs", flags, "mode=1777,size=64m")
        for hidden in (str(home), "/root"):
            if os.path.isdir(hidden):
                m("tmpfs", hidden, "tmpfs", flags, "mode=755,size=1m")
        for path, fd in keep:
            os.makedirs(path, exist_ok=True)
            m(f"/proc/self/fd/{fd}", path, None, sandbox.MS_BIND | sandbox.MS_REC)
            m(None, path, None, sandbox.MS_BIND | sandbox.MS_REMOUNT | sandbox.MS_RDONLY | flags)
            os.close(fd)
        m("tmpfs", "/dev/shm", "tmpfs", flags | sandbox.MS_NOEXEC, "mode=1777,size=64m")
        m("proc", "/proc", "proc", flags | sandbox.MS_NOEXEC, "hidepid=2")

    def net_ns() -> None:
        sandbox.unshare(sandbox.CLONE_NEWNET)
        sandbox.loopback_up()

    layers: list[tuple[str, Callable[[], None], str]] = [
        ("bare fork (baseline)", lambda: None, "-"),
        ("rlimits", rlimits, "bind"),
        ("uid/gid drop", uid_drop, "bind"),
        ("no_new_privs", lambda: sandbox._check(sandbox._libc.prctl(38, 1, 0, 0, 0), "nnp"), "bind"),
        ("seccomp filter", lambda: (sandbox._libc.prctl(38, 1, 0, 0, 0), seccomp.install()), "bind"),
        ("mount namespace alone (unshare + private /)", mount_ns_alone, "bind"),
        ("previous mount layer (home and /root covered, private /tmp)", previous_mount_layer,
         "bind"),
        (f"minimal root ({len(plan.binds)} binds, /etc, /dev, tmpfs, pivot_root, /proc)",
         lambda: sandbox._mount_namespace(plan), "bind"),
        ("cgroup mkdir + limits + attach", cgroup, "spare (ahead of demand)"),
        ("network namespace + lo up", net_ns, "spare (ahead of demand)"),
        ("pid namespace (+ fork)", _pid_ns, "spare (ahead of demand)"),
        ("everything at bind (strict)", lambda: sandbox.apply(plan), "bind"),
    ]
    # rows timed from a spare's wake-up, not its fork: their own baseline first
    woken: list[tuple[str, Callable[[], None], Callable[[], None], str]] = [
        ("spare woken, nothing to do (baseline of the rows below)", lambda: None,
         lambda: None, "-"),
        ("minimal root, app part (shared part staged with the spare)", sandbox.prepare_root,
         lambda: sandbox._mount_namespace(plan), "bind"),
        ("everything at bind (strict), shared root staged", sandbox.prepare_root,
         lambda: sandbox.apply(plan), "bind"),
    ]
    # round robin over the layers: a change in the machine's load hits them all alike
    runs: list[list[float]] = [[] for _ in (*layers, *woken)]
    for _ in range(n):
        for i, (_name, fn, _when) in enumerate(layers):
            runs[i].append(_timed_fork(fn))
        for i, (_name, prep, fn, _when) in enumerate(woken, len(layers)):
            runs[i].append(_timed_wake(prep, fn))
    results = []
    base = None
    rows = [(name, when) for name, _f, when in layers] + [(name, when) for name, *_r, when in woken]
    for i, ((name, when), samples) in enumerate(zip(rows, runs, strict=True)):
        samples.sort()
        med = statistics.median(samples)
        p95 = samples[int(0.95 * len(samples)) - 1]
        if base is None or i == len(layers):
            base = med
        results.append({"layer": name, "when": when, "median_ms": round(med, 3),
                        "p95_ms": round(p95, 3), "added_median_ms": round(med - base, 3)})
    manager.close()
    return {"n": n, "layers": results}


if __name__ == "__main__":
    main()
