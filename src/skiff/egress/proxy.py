"""The egress proxy: an app's only way out of its network namespace.

An instance has loopback only; HTTP_PROXY/HTTPS_PROXY point it at a listener
of this proxy that belongs to its app (one listener per app, so the socket an
instance reaches *is* its identity; no credentials to leak or forge). For
each connection the proxy

1. reads one request head: ``CONNECT host:port`` (a tunnel, bytes both ways)
   or an absolute-form ``GET http://host:port/path`` (forwarded with
   ``Connection: close``: one request per connection; anything the client
   sends after the head goes, as bytes, to that same checked upstream, so it
   can reach no further than a CONNECT tunnel could);
2. checks host:port against the app's policy *before* resolving it, so a
   denied name is never even looked up (no DNS side channel);
3. resolves the name itself, drops the addresses the platform bans whatever
   the manifest says (loopback, link-local, metadata, unspecified, its own
   ports: see ``guard``) and keeps only addresses the policy permits (private
   ranges need an entry naming the address: the DNS-rebinding defence), then
   connects to exactly such an address;
4. relays bytes until both sides finish or nothing moves for ``idle_timeout``;
5. calls ``on_event`` with an ``EgressEvent``, for denied attempts too.

A refusal is an immediate HTTP answer (403/429/503/400/502) whose JSON body
says what to change and whose ``X-Skiff-Egress-Denied`` header names the
spec.egress entry to add.

What an app can make the proxy hold is bounded: every connection counts
against its app's cap from the moment it is accepted (an idle socket that
never sends a head holds a file descriptor too), and all apps together
against a global cap kept well under the process's file descriptor limit, so
a flood of idle connections cannot starve the gateway, other apps or the
admin API of descriptors. A head must arrive within ``header_timeout``. A
connection over a cap is answered and closed at once, and the refusals are
reported at most once a second per app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..errors import SkiffError
from .addresses import parse_ip
from .errors import (
    BadProxyRequest,
    EgressBusy,
    EgressDenied,
    EgressUnavailable,
    EgressUpstreamError,
)
from .events import EgressEvent, Reason
from .guard import Guard
from .rules import EgressPolicy, format_target, suggest_rule
from .wire import CONNECT_OK, error_response, forward_head, parse_target, read_head

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
EventCallback = Callable[[EgressEvent], None]
#: (app, the connecting process's pid as the kernel says, None if it does not) -> the
#: traceparent of the attempt's parent span, or "".
ParentOf = Callable[[str, int | None], str]

log = logging.getLogger("skiff.egress")

_CHUNK = 64 * 1024
_LINGER_BYTES = 1 << 20
# A refusal over a cap lingers (reads what the client still sends, so closing does not
# reset the connection before it read the answer) in at most this many connections per
# app and for at most this long; the others are answered and closed at once. Enough for
# a client that hit the cap by accident to read why; bounded for one that floods.
_REFUSAL_LINGER_SLOTS = 8
_REFUSAL_LINGER = 1.0  # seconds
_REFUSAL_REPORT_INTERVAL = 1.0  # seconds between two refusal events of one app
# Each egress connection holds up to two descriptors (the app's side and the upstream).
# The default global cap lets egress use at most half of the process's descriptors, the
# rest stays for the gateway's clients, instance sockets, the databases and the admin API.
_FDS_PER_CONNECTION = 2
_FD_SHARE = 2


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one (the default soft limit, often
    1024, is far below what the kernel allows a root or unprivileged process); returns it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def fd_connection_budget() -> int:
    """The most egress connections the process's descriptor limit leaves room for
    (its default global cap): half of the descriptors, two per connection."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft // _FD_SHARE // _FDS_PER_CONNECTION)


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the platform's resolver (``loop.getaddrinfo``), TCP addresses in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


