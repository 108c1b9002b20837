"""The gateway's side of instances: zygote clients, a few pre-forked spare
instances per zygote (so a cold start does not wait for a fork), and the
``Instance`` handle that sends invocations and watches for timeouts, crashes
and out-of-memory kills.

Threat model: an app zygote runs the app's init, so after its Hello it is app
code, and so is every instance. Nothing they say about processes is believed:
a Forked pid is adopted only if the kernel says it is a child of the zygote
process this gateway started (its ppid, read again after a pidfd is opened);
a zygote caught lying is killed whole. Exit is learned from the kernel (the
pidfd becomes readable, the cgroup empties), never from an app zygote's Exited
message; only the platform's own zygotes (which run no app code) are believed
about exit codes, and only for the error message. Killing is by pidfd and by
cgroup, never ``os.kill`` of a reported pid. Every instance the platform stops
is killed whole within a grace period, and counts as alive until it is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import select
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from skiff import ipc as p
from skiff.errors import DeployError, InvocationError, InvocationTimeout
from skiff.instance import control
from skiff.instance.cgroups import Cgroup, CgroupManager
from skiff.instance.hooks import InstanceHooks
from skiff.instance.websocket import ProtocolBroken, WebSocket

log = logging.getLogger(__name__)
_NO_HOOKS = InstanceHooks()

REFILL_DELAY = 0.02  # seconds
DEFAULT_LIMITS = (256, 1.0, 64)  # memoryMB, cpu, maxPids: the manifest's defaults
INHERITED_ENV = frozenset({"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSL_CERT_FILE",
                           "SSL_CERT_DIR"})
MAX_FRAME = 16 * 1024 * 1024  # one message from an instance (Lambda allows 6 MB responses)
# What the gateway holds per instance for skiff.sdk calls. A sync handler makes one
# call at a time; 16 leaves room for threads of an ASGI app. Beyond it, and while
# more than MAX_UNREAD_REPLIES of replies wait for the instance to read them, the
# gateway stops reading from that instance (back-pressure, not an error): an app
# that never reads its replies stalls itself, and its timeout stops it.
MAX_CALLS_IN_FLIGHT = 16
MAX_UNREAD_REPLIES = 4 * 1024 * 1024  # bytes
# After EOF on an instance socket, how long a process that is exiting anyway gets
# before it is killed (an exit closes the socket a moment before the pidfd fires).
EXIT_SETTLE = 0.5  # seconds
PLATFORM_ZYGOTE_START = 120.0  # seconds: no app code, only imports, on a slow disk
CONTROL_BURST = 64  # control messages handled per wake-up: a flooding zygote cannot starve the loop


class ZygoteLied(Exception):
    """A zygote reported a process that is not its child, or garbage."""


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
    limits: tuple[int, float, int] | None = None  # an app zygote's memoryMB, cpu, maxPids

    @property
    def trusted(self) -> bool:
        """A zygote that never runs app code (its children do, after they fork)."""
        return self.preinit is None


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields follow the last ")"
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def _exited(pidfd: int) -> bool:
    return bool(select.select([pidfd], [], [], 0)[0])


class Zygote:
    def __init__(self, spec: ZygoteSpec, *, rlimit_memory: bool, cgroup: Cgroup | None = None,
                 init_timeout: float = 60.0) -> None:
        self.spec = spec
        self.cgroup = cgroup  # an app zygote's own, with the app's limits
        self.init_timeout = init_timeout
        self._rlimit_memory = rlimit_memory
        self._proc: subprocess.Popen | None = None
        self._ctl: socket.socket | None = None
        self._tokens = itertools.count(1)
        self._forks: dict[int, asyncio.Future[tuple[int, int]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._hello: asyncio.Future[control.Hello] | None = None
        self._lock = asyncio.Lock()
        self._failure: InvocationError | None = None  # why the last one was stopped

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
            if self.cgroup is not None:
                self.cgroup.kill_all()  # what a previous zygote of this app left behind
                # the zygote joins its cgroup itself, first thing, before any app code
                env["SKIFF_CGROUP_PROCS"] = ",".join(self.cgroup.procs)
            self._failure = None
            # once per environment, a fork and exec (~1 ms); awaiting a thread here would
            # let a second caller start a second zygote
            self._proc = subprocess.Popen(  # noqa: ASYNC220
                [self.spec.python, "-I", "-m", "skiff.instance.zygote", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                start_new_session=True)
            theirs.close()
            ours.setblocking(False)
            self._hello = loop.create_future()
            loop.add_reader(ours.fileno(), self._on_readable, ours)
            self._ctl = ours
            wait = self.init_timeout if not self.spec.trusted else PLATFORM_ZYGOTE_START
            try:
                hello = await asyncio.wait_for(self._hello, wait)
            except TimeoutError:
                self._drop(ours)
                if self.spec.trusted:
                    raise InvocationError(f"the zygote for environment {self.spec.key} did not "
                                          f"start within {wait:g}s", code="zygote_failed") from None
                raise DeployError(
                    f"pre-initialization did not finish within {wait:g}s and was stopped (make "
                    "the init faster, or raise SKIFF_INIT_TIMEOUT)", code="init_timeout") from None
            except ConnectionError as exc:
                self._drop(ours)
                if self.cgroup is not None and self.cgroup.oom_killed():
                    raise DeployError(
                        f"pre-initialization exceeded the app's memory limit of "
                        f"{self.spec.limits[0] if self.spec.limits else '?'} MB and was stopped "
                        "(raise spec.resources.memoryMB or use less memory at init)",
                        code="memory_limit") from None
                raise InvocationError(
                    f"the zygote for environment {self.spec.key} did not start: {exc}",
                    code="zygote_failed") from None
            if hello.error:
                self._drop(ours)
                message, _, tb = hello.error.partition("\n")
                raise DeployError(f"pre-initialization failed: {message}", code="init_failed",
                                  traceback=tb)
            if self.cgroup is not None and self._proc.pid not in self.cgroup.pids():
                self._drop(ours)  # its limits would not hold: refuse to fork from it
                raise InvocationError(f"the zygote for {self.spec.key} is not in its cgroup",
                                      code="zygote_failed")
            return ours

    def _on_readable(self, ctl: socket.socket) -> None:
        for _ in range(CONTROL_BURST):
            try:
                data = ctl.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop(ctl)
                return
            try:
                self._handle(control.decode(data))
            except (ZygoteLied, msgspec.DecodeError) as exc:
                self._caught_lying(ctl, str(exc) or "it sent a malformed control message")
                return

    def _handle(self, msg: control.ControlMessage) -> None:
        if isinstance(msg, control.Forked):
            fut = self._forks.get(msg.token)
            if fut is None or fut.done():
                return
            if msg.pid == 0:
                del self._forks[msg.token]
                fut.set_exception(ConnectionError("the zygote could not fork"))
                return
            try:  # a lie propagates with the fork still waiting: _drop fails it
                result = (msg.pid, self._adopt(msg.pid))
            except ProcessLookupError:
                fut.set_exception(ConnectionError(f"instance {msg.pid} exited at once"))
                return
            del self._forks[msg.token]
            fut.set_result(result)
        elif isinstance(msg, control.Exited):
            if self.spec.trusted and msg.pid in self._exits:  # exit codes, for messages only
                done = self._exits[msg.pid]
                if not done.done():
                    done.set_result(msg.returncode)
        elif isinstance(msg, control.Hello) and self._hello and not self._hello.done():
            self._hello.set_result(msg)

    def _adopt(self, pid: int) -> int:
        """A pidfd for ``pid`` once the kernel confirms it is our zygote's child:
        checked before opening (a pid the zygote made up) and after (a pid reused
        in between), so the pidfd is of that child."""
        zygote = self.pid
        if zygote is None or pid < 0 or pid == os.getpid():
            raise ZygoteLied(f"it reported pid {pid} as its new instance")
        if _ppid(pid) != zygote:
            if _ppid(pid) is None:
                raise ProcessLookupError(pid)
            raise ZygoteLied(f"it reported pid {pid}, which is not its child, as its new instance")
        pidfd = os.pidfd_open(pid)
        if _ppid(pid) != zygote:
            os.close(pidfd)
            raise ZygoteLied(f"pid {pid} stopped being its child while it was adopted")
        return pidfd

    def distrust(self, what: str) -> None:
        """An instance of ours showed the zygote lied: stop it whole."""
        if self._ctl is not None:
            self._caught_lying(self._ctl, what)
        else:
            self.kill()

    def _caught_lying(self, ctl: socket.socket, what: str) -> None:
        log.warning("zygote %s lied (%s); it was stopped", self.spec.key, what)
        self._failure = InvocationError(
            f"the zygote of {self.spec.key} was stopped: {what} (an app's init must not "
            "tamper with the platform's runtime)", code="zygote_untrusted")
        self._drop(ctl)

    def _drop(self, ctl: socket.socket) -> None:
        """The zygote went away (or was stopped): kill it whole, fail what waits on it;
        the next fork restarts it."""
        if self._ctl is ctl:
            self._ctl = None
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(ctl.fileno())
        ctl.close()
        err: Exception = self._failure or ConnectionError("zygote exited")
        for fut in [*self._forks.values(), self._hello]:
            if fut is not None and not fut.done():
                fut.set_exception(err)
        self._forks.clear()
        for _pid, fut in self._exits.items():
            if not fut.done():
                fut.set_result(-signal.SIGKILL)
        self.kill()

    def kill(self) -> None:
        """The zygote and everything in its cgroup (what its init started, setsid
        or not); its instances die with it (they have it as parent-death signal)."""
        if self.cgroup is not None:
            self.cgroup.kill_all()
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

    async def fork(self, msg: control.Fork) -> tuple[int, int, socket.socket]:
        """Fork an instance: its pid, a pidfd for it, and the gateway's end of its socket."""
        ctl = await self._ensure()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        token = msg.token
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
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
            pid, pidfd = await asyncio.wait_for(fut, 30)
        except InvocationError:
            ours.close()
            raise
        except (TimeoutError, ConnectionError, OSError) as exc:
            ours.close()
            raise InvocationError(f"could not fork an instance: {exc}", code="zygote_failed") from None
        finally:
            self._forks.pop(token, None)
        if self.spec.trusted:
            self.exit_future(pid)  # only now does an Exited for this pid mean anything
        return pid, pidfd, ours

    def forget(self, pid: int) -> None:
        self._exits.pop(pid, None)

    async def close(self) -> None:
        if self._ctl is not None:
            self._drop(self._ctl)
        else:
            self.kill()
        if self.cgroup is not None:
            await _until_empty(self.cgroup)
            self.cgroup.remove()


