"""Following the other nodes: what another node deployed, rolled back or deleted
is served (or no longer served) here too.

Nodes share the registry (PostgreSQL) and nothing else: the registry tells its
listeners which app changed (:meth:`skiff.store.Registry.add_listener`), and
:class:`Follower` *reconciles* that app: it reads the app's current revision
and makes this node serve exactly that (no revision: the app was deleted). A
reconcile is idempotent and reads the registry each time, so signals may be
coalesced, repeated, or be this node's own, and a ``None`` signal (the
listener may have missed some) reconciles every app. A revision that cannot be
brought up here (its bundle does not unpack, its environment does not build)
is logged for that app, and the revision served before keeps serving; the
follower tries it again later (a package index or the database may be back),
less and less often, until it comes up or another revision is current.

The embedded (SQLite) registry has one node and never signals; then
:meth:`Follower.reconcile` runs only when called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from skiff.errors import SkiffError
from skiff.platform.deploy import Deployer
from skiff.platform.logsink import LogSink
from skiff.platform.registry import Registry
from skiff.store import Store

log = logging.getLogger(__name__)

#: Seconds until a revision that did not come up here is tried again, doubled after
#: each failure up to RETRY_MAX: a transient failure (a package index away) heals
#: within a minute, and a bundle that never unpacks logs a few lines an hour.
RETRY_FIRST = 30.0
RETRY_MAX = 900.0


class Follower:
    def __init__(self, store: Store, registry: Registry, deployer: Deployer,
                 logs: LogSink) -> None:
        self._store = store
        self._registry = registry
        self._deployer = deployer
        self._logs = logs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pending: set[str] = set()
        self._everything = False
        #: app -> (the revision that failed, the delay used, the timer of the retry)
        self._retries: dict[str, tuple[str, float, asyncio.TimerHandle]] = {}

    def start(self) -> None:
        """Listen to the registry and reconcile on each signal (on this event loop)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())
        self._store.add_listener(self._heard)

    async def stop(self) -> None:
        for _, _, timer in self._retries.values():
            timer.cancel()
        self._retries.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _heard(self, app: str | None) -> None:
        """A signal, on the registry's listener thread: to the loop."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the node stopped
                loop.call_soon_threadsafe(self._note, app)

    def _note(self, app: str | None) -> None:
        if app is None:
            self._everything = True
        else:
            self._pending.add(app)
        assert self._wake is not None
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            names = None if self._everything else sorted(self._pending)
            self._everything, self._pending = False, set()
            try:
                await self.reconcile(names)
            except Exception:  # the database may be away: all of it again, later
                log.exception("following the registry failed; trying again in %g s",
                              RETRY_FIRST)
                asyncio.get_running_loop().call_later(RETRY_FIRST, self._note, None)

    async def reconcile(self, names: Iterable[str] | None = None) -> None:
        """Make this node serve each app's current revision (``None``: every app the
        registry or this node knows)."""
        known: dict[str, str] = {}  # name -> current revision, as read for every app at once
        if names is None:
            known = dict(await asyncio.to_thread(self._store.apps))
            names = sorted(known.keys() | self._registry.apps.keys())
        names = list(names)
        for name in names:
            await self._follow(name, known.get(name))
        grants = await asyncio.to_thread(self._deployer.grants)
        for name in names:  # once all are switched: what overlaps whom (as restore does)
            if name in self._registry.apps:
                self._deployer.withdraw_ungranted(name, grants)

    async def _follow(self, name: str, hint: str | None = None) -> None:
        # under the app's lock, as a deploy here: what is read is what is switched to
        async with self._registry.lock(name):
            await self._switch(name, hint)

    async def _switch(self, name: str, hint: str | None) -> None:
        served = self._registry.apps.get(name)
        if hint is not None and served is not None and served.revision == hint:
            self._forget_retry(name)
            return  # read before the lock; a change since then sends a signal of its own
        current = await asyncio.to_thread(self._store.current, name)
        if current is None or (served is not None and served.revision == current):
            self._forget_retry(name)
        if current is None:
            if served is not None:
                await self._deployer.forget_deleted(name)
            return
        if served is not None and served.revision == current:
            return
        row = await asyncio.to_thread(self._store.revision, name, current)
        if row is None:  # deleted again meanwhile: the next signal says so
            return
        try:
            app = await self._deployer.bring_up(row)
        except (SkiffError, OSError) as exc:
            reason = exc.message if isinstance(exc, SkiffError) else str(exc)
            keeps = (f"revision {served.revision} keeps serving here" if served is not None
                     else "the app is not served here")
            delay = self._retry(name, current)
            self._logs.platform(name, current, f"could not serve revision {current} deployed "
                                f"by another node: {reason}; {keeps}; trying again in "
                                f"{delay:g} s")
            return
        self._forget_retry(name)
        self._logs.platform(name, current, f"revision {current} ({app.kind}) served here, "
                            "as another node deployed it")

    def _retry(self, name: str, revision: str) -> float:
        """Reconcile ``name`` again later; returns in how many seconds."""
        failed = self._retries.pop(name, None)
        delay = RETRY_FIRST
        if failed is not None:
            failed[2].cancel()
            if failed[0] == revision:
                delay = min(failed[1] * 2, RETRY_MAX)
        timer = asyncio.get_running_loop().call_later(delay, self._note, name)
        self._retries[name] = (revision, delay, timer)
        return delay

    def _forget_retry(self, name: str) -> None:
        failed = self._retries.pop(name, None)
        if failed is not None:
            failed[2].cancel()