@dataclass(slots=True)
class _Attempt:
    """What one connection did so far; becomes its EgressEvent."""

    app: str
    ts: float
    started: float
    host: str = ""
    port: int = 0
    method: str = ""
    allowed: bool = False
    rule: str | None = None
    reason: Reason = "bad_request"
    bytes_up: int = 0
    bytes_down: int = 0
    address: str | None = None
    ended: float | None = None
    detail: str = ""
    traceparent: str = ""

    def event(self) -> EgressEvent:
        ended = self.ended if self.ended is not None else time.monotonic()
        return EgressEvent(
            app=self.app, host=self.host, port=self.port, allowed=self.allowed,
            rule=self.rule, reason=self.reason, bytes_up=self.bytes_up,
            bytes_down=self.bytes_down, duration_ms=round((ended - self.started) * 1000, 3),
            ts=self.ts, address=self.address, method=self.method or "CONNECT",
            detail=self.detail, traceparent=self.traceparent)


@dataclass(slots=True)
class _Refusals:
    """Cap refusals of one app since its last refusal event (the report rate limit)."""

    last: float = float("-inf")
    pending: int = 0
    reason: Reason = "too_many_connections"
    detail: str = ""
    timer: asyncio.TimerHandle | None = None


class EgressListener:
    """One app's listening socket. ``policy`` may be replaced at any time (a new
    revision); connections already open keep the policy they were checked with."""

    def __init__(self, proxy: EgressProxy, app: str, policy: EgressPolicy,
                 max_connections: int | None) -> None:
        self.app = app
        self.policy = policy
        self.max_connections = max_connections
        self.address: str | tuple[str, int] = ""
        self._proxy = proxy
        self._server: asyncio.Server | None = None
        self._unix_inode: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()

    @property
    def active(self) -> int:
        """Connections of this listener still open (any phase)."""
        return len(self._tasks)

    def close(self) -> None:
        """Stop accepting, abort this listener's open connections, remove its socket file."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if isinstance(self.address, str) and self._unix_inode is not None:
            with contextlib.suppress(OSError):
                st = os.stat(self.address)
                if (st.st_dev, st.st_ino) == self._unix_inode:
                    os.unlink(self.address)
        self._proxy._listeners.discard(self)

    async def wait_closed(self) -> None:
        """Wait until the listener is closed and every connection it had has ended."""
        await self._closed.wait()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closed.is_set():
            writer.transport.abort()
            return
        proxy = self._proxy
        refusal = proxy._over_cap(self)
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            if refusal is not None:
                await proxy._refuse_at_accept(self.app, reader, writer, refusal)
                return
            proxy._hold(self.app)
            try:
                await proxy._handle(self, reader, writer)
            finally:
                proxy._release(self.app)
        except asyncio.CancelledError:
            # Closing the listener cancels its connections; the attempt is recorded by now.
            # Ending quietly keeps asyncio's stream callback from logging a cancelled task.
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"EgressListener(app={self.app!r}, address={self.address!r}, policy={self.policy!r})"


class EgressProxy:
    """Serves one listener per app and enforces each app's EgressPolicy.

    ``resolver(host, port) -> [ip, ...]`` defaults to ``loop.getaddrinfo``;
    tests inject a mapping. ``on_event`` is called once per attempt, from the
    event loop; it must not block, and an exception in it is logged and dropped.
    Timeouts are seconds: ``header_timeout`` for the request head,
    ``connect_timeout`` per upstream address, ``idle_timeout`` for a relay
    in which no byte moves either way. ``max_connections_per_app`` bounds the
    app's open connections across its listeners, in any phase (from accept,
    before any head); above it: 429. ``max_connections`` bounds all apps'
    together (default: what the process's descriptor limit leaves room for,
    see ``fd_connection_budget``); above it: 503. ``guard`` is the platform's
    ban list (by default: loopback, link-local, metadata, unspecified, nothing
    allowed). ``parent_of`` names each attempt's parent span for tracing, asked
    once its head arrives with the peer's pid from the kernel (``SO_PEERCRED``),
    never from anything the app sent.
    """

    def __init__(self, *, resolver: Resolver | None = None,
                 on_event: EventCallback | None = None, idle_timeout: float = 300.0,
                 connect_timeout: float = 10.0, header_timeout: float = 10.0,
                 max_connections_per_app: int = 64, max_connections: int | None = None,
                 max_header_bytes: int = 64 * 1024, guard: Guard | None = None,
                 parent_of: ParentOf | None = None) -> None:
        self.resolver: Resolver = resolver or system_resolver
        self.on_event = on_event
        self.parent_of = parent_of
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.header_timeout = header_timeout
        self.max_connections_per_app = max_connections_per_app
        self.max_connections = max_connections or fd_connection_budget()
        self.max_header_bytes = max_header_bytes
        self.guard = guard if guard is not None else Guard()
        self._open: dict[str, int] = {}
        self._total = 0
        self._lingering: dict[str, int] = {}
        self._refusals: dict[str, _Refusals] = {}
        self._listeners: set[EgressListener] = set()

    async def serve_unix(self, path: str | os.PathLike[str], app: str, policy: EgressPolicy, *,
                         mode: int = 0o600, max_connections: int | None = None) -> EgressListener:
        """Listen on a unix socket for ``app``. A stale socket file at ``path`` is replaced;
        the file gets ``mode`` (put it in a directory only the platform can write)."""
        path = os.fspath(path)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise FileExistsError(f"{path} exists and is not a socket")
            os.unlink(path)
        listener = EgressListener(self, app, policy, max_connections)
        listener._server = await asyncio.start_unix_server(
            listener._serve, path=path, limit=self.max_header_bytes)
        os.chmod(path, mode)
        st = os.stat(path)
        listener._unix_inode = (st.st_dev, st.st_ino)
        listener.address = path
        self._listeners.add(listener)
        return listener

    async def serve_tcp(self, host: str, port: int, app: str, policy: EgressPolicy, *,
                        max_connections: int | None = None) -> EgressListener:
        """Listen on ``host:port`` (port 0 picks one; see ``listener.address``) for ``app``."""
        listener = EgressListener(self, app, policy, max_connections)
        server = await asyncio.start_server(
            listener._serve, host=host, port=port, limit=self.max_header_bytes)
        listener._server = server
        bound = server.sockets[0].getsockname()
        listener.address = (str(bound[0]), int(bound[1]))
        self._listeners.add(listener)
        return listener

    def open_connections(self, app: str | None = None) -> int:
        """Connections ``app`` (or every app) holds open now, in any phase: what the caps count."""
        return self._total if app is None else self._open.get(app, 0)

    def close(self) -> None:
        """Close every listener and abort every connection."""
        for listener in list(self._listeners):
            listener.close()
        for state in self._refusals.values():
            if state.timer is not None:
                state.timer.cancel()
        self._refusals.clear()

    async def aclose(self) -> None:
        listeners = list(self._listeners)
        self.close()
        for listener in listeners:
            await listener.wait_closed()

    # -- one connection ---------------------------------------------------------------------

    async def _handle(self, listener: EgressListener, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        attempt = _Attempt(app=listener.app, ts=time.time(), started=time.monotonic())
        upstream: asyncio.StreamWriter | None = None
        aborted = silent = False
        try:
            try:
                async with asyncio.timeout(self.header_timeout):
                    head = await read_head(reader)
            except TimeoutError:
                raise BadProxyRequest(
                    f"no complete request head within {self.header_timeout:g}s") from None
            if head is None:
                silent = True  # connected and left without a word (a probe): not an attempt
                return
            attempt.method = head.method
            if self.parent_of is not None:
                attempt.traceparent = self._parent(listener.app, writer)
            target = parse_target(head)
            attempt.host, attempt.port = target.host, target.port
            policy = self._admit(listener, attempt)
            addresses = await self._screen(policy, attempt)
            up_reader, upstream, attempt.address = await self._connect(addresses, attempt)
            if target.path is None:
                writer.write(CONNECT_OK)
            else:
                request = forward_head(head, target)
                upstream.write(request)
                attempt.bytes_up += len(request)
            attempt.reason = await self._relay(reader, writer, up_reader, upstream, attempt,
                                               tunnel=target.path is None)
        except SkiffError as error:
            attempt.reason = _reason(error, attempt.reason)
            attempt.allowed = attempt.reason in ("resolve_failed", "connect_failed")
            attempt.ended = time.monotonic()
            await self._refuse(reader, writer, error)
        except asyncio.CancelledError:
            attempt.reason, aborted = "aborted", True
            raise
        except OSError:  # either side went away mid-relay
            attempt.reason = "closed"
        except Exception as exc:  # a bug or a broken resolver: fail this connection only
            log.exception("egress proxy failed on a connection of app %s", listener.app)
            attempt.reason = "internal_error"
            attempt.ended = time.monotonic()
            await self._refuse(reader, writer, SkiffError(
                f"the egress proxy failed: {type(exc).__name__}", code="egress_internal_error",
                status=502))
        finally:
            for w in (upstream, writer):
                if w is not None and aborted:
                    w.transport.abort()
                elif w is not None:
                    w.close()
            if not silent and (attempt.host or not aborted):  # aborted mid-head: no attempt yet
                self._emit(attempt.event())

    def _parent(self, app: str, writer: asyncio.StreamWriter) -> str:
        assert self.parent_of is not None
        try:
            return self.parent_of(app, peer_pid(writer))
        except Exception:  # tracing must not break the app's connections
            log.exception("egress parent_of failed for app %s", app)
            return ""

    def _admit(self, listener: EgressListener, attempt: _Attempt) -> EgressPolicy:
        """Judge the name before anything else happens: denied names are not even resolved,
        so the proxy is no DNS side channel. Returns the policy the connection keeps."""
        policy = listener.policy
        decision = policy.check(attempt.host, attempt.port)
        target = format_target(attempt.host, attempt.port)
        if not decision.allowed:
            attempt.rule = suggest_rule(attempt.host, attempt.port)
            raise EgressDenied(f"egress to {target} is not allowed for app {listener.app}; "
                               f"add \"{attempt.rule}\" to spec.egress",
                               rule=attempt.rule, app=listener.app)
        attempt.allowed, attempt.rule = True, decision.rule
        return policy

    # -- caps ----------------------------------------------------------------------------

    def _over_cap(self, listener: EgressListener) -> SkiffError | None:
        """The refusal for a connection just accepted, if a cap is reached."""
        app = listener.app
        if self._total >= self.max_connections:
            return EgressUnavailable(
                f"the egress proxy holds {self._total} connections, its limit for all apps "
                "together (SKIFF_EGRESS_MAX_CONNECTIONS); try again shortly", app=app,
                limit=self.max_connections)
        limit = listener.max_connections or self.max_connections_per_app
        if self._open.get(app, 0) >= limit:
            return EgressBusy(
                f"app {app} already has {limit} egress connections open, its limit "
                "(SKIFF_EGRESS_MAX_CONNECTIONS_PER_APP); close some (or reuse them) first",
                app=app, limit=limit)
        return None

    def _hold(self, app: str) -> None:
        self._open[app] = self._open.get(app, 0) + 1
        self._total += 1

    def _release(self, app: str) -> None:
        self._total -= 1
        self._open[app] -= 1
        if not self._open[app]:
            del self._open[app]

    async def _refuse_at_accept(self, app: str, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, error: SkiffError) -> None:
        """Answer a connection over a cap without reading its head, and report it (rate-limited)."""
        self._report_refusal(app, error)
        if self._lingering.get(app, 0) >= _REFUSAL_LINGER_SLOTS:
            with contextlib.suppress(OSError):
                writer.write(error_response(error))
            writer.close()  # sends what is buffered, then closes: the descriptor goes now
            return
        self._lingering[app] = self._lingering.get(app, 0) + 1
        try:
            await self._refuse(reader, writer, error, linger=_REFUSAL_LINGER)
        finally:
            writer.close()
            self._lingering[app] -= 1
            if not self._lingering[app]:
                del self._lingering[app]

    def _report_refusal(self, app: str, error: SkiffError) -> None:
        """One event per app per interval; the refusals in between are counted into the next."""
        state = self._refusals.setdefault(app, _Refusals())
        state.reason = _reason(error, "too_many_connections")
        state.detail = error.message
        state.pending += 1
        now = time.monotonic()
        if now - state.last >= _REFUSAL_REPORT_INTERVAL:
            self._flush_refusals(app)
        elif state.timer is None:
            state.timer = asyncio.get_running_loop().call_later(
                state.last + _REFUSAL_REPORT_INTERVAL - now, self._flush_refusals, app)

    def _flush_refusals(self, app: str) -> None:
        state = self._refusals.get(app)
        if state is None or not state.pending:
            return
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        now = time.monotonic()
        self._emit(EgressEvent(
            app=app, host="", port=0, allowed=False, rule=None, reason=state.reason,
            bytes_up=0, bytes_down=0, duration_ms=0.0, ts=time.time(), method="",
            detail=state.detail, suppressed=state.pending - 1))
        state.last, state.pending = now, 0

    # -- destinations --------------------------------------------------------------------

    async def _screen(self, policy: EgressPolicy, attempt: _Attempt) -> list[str]:
        """Resolve, drop what the platform bans, then keep the addresses the policy permits
        (the DNS-rebinding defence)."""
        addresses = await self._resolve(attempt.host, attempt.port)
        permitted: list[str] = []
        banned: tuple[str, str] | None = None
        for address in addresses:
            why = self.guard.check(address, attempt.port)
            if why is None:
                permitted.append(address)
            elif banned is None:
                banned = (address, why)
        if not permitted:
            assert banned is not None
            self._forbid(attempt, *banned)
        chosen = policy.select_addresses(attempt.port, permitted)
        if not chosen:
            private = permitted[0]
            attempt.rule = suggest_rule(private, attempt.port)
            raise EgressDenied(
                f"egress to {format_target(attempt.host, attempt.port)} is not allowed for app "
                f"{attempt.app}: it resolves to the private address {private}; if the app "
                f"should reach it, add \"{attempt.rule}\" to spec.egress",
                code="egress_private_address", rule=attempt.rule, app=attempt.app)
        return chosen

    async def _resolve(self, host: str, port: int) -> list[str]:
        if parse_ip(host) is not None:
            return [host]
        try:
            addresses = _valid(await self.resolver(host, port))
        except (OSError, UnicodeError) as exc:
            raise EgressUpstreamError(f"cannot resolve {host}: {exc}",
                                      code="egress_resolve_failed", host=host) from None
        if not addresses:
            raise EgressUpstreamError(f"cannot resolve {host}: no addresses",
                                      code="egress_resolve_failed", host=host)
        return addresses

    def _forbid(self, attempt: _Attempt, address: str, why: str) -> None:
        target = format_target(attempt.host, attempt.port)
        attempt.rule = None  # no spec.egress entry can allow it
        attempt.detail = f"{format_target(address, attempt.port)} is {why}"
        shown = target if attempt.host == address else f"{target} ({address})"
        raise EgressDenied(
            f"egress to {shown} is refused: that is {why}, which apps never reach whatever "
            f"spec.egress says; only the platform's operator can allow it "
            f"({self.guard.hint(address, attempt.port)})",
            code="egress_forbidden_address", app=attempt.app)

    def _lands_here(self, writer: asyncio.StreamWriter) -> bool:
        """Whether a connection reached this very host: the kernel picks the destination
        itself as the source address of a connection to one of the host's own addresses."""
        local, peer = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
        if not local or not peer:
            return False
        ours, theirs = parse_ip(str(local[0]).split("%")[0]), parse_ip(str(peer[0]).split("%")[0])
        return ours is not None and ours == theirs

    async def _connect(self, addresses: list[str], attempt: _Attempt
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        port = attempt.port
        problems = []
        for address in addresses:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    reader, writer = await asyncio.open_connection(address, port, limit=_CHUNK)
                # the platform's ports by any address of this host (its public one too):
                # known only once connected; nothing has been sent to it yet
                if port in self.guard.platform_ports and self._lands_here(writer):
                    why = self.guard.check(address, port, local=True)
                    if why is not None:
                        writer.transport.abort()
                        self._forbid(attempt, address, why)
                return reader, writer, address
            except TimeoutError:
                problems.append(f"{address}: no answer within {self.connect_timeout:g}s")
            except OSError as exc:
                problems.append(f"{address}: {exc.strerror or exc}")
        raise EgressUpstreamError(f"cannot connect to port {port} ({'; '.join(problems)})",
                                  code="egress_connect_failed", port=port)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter,
                     attempt: _Attempt, *, tunnel: bool) -> Reason:
        """Copy bytes both ways until both sides end (a tunnel), the response ends (plain
        HTTP), a side fails, or nothing moves for idle_timeout. Half-closes are passed on."""
        loop = asyncio.get_running_loop()
        last = loop.time()

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            nonlocal last
            while data := await src.read(_CHUNK):
                dst.write(data)
                if up:
                    attempt.bytes_up += len(data)
                else:
                    attempt.bytes_down += len(data)
                last = loop.time()
                await dst.drain()
            if dst.can_write_eof() and not dst.is_closing():
                dst.write_eof()

        up = asyncio.ensure_future(copy(client_r, up_w, True))
        down = asyncio.ensure_future(copy(up_r, client_w, False))
        pending: set[asyncio.Future[None]] = {up, down}
        reason: Reason = "closed"
        try:
            while pending:
                left = last + self.idle_timeout - loop.time()
                if left <= 0:
                    reason = "idle_timeout"
                    break
                done, pending = await asyncio.wait(pending, timeout=left,
                                                   return_when=asyncio.FIRST_COMPLETED)
                failed = any(task.exception() is not None for task in done)
                if failed or (down in done and not tunnel):
                    break
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return reason

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      error: SkiffError, linger: float | None = None) -> None:
        """Answer with the error, then read what the client still sends (briefly) so closing
        does not reset the connection before the client has read the answer."""
        try:
            writer.write(error_response(error))
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(self.header_timeout if linger is None else linger):
                seen = 0
                while seen < _LINGER_BYTES and (data := await reader.read(_CHUNK)):
                    seen += len(data)
        except (TimeoutError, ConnectionError, OSError):
            pass

    def _emit(self, event: EgressEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a broken callback must not break the app's connections
            log.exception("egress on_event callback failed for %s", event)


def peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The pid of the process that connected a unix socket, as the kernel recorded it
    at connect (in this process's pid namespace); None for TCP or where unsupported."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid = _UCRED.unpack(creds)[0]
    return pid or None


_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _valid(addresses: Sequence[str]) -> list[str]:
    """The entries that are IP addresses (a resolver may hand back odd sockaddr text)."""
    return [a for a in addresses if parse_ip(a) is not None]


def _reason(error: SkiffError, current: Reason) -> Reason:
    code = error.code
    if code == "egress_denied":
        return "not_allowed"
    if code == "egress_private_address":
        return "private_address"
    if code == "egress_forbidden_address":
        return "forbidden_address"
    if code == "egress_busy":
        return "too_many_connections"
    if code == "egress_unavailable":
        return "proxy_full"
    if code == "egress_resolve_failed":
        return "resolve_failed"
    if code == "egress_connect_failed":
        return "connect_failed"
    return "bad_request" if code == "bad_proxy_request" else current