# How long a delegated cgroup waits for its forked child to join (it does so first thing,
# in microseconds, but a loaded machine may not run it for over a second) before the
# delegation is taken back; past it, bind's check of the cgroup's members stops a
# zygote whose child never joined. Only this fresh cgroup, with the app's own limits,
# is open meanwhile.
JOIN_WAIT = 10.0  # seconds
JOIN_POLL = 0.001  # seconds
KILL_POLL = 0.02  # seconds between looks at a killed cgroup; backs off to 1 s


async def _until_empty(cgroup: Cgroup) -> None:
    """Kill until the kernel lists no process in ``cgroup`` (a process in
    uninterruptible sleep dies when it wakes: keep looking, less often)."""
    delay = KILL_POLL
    while not cgroup.empty():
        cgroup.kill_all()
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 1.5)


# An app asked to stop a request (Cancel: its client went away, a stream limit) has
# this long to return (an honest ASGI task runs its finally blocks, a WSGI iterable
# closes); one that ignores the cancel would hold its slot for ever, so it is
# stopped whole.
CANCEL_GRACE = 5.0  # seconds
MAX_RESPONSE = MAX_FRAME  # bytes of one response, streamed or not


class _Expired(Exception):
    pass


class _Broke(Exception):
    """The instance broke the response protocol (a frame for a request it is not
    answering, a body past its end, more than the window): it is stopped whole."""


