"""An app's setup steps: ``spec.build`` and ``spec.release`` commands.

- **build** runs once per revision, at deploy, in a writable copy of the new
  revision's code (before it is compiled and installed): what it writes, such
  as Django's collected static files, becomes part of that revision and is
  read-only at run time. It has no data directory: a revision's code must not
  depend on one node's data.
- **release** runs before a revision takes traffic, with ``$SKIFF_DATA_DIR``
  and the code read-only (database migrations, ``flask init-db``). As Heroku's
  release phase and Fly's ``release_command`` do, it runs for every new
  release: each deploy, each rollback (the revision rolled back to may expect
  an older schema: its own release decides), and a restore; not when a node
  restarts or follows a revision another node released.

Both run in the app's own sandbox (``skiff.instance.setup_run``): its uid,
its cgroup limits, its mount namespace, no network but the egress proxy under
strict isolation, with ``resources.memoryMB`` and ``spec.setupTimeout`` per
command. A non-zero exit or a timeout rejects the deploy (422
``build_failed`` / ``release_failed``) with the command's last lines of
output, and the revision that served keeps serving.

Hostile code runs here: its output is read into a bounded tail; what a build
writes is checked before the platform reads it (no link that leaves the code,
no special file, within the deploy's size and file limits) and handed back to
root, read-only for the app.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from skiff.config import Config
from skiff.errors import DeployError
from skiff.instance.cgroups import CgroupManager
from skiff.instance.isolation import Support, plan_for, volumes_supported
from skiff.instance.setup_run import SANDBOX_FAILED, Job
from skiff.manifest import Manifest
from skiff.platform.datadirs import run_tool
from skiff.platform.logsink import LogSink

TAIL_LINES = 20  # of a failed command's output, in the deploy's error
_TAIL_BYTES = 64 * 1024  # what is kept of any command's output (the rest is only logged)
_LINE_CHARS = 500


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    timed_out: bool
    tail: list[str]
    seconds: float


class SetupSteps:
    def __init__(self, config: Config, *, support: Support, cgroups: CgroupManager,
                 logs: LogSink, uid_for: Callable[[str], int],
                 egress_socket: Callable[[str], str]) -> None:
        self._config = config
        self._support = support
        self._cgroups = cgroups
        self._logs = logs
        self._uid_for = uid_for
        self._egress_socket = egress_socket

    # -- the two phases (blocking: run them off the loop) ---------------------------------
    def build(self, manifest: Manifest, digest: str, code: Path, python: str,
              env: dict[str, str]) -> None:
        """Run ``spec.build`` in ``code`` (the revision's staging copy), then seal it."""
        spec = manifest.spec
        if not spec.build:
            return
        uid = self._uid_for(manifest.name)
        with self._scratch(manifest.name, code) as work:
            _chown_tree(work, uid if self._support.root else os.geteuid())
            try:
                plan = self._plan(manifest, work, python)
                if plan is not None:  # the copy is the one place a build may write
                    plan = msgspec.structs.replace(
                        plan, binds=tuple(b for b in plan.binds if b != str(work)),
                        writable=(str(work),) if plan.mount_ns else ())
                for command in spec.build:
                    self._step(manifest, digest, "build", command, plan, str(work), env,
                               max_file_bytes=self._config.max_app_bytes)
            finally:
                _chown_tree(work, os.geteuid())
            self._seal(manifest.name, work)

    @contextlib.contextmanager
    def _scratch(self, app: str, code: Path) -> Iterator[Path]:
        """Where a build writes: a copy of ``code`` on an ext4 volume as big as the
        deploy's size limit (sparse: ~80 ms to make), so a hostile build cannot fill
        the host's disk, only its own volume (ENOSPC). Once the caller has sealed it,
        the result replaces ``code``. Without volumes (not root) the build writes in
        ``code`` itself, held only by RLIMIT_FSIZE and the check after it."""
        if not volumes_supported(self._support.root):
            yield code
            return
        work = code.with_name(f"{code.name}.build")
        image = code.with_name(f"{code.name}.build.ext4")
        try:
            work.mkdir(mode=0o700)
            os.close(os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            # the limit plus what ext4 keeps for itself (~4%)
            os.truncate(image, self._config.max_app_bytes * 105 // 100 + (8 << 20))
            run_tool("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
            run_tool("mount", "-o", "loop,nosuid,nodev", str(image), str(work))
        except OSError as exc:
            image.unlink(missing_ok=True)
            shutil.rmtree(work, ignore_errors=True)
            raise DeployError(f"deploy of {app}: no space for its build ({exc}); check free "
                              f"space under {code.parent}", code="build_failed") from None
        try:
            shutil.rmtree(work / "lost+found", ignore_errors=True)
            shutil.copytree(code, work, symlinks=True, dirs_exist_ok=True)
            yield work
            shutil.rmtree(code)
            shutil.copytree(work, code, symlinks=True)
        finally:
            subprocess.run(["umount", "-l", str(work)], capture_output=True, timeout=60)
            image.unlink(missing_ok=True)
            shutil.rmtree(work, ignore_errors=True)

    def release(self, manifest: Manifest, digest: str, code_dir: Path, python: str,
                env: dict[str, str], data_dir: tuple[Path, str] | None) -> None:
        """Run ``spec.release`` against the installed revision and the app's data."""
        spec = manifest.spec
        if not spec.release:
            return
        plan = self._plan(manifest, code_dir, python, data_dir)
        env = dict(env)
        if data_dir is not None:
            env["SKIFF_DATA_DIR"] = str(data_dir[0])
        for command in spec.release:
            self._step(manifest, digest, "release", command, plan, str(code_dir), env)

    # -- one command ----------------------------------------------------------------------
    def _plan(self, manifest: Manifest, code: Path, python: str,
              data_dir: tuple[Path, str] | None = None):  # noqa: ANN202 - Plan | None
        spec = manifest.spec
        return plan_for(self._support, spec.isolation, uid=self._uid_for(manifest.name),
                        home=self._config.home, code_dir=code, python=python,
                        tmp_mb=spec.resources.tmp_mb,
                        egress_socket=self._egress_socket(manifest.name),
                        data_dir=data_dir[0] if data_dir else None,
                        data_device=data_dir[1] if data_dir else "")

    def _step(self, manifest: Manifest, digest: str, phase: str, command: str, plan,  # noqa: ANN001
              cwd: str, env: dict[str, str], max_file_bytes: int = 0) -> None:
        spec = manifest.spec
        name = manifest.name
        job = Job(command=command, cwd=cwd,
                  env=env | {"SKIFF_APP": name, "SKIFF_REVISION": digest, "SKIFF_PHASE": phase},
                  plan=plan, network_ns=bool(plan and plan.mount_ns and spec.isolation == "strict"),
                  rlimit_memory_mb=0 if self._cgroups.available else spec.resources.memory_mb,
                  max_file_bytes=max_file_bytes)
        out = self.run(name, phase, job, timeout=spec.setup_timeout,
                       limits=(spec.resources.memory_mb, spec.resources.cpu,
                               spec.resources.max_pids))
        for line in out.tail[-TAIL_LINES:]:
            self._logs.platform(name, digest, f"{phase}: {line}")
        if out.exit_code == 0 and not out.timed_out:
            self._logs.platform(name, digest, f"{phase}: `{command}` done in {out.seconds:.1f} s")
            return
        why = (f"did not finish within spec.setupTimeout ({spec.setup_timeout:g} s)"
               if out.timed_out else
               "could not be sandboxed on this server" if out.exit_code == SANDBOX_FAILED else
               f"exited with status {out.exit_code}")
        self._logs.platform(name, digest, f"{phase}: `{command}` {why}")
        last = out.tail[-TAIL_LINES:]
        fix = ("fix the command or the code and deploy again; the revision that served "
               "keeps serving")
        raise DeployError(
            f"deploy of {name} rejected: the {phase} command `{command}` {why}"
            + (":\n" + "\n".join(f"  {line}" for line in last) if last else " (no output)")
            + f"\n{fix}", code=f"{phase}_failed", command=command, phase=phase,
            exit_code=None if out.timed_out else out.exit_code, output=last)

    def run(self, app: str, phase: str, job: Job, *, timeout: float,
            limits: tuple[int, float, int]) -> Outcome:
        """Start the sandboxed runner, contain it, then give it its job."""
        started = time.monotonic()
        cgroup = self._cgroups.create(f"{app}-{phase}-{uuid.uuid4().hex[:8]}")
        if cgroup is not None:
            cgroup.limit(*limits)
        # its own environment is minimal: a runner's memory is the platform's to keep
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR")}
        proc = subprocess.Popen([sys.executable, "-I", "-m", "skiff.instance.setup_run"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                close_fds=True)
        tail = _Tail()
        reader = threading.Thread(target=tail.read, args=(proc.stdout,), daemon=True)
        reader.start()
        timed_out = False
        try:
            if cgroup is not None:
                cgroup.attach(proc.pid)
            assert proc.stdin is not None
            proc.stdin.write(msgspec.json.encode(job))
            proc.stdin.close()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        except OSError:  # e.g. it died before it read its job
            pass
        finally:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)  # pid 1 of its namespace dies with it
                proc.wait()
            if cgroup is not None:
                cgroup.kill_all()  # whatever it forked outside the pid namespace
                _remove(cgroup)
        reader.join(5)
        return Outcome(exit_code=proc.returncode, timed_out=timed_out, tail=tail.lines(),
                       seconds=time.monotonic() - started)

    # -- after a build ----------------------------------------------------------------------
    def _seal(self, app: str, code: Path) -> None:
        """What the build wrote, made the platform's and read-only, once it is shown to
        hold nothing the platform must not read (the gateway serves static files from
        it, the registry packs it)."""
        total, files = 0, 0
        root = os.path.realpath(code)
        for dirpath, dirnames, filenames in os.walk(code):
            for entry in (*dirnames, *filenames):
                path = os.path.join(dirpath, entry)
                st = os.lstat(path)
                rel = os.path.relpath(path, code)
                if stat.S_ISLNK(st.st_mode):
                    target = os.path.realpath(path)
                    if target != root and not target.startswith(root + os.sep):
                        raise DeployError(
                            f"deploy of {app} rejected: the build left {rel}, a link to "
                            f"{os.readlink(path)} outside the app's code; copy the files "
                            "instead of linking them", code="build_failed", file=rel)
                    continue
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    raise DeployError(f"deploy of {app} rejected: the build left {rel}, which "
                                      "is not a file or directory; remove it in the build",
                                      code="build_failed", file=rel)
                # no setuid, nothing writable but by root; everyone may read (the app's uid)
                os.chmod(path, 0o755 if stat.S_ISDIR(st.st_mode)
                         else stat.S_IMODE(st.st_mode) & 0o755 | 0o644)
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
                    files += 1
        if total > self._config.max_app_bytes or files > self._config.max_app_files:
            raise DeployError(
                f"deploy of {app} rejected: after its build the code is {total >> 20} MiB in "
                f"{files} files, over this server's limit ({self._config.max_app_bytes >> 20} "
                f"MiB, {self._config.max_app_files} files); build less into the code",
                code="build_failed")


class _Tail:
    """The last ``_TAIL_BYTES`` of a stream, read to its end (bounded memory)."""

    def __init__(self) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0

    def read(self, stream) -> None:  # noqa: ANN001
        while chunk := stream.read1(65536):
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size - len(self._chunks[0]) >= _TAIL_BYTES:
                self._size -= len(self._chunks.popleft())
        stream.close()

    def lines(self) -> list[str]:
        text = b"".join(self._chunks)[-_TAIL_BYTES:].decode("utf-8", "replace")
        return [line[:_LINE_CHARS] for line in text.splitlines() if line.strip()]


def _chown_tree(path: Path, uid: int) -> None:
    if os.geteuid() != 0:
        return
    os.lchown(path, uid, uid)
    for dirpath, dirnames, filenames in os.walk(path):
        for entry in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, entry), uid, uid)


def _remove(cgroup) -> None:  # noqa: ANN001
    for _ in range(50):
        if cgroup.empty():
            break
        cgroup.kill_all()
        time.sleep(0.02)
    cgroup.remove()
