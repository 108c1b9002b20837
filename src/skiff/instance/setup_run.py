"""One build or release command of an app, run in the app's sandbox.

The platform starts ``python -I -m skiff.instance.setup_run`` as root (or as
itself when it is not), puts it in a cgroup with the app's limits, and only
then writes the :class:`Job` to its stdin, so nothing runs before it is
contained. The runner enters new pid (and, for strict apps, network)
namespaces, forks the namespace's pid 1, which applies the same
:func:`skiff.instance.sandbox.apply` plan an instance gets (a minimal root,
the app's uid, no capabilities, no_new_privs, seccomp), starts the egress
relay when the app has a network namespace, and runs ``/bin/sh -c COMMAND``.
When pid 1 exits the kernel kills whatever else the command left in the
namespace, and pid 1 dies with the runner (the platform kills the runner at
the timeout), so a command cannot outlive its step.

Exit status: the command's (128 + N when signal N ended it); 125 when the
sandbox could not be applied (the reason on stderr).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import msgspec

from skiff.ipc import Plan

SANDBOX_FAILED = 125


class Job(msgspec.Struct, frozen=True):
    command: str
    cwd: str
    env: dict[str, str]
    plan: Plan | None = None
    network_ns: bool = False  # strict: loopback only, egress through the relay
    rlimit_memory_mb: int = 0  # no cgroup holds the runner: cap the address space instead
    max_file_bytes: int = 0  # RLIMIT_FSIZE: no single file the command writes grows past it


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else \
        128 + os.WTERMSIG(status)


def _run(job: Job) -> int:
    """In pid 1 of the namespace (or the runner itself, with no sandbox)."""
    from skiff.instance import sandbox

    try:
        if job.network_ns:
            sandbox.loopback_up()
        if job.plan is not None:
            sandbox.apply(job.plan)
    except OSError as exc:
        print(f"skiff: the sandbox could not be applied: {exc}", file=sys.stderr, flush=True)
        return SANDBOX_FAILED
    env = dict(job.env)
    if job.network_ns and job.plan is not None and job.plan.egress_socket:
        sandbox.start_egress_relay(job.plan.egress_socket)
        env.update({k: os.environ[k] for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                                "https_proxy", sandbox.PROXY_PORT_ENV)})
    if job.rlimit_memory_mb:
        limit = job.rlimit_memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if job.max_file_bytes:
        resource.setrlimit(resource.RLIMIT_FSIZE, (job.max_file_bytes, job.max_file_bytes))
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", job.command], cwd=job.cwd, env=env,
                                stdin=subprocess.DEVNULL, close_fds=True)
    except OSError as exc:
        print(f"skiff: the command could not start: {exc}", file=sys.stderr, flush=True)
        return 127
    while True:  # as pid 1 we reap every orphan too; the command's status is ours
        pid, status = os.wait()
        if pid == proc.pid:
            return _exit_code(status)


def main() -> None:
    job = msgspec.json.decode(sys.stdin.buffer.read(), type=Job)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    if job.plan is None or not job.plan.mount_ns:
        os._exit(_run(job))
    from skiff.instance import sandbox
    from skiff.instance.control import die_with_parent

    try:
        sandbox.enter_namespaces(job.network_ns)
    except OSError as exc:
        print(f"skiff: the sandbox could not be applied: {exc}", file=sys.stderr, flush=True)
        os._exit(SANDBOX_FAILED)
    child = os.fork()
    if child == 0:
        die_with_parent()
        sys.stdout.flush()
        os._exit(_run(job))
    _pid, status = os.waitpid(child, 0)
    os._exit(_exit_code(status))


if __name__ == "__main__":
    main()