class Stream:
    """A response an instance streams: its head is here, its body follows.

    Read the body with :meth:`read`; :meth:`ack` what was passed on to the client,
    which grants the instance as much credit, so the gateway never holds more than
    ``STREAM_WINDOW`` bytes of one stream however slow its client is."""

    def __init__(self, inst: Instance, rid: str, status: int, headers: p.Headers) -> None:
        self.id, self.status, self.headers = rid, status, headers
        self.size = 0  # body bytes received
        self.ended = False  # the instance sent the last part
        self.error: InvocationError | None = None  # why the body broke off
        self.cancelled = False
        # done when the gateway is through with it: None (complete) or the error code
        self.closed: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._inst = inst
        self._parts: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._unacked = 0

    async def read(self, timeout: float) -> bytes | None:
        """The next part of the body, None once it is complete. Raises the
        InvocationError it broke off with, TimeoutError after ``timeout`` idle seconds."""
        while not self._parts:
            if self.error is not None:
                self._close(self.error.code)
                raise self.error
            if self.ended:
                self._close(None)
                return None
            self._wake.clear()
            await asyncio.wait_for(self._wake.wait(), timeout)
        return self._parts.popleft()

    def _close(self, code: str | None) -> None:
        if not self.closed.done():
            self.closed.set_result(code)

    def ack(self, size: int) -> None:
        self._unacked -= size
        if not self.cancelled:
            self._inst._send(p.Credit(id=self.id, size=size))

    def cancel(self, code: str) -> None:
        """Stop it (``code`` says why, for the record): the instance is told to stop
        the request; the rest of the body is dropped."""
        self._close(code)
        if not self.cancelled:
            self.cancelled = True
            self._parts.clear()
            self._inst.cancel(self.id)

    def _feed(self, chunk: p.BodyChunk) -> None:
        if self.ended:
            raise _Broke("it sent a body chunk after the end of its response")
        self._unacked += len(chunk.data)
        if self._unacked > p.STREAM_WINDOW:
            raise _Broke(f"it sent {self._unacked} bytes of a stream unacknowledged; "
                         f"the window is {p.STREAM_WINDOW}")
        self.ended = not chunk.more
        if self.cancelled:
            return
        self.size += len(chunk.data)
        if self.size > MAX_RESPONSE:
            self._fail(InvocationError(
                f"the app streamed a response over the limit of {MAX_RESPONSE} bytes; it was "
                "cut there (send large data as a link to storage)", code="response_too_large"))
            self.cancel("response_too_large")
            return
        if chunk.data:
            self._parts.append(chunk.data)
        self._wake.set()

    def _fail(self, err: InvocationError) -> None:
        if self.error is None and not self.ended:
            self.error = err
        self._wake.set()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


