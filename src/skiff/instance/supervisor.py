"""The gateway's side of instances: zygote clients, a few pre-forked spare
instances per zygote (so a cold start does not wait for a fork), and the
``Instance`` handle that sends invocations and watches for timeouts, crashes
and out-of-memory kills."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from skiff.errors import DeployError, InvocationError, InvocationTimeout
from skiff.instance import control
from skiff.instance import protocol as p
from skiff.instance.cgroups import Cgroup, CgroupManager

LogSink = Callable[["Instance", p.Log], None]
CallHandler = Callable[["Instance", p.Call], Awaitable[p.CallResult]]

REFILL_DELAY = 0.02  # seconds
DEFAULT_LIMITS = (256, 1.0, 64)  # memoryMB, cpu, maxPids: the manifest's defaults
INHERITED_ENV = frozenset({"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSL_CERT_FILE",
                           "SSL_CERT_DIR"})
MAX_FRAME = 16 * 1024 * 1024  # one message from an instance (Lambda allows 6 MB responses)


@dataclass(frozen=True)
class ZygoteSpec:
    key: str  # dependency environment key ("default" for the platform's own)
    python: str  # absolute interpreter path, run with -I
    preload: tuple[str, ...] = ()
    preinit: bytes | None = None  # a Load (JSON) whose app init runs in the zygote itself
    sandbox: bytes | None = None  # an app zygote's own sandbox.Plan (JSON)
    network: bool = False  # an app zygote in a network namespace of its own
    uid: int = 0  # an app zygote's uid: its instances' cgroups are delegated to it
    profile: str = "none"  # spares' isolation: strict (pid+net ns) | standard (pid ns) | none


class Zygote:
    def __init__(self, spec: ZygoteSpec, *, rlimit_memory: bool) -> None:
        self.spec = spec
        self._rlimit_memory = rlimit_memory
        self._proc: subprocess.Popen | None = None
        self._ctl: socket.socket | None = None
        self._tokens = itertools.count(1)
        self._forks: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._hello: asyncio.Future[control.Hello] | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def _ensure(self) -> socket.socket:
        if self._ctl is not None:
            return self._ctl
        async with self._lock:
            if self._ctl is not None:
                return self._ctl
            loop = asyncio.get_running_loop()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            # a small, known environment: instances fork from this process, and the
            # platform's (tokens, a master key, an operator's cloud credentials) is not theirs
            env = {k: v for k, v in os.environ.items() if k in INHERITED_ENV}
            env["SKIFF_PRELOAD"] = ",".join(self.spec.preload)
            env["SKIFF_RLIMIT_MEMORY"] = "1" if self._rlimit_memory else "0"
            if self.spec.preinit:
                env["SKIFF_PREINIT"] = self.spec.preinit.decode()
            if self.spec.sandbox:
                env["SKIFF_SANDBOX"] = self.spec.sandbox.decode()
                env["SKIFF_SANDBOX_NETWORK"] = "1" if self.spec.network else "0"
            self._proc = subprocess.Popen(
                [self.spec.python, "-I", "-m", "skiff.instance.zygote", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                start_new_session=True)
            theirs.close()
            ours.setblocking(False)
            self._hello = loop.create_future()
            loop.add_reader(ours.fileno(), self._on_readable, ours)
            self._ctl = ours
            try:
                hello = await asyncio.wait_for(self._hello, 120)
            except (TimeoutError, ConnectionError) as exc:
                self._drop(ours)
                raise InvocationError(
                    f"the zygote for environment {self.spec.key} did not start: {exc}",
                    code="zygote_failed") from None
            if hello.error:
                self._drop(ours)
                message, _, tb = hello.error.partition("\n")
                raise DeployError(f"pre-initialization failed: {message}", code="init_failed",
                                  traceback=tb)
            return ours

    def _on_readable(self, ctl: socket.socket) -> None:
        while True:
            try:
                data = ctl.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop(ctl)
                return
            msg = control.decode(data)
            if isinstance(msg, control.Forked):
                fut = self._forks.pop(msg.token, None)
                if fut and not fut.done():
                    fut.set_result(msg.pid)
            elif isinstance(msg, control.Exited):
                done = self.exit_future(msg.pid)
                if not done.done():
                    done.set_result(msg.returncode)
            elif isinstance(msg, control.Hello) and self._hello and not self._hello.done():
                self._hello.set_result(msg)

    def _drop(self, ctl: socket.socket) -> None:
        """The zygote went away: fail what waits on it; the next fork restarts it."""
        if self._ctl is ctl:
            self._ctl = None
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(ctl.fileno())
        ctl.close()
        err = ConnectionError("zygote exited")
        for fut in [*self._forks.values(), self._hello]:
            if fut is not None and not fut.done():
                fut.set_exception(err)
        self._forks.clear()
        for _pid, fut in self._exits.items():
            if not fut.done():
                fut.set_result(-signal.SIGKILL)
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.kill()
                self._proc.wait(1)

    def exit_future(self, pid: int) -> asyncio.Future[int]:
        fut = self._exits.get(pid)
        if fut is None:
            fut = self._exits[pid] = asyncio.get_running_loop().create_future()
        return fut

    def token(self) -> int:
        return next(self._tokens)

    async def fork(self, msg: control.Fork) -> tuple[int, socket.socket]:
        ctl = await self._ensure()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        token = msg.token
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._forks[token] = fut
        try:
            for _ in range(10_000):  # a burst of forks can fill the socket: wait for room
                try:
                    socket.send_fds(ctl, [control.encode(msg)], [theirs.fileno()])
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            else:
                raise InvocationError("the zygote is not taking fork requests",
                                      code="zygote_failed")
        finally:
            theirs.close()
        try:
            pid = await asyncio.wait_for(fut, 30)
        except (TimeoutError, ConnectionError) as exc:
            ours.close()
            raise InvocationError(f"could not fork an instance: {exc}", code="zygote_failed") from None
        return pid, ours

    def forget(self, pid: int) -> None:
        self._exits.pop(pid, None)

    async def close(self) -> None:
        if self._ctl is not None:
            self._drop(self._ctl)


class _Expired(Exception):
    pass


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


class Instance:
    """One instance process as the gateway sees it."""

    def __init__(self, pid: int, sock: socket.socket, zygote: Zygote, cgroup: Cgroup | None) -> None:
        self.pid = pid
        self.id = f"i-{pid}"
        self.zygote = zygote
        self.cgroup = cgroup
        self._sock = sock
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._ready: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self.on_log: LogSink | None = None
        self.on_exit: Callable[[Instance], None] | None = None  # the pool's
        self.on_death: Callable[[Instance], None] | None = None  # the platform's, for logs
        self.on_call: CallHandler | None = None  # the platform's, for skiff.sdk
        self.memory_mb = 0
        self.dead = False
        self.exit_reason: InvocationError | None = None
        # scheduling state, owned by the pool
        self.app = ""
        self.revision = ""
        self.kind = ""
        self.concurrency = 1
        self.inflight = 0
        self.served = 0
        self.init_ms = 0.0
        self.created = time.monotonic()
        self.bound_at = self.created
        self.last_used = self.created
        self.draining = False
        self.log_window, self.log_lines = 0, 0  # the platform's output rate limit

    async def start(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(sock=self._sock)
        self._task = asyncio.ensure_future(self._read_loop())

    async def bind(self, load: p.Load, init_timeout: float) -> p.Ready:
        """Turn a generic instance into an instance of ``load.app``."""
        assert self._writer is not None
        self.app, self.revision, self.memory_mb = load.app, load.revision, load.memory_mb
        self.bound_at = time.monotonic()
        if self.cgroup is not None:
            self.cgroup.limit(load.memory_mb, load.cpu, load.max_pids)
        self._ready = asyncio.get_running_loop().create_future()
        self._writer.write(p.encode(load))
        try:
            msg = await asyncio.wait_for(self._ready, init_timeout)
        except TimeoutError:
            self.kill()
            raise DeployError(f"app {load.app} did not finish its init within {init_timeout:g}s",
                              code="init_timeout") from None
        except InvocationError as exc:
            raise DeployError(f"app {load.app} failed during init: {exc.message}",
                              code="init_failed") from None
        if isinstance(msg, p.InitFailed):
            raise DeployError(f"app {load.app} failed to load: {msg.message}",
                              code="init_failed", traceback=msg.traceback)
        self.kind = msg.kind
        self.init_ms = msg.init_ms
        return msg

    async def invoke(self, msg: p.HttpRequest | p.Event, timeout: float) -> p.Response:
        if self.dead:
            raise self.exit_reason or InvocationError("instance is gone", code="instance_crashed")
        assert self._writer is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._pending[msg.id] = fut
        self._writer.write(p.encode(msg))
        # a timer on the future, not asyncio.wait_for: this runs on every request,
        # and wait_for's extra waiter and callbacks cost ~3% of the gateway (profiled)
        timer = loop.call_later(timeout, _expire, fut)
        try:
            if self._writer.transport.get_write_buffer_size() > 1 << 20:
                await self._writer.drain()
            out = await fut
        except _Expired:
            self.kill()
            raise InvocationTimeout(
                f"the handler did not finish within its timeout of {timeout:g}s; the instance "
                "was stopped (raise spec.resources.timeout if this is expected)") from None
        finally:
            timer.cancel()
            self._pending.pop(msg.id, None)
        if isinstance(out, p.Failure):
            raise InvocationError(out.message, code=out.code, traceback=out.traceback)
        return out

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reader = self._reader
        decode = p.decode_from_instance
        try:
            while True:
                head = await reader.readexactly(4)
                size = int.from_bytes(head, "big")
                if size > MAX_FRAME:  # never buffer an app's unbounded output in the gateway
                    self.exit_reason = InvocationError(
                        f"the app sent a response of {size} bytes; the limit is {MAX_FRAME} "
                        "(send large data as a link to storage)", code="response_too_large")
                    self.kill()
                    break
                msg = decode(await reader.readexactly(size))
                if isinstance(msg, p.Response | p.Failure):
                    fut = self._pending.get(msg.id)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif isinstance(msg, p.Log):
                    if self.on_log is not None:
                        self.on_log(self, msg)
                elif isinstance(msg, p.Call):
                    asyncio.ensure_future(self._answer(msg))
                elif self._ready is not None and not self._ready.done():
                    self._ready.set_result(msg)
        except (asyncio.IncompleteReadError, ConnectionError, msgspec.DecodeError):
            pass
        await self._died()

    async def _answer(self, call: p.Call) -> None:
        if self.on_call is None:
            result = p.CallResult(id=call.id, ok=False, code="not_supported",
                                  message="this platform serves no skiff.sdk calls")
        else:
            result = await self.on_call(self, call)
        if self._writer is not None and not self.dead:
            self._writer.write(p.encode(result))

    async def _died(self) -> None:
        self.dead = True
        returncode: int | None = None
        with contextlib.suppress(TimeoutError):
            returncode = await asyncio.wait_for(asyncio.shield(self.zygote.exit_future(self.pid)), 2)
        self.zygote.forget(self.pid)
        if self.exit_reason is not None:  # the gateway stopped it, and said why
            err = self.exit_reason
        elif self.cgroup is not None and self.cgroup.oom_killed():
            err = InvocationError(
                f"the instance exceeded its memory limit of {self.memory_mb} MB and was stopped "
                "(raise spec.resources.memoryMB or use less memory)", code="memory_limit")
        elif returncode is not None and returncode < 0:
            name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else -returncode
            err = InvocationError(f"the instance was killed by {name}", code="instance_crashed")
        else:
            err = InvocationError(f"the instance exited (exit code {returncode}) while handling "
                                  "the request", code="instance_crashed")
        self.exit_reason = err
        for fut in [*self._pending.values(), self._ready]:
            if fut is not None and not fut.done():
                fut.set_exception(err)
        if self._writer is not None:
            self._writer.close()
        if self.cgroup is not None:
            # the kernel refuses rmdir until the last task is gone; exit_future says it is
            self.cgroup.remove()
        if self.on_exit is not None:
            self.on_exit(self)
        if self.on_death is not None and self.app:
            self.on_death(self)

    def kill(self) -> None:
        self.dead = True  # take it out of rotation now; _died() follows on EOF
        if self.cgroup is not None:
            self.cgroup.kill_all()  # the instance and everything it forked
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def shutdown(self) -> None:
        """Ask the instance to finish its in-flight work and exit."""
        self.draining = True
        if self._writer is not None and not self.dead:
            self._writer.write(p.encode(p.Shutdown()))


class Launcher:
    """Zygotes by environment, each with a few pre-forked spare instances per
    isolation profile (namespaces and cgroups are made with the spare, off the
    request path)."""

    def __init__(self, cgroups: CgroupManager, *, spares: int = 2,
                 namespaces: bool = False) -> None:
        self.cgroups = cgroups
        self.spares = spares
        self.namespaces = namespaces  # can we create namespaces (root)?
        self._zygotes: dict[str, Zygote] = {}
        self._spares: dict[tuple[str, str], deque[Instance]] = {}
        self._refilling: set[tuple[str, str]] = set()
        self.on_log: LogSink | None = None
        self.on_death: Callable[[Instance], None] | None = None
        self.on_call: CallHandler | None = None

    def zygote(self, spec: ZygoteSpec) -> Zygote:
        z = self._zygotes.get(spec.key)
        if z is None:
            z = self._zygotes[spec.key] = Zygote(spec, rlimit_memory=not self.cgroups.available)
        return z

    async def _fork(self, zygote: Zygote, spec: ZygoteSpec) -> Instance:
        token = zygote.token()
        cgroup = self.cgroups.create(f"{spec.key.replace('/', '_')}-{token}")
        if cgroup is not None:
            cgroup.limit(*DEFAULT_LIMITS)  # off the request path; bind rewrites only changes
            if spec.uid:
                cgroup.delegate(spec.uid, spec.uid)
        # an app zygote is sandboxed already: no namespaces of its own for its forks
        ns = self.namespaces and spec.preinit is None and spec.profile != "none"
        msg = control.Fork(token=token, cgroup_procs=cgroup.procs if cgroup else [],
                           namespaces=ns, network=ns and spec.profile == "strict")
        try:
            pid, sock = await zygote.fork(msg)
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        inst = Instance(pid, sock, zygote, cgroup)
        inst.on_log = self.on_log
        inst.on_death = self.on_death
        inst.on_call = self.on_call
        await inst.start()
        return inst

    async def instance(self, spec: ZygoteSpec) -> Instance:
        """A fresh generic instance: a spare when one is ready, else a fork now."""
        zygote = self.zygote(spec)
        spares = self._spares.setdefault((spec.key, spec.profile), deque())
        inst = None
        while spares:
            candidate = spares.popleft()
            if not candidate.dead:
                inst = candidate
                break
        if inst is None:
            inst = await self._fork(zygote, spec)
        # refill a moment later: making a spare (cgroup mkdirs, a fork, namespaces)
        # would otherwise compete with the cold start that just took one
        asyncio.get_running_loop().call_later(REFILL_DELAY, self._refill, spec)
        return inst

    def _refill(self, spec: ZygoteSpec) -> None:
        pool_key = (spec.key, spec.profile)
        if self.spares <= 0 or pool_key in self._refilling:
            return
        self._refilling.add(pool_key)

        async def refill() -> None:
            try:
                while True:
                    zygote, spares = self._zygotes.get(spec.key), self._spares.get(pool_key)
                    if zygote is None or spares is None or len(spares) >= self.spares:
                        return
                    spares.append(await self._fork(zygote, spec))
            except Exception as exc:  # noqa: BLE001 - spares are best effort
                print(f"skiff: could not pre-fork a spare instance: {exc}", file=sys.stderr)
            finally:
                self._refilling.discard(pool_key)

        asyncio.ensure_future(refill())

    async def warm(self, spec: ZygoteSpec) -> None:
        """Start the zygote and its spares ahead of the first request."""
        await self.zygote(spec)._ensure()
        self._spares.setdefault((spec.key, spec.profile), deque())
        self._refill(spec)

    def retire(self, key: str, grace: float = 60.0) -> None:
        """Stop a zygote that nothing will fork from again (an old app revision's).
        Its instances die with it, so it goes only after ``grace`` seconds, time
        for their in-flight requests to finish."""
        zygote = self._zygotes.pop(key, None)
        for pool_key in [k for k in self._spares if k[0] == key]:
            for inst in self._spares.pop(pool_key):
                inst.kill()
        if zygote is not None:
            asyncio.get_running_loop().call_later(
                grace, lambda: asyncio.ensure_future(zygote.close()))

    def stats(self) -> dict:
        return {key: {"zygote_pid": z.pid,
                      "spares": {p: len(q) for (k, p), q in self._spares.items() if k == key}}
                for key, z in self._zygotes.items()}

    async def close(self) -> None:
        for spares in self._spares.values():
            for inst in spares:
                inst.kill()
        for z in self._zygotes.values():
            await z.close()
        self.cgroups.close()