class Instance:
    """One instance process as the gateway sees it."""

    def __init__(self, pid: int, sock: socket.socket, zygote: Zygote, cgroup: Cgroup | None,
                 *, pidfd: int, grace: float = 10.0, hooks: InstanceHooks = _NO_HOOKS,
                 after_gone: Callable[[Instance], None] | None = None) -> None:
        self.pid = pid
        self.id = f"i-{pid}"
        self.zygote = zygote
        self.cgroup = cgroup
        self.grace = grace  # seconds a stopping instance gets before it is killed
        self._pidfd = pidfd
        self._sock = sock
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, asyncio.Future] = {}
        # calls answered (a head, or a response marked running) that have not returned:
        # the future is done when they do (Ended), and their pool slot is free then
        self._running: dict[str, asyncio.Future[None]] = {}
        self._streams: dict[str, Stream] = {}
        self._sockets: dict[str, WebSocket] = {}  # WebSockets accepted (or refused), running
        self._ws_max: dict[str, int] = {}  # max_message of each handshake sent
        self._timeouts: dict[str, float] = {}  # each running call's request timeout
        self._timers: dict[str, asyncio.TimerHandle] = {}  # cancel, then stop, a running call
        self._ready: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._exited: asyncio.Future[None] | None = None  # the pidfd fired
        self._calls = 0  # skiff.sdk calls being answered
        self._answering: set[asyncio.Task] = set()
        self._call_done = asyncio.Event()
        self._overdue: asyncio.TimerHandle | None = None
        self._hooks = hooks  # the platform's: logs, skiff.sdk calls, death
        self._after_gone = after_gone  # the launcher's: it stops counting the instance
        self._ended: asyncio.Future[None] | None = None  # set after the hooks' after_death
        self.on_exit: Callable[[Instance], None] | None = None  # the pool's, which adopted it
        self.memory_mb = 0
        self.dead = False  # out of rotation (it may still be running until ``gone``)
        self.gone = False  # the kernel says no process of it is left
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
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        loop.add_reader(self._pidfd, self._on_pidfd)
        self._reader, self._writer = await asyncio.open_unix_connection(sock=self._sock)
        # replies the instance has not read: drain() waits above this (see MAX_UNREAD_REPLIES)
        self._writer.transport.set_write_buffer_limits(high=MAX_UNREAD_REPLIES)
        self._task = asyncio.ensure_future(self._read_loop())

    def _on_pidfd(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._pidfd)
        self.dead = True
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)
        # the socket normally ends with the process; if something else holds its
        # other end (a grandchild, a zygote that kept it), end it here
        asyncio.get_running_loop().call_later(EXIT_SETTLE, self._abort_socket)

    def _abort_socket(self) -> None:
        if self._writer is not None and not self.gone:
            self._writer.transport.abort()

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
            raise DeployError(f"app {load.app} did not finish its init within {init_timeout:g}s "
                              "(make the init faster, or raise SKIFF_INIT_TIMEOUT)",
                              code="init_timeout") from None
        except InvocationError as exc:
            raise DeployError(f"app {load.app} failed during init: {exc.message}",
                              code="init_failed") from None
        if isinstance(msg, p.InitFailed):
            raise DeployError(f"app {load.app} failed to load: {msg.message}",
                              code="init_failed", traceback=msg.traceback)
        if (not self.zygote.spec.trusted and self.cgroup is not None
                and self.pid not in self.cgroup.pids()):
            # an app zygote's child joins its cgroup before anything else: one that did
            # not (or a pid that is not the instance) means the zygote's code was changed
            self.zygote.distrust(f"its instance {self.pid} is not in the instance's cgroup")
            self.kill()
            raise DeployError(f"app {load.app}: its zygote was stopped: its instance is not "
                              "where the platform put it (an app's init must not tamper with "
                              "the platform's runtime)", code="zygote_untrusted")
        self.kind = msg.kind
        self.init_ms = msg.init_ms
        return msg

    async def invoke(self, msg: p.HttpRequest | p.Event | p.WsConnect,
                     timeout: float) -> p.Response | Stream | WebSocket:
        """The instance's answer: a whole Response, a Stream once its head came, or for
        a WsConnect a WebSocket once the app accepted or refused it. After any,
        :meth:`running_after` says whether the call still runs."""
        if self.dead:
            raise self.exit_reason or InvocationError("instance is gone", code="instance_crashed")
        assert self._writer is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._pending[msg.id] = fut
        self._timeouts[msg.id] = timeout
        if isinstance(msg, p.WsConnect):
            self._ws_max[msg.id] = msg.max_message
        self._writer.write(p.encode(msg))
        # a timer on the future, not asyncio.wait_for: this runs on every request,
        # and wait_for's extra waiter and callbacks cost ~3% of the gateway (profiled)
        timer = loop.call_later(timeout, _expire, fut)
        try:
            if self._writer.transport.get_write_buffer_size() > 1 << 20:
                await self._writer.drain()
            out = await fut
        except _Expired:
            if self.kind == "asgi" and not self.dead:
                # its other requests go on: cancel this one's task (stopped whole only if
                # it ignores that), and hold its slot until it has returned
                self._run_on(msg.id)
                self.cancel(msg.id)
                raise InvocationTimeout(
                    f"the handler did not answer within its timeout of {timeout:g}s and was "
                    "cancelled (raise spec.resources.timeout if this is expected)") from None
            self.kill()
            raise InvocationTimeout(
                f"the handler did not finish within its timeout of {timeout:g}s; the instance "
                "was stopped (raise spec.resources.timeout if this is expected)") from None
        finally:
            timer.cancel()
            self._pending.pop(msg.id, None)
            self._ws_max.pop(msg.id, None)
            if msg.id not in self._running:
                self._timeouts.pop(msg.id, None)
        if isinstance(out, p.Failure):
            # an unhandled exception is a 500, as API Gateway and uvicorn answer it; the
            # app's other failures (a bad result, memory) stay 502s
            exc = InvocationError(out.message, code=out.code, traceback=out.traceback,
                                  status=500 if out.code == "handler_error" else None)
            exc.ran = out.ran  # type: ignore[attr-defined]  # the handler span's (not shown)
            raise exc
        return out

    async def _read_loop(self) -> None:
        assert self._reader is not None and self._writer is not None
        reader, writer = self._reader, self._writer
        transport = writer.transport
        decode = p.decode_from_instance
        try:
            while True:
                # back-pressure: an instance that does not read its replies is not read from
                while self._calls >= MAX_CALLS_IN_FLIGHT:
                    self._call_done.clear()
                    await self._call_done.wait()
                if transport.get_write_buffer_size() > MAX_UNREAD_REPLIES:
                    await writer.drain()
                head = await reader.readexactly(4)
                size = int.from_bytes(head, "big")
                if size > MAX_FRAME:  # never buffer an app's unbounded output in the gateway
                    self.exit_reason = InvocationError(
                        f"the app sent a response of {size} bytes; the limit is {MAX_FRAME} "
                        "(send large data as a link to storage)", code="response_too_large")
                    self.kill()
                    break
                msg = decode(await reader.readexactly(size))
                if isinstance(msg, p.BodyChunk):
                    stream = self._streams.get(msg.id)
                    if stream is None:
                        raise _Broke("it sent a body chunk for a request it is not streaming")
                    stream._feed(msg)
                    if stream.ended and msg.id in self._running:
                        self._limit_running(msg.id)
                elif isinstance(msg, p.Response | p.Failure):
                    fut = self._pending.get(msg.id)
                    if fut is not None and not fut.done():
                        if isinstance(msg, p.Response) and msg.running:
                            self._run_on(msg.id)
                            self._limit_running(msg.id)
                        fut.set_result(msg)
                    elif msg.id in self._running:
                        if isinstance(msg, p.Response):
                            raise _Broke("it sent a second response for a request it answered")
                        self._returned(msg.id, InvocationError(
                            msg.message, code=msg.code, traceback=msg.traceback))
                elif isinstance(msg, p.ResponseStart):
                    fut = self._pending.get(msg.id)
                    if fut is None or fut.done():
                        raise _Broke("it sent a response head for a request it is not answering")
                    stream = self._streams[msg.id] = Stream(self, msg.id, msg.status, msg.headers)
                    self._run_on(msg.id)
                    fut.set_result(stream)
                elif isinstance(msg, p.WsAccept) or (isinstance(msg, p.WsClose)
                                                     and msg.id not in self._sockets):
                    fut = self._pending.get(msg.id)
                    if fut is None or fut.done() or msg.id not in self._ws_max:
                        continue  # no handshake waits (it timed out, or is answered): dropped
                    accept = msg if isinstance(msg, p.WsAccept) else None
                    refusal = msg if isinstance(msg, p.WsClose) else None
                    ws = self._sockets[msg.id] = WebSocket(self, msg.id, self._ws_max[msg.id],
                                                           accept, refusal)
                    self._run_on(msg.id)
                    fut.set_result(ws)
                elif isinstance(msg, p.WsMessage | p.WsClose | p.Credit):
                    ws = self._sockets.get(msg.id)
                    if ws is not None:  # else a connection that is over: dropped
                        ws._feed(msg)
                elif isinstance(msg, p.Ended):
                    if msg.id not in self._running:
                        raise _Broke("it ended a call it was not running")
                    self._returned(msg.id, None)
                elif isinstance(msg, p.Log):
                    self._hooks.after_log(self, msg)
                elif isinstance(msg, p.Call):
                    self._calls += 1
                    self._answering.add(task := asyncio.ensure_future(self._answer(msg)))
                    task.add_done_callback(self._answering.discard)
                elif self._ready is not None and not self._ready.done():
                    self._ready.set_result(msg)
        except (_Broke, ProtocolBroken) as exc:
            log.warning("instance %s of %s: %s; it was stopped", self.id, self.app, exc)
            self.exit_reason = InvocationError(
                f"the instance broke the response protocol ({exc}) and was stopped",
                code="instance_crashed")
            self.kill()
        except (asyncio.IncompleteReadError, ConnectionError, msgspec.DecodeError):
            pass
        await self._died()

    def _send(self, msg: msgspec.Struct) -> None:
        if self._writer is not None and not self.dead:
            self._writer.write(p.encode(msg))

    async def send_drained(self, msg: msgspec.Struct) -> None:
        """Send, then wait while the instance has not read MAX_UNREAD_REPLIES of what it
        was sent (an instance that grants credit and never reads holds nothing here)."""
        self._send(msg)
        writer = self._writer
        if (writer is not None and not self.dead
                and writer.transport.get_write_buffer_size() > MAX_UNREAD_REPLIES):
            await writer.drain()

    def _run_on(self, rid: str) -> None:
        self._running[rid] = asyncio.get_running_loop().create_future()

    def _limit_running(self, rid: str) -> None:
        """The response is out and the call goes on (background tasks): it gets the
        request timeout again, then is cancelled."""
        if rid not in self._timers:
            self._timers[rid] = asyncio.get_running_loop().call_later(
                self._timeouts.get(rid, 30.0), self.cancel, rid)

    def _returned(self, rid: str, err: InvocationError | None) -> None:
        ws = self._sockets.pop(rid, None)
        if ws is not None:
            ws._ended(err)
        stream = self._streams.pop(rid, None)
        if stream is not None:
            stream._fail(err or InvocationError(
                "the app returned without completing its streamed response",
                code="handler_error"))
        timer = self._timers.pop(rid, None)
        if timer is not None:
            timer.cancel()
        self._timeouts.pop(rid, None)
        fut = self._running.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def running_after(self, rid: str) -> asyncio.Future[None] | None:
        """Done when the call of an answered request returns; None if it has."""
        return self._running.get(rid)

    def cancel(self, rid: str) -> None:
        """Ask the instance to stop a call that is running after its answer; stop
        the instance whole if it has not returned within CANCEL_GRACE."""
        if rid not in self._running or self.dead:
            return
        self._send(p.Cancel(id=rid))
        old = self._timers.pop(rid, None)
        if old is not None:
            old.cancel()
        self._timers[rid] = asyncio.get_running_loop().call_later(
            CANCEL_GRACE, self._ignored_cancel, rid)

    def _ignored_cancel(self, rid: str) -> None:
        if rid in self._running and not self.dead:
            log.warning("instance %s of %s ignored the cancel of request %s; it was stopped",
                        self.id, self.app, rid)
            self.exit_reason = InvocationError(
                f"the app did not stop request {rid} within {CANCEL_GRACE:g}s of being asked "
                "to and was stopped", code="instance_crashed")
            self.kill()

    async def _answer(self, call: p.Call) -> None:
        try:
            result = await self._hooks.after_call(self, call)
            if result is None:
                result = p.CallResult(id=call.id, ok=False, code="not_supported",
                                      message="this platform serves no skiff.sdk calls")
            if self._writer is not None and not self.dead:
                self._writer.write(p.encode(result))
        finally:
            self._calls -= 1
            self._call_done.set()

    async def _wait_exit(self, timeout: float | None) -> bool:
        assert self._exited is not None
        if not self._exited.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), timeout)
        return self._exited.done()

    async def _died(self) -> None:
        """The instance's socket ended. Whatever the process does now, it is stopped
        whole, and counts as alive (for the pool) until the kernel says it is gone."""
        self.dead = True
        settle = self.grace if self.draining and self.exit_reason is None else EXIT_SETTLE
        if not await self._wait_exit(settle) and self.exit_reason is None:
            self.exit_reason = InvocationError(
                "the instance broke its connection to the platform (closed it or sent a "
                "malformed frame) and was stopped", code="instance_crashed")
        self.kill()  # also whatever it left running in its cgroup
        await self._wait_exit(None)
        if self.cgroup is not None:
            await _until_empty(self.cgroup)
        # -1 at once: a kill() during the awaits below must not signal a reused fd number
        pidfd, self._pidfd = self._pidfd, -1
        os.close(pidfd)
        if self._overdue is not None:
            self._overdue.cancel()
        returncode: int | None = None
        if self.zygote.spec.trusted:  # the platform's own zygote: its exit code, for the message
            with contextlib.suppress(TimeoutError):
                returncode = await asyncio.wait_for(
                    asyncio.shield(self.zygote.exit_future(self.pid)), 2)
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
        elif returncode is not None:
            err = InvocationError(f"the instance exited (exit code {returncode}) while handling "
                                  "the request", code="instance_crashed")
        else:
            err = InvocationError("the instance exited while handling the request",
                                  code="instance_crashed")
        self.exit_reason = err
        for fut in [*self._pending.values(), self._ready]:
            if fut is not None and not fut.done():
                fut.set_exception(err)
        for rid in list(self._running):
            self._returned(rid, err)
        if self._writer is not None:
            self._writer.close()
        if self.cgroup is not None:
            self.cgroup.remove()
        self.gone = True
        if self._after_gone is not None:
            self._after_gone(self)
        if self.on_exit is not None:
            self.on_exit(self)
        try:
            self._hooks.after_death(self)
        finally:
            if self._ended is not None and not self._ended.done():
                self._ended.set_result(None)

    def handling(self, request_id: str) -> bool:
        """Whether the instance has been sent ``request_id`` and not answered it yet."""
        return request_id in self._pending or request_id in self._running

    def requests(self) -> set[str]:
        """The requests the instance has been sent and not answered yet."""
        return self._pending.keys() | self._running.keys()

    def ended(self) -> asyncio.Future[None]:
        """Done once the instance is gone and its hooks' after_death has run."""
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
            if self.gone:
                self._ended.set_result(None)
        return self._ended

    def kill(self) -> None:
        """Stop it now: every process in its cgroup, and the process itself through
        its pidfd (never a pid an app process could have chosen)."""
        self.dead = True  # take it out of rotation now; _died() follows on EOF
        if self.cgroup is not None:
            self.cgroup.kill_all()  # the instance and everything it forked
        if self._pidfd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def shutdown(self) -> None:
        """Ask the instance to finish its in-flight work and exit; it is killed if it
        has not within ``grace`` seconds."""
        self.draining = True
        if self._writer is not None and not self.dead:
            self._writer.write(p.encode(p.Shutdown()))
        if self._overdue is None and not self.gone:
            self._overdue = asyncio.get_running_loop().call_later(self.grace, self._stop_overdue)

    def _stop_overdue(self) -> None:
        if not self.gone:
            if self.exit_reason is None:
                self.exit_reason = InvocationError(
                    f"the instance did not exit within {self.grace:g}s of being asked to stop "
                    "and was killed (SKIFF_STOP_GRACE)", code="stop_timeout")
            self.kill()


async def _joined(cgroup: Cgroup, pid: int) -> None:
    """Until ``pid`` is in every hierarchy of ``cgroup``, or JOIN_WAIT is over. The
    child joins first thing, in microseconds, but on a loaded machine it may not run
    for a while (seen: over a second with both cores busy): look, less often as time
    goes, rather than take a slow child for a lying zygote."""
    delay, waited = JOIN_POLL, 0.0
    while waited < JOIN_WAIT:  # the kernel tells no one
        if cgroup.holds(pid):
            return
        await asyncio.sleep(delay)
        waited += delay
        delay = min(0.05, delay * 2)


class Launcher:
    """Zygotes by environment, each with a few pre-forked spare instances per
    isolation profile (namespaces and cgroups are made with the spare, off the
    request path)."""

    def __init__(self, cgroups: CgroupManager, *, hooks: InstanceHooks = _NO_HOOKS,
                 spares: int = 2, namespaces: bool = False, init_timeout: float = 60.0,
                 stop_grace: float = 10.0) -> None:
        self.hooks = hooks
        self.cgroups = cgroups
        self.spares = spares
        self.namespaces = namespaces  # can we create namespaces (root)?
        self.init_timeout = init_timeout  # an app zygote's init (instances get theirs from bind)
        self.stop_grace = stop_grace
        self._zygotes: dict[str, Zygote] = {}
        self._spares: dict[tuple[str, str], deque[Instance]] = {}
        self._refilling: set[tuple[str, str]] = set()
        self._live: set[Instance] = set()  # forked and not yet gone
        self._closing: set[asyncio.Task] = set()
        self._retiring: set[Zygote] = set()  # retired, closed once their grace is over
        self._refills: set[asyncio.Task] = set()

    def zygote(self, spec: ZygoteSpec) -> Zygote:
        z = self._zygotes.get(spec.key)
        if z is None:
            cgroup = None
            if not spec.trusted and spec.limits is not None:
                # the app's own limits hold while its init runs in the zygote
                cgroup = self.cgroups.create(f"{spec.key.replace('/', '_')}-zygote")
                if cgroup is not None:
                    cgroup.limit(*spec.limits)
            z = self._zygotes[spec.key] = Zygote(
                spec, rlimit_memory=not self.cgroups.available, cgroup=cgroup,
                init_timeout=self.init_timeout)
        return z

    async def _fork(self, zygote: Zygote, spec: ZygoteSpec) -> Instance:
        token = zygote.token()
        cgroup = self.cgroups.create(f"{spec.key.replace('/', '_')}-{token}")
        if cgroup is not None:
            # off the request path; bind rewrites only changes. An app zygote's spares get
            # the app's own limits: until bound, a spare's cgroup is the app uid's to join
            cgroup.limit(*(spec.limits or DEFAULT_LIMITS))
            if spec.uid:
                cgroup.delegate(spec.uid, spec.uid)
        # an app zygote is sandboxed already: no namespaces of its own for its forks
        ns = self.namespaces and spec.preinit is None and spec.profile != "none"
        msg = control.Fork(token=token, cgroup_procs=cgroup.procs if cgroup else [],
                           namespaces=ns, network=ns and spec.profile == "strict")
        try:
            pid, pidfd, sock = await zygote.fork(msg)
        except BaseException:
            if cgroup is not None:
                cgroup.kill_all()  # a child that was forked but not adopted
                cgroup.remove()
            raise
        if cgroup is not None and spec.uid:
            await _joined(cgroup, pid)
            cgroup.undelegate()  # a waiting spare's cgroup is no other instance's to join
        inst = Instance(pid, sock, zygote, cgroup, pidfd=pidfd, grace=self.stop_grace,
                        hooks=self.hooks, after_gone=self._live.discard)
        self._live.add(inst)
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
                log.warning("could not pre-fork a spare instance: %s", exc)
            finally:
                self._refilling.discard(pool_key)

        task = asyncio.ensure_future(refill())
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

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
            self._retiring.add(zygote)
            asyncio.get_running_loop().call_later(grace, self._close_zygote, zygote)

    def _close_zygote(self, zygote: Zygote) -> None:
        if zygote not in self._retiring:
            return  # the launcher closed it already
        self._retiring.discard(zygote)
        task = asyncio.ensure_future(zygote.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def stats(self) -> dict:
        return {key: {"zygote_pid": z.pid,
                      "spares": {p: len(q) for (k, p), q in self._spares.items() if k == key}}
                for key, z in self._zygotes.items()}

    async def close(self, wait: float = 5.0) -> None:
        """Stop everything: every instance and zygote, killed whole, then their cgroups."""
        for inst in list(self._live):
            inst.kill()
        closing = [z.close() for z in [*self._zygotes.values(), *self._retiring]]
        self._retiring.clear()
        live = [asyncio.ensure_future(i._wait_exit(wait)) for i in self._live]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*closing, *live, *self._closing), wait)
        self.cgroups.close()
